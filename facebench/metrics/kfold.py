"""k-fold verification accuracy with given folds (LFW View 2, YTF splits, generic pairs).

facebench's rule (PROTOCOLS.md, "LFW"): for each fold the threshold is chosen on the other
folds and applied to the held-out one. With s_1 < ... < s_m the distinct training scores,
the candidates are -inf, every midpoint (s_i + s_(i+1)) / 2, and +inf; a pair is accepted
when ``score >= t``. The candidate with the highest training accuracy wins; when several
tie, their median (the lower of the two middle ones when their number is even). Folds are
never re-split and no pair is dropped.

How it is computed (:func:`kfold_accuracy`): all scores are sorted once, and every fold's
training counts are the global counts minus that fold's own, so no fold's training set is
ever copied out. In the sorted order, let ``D(i)`` be impostors minus genuine pairs among
the first ``i`` scores; at the candidate that accepts positions ``i:`` the training
accuracy is ``(n_genuine_train + D(i) - E_k(i)) / n_train``, where ``E_k`` is the same
difference over the held-out fold ``k`` alone. ``E_k`` only changes at the fold's own
positions, so the best candidate of fold ``k`` is the best over the stretches between
consecutive fold-``k`` positions of (maximum of ``D`` in the stretch) minus a constant: one
``numpy.maximum.reduceat`` per fold, then exact work on the few positions that reach the
optimum. :func:`best_threshold` states the rule on one explicit training set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from facebench.metrics.counts import MetricInputError, check_scores

IntArray = npt.NDArray[np.int64]
#: Small signed integers whose width depends on the input (int16 / int32 / int64).
SmallIntArray = npt.NDArray[np.signedinteger[Any]]

#: Fold labels spanning fewer values than this (or than twice the number of pairs) are
#: mapped to fold indices through a lookup table; wider labels go through ``np.unique``.
_DENSE_FOLD_SPAN = 1 << 16


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

    :func:`kfold_accuracy` does not call this function (it never builds a training set),
    but chooses exactly the threshold that this function returns on each training set.

    Parameters
    ----------
    sorted_scores : ndarray of float64, shape (n,)
        Ascending.
    sorted_same : ndarray of bool, shape (n,)
        Labels in the same order.

    Returns
    -------
    float
        ``-inf`` (accept everything), the midpoint of two consecutive distinct scores, or
        ``+inf`` (accept nothing): the candidate of highest accuracy under ``score >= t``,
        the median (lower middle) of the tied ones.
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


def _fold_index(folds: npt.NDArray[np.integer]) -> tuple[IntArray, SmallIntArray]:
    """The distinct fold labels (ascending) and each pair's index into them.

    The index has the smallest signed dtype that holds ``2 * k`` (int16 for up to 16,383
    folds), so that ``2 * index + is_same`` fits it too.
    """
    lo, hi = int(folds.min()), int(folds.max())
    span = hi - lo + 1
    if span <= max(_DENSE_FOLD_SPAN, 2 * folds.size):
        unsigned = np.issubdtype(folds.dtype, np.unsignedinteger)
        if unsigned:  # no wrap-around: every label is >= lo
            offsets = (folds - folds.dtype.type(lo)).astype(np.intp)
        else:
            offsets = folds.astype(np.int64) - lo
        present = np.zeros(span, dtype=bool)
        present[offsets] = True
        fold_offsets = np.flatnonzero(present)
        dtype = np.int16 if 2 * fold_offsets.size <= np.iinfo(np.int16).max else np.int32
        lookup: SmallIntArray = np.zeros(span, dtype=dtype)
        lookup[fold_offsets] = np.arange(fold_offsets.size, dtype=dtype)
        if unsigned:  # labels above 2**63 - 1 wrap, as np.unique(folds).astype(np.int64)
            fold_ids = (fold_offsets.astype(np.uint64) + np.uint64(lo)).astype(np.int64)
        else:
            fold_ids = fold_offsets + lo
        return fold_ids, lookup[offsets]
    fold_ids, index = np.unique(folds, return_inverse=True)
    dtype = np.int16 if 2 * fold_ids.size <= np.iinfo(np.int16).max else np.int32
    fold_index: SmallIntArray = index.astype(dtype)
    return fold_ids.astype(np.int64), fold_index


def _sort_by_score(
    scores: npt.NDArray[np.float64], code: SmallIntArray, n_codes: int
) -> tuple[npt.NDArray[np.float64], SmallIntArray]:
    """Scores in ascending order, with the code of each.

    The pairs are grouped by code (a stable counting sort of small integers), each group is
    sorted on its own, and one stable sort merges the sorted runs; this is quicker than one
    ``argsort`` of all scores. How ties are ordered does not matter to any result.
    """
    grouped = np.argsort(code, kind="stable")
    values = scores[grouped]
    del grouped
    sizes = np.bincount(code, minlength=n_codes)
    for start, stop in zip(np.cumsum(sizes) - sizes, np.cumsum(sizes), strict=True):
        values[start:stop].sort()
    order = np.argsort(values, kind="stable")  # timsort: merges the runs
    run_code = np.repeat(np.arange(n_codes, dtype=code.dtype), sizes)
    return values[order], run_code[order]


def _stretch_positions(starts: IntArray, stops: IntArray) -> IntArray:
    """``np.concatenate([np.arange(a, b) for a, b in zip(starts, stops)])``, vectorized."""
    lengths = stops - starts
    ends = np.cumsum(lengths)
    return np.repeat(starts - (ends - lengths), lengths) + np.arange(int(ends[-1]))


@dataclass(frozen=True)
class _SortedPairs:
    """All pairs in ascending score order, with what every fold needs from that order.

    Attributes
    ----------
    scores : ndarray of float64, shape (n,)
        Ascending.
    is_same : ndarray of bool, shape (n,)
    fold : ndarray of int16 or int32, shape (n,)
        Fold index (into the ascending fold labels) of each sorted pair.
    margin : ndarray of int32 or int64, shape (n + 1,)
        ``margin[i]`` = impostors minus genuine pairs among ``scores[:i]`` where position
        ``i`` can hold a candidate (``i`` is 0, ``n``, or ``scores[i - 1] < scores[i]``), and
        ``floor = -2n - 1`` elsewhere, below every real difference minus any fold's part.
    positions : ndarray of int64, shape (n,)
        Sorted positions grouped by fold (fold 0 first), ascending within each fold.
    fold_stops : ndarray of int64, shape (k,)
        Fold ``f``'s positions are ``positions[fold_stops[f - 1]:fold_stops[f]]``.
    """

    scores: npt.NDArray[np.float64]
    is_same: npt.NDArray[np.bool_]
    fold: SmallIntArray
    margin: SmallIntArray
    positions: IntArray
    fold_stops: IntArray

    @classmethod
    def of(
        cls,
        scores: npt.NDArray[np.float64],
        is_same: npt.NDArray[np.bool_],
        fold_index: SmallIntArray,
        n_folds: int,
    ) -> _SortedPairs:
        n = scores.size
        code = fold_index * fold_index.dtype.type(2) + is_same
        sorted_scores, sorted_code = _sort_by_score(scores, code, 2 * n_folds)
        del code
        sorted_same = (sorted_code & 1).astype(bool)
        sorted_fold = sorted_code >> 1
        del sorted_code
        dtype = np.int32 if 2 * n + 1 <= np.iinfo(np.int32).max else np.int64
        margin: SmallIntArray = np.empty(n + 1, dtype=dtype)
        margin[0] = 0
        step = np.where(sorted_same, np.int8(-1), np.int8(1))
        np.cumsum(step, dtype=dtype, out=margin[1:])
        del step
        no_candidate = np.zeros(n + 1, dtype=bool)
        np.equal(sorted_scores[1:], sorted_scores[:-1], out=no_candidate[1:n])
        margin[no_candidate] = -2 * n - 1
        positions = np.argsort(sorted_fold, kind="stable").astype(np.int64, copy=False)
        fold_stops = np.cumsum(np.bincount(sorted_fold, minlength=n_folds)).astype(np.int64)
        return cls(sorted_scores, sorted_same, sorted_fold, margin, positions, fold_stops)

    def fold_positions(self, f: int) -> IntArray:
        """Ascending sorted positions of fold ``f``'s pairs."""
        start = 0 if f == 0 else int(self.fold_stops[f - 1])
        return self.positions[start : int(self.fold_stops[f])]

    def best_position(self, f: int, held_out: IntArray) -> int:
        """The chosen candidate of fold ``f`` as a sorted position ``p`` (accept ``p:``).

        ``held_out`` are fold ``f``'s positions (ascending). Stretch ``r`` covers positions
        ``held_out[r - 1] + 1 .. held_out[r]`` (0 .. ``held_out[0]`` for ``r = 0``, up to
        ``n`` for the last), where the fold's own part of the margin is a constant.
        """
        n = self.scores.size
        starts = np.empty(held_out.size + 1, dtype=np.int64)
        starts[0] = 0
        np.add(held_out, 1, out=starts[1:])
        own = np.zeros(held_out.size + 1, dtype=np.int64)
        np.cumsum(np.where(self.is_same[held_out], -1, 1), out=own[1:])
        stretch_max = np.maximum.reduceat(self.margin, starts)
        train_margin = stretch_max - own
        tied = np.flatnonzero(train_margin == train_margin.max())
        stops = np.append(starts[1:], n + 1)
        at = _stretch_positions(starts[tied], stops[tied])
        at = at[self.margin[at] == np.repeat(stretch_max[tied], stops[tied] - starts[tied])]
        # A position right after a held-out pair is a candidate of the training set only
        # when the run of equal scores that ends there holds a training pair; otherwise it
        # repeats the previous candidate's accuracy and must not count as a tie.
        suspect = np.flatnonzero((at > 0) & (self.fold[np.maximum(at - 1, 0)] == f))
        if suspect.size:
            ends = at[suspect]
            run_starts = np.searchsorted(self.scores, self.scores[ends - 1], side="left")
            n_held = np.searchsorted(held_out, ends) - np.searchsorted(held_out, run_starts)
            at = np.delete(at, suspect[n_held == ends - run_starts])
        return int(at[(at.size - 1) // 2])

    def threshold_at(self, p: int, held_out: IntArray) -> float:
        """The midpoint between the training scores on either side of position ``p``."""
        if p == 0:
            return -math.inf
        # The first training position at or after p: skip a run of held-out positions.
        r = int(np.searchsorted(held_out, p))
        run = held_out[r:] - np.arange(held_out.size - r)
        not_held = np.flatnonzero(run != p)
        after = p + (int(not_held[0]) if not_held.size else held_out.size - r)
        if after == self.scores.size:
            return math.inf
        return float((self.scores[p - 1] + self.scores[after]) / 2.0)

    def n_correct(self, threshold: float, held_out: IntArray) -> int:
        """Held-out pairs decided right at ``threshold`` (accept ``score >= threshold``)."""
        below = int(np.searchsorted(self.scores, threshold, side="left"))
        n_below = int(np.searchsorted(held_out, below))
        same = self.is_same[held_out]
        genuine_below = int(np.count_nonzero(same[:n_below]))
        return (int(np.count_nonzero(same)) - genuine_below) + (n_below - genuine_below)


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

    Returns
    -------
    KFoldAccuracy

    Notes
    -----
    One sort of all scores (each fold's and class's scores sorted apart, then merged), one
    cumulative sum, and per fold one ``maximum.reduceat`` over the sorted positions plus
    work on the fold's own pairs; no training set is copied. The result is exactly that of
    :func:`best_threshold` applied to each fold's training set, whatever the ties.
    """
    s, y = check_scores(scores, is_same)
    f = np.asarray(folds)
    if f.shape != s.shape or not np.issubdtype(f.dtype, np.integer):
        raise MetricInputError(
            f"Expected integer `folds` of shape {s.shape}, but got dtype {f.dtype} and "
            f"shape {f.shape}"
        )
    fold_ids, fold_index = _fold_index(f)
    if fold_ids.size < 2:
        raise MetricInputError(f"Expected at least 2 folds, but got {fold_ids.size}")
    pairs = _SortedPairs.of(s, y, fold_index, fold_ids.size)
    del fold_index
    thresholds = np.empty(fold_ids.size, dtype=np.float64)
    n_correct = np.empty(fold_ids.size, dtype=np.int64)
    n_pairs = np.empty(fold_ids.size, dtype=np.int64)
    for i in range(fold_ids.size):
        held_out = pairs.fold_positions(i)
        thresholds[i] = pairs.threshold_at(pairs.best_position(i, held_out), held_out)
        n_correct[i] = pairs.n_correct(float(thresholds[i]), held_out)
        n_pairs[i] = held_out.size
    acc = np.asarray([int(c) / int(m) for c, m in zip(n_correct, n_pairs, strict=True)])
    std = float(np.std(acc, ddof=1))
    return KFoldAccuracy(
        fold_ids=fold_ids,
        accuracies=acc,
        thresholds=thresholds,
        n_correct=n_correct,
        n_pairs=n_pairs,
        mean=float(acc.mean()),
        std=std,
        stderr=std / math.sqrt(acc.size),
    )
