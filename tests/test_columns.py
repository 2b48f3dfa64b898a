"""Lazy per-pair columns: the arrays they stand for, block by block, and the same bytes in
the per-pair file as those arrays; the report writer that writes the first columns early."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import numpy as np
import pytest
from conftest import fill_disk_at
from hypothesis import given, settings
from hypothesis import strategies as st

from facebench import report
from facebench.columns import LazyColumn, Patched, Taken


def blocks_of(column: LazyColumn, cuts: list[int]) -> np.ndarray:
    edges = [0, *sorted(c % (column.size + 1) for c in cuts), column.size]
    return np.concatenate([column.block(a, b) for a, b in itertools.pairwise(edges)])


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 300),
    n_table=st.integers(1, 20),
    seed=st.integers(0, 2**31),
    cuts=st.lists(st.integers(0, 10**6), max_size=6),
)
def test_taken_is_the_table_at_the_index_in_any_blocks(
    n: int, n_table: int, seed: int, cuts: list[int]
) -> None:
    rng = np.random.default_rng(seed)
    table = rng.integers(-(2**31), 2**31 - 1, n_table).astype(np.int32)
    index = rng.integers(0, n_table, n).astype(np.int32)
    column = Taken(table, index, n)
    expected = table[index]
    assert column.dtype == np.int32 and column.shape == (n,) and len(column) == n
    np.testing.assert_array_equal(np.asarray(column), expected)
    np.testing.assert_array_equal(blocks_of(column, cuts), expected)
    constant = Taken(np.array([7], np.int16), None, n)
    assert np.asarray(constant).dtype == np.int16
    np.testing.assert_array_equal(blocks_of(constant, cuts), np.full(n, 7, np.int16))


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 300),
    seed=st.integers(0, 2**31),
    share=st.floats(0, 1),
    cuts=st.lists(st.integers(0, 10**6), max_size=6),
)
def test_patched_is_the_widened_base_with_its_values(
    n: int, seed: int, share: float, cuts: list[int]
) -> None:
    rng = np.random.default_rng(seed)
    base = rng.standard_normal(n).astype(np.float32)
    at = np.flatnonzero(rng.random(n) < share)
    values = rng.standard_normal(at.size)
    column = Patched(base, at, values)
    expected = base.astype(np.float64)
    expected[at] = values
    assert column.dtype == np.float64 and column.size == n
    np.testing.assert_array_equal(np.asarray(column), expected)
    np.testing.assert_array_equal(np.asarray(column, dtype=np.float32), expected.astype("f4"))
    np.testing.assert_array_equal(blocks_of(column, cuts), expected)


@pytest.mark.parametrize(
    ("at", "values"),
    [([3, 3], [0.0, 1.0]), ([4, 2], [0.0, 1.0]), ([-1], [0.0]), ([10], [0.0]), ([1], [])],
)
def test_patched_refuses_positions_out_of_order_or_range(at: list[int], values: list[float]):
    with pytest.raises(ValueError, match="Expected"):
        Patched(np.zeros(10, np.float32), np.array(at, np.int64), np.array(values))


def test_taken_refuses_an_empty_table_or_a_wrong_index() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        Taken(np.zeros(0, np.int32), None, 3)
    with pytest.raises(ValueError, match="shape"):
        Taken(np.zeros(2, np.int32), np.zeros(4, np.int64), 3)


@pytest.mark.parametrize("n", [0, 1, 1000, 5003])
def test_lazy_columns_write_the_bytes_of_their_arrays(
    n: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report, "_WRITE_STEP", 64)  # many blocks per column
    rng = np.random.default_rng(n)
    ids = rng.integers(0, 10**6, 50).astype(np.int32)
    index = rng.integers(0, 50, n)
    base = rng.standard_normal(n).astype(np.float32)
    at = np.flatnonzero(rng.random(n) < 0.1)
    lazy = {
        "split": Taken(np.array([3], np.int16), None, n),
        "left": Taken(ids, index, n),
        "score": Patched(base, at, rng.standard_normal(at.size)),
        "is_same": rng.random(n) < 0.5,
    }
    arrays = {k: np.asarray(v) for k, v in lazy.items()}
    written = []
    for columns in (lazy, arrays):
        buffer = io.BytesIO()
        report.save_npz(buffer, columns)
        written.append(buffer.getvalue())
    assert written[0] == written[1]
    with np.load(io.BytesIO(written[0])) as loaded:
        for key, value in arrays.items():
            np.testing.assert_array_equal(loaded[key], value)
            assert loaded[key].dtype == value.dtype


# --- ReportWriter: the per-pair file's first columns written while the evaluation runs ------


def pair_arrays(n: int = 5000) -> dict[str, object]:
    rng = np.random.default_rng(n)
    base = rng.standard_normal(n).astype(np.float32)
    at = np.flatnonzero(rng.random(n) < 0.1)
    return {
        "split": Taken(np.array([1], np.int16), None, n),
        "left": Taken(rng.integers(0, 10**6, 40).astype(np.int32), rng.integers(0, 40, n), n),
        "right": rng.integers(0, 10**6, n).astype(np.int32),
        "is_same": rng.random(n) < 0.5,
        "score": Patched(base, at, rng.standard_normal(at.size)),
        "probe_template": np.arange(7),
    }


@pytest.mark.parametrize("n_early", [0, 1, 4])
def test_report_writer_writes_the_files_of_write_json_with_scores(
    tmp_path: Path, n_early: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(report, "_LAZY_STEP", 256)  # many blocks per lazy column
    arrays = pair_arrays()
    report.write_json_with_scores('{"a": 1}\n', tmp_path / "plain.json", arrays)
    with report.ReportWriter(tmp_path / "early.json") as writer:
        if n_early:
            writer.begin(dict(list(arrays.items())[:n_early]))
        assert writer.finish('{"a": 1}\n', arrays) == (
            tmp_path / "early.json",
            tmp_path / "early.scores.npz",
        )
    for suffix in (".json", ".scores.npz"):
        assert (tmp_path / f"early{suffix}").read_bytes() == (
            tmp_path / f"plain{suffix}"
        ).read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "early.json",
        "early.scores.npz",
        "plain.json",
        "plain.scores.npz",
    ]


def test_report_writer_left_by_an_error_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "r.json").write_text("old report\n", encoding="utf-8")
    (tmp_path / "r.scores.npz").write_bytes(b"old scores")
    arrays = pair_arrays()
    with pytest.raises(KeyError, match="evaluation failed"):
        with report.ReportWriter(tmp_path / "r.json", overwrite=True) as writer:
            writer.begin(dict(list(arrays.items())[:4]))
            raise KeyError("evaluation failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "r.scores.npz"]
    assert (tmp_path / "r.json").read_text(encoding="utf-8") == "old report\n"
    assert (tmp_path / "r.scores.npz").read_bytes() == b"old scores"
    with pytest.raises(RuntimeError, match="without finish"):
        with report.ReportWriter(tmp_path / "s.json") as writer:
            writer.begin(dict(list(arrays.items())[:2]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "r.scores.npz"]


def test_report_writer_refuses_columns_that_are_not_the_arrays_first(tmp_path: Path) -> None:
    arrays = pair_arrays()
    with pytest.raises(ValueError, match="first of the arrays"):
        with report.ReportWriter(tmp_path / "r.json") as writer:
            writer.begin({"left": arrays["left"]})  # not the first entry
            writer.finish("{}\n", arrays)
    with pytest.raises(ValueError, match="first of the arrays"):
        with report.ReportWriter(tmp_path / "r.json") as writer:
            writer.begin({"split": np.asarray(arrays["split"])})  # a copy, not the object
            writer.finish("{}\n", arrays)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_early_column_write_is_raised_by_finish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from facebench.fileio import OutputWriteError

    fill_disk_at(monkeypatch, "left")
    arrays = pair_arrays()
    with pytest.raises(OutputWriteError, match=r"r\.scores\.npz.*No space left on device"):
        with report.ReportWriter(tmp_path / "r.json") as writer:
            writer.begin(dict(list(arrays.items())[:4]))
            writer.finish("{}\n", arrays)
    assert list(tmp_path.iterdir()) == []


def test_early_columns_are_flushed_to_disk_in_the_writers_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import threading

    synced: list[tuple[str, int]] = []
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        synced.append((threading.current_thread().name.split("_")[0], os.fstat(fd).st_size))
        real(fd)

    monkeypatch.setattr(report.os, "fdatasync", fdatasync)
    arrays = pair_arrays()
    with report.ReportWriter(tmp_path / "r.json") as writer:
        writer.begin(dict(list(arrays.items())[:4]))
        writer.finish("{}\n", arrays)
    early_bytes = sum(np.asarray(v).nbytes for v in list(arrays.values())[:4])
    assert len(synced) == 1
    thread, size = synced[0]
    assert thread == "facebench-report"
    # Everything of the four early members was in the file when it was flushed, the
    # score column not yet.
    assert early_bytes < size < early_bytes + np.asarray(arrays["score"]).nbytes


def test_a_failed_flush_of_the_early_columns_is_raised_by_finish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from facebench.fileio import OutputWriteError

    def fdatasync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(report.os, "fdatasync", fdatasync)
    (tmp_path / "r.json").write_text("old report\n", encoding="utf-8")
    (tmp_path / "r.scores.npz").write_bytes(b"old scores")
    arrays = pair_arrays()
    with pytest.raises(OutputWriteError, match=r"r\.scores\.npz.*Input/output error"):
        with report.ReportWriter(tmp_path / "r.json", overwrite=True) as writer:
            writer.begin(dict(list(arrays.items())[:4]))
            writer.finish("{}\n", arrays)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "r.scores.npz"]
    assert (tmp_path / "r.json").read_text(encoding="utf-8") == "old report\n"
    assert (tmp_path / "r.scores.npz").read_bytes() == b"old scores"
