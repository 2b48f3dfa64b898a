"""``kfold_accuracy`` (one global sort, per-fold counts by difference) equals two slow,
obviously-correct versions of facebench's rule, bit for bit, whatever the ties and folds.

- ``brute_kfold``: PROTOCOLS.md literally: every candidate threshold (-inf, the midpoints of
  the distinct training scores, +inf) is tried on the training pairs with ``score >= t``;
  the median of the tied best ones (the lower middle when their number is even).
- ``masked_kfold``: the previous implementation: sort once, copy each fold's training set
  out of the sorted array, and apply ``best_threshold`` to it (itself checked against the
  brute force here), for sizes where the brute force is too slow.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from facebench.metrics import KFoldAccuracy, MetricInputError, kfold_accuracy
from facebench.metrics.kfold import best_threshold

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


def brute_threshold(s: FloatArray, y: BoolArray) -> float:
    """Every candidate tried in a Python loop; median (lower middle) of the tied best."""
    distinct = sorted(set(s.tolist()))
    candidates = [-math.inf, *((a + b) / 2 for a, b in itertools.pairwise(distinct)), math.inf]
    correct = [int(np.count_nonzero((s >= t) == y)) for t in candidates]
    tied = [t for t, c in zip(candidates, correct, strict=True) if c == max(correct)]
    return tied[(len(tied) - 1) // 2]


def brute_kfold(
    s: FloatArray, y: BoolArray, folds: npt.NDArray[np.integer]
) -> tuple[FloatArray, FloatArray]:
    accuracies, thresholds = [], []
    for fold in sorted(set(folds.tolist())):
        test = folds == fold
        t = brute_threshold(s[~test], y[~test])
        accuracies.append(int(np.count_nonzero((s[test] >= t) == y[test])) / int(test.sum()))
        thresholds.append(t)
    return np.array(accuracies), np.array(thresholds)


def masked_kfold(s: FloatArray, y: BoolArray, folds: IntArray) -> tuple[FloatArray, FloatArray]:
    order = np.argsort(s, kind="stable")
    s_sorted, y_sorted, f_sorted = s[order], y[order], folds[order]
    accuracies, thresholds = [], []
    for fold in np.unique(folds):
        test = f_sorted == fold
        t = best_threshold(s_sorted[~test], y_sorted[~test])
        correct = int(np.count_nonzero((s_sorted[test] >= t) == y_sorted[test]))
        accuracies.append(correct / int(test.sum()))
        thresholds.append(t)
    return np.array(accuracies), np.array(thresholds)


def assert_equals(result: KFoldAccuracy, reference: tuple[FloatArray, FloatArray]) -> None:
    accuracies, thresholds = reference
    np.testing.assert_array_equal(result.thresholds, thresholds)
    np.testing.assert_array_equal(result.accuracies, accuracies)
    np.testing.assert_array_equal(result.n_correct / result.n_pairs, accuracies)
    assert result.mean == float(accuracies.mean())
    assert result.std == float(np.std(accuracies, ddof=1))


def make_case(
    seed: int, n: int, n_folds: int, quantum: float | None, fold_layout: str
) -> tuple[FloatArray, BoolArray, IntArray]:
    """Scores with a chosen tie density and folds of a chosen layout."""
    rng = np.random.default_rng([seed, n, n_folds])
    y = rng.random(n) < 0.5
    y[:2] = [True, False]
    s = rng.normal(size=n) + 1.5 * y
    if quantum is not None:
        s = np.round(s / quantum) * quantum
    if fold_layout == "contiguous":
        folds = np.repeat(np.arange(n_folds), -(-n // n_folds))[:n]
    elif fold_layout == "random":
        folds = rng.integers(0, n_folds, n)
    else:  # "unequal": fold f holds a share proportional to f + 1, labels spread out
        weights = np.arange(1, n_folds + 1) / np.arange(1, n_folds + 1).sum()
        folds = rng.choice(np.arange(n_folds) * 7 - 3, size=n, p=weights)
    return s, y, folds.astype(np.int64)


@pytest.mark.parametrize("fold_layout", ["contiguous", "random", "unequal"])
@pytest.mark.parametrize("quantum", [None, 0.05, 0.5, 2.0])
@pytest.mark.parametrize("seed", range(3))
def test_equals_brute_force(seed: int, quantum: float | None, fold_layout: str) -> None:
    s, y, folds = make_case(seed, 300, 5, quantum, fold_layout)
    assert_equals(kfold_accuracy(s, y, folds), brute_kfold(s, y, folds))


@pytest.mark.parametrize("quantum", [None, 0.5])
@pytest.mark.parametrize("seed", range(4))
def test_best_threshold_equals_brute_force(seed: int, quantum: float | None) -> None:
    s, y, _ = make_case(seed, 200, 2, quantum, "contiguous")
    order = np.argsort(s, kind="stable")
    assert best_threshold(s[order], y[order]) == brute_threshold(s, y)


@pytest.mark.parametrize("fold_layout", ["contiguous", "random", "unequal"])
@pytest.mark.parametrize("quantum", [None, 1e-3, 0.02, 0.25])
def test_equals_masked_reference_at_scale(quantum: float | None, fold_layout: str) -> None:
    s, y, folds = make_case(7, 20_000, 10, quantum, fold_layout)
    assert_equals(kfold_accuracy(s, y, folds), masked_kfold(s, y, folds))


def test_lfw_layout_equals_masked_reference() -> None:
    # pairs.txt's layout: 10 contiguous folds, each half genuine then half impostor.
    rng = np.random.default_rng(3)
    y = np.tile(np.repeat([True, False], 300), 10)
    s = np.clip(rng.normal(np.where(y, 0.6, 0.1), 0.15), -1.0, 1.0)
    folds = np.repeat(np.arange(1, 11), 600)
    assert_equals(kfold_accuracy(s, y, folds), masked_kfold(s, y, folds))


def test_held_out_run_between_training_scores() -> None:
    # Fold 2 holds every copy of 0.5: 0.5 is no training value, so the candidate after it
    # repeats the one before it and must not count twice in the median of ties; the test
    # pairs at 0.5 are then judged against the midpoint of 0.4 and 0.6.
    s = np.array([0.1, 0.4, 0.6, 0.9, 0.5, 0.5, 0.5, 0.2, 0.8])
    y = np.array([0, 1, 0, 1, 1, 0, 1, 0, 1], dtype=bool)
    folds = np.array([1, 1, 1, 1, 2, 2, 2, 3, 3])
    assert_equals(kfold_accuracy(s, y, folds), brute_kfold(s, y, folds))


def test_fold_sharing_a_tie_with_training_pairs() -> None:
    s = np.array([0.3, 0.3, 0.3, 0.3, 0.7, 0.7, 0.1, 0.9])
    y = np.array([1, 0, 1, 0, 1, 1, 0, 1], dtype=bool)
    folds = np.array([1, 2, 2, 1, 1, 2, 1, 2])
    assert_equals(kfold_accuracy(s, y, folds), brute_kfold(s, y, folds))


@pytest.mark.parametrize("value", [-1.0, 0.0, 1.0])
def test_all_scores_equal(value: float) -> None:
    s = np.full(12, value)
    y = np.arange(12) % 3 == 0
    folds = np.arange(12) % 4
    r = kfold_accuracy(s, y, folds)
    assert_equals(r, brute_kfold(s, y, folds))
    assert np.all(np.isinf(r.thresholds))


def test_infinite_thresholds() -> None:
    # Training folds with genuine pairs only (accept all: -inf) or impostors only (+inf).
    s = np.array([0.2, 0.8, 0.4, 0.6, 0.5, 0.3])
    y = np.array([1, 1, 0, 0, 1, 0], dtype=bool)
    folds = np.array([2, 2, 1, 1, 3, 3])
    r = kfold_accuracy(s, y, folds)
    assert_equals(r, brute_kfold(s, y, folds))
    s2, y2 = np.array([0.1, 0.2, 0.9, 0.8]), np.array([0, 0, 1, 1], dtype=bool)
    r2 = kfold_accuracy(s2, y2, np.array([1, 1, 2, 2]))
    assert r2.thresholds.tolist() == [-math.inf, math.inf]
    assert_equals(r2, brute_kfold(s2, y2, np.array([1, 1, 2, 2])))


def test_adjacent_floats_midpoint_rounds_onto_a_score() -> None:
    # (a + b) / 2 of two adjacent doubles rounds onto a or b, so the candidate "accept
    # sorted[p:]" and its threshold disagree about a score equal to the midpoint. The
    # training choice counts positions (as best_threshold always has); the held-out pairs
    # are judged by the threshold itself. The literal brute force, which tries each
    # threshold, differs here, so this case is checked against the previous implementation.
    a = 0.5
    b = np.nextafter(a, 1.0)
    c = np.nextafter(b, 1.0)
    s = np.array([a, c, b, b, a, c, 0.0, 1.0])
    y = np.array([0, 1, 1, 0, 0, 1, 0, 1], dtype=bool)
    folds = np.array([1, 1, 2, 2, 3, 3, 1, 2])
    r = kfold_accuracy(s, y, folds)
    assert_equals(r, masked_kfold(s, y, folds))
    assert r.thresholds[1] == (a + c) / 2 == b


@pytest.mark.parametrize(
    "folds",
    [
        np.array([-5, -5, -5, 9, 9, 9, 0, 0, 0, 0], dtype=np.int8),
        np.array([250, 250, 3, 3, 3, 250, 7, 7, 7, 7], dtype=np.uint8),
        np.array([2**62, 2**62, 1, 1, 1, -(2**62), -(2**62), 5, 5, 5], dtype=np.int64),
        np.array([2**63 + 5] * 5 + [3] * 5, dtype=np.uint64),
        np.array([2**64 - 1] * 4 + [2**64 - 2] * 6, dtype=np.uint64),
    ],
)
def test_fold_labels_of_any_integer_dtype(folds: npt.NDArray[np.integer]) -> None:
    s = np.array([0.9, 0.1, 0.5, 0.7, 0.3, 0.2, 0.8, 0.4, 0.6, 0.55])
    y = np.array([1, 0, 1, 1, 0, 0, 1, 0, 1, 0], dtype=bool)
    r = kfold_accuracy(s, y, folds)
    np.testing.assert_array_equal(r.fold_ids, np.unique(folds).astype(np.int64))
    assert r.fold_ids.dtype == np.int64
    assert_equals(r, brute_kfold(s, y, folds))


def test_many_small_folds() -> None:
    # More folds than an int8 holds, some of one pair.
    s, y, _ = make_case(11, 700, 2, 0.1, "contiguous")
    folds = np.arange(700) // 2
    folds[-1] = 10_000
    assert_equals(kfold_accuracy(s, y, folds), masked_kfold(s, y, folds))


def test_counts_and_summary() -> None:
    s, y, folds = make_case(5, 1000, 10, 0.01, "unequal")
    r = kfold_accuracy(s, y, folds)
    np.testing.assert_array_equal(r.n_pairs, np.unique(folds, return_counts=True)[1])
    assert r.n_correct.dtype == np.int64 and r.n_pairs.dtype == np.int64
    np.testing.assert_array_equal(r.accuracies, r.n_correct / r.n_pairs)
    assert r.stderr == r.std / math.sqrt(r.fold_ids.size)


@st.composite
def small_cases(draw: st.DrawFn) -> tuple[FloatArray, BoolArray, IntArray]:
    n = draw(st.integers(4, 40))
    values = draw(st.lists(st.integers(-5, 5), min_size=n, max_size=n))
    labels = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    folds = draw(st.lists(st.integers(0, 4), min_size=n, max_size=n))
    return (
        np.array(values, dtype=np.float64) / 4,
        np.array(labels, dtype=bool),
        np.array(folds, dtype=np.int64),
    )


@given(small_cases())
@settings(max_examples=300, deadline=None)
@example(
    (
        np.array([0.0, 0.0, 0.25, 0.25]),
        np.array([True, False, True, False]),
        np.array([0, 1, 1, 0]),
    )
)
@example(
    (
        np.array([0.5, 0.25, 0.25, 0.5, 0.0]),
        np.array([True, True, False, False, False]),
        np.array([0, 1, 1, 1, 0]),
    )
)
def test_property_equals_brute_force(case: tuple[FloatArray, BoolArray, IntArray]) -> None:
    s, y, folds = case
    try:
        r = kfold_accuracy(s, y, folds)
    except MetricInputError:
        assert y.all() or not y.any() or np.unique(folds).size < 2
        return
    assert_equals(r, brute_kfold(s, y, folds))
    perm = np.random.default_rng(s.size).permutation(s.size)
    r2 = kfold_accuracy(s[perm], y[perm], folds[perm])
    np.testing.assert_array_equal(r2.thresholds, r.thresholds)
    np.testing.assert_array_equal(r2.accuracies, r.accuracies)
