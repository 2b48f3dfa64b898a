"""Exact TAR at a FAR from approximate (float32) scores and float64 re-scores near the
operating thresholds.

At IJB-B/C scale most of a 1:1 evaluation's time goes to the pair scores and their sort.
Both halve in float32, but a float32 score of two float64 unit templates is only within a
bound ``e`` of the float64 score (``|approx - exact| <= e``, about 3e-5 for D = 512; see
:func:`facebench.template_scores.float32_bound`). A TAR at a FAR under facebench's
``exact`` rule depends on the scores only through comparisons near two values per target,
so only the pairs whose float32 score lies near them need their float64 score:

1. ``v``, the ``(k + 1)``-th highest impostor score, with ``k = floor(target x
   n_impostor)`` false accepts allowed (:func:`facebench.metrics.operating.tar_exact`).
   ``v`` lies within ``e`` of the ``(k + 1)``-th highest float32 impostor score ``v32``
   (an order statistic moves no more than the values do); every impostor outside
   ``[v32 - 2e, v32 + 2e]`` is on the same side of ``v`` by either score, so the float64
   scores of that band fix ``v`` exactly.
2. The reported threshold ``t``, the lowest genuine score above ``v`` (every genuine score
   is re-scored: there are few), and the impostors at or above it: those with a float32
   score in ``[t - e, t + e]`` are re-scored, the others are on the same side of ``t``
   by either score.

:func:`exact_at_targets` returns the pairs re-scored and their float64 scores (every
pair's score: float64 where re-scored and the float32 value elsewhere), and the counts
core of those scores. Built on these scores,
:func:`facebench.metrics.operating.tar_at_far` with the ``exact`` rule gives, for each
target, the same TAR, threshold, achieved FAR and impostor count as on the float64 scores
of every pair (the two arguments above; tested against float64 brute force). AUC, EER and
the ROC read from the same counts are those of the returned scores: exact where a score was
re-scored, float32-accurate elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from facebench.metrics.counts import MetricInputError, ThresholdCounts, counts_from_sorted
from facebench.metrics.operating import allowed_false_accepts

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: ``rescore(pairs)`` returns the float64 scores of the pairs at those indices.
Rescore = Callable[[IntArray], FloatArray]


@dataclass(frozen=True)
class BandedScores:
    """Scores exact where a TAR at a FAR needs them, and their counts core.

    Attributes
    ----------
    approx : ndarray of float32, shape (n,)
        The approximate scores given.
    rescored : ndarray of int64, ascending
        The pairs re-scored: every genuine pair, and the impostor pairs in a band.
    rescored_scores : ndarray of float64
        Their float64 scores.
    counts : ThresholdCounts
        :func:`facebench.metrics.counts.count_at_thresholds` of :attr:`scores`.
    bands : list of (float, float)
        The float32 score intervals whose impostors were re-scored (merged, ascending).
    """

    approx: npt.NDArray[np.float32]
    rescored: IntArray
    rescored_scores: FloatArray
    counts: ThresholdCounts
    bands: list[tuple[float, float]]

    @property
    def scores(self) -> FloatArray:
        """Per pair: the float64 score where re-scored, else the float32 score."""
        out = self.approx.astype(np.float64)
        out[self.rescored] = self.rescored_scores
        return out

    @property
    def exact(self) -> npt.NDArray[np.bool_]:
        """Which pairs were re-scored."""
        out = np.zeros(self.approx.size, dtype=bool)
        out[self.rescored] = True
        return out


def _down32(x: float) -> np.float32:
    """The largest float32 <= x."""
    y = np.float32(x)
    return y if float(y) <= x else np.nextafter(y, np.float32(-np.inf))


def _up32(x: float) -> np.float32:
    """The smallest float32 >= x."""
    y = np.float32(x)
    return y if float(y) >= x else np.nextafter(y, np.float32(np.inf))


def _merged(
    intervals: list[tuple[np.float32, np.float32]], gap: float
) -> list[tuple[np.float32, np.float32]]:
    """Intervals sorted and merged where they overlap or lie within ``gap`` of each other."""
    out: list[tuple[np.float32, np.float32]] = []
    for lo, hi in sorted(intervals):
        if out and float(lo) - float(out[-1][1]) <= gap:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


@dataclass
class _Above:
    """The pairs whose float32 score is at least ``floor`` (ascending), kept from one pass
    over all scores for the next band search whose intervals lie above ``floor``."""

    floor: float = np.inf
    pairs: IntArray | None = None


_STEP = 1 << 18  # scores per step of a pass: its temporaries stay in the caches


def _at_least(approx: npt.NDArray[np.float32], lowest: np.float32) -> IntArray:
    """``np.flatnonzero(approx >= lowest)``, a cache-sized step at a time."""
    parts = [
        np.flatnonzero(approx[a : a + _STEP] >= lowest) + a for a in range(0, approx.size, _STEP)
    ]
    return np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)


def _members(
    approx: npt.NDArray[np.float32],
    impostor: npt.NDArray[np.bool_],
    intervals: list[tuple[np.float32, np.float32]],
    scan: _Above,
) -> IntArray:
    """The impostor pairs whose float32 score lies in one of the (closed) intervals."""
    if not intervals:
        return np.empty(0, dtype=np.int64)
    lowest = min(lo for lo, _ in intervals)
    if scan.pairs is None or float(lowest) < scan.floor:
        scan.pairs, scan.floor = _at_least(approx, lowest), float(lowest)
    candidates = scan.pairs
    values = approx[candidates]
    inside = np.zeros(candidates.size, dtype=bool)
    for lo, hi in intervals:
        inside |= (values >= lo) & (values <= hi)
    inside &= impostor[candidates]
    return candidates[inside]


def exact_at_targets(
    approx: npt.ArrayLike,
    is_same: npt.ArrayLike,
    bound: float,
    rescore: Rescore,
    far_targets: Sequence[float],
) -> BandedScores:
    """Re-score the pairs that TAR at each FAR target needs exactly (module docstring).

    Parameters
    ----------
    approx : array of float32, shape (n,)
        Approximate scores, finite.
    is_same : array of bool, shape (n,)
        True for genuine pairs; both classes must be present.
    bound : float
        ``|approx[i] - rescore([i])[0]| <= bound`` for every pair (not checked: the caller
        proves it).
    rescore : callable
        The float64 score of the pairs at the given indices.
    far_targets : sequence of float
        Each in (0, 1].

    Returns
    -------
    BandedScores
    """
    s = np.asarray(approx)
    y = np.asarray(is_same)
    if s.dtype != np.float32 or y.dtype != np.bool_ or s.ndim != 1 or s.shape != y.shape:
        raise MetricInputError(
            "Expected 1-D float32 `approx` and bool `is_same` of the same length, but got"
            f" {s.dtype} {s.shape} and {y.dtype} {y.shape}"
        )
    if s.size and not (np.isfinite(s.min()) and np.isfinite(s.max())):  # NaN, inf: no
        raise MetricInputError("Expected finite approximate scores")
    if not (np.isfinite(bound) and bound >= 0):
        raise MetricInputError(f"Expected a finite error bound >= 0, but got {bound!r}")
    for target in far_targets:
        if not 0.0 < float(target) <= 1.0:
            raise MetricInputError(f"Expected a FAR target in (0, 1], but got {target!r}")
    genuine_pairs = np.flatnonzero(y)
    n_gen, n_imp = int(genuine_pairs.size), int(s.size - genuine_pairs.size)
    if n_gen == 0 or n_imp == 0:
        raise MetricInputError(
            f"Expected both genuine and impostor pairs, but got {n_gen} genuine and"
            f" {n_imp} impostor pairs"
        )
    impostor = ~y
    # The genuine pairs are re-scored in a thread while the impostors are sorted (both are
    # numpy work that runs without the GIL; the sort takes one core).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="facebench-rescore") as pool:
        genuine_task = pool.submit(rescore, genuine_pairs)
        imp32 = s[impostor]
        imp32.sort()  # ascending float32, in place: no second copy of 15.6 M scores
        genuine_values = genuine_task.result()
    genuine = np.sort(genuine_values)

    # 1. Bands around each target's (k + 1)-th highest float32 impostor score.
    budgets = [allowed_false_accepts(float(t), n_imp) for t in far_targets]
    first = _merged(
        [_around(float(imp32[n_imp - k - 1]), 2 * bound) for k in budgets if k < n_imp], 0.0
    )
    scan = _Above()  # the second search reuses the first's pass when it can
    first_pairs = _members(s, impostor, first, scan)
    first_values = rescore(first_pairs)
    # 2. Each target's threshold: the lowest genuine score above the exact (k + 1)-th
    # highest impostor score v; then a band around it.
    second = []
    for k in budgets:
        v = -np.inf
        if k < n_imp:
            v = _kth_highest(k, imp32, first, s[first_pairs], first_values)
        above = n_gen - int(np.searchsorted(genuine, v, side="right"))
        if above:
            second.append(_around(float(genuine[n_gen - above]), bound))
    # One merged set of bands, more than 3e apart, so that their windows in _patched (2e
    # wider) do not overlap; every pair of the first bands is in them again.
    bands = _merged(first + second, 3 * bound)
    pairs = _members(s, impostor, bands, scan)
    values = _rescored_once(pairs, first_pairs, first_values, rescore)
    # The bound, checked on every pair re-scored (every genuine pair among them): a bound
    # that failed would make the bands too narrow, so it is an error, not a warning.
    for which, approx_of, exact_of in (
        ("genuine", s[genuine_pairs], genuine_values),
        ("impostor", s[pairs], values),
    ):
        if approx_of.size and float(np.max(np.abs(approx_of - exact_of))) > bound:
            raise MetricInputError(
                f"Expected approximate scores within {bound:.3g} of the exact ones, but a"
                f" {which} pair's differ by {float(np.max(np.abs(approx_of - exact_of))):.3g}"
            )
    rescored = np.concatenate((genuine_pairs, pairs))  # disjoint: genuine and impostor
    order = np.argsort(rescored)
    return BandedScores(
        approx=s,
        rescored=rescored[order],
        rescored_scores=np.concatenate((genuine_values, values))[order],
        counts=counts_from_sorted(genuine, _patched(imp32, bands, np.sort(values), bound)),
        bands=[(float(lo), float(hi)) for lo, hi in bands],
    )


def _rescored_once(
    pairs: IntArray, known: IntArray, known_values: FloatArray, rescore: Rescore
) -> FloatArray:
    """``rescore(pairs)``, with the pairs among ``known`` (ascending, re-scored before: the
    first bands' pairs, usually all of them) given their ``known_values`` instead of being
    re-scored again (a re-score is a function of the pair alone)."""
    if known.size == 0:
        return rescore(pairs)
    at = np.minimum(np.searchsorted(known, pairs), known.size - 1)
    seen = known[at] == pairs
    values = np.empty(pairs.size, dtype=np.float64)
    values[seen] = known_values[at[seen]]
    if not seen.all():
        values[~seen] = rescore(pairs[~seen])
    return values


def _around(value: float, width: float) -> tuple[np.float32, np.float32]:
    """``[value - width, value + width]`` widened to float32 ends."""
    return _down32(value - width), _up32(value + width)


def _kth_highest(
    k: int,
    imp32: npt.NDArray[np.float32],
    bands: list[tuple[np.float32, np.float32]],
    band_approx: npt.NDArray[np.float32],
    band_exact: FloatArray,
) -> float:
    """The exact ``(k + 1)``-th highest impostor score: the impostors above the band that
    holds the float32 one are above it by either score, those below it below, so it is the
    ``(k + 1 - above)``-th highest exact score of the band."""
    v32 = imp32[imp32.size - k - 1]
    lo, hi = next((lo, hi) for lo, hi in bands if lo <= v32 <= hi)
    above = imp32.size - int(np.searchsorted(imp32, hi, side="right"))
    inside = np.sort(band_exact[(band_approx >= lo) & (band_approx <= hi)])[::-1]
    return float(inside[k - above])


def _patched(
    imp32: npt.NDArray[np.float32],
    bands: list[tuple[np.float32, np.float32]],
    exact_sorted: FloatArray,
    bound: float,
) -> FloatArray:
    """The sorted impostor scores with each band's float32 scores replaced by its exact
    ones (``exact_sorted``: all bands' exact scores, ascending).

    A band's impostors are a run of ``imp32``; their exact scores, within ``bound`` of
    theirs, replace the run, and the run widened to the float32 scores within ``bound`` of
    the band is sorted again (bands lie more than ``3 bound`` apart: the widened runs are
    disjoint, and each band's exact scores are a run of ``exact_sorted``).
    """
    out = imp32.astype(np.float64)  # ascending: float32 -> float64 keeps the order
    used = 0
    windows = []
    for lo, hi in bands:
        a = int(np.searchsorted(imp32, lo, side="left"))
        b = int(np.searchsorted(imp32, hi, side="right"))
        out[a:b] = exact_sorted[used : used + b - a]
        used += b - a
        wide_lo, wide_hi = _around(float(lo), bound)[0], _around(float(hi), bound)[1]
        a = int(np.searchsorted(imp32, wide_lo, side="left"))
        b = int(np.searchsorted(imp32, wide_hi, side="right"))
        out[a:b].sort()
        windows.append((a, b))
    # Outside the windows the values are imp32's, in order: the whole array is one sorted
    # run when each window is, with its neighbours on both sides.
    unsorted = any(bool(np.any(np.diff(out[max(a - 1, 0) : b + 1]) < 0)) for a, b in windows)
    if used != exact_sorted.size or unsorted:
        raise AssertionError("the patched impostor scores are not one sorted run")
    return out
