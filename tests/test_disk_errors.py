"""Disk full, read-only or forbidden output: one clear error, and what was done is kept.

Tests run as root (permissions do not stop root) and cannot mount a full or read-only file
system, so the OS errors are injected at the write calls: ``tempfile.mkstemp`` (creating an
output in a read-only or forbidden folder: EROFS, EACCES), ``os.fsync`` and the library
writes (a full disk surfaces when data is written or flushed: ENOSPC), ``Path.mkdir`` (the
work folder of an extraction). One test reaches a real write error instead: a file-size
limit (``ulimit -f``) makes the kernel refuse the write (EFBIG) in a child process.

Every case checks what the user sees and what is left: exit code 2; one ``error:`` line
that names the output, says what the errno means and what to do; no traceback; nothing
under the final name (or the previous file, byte for byte, with ``--overwrite``); no
temporary file; files written before the error intact, and a resumed run equal to an
uninterrupted one.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import h5py
import numpy as np
import pytest
import torch
from cli_helpers import assert_user_error
from click.testing import CliRunner, Result
from PIL import Image

from facebench.cli import cli
from facebench.fileio import OutputWriteError, atomic_path, write_error, write_text_atomic
from facebench.models.registry import ARCHITECTURES
from facebench.store import create_store, normalize_rows

ROOT = Path(__file__).resolve().parents[1]

#: errno -> (its name, the phrase of the advice the message must give)
ADVICE = {
    errno.ENOSPC: ("ENOSPC", "free space"),
    errno.EACCES: ("EACCES", "permissions"),
    errno.EROFS: ("EROFS", "read-only"),
}


def errno_id(value: object) -> str | None:
    """Test ids that read ENOSPC rather than 28."""
    return errno.errorcode.get(value) if isinstance(value, int) else None


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def inject(
    monkeypatch: pytest.MonkeyPatch,
    owner: Any,
    name: str,
    code: int,
    when: Callable[..., bool] = lambda *args, **kwargs: True,
    after: int = 0,
) -> dict[str, int]:
    """Make ``owner.name`` raise OSError(``code``) on its calls that ``when`` accepts,
    after letting the first ``after`` of them through. Returns the call counter."""
    original = getattr(owner, name)
    calls = {"matched": 0}

    def failing(*args: Any, **kwargs: Any) -> Any:
        if when(*args, **kwargs):
            calls["matched"] += 1
            if calls["matched"] > after:
                raise OSError(code, os.strerror(code))
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, failing)
    return calls


def in_folder(folder: Path) -> Callable[..., bool]:
    """A ``when`` for ``tempfile.mkstemp``: the temporary file is created in ``folder``."""
    return lambda *args, **kwargs: Path(str(kwargs.get("dir", ""))) == folder


def temporary_of(name: str) -> Callable[..., bool]:
    """A ``when`` for ``tempfile.mkstemp``: the temporary file of the output ``name``."""
    return lambda *args, **kwargs: kwargs.get("prefix") == f".{name}."


def assert_disk_error(result: Result, output: Path, code: int) -> None:
    """Exit 2, one error line naming ``output``, the errno's meaning and the advice."""
    name, advice = ADVICE[code]
    assert_user_error(result, str(output), os.strerror(code), f"({name})", advice)


def leftovers(folder: Path) -> list[str]:
    """Temporary files of atomic writes left in ``folder`` (there must be none)."""
    return sorted(p.name for p in folder.rglob(".*.tmp"))


# --- fileio: the messages and the guarantees, directly -----------------------------------------


@pytest.mark.parametrize("code", sorted(ADVICE), ids=errno_id)
def test_write_error_names_path_meaning_and_remedy(code: int) -> None:
    message = write_error(Path("out/s.h5"), OSError(code, "x"))
    name, advice = ADVICE[code]
    assert message.startswith(f"out/s.h5: cannot write the output: {os.strerror(code)} ({name})")
    assert advice in message and "\n" not in message


@pytest.mark.parametrize("stage", ["mkstemp", "body", "fsync", "replace"])
def test_atomic_path_turns_os_errors_into_one_error_and_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage: str
) -> None:
    target = tmp_path / "out.txt"
    target.write_text("previous")
    if stage == "mkstemp":
        inject(monkeypatch, tempfile, "mkstemp", errno.EROFS)
    elif stage == "fsync":
        inject(monkeypatch, os, "fsync", errno.ENOSPC)
    elif stage == "replace":
        inject(monkeypatch, os, "replace", errno.EACCES)
    with pytest.raises(OutputWriteError) as info:
        with atomic_path(target, overwrite=True) as tmp:
            if stage == "body":
                raise OSError(errno.ENOSPC, "No space left on device")
            tmp.write_text("new")
    assert info.value.errno in ADVICE and info.value.filename == str(target)
    assert isinstance(info.value, OSError) and str(info.value).startswith(f"{target}: ")
    assert target.read_text() == "previous"
    assert leftovers(tmp_path) == []


def test_atomic_path_lets_other_errors_pass_and_cleans_up(tmp_path: Path) -> None:
    with pytest.raises(KeyError), atomic_path(tmp_path / "out.txt") as tmp:
        tmp.write_text("half")
        raise KeyError("a bug")
    assert list(tmp_path.iterdir()) == []


def test_write_text_atomic_is_durable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    original = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), original(fd))[1])
    write_text_atomic(tmp_path / "a.json", "{}")
    assert len(synced) == 2  # the file before the rename, the folder after it
    assert (tmp_path / "a.json").read_text() == "{}"


# --- facebench import ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def import_inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("import")
    rng = np.random.default_rng(0)
    np.save(folder / "f.npy", rng.normal(size=(30, 8)).astype(np.float32))
    (folder / "ids.txt").write_text("".join(f"p{i % 5}/{i}.jpg\n" for i in range(30)))
    return folder / "f.npy", folder / "ids.txt"


@pytest.mark.parametrize(
    ("code", "where"),
    [(errno.ENOSPC, "fsync"), (errno.EACCES, "mkstemp"), (errno.EROFS, "mkstemp")],
    ids=errno_id,
)
def test_import_output_cannot_be_written(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    import_inputs: tuple[Path, Path],
    code: int,
    where: str,
) -> None:
    features, ids = import_inputs
    out = tmp_path / "out" / "s.h5"
    out.parent.mkdir()
    if where == "fsync":
        inject(monkeypatch, os, "fsync", code)
    else:
        inject(monkeypatch, tempfile, "mkstemp", code, when=in_folder(out.parent))
    result = run("import", features, "--ids", ids, "-o", out)
    assert_disk_error(result, out, code)
    assert not out.exists() and leftovers(out.parent) == []


def test_import_overwrite_on_a_full_disk_keeps_the_old_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, import_inputs: tuple[Path, Path]
) -> None:
    features, ids = import_inputs
    out = tmp_path / "s.h5"
    assert run("import", features, "--ids", ids, "-o", out).exit_code == 0
    before = out.read_bytes()
    inject(monkeypatch, os, "fsync", errno.ENOSPC)
    result = run("import", features, "--ids", ids, "-o", out, "--overwrite")
    assert_disk_error(result, out, errno.ENOSPC)
    assert out.read_bytes() == before and leftovers(tmp_path) == []


def too_little_space(monkeypatch: pytest.MonkeyPatch, free: int = 1000) -> None:
    """``shutil.disk_usage`` reports ``free`` bytes left (a nearly full disk)."""
    usage = SimpleNamespace(total=10**9, used=10**9 - free, free=free)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage)


def test_import_checks_the_free_space_before_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, import_inputs: tuple[Path, Path]
) -> None:
    features, ids = import_inputs
    out = tmp_path / "s.h5"
    too_little_space(monkeypatch)
    result = run("import", features, "--ids", ids, "-o", out)
    assert_disk_error(result, out, errno.ENOSPC)
    assert "MB needed, 0.0 MB free" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_import_disk_full_inside_the_hdf5_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, import_inputs: tuple[Path, Path]
) -> None:
    features, ids = import_inputs
    out = tmp_path / "s.h5"
    inject(monkeypatch, h5py, "File", errno.ENOSPC, when=lambda *a, **k: "w" in a[1:2])
    result = run("import", features, "--ids", ids, "-o", out)
    assert not out.exists() and leftovers(tmp_path) == []
    assert_disk_error(result, out, errno.ENOSPC)


_LIMITED = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
sys.argv = ["facebench", *sys.argv[1:]]
from facebench.cli import main
main()
"""


def test_import_real_write_error_from_the_kernel(
    tmp_path: Path,
) -> None:
    rows = np.random.default_rng(1).normal(size=(3000, 64)).astype(np.float32)
    np.save(tmp_path / "big.npy", rows)
    (tmp_path / "ids.txt").write_text("".join(f"p/{i}.jpg\n" for i in range(3000)))
    out = tmp_path / "s.h5"
    command = [sys.executable, "-c", _LIMITED, "import", str(tmp_path / "big.npy")]
    command += ["--ids", str(tmp_path / "ids.txt"), "-o", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr and "File too large" in result.stderr
    assert not out.exists() and leftovers(tmp_path) == []


# --- facebench extract and merge ---------------------------------------------------------------


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(10):
        (root / f"p{i % 3}").mkdir(exist_ok=True)
        pixels = rng.integers(0, 256, size=(20, 18, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"p{i % 3}" / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "small.pth"
    torch.save(ARCHITECTURES["small-cnn"].build().state_dict(), path)
    return path


def extract(images: Path, weights: Path, out: Path, *extra: str) -> Result:
    return run(
        "extract", images, "--arch", "small-cnn", "--weights", weights, "-o", out,
        "--workers", "0", "--device", "cpu", "--chunk-size", "3", "--batch-size", "2",
        "--no-progress", *extra,
    )  # fmt: skip


@pytest.fixture(scope="module")
def reference(images: Path, weights: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "s.h5"
    result = extract(images, weights, out)
    assert result.exit_code == 0, result.output
    return out


def same_store(a: Path, b: Path) -> None:
    with h5py.File(a, "r") as first, h5py.File(b, "r") as second:
        for name in ("ids", "features", "norms"):
            np.testing.assert_array_equal(first[name][...], second[name][...])
        assert first.attrs["content_sha256"] == second.attrs["content_sha256"]


def test_extract_disk_full_at_a_chunk_keeps_the_finished_ones_and_resumes(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    images: Path,
    weights: Path,
    reference: Path,
) -> None:
    out = tmp_path / "s.h5"
    parts = tmp_path / "s.h5.parts"
    with monkeypatch.context() as patch:
        inject(
            patch,
            Path,
            "write_bytes",
            errno.ENOSPC,
            when=lambda path, data: path.name.startswith(".chunk-"),
            after=2,
        )
        result = extract(images, weights, out)
    assert_disk_error(result, parts / "chunk-000002.npz", errno.ENOSPC)
    assert "the chunks finished before are kept" in result.stderr
    assert "the same command resumes" in result.stderr
    assert sorted(p.name for p in parts.iterdir()) == [
        "chunk-000000.npz",
        "chunk-000001.npz",
        "job.json",
    ]
    assert not out.exists()
    result = extract(images, weights, out)
    assert result.exit_code == 0, result.output
    assert "resuming" in result.stderr and "2 of 4 chunks already done" in result.stderr
    same_store(out, reference)
    assert not parts.exists()


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS], ids=errno_id)
def test_extract_work_folder_cannot_be_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, images: Path, weights: Path, code: int
) -> None:
    out = tmp_path / "s.h5"
    inject(monkeypatch, Path, "mkdir", code, when=lambda path, *a, **k: path.name == "s.h5.parts")
    result = extract(images, weights, out)
    assert_disk_error(result, tmp_path / "s.h5.parts", code)
    assert "work folder" in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("code", "where"), [(errno.EROFS, "mkstemp"), (errno.ENOSPC, "fsync")], ids=errno_id
)
def test_extract_store_cannot_be_written_keeps_every_chunk(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    images: Path,
    weights: Path,
    reference: Path,
    code: int,
    where: str,
) -> None:
    out = tmp_path / "s.h5"
    parts = tmp_path / "s.h5.parts"
    with monkeypatch.context() as patch:
        if where == "mkstemp":
            inject(patch, tempfile, "mkstemp", code, when=temporary_of("s.h5"))
        else:  # the chunk files are synced before the store: fail on the store's
            original = os.fsync

            def fsync(fd: int) -> None:
                target = os.readlink(f"/proc/self/fd/{fd}")
                if Path(target).name.startswith(".s.h5.") and target.endswith(".tmp"):
                    raise OSError(code, os.strerror(code))
                original(fd)

            patch.setattr(os, "fsync", fsync)
        result = extract(images, weights, out)
    assert_disk_error(result, out, code)
    assert f"every chunk is kept in {parts}" in result.stderr
    assert "run the same command again" in result.stderr and "facebench merge" in result.stderr
    assert len(list(parts.glob("chunk-*.npz"))) == 4 and leftovers(tmp_path) == []
    assert not out.exists()
    result = extract(images, weights, out)
    assert result.exit_code == 0, result.output
    same_store(out, reference)


def test_extract_checks_the_free_space_before_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, images: Path, weights: Path
) -> None:
    out = tmp_path / "s.h5"
    too_little_space(monkeypatch)
    result = extract(images, weights, out)
    assert_disk_error(result, out, errno.ENOSPC)
    assert "every chunk is kept" in result.stderr and not out.exists()
    assert len(list((tmp_path / "s.h5.parts").glob("chunk-*.npz"))) == 4


def test_merge_disk_full_keeps_the_parts_and_the_old_output(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    images: Path,
    weights: Path,
    reference: Path,
) -> None:
    out = tmp_path / "s.h5"
    parts = tmp_path / "s.h5.parts"
    with monkeypatch.context() as patch:  # an extraction stopped before its store
        inject(patch, tempfile, "mkstemp", errno.EROFS, when=temporary_of("s.h5"))
        extract(images, weights, out)
    chunks = {p.name: p.read_bytes() for p in parts.iterdir()}
    merged = tmp_path / "merged.h5"
    merged.write_bytes(b"an older store")
    inject(monkeypatch, os, "fsync", errno.ENOSPC)
    result = run("merge", parts, "-o", merged, "--overwrite")
    assert_disk_error(result, merged, errno.ENOSPC)
    assert merged.read_bytes() == b"an older store"
    assert {p.name: p.read_bytes() for p in parts.iterdir()} == chunks
    assert leftovers(tmp_path) == []
    monkeypatch.undo()
    result = run("merge", parts, "-o", merged, "--overwrite")
    assert result.exit_code == 0, result.output
    same_store(merged, reference)


def test_merge_reports_a_work_folder_it_cannot_remove(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    images: Path,
    weights: Path,
) -> None:
    out = tmp_path / "s.h5"
    with monkeypatch.context() as patch:
        inject(patch, tempfile, "mkstemp", errno.EROFS, when=temporary_of("s.h5"))
        extract(images, weights, out)
    inject(monkeypatch, shutil, "rmtree", errno.EACCES)
    result = run("merge", tmp_path / "s.h5.parts", "-o", out)
    assert result.exit_code == 0, result.output  # the store is written: that is what counts
    assert out.exists() and "could not remove the work folder" in result.stderr
    assert "Permission denied" in result.stderr and "delete it by hand" in result.stderr


# --- facebench verify --json, plot-roc and train -----------------------------------------------


@pytest.fixture(scope="module")
def small_lfw(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 10-fold pairs file in LFW's format over 4 people, and a store of their images."""
    folder = tmp_path_factory.mktemp("lfw")
    names = ["Ann", "Bob", "Cid", "Dee"]
    lines = ["10\t2"]
    for fold in range(10):
        lines += [f"{names[(fold + k) % 4]}\t1\t{2 + (fold + k) % 3}" for k in range(2)]
        lines += [f"{names[k % 4]}\t{1 + fold % 4}\t{names[(k + 1) % 4]}\t2" for k in range(2)]
    pairs = folder / "pairs.txt"
    pairs.write_text("\n".join(lines) + "\n")
    ids = [f"{n}/{n}_{i:04d}.jpg" for n in names for i in range(1, 5)]
    rng = np.random.default_rng(2)
    centres = {n: rng.normal(size=16) for n in names}
    raw = np.stack([centres[i.split("/")[0]] + 0.8 * rng.normal(size=16) for i in ids])
    store = folder / "s.h5"
    create_store(store, ids, *normalize_rows(raw), model="synthetic")
    return pairs, store


def verify(small_lfw: tuple[Path, Path], report: Path, *extra: str) -> Result:
    pairs, store = small_lfw
    return run(
        "verify", "--protocol", "lfw", "--pairs", pairs, "--features", store, "--json", report,
        *extra,
    )  # fmt: skip


def test_verify_report_on_a_full_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_lfw: tuple[Path, Path]
) -> None:
    report = tmp_path / "r.json"
    inject(
        monkeypatch, Path, "write_text", errno.ENOSPC, when=lambda p, *a, **k: ".r.json." in p.name
    )
    result = verify(small_lfw, report)
    assert_disk_error(result, report, errno.ENOSPC)
    assert not report.exists() and leftovers(tmp_path) == []
    # the report and its per-pair scores are renamed into place as a pair, after both
    # were written: the failed write leaves neither, and the re-run needs no --overwrite
    scores = tmp_path / "r.scores.npz"
    assert not scores.exists()
    monkeypatch.undo()
    result = verify(small_lfw, report)
    assert result.exit_code == 0, result.output
    assert report.exists() and scores.exists()
    assert np.load(scores)["score"].size == 40


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS], ids=errno_id)
def test_verify_report_in_a_read_only_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_lfw: tuple[Path, Path], code: int
) -> None:
    report = tmp_path / "reports" / "r.json"
    report.parent.mkdir()
    inject(monkeypatch, tempfile, "mkstemp", code, when=in_folder(report.parent))
    result = verify(small_lfw, report)
    assert_disk_error(result, report.with_name("r.scores.npz"), code)
    assert list(report.parent.iterdir()) == []


@pytest.fixture(scope="module")
def fold_report(tmp_path_factory: pytest.TempPathFactory, small_lfw: tuple[Path, Path]) -> Path:
    report = tmp_path_factory.mktemp("report") / "r.json"
    result = verify(small_lfw, report)
    assert result.exit_code == 0, result.output
    return report


@pytest.mark.parametrize(
    ("code", "where"), [(errno.ENOSPC, "savefig"), (errno.EROFS, "mkstemp")], ids=errno_id
)
def test_plot_roc_cannot_write_the_figure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fold_report: Path, code: int, where: str
) -> None:
    from matplotlib.figure import Figure

    out = tmp_path / "roc.png"
    if where == "savefig":
        inject(monkeypatch, Figure, "savefig", code)
    else:
        inject(monkeypatch, tempfile, "mkstemp", code, when=in_folder(tmp_path))
    result = run("plot-roc", fold_report, "-o", out)
    assert_disk_error(result, out, code)
    assert list(tmp_path.iterdir()) == []


def train(out: Path, *extra: str) -> Result:
    return run(
        "train", "digits", "--epochs", "1", "--max-per-class", "10", "--batch-size", "32",
        "--device", "cpu", "--no-progress", "-o", out, *extra,
    )  # fmt: skip


def test_train_checkpoint_on_a_full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "m.pt"
    out.write_bytes(b"the previous checkpoint")
    inject(monkeypatch, torch, "save", errno.ENOSPC)
    result = train(out, "--overwrite")
    assert_disk_error(result, out, errno.ENOSPC)
    assert out.read_bytes() == b"the previous checkpoint" and leftovers(tmp_path) == []


def test_train_checkpoint_when_torch_save_fails_as_torch_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk as each layer reports it: torch's file writer a RuntimeError, Python's
    file writes an OSError (ENOSPC). Holds whichever way the checkpoint is written."""
    out = tmp_path / "m.pt"
    original_save, original_open = torch.save, open

    def is_output(file: object) -> bool:
        return isinstance(file, (str, os.PathLike)) and Path(file).name.startswith(".m.pt.")

    def save(obj: object, f: object, *args: Any, **kwargs: Any) -> None:
        if is_output(f):
            with original_open(str(f), "wb") as half:  # what torch's writer leaves
                half.write(b"PK\x03\x04 half")
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576")
        original_save(obj, f, *args, **kwargs)  # type: ignore[arg-type]

    def opened(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if is_output(file) and ("w" in mode or "a" in mode):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return original_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    monkeypatch.setattr("builtins.open", opened)
    inject(monkeypatch, Path, "write_bytes", errno.ENOSPC, when=lambda p, d: is_output(p))
    result = train(out)
    assert_disk_error(result, out, errno.ENOSPC)
    assert not out.exists() and leftovers(tmp_path) == []
