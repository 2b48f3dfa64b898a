"""k-fold verification accuracy with given folds (LFW View 2, YTF splits, generic pairs).

facebench's rule (PROTOCOLS.md, "LFW"): for each fold the threshold is chosen on the other
folds and applied to the held-out one. With s_1 < ... < s_m the distinct training scores,
the candidates are -inf, every midpoint (s_i + s_(i+1)) / 2, and +inf; a pair is accepted
when ``score >= t``. The candidate with the highest training accuracy wins; when several
tie, their median (the lower of the two middle ones when their number is even). Folds are
never re-split and no pair is dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from facebench.metrics.counts import MetricInputError, check_scores


@dataclass(frozen=True)
class KFoldAccuracy:
    """Per-fold and summary accuracy.

    Attributes
    ----------
    fold_ids : ndarray, shape (k,)
        The fold labels, in ascending order; the arrays below follow this order.
    accuracies : ndarray of float64, shape (k,)
        Held-out accuracy of each fold: (genuine with score >= t + impostors with
        score < t) / pairs in the fold.
    thresholds : ndarray of float64, shape (k,)
        The threshold chosen on the other folds (may be +-inf when accepting all or none
        is best on the training folds).
    n_correct, n_pairs : ndarray of int64, shape (k,)
        The counts behind each accuracy.
    mean, std, stderr : float
        Mean of the fold accuracies, their standard deviation with ddof=1, and the
        standard error std / sqrt(k) (what the LFW README asks to report).
    """

    fold_ids: npt.NDArray[np.int64]
    accuracies: npt.NDArray[np.float64]
    thresholds: npt.NDArray[np.float64]
    n_correct: npt.NDArray[np.int64]
    n_pairs: npt.NDArray[np.int64]
    mean: float
    std: float
    stderr: float


def best_threshold(
    sorted_scores: npt.NDArray[np.float64], sorted_same: npt.NDArray[np.bool_]
) -> float:
    """The training threshold by facebench's rule, from scores sorted ascending.

    Parameters
    ----------
    sorted_scores : ndarray of float64, shape (n,)
        Ascending.
    sorted_same : ndarray of bool, shape (n,)
        Labels in the same order.
    """
    n = sorted_scores.size
    # Candidate p accepts sorted_scores[p:]; p runs over the first index of each distinct
    # value (p = 0 is the -inf candidate) and n (the +inf candidate).
    starts = np.concatenate(([0], np.flatnonzero(sorted_scores[1:] != sorted_scores[:-1]) + 1, [n]))
    genuine_below = np.concatenate(([0], np.cumsum(sorted_same, dtype=np.int64)))[starts]
    n_genuine = genuine_below[-1]
    correct = (n_genuine - genuine_below) + (starts - genuine_below)
    tied = np.flatnonzero(correct == correct.max())
    p = int(starts[tied[(tied.size - 1) // 2]])
    if p == 0:
        return -math.inf
    if p == n:
        return math.inf
    return float((sorted_scores[p - 1] + sorted_scores[p]) / 2.0)


def kfold_accuracy(
    scores: npt.ArrayLike, is_same: npt.ArrayLike, folds: npt.ArrayLike
) -> KFoldAccuracy:
    """k-fold accuracy with the given folds, by facebench's rule (module docstring).

    Parameters
    ----------
    scores : array-like of float, shape (n,)
    is_same : array-like of bool, shape (n,)
    folds : array-like of int, shape (n,)
        The fold of each pair (at least two distinct folds).

    Notes
    -----
    Scores are sorted once; each fold's training set is the sorted array with that fold
    masked out, so the cost is one sort plus k linear passes.
    """
    s, y = check_scores(scores, is_same)
    f = np.asarray(folds)
    if f.shape != s.shape or not np.issubdtype(f.dtype, np.integer):
        raise MetricInputError(
            f"Expected integer `folds` of shape {s.shape}, but got dtype {f.dtype} and "
            f"shape {f.shape}"
        )
    fold_ids = np.unique(f)
    if fold_ids.size < 2:
        raise MetricInputError(f"Expected at least 2 folds, but got {fold_ids.size}")
    order = np.argsort(s, kind="stable")
    s_sorted, y_sorted, f_sorted = s[order], y[order], f[order]
    accuracies, thresholds, n_correct, n_pairs = [], [], [], []
    for fold in fold_ids:
        held_out = f_sorted == fold
        train = ~held_out
        t = best_threshold(s_sorted[train], y_sorted[train])
        test_s, test_y = s_sorted[held_out], y_sorted[held_out]
        accepted = test_s >= t
        correct = int(np.count_nonzero(accepted == test_y))
        accuracies.append(correct / test_s.size)
        thresholds.append(t)
        n_correct.append(correct)
        n_pairs.append(test_s.size)
    acc = np.asarray(accuracies, dtype=np.float64)
    std = float(np.std(acc, ddof=1))
    return KFoldAccuracy(
        fold_ids=fold_ids.astype(np.int64),
        accuracies=acc,
        thresholds=np.asarray(thresholds, dtype=np.float64),
        n_correct=np.asarray(n_correct, dtype=np.int64),
        n_pairs=np.asarray(n_pairs, dtype=np.int64),
        mean=float(acc.mean()),
        std=std,
        stderr=std / math.sqrt(acc.size),
    )
