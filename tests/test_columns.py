"""Lazy per-pair columns: the arrays they stand for, block by block, and the same bytes in
the per-pair file as those arrays."""

from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
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
