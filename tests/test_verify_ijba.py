"""``facebench verify --protocol ijba`` end to end on a generated IJB-A folder and store,
checked against brute-force loops over templates, pairs and probes; and the bad inputs."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_helpers import assert_user_error
from click.testing import CliRunner, Result
from ijba_fixtures import write_ijba

from facebench.cli import cli
from facebench.store import create_store, normalize_rows


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("ijba")
    record = write_ijba(root, n_splits=3, n_subjects=20, templates_per_subject=3, seed=5)
    rng = np.random.default_rng(0)
    dim = 16
    subjects = sorted(set(record["key_subject"].values()))
    direction = {s: rng.standard_normal(dim) for s in subjects}
    keys = record["keys"]
    raw = np.stack(
        [direction[record["key_subject"][k]] + 1.3 * rng.standard_normal(dim) for k in keys]
    ) * rng.uniform(2, 9, size=(len(keys), 1))
    unit, norms = normalize_rows(raw)
    store = root / "ijba.h5"
    create_store(store, keys, unit, norms, model="synthetic")
    record["store"] = store
    record["unit"] = {k: unit[i].astype(np.float64) for i, k in enumerate(keys)}
    return record


def brute_pool(template: dict[str, Any], unit: dict[str, np.ndarray]) -> np.ndarray:
    """`media` pooling by loops: mean within each media, mean over media, normalize."""
    by_media: dict[int, list[np.ndarray]] = {}
    for key, media in zip(template["keys"], template["media"], strict=True):
        by_media.setdefault(media, []).append(unit[key])
    pooled = np.mean([np.mean(v, axis=0) for v in by_media.values()], axis=0)
    return pooled / np.linalg.norm(pooled)


def brute_tar(scores: list[float], same: list[bool], target: float) -> float:
    n_imp = sum(not s for s in same)
    budget = math.floor(target * n_imp + 1e-9)
    best = 0.0
    for t in [*sorted(set(scores)), math.inf]:
        fp = sum(1 for v, s in zip(scores, same, strict=True) if not s and v >= t)
        if fp <= budget:
            best = max(
                best,
                sum(1 for v, s in zip(scores, same, strict=True) if s and v >= t)
                / (len(same) - n_imp),
            )
    return best


def test_verify_ijba_equals_brute_force(tmp_path: Path, world: dict[str, Any]) -> None:
    out = tmp_path / "ijba.json"
    result = run(
        "verify",
        "--protocol",
        "ijba",
        "--protocol-dir",
        world["root"],
        "--features",
        world["store"],
        "--json",
        out,
        "--far",
        "0.01,0.1",
    )
    assert result.exit_code == 0, (result.output, result.exception)
    assert "1:1 verification" in result.stdout and "1:N open-set" in result.stdout
    report = json.loads(out.read_text())
    assert report["protocol"] == "ijba" and len(report["splits"]) == 3
    unit = world["unit"]
    for entry, split in zip(report["splits"], world["splits"], strict=True):
        pooled = {t["id"]: brute_pool(t, unit) for t in split["verify"]}
        scores = [float(pooled[a] @ pooled[b]) for a, b, _ in split["comparisons"]]
        same = [bool(s) for _, _, s in split["comparisons"]]
        assert entry["n_pairs"] == len(scores) and entry["n_genuine"] == sum(same)
        for point in entry["tar_at_far"]:
            assert point["tar"] == pytest.approx(brute_tar(scores, same, point["far_target"]))
        # 1:N: ranks by loops (ties are practically impossible with random features)
        gallery = {t["subject"]: brute_pool(t, unit) for t in split["gallery"]}
        ranks, n_mated = [], 0
        for probe in split["probe"]:
            f = brute_pool(probe, unit)
            s = {subj: float(f @ g) for subj, g in gallery.items()}
            if probe["subject"] in s:
                n_mated += 1
                ranks.append(1 + sum(v > s[probe["subject"]] for v in s.values()))
        for r in ("1", "5", "10"):
            assert entry["cmc"][r] == pytest.approx(sum(x <= int(r) for x in ranks) / n_mated)
    summary = report["summary"]
    tars = [e["tar_at_far"][1]["tar"] for e in report["splits"]]
    assert summary["tar_at_far"][1]["mean"] == pytest.approx(np.mean(tars))
    assert summary["tar_at_far"][1]["std"] == pytest.approx(np.std(tars, ddof=1))
    data = np.load(tmp_path / "ijba.scores.npz")
    assert data["score"].size == report["n_pairs"]
    assert set(data["split"].tolist()) == {1, 2, 3}


def test_one_split(tmp_path: Path, world: dict[str, Any]) -> None:
    out = tmp_path / "s2.json"
    result = run(
        "verify",
        "--protocol",
        "ijba",
        "--protocol-dir",
        world["root"],
        "--features",
        world["store"],
        "--split",
        "2",
        "--json",
        out,
    )
    assert result.exit_code == 0, (result.output, result.exception)
    report = json.loads(out.read_text())
    assert [e["split"] for e in report["splits"]] == [2]
    assert report["summary"]["tar_at_far"][0]["std"] is None


def test_item_missing_from_store(tmp_path: Path, world: dict[str, Any]) -> None:
    keys = world["keys"][7:]
    unit = np.stack([world["unit"][k] for k in keys])
    store = tmp_path / "partial.h5"
    create_store(store, keys, unit, np.ones(len(keys)), model="m")
    out = tmp_path / "r.json"
    result = run(
        "verify",
        "--protocol",
        "ijba",
        "--protocol-dir",
        world["root"],
        "--features",
        store,
        "--json",
        out,
    )
    assert_user_error(result, "7 of", world["keys"][0])
    assert not out.exists()


def test_probe_template_without_features(tmp_path: Path, world: dict[str, Any]) -> None:
    probe = world["splits"][0]["probe"][0]
    lost = set(probe["keys"])
    keys = [k for k in world["keys"] if k not in lost]
    unit = np.stack([world["unit"][k] for k in keys])
    store = tmp_path / "skipped.h5"
    create_store(
        store,
        keys,
        unit,
        np.ones(len(keys)),
        model="m",
        skipped=[(k, f"{k}: truncated") for k in sorted(lost)],
    )
    args = ["verify", "--protocol", "ijba", "--protocol-dir", world["root"], "--features", store]
    assert_user_error(run(*args), "skipped", "--allow-skipped")
    assert_user_error(run(*args, "--allow-skipped"), "templates have none", str(probe["id"]))


def test_bad_protocol_folders(tmp_path: Path, world: dict[str, Any]) -> None:
    root = tmp_path / "copy"
    shutil.copytree(world["root"] / "IJB-A_11_sets", root / "IJB-A_11_sets")
    shutil.rmtree(root / "IJB-A_11_sets" / "split2")
    result = run(
        "verify", "--protocol", "ijba", "--protocol-dir", root, "--features", world["store"]
    )
    assert_user_error(result, "split2")
    shutil.copytree(world["root"] / "IJB-A_11_sets", root / "fresh" / "IJB-A_11_sets")
    meta = root / "fresh" / "IJB-A_11_sets" / "split1" / "verify_metadata_1.csv"
    lines = meta.read_bytes().split(b"\r\n")
    lines[3] = b"1,2,3"
    meta.write_bytes(b"\r\n".join(lines))
    result = run(
        "verify",
        "--protocol",
        "ijba",
        "--protocol-dir",
        root / "fresh",
        "--features",
        world["store"],
    )
    assert_user_error(result, "verify_metadata_1.csv:4")


def test_ijba_needs_protocol_dir(world: dict[str, Any]) -> None:
    assert_user_error(
        run("verify", "--protocol", "ijba", "--features", world["store"]), "--protocol-dir"
    )


def test_extract_crops_the_face_boxes(tmp_path: Path, world: dict[str, Any]) -> None:
    """IJB-A items are face boxes of full images: extract crops each box (store id
    `<FILE>#<SIGHTING_ID>`), and one image can hold several boxes."""
    import torch
    from PIL import Image

    from facebench.extract.preprocess import PRESETS, preprocess
    from facebench.models.registry import ARCHITECTURES
    from facebench.store import FeatureStore

    rng = np.random.default_rng(0)
    images: dict[str, np.ndarray] = {}
    for key in world["keys"]:
        file = key.rsplit("#", 1)[0]
        if file not in images:
            x, y, w, h = world["boxes"][key]
            size = (int(y + h) + 20, int(x + w) + 20)
            images[file] = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            path = tmp_path / "data" / file
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[file]).save(path)
    # every box must fit its image: grow images that another box of theirs overflows
    for key in world["keys"]:
        file = key.rsplit("#", 1)[0]
        x, y, w, h = world["boxes"][key]
        height, width = images[file].shape[:2]
        if x + w > width or y + h > height:
            grown = np.zeros(
                (max(height, int(y + h) + 20), max(width, int(x + w) + 20), 3), dtype=np.uint8
            )
            grown[:height, :width] = images[file]
            images[file] = grown
            Image.fromarray(grown).save(tmp_path / "data" / file)
    torch.manual_seed(0)
    module = ARCHITECTURES["small-cnn"].build().eval()
    weights = tmp_path / "w.pth"
    torch.save(module.state_dict(), weights)
    out = tmp_path / "ijba.h5"
    result = run(
        "extract",
        tmp_path / "data",
        "--protocol",
        "ijba",
        "--protocol-dir",
        world["root"],
        "--arch",
        "small-cnn",
        "--weights",
        weights,
        "-o",
        out,
        "--workers",
        "0",
        "--no-progress",
    )
    assert result.exit_code == 0, (result.output, result.exception)
    with FeatureStore.open(out) as store:
        assert store.ids == world["keys"]
        unit, _ = store.read_all()
    key = world["keys"][0]
    config = PRESETS[ARCHITECTURES["small-cnn"].preset]
    crop = preprocess(images[key.rsplit("#", 1)[0]], config, box=world["boxes"][key])
    with torch.no_grad():
        raw = module(torch.from_numpy(crop[None])).numpy()[0]
    np.testing.assert_allclose(unit[0], raw / np.linalg.norm(raw), atol=1e-5)
