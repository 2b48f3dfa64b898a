"""ROC, AUC and EER as thin transforms of :func:`count_at_thresholds`.

Decision rule: accept when ``score >= threshold``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from facebench.metrics.counts import ThresholdCounts


@dataclass(frozen=True)
class RocCurve:
    """Receiver operating characteristic.

    Attributes
    ----------
    far, tar : ndarray of float64, shape (k,)
        Element ``i`` is the false / true accept rate of the pairs with
        ``score >= thresholds[i]``. Non-decreasing; the first point is (0, 0).
    thresholds : ndarray of float64, shape (k,)
        Strictly decreasing; ``thresholds[0] = +inf`` accepts nothing.
    n_impostor_accepted, n_genuine_accepted : ndarray of int64, shape (k,)
        The counts behind the rates.
    """

    far: npt.NDArray[np.float64]
    tar: npt.NDArray[np.float64]
    thresholds: npt.NDArray[np.float64]
    n_impostor_accepted: npt.NDArray[np.int64]
    n_genuine_accepted: npt.NDArray[np.int64]


_BLOCK = 1 << 20  # segments per block of the AUC sum


def roc_curve(counts: ThresholdCounts, drop_intermediate: bool = False) -> RocCurve:
    """The ROC at every distinct threshold.

    Parameters
    ----------
    counts : ThresholdCounts
        From :func:`facebench.metrics.counts.count_at_thresholds`.
    drop_intermediate : bool
        False (default): every operating point. True: drop the points that lie on a straight
        horizontal or vertical run between their neighbours, exactly as scikit-learn's
        ``roc_curve(drop_intermediate=True)`` does (needed by the ``nearest`` and
        ``interpolate`` compatibility rules, which read that thinned curve).
    """
    tp = counts.n_genuine_accepted
    fp = counts.n_impostor_accepted
    thr = counts.thresholds
    if drop_intermediate and tp.size - 1 > 2:
        # scikit-learn keeps the first and last point and every point where the second
        # difference of either count is non-zero (the (0, 0) start is added afterwards).
        tp1, fp1 = tp[1:], fp[1:]
        keep = np.concatenate(([True], (np.diff(fp1, 2) != 0) | (np.diff(tp1, 2) != 0), [True]))
        idx = np.concatenate(([0], np.flatnonzero(keep) + 1))
        tp, fp, thr = tp[idx], fp[idx], thr[idx]
    return RocCurve(
        far=fp / counts.n_impostor,
        tar=tp / counts.n_genuine,
        thresholds=thr,
        n_impostor_accepted=fp,
        n_genuine_accepted=tp,
    )


def auc(counts: ThresholdCounts) -> float:
    """Area under the ROC (trapezoidal over every operating point).

    Equal to the probability that a random genuine score exceeds a random impostor score,
    ties counting one half (the Mann-Whitney statistic), as scikit-learn's
    ``roc_auc_score``: twice the area, in units of one genuine x one impostor, is the sum
    over genuine scores ``g`` of (impostors below ``g``) + (impostors at or below ``g``),
    in exact integer arithmetic, read off the sorted scores by binary search.
    """
    imp = counts.impostor_sorted
    gen = counts.genuine_sorted
    below = np.searchsorted(imp, gen, side="left")
    at_or_below = np.searchsorted(imp, gen, side="right")
    twice = int(below.sum(dtype=np.int64)) + int(at_or_below.sum(dtype=np.int64))
    return twice / (2 * counts.n_genuine * counts.n_impostor)


@dataclass(frozen=True)
class EqualErrorRate:
    """Equal error rate and the threshold near it.

    Attributes
    ----------
    eer : float
        The rate where the false accept rate equals the false reject rate (1 - TAR) on the
        ROC drawn as straight segments between consecutive operating points.
    threshold : float
        The threshold of the first operating point (from the strictest) whose FAR is at
        least its FRR, i.e. the end of the segment that crosses FAR = FRR.
    """

    eer: float
    threshold: float


def equal_error_rate(counts: ThresholdCounts) -> EqualErrorRate:
    """The equal error rate (EER).

    Definition: d(i) = FAR(i) - FRR(i) is non-decreasing along the operating points, from
    -1 (nothing accepted) to +1 (everything accepted). Let i be the first point with
    d(i) >= 0. If d(i) = 0 the EER is FAR(i); otherwise the segment from point i-1 to
    point i crosses FAR = FRR at exactly one place, found by linear interpolation, and the
    EER is the FAR (= FRR) there. This is the intersection of the piecewise-linear ROC with
    the line TAR = 1 - FAR, so it does not depend on any threshold grid.
    """
    n_imp, n_gen = counts.n_impostor, counts.n_genuine
    imp, gen = counts.impostor_sorted, counts.genuine_sorted

    def d(t: float) -> float:  # far - frr at threshold t, with numpy's float64 operations
        fp = np.float64(counts.impostors_at_or_above(t))
        tp = np.float64(counts.genuine_at_or_above(t))
        return float(fp / n_imp - (1.0 - tp / n_gen))

    # d is non-increasing in t (IEEE division and subtraction are monotone), -1 at +inf and
    # +1 at the lowest score: the first operating point with d >= 0 is at the highest
    # score t with d(t) >= 0, found by bisection in each class's sorted scores.
    best = -np.inf
    for scores in (imp, gen):
        lo, hi = 0, scores.size  # d(scores[j]) >= 0 for j < the answer, < 0 from it on
        while lo < hi:
            mid = (lo + hi) // 2
            if d(float(scores[mid])) >= 0.0:
                lo = mid + 1
            else:
                hi = mid
        if lo:
            best = max(best, float(scores[lo - 1]))
    t = best
    far_t = float(np.float64(counts.impostors_at_or_above(t)) / n_imp)
    d_t = d(t)
    if d_t == 0.0:
        return EqualErrorRate(eer=far_t, threshold=t)
    previous = counts.next_above(t)  # the operating point before (+inf: nothing accepted)
    d_prev = d(previous)
    far_prev = float(np.float64(counts.impostors_at_or_above(previous)) / n_imp)
    lam = -d_prev / (d_t - d_prev)
    eer = far_prev + lam * (far_t - far_prev)
    return EqualErrorRate(eer=float(eer), threshold=t)
