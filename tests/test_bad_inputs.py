"""Every input file of the command line, damaged the ways files go wrong, is one clear error.

The matrix (docs/reliability.md, "Every input, file by file"): each file a command reads,
from a valid one in its format, is made missing, empty, truncated (cut inside a line or a
record), UTF-16 (text formats; a UTF-8 reader sees NUL bytes) or unreadable (permission
denied; tests run as root, which permissions do not stop, so the ``open`` of that file
raises EACCES). Every case must end with exit code 2 and one error line that names the
damaged file (click's usage error for a missing file it checks itself), no traceback, and
no output written (an extraction stopped by a bad image keeps its work folder, to resume).

Content-level damage (wrong columns, duplicates, unknown ids, NaN, schema versions, ...) is
tested per format in the modules the table names; the cases here that no other module
covers are at the end.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import io
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner, Result
from ijba_fixtures import write_ijba
from ijbc_fixtures import write_ijbc
from PIL import Image

from facebench.cli import cli
from facebench.extract import journal
from facebench.store import create_store, normalize_rows

POINTS = "38.3 51.7 73.5 51.5 56.0 71.7 41.5 92.4 70.7 92.2"


def invoke(args: list[str | Path]) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Valid inputs of every command, in their official formats."""
    root = tmp_path_factory.mktemp("inputs")
    names = ["Ann", "Bob", "Cid", "Dee"]
    lines = ["10\t2"]
    for fold in range(10):
        lines += [f"{names[(fold + k) % 4]}\t1\t{2 + (fold + k) % 3}" for k in range(2)]
        lines += [f"{names[k % 4]}\t{1 + fold % 4}\t{names[(k + 1) % 4]}\t2" for k in range(2)]
    (root / "pairs.txt").write_text("\n".join(lines) + "\n")
    ids = [f"{n}/{n}_{i:04d}.jpg" for n in names for i in range(1, 5)]
    raw = np.random.default_rng(0).normal(size=(len(ids), 8))
    create_store(root / "s.h5", ids, *normalize_rows(raw), model="synthetic")
    result = invoke(["verify", "--protocol", "lfw", "--pairs", root / "pairs.txt",
                     "--features", root / "s.h5", "--json", root / "r.json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    (root / "splits.txt").write_text(
        "split number, pair number, first name, second name, is same\n"
        "1, 1, Ann_A/0, Ann_A/2, 1\n1, 2, Ann_A/1, Bob_B/0, 0\n"
    )
    write_ijba(root / "ijba", n_splits=1, n_subjects=4, templates_per_subject=2, seed=1)
    write_ijbc(root / "ijbc", n_subjects=4, seed=1, with_1n=False)
    np.save(root / "f.npy", raw.astype(np.float32))
    (root / "ids.txt").write_text("".join(f"{i}\n" for i in ids))
    images = root / "images"
    rng = np.random.default_rng(1)
    for i in range(3):
        (images / "p").mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, size=(24, 20, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / "p" / f"{i}.png")
    (root / "list.txt").write_text("p/0.png\np/1.png\np/2.png\n")
    (root / "landmarks.txt").write_text("".join(f"p/{i}.png {POINTS}\n" for i in range(3)))
    import torch

    from facebench.models.registry import ARCHITECTURES

    torch.manual_seed(0)
    module = ARCHITECTURES["small-cnn"].build().eval()
    torch.save(module.state_dict(), root / "w.pth")
    torch.jit.trace(module, torch.zeros(1, 3, 32, 32)).save(str(root / "model.pt"))
    parts = root / "m.h5.parts"
    job = journal.Job(tuple(ids[:6]), 3, "m", "", {"name": "test"}, flip=False)
    journal.prepare_parts(parts, job, discard_other=False)
    for chunk in range(job.n_chunks):
        chunk_ids = list(job.ids[job.chunk_slice(chunk)])
        journal.write_chunk(parts, chunk, chunk_ids, chunk_ids, raw[: len(chunk_ids)], None, [])
    return root


@dataclass(frozen=True)
class Input:
    """An input file of a command: where it is in ``world`` and the command that reads it."""

    file: str
    command: Callable[[Path, Path], list[str | Path]]  # (world, output folder) -> arguments
    text: bool = True

    def args(self, world: Path, out: Path) -> list[str | Path]:
        return self.command(world, out)


def _extract(world: Path, out: Path, *extra: str | Path) -> list[str | Path]:
    return ["extract", world / "images", "-o", out / "e.h5", "--workers", "0", "--device",
            "cpu", "--no-progress", *extra]  # fmt: skip


def _verify(world: Path, protocol: str, *extra: str | Path) -> list[str | Path]:
    return ["verify", "--protocol", protocol, "--features", world / "s.h5", *extra]


INPUTS: dict[str, Input] = {
    "lfw-pairs": Input(
        "pairs.txt",
        lambda w, o: _verify(w, "lfw", "--pairs", w / "pairs.txt", "--json", o / "r.json"),
    ),
    "ytf-splits": Input("splits.txt", lambda w, o: _verify(w, "ytf", "--pairs", w / "splits.txt")),
    "ijba-metadata": Input(
        "ijba/IJB-A_11_sets/split1/verify_metadata_1.csv",
        lambda w, o: _verify(w, "ijba", "--protocol-dir", w / "ijba"),
    ),
    "ijbc-tid-mid": Input(
        "ijbc/meta/ijbc_face_tid_mid.txt",
        lambda w, o: _verify(w, "ijbc", "--protocol-dir", w / "ijbc"),
    ),
    "store": Input("s.h5", lambda w, o: _verify(w, "lfw", "--pairs", w / "pairs.txt"), text=False),
    "report": Input("r.json", lambda w, o: ["plot-roc", w / "r.json", "-o", o / "roc.png"]),
    "features-npy": Input(
        "f.npy",
        lambda w, o: ["import", w / "f.npy", "--ids", w / "ids.txt", "-o", o / "i.h5"],
        text=False,
    ),
    "ids-file": Input(
        "ids.txt", lambda w, o: ["import", w / "f.npy", "--ids", w / "ids.txt", "-o", o / "i.h5"]
    ),
    "list-file": Input(
        "list.txt",
        lambda w, o: _extract(
            w, o, "--list", w / "list.txt", "--arch", "small-cnn", "--weights", w / "w.pth"
        ),
    ),
    "landmarks-file": Input(
        "landmarks.txt",
        lambda w, o: _extract(
            w,
            o,
            "--landmarks",
            w / "landmarks.txt",
            "--arch",
            "small-cnn",
            "--weights",
            w / "w.pth",
        ),
    ),
    "weights": Input(
        "w.pth",
        lambda w, o: _extract(w, o, "--arch", "small-cnn", "--weights", w / "w.pth"),
        text=False,
    ),
    "torchscript": Input(
        "model.pt",
        lambda w, o: _extract(w, o, "--model", w / "model.pt", "--preset", "small32"),
        text=False,
    ),
    "image": Input(
        "images/p/1.png",
        lambda w, o: _extract(
            w, o, "--list", w / "list.txt", "--arch", "small-cnn", "--weights", w / "w.pth"
        ),
        text=False,
    ),
    "work-folder-manifest": Input(
        "m.h5.parts/job.json", lambda w, o: ["merge", w / "m.h5.parts", "-o", o / "m.h5"]
    ),
    "work-folder-chunk": Input(
        "m.h5.parts/chunk-000001.npz",
        lambda w, o: ["merge", w / "m.h5.parts", "-o", o / "m.h5", "--keep-parts"],
        text=False,
    ),
}

DAMAGES = ("missing", "empty", "truncated", "utf16", "permission-denied")
#: What the error names instead of the file, where the file's damage shows elsewhere.
NAMED_INSTEAD = {
    # a list cut inside its last line names an image that is not there
    ("list-file", "truncated"): "images are missing",
    # a chunk file that is not there is a chunk not finished: the folder is named
    ("work-folder-chunk", "missing"): "m.h5.parts: 1 of 2 chunks are not finished (first: 1)",
}
CASES = [
    (name, damage)
    for name, spec in INPUTS.items()
    for damage in DAMAGES
    if damage != "utf16" or spec.text
]
#: Cases that fail today, each pinned by a strict xfail naming the module to fix.
KNOWN_GAPS: dict[tuple[str, str], str] = {}


def truncated(data: bytes) -> bytes:
    """``data`` cut at about 60%, inside a line (not just after a line end)."""
    cut = len(data) * 3 // 5
    while cut > 1 and data[cut - 1 : cut] in (b"\n", b"\r"):
        cut -= 1
    return data[:cut]


@contextlib.contextmanager
def unreadable(path: Path) -> Iterator[None]:
    """Opening ``path`` (Python's open, h5py) raises EACCES, as for a user without rights."""
    original_open, original_h5 = io.open, h5py.File

    def denied(file: object) -> bool:
        return isinstance(file, (str, os.PathLike)) and Path(file).resolve() == path.resolve()

    def guarded_open(file: object, *args: object, **kwargs: object) -> object:
        if denied(file):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(file))
        return original_open(file, *args, **kwargs)  # type: ignore[call-overload]

    def guarded_h5(name: object, *args: object, **kwargs: object) -> object:
        if denied(name):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(name))
        return original_h5(name, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(builtins, "open", guarded_open)
        patch.setattr(io, "open", guarded_open)
        patch.setattr(h5py, "File", guarded_h5)
        yield


@pytest.fixture()
def scratch(world: Path, tmp_path: Path) -> Path:
    """A private copy of ``world`` (the damage stays in it) and an empty output folder."""
    copy = tmp_path / "world"
    shutil.copytree(world, copy, symlinks=True)
    (tmp_path / "out").mkdir()
    return copy


@pytest.mark.parametrize(
    ("name", "damage"),
    [
        pytest.param(*case, marks=pytest.mark.xfail(strict=True, reason=KNOWN_GAPS[case]))
        if case in KNOWN_GAPS
        else case
        for case in CASES
    ],
    ids=[f"{n}-{d}" for n, d in CASES],
)
def test_a_damaged_input_file_is_one_clear_error(scratch: Path, name: str, damage: str) -> None:
    spec = INPUTS[name]
    target = scratch / spec.file
    out = scratch.parent / "out"
    data = target.read_bytes()
    if damage == "missing":
        target.unlink()
    elif damage == "empty":
        target.write_bytes(b"")
    elif damage == "truncated":
        target.write_bytes(truncated(data))
    elif damage == "utf16":
        target.write_bytes(data.decode("utf-8").encode("utf-16"))
    with unreadable(target) if damage == "permission-denied" else contextlib.nullcontext():
        result = invoke(spec.args(scratch, out))
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    if errors:  # facebench's own error: one line (after the progress lines of extract)
        (message,) = errors
        assert result.stderr.rstrip().endswith(message)
    else:  # click's usage error for a path it checks itself
        message = result.stderr.strip()
        assert "does not exist" in message, message
    assert NAMED_INSTEAD.get((name, damage), target.name) in message, message
    if damage == "permission-denied":  # the reason, not a guess at another one
        assert "Permission denied" in message, message
    # no output; an extraction stopped by a bad image keeps its work folder to resume
    assert [p.name for p in out.iterdir() if p.name != "e.h5.parts"] == []


# --- content-level cases no other module covers --------------------------------------------------


def test_a_report_of_another_schema_version_or_not_a_report(scratch: Path) -> None:
    out = scratch.parent / "out"
    report = json.loads((scratch / "r.json").read_text())
    for content, phrase in (
        ({**report, "schema_version": 99}, "schema_version 99 is not known"),
        ([1, 2, 3], "not a facebench report"),
        ({"protocol": "lfw"}, "not a facebench report"),
    ):
        (scratch / "r.json").write_text(json.dumps(content))
        result = invoke(["plot-roc", scratch / "r.json", "-o", out / "roc.png"])
        assert result.exit_code == 2 and phrase in result.stderr, result.output
        assert list(out.iterdir()) == []


@pytest.mark.parametrize(
    "damage",
    [
        "missing",
        "truncated",
        "another-report",
    ],
)
def test_compare_names_a_scores_file_that_does_not_go_with_its_report(
    scratch: Path, damage: str
) -> None:
    other = scratch / "r2.json"
    other.write_bytes((scratch / "r.json").read_bytes())
    scores = scratch / "r2.scores.npz"
    data = (scratch / "r.scores.npz").read_bytes()
    if damage == "missing":
        pass
    elif damage == "truncated":
        scores.write_bytes(truncated(data))
    else:  # the per-pair file of a report with other scores
        with np.load(scratch / "r.scores.npz") as arrays:
            changed = {name: arrays[name] for name in arrays.files}
        changed["score"] = changed["score"][::-1].copy()
        np.savez(scores, **changed)  # type: ignore[arg-type]
    result = invoke(["compare", scratch / "r.json", other])
    assert result.exit_code == 2, (result.output, result.exception)
    assert "r2.scores.npz" in result.stderr and "Traceback" not in result.output


# --- command-line options ----------------------------------------------------------------------

_V = ("verify", "--protocol", "lfw", "--pairs", "{w}/pairs.txt", "--features", "{w}/s.h5")
_E = ("extract", "{w}/images", "--arch", "small-cnn", "--weights", "{w}/w.pth", "-o", "{o}/e.h5")
_I = ("import", "{w}/f.npy", "--ids", "{w}/ids.txt", "-o", "{o}/i.h5")
OPTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "verify-far-not-a-number": ((*_V, "--far", "abc"), "expected comma-separated numbers"),
    "verify-far-empty-item": ((*_V, "--far", "1e-3,,1e-2"), "expected comma-separated numbers"),
    "verify-far-zero": ((*_V, "--far", "0"), "every FAR must lie in (0, 1]"),
    "verify-far-above-one": ((*_V, "--far", "1.5"), "every FAR must lie in (0, 1]"),
    "verify-far-nan": ((*_V, "--far", "nan"), "every FAR must lie in (0, 1]"),
    "verify-unknown-tar-rule": ((*_V, "--tar-rule", "best"), "'best' is not one of"),
    "verify-split-for-lfw": ((*_V, "--split", "2"), "--split is for IJB protocols"),
    "verify-n-frames-zero": ((*_V, "--n-frames", "0"), "0 is not in the range x>=1"),
    "verify-memory-budget-tiny": ((*_V, "--memory-budget", "0"), "not in the range x>=16"),
    "verify-flips-the-store-lacks": ((*_V, "--flip-fusion", "concat"), "needs mirrored-image"),
    "verify-no-protocol": (("verify", "--features", "{w}/s.h5"), "--protocol NAME is missing"),
    "verify-fpir-for-lfw": ((*_V, "--fpir", "0.1"), "--fpir"),
    "import-unknown-compression": ((*_I, "--compression", "zstd"), "'zstd' is not one of"),
    "import-key-for-npy": ((*_I, "--key", "x"), "Expected no --key for a .npy file"),
    "extract-batch-size-zero": ((*_E, "--batch-size", "0"), "0 is not in the range x>=1"),
    "extract-chunk-size-zero": ((*_E, "--chunk-size", "0"), "0 is not in the range x>=1"),
    "extract-unknown-device": ((*_E, "--device", "tpu"), "Expected --device in"),
    "extract-mean-of-two": ((*_E, "--mean", "1,2"), "Expected --mean as one number or three"),
    "extract-std-zero": ((*_E, "--std", "0,1,1"), "expected std > 0 in every channel"),
    "extract-unknown-preset": ((*_E, "--preset", "nope"), "Expected --preset in"),
    "extract-unknown-precision": ((*_E, "--precision", "fp8"), "'fp8' is not one of"),
    "extract-tf32-on-the-cpu": (
        (*_E, "--precision", "tf32", "--device", "cpu"),
        "tf32 needs an NVIDIA GPU",
    ),
    "extract-no-model": (("extract", "{w}/images", "-o", "{o}/e.h5"), "Expected --model FILE"),
    "extract-model-and-arch": ((*_E, "--model", "{w}/model.pt"), "Expected either --model"),
    "plot-roc-unknown-suffix": (
        ("plot-roc", "{w}/r.json", "-o", "{o}/roc.jpeg"),
        "expected an output suffix in .png, .pdf, .svg",
    ),
}


@pytest.mark.parametrize("case", list(OPTIONS))
def test_a_bad_option_is_one_clear_error(world: Path, tmp_path: Path, case: str) -> None:
    args, phrase = OPTIONS[case]
    result = invoke([a.format(w=world, o=tmp_path) for a in args])
    assert result.exit_code == 2, (result.output, result.exception)
    assert phrase in result.stderr and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("output", ["nan", "zero"])
def test_a_model_that_gives_nan_or_zero_features_is_named(
    world: Path, tmp_path: Path, output: str
) -> None:
    import torch

    class Broken(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            flat = x.flatten(1)[:, :8]
            return flat * float("nan") if output == "nan" else flat * 0.0

    model = tmp_path / f"{output}.pt"
    torch.jit.trace(Broken(), torch.zeros(1, 3, 32, 32)).save(str(model))
    out = tmp_path / "out"
    args = _extract(world, out, "--model", model, "--preset", "small32", "--list")
    result = invoke([*args, world / "list.txt"])
    assert result.exit_code == 2, (result.output, result.exception)
    assert "p/0.png: the model gave a feature with a zero or non-finite norm" in result.stderr
    assert not (out / "e.h5").exists()
