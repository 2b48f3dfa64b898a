"""TAR at a FAR under the four rules met in published numbers (PROTOCOLS.md, "TAR at a FAR").

``exact`` is facebench's default; ``nearest``, ``interpolate`` and ``count`` reproduce other
tools' numbers on the same scores. Decision rule: accept when ``score >= threshold``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from facebench.metrics.counts import MetricInputError, ThresholdCounts
from facebench.metrics.roc import roc_curve


@dataclass(frozen=True)
class OperatingPoint:
    """One TAR at a FAR target.

    Attributes
    ----------
    far_target : float
        The requested FAR.
    tar : float
        The true accept rate under the rule.
    threshold : float or None
        Accept when ``score >= threshold``; ``+inf`` accepts nothing; None when the rule's
        point is not an operating point of any threshold (``interpolate``).
    far_achieved : float
        The empirical FAR at that threshold (``interpolate``: the target itself, clipped to
        the curve).
    n_impostors_at_or_above : int or None
        Impostor scores at or above the threshold (None for ``interpolate``).
    resolution_limited : bool
        True when ``far_target * n_impostor < 1``: not even one impostor may be accepted,
        so the FAR cannot be measured at this target; the TAR is still reported.
    rule : str
        The rule that produced the point.
    """

    far_target: float
    tar: float
    threshold: float | None
    far_achieved: float
    n_impostors_at_or_above: int | None
    resolution_limited: bool
    rule: str


def allowed_false_accepts(far_target: float, n_impostor: int) -> int:
    """``floor(far_target x n_impostor)``, in exact rational arithmetic on the decimal the
    user wrote (1e-3 x 1000 is exactly 1)."""
    return math.floor(Fraction(repr(float(far_target))) * n_impostor)


def _allowed_false_accepts(counts: ThresholdCounts, far_target: float) -> int:
    return allowed_false_accepts(far_target, counts.n_impostor)


def tar_exact(counts: ThresholdCounts, far_target: float) -> OperatingPoint:
    """facebench default: the operating point with the largest TAR whose FAR <= target.

    The FAR budget is ``k = floor(target * n_impostor)`` false accepts, computed exactly from
    the decimal value of the target. Among the points within the budget that reach the
    largest TAR, the one with the fewest false accepts (the highest threshold) is
    reported. When the budget is 0 the point lies above the highest impostor score and is
    flagged ``resolution_limited``. As bob.measure's ``far_threshold``.

    Read off the sorted scores: with ``v`` the ``(k + 1)``-th highest impostor score
    (``-inf`` when ``k >= n_impostor``), the points within the budget are the thresholds
    above ``v``; the largest TAR among them counts the ``c`` genuine scores above ``v``, and
    the highest threshold that keeps them all is the ``c``-th highest genuine score
    (``+inf`` when ``c = 0``). The same point as the first threshold where
    ``n_genuine_accepted`` reaches its value at the last threshold with
    ``n_impostor_accepted <= k`` (tested).
    """
    allowed = _allowed_false_accepts(counts, far_target)
    imp, gen = counts.impostor_sorted, counts.genuine_sorted
    v = -np.inf if allowed >= imp.size else float(imp[imp.size - 1 - allowed])
    above = gen.size - int(np.searchsorted(gen, v, side="right"))
    threshold = float(gen[gen.size - above]) if above else np.inf
    fp = counts.impostors_at_or_above(threshold)
    return OperatingPoint(
        far_target=float(far_target),
        tar=float(np.int64(above) / counts.n_genuine),
        threshold=threshold,
        far_achieved=fp / counts.n_impostor,
        n_impostors_at_or_above=fp,
        resolution_limited=far_target * counts.n_impostor < 1,
        rule="exact",
    )


def tar_nearest(counts: ThresholdCounts, far_target: float) -> OperatingPoint:
    """insightface eval_ijbc.py: the ROC point whose FAR is nearest the target.

    On scikit-learn's ``roc_curve`` with ``drop_intermediate=True``, both arrays reversed
    (from "accept all" to "accept none"), the first point with the smallest
    ``|far - target|``. Its FAR can lie above the target.
    """
    roc = roc_curve(counts, drop_intermediate=True)
    far_rev = roc.far[::-1]
    j = int(np.argmin(np.abs(far_rev - far_target)))
    i = roc.far.size - 1 - j
    fp = int(roc.n_impostor_accepted[i])
    return OperatingPoint(
        far_target=float(far_target),
        tar=float(roc.tar[i]),
        threshold=float(roc.thresholds[i]),
        far_achieved=fp / counts.n_impostor,
        n_impostors_at_or_above=fp,
        resolution_limited=far_target * counts.n_impostor < 1,
        rule="nearest",
    )


def tar_interpolate(counts: ThresholdCounts, far_target: float) -> OperatingPoint:
    """AruniRC's IJB-A code: ``numpy.interp(target, far, tar)`` on scikit-learn's
    ``roc_curve(drop_intermediate=True)``. Not an operating point of any threshold."""
    roc = roc_curve(counts, drop_intermediate=True)
    tar = float(np.interp(far_target, roc.far, roc.tar))
    return OperatingPoint(
        far_target=float(far_target),
        tar=tar,
        threshold=None,
        far_achieved=float(min(max(far_target, 0.0), 1.0)),
        n_impostors_at_or_above=None,
        resolution_limited=far_target * counts.n_impostor < 1,
        rule="interpolate",
    )


def tar_count(counts: ThresholdCounts, far_target: float) -> OperatingPoint:
    """PFE (evaluation/metrics.py): a threshold from the count of impostors.

    ``k = round(n_impostor * target)`` (Python's round, half to even); if ``k == 0`` the
    threshold is the highest impostor score plus 1e-8, else the k-th highest impostor score;
    accept ``score >= threshold``; TAR and the real FAR are measured there (ties at the
    threshold can push the FAR above the target).
    """
    imp = counts.impostor_sorted
    k = round(counts.n_impostor * far_target)
    threshold = float(imp[-1] + 1e-8) if k == 0 else float(imp[imp.size - k])
    n_gen = counts.genuine_sorted.size - int(
        np.searchsorted(counts.genuine_sorted, threshold, side="left")
    )
    n_imp = imp.size - int(np.searchsorted(imp, threshold, side="left"))
    return OperatingPoint(
        far_target=float(far_target),
        tar=n_gen / counts.n_genuine,
        threshold=threshold,
        far_achieved=n_imp / counts.n_impostor,
        n_impostors_at_or_above=n_imp,
        resolution_limited=far_target * counts.n_impostor < 1,
        rule="count",
    )


TAR_RULES: dict[str, Callable[[ThresholdCounts, float], OperatingPoint]] = {
    "exact": tar_exact,
    "nearest": tar_nearest,
    "interpolate": tar_interpolate,
    "count": tar_count,
}


def tar_at_far(
    counts: ThresholdCounts, far_targets: Sequence[float], rule: str = "exact"
) -> list[OperatingPoint]:
    """TAR at each FAR target under ``rule`` (a key of :data:`TAR_RULES`)."""
    if rule not in TAR_RULES:
        raise MetricInputError(f"Expected a TAR rule in {sorted(TAR_RULES)}, but got {rule!r}")
    points = []
    for target in far_targets:
        if not 0.0 < float(target) <= 1.0:
            raise MetricInputError(f"Expected a FAR target in (0, 1], but got {target!r}")
        points.append(TAR_RULES[rule](counts, float(target)))
    return points
