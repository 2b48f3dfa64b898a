"""TAR at a FAR (exact rule), AUC, EER and the plotted ROC read off the two classes' sorted
scores equal the same quantities read off the per-threshold table (thresholds, genuine and
impostor counts at every distinct score), computed here by brute force, bit for bit: with
ties inside and across the classes, an empty genuine side (open-set counts), budgets of 0
and of every impostor."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facebench.evaluate import downsample_roc
from facebench.metrics import auc, count_at_thresholds, equal_error_rate, tar_at_far
from facebench.metrics.counts import ThresholdCounts, counts_from_sorted

TARGETS = (1e-6, 1e-3, 0.01, 0.1, 0.25, 0.5, 0.999, 1.0)


def table(counts: ThresholdCounts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Brute force: every distinct score, and the counts at or above it."""
    values = np.unique(np.concatenate((counts.genuine_sorted, counts.impostor_sorted)))[::-1]
    thresholds = np.concatenate(([np.inf], values))
    tp = np.array([(counts.genuine_sorted >= t).sum() for t in thresholds], dtype=np.int64)
    fp = np.array([(counts.impostor_sorted >= t).sum() for t in thresholds], dtype=np.int64)
    return thresholds, tp, fp


def tar_exact_by_table(counts: ThresholdCounts, target: float) -> tuple[float, float, int]:
    thresholds, tp, fp = table(counts)
    allowed = math.floor(Fraction(repr(float(target))) * counts.n_impostor)
    last = max(i for i in range(fp.size) if fp[i] <= allowed)
    i = min(j for j in range(tp.size) if tp[j] == tp[last])
    return float(tp[i] / counts.n_genuine), float(thresholds[i]), int(fp[i])


def auc_by_table(counts: ThresholdCounts) -> float:
    _, tp, fp = table(counts)
    twice = sum(int(fp[i + 1] - fp[i]) * int(tp[i + 1] + tp[i]) for i in range(tp.size - 1))
    return twice / (2 * counts.n_genuine * counts.n_impostor)


def eer_by_table(counts: ThresholdCounts) -> tuple[float, float]:
    thresholds, tp, fp = table(counts)
    n_imp, n_gen = counts.n_impostor, counts.n_genuine

    def d(j: int) -> float:
        return float(np.float64(fp[j]) / n_imp - (1.0 - np.float64(tp[j]) / n_gen))

    def far(j: int) -> float:
        return float(np.float64(fp[j]) / n_imp)

    i = next(j for j in range(tp.size) if d(j) >= 0.0)
    if d(i) == 0.0 or i == 0:
        return far(i), float(thresholds[i])
    lam = -d(i - 1) / (d(i) - d(i - 1))
    return float(far(i - 1) + lam * (far(i) - far(i - 1))), float(thresholds[i])


def roc_by_table(counts: ThresholdCounts, n_points: int) -> tuple[list, list, list]:
    thresholds, tp, fp = table(counts)
    n_imp = counts.n_impostor
    half = max(n_points // 2, 2)
    budgets = np.concatenate((np.geomspace(1.0, n_imp, half), np.linspace(0.0, n_imp, half)))
    idx = np.searchsorted(fp, np.floor(budgets + 1e-9), side="right") - 1
    idx = np.unique(np.concatenate(([0, fp.size - 1], idx)))
    return (
        [float(x) for x in fp[idx] / n_imp],
        [float(x) for x in tp[idx] / counts.n_genuine],
        [float(x) for x in thresholds[idx]],
    )


def check_all(counts: ThresholdCounts, n_points: int = 16) -> None:
    for target in TARGETS:
        (point,) = tar_at_far(counts, [target], "exact")
        assert (point.tar, point.threshold, point.n_impostors_at_or_above) == tar_exact_by_table(
            counts, target
        )
        assert point.far_achieved == point.n_impostors_at_or_above / counts.n_impostor
    if counts.genuine_sorted.size:
        assert auc(counts) == auc_by_table(counts)
    eer = equal_error_rate(counts)
    assert (eer.eer, eer.threshold) == eer_by_table(counts)
    if counts.genuine_sorted.size:
        roc = downsample_roc(counts, n_points)
        far, tar, thr = roc_by_table(counts, n_points)
        assert roc["far"] == far and roc["tar"] == tar
        assert [np.inf if t is None else t for t in roc["threshold"]] == thr


@st.composite
def labelled_scores(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.integers(2, 60))
    levels = draw(st.integers(1, 12))  # few levels: many ties
    values = draw(st.lists(st.integers(0, levels), min_size=n, max_size=n))
    labels = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    labels[0], labels[1] = True, False
    return np.array(values, dtype=np.float64) / levels - 0.5, np.array(labels)


@settings(max_examples=150, deadline=None)
@given(labelled_scores())
def test_sorted_paths_equal_the_table_with_ties(case: tuple[np.ndarray, np.ndarray]) -> None:
    scores, labels = case
    check_all(count_at_thresholds(scores, labels))


@pytest.mark.parametrize("seed", range(5))
def test_sorted_paths_equal_the_table_continuous(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.random(400) < 0.3
    s = rng.normal(y * 1.0, 1.0)
    check_all(count_at_thresholds(s, y), n_points=40)


def test_open_set_counts_without_genuine_scores() -> None:
    """No genuine score but n_genuine > 0 (mated probes never at rank 1): TAR 0 everywhere."""
    imp = np.sort(np.array([0.1, 0.3, 0.3, 0.7]))
    counts = ThresholdCounts(np.zeros(0), imp, n_genuine=5, n_impostor=4)
    for target in TARGETS:
        (point,) = tar_at_far(counts, [target])
        assert (point.tar, point.threshold, point.n_impostors_at_or_above) == (0.0, np.inf, 0)
    assert (equal_error_rate(counts).eer, equal_error_rate(counts).threshold) == eer_by_table(
        counts
    )
    np.testing.assert_array_equal(counts.n_genuine_accepted, np.zeros(4, dtype=np.int64))
    np.testing.assert_array_equal(counts.thresholds, [np.inf, 0.7, 0.3, 0.1])


def test_the_table_is_built_only_when_read() -> None:
    counts = counts_from_sorted(np.array([0.5, 0.9]), np.array([0.1, 0.2, 0.6]))
    tar_at_far(counts, [0.5])
    auc(counts)
    equal_error_rate(counts)
    downsample_roc(counts)
    assert counts._table == []
    np.testing.assert_array_equal(counts.n_impostor_accepted, [0, 0, 1, 1, 2, 3])
    assert len(counts._table) == 3
