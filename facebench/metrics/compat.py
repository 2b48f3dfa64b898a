"""Compatibility modes: 10-fold accuracy and VAL@FAR exactly as the peers compute them.

Each function takes cosine ``scores`` of L2-normalized features and ``is_same`` labels in
protocol pair order, and returns what the peer's own evaluation code prints (PROTOCOLS.md,
"Compatibility modes, exactly"):

- ``insightface``: ``recognition/arcface_torch/eval/verification.py`` (``calculate_roc``,
  ``calculate_accuracy``, ``calculate_val``, ``calculate_val_far``, ``evaluate``);
- ``facenet``: ``src/facenet.py`` (``distance``, ``calculate_roc``, ``calculate_accuracy``,
  ``calculate_val``, ``calculate_val_far``) with the grids of ``src/lfw.py`` ``evaluate``;
- ``facexzoo``: FaceX-Zoo ``test_protocol/lfw/lfw_evaluator.py`` (``test_one_model``,
  ``getThreshold``).

The peers scan their threshold grids with Python loops over the data. Here every fold's
genuine and impostor values are sorted once and the count on one side of every grid
threshold comes from :func:`numpy.searchsorted` (``value < t`` is ``side="left"``,
``value > t`` is ``n - side="right"``), so a million pairs take well under a second, with
results equal to the peers' bit for bit (the tests hold literal copies of the peers'
loops). Folds are ``sklearn.model_selection.KFold(n_splits=k, shuffle=False)`` over pair
order: contiguous blocks, the first ``n % k`` of them one pair longer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

import numpy as np
import numpy.typing as npt

from facebench.metrics.counts import MetricInputError, check_scores

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

STD_DDOF0 = "std ddof=0"
STDERR_DDOF1 = "standard error ddof=1/sqrt(k)"
FACEXZOO_NUM_THRESHOLDS = 1000


@dataclass(frozen=True, eq=False)
class CompatKFoldResult:
    """A peer's k-fold accuracy, fold by fold, as the peer computes and prints it.

    Attributes
    ----------
    rule : str
        ``"insightface"``, ``"facenet"`` or ``"facexzoo"``.
    decision_rule : str
        What a threshold means in this mode (distance or score, and the comparison).
    fold_accuracies : ndarray of float64, shape (k,)
        Held-out accuracy of each fold: correct pairs / pairs in the fold.
    fold_thresholds : ndarray of float64, shape (k,)
        The threshold chosen on the other folds, in the unit of ``decision_rule``.
    fold_sizes : ndarray of int64, shape (k,)
        Pairs in each fold.
    mean : float
        ``np.mean(fold_accuracies)``.
    spread : float
        The "+-" figure the peer prints; ``std_kind`` says which one it is.
    std_kind : str
        ``"std ddof=0"`` (insightface, facenet: ``np.std``) or
        ``"standard error ddof=1/sqrt(k)"`` (FaceX-Zoo).
    grid : ndarray of float64, shape (m,) or None
        The threshold grid (insightface, facenet: ``np.arange(0, 4, 0.01)``).
    tpr_curve, fpr_curve : ndarray of float64, shape (m,) or None
        Mean over folds of the held-out TPR and FPR at every grid threshold (0 for a fold
        without genuine, respectively impostor, pairs), which insightface and facenet
        return beside the accuracies; None for FaceX-Zoo.
    """

    rule: str
    decision_rule: str
    fold_accuracies: FloatArray
    fold_thresholds: FloatArray
    fold_sizes: IntArray
    mean: float
    spread: float
    std_kind: str
    grid: FloatArray | None = None
    tpr_curve: FloatArray | None = None
    fpr_curve: FloatArray | None = None


@dataclass(frozen=True, eq=False)
class CompatValResult:
    """A peer's VAL at a FAR (``calculate_val``), fold by fold.

    Attributes
    ----------
    rule : str
        ``"insightface"`` or ``"facenet"``.
    far_target : float
        The FAR the training threshold was interpolated at.
    fold_vals, fold_fars : ndarray of float64, shape (k,)
        Held-out VAL (genuine accepted / genuine) and FAR (impostors accepted / impostors)
        of each fold at its threshold, accepting ``distance < threshold``.
    fold_thresholds : ndarray of float64, shape (k,)
        The distance threshold of each fold (0.0 where the training FAR never reached
        the target: the peer's fallback, which accepts nothing with a nonnegative distance).
    fold_interpolated : ndarray of bool, shape (k,)
        False where that 0.0 fallback was used.
    val_mean, val_std, far_mean : float
        ``np.mean(fold_vals)``, ``np.std(fold_vals)`` (ddof=0), ``np.mean(fold_fars)``:
        the three numbers the peer returns.
    std_kind : str
        ``"std ddof=0"``.
    """

    rule: str
    far_target: float
    fold_vals: FloatArray
    fold_fars: FloatArray
    fold_thresholds: FloatArray
    fold_interpolated: BoolArray
    val_mean: float
    val_std: float
    far_mean: float
    std_kind: str


def contiguous_fold_bounds(n_pairs: int, n_folds: int) -> IntArray:
    """Boundaries of ``KFold(n_splits=n_folds, shuffle=False)`` test folds.

    Returns
    -------
    ndarray of int64, shape (n_folds + 1,)
        Fold ``i`` holds pairs ``bounds[i]:bounds[i + 1]``; the first ``n_pairs % n_folds``
        folds have ``n_pairs // n_folds + 1`` pairs, the others ``n_pairs // n_folds``.
    """
    sizes = np.full(n_folds, n_pairs // n_folds, dtype=np.int64)
    sizes[: n_pairs % n_folds] += 1
    return np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)


def _check(
    scores: npt.ArrayLike, is_same: npt.ArrayLike, n_folds: int
) -> tuple[FloatArray, BoolArray, IntArray]:
    s, y = check_scores(scores, is_same)
    if isinstance(n_folds, bool) or not isinstance(n_folds, int | np.integer) or n_folds < 2:
        raise MetricInputError(f"Expected `n_folds` to be an integer >= 2, but got {n_folds!r}")
    if s.size < n_folds:
        raise MetricInputError(
            f"Expected at least `n_folds` = {n_folds} pairs, but got {s.size} pairs"
        )
    return s, y, contiguous_fold_bounds(s.size, int(n_folds))


@dataclass(frozen=True)
class _Blocks:
    """Per test fold: the genuine and the impostor values, each sorted ascending."""

    genuine: list[FloatArray]
    impostor: list[FloatArray]

    @classmethod
    def of(cls, values: FloatArray, is_same: BoolArray, bounds: IntArray) -> _Blocks:
        genuine: list[FloatArray] = []
        impostor: list[FloatArray] = []
        for start, stop in pairwise(bounds.tolist()):
            v, y = values[start:stop], is_same[start:stop]
            genuine.append(np.sort(v[y]))
            impostor.append(np.sort(v[~y]))
        return cls(genuine, impostor)

    def n_genuine(self) -> IntArray:
        return np.array([g.size for g in self.genuine], dtype=np.int64)

    def n_impostor(self) -> IntArray:
        return np.array([i.size for i in self.impostor], dtype=np.int64)

    def below(self, grid: FloatArray) -> tuple[IntArray, IntArray]:
        """Genuine and impostor counts with ``value < t``, shape (k, m) each (NaN is never)."""
        g = np.stack([np.searchsorted(a, grid, side="left") for a in self.genuine])
        i = np.stack([np.searchsorted(a, grid, side="left") for a in self.impostor])
        return g.astype(np.int64), i.astype(np.int64)


# ----------------------------------------------------------------------------- distances


def _squared_l2(scores: FloatArray) -> FloatArray:
    # |a - b|^2 = 2 - 2 a.b for unit vectors. The peers sum the squared differences of the
    # embeddings, so a distance that lies exactly on a grid point can differ in the last bit.
    return 2.0 - 2.0 * scores


def _facenet_distance(
    scores: FloatArray, distance_metric: int, concatenated_flips: bool, clip_cosine: bool
) -> FloatArray:
    if distance_metric == 0:
        # facenet concatenates an image's and its mirror's unit embeddings without
        # re-normalizing: the squared L2 of the concatenation is the sum of both halves'.
        d = _squared_l2(scores)
        return 2.0 * d if concatenated_flips else d
    if distance_metric == 1:
        cos = np.clip(scores, -1.0, 1.0) if clip_cosine else scores
        with np.errstate(invalid="ignore"):
            return np.asarray(np.arccos(cos) / math.pi, dtype=np.float64)
    raise MetricInputError(f"Expected `distance_metric` 0 or 1, but got {distance_metric!r}")


# ------------------------------------------------------------------ grid k-fold accuracy


def _grid_kfold(
    rule: str, decision_rule: str, dist: FloatArray, is_same: BoolArray, bounds: IntArray
) -> CompatKFoldResult:
    grid = np.arange(0, 4, 0.01)
    blocks = _Blocks.of(dist, is_same, bounds)
    n_gen, n_imp = blocks.n_genuine(), blocks.n_impostor()
    fold_sizes = n_gen + n_imp
    gen_below, imp_below = blocks.below(grid)
    # Training set = every fold but the held-out one: totals minus that fold.
    tp_train = gen_below.sum(axis=0) - gen_below
    tn_train = (n_imp.sum() - n_imp)[:, None] - (imp_below.sum(axis=0) - imp_below)
    n_train = (fold_sizes.sum() - fold_sizes)[:, None]
    acc_train = (tp_train + tn_train) / n_train
    best = np.argmax(acc_train, axis=1)  # first maximum, as the peers' np.argmax
    rows = np.arange(bounds.size - 1)
    correct = gen_below[rows, best] + (n_imp - imp_below[rows, best])
    accuracy = correct / fold_sizes
    # calculate_accuracy: tpr = 0 if tp + fn == 0 else tp / (tp + fn); the same for fpr.
    with np.errstate(invalid="ignore", divide="ignore"):
        tprs = np.where(n_gen[:, None] == 0, 0.0, gen_below / n_gen[:, None])
        fprs = np.where(n_imp[:, None] == 0, 0.0, imp_below / n_imp[:, None])
    return CompatKFoldResult(
        rule=rule,
        decision_rule=decision_rule,
        fold_accuracies=accuracy,
        fold_thresholds=grid[best],
        fold_sizes=fold_sizes,
        mean=float(np.mean(accuracy)),
        spread=float(np.std(accuracy)),
        std_kind=STD_DDOF0,
        grid=grid,
        tpr_curve=np.mean(tprs, 0),
        fpr_curve=np.mean(fprs, 0),
    )


# ---------------------------------------------------------------------- grid VAL at FAR


def slinear_scipy18(x: npt.ArrayLike, y: npt.ArrayLike, x_new: float) -> float:
    """``scipy.interpolate.interp1d(x, y, kind='slinear')(x_new)`` as SciPy <= 1.8 computes it.

    SciPy >= 1.9 refuses repeated ``x`` in ``make_interp_spline``; SciPy 1.8 special-cased
    degree 1 before that check, so repeated values were accepted. Its steps: sort ``(x, y)``
    stably by ``x`` (``argsort(kind="mergesort")``); build the degree-1 B-spline with knots
    ``t = (x_0, x_0, x_1, ..., x_{n-1}, x_{n-1})`` and coefficients ``c`` = the sorted ``y``;
    evaluate it as ``scipy.interpolate.BSpline`` does: the interval ``l`` is the largest
    index in ``[1, n - 1]`` with ``t[l] <= x_new`` (1 when there is none), then de Boor's
    recursion: a zero-length interval (``t[l + 1] == t[l]``) gives 0.0; otherwise
    ``w = 1 / (t[l+1] - t[l])`` and the value is
    ``c[l-1] * (w * (t[l+1] - x_new)) + c[l] * (w * (x_new - t[l]))``, in that order.

    Raises
    ------
    MetricInputError
        When ``x_new`` lies outside ``[min(x), max(x)]`` (interp1d's bounds error) or fewer
        than two points are given.
    """
    xa = np.asarray(x, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64)
    if xa.ndim != 1 or xa.shape != ya.shape or xa.size < 2:
        raise MetricInputError(
            f"Expected 1-D `x` and `y` of one length >= 2, but got shapes {xa.shape} and {ya.shape}"
        )
    order = np.argsort(xa, kind="mergesort")
    xs, c = xa[order], ya[order]
    if not xs[0] <= x_new <= xs[-1]:
        raise MetricInputError(
            f"Expected the interpolation point in [{xs[0]!r}, {xs[-1]!r}] (interp1d raises "
            f"a bounds error outside), but got {x_new!r}"
        )
    n = xs.size
    t = np.concatenate(([xs[0]], xs, [xs[-1]]))
    ell = max(1, int(np.searchsorted(t[1:n], x_new, side="right")))
    t_lo, t_hi = float(t[ell]), float(t[ell + 1])
    if t_hi == t_lo:
        return 0.0
    w = 1.0 / (t_hi - t_lo)
    return 0.0 + float(c[ell - 1]) * (w * (t_hi - x_new)) + float(c[ell]) * (w * (x_new - t_lo))


def _grid_val(
    rule: str, dist: FloatArray, is_same: BoolArray, bounds: IntArray, far_target: float
) -> CompatValResult:
    if isinstance(far_target, bool) or not (
        isinstance(far_target, float | int | np.floating | np.integer) and 0.0 <= far_target <= 1.0
    ):
        raise MetricInputError(f"Expected `far_target` in [0, 1], but got {far_target!r}")
    far_target = float(far_target)
    grid = np.arange(0, 4, 0.001)
    blocks = _Blocks.of(dist, is_same, bounds)
    n_gen, n_imp = blocks.n_genuine(), blocks.n_impostor()
    n_gen_train, n_imp_train = n_gen.sum() - n_gen, n_imp.sum() - n_imp
    # The peer divides by these four counts, unguarded, in this order, fold after fold.
    for f in range(bounds.size - 1):
        for where, counts in (
            ("the training folds of", (n_gen_train, n_imp_train)),
            ("held-out", (n_gen, n_imp)),
        ):
            for kind, count in zip(("genuine", "impostor"), counts, strict=True):
                if count[f] == 0:
                    raise MetricInputError(
                        f"Expected {kind} pairs in {where} fold {f} ({rule}'s "
                        f"calculate_val_far divides by their number and raises "
                        f"ZeroDivisionError), but got none"
                    )
    _, imp_below = blocks.below(grid)
    fa_train = imp_below.sum(axis=0) - imp_below
    far_train = fa_train / n_imp_train[:, None]
    k = bounds.size - 1
    vals, fars, thresholds = np.empty(k), np.empty(k), np.empty(k)
    interpolated = np.zeros(k, dtype=bool)
    for f in range(k):
        if np.max(far_train[f]) >= far_target:
            thresholds[f] = slinear_scipy18(far_train[f], grid, far_target)
            interpolated[f] = True
        else:
            thresholds[f] = 0.0
        t = thresholds[f]
        vals[f] = np.searchsorted(blocks.genuine[f], t, side="left") / n_gen[f]
        fars[f] = np.searchsorted(blocks.impostor[f], t, side="left") / n_imp[f]
    return CompatValResult(
        rule=rule,
        far_target=far_target,
        fold_vals=vals,
        fold_fars=fars,
        fold_thresholds=thresholds,
        fold_interpolated=interpolated,
        val_mean=float(np.mean(vals)),
        val_std=float(np.std(vals)),
        far_mean=float(np.mean(fars)),
        std_kind=STD_DDOF0,
    )


# ------------------------------------------------------------------------- insightface


_L2_RULE = "squared L2 distance 2 - 2*score; same when distance < threshold"


def insightface_kfold(
    scores: npt.ArrayLike, is_same: npt.ArrayLike, n_folds: int = 10
) -> CompatKFoldResult:
    """k-fold accuracy as insightface's ``eval/verification.py`` ``calculate_roc`` computes it.

    Parameters
    ----------
    scores : array-like of float, shape (n,)
        Cosine similarities of L2-normalized features (flip fusion already applied:
        insightface adds the raw embeddings of an image and its mirror, then normalizes).
    is_same : array-like of bool, shape (n,)
        True for genuine pairs, in protocol pair order.
    n_folds : int
        ``nrof_folds``; folds are ``KFold(n_splits=n_folds, shuffle=False)``.

    Returns
    -------
    CompatKFoldResult
        ``mean`` and ``spread`` are ``np.mean(accuracy)`` and ``np.std(accuracy)`` (ddof=0)
        as ``test()`` prints them; ``tpr_curve``/``fpr_curve`` are ``calculate_roc``'s tpr
        and fpr.

    Notes
    -----
    The rule (``recognition/arcface_torch/eval/verification.py``): distance = squared L2
    of the normalized embeddings, computed here in float64 as ``2 - 2 * score``
    (insightface sums the squared differences of the embeddings, so a distance lying
    exactly on a grid point may differ in the last bit); thresholds
    ``np.arange(0, 4, 0.01)``; a pair is "same" when ``distance < threshold``; per fold
    the training accuracy ``(tp + tn) / n`` at every threshold, the first maximum
    (``np.argmax``), and the held-out accuracy at that threshold.
    """
    s, y, bounds = _check(scores, is_same, n_folds)
    return _grid_kfold("insightface", _L2_RULE, _squared_l2(s), y, bounds)


def insightface_val_at_far(
    scores: npt.ArrayLike, is_same: npt.ArrayLike, far_target: float = 1e-3, n_folds: int = 10
) -> CompatValResult:
    """VAL at a FAR as insightface's ``eval/verification.py`` ``calculate_val`` computes it.

    Parameters
    ----------
    scores, is_same, n_folds
        As :func:`insightface_kfold`.
    far_target : float
        1e-3 in insightface's ``evaluate``.

    Returns
    -------
    CompatValResult

    Raises
    ------
    MetricInputError
        Where insightface fails: a fold, or the training folds of a fold, without genuine or
        without impostor pairs (``calculate_val_far`` divides by both counts, unguarded:
        ZeroDivisionError), or a target below the smallest training FAR (interp1d's bounds
        error).

    Notes
    -----
    The rule (``recognition/arcface_torch/eval/verification.py``): distance
    ``2 - 2 * score`` as in :func:`insightface_kfold`; thresholds
    ``np.arange(0, 4, 0.001)``; per fold FAR(t) = impostors with ``distance < t`` / impostors
    on the training folds for every t; if ``max FAR >= far_target`` the threshold is
    ``interp1d(far_train, thresholds, kind='slinear')(far_target)`` as SciPy 1.8 computes
    it (:func:`slinear_scipy18`; later SciPy refuses the repeated FAR values), else 0.0;
    VAL and FAR are then measured on the held-out fold with ``distance < threshold``.
    """
    s, y, bounds = _check(scores, is_same, n_folds)
    return _grid_val("insightface", _squared_l2(s), y, bounds, far_target)


# ----------------------------------------------------------------------------- facenet


def _facenet_rule(distance_metric: int, concatenated_flips: bool) -> str:
    if distance_metric == 1:
        return "arccos(score)/pi; same when distance < threshold"
    if concatenated_flips:
        return "squared L2 of concatenated flips 4 - 4*score; same when distance < threshold"
    return _L2_RULE


def facenet_kfold(
    scores: npt.ArrayLike,
    is_same: npt.ArrayLike,
    n_folds: int = 10,
    *,
    distance_metric: int = 0,
    concatenated_flips: bool = False,
    clip_cosine: bool = True,
) -> CompatKFoldResult:
    """k-fold accuracy as facenet's ``src/facenet.py`` ``calculate_roc`` computes it.

    Parameters
    ----------
    scores, is_same, n_folds
        As :func:`insightface_kfold`.
    distance_metric : {0, 1}
        facenet's ``--distance_metric``: 0 = squared L2 (``2 - 2 * score``), 1 =
        ``arccos(similarity) / pi`` (similarity = dot / norms = the cosine score).
    concatenated_flips : bool
        facenet's ``--use_flipped_images``: it concatenates the unit embeddings of an image
        and its mirror WITHOUT re-normalizing, so its squared L2 is ``4 - 4 * score`` where
        ``score`` is facebench's ``concat`` fusion (the mean of the two cosines). Metric 1
        divides by the norms and is unchanged.
    clip_cosine : bool
        facenet calls ``np.arccos`` on the unclipped ratio, so a pair whose cosine exceeds
        1 by rounding gets a NaN distance and is never accepted (NaN < t is False). Our
        scores come from different arithmetic (a dot product of unit vectors, not
        ``dot / (norm * norm)``), so whether a cosine lands an ulp above 1 is not the same
        event as in facenet; by default the cosine is clipped to [-1, 1], which gives such a
        pair the distance exact arithmetic gives (0). ``False`` reproduces the NaN rule.

    Returns
    -------
    CompatKFoldResult
        ``mean`` and ``spread`` are ``np.mean(accuracy)`` and ``np.std(accuracy)`` (ddof=0)
        as ``validate_on_lfw.py`` prints them.

    Notes
    -----
    The rule (``src/facenet.py``, grids from ``src/lfw.py`` ``evaluate``): thresholds
    ``np.arange(0, 4, 0.01)`` for both metrics; "same" when ``distance < threshold``; per
    fold the training accuracy at every threshold, the first maximum (``np.argmax``), the
    held-out accuracy there. ``subtract_mean`` needs the embeddings and is not offered.
    """
    s, y, bounds = _check(scores, is_same, n_folds)
    dist = _facenet_distance(s, distance_metric, concatenated_flips, clip_cosine)
    return _grid_kfold(
        "facenet", _facenet_rule(distance_metric, concatenated_flips), dist, y, bounds
    )


def facenet_val_at_far(
    scores: npt.ArrayLike,
    is_same: npt.ArrayLike,
    far_target: float = 1e-3,
    n_folds: int = 10,
    *,
    distance_metric: int = 0,
    concatenated_flips: bool = False,
    clip_cosine: bool = True,
) -> CompatValResult:
    """VAL at a FAR as facenet's ``src/facenet.py`` ``calculate_val`` computes it.

    Parameters and rule as :func:`insightface_val_at_far` (thresholds
    ``np.arange(0, 4, 0.001)``, SciPy 1.8 ``slinear`` interpolation, fallback 0.0), with
    facenet's distances (:func:`facenet_kfold`). facenet's ``calculate_val_far`` has no
    guard either (the ``n_diff == 0: n_diff = 1`` / ``n_same == 0: return 0, 0`` lines
    are in forks, not in davidsandberg/facenet): the same inputs raise
    :class:`~facebench.metrics.counts.MetricInputError` here.
    """
    s, y, bounds = _check(scores, is_same, n_folds)
    dist = _facenet_distance(s, distance_metric, concatenated_flips, clip_cosine)
    return _grid_val("facenet", dist, y, bounds, far_target)


# ---------------------------------------------------------------------------- FaceX-Zoo


def _facexzoo_thresholds(
    score_min: np.float32, score_max: np.float32, numpy_promotion: str
) -> tuple[FloatArray, FloatArray]:
    """getThreshold's grid, and the values the comparisons actually use."""
    span = np.float32(score_max - score_min)
    i = np.arange(1, FACEXZOO_NUM_THRESHOLDS + 1, dtype=np.int64)
    if numpy_promotion == "nep50":
        # NumPy >= 2: float32 scalar / int stays float32; float32 * int64 array is float64;
        # the float32 scores are compared with float64 thresholds in float64.
        step = np.float32(span / np.float32(FACEXZOO_NUM_THRESHOLDS))
        grid = np.float64(score_min) + np.float64(step) * i
        return grid, grid
    # NumPy 1.x: scalar-only operations promote float32 with a Python int to float64, and
    # comparing a float32 array with a float64 scalar casts the scalar to float32.
    step64 = np.float64(span) / float(FACEXZOO_NUM_THRESHOLDS)
    grid = np.float64(score_min) + step64 * i
    return grid, grid.astype(np.float32).astype(np.float64)


def facexzoo_kfold(
    scores: npt.ArrayLike,
    is_same: npt.ArrayLike,
    n_folds: int = 10,
    *,
    numpy_promotion: Literal["nep50", "legacy"] = "nep50",
) -> CompatKFoldResult:
    """k-fold accuracy as FaceX-Zoo's ``test_protocol/lfw/lfw_evaluator.py`` computes it.

    Parameters
    ----------
    scores, is_same
        As :func:`insightface_kfold`.
    n_folds : int
        FaceX-Zoo hard-codes 10 folds of 600 pairs (``index // 600``, ``/ 600``,
        ``np.sqrt(10)``); other sizes are generalized to ``KFold`` blocks, accuracy =
        correct / fold size and standard error over ``sqrt(n_folds)``. With 6,000 pairs and
        10 folds this is exactly FaceX-Zoo.
    numpy_promotion : {"nep50", "legacy"}
        FaceX-Zoo's arithmetic depends on NumPy's promotion rules. ``"nep50"`` (NumPy >= 2,
        what a fresh install runs): ``step = span / 1000`` in float32, comparisons in
        float64. ``"legacy"`` (NumPy 1.x): ``step`` in float64, each threshold rounded to
        float32 before it is compared with the float32 scores.

    Returns
    -------
    CompatKFoldResult
        ``spread`` is ``np.std(accu_list, ddof=1) / np.sqrt(10)``, the standard error
        FaceX-Zoo prints. ``fold_thresholds`` are ``best_thres`` (cosine scores).

    Notes
    -----
    The rule (``lfw_evaluator.py``): scores are stored in a float32 array
    (``np.zeros((10, 600), dtype=np.float32)``), so they are cast to float32 here (FaceX-Zoo
    computes them as a float32 dot product: the last float32 bit may differ). Per fold,
    ``getThreshold`` on the training folds: ``score_min + step * np.array(range(1, 1001))``
    with ``step = (max - min) / 1000`` over the training scores; TPR and FPR with
    ``score > t``; the first maximum of ``tpr - fpr`` (``np.argmax``; when the training
    folds lack genuine or impostor pairs every ``tpr - fpr`` is NaN and ``np.argmax``
    gives index 0). On the held-out fold a genuine pair is right when ``score > t`` and
    an impostor when ``score < t``: a tie is an error.
    """
    s, y, bounds = _check(scores, is_same, n_folds)
    if numpy_promotion not in ("nep50", "legacy"):
        raise MetricInputError(
            f"Expected `numpy_promotion` 'nep50' or 'legacy', but got {numpy_promotion!r}"
        )
    s32 = s.astype(np.float32)
    blocks = _Blocks.of(s32.astype(np.float64), y, bounds)
    all_gen = np.sort(np.concatenate(blocks.genuine))
    all_imp = np.sort(np.concatenate(blocks.impostor))
    n_gen, n_imp = blocks.n_genuine(), blocks.n_impostor()
    k = bounds.size - 1
    block_min = np.array([s32[a:b].min() for a, b in pairwise(bounds.tolist())])
    block_max = np.array([s32[a:b].max() for a, b in pairwise(bounds.tolist())])
    accuracy, thresholds = np.empty(k), np.empty(k)
    for f in range(k):
        others = np.arange(k) != f
        grid, compared = _facexzoo_thresholds(
            block_min[others].min(), block_max[others].max(), numpy_promotion
        )
        n_pos, n_neg = int(n_gen.sum() - n_gen[f]), int(n_imp.sum() - n_imp[f])
        if n_pos == 0 or n_neg == 0:
            best = 0  # 0 / 0 makes tpr - fpr all NaN; np.argmax returns the first NaN
        else:
            pos_above = (all_gen.size - np.searchsorted(all_gen, compared, side="right")) - (
                n_gen[f] - np.searchsorted(blocks.genuine[f], compared, side="right")
            )
            neg_above = (all_imp.size - np.searchsorted(all_imp, compared, side="right")) - (
                n_imp[f] - np.searchsorted(blocks.impostor[f], compared, side="right")
            )
            best = int(np.argmax(pos_above / n_pos - neg_above / n_neg))
        t = compared[best]
        true_pos = n_gen[f] - np.searchsorted(blocks.genuine[f], t, side="right")
        true_neg = np.searchsorted(blocks.impostor[f], t, side="left")
        accuracy[f] = (true_pos + true_neg) / (n_gen[f] + n_imp[f])
        thresholds[f] = grid[best]
    return CompatKFoldResult(
        rule="facexzoo",
        decision_rule=(
            "float32 cosine score; genuine right when score > threshold, impostor right "
            "when score < threshold (a tie is an error)"
        ),
        fold_accuracies=accuracy,
        fold_thresholds=thresholds,
        fold_sizes=n_gen + n_imp,
        mean=float(np.mean(accuracy)),
        spread=float(np.std(accuracy, ddof=1) / np.sqrt(k)),
        std_kind=STDERR_DDOF1,
    )


COMPAT_KFOLD: dict[str, Callable[..., CompatKFoldResult]] = {
    "insightface": insightface_kfold,
    "facenet": facenet_kfold,
    "facexzoo": facexzoo_kfold,
}
"""The ``--compat`` choices: peer name -> k-fold accuracy function."""

COMPAT_VAL_AT_FAR: dict[str, Callable[..., CompatValResult]] = {
    "insightface": insightface_val_at_far,
    "facenet": facenet_val_at_far,
}
"""Peers that report VAL at a FAR from the same folds: peer name -> function."""
