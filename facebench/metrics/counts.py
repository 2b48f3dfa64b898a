"""The one sorted-score core from which every verification metric is derived.

Decision rule everywhere in facebench: a pair is accepted ("same") when
``score >= threshold``. Scores are compared in float64; counts are integers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from facebench.errors import FacebenchError


class MetricInputError(FacebenchError):
    """Scores or labels given to a metric are not valid."""


@dataclass(frozen=True)
class ThresholdCounts:
    """Accepted genuine and impostor counts at every distinct threshold.

    Attributes
    ----------
    thresholds : ndarray of float64, shape (m + 1,)
        Strictly decreasing. ``thresholds[0]`` is ``+inf`` (nothing accepted); element
        ``i > 0`` is the ``i``-th highest distinct score.
    n_genuine_accepted : ndarray of int64, shape (m + 1,)
        Element ``i`` is the number of genuine pairs with ``score >= thresholds[i]``.
    n_impostor_accepted : ndarray of int64, shape (m + 1,)
        Element ``i`` is the number of impostor pairs with ``score >= thresholds[i]``.
    n_genuine, n_impostor : int
        Totals; the last element of each count array equals them.
    genuine_sorted, impostor_sorted : ndarray of float64
        The genuine and impostor scores in ascending order (used by count-based rules).
    """

    thresholds: npt.NDArray[np.float64]
    n_genuine_accepted: npt.NDArray[np.int64]
    n_impostor_accepted: npt.NDArray[np.int64]
    n_genuine: int
    n_impostor: int
    genuine_sorted: npt.NDArray[np.float64]
    impostor_sorted: npt.NDArray[np.float64]

    @property
    def far(self) -> npt.NDArray[np.float64]:
        """False accept rate at every threshold (``n_impostor_accepted / n_impostor``)."""
        return self.n_impostor_accepted / self.n_impostor

    @property
    def tar(self) -> npt.NDArray[np.float64]:
        """True accept rate at every threshold (``n_genuine_accepted / n_genuine``)."""
        return self.n_genuine_accepted / self.n_genuine


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
        See its attributes. Computed with two sorts (genuine, impostor) and binary searches:
        no threshold grid, exact counts at every distinct score.
    """
    s, y = check_scores(scores, is_same)
    genuine = np.sort(s[y])
    impostor = np.sort(s[~y])
    # The union of both sorted runs; a stable sort merges two runs in linear time.
    merged = np.sort(np.concatenate((genuine, impostor)), kind="stable")
    last_of_value = np.empty(merged.size, dtype=bool)
    np.not_equal(merged[1:], merged[:-1], out=last_of_value[:-1])
    last_of_value[-1] = True
    distinct = merged[last_of_value][::-1]  # descending
    tp = genuine.size - np.searchsorted(genuine, distinct, side="left")
    fp = impostor.size - np.searchsorted(impostor, distinct, side="left")
    return ThresholdCounts(
        thresholds=np.concatenate(([np.inf], distinct)),
        n_genuine_accepted=np.concatenate(([0], tp)).astype(np.int64),
        n_impostor_accepted=np.concatenate(([0], fp)).astype(np.int64),
        n_genuine=int(genuine.size),
        n_impostor=int(impostor.size),
        genuine_sorted=genuine,
        impostor_sorted=impostor,
    )
