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
    ``roc_auc_score``. Accumulated in exact integer arithmetic.
    """
    tp = counts.n_genuine_accepted
    fp = counts.n_impostor_accepted
    # twice the area in units of one genuine x one impostor, a block of segments at a time
    # (exact integers: the same sum in any blocks; no (m,) temporaries at 15 M thresholds)
    twice = 0
    for a in range(0, tp.size - 1, _BLOCK):
        b = min(a + _BLOCK, tp.size - 1)
        twice += int(np.sum(np.diff(fp[a : b + 1]) * (tp[a + 1 : b + 1] + tp[a:b]), dtype=np.int64))
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
    fp, tp = counts.n_impostor_accepted, counts.n_genuine_accepted
    n_imp, n_gen = counts.n_impostor, counts.n_genuine

    def far(j: int) -> float:
        return float(np.float64(fp[j]) / n_imp)

    def d(j: int) -> float:  # far - frr, with numpy's float64 operations, point by point
        return float(np.float64(fp[j]) / n_imp - (1.0 - np.float64(tp[j]) / n_gen))

    # d is non-decreasing (IEEE division and subtraction are monotone) with d[-1] == 1: the
    # first point with d >= 0 by bisection, as numpy.searchsorted(d, 0.0) finds it, without
    # (m,) float arrays (15 M thresholds at IJB-C size)
    lo, hi = 0, tp.size - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if d(mid) >= 0.0:
            hi = mid
        else:
            lo = mid + 1
    i = lo
    if d(i) == 0.0 or i == 0:
        return EqualErrorRate(eer=far(i), threshold=float(counts.thresholds[i]))
    lam = -d(i - 1) / (d(i) - d(i - 1))
    eer = far(i - 1) + lam * (far(i) - far(i - 1))
    return EqualErrorRate(eer=float(eer), threshold=float(counts.thresholds[i]))
