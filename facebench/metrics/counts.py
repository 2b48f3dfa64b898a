"""The one sorted-score core from which every verification metric is derived.

Decision rule everywhere in facebench: a pair is accepted ("same") when
``score >= threshold``. Scores are compared in float64; counts are integers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from facebench.errors import FacebenchError


class MetricInputError(FacebenchError):
    """Scores or labels given to a metric are not valid."""


@dataclass(frozen=True)
class ThresholdCounts:
    """Accepted genuine and impostor counts at every distinct threshold.

    Held as the two classes' sorted scores; the per-threshold arrays (``thresholds``,
    ``n_genuine_accepted``, ``n_impostor_accepted``: three arrays as long as the scores)
    are built on first use and kept. facebench's own TAR at a FAR, AUC, EER and plotted ROC
    read the sorted scores directly (:mod:`facebench.metrics.operating`,
    :mod:`facebench.metrics.roc`), so at IJB-C size they never exist.

    Attributes
    ----------
    genuine_sorted, impostor_sorted : ndarray of float64
        The genuine and impostor scores in ascending order.
    n_genuine, n_impostor : int
        The totals the rates divide by: the sizes of the two arrays, except in
        :func:`facebench.metrics.identification.open_set_counts`, whose ``n_genuine`` also
        counts the mated probes that can never be accepted.
    thresholds : ndarray of float64, shape (m + 1,)
        Strictly decreasing. ``thresholds[0]`` is ``+inf`` (nothing accepted); element
        ``i > 0`` is the ``i``-th highest distinct score.
    n_genuine_accepted : ndarray of int64, shape (m + 1,)
        Element ``i`` is the number of genuine scores ``>= thresholds[i]``.
    n_impostor_accepted : ndarray of int64, shape (m + 1,)
        Element ``i`` is the number of impostor scores ``>= thresholds[i]``.
    """

    genuine_sorted: npt.NDArray[np.float64]
    impostor_sorted: npt.NDArray[np.float64]
    n_genuine: int
    n_impostor: int
    _table: list[npt.NDArray[Any]] = field(
        init=False, default_factory=list, repr=False, compare=False
    )

    def _arrays(self) -> list[npt.NDArray[Any]]:
        if not self._table:
            self._table.extend(_threshold_table(self.genuine_sorted, self.impostor_sorted))
        return self._table

    @property
    def thresholds(self) -> npt.NDArray[np.float64]:
        return self._arrays()[0]

    @property
    def n_genuine_accepted(self) -> npt.NDArray[np.int64]:
        return self._arrays()[1]

    @property
    def n_impostor_accepted(self) -> npt.NDArray[np.int64]:
        return self._arrays()[2]

    @property
    def far(self) -> npt.NDArray[np.float64]:
        """False accept rate at every threshold (``n_impostor_accepted / n_impostor``)."""
        return self.n_impostor_accepted / self.n_impostor

    @property
    def tar(self) -> npt.NDArray[np.float64]:
        """True accept rate at every threshold (``n_genuine_accepted / n_genuine``)."""
        return self.n_genuine_accepted / self.n_genuine

    def impostors_at_or_above(self, threshold: float) -> int:
        """Impostor scores ``>= threshold``."""
        imp = self.impostor_sorted
        return int(imp.size - np.searchsorted(imp, threshold, side="left"))

    def genuine_at_or_above(self, threshold: float) -> int:
        """Genuine scores ``>= threshold``."""
        gen = self.genuine_sorted
        return int(gen.size - np.searchsorted(gen, threshold, side="left"))

    def next_above(self, value: float) -> float:
        """The lowest score of either class above ``value`` (``+inf`` when none is)."""
        best = np.inf
        for scores in (self.genuine_sorted, self.impostor_sorted):
            j = int(np.searchsorted(scores, value, side="right"))
            if j < scores.size:
                best = min(best, float(scores[j]))
        return best


def check_scores(
    scores: npt.ArrayLike, is_same: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Validate and convert scores (float64) and labels (bool).

    Raises
    ------
    MetricInputError
        When shapes differ, a score is not finite, a label is not 0/1/True/False, or one of
        the two classes is empty.
    """
    s = np.asarray(scores)
    y = np.asarray(is_same)
    if s.ndim != 1 or y.ndim != 1 or s.shape != y.shape:
        raise MetricInputError(
            f"Expected 1-D `scores` and `is_same` of the same length, but got shapes "
            f"{s.shape} and {y.shape}"
        )
    if not np.issubdtype(s.dtype, np.number) or np.iscomplexobj(s):
        raise MetricInputError(f"Expected real-valued `scores`, but got dtype {s.dtype}")
    s64 = s.astype(np.float64, copy=False)
    bad = ~np.isfinite(s64)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise MetricInputError(
            f"Expected finite `scores`, but got {int(bad.sum())} non-finite values "
            f"(first at index {first}: {s64[first]})"
        )
    if y.dtype != np.bool_:
        if not np.issubdtype(y.dtype, np.number) or not np.isin(y, (0, 1)).all():
            raise MetricInputError("Expected `is_same` of booleans or 0/1, but got other values")
        y = y.astype(bool)
    n_genuine = int(y.sum())
    if n_genuine == 0 or n_genuine == y.size:
        raise MetricInputError(
            f"Expected both genuine and impostor pairs, but got {n_genuine} genuine and "
            f"{y.size - n_genuine} impostor pairs"
        )
    return s64, y


def sorted_scores(values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """``np.sort(values)``: the one sort of a class's scores (numpy's SIMD quicksort; on an
    AMD Zen 4 core the command line gives numpy its AVX2 version, :mod:`facebench.cpu`)."""
    return np.sort(values)


def count_at_thresholds(scores: npt.ArrayLike, is_same: npt.ArrayLike) -> ThresholdCounts:
    """Count accepted genuine and impostor pairs at every distinct score.

    Parameters
    ----------
    scores : array-like of float, shape (n,)
        Similarity scores; higher means "same".
    is_same : array-like of bool, shape (n,)
        True for genuine (mated) pairs.

    Returns
    -------
    ThresholdCounts
        See its attributes. Computed with one sort of each class, the genuine scores
        inserted among the impostors, and
        cumulative counts over the runs of equal scores: no threshold grid, exact integer
        counts at every distinct score.
    """
    s, y = check_scores(scores, is_same)
    return counts_from_sorted(np.sort(s[y]), sorted_scores(s[~y]))


def counts_from_sorted(
    genuine: npt.NDArray[np.float64], impostor: npt.NDArray[np.float64]
) -> ThresholdCounts:
    """The :class:`ThresholdCounts` of the two classes' scores, each given sorted ascending
    (float64, finite: not checked here; ``genuine`` may be empty)."""
    return ThresholdCounts(
        genuine_sorted=genuine,
        impostor_sorted=impostor,
        n_genuine=int(genuine.size),
        n_impostor=int(impostor.size),
    )


def _threshold_table(
    genuine: npt.NDArray[np.float64], impostor: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """thresholds, genuine accepted, impostor accepted (:class:`ThresholdCounts`)."""
    n = genuine.size + impostor.size
    # Both classes in one ascending array: each genuine score goes before the impostors
    # equal to it (a linear insertion, not a second sort of all scores).
    at = np.searchsorted(impostor, genuine, side="left")
    genuine_at = at + np.arange(genuine.size)  # ascending positions in `merged`
    merged = np.insert(impostor, at, genuine)
    # Runs of equal scores, by the index of their first element (ascending); read from
    # the top they are the distinct thresholds in descending order.
    new_value = np.empty(n, dtype=bool)
    new_value[0] = True
    np.not_equal(merged[1:], merged[:-1], out=new_value[1:])
    distinct = bool(new_value.all())  # the usual case: no two scores are equal
    starts = None if distinct else np.flatnonzero(new_value)
    del new_value
    m = n if starts is None else starts.size
    thresholds = np.empty(m + 1, dtype=np.float64)
    thresholds[0] = np.inf
    thresholds[1:] = (merged if starts is None else merged[starts])[::-1]
    del merged
    # Threshold j (1..m) is run m - j. Genuine accepted: a step function of j that rises at
    # the runs holding genuine scores, built from the G genuine runs alone.
    run = genuine_at if starts is None else np.searchsorted(starts, genuine_at, side="right") - 1
    rises, per_rise = np.unique(m - run, return_counts=True)
    lengths = np.diff(np.concatenate(([0], rises, [m + 1])))
    tp = np.repeat(np.concatenate(([0], np.cumsum(per_rise))), lengths).astype(np.int64, copy=False)
    # Everything accepted at threshold j: the elements from its run's start up (j of them
    # when every score is distinct).
    fp = np.empty(m + 1, dtype=np.int64)
    fp[0] = 0
    if starts is None:
        fp[1:] = np.arange(1, m + 1)
    else:
        np.subtract(n, starts[::-1], out=fp[1:])
    fp -= tp
    return thresholds, tp, fp
