"""Crash safety: every writer survives kill -9, and a store read during an append is whole.

Each test starts the real command line in a subprocess and kills it with SIGKILL at chosen
points, then checks what is left and runs the command again:

- no file under a final name unless it is complete, and then it equals an uninterrupted
  run's output (stores: ids, features, norms and content checksum through
  :class:`~facebench.store.FeatureStore`; reports: the JSON minus ``created``, and every
  array of the ``.scores.npz``);
- the same command run again (with ``--overwrite`` only where the output it was asked to
  write is already complete) succeeds and gives outputs equal to an uninterrupted run's;
- after that run no temporary file, work folder or leftover is there.

Kill points are chosen by a hook, not by timing: the command runs under :data:`KILLER`,
which wraps one function (``os.replace``, ``h5py.Group.create_dataset``,
``facebench.report._write_member``, ...) and kills its own process before or after its n-th
call on a matching path: mid-way through an HDF5 or ``.npz`` write, with a temporary file
complete but not renamed, between the renames of two files, while a folder is deleted.
Extraction is also killed by polling (as soon as a new chunk file appears) and after a
fixed delay. A chain of kills runs one after the other on the same output, each run
resuming what the killed one left. Every kill point must be reached (exit by SIGKILL),
except the polled and delayed ones, which may find the run finished.

The concurrent reader: a process appends to a store while this one opens it again and
again; in a handshake the appender stops inside each append (the rows written into its
temporary copy) until the reader has checked the store. Every store the reader opens is
complete: its rows are a prefix of the appended rows and their checksum is the recorded
one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facebench.errors import OutputExistsError
from facebench.extract import journal
from facebench.models.registry import ARCHITECTURES
from facebench.report import check_report_writable, scores_path_for, write_report
from facebench.store import (
    FeatureStore,
    block_digests,
    content_sha256,
    create_store,
    normalize_rows,
)

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}

#: Runs the command line (``facebench ARGS``) or, with ``--python CODE``, a snippet, after
#: wrapping the function named by $FACEBENCH_TEST_KILL = "target|n|when|how|text": the
#: process kills itself with SIGKILL ``when`` ("before"/"after") the n-th call of
#: ``target`` whose str or path arguments end with (how "end") or contain (how "has")
#: ``text``.
KILLER = textwrap.dedent(
    """
    import importlib, os, shutil, signal, sys

    def install(spec):
        target, nth, when, how, text = spec.split("|")
        parts = target.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            try:
                owner = importlib.import_module(".".join(parts[:cut]))
                break
            except ImportError:
                continue
        for name in parts[cut:-1]:
            owner = getattr(owner, name)
        original = getattr(owner, parts[-1])
        calls = [0]

        def hooked(*args, **kwargs):
            names = [str(a) for a in args if isinstance(a, (str, os.PathLike))]
            hit = not text or any(n.endswith(text) if how == "end" else text in n for n in names)
            calls[0] += hit
            due = hit and calls[0] == int(nth)
            if due and when == "before":
                os.kill(os.getpid(), signal.SIGKILL)
            result = original(*args, **kwargs)
            if due and when == "after":
                os.kill(os.getpid(), signal.SIGKILL)
            return result

        setattr(owner, parts[-1], hooked)

    if os.environ.get("FACEBENCH_TEST_KILL"):
        install(os.environ["FACEBENCH_TEST_KILL"])
    if sys.argv[1:2] == ["--python"]:
        exec(sys.argv[2])
    else:
        sys.argv = ["facebench", *sys.argv[1:]]
        from facebench.cli import main
        main()
    """
)


@dataclass(frozen=True)
class Kill:
    """A kill point: a hook (``target|n|when|how|text``), a poll or a delay.

    ``poll`` is a glob relative to the output's folder: the process is killed as soon as
    more files match it than when it started. A hook's kill must be reached; a poll or a
    delay may find the run finished. ``leaves`` shows that the kill came where its name
    says (a temporary file, a folder being deleted).
    """

    name: str
    hook: str = ""
    poll: str = ""
    delay_s: float = 0.0
    leaves: str = ""  # a glob (relative to the output's folder) the kill must leave behind


def run_killed(
    args: list[str], kill: Kill | None, folder: Path
) -> subprocess.CompletedProcess[str]:
    """Run ``KILLER`` with ``args`` and the kill point; return the finished process."""
    env = {**ENV, "FACEBENCH_TEST_KILL": kill.hook if kill else ""}
    command = [sys.executable, "-c", KILLER, *args]
    if kill is None or kill.hook:
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    before = len(list(folder.glob(kill.poll))) if kill.poll else 0
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + (kill.delay_s or 120)
    while proc.poll() is None and time.monotonic() < deadline:
        if kill.poll and len(list(folder.glob(kill.poll))) > before:
            break
        time.sleep(0.002)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def hidden_leftovers(folder: Path) -> list[str]:
    """Temporary files and folders of interrupted writes (names starting with a dot)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*"))


def store_content(path: Path) -> dict[str, object]:
    """What two equal stores share: ids, features, norms, flips, checksum, skipped items."""
    with FeatureStore.open(path) as store:
        rows = dict(zip(("features", "norms"), store.read_all(), strict=True))
        if store.info.has_flip:
            flips = store.read_all(flip=True)
            rows.update(zip(("features_flip", "norms_flip"), flips, strict=True))
        digests = block_digests(store.ids, rows)
        assert digests == store.read_block_digests()  # complete and intact
        assert content_sha256(digests) == store.info.content_sha256
        return {
            "ids": store.ids,
            **{name: values.tobytes() for name, values in rows.items()},
            "content_sha256": store.info.content_sha256,
            "skipped": store.skipped(),
            "model": store.info.attributes["model"],
        }


def assert_killed(result: subprocess.CompletedProcess[str], kill: Kill, folder: Path) -> None:
    """A hook's kill point was reached: the process died of SIGKILL, leaving what it says."""
    if kill.hook:
        assert result.returncode == -signal.SIGKILL, (
            f"kill point {kill.name} never reached: exit {result.returncode}\n"
            + result.stderr[-2000:]
        )
    else:  # killed, or finished before the poll or the delay came
        assert result.returncode in (0, -signal.SIGKILL), result.stderr[-2000:]
    if kill.leaves:
        assert list(folder.glob(kill.leaves)) != [], (kill.name, hidden_leftovers(folder))


def assert_whole(folder: Path) -> None:
    """Every file under a final name (not hidden) in ``folder`` reads completely."""
    for path in folder.rglob("*"):
        if any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue
        if path.suffix == ".npz":
            with np.load(path) as data:
                assert all(data[name] is not None for name in data.files), path
        elif path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix == ".h5":
            store_content(path)


def run_chain(
    args: list[str],
    output: Path,
    chain: list[Kill],
    expected: dict[str, object],
    tidy: list[Path],
) -> int:
    """Kill the command at each point of ``chain`` in turn, then finish it; return the kills.

    Each run is the same command, with ``--overwrite`` only when ``output`` is already
    there (complete). After each kill ``output`` is absent or has the content
    ``expected``. The final run must succeed with that content and leave no hidden
    leftover in ``output``'s folder, and none of ``tidy``.
    """
    killed = 0
    for kill in chain:
        command = args + (["--overwrite"] if output.exists() else [])
        result = run_killed(command, kill, output.parent)
        assert_killed(result, kill, output.parent)
        killed += result.returncode == -signal.SIGKILL
        assert_whole(output.parent)  # chunks, job.json, the store: complete or absent
        if output.exists():
            assert store_content(output) == expected, kill.name
    final = run_killed(args + (["--overwrite"] if output.exists() else []), None, output.parent)
    assert final.returncode == 0, final.stderr[-3000:]
    assert store_content(output) == expected
    assert hidden_leftovers(output.parent) == []
    assert [p for p in tidy if p.exists()] == []
    return killed


# --- facebench extract -------------------------------------------------------------------------

EXTRACT_CHAIN = [  # the store's own kill points are merge's (the same assembly), below
    Kill("chunk-8-renamed", hook="os.replace|1|after|end|/chunk-000008.npz"),
    Kill(
        "chunk-10-temporary-empty",
        hook="pathlib.Path.write_bytes|1|before|has|/.chunk-000010.",
        leaves="e.h5.parts/.chunk-000010.npz.*.tmp",
    ),
    Kill("polled-a-new-chunk-file", poll="e.h5.parts/chunk-*.npz"),
    Kill("after-a-fixed-delay", delay_s=1.5),
    Kill("store-written-not-renamed", hook="os.replace|1|before|end|/e.h5", leaves=".e.h5.*.tmp"),
    Kill(
        "work-folder-half-deleted",
        hook="os.unlink|2|after|has|chunk-",
        leaves=".e.h5.parts.*.removing",
    ),
]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """48 tiny PNGs in 6 folders, and small-cnn weights."""
    root = tmp_path_factory.mktemp("crash-images")
    rng = np.random.default_rng(0)
    for i in range(48):
        folder = root / "images" / f"p{i % 6}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    import torch

    torch.manual_seed(0)
    torch.save(ARCHITECTURES["small-cnn"].build().state_dict(), root / "w.pth")
    return root / "images", root / "w.pth"


def extract_args(images: tuple[Path, Path], out: Path) -> list[str]:
    folder, weights = images
    return [
        "extract", str(folder), "--arch", "small-cnn", "--weights", str(weights), "-o",
        str(out), "--workers", "0", "--device", "cpu", "--chunk-size", "4", "--batch-size",
        "4", "--no-progress",
    ]  # fmt: skip


@pytest.mark.parametrize("chain", [EXTRACT_CHAIN], ids=[f"{len(EXTRACT_CHAIN)}-kill-points"])
def test_extract_survives_kill_9_and_resumes_to_an_equal_store(
    tmp_path: Path, images: tuple[Path, Path], chain: list[Kill]
) -> None:
    reference = tmp_path / "reference" / "e.h5"
    done = run_killed(extract_args(images, reference), None, reference.parent)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "run" / "e.h5"
    parts = journal.parts_dir_for(out)
    killed = run_chain(extract_args(images, out), out, chain, store_content(reference), [parts])
    assert killed >= len([kill for kill in chain if kill.hook])


# --- facebench merge ---------------------------------------------------------------------------

MERGE_CHAIN = [
    Kill("store-half-written", hook="h5py.Group.create_dataset|3|after|end|", leaves=".m.h5.*.tmp"),
    Kill("store-written-not-renamed", hook="os.replace|1|before|end|/m.h5", leaves=".m.h5.*.tmp"),
    Kill("store-renamed-parts-kept", hook="os.replace|1|before|end|/m.h5.parts", leaves="m.h5"),
]


def make_parts(parts: Path, n_items: int = 30, chunk_size: int = 4) -> None:
    """A finished work folder, as extraction leaves it when the store was not written."""
    ids = tuple(f"p{i % 5}/{i:03d}.png" for i in range(n_items))
    job = journal.Job(ids, chunk_size, "small-cnn:w.pth", "", {"name": "test"}, flip=True)
    journal.prepare_parts(parts, job, discard_other=False)
    rng = np.random.default_rng(5)
    for chunk in range(job.n_chunks):
        chunk_ids = list(ids[job.chunk_slice(chunk)])
        raw = rng.normal(size=(len(chunk_ids), 12)).astype(np.float32)
        flips = rng.normal(size=raw.shape).astype(np.float32)
        journal.write_chunk(parts, chunk, chunk_ids, chunk_ids, raw, flips, [])


@pytest.mark.parametrize("chain", [MERGE_CHAIN], ids=[f"{len(MERGE_CHAIN)}-kill-points"])
def test_merge_survives_kill_9(tmp_path: Path, chain: list[Kill]) -> None:
    make_parts(tmp_path / "reference.parts")
    reference = journal.assemble(
        tmp_path / "reference.parts", tmp_path / "reference.h5", remove_parts=False
    )
    out = tmp_path / "run" / "m.h5"
    parts = journal.parts_dir_for(out)
    make_parts(parts)
    args = ["merge", str(parts), "-o", str(out)]
    assert run_chain(args, out, chain, store_content(Path(reference.path)), [parts]) == len(chain)


# --- facebench import --------------------------------------------------------------------------

IMPORT_CHAIN = [
    Kill("store-half-written", hook="h5py.Group.create_dataset|2|after|end|", leaves=".i.h5.*.tmp"),
    Kill("store-written-not-renamed", hook="os.replace|1|before|end|/i.h5", leaves=".i.h5.*.tmp"),
]


@pytest.mark.parametrize("chain", [IMPORT_CHAIN], ids=[f"{len(IMPORT_CHAIN)}-kill-points"])
def test_import_survives_kill_9(tmp_path: Path, chain: list[Kill]) -> None:
    rng = np.random.default_rng(3)
    np.save(tmp_path / "f.npy", rng.normal(size=(40, 10)).astype(np.float32))
    (tmp_path / "ids.txt").write_text("".join(f"p{i % 4}/{i}.jpg\n" for i in range(40)))
    args = ["import", str(tmp_path / "f.npy"), "--ids", str(tmp_path / "ids.txt"), "-o"]
    reference = tmp_path / "reference" / "i.h5"
    done = run_killed([*args, str(reference)], None, reference.parent)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "run" / "i.h5"
    out.parent.mkdir()
    assert run_chain([*args, str(out)], out, chain, store_content(reference), []) == len(chain)


# --- facebench verify --json (the report and its .scores.npz) ---------------------------------

VERIFY_KILLS = [
    Kill(
        "npz-half-written",
        hook="facebench.report._write_member|2|after|end|",
        leaves=".r.scores.npz.*.tmp",
    ),
    Kill(
        "npz-written-json-not",
        hook="pathlib.Path.write_text|1|before|has|/.r.json.",
        leaves=".r.json.*.tmp",
    ),
    Kill("both-written-none-renamed", hook="os.replace|1|before|end|/r.scores.npz"),
    Kill("npz-renamed-json-not", hook="os.replace|1|before|end|/r.json", leaves="r.scores.npz"),
    # with --overwrite over an older report and its .scores.npz:
    Kill("overwrite-both-written-none-renamed", hook="os.replace|1|before|end|/r.scores.npz"),
    Kill(
        "overwrite-npz-renamed-json-not",
        hook="os.replace|1|before|end|/r.json",
        leaves="r.scores.npz",
    ),
]


@pytest.fixture(scope="module")
def lfw_like(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], dict[str, object]]:
    """``verify`` arguments (LFW format, 4 people, 40 pairs) and the report they give."""
    folder = tmp_path_factory.mktemp("crash-lfw")
    names = ["Ann", "Bob", "Cid", "Dee"]
    lines = ["10\t2"]
    for fold in range(10):
        lines += [f"{names[(fold + k) % 4]}\t1\t{2 + (fold + k) % 3}" for k in range(2)]
        lines += [f"{names[k % 4]}\t{1 + fold % 4}\t{names[(k + 1) % 4]}\t2" for k in range(2)]
    (folder / "pairs.txt").write_text("\n".join(lines) + "\n")
    ids = [f"{n}/{n}_{i:04d}.jpg" for n in names for i in range(1, 5)]
    raw = np.random.default_rng(2).normal(size=(len(ids), 16))
    create_store(folder / "s.h5", ids, *normalize_rows(raw), model="synthetic")
    args = ["verify", "--protocol", "lfw", "--pairs", str(folder / "pairs.txt")]
    args += ["--features", str(folder / "s.h5")]
    done = run_killed([*args, "--json", str(folder / "r.json")], None, folder)
    assert done.returncode == 0, done.stderr
    return args, report_content(folder / "r.json")


def report_content(path: Path) -> dict[str, object]:
    """A report and its per-pair arrays, without the time it was written."""
    report = json.loads(path.read_text(encoding="utf-8"))
    report.pop("created")
    with np.load(path.with_name(path.name.replace(".json", ".scores.npz"))) as data:
        arrays = {name: (data[name].dtype.str, data[name].tolist()) for name in data.files}
    return {"report": report, "scores": arrays}


@pytest.mark.parametrize(
    "kill",
    VERIFY_KILLS,
    ids=[f"kill-{i + 1}-of-{len(VERIFY_KILLS)}-{k.name}" for i, k in enumerate(VERIFY_KILLS)],
)
def test_verify_report_survives_kill_9(
    tmp_path: Path, lfw_like: tuple[list[str], dict[str, object]], kill: Kill
) -> None:
    verify, expected = lfw_like
    report = tmp_path / "r.json"
    args = [*verify, "--json", str(report)]
    older = None
    if kill.name.startswith("overwrite-"):  # an older report (another label) is replaced
        done = run_killed([*args, "--label", "older"], None, tmp_path)
        assert done.returncode == 0, done.stderr
        older = report_content(report)
        args.append("--overwrite")
    result = run_killed(args, kill, tmp_path)
    assert_killed(result, kill, tmp_path)
    assert_whole(tmp_path)
    if report.exists():  # a report under its name goes with the .scores.npz beside it
        assert report_content(report) == older
    again = run_killed(args, None, tmp_path)  # the same command again
    assert again.returncode == 0, again.stderr[-2000:]
    assert report_content(report) == expected
    assert hidden_leftovers(tmp_path) == []


def test_a_scores_file_without_its_report_is_replaced_without_overwrite(
    tmp_path: Path, lfw_like: tuple[list[str], dict[str, object]]
) -> None:
    """What the re-run after kill 4 above needs from report.py (verify_cmd aside)."""
    from facebench.evaluate import VerifyOptions, evaluate_pairs
    from protocols import PROTOCOLS

    verify, expected = lfw_like
    pairs, store = verify[verify.index("--pairs") + 1], verify[verify.index("--features") + 1]
    report, data = evaluate_pairs(PROTOCOLS["lfw"].load(Path(pairs)), store, VerifyOptions())
    path = tmp_path / "r.json"
    scores_path_for(path).write_bytes(b"the leftover of a killed write")
    assert check_report_writable(path) == (path, scores_path_for(path))
    write_report(report, path, data)
    with np.load(scores_path_for(path)) as written:
        assert written["score"].tolist() == expected["scores"]["score"][1]  # type: ignore[index]
    with pytest.raises(OutputExistsError, match=r"r\.json"):  # a complete pair: --overwrite
        check_report_writable(path)
    path.unlink()
    (tmp_path / "r.json").write_text("{}")  # a report without its scores: still refused
    scores_path_for(path).unlink()
    with pytest.raises(OutputExistsError):
        check_report_writable(path)


# --- append_to_store: kill -9, and a concurrent reader -----------------------------------------

APPEND_CHAIN = [
    Kill("copy-made-nothing-appended", hook="shutil.copyfile|1|after|end|", leaves=".s.h5.*.tmp"),
    Kill("copy-half-appended", hook="h5py.Dataset.resize|3|after|end|", leaves=".s.h5.*.tmp"),
    Kill("copy-appended-not-renamed", hook="os.replace|1|before|end|/s.h5", leaves=".s.h5.*.tmp"),
]


def write_rows(folder: Path, n_rows: int, dim: int = 8) -> dict[str, np.ndarray]:
    """Rows to store and append (saved to ``rows.npz`` for the subprocesses)."""
    rng = np.random.default_rng(9)
    features, norms = normalize_rows(rng.normal(size=(n_rows, dim)))
    ids = np.array([f"p{i % 7}/{i:05d}.jpg" for i in range(n_rows)])
    np.savez(folder / "rows.npz", ids=ids, features=features, norms=norms)
    return {"ids": ids, "features": features, "norms": norms}


APPEND = """
import numpy as np
from facebench.store import append_to_store
rows = np.load({rows!r})
for start in range({first}, {stop}, {step}):
    stop = min(start + {step}, {stop})
    append_to_store(
        {store!r}, rows["ids"][start:stop].tolist(), rows["features"][start:stop],
        rows["norms"][start:stop],
    )
"""


@pytest.mark.parametrize("chain", [APPEND_CHAIN], ids=[f"{len(APPEND_CHAIN)}-kill-points"])
def test_append_survives_kill_9(tmp_path: Path, chain: list[Kill]) -> None:
    rows = write_rows(tmp_path, 60)
    whole = tmp_path / "whole" / "s.h5"
    create_store(whole, rows["ids"].tolist(), rows["features"], rows["norms"], model="m")
    store = tmp_path / "run" / "s.h5"
    create_store(
        store, rows["ids"][:25].tolist(), rows["features"][:25], rows["norms"][:25], model="m"
    )
    before = store_content(store)
    code = APPEND.format(
        rows=str(tmp_path / "rows.npz"), store=str(store), first=25, stop=60, step=35
    )
    for kill in chain:
        result = run_killed(["--python", code], kill, store.parent)
        assert_killed(result, kill, store.parent)
        assert store_content(store) == before, kill.name  # the store as it was
    done = run_killed(["--python", code], None, store.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    after = store_content(store)
    assert after == {**store_content(whole), "model": "m"}
    assert hidden_leftovers(store.parent) == []


HANDSHAKE = """
import time
from pathlib import Path
import facebench.store as store_module
append_rows = store_module._append_rows
count = [0]

def stop_inside(handle, *args):  # the rows are in the temporary copy, not yet renamed
    append_rows(handle, *args)
    handle.flush()
    k = count[0] = count[0] + 1
    if k > {handshakes}:
        return
    Path({sync!r}, f"inside-{{k}}").touch()
    deadline = time.monotonic() + 120
    while not Path({sync!r}, f"go-{{k}}").exists() and time.monotonic() < deadline:
        time.sleep(0.002)

store_module._append_rows = stop_inside
"""


def test_a_reader_never_sees_a_half_appended_store(tmp_path: Path) -> None:
    """Two processes: this one opens the store again and again while another appends."""
    step, handshakes, n_rows = 10, 3, 150
    rows = write_rows(tmp_path, n_rows)
    store = tmp_path / "s.h5"
    create_store(
        store, rows["ids"][:step].tolist(), rows["features"][:step], rows["norms"][:step], model="m"
    )
    sync = tmp_path / "sync"
    sync.mkdir()
    code = HANDSHAKE.format(handshakes=handshakes, sync=str(sync))
    code += APPEND.format(
        rows=str(tmp_path / "rows.npz"), store=str(store), first=step, stop=n_rows, step=step
    )
    appender = subprocess.Popen(
        [sys.executable, "-c", KILLER, "--python", code],
        env={**ENV, "FACEBENCH_TEST_KILL": ""},
        stderr=subprocess.PIPE,
        text=True,
    )

    def observe() -> int:
        """Open the store; check that it is whole; return its number of rows."""
        with FeatureStore.open(store) as reader:
            n = reader.info.n_items
            features, norms = reader.read_all()
            digests = block_digests(reader.ids, {"features": features, "norms": norms})
            assert digests == reader.read_block_digests()
            assert content_sha256(digests) == reader.info.content_sha256
            assert reader.ids == rows["ids"][:n].tolist() and n % step == 0
            assert features.tobytes() == rows["features"][:n].tobytes()
            assert norms.tobytes() == rows["norms"][:n].tobytes()
        return n

    seen = []
    try:
        for k in range(1, handshakes + 1):  # the appender waits inside its k-th append
            deadline = time.monotonic() + 120
            while not (sync / f"inside-{k}").exists() and appender.poll() is None:
                assert time.monotonic() < deadline, "the appender did not reach its append"
                time.sleep(0.002)
            assert [p.name for p in tmp_path.glob(".s.h5.*.tmp")] != []  # the copy is there
            seen.append(observe())
            assert seen[-1] == k * step  # the store before the append in flight
            (sync / f"go-{k}").touch()
        while appender.poll() is None:  # then the appender runs free while we read
            seen.append(observe())
    finally:
        _, err = appender.communicate(timeout=300)
    assert appender.returncode == 0, err[-2000:]
    seen.append(observe())
    assert seen[-1] == n_rows and seen == sorted(seen)
    assert hidden_leftovers(tmp_path) == []
