"""Determinism: the same inputs (and seed) give the same outputs, run after run.

- ``facebench verify`` twice on one store: the reports are equal but for ``created`` and
  absolute paths, and the ``.scores.npz`` files are equal byte for byte (an LFW-shaped
  store, and an IJB-C-shaped one with flips, media pooling and 1:N).
- ``facebench extract`` twice with the same weights: the stores hold the same ids,
  features, norms and content checksum (the files differ only in their ``created``
  attribute).
- ``facebench train`` twice with the same seed: the checkpoints hold the same tensors and
  entries but for the wall-clock ``seconds`` of each epoch (loop.py promises the seed fixes
  the initial weights, the shuffling and the flips).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result
from ijbc_fixtures import write_ijbc
from PIL import Image

from facebench.cli import cli
from facebench.store import (
    FeatureStore,
    block_digests,
    content_sha256,
    create_store,
    normalize_rows,
)


def run(*args: str | Path) -> Result:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def comparable_report(path: Path, folder: Path) -> dict[str, Any]:
    """The report without ``created``, with ``folder`` (absolute paths) written as ``<dir>``."""
    text = path.read_text(encoding="utf-8").replace(str(folder), "<dir>")
    report = json.loads(text)
    assert datetime.fromisoformat(report.pop("created")).tzinfo is not None
    return report


def verify_twice(folder: Path, *args: str | Path) -> None:
    """Run verify into two folders; assert equal reports and byte-identical scores files."""
    reports, scores = [], []
    for name in ("first", "second"):
        out = folder / name / "r.json"
        out.parent.mkdir()
        run("verify", *args, "--json", out)
        reports.append(comparable_report(out, folder))
        scores.append((folder / name / "r.scores.npz").read_bytes())
    assert reports[0] == reports[1]
    assert scores[0] == scores[1]
    with np.load(folder / "first" / "r.scores.npz") as data:
        assert data["score"].size == reports[0]["n_pairs"] > 0


def test_verify_twice_gives_the_same_lfw_report(tmp_path: Path) -> None:
    names = ["Ann", "Bob", "Cid", "Dee", "Eve"]
    lines = ["10\t3"]
    for fold in range(10):
        lines += [f"{names[(fold + k) % 5]}\t1\t{2 + (fold + k) % 3}" for k in range(3)]
        lines += [f"{names[k]}\t{1 + fold % 4}\t{names[(k + 1 + fold) % 5]}\t2" for k in range(3)]
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")
    ids = [f"{n}/{n}_{i:04d}.jpg" for n in names for i in range(1, 5)]
    rng = np.random.default_rng(4)
    centres = {n: rng.normal(size=24) for n in names}
    raw = np.stack([centres[i.split("/")[0]] + rng.normal(size=24) for i in ids])
    create_store(tmp_path / "s.h5", ids, *normalize_rows(raw), model="synthetic")
    verify_twice(
        tmp_path, "--protocol", "lfw", "--pairs", tmp_path / "pairs.txt",
        "--features", tmp_path / "s.h5", "--far", "0.1,0.5",
    )  # fmt: skip


def test_verify_twice_gives_the_same_ijbc_report(tmp_path: Path) -> None:
    record = write_ijbc(tmp_path / "ijbc", n_subjects=8, seed=3)
    keys = sorted(record["scores"])
    rng = np.random.default_rng(5)
    raw = rng.normal(size=(len(keys), 16))
    unit, norms = normalize_rows(raw)
    unit_flip, norms_flip = normalize_rows(raw + 0.2 * rng.normal(size=raw.shape))
    create_store(
        tmp_path / "s.h5", keys, unit, norms, features_flip=unit_flip, norms_flip=norms_flip,
        model="synthetic",
    )  # fmt: skip
    verify_twice(
        tmp_path, "--protocol", "ijbc", "--protocol-dir", tmp_path / "ijbc",
        "--features", tmp_path / "s.h5", "--pooling", "media", "--flip-fusion", "sum-raw",
    )  # fmt: skip


def store_content(path: Path) -> dict[str, Any]:
    """Ids, features, norms and checksums of a store (its rows' digests recomputed)."""
    with FeatureStore.open(path) as store:
        features, norms = store.read_all()
        digests = block_digests(store.ids, {"features": features, "norms": norms})
        assert content_sha256(digests) == store.info.content_sha256
        attributes = dict(store.info.attributes)
        attributes.pop("created")
        return {
            "ids": store.ids,
            "features": features.tobytes(),
            "norms": norms.tobytes(),
            "digests": store.read_block_digests(),
            "attributes": attributes,
        }


def test_extract_twice_gives_the_same_store(tmp_path: Path) -> None:
    import torch

    from facebench.models.registry import ARCHITECTURES

    rng = np.random.default_rng(6)
    for i in range(12):
        folder = tmp_path / "images" / f"p{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, size=(20, 17, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.png")
    torch.manual_seed(0)
    torch.save(ARCHITECTURES["small-cnn"].build().state_dict(), tmp_path / "w.pth")
    stores = []
    for name in ("first.h5", "second.h5"):
        run(
            "extract", tmp_path / "images", "--arch", "small-cnn", "--weights",
            tmp_path / "w.pth", "-o", tmp_path / name, "--workers", "0", "--device", "cpu",
            "--chunk-size", "5", "--batch-size", "3", "--no-progress",
        )  # fmt: skip
        stores.append(store_content(tmp_path / name))
    assert stores[0] == stores[1]
    assert len(stores[0]["ids"]) == 12


@pytest.mark.parametrize(
    "options",
    [["--head", "softmax"], ["--head", "l2softmax", "--alpha", "learned", "--flip"]],
    ids=["softmax", "l2softmax-learned-alpha-flips"],
)
def test_train_twice_with_one_seed_gives_the_same_checkpoint(
    tmp_path: Path, options: list[str]
) -> None:
    import torch

    checkpoints = []
    for name in ("first.pt", "second.pt"):
        run(
            "train", "digits", "--arch", "small-cnn", *options, "--epochs", "1",
            "--max-per-class", "6", "--batch-size", "16", "--seed", "7", "--device", "cpu",
            "--holdout", "5,6,7,8,9", "--no-progress", "-o", tmp_path / name,
        )  # fmt: skip
        checkpoint = torch.load(tmp_path / name, weights_only=True)
        for entry in checkpoint["history"]:
            assert entry.pop("seconds") >= 0  # wall-clock time: the one entry that differs
        checkpoints.append(checkpoint)
    first, second = checkpoints
    assert first.keys() == second.keys() and first["seed"] == 7
    state = first.pop("state_dict"), second.pop("state_dict")
    assert state[0].keys() == state[1].keys()
    for key in state[0]:
        assert torch.equal(state[0][key], state[1][key]), key
    assert first == second


def test_npz_members_are_numpys_bytes() -> None:
    """The per-pair file writer (its own bytes for plain arrays) gives exactly the bytes of
    ``numpy.lib.format.write_array`` in the same archive, for every dtype and layout met."""
    import io
    import zipfile

    from facebench.report import save_npz

    rng = np.random.default_rng(0)
    arrays = {
        "f8": rng.random(70_001),
        "f4": rng.random((3, 5)).astype(np.float32),
        "i2": np.full(9, 3, dtype=np.int16),
        "i4": rng.integers(-5, 5, 11).astype(np.int32),
        "u8": np.arange(4, dtype=np.uint64),
        "b": rng.random(13) < 0.5,
        "U": np.array(["G1", "G2", "mean"]),
        "S": np.array([b"a", b"bcd"]),
        "empty": np.zeros(0),
        "scalar": np.float64(2.5),
        "fortran": np.asfortranarray(rng.random((4, 3))),
        "strided": rng.random(20)[::3],
        "big": rng.random((1 << 22) + 5),  # more than one write step
    }
    ours = io.BytesIO()
    save_npz(ours, arrays)
    reference = io.BytesIO()
    with zipfile.ZipFile(reference, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, value in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o600 << 16
            with zf.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=True)
    assert ours.getvalue() == reference.getvalue()
    ours.seek(0)
    with np.load(ours) as loaded:
        for name, value in arrays.items():
            np.testing.assert_array_equal(loaded[name], value)
