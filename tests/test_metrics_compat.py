"""The compatibility modes against slow, literal re-writings of the peers' loops.

Each reference below follows the peer's published evaluation code step by step (Python loops
over folds and thresholds, ``np.less``, Python float division, ``np.argmax``,
scikit-learn's ``KFold`` for insightface/facenet, SciPy's ``BSpline`` for SciPy 1.8's
``slinear``). The fast functions must give EQUAL results, not approximately equal ones.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy.interpolate import BSpline, interp1d
from sklearn.model_selection import KFold

from facebench.metrics.compat import (
    COMPAT_KFOLD,
    COMPAT_VAL_AT_FAR,
    CompatKFoldResult,
    CompatValResult,
    contiguous_fold_bounds,
    facenet_kfold,
    facenet_val_at_far,
    facexzoo_kfold,
    insightface_kfold,
    insightface_val_at_far,
    slinear_scipy18,
)
from facebench.metrics.counts import MetricInputError

NUMPY2 = np.lib.NumpyVersion(np.__version__) >= "2.0.0"
RUNNING_PROMOTION = "nep50" if NUMPY2 else "legacy"


# -- literal references: insightface eval/verification.py and facenet src/facenet.py ----


def ref_accuracy(threshold, dist, actual_issame):
    """calculate_accuracy: counts of np.less(dist, threshold), guarded rates."""
    predict_issame = np.less(dist, threshold)
    tp = np.sum(np.logical_and(predict_issame, actual_issame))
    fp = np.sum(np.logical_and(predict_issame, np.logical_not(actual_issame)))
    tn = np.sum(np.logical_and(np.logical_not(predict_issame), np.logical_not(actual_issame)))
    fn = np.sum(np.logical_and(np.logical_not(predict_issame), actual_issame))
    tpr = 0 if (tp + fn == 0) else float(tp) / float(tp + fn)
    fpr = 0 if (fp + tn == 0) else float(fp) / float(fp + tn)
    acc = float(tp + tn) / dist.size
    return tpr, fpr, acc


def ref_roc(thresholds, dist, actual_issame, nrof_folds=10):
    """calculate_roc; also returns the chosen thresholds, which the peer keeps internal."""
    nrof_thresholds = len(thresholds)
    k_fold = KFold(n_splits=nrof_folds, shuffle=False)
    tprs = np.zeros((nrof_folds, nrof_thresholds))
    fprs = np.zeros((nrof_folds, nrof_thresholds))
    accuracy = np.zeros(nrof_folds)
    chosen = np.zeros(nrof_folds)
    indices = np.arange(len(actual_issame))
    for fold_idx, (train_set, test_set) in enumerate(k_fold.split(indices)):
        acc_train = np.zeros(nrof_thresholds)
        for threshold_idx, threshold in enumerate(thresholds):
            _, _, acc_train[threshold_idx] = ref_accuracy(
                threshold, dist[train_set], actual_issame[train_set]
            )
        best_threshold_index = np.argmax(acc_train)
        for threshold_idx, threshold in enumerate(thresholds):
            tprs[fold_idx, threshold_idx], fprs[fold_idx, threshold_idx], _ = ref_accuracy(
                threshold, dist[test_set], actual_issame[test_set]
            )
        _, _, accuracy[fold_idx] = ref_accuracy(
            thresholds[best_threshold_index], dist[test_set], actual_issame[test_set]
        )
        chosen[fold_idx] = thresholds[best_threshold_index]
    return np.mean(tprs, 0), np.mean(fprs, 0), accuracy, chosen


def ref_val_far(threshold, dist, actual_issame):
    """calculate_val_far, unguarded as in both peers (ZeroDivisionError on an empty class)."""
    predict_issame = np.less(dist, threshold)
    true_accept = np.sum(np.logical_and(predict_issame, actual_issame))
    false_accept = np.sum(np.logical_and(predict_issame, np.logical_not(actual_issame)))
    n_same = np.sum(actual_issame)
    n_diff = np.sum(np.logical_not(actual_issame))
    val = float(true_accept) / float(n_same)
    far = float(false_accept) / float(n_diff)
    return val, far


def scipy18_interp1d_slinear(x, y, x_new):
    """interp1d(x, y, kind='slinear')(x_new) of SciPy 1.8: mergesort, then the k=1 spline
    make_interp_spline built without checking for repeated x, evaluated by SciPy's BSpline."""
    ind = np.argsort(x, kind="mergesort")
    xs, ys = x[ind], y[ind]
    if x_new < xs[0] or x_new > xs[-1]:
        raise ValueError("A value in x_new is out of the interpolation range.")
    t = np.r_[xs[0], xs, xs[-1]]
    return BSpline.construct_fast(t, ys, 1)(x_new)


def ref_val(thresholds, dist, actual_issame, far_target, nrof_folds=10):
    """calculate_val; also returns per-fold values and thresholds."""
    nrof_thresholds = len(thresholds)
    k_fold = KFold(n_splits=nrof_folds, shuffle=False)
    val = np.zeros(nrof_folds)
    far = np.zeros(nrof_folds)
    chosen = np.zeros(nrof_folds)
    indices = np.arange(len(actual_issame))
    for fold_idx, (train_set, test_set) in enumerate(k_fold.split(indices)):
        far_train = np.zeros(nrof_thresholds)
        for threshold_idx, threshold in enumerate(thresholds):
            _, far_train[threshold_idx] = ref_val_far(
                threshold, dist[train_set], actual_issame[train_set]
            )
        if np.max(far_train) >= far_target:
            threshold = scipy18_interp1d_slinear(far_train, thresholds, far_target)
        else:
            threshold = 0.0
        val[fold_idx], far[fold_idx] = ref_val_far(
            threshold, dist[test_set], actual_issame[test_set]
        )
        chosen[fold_idx] = threshold
    return np.mean(val), np.std(val), np.mean(far), val, far, chosen


def ref_facenet_distance(scores, distance_metric):
    """facenet's distance() from the cosine: metric 1 is arccos of the unclipped value."""
    if distance_metric == 0:
        return 2.0 - 2.0 * scores
    with np.errstate(invalid="ignore"):
        return np.arccos(scores) / math.pi


# -- literal reference: FaceX-Zoo test_protocol/lfw/lfw_evaluator.py ----------------------


def ref_get_threshold(score_list, label_list, num_thresholds=1000, legacy=False):
    """getThreshold. ``legacy`` spells out NumPy 1.x promotion (step in float64, each
    threshold cast to float32 for the comparison with the float32 scores); otherwise the
    running NumPy's own promotion applies."""
    pos_score_list = score_list[label_list == 1]
    neg_score_list = score_list[label_list == 0]
    pos_pair_nums = pos_score_list.size
    neg_pair_nums = neg_score_list.size
    score_max = np.max(score_list)
    score_min = np.min(score_list)
    score_span = score_max - score_min
    step = np.float64(score_span) / num_thresholds if legacy else score_span / num_thresholds
    threshold_list = score_min + step * np.array(range(1, num_thresholds + 1))
    fpr_list = []
    tpr_list = []
    for threshold in threshold_list:
        t = np.float32(threshold) if legacy else threshold
        fpr = np.sum(neg_score_list > t) / neg_pair_nums
        tpr = np.sum(pos_score_list > t) / pos_pair_nums
        fpr_list.append(fpr)
        tpr_list.append(tpr)
    fpr = np.array(fpr_list)
    tpr = np.array(tpr_list)
    best_index = np.argmax(tpr - fpr)
    return threshold_list[best_index]


def ref_facexzoo(scores, is_same, n_folds=10, legacy=False):
    """test_one_model with its (10, 600) float32 score array, generalized to KFold blocks
    (for 6000 pairs and 10 folds it is the peer's own layout)."""
    sizes = [len(t) for _, t in KFold(n_splits=n_folds, shuffle=False).split(scores)]
    bounds = np.concatenate(([0], np.cumsum(sizes)))
    subsets_score_list = [np.zeros(n, dtype=np.float32) for n in sizes]
    subsets_label_list = [np.zeros(n, dtype=np.int8) for n in sizes]
    for index in range(len(scores)):
        cur_subset = int(np.searchsorted(bounds, index, side="right") - 1)
        cur_id = index - bounds[cur_subset]
        subsets_label_list[cur_subset][cur_id] = int(is_same[index])
        subsets_score_list[cur_subset][cur_id] = scores[index]
    accu_list, chosen = [], []
    for subset_idx in range(n_folds):
        test_score_list = subsets_score_list[subset_idx]
        test_label_list = subsets_label_list[subset_idx]
        train = [i for i in range(n_folds) if i != subset_idx]
        train_score_list = np.concatenate([subsets_score_list[i] for i in train])
        train_label_list = np.concatenate([subsets_label_list[i] for i in train])
        with np.errstate(invalid="ignore", divide="ignore"):
            best_thres = ref_get_threshold(train_score_list, train_label_list, legacy=legacy)
        t = np.float32(best_thres) if legacy else best_thres
        positive_score_list = test_score_list[test_label_list == 1]
        negtive_score_list = test_score_list[test_label_list == 0]
        true_pos_pairs = np.sum(positive_score_list > t)
        true_neg_pairs = np.sum(negtive_score_list < t)
        accu_list.append((true_pos_pairs + true_neg_pairs) / sizes[subset_idx])
        chosen.append(best_thres)
    mean = np.mean(accu_list)
    std = np.std(accu_list, ddof=1) / np.sqrt(n_folds)
    return mean, std, np.array(accu_list), np.array(chosen)


# -- inputs -------------------------------------------------------------------------------


def random_case(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.5
    s = np.clip(rng.normal(0.15 + 0.45 * y, 0.18), -1.0, 1.0)
    return s, y


def tied_case(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Few distinct scores, so that many pairs tie."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.5
    s = np.round(np.clip(rng.normal(0.2 + 0.4 * y, 0.2), -1, 1), 1)
    return s, y


def on_grid_case(seed: int, n: int, step: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """Scores whose distance 2 - 2s is exactly a grid threshold of np.arange(0, 4, step)
    (kept only where that is possible in float64), plus their neighbours one ulp away."""
    grid = np.arange(0, 4, step)
    s_grid = (2.0 - grid) / 2.0
    exact = s_grid[2.0 - 2.0 * s_grid == grid]
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.5
    pick = rng.integers(0, exact.size, n)
    # genuine pairs mostly in the upper half of the exact scores
    pick = np.where(y, exact.size - 1 - pick // 2, pick)
    s = exact[np.clip(pick, 0, exact.size - 1)]
    nudge = rng.integers(-1, 2, n)
    s = np.where(nudge > 0, np.nextafter(s, 2.0), np.where(nudge < 0, np.nextafter(s, -2.0), s))
    return s, y


def separable_case(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    y = rng.random(n) < 0.5
    s = np.where(y, rng.uniform(0.55, 0.95, n), rng.uniform(-0.3, 0.25, n))
    return s, y


# -- comparisons --------------------------------------------------------------------------


def assert_matches_roc(result: CompatKFoldResult, dist, y, n_folds) -> None:
    tpr, fpr, accuracy, chosen = ref_roc(np.arange(0, 4, 0.01), dist, y, n_folds)
    np.testing.assert_array_equal(result.fold_accuracies, accuracy)
    np.testing.assert_array_equal(result.fold_thresholds, chosen)
    assert result.tpr_curve is not None and result.fpr_curve is not None
    np.testing.assert_array_equal(result.tpr_curve, tpr)
    np.testing.assert_array_equal(result.fpr_curve, fpr)
    assert result.mean == np.mean(accuracy)
    assert result.spread == np.std(accuracy)
    assert result.std_kind == "std ddof=0"


def assert_matches_val(result: CompatValResult, dist, y, far_target, n_folds) -> None:
    val_mean, val_std, far_mean, val, far, chosen = ref_val(
        np.arange(0, 4, 0.001), dist, y, far_target, n_folds
    )
    np.testing.assert_array_equal(result.fold_vals, val)
    np.testing.assert_array_equal(result.fold_fars, far)
    np.testing.assert_array_equal(result.fold_thresholds, chosen)
    assert result.val_mean == val_mean
    assert result.val_std == val_std
    assert result.far_mean == far_mean


def assert_matches_facexzoo(result: CompatKFoldResult, s, y, n_folds, legacy=False) -> None:
    mean, stderr, accu, chosen = ref_facexzoo(s, y, n_folds, legacy=legacy)
    np.testing.assert_array_equal(result.fold_accuracies, accu)
    np.testing.assert_array_equal(result.fold_thresholds, chosen)
    assert result.mean == mean
    assert result.spread == stderr
    assert result.std_kind == "standard error ddof=1/sqrt(k)"


CASES = {
    "random-600-s0": lambda: random_case(0, 600),
    "random-600-s1": lambda: random_case(1, 600),
    "random-6000-s2": lambda: random_case(2, 6000),
    "random-6003-s3": lambda: random_case(3, 6003),
    "ties-600": lambda: tied_case(4, 600),
    "ties-6003": lambda: tied_case(5, 6003),
    "on-grid-600": lambda: on_grid_case(6, 600),
    "on-grid-1203": lambda: on_grid_case(7, 1203),
    "separable-600": lambda: separable_case(600),
}


@pytest.mark.parametrize("case", list(CASES))
def test_insightface_kfold_equals_peer(case: str) -> None:
    s, y = CASES[case]()
    assert_matches_roc(insightface_kfold(s, y), 2.0 - 2.0 * s, y, 10)


@pytest.mark.parametrize("case", ["random-600-s0", "random-6003-s3", "ties-600", "on-grid-600"])
@pytest.mark.parametrize("metric", [0, 1])
def test_facenet_kfold_equals_peer(case: str, metric: int) -> None:
    s, y = CASES[case]()
    result = facenet_kfold(s, y, distance_metric=metric)
    # With metric 1, clip_cosine=True (default) equals facenet fed with cosines clipped to
    # [-1, 1]; the on-grid case holds cosines one ulp above 1 (see also
    # test_facenet_cosine_above_one). Metric 0 never clips.
    clipped = np.clip(s, -1, 1) if metric == 1 else s
    assert_matches_roc(result, ref_facenet_distance(clipped, metric), y, 10)
    assert result.rule == "facenet"
    if metric == 1:
        raw = facenet_kfold(s, y, distance_metric=metric, clip_cosine=False)
        assert_matches_roc(raw, ref_facenet_distance(s, metric), y, 10)


def test_facenet_concatenated_flips_doubles_the_squared_distance() -> None:
    s, y = random_case(8, 600)
    assert_matches_roc(facenet_kfold(s, y, concatenated_flips=True), 4.0 - 4.0 * s, y, 10)


def test_facenet_cosine_above_one() -> None:
    """facenet's arccos of a cosine an ulp above 1 is NaN: never accepted. clip_cosine=False
    reproduces that; the default clips it to distance 0."""
    s, y = random_case(9, 600)
    idx = np.flatnonzero(y)[:40]
    s[idx] = np.nextafter(1.0, 2.0)
    raw = facenet_kfold(s, y, distance_metric=1, clip_cosine=False)
    assert_matches_roc(raw, ref_facenet_distance(s, 1), y, 10)
    clipped = facenet_kfold(s, y, distance_metric=1)
    assert_matches_roc(clipped, ref_facenet_distance(np.clip(s, -1, 1), 1), y, 10)
    assert clipped.mean > raw.mean


@pytest.mark.parametrize(
    ("case", "far_target"),
    [
        ("random-600-s0", 1e-3),
        ("random-6000-s2", 1e-3),
        ("ties-600", 1e-3),
        ("on-grid-600", 0.05),
    ],
)
def test_insightface_val_equals_peer(case: str, far_target: float) -> None:
    s, y = CASES[case]()
    result = insightface_val_at_far(s, y, far_target)
    assert_matches_val(result, 2.0 - 2.0 * s, y, far_target, 10)
    assert result.fold_interpolated.all()


@pytest.mark.parametrize("metric", [0, 1])
def test_facenet_val_equals_peer(metric: int) -> None:
    s, y = tied_case(10, 600)
    result = facenet_val_at_far(s, y, 0.02, distance_metric=metric)
    assert_matches_val(result, ref_facenet_distance(s, metric), y, 0.02, 10)


def balanced_case(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """600 pairs, 30 genuine and 30 impostor in each fold: every training fold holds 270
    impostors, so targets k / 270 land exactly on a FAR value that repeats."""
    rng = np.random.default_rng(seed)
    y = np.concatenate([rng.permutation(np.arange(60) < 30) for _ in range(10)])
    s = np.round(np.clip(rng.normal(0.15 + 0.45 * y, 0.2), -1.0, 1.0), 3)
    return s, y


@pytest.mark.parametrize("far_target", [1 / 270, 27 / 270])
def test_val_target_on_a_repeated_far(far_target: float) -> None:
    s, y = balanced_case(19)
    result = insightface_val_at_far(s, y, far_target)
    assert_matches_val(result, 2.0 - 2.0 * s, y, far_target, 10)


def test_val_fallback_threshold_zero() -> None:
    """When the training FAR never reaches the target the peers use threshold 0.0."""
    s, y = random_case(11, 300)
    s[~y] = -1.0  # distance 4: above every grid threshold, so FAR is 0 everywhere
    result = insightface_val_at_far(s, y, 1e-3)
    assert_matches_val(result, 2.0 - 2.0 * s, y, 1e-3, 10)
    assert not result.fold_interpolated.any()
    np.testing.assert_array_equal(result.fold_thresholds, 0.0)


@pytest.mark.parametrize("case", list(CASES))
def test_facexzoo_equals_peer(case: str) -> None:
    s, y = CASES[case]()
    assert_matches_facexzoo(facexzoo_kfold(s, y, numpy_promotion=RUNNING_PROMOTION), s, y, 10)


@pytest.mark.skipif(not NUMPY2, reason="the running NumPy already uses legacy promotion")
@pytest.mark.parametrize("case", ["random-6000-s2", "ties-600", "random-6003-s3"])
def test_facexzoo_numpy1_promotion(case: str) -> None:
    # The reference spells NumPy 1.x's promotion out with explicit casts (a NumPy 1.26
    # install running the unmodified peer loop agreed with this on these inputs).
    s, y = CASES[case]()
    result = facexzoo_kfold(s, y, numpy_promotion="legacy")
    assert_matches_facexzoo(result, s, y, 10, legacy=True)


def test_facexzoo_float32_scores() -> None:
    """FaceX-Zoo stores scores in float32: scores that differ only in float64 tie there."""
    s, y = random_case(12, 600)
    nudged = s + np.where(y, 1e-12, -1e-12)
    a = facexzoo_kfold(s, y)
    b = facexzoo_kfold(nudged, y)
    np.testing.assert_array_equal(a.fold_accuracies, b.fold_accuracies)
    np.testing.assert_array_equal(a.fold_thresholds, b.fold_thresholds)


# -- edge cases: folds without one class ------------------------------------------------


def one_class_training_case() -> tuple[np.ndarray, np.ndarray]:
    """Fold 0 is all genuine, fold 1 all impostor: fold 1's training folds (0 and 2..9)
    hold genuine pairs only in fold 0, fold 0's training folds have no genuine pair."""
    s, y = random_case(13, 600)
    y = y.copy()
    y[:60] = False
    return s, y


def all_genuine_training_case() -> tuple[np.ndarray, np.ndarray]:
    """Two folds: every training pair of fold 1 is genuine, of fold 0 impostor."""
    s, _ = random_case(14, 40)
    y = np.arange(40) < 20
    return s, y


@pytest.mark.parametrize("make", [one_class_training_case, all_genuine_training_case])
def test_one_class_training_folds(make) -> None:
    s, y = make()
    k = 10 if s.size == 600 else 2
    assert_matches_roc(insightface_kfold(s, y, n_folds=k), 2.0 - 2.0 * s, y, k)
    assert_matches_roc(
        facenet_kfold(s, y, n_folds=k, distance_metric=1), ref_facenet_distance(s, 1), y, k
    )
    assert_matches_facexzoo(facexzoo_kfold(s, y, n_folds=k), s, y, k)


def test_val_fold_without_impostors_raises_like_the_peer() -> None:
    s, y = all_genuine_training_case()
    with pytest.raises(ZeroDivisionError):
        ref_val(np.arange(0, 4, 0.001), 2.0 - 2.0 * s, y, 1e-3, 2)
    with pytest.raises(MetricInputError, match="ZeroDivisionError"):
        insightface_val_at_far(s, y, n_folds=2)
    with pytest.raises(MetricInputError, match="fold 0"):
        facenet_val_at_far(s, y, n_folds=2)


# -- SciPy 1.8 slinear ---------------------------------------------------------------------


def test_slinear_matches_bspline_on_repeated_values() -> None:
    rng = np.random.default_rng(15)
    for _ in range(300):
        n = int(rng.integers(2, 30))
        x = rng.integers(0, 6, n).astype(np.float64) / rng.choice([1.0, 3.0, 7.0, 270.0])
        if rng.random() < 0.5:
            x = np.sort(x)  # FAR curves are non-decreasing
        y = np.cumsum(rng.random(n)) * rng.choice([1.0, 0.001])
        xs = np.sort(x)
        targets = [
            *np.unique(xs).tolist(),  # exactly on a (possibly repeated) value
            *(xs[:-1] + np.diff(xs) / 3).tolist(),
            float(rng.uniform(xs[0], xs[-1])),
            float(np.nextafter(xs[-1], -np.inf)) if xs[-1] > xs[0] else float(xs[0]),
        ]
        for target in targets:
            expected = float(scipy18_interp1d_slinear(x, y, target))
            got = slinear_scipy18(x, y, target)
            assert got == expected or (math.isnan(got) and math.isnan(expected)), (
                x,
                y,
                target,
            )


def test_slinear_equals_modern_interp1d_without_repeats() -> None:
    rng = np.random.default_rng(16)
    for _ in range(100):
        n = int(rng.integers(2, 40))
        x = rng.permutation(np.cumsum(rng.random(n) + 1e-3))
        y = rng.normal(size=n)
        f = interp1d(x, y, kind="slinear")
        for target in [*x.tolist(), *rng.uniform(x.min(), x.max(), 5).tolist()]:
            assert slinear_scipy18(x, y, target) == float(f(target))


def test_slinear_flat_top_returns_zero() -> None:
    """A target equal to a maximum that repeats lands on a zero-length interval: 0.0."""
    x = np.array([0.0, 0.5, 1.0, 1.0])
    y = np.array([0.1, 0.2, 0.3, 0.4])
    assert slinear_scipy18(x, y, 1.0) == 0.0 == float(scipy18_interp1d_slinear(x, y, 1.0))
    with pytest.raises(MetricInputError, match="interpolation point"):
        slinear_scipy18(x, y, 1.5)


# -- hand-worked cases ---------------------------------------------------------------------

# Distances 2 - 2s (rounded): fold 0 = pairs 0-3, fold 1 = pairs 4-7.
#   pair:      0       1       2       3       4       5       6       7
#   same:      G       G       I       I       G       G       I       I
#   2 - 2s:  0.2055  0.8055  1.6055  0.6055  0.4055  1.4055  1.8055  1.0055
HAND_SCORES = np.array([0.89725, 0.59725, 0.19725, 0.69725, 0.79725, 0.29725, 0.09725, 0.49725])
HAND_SAME = np.array([True, True, False, False, True, True, False, False])


def test_hand_insightface() -> None:
    # Fold 0 trains on fold 1: accuracy 0.75 first at t = 0.41 (just above 0.4055); on fold 0
    # that accepts pair 0, rejects 1 (wrong), 2 and 3: 3/4. Fold 1 trains on fold 0: first
    # maximum at t = 0.21; on fold 1 it accepts nothing: 2/4.
    r = insightface_kfold(HAND_SCORES, HAND_SAME, n_folds=2)
    np.testing.assert_array_equal(r.fold_accuracies, [0.75, 0.5])
    np.testing.assert_array_equal(r.fold_thresholds, np.arange(0, 4, 0.01)[[41, 21]])
    assert r.fold_thresholds == pytest.approx([0.41, 0.21], abs=1e-15)
    assert (r.mean, r.spread, r.rule) == (0.625, 0.125, "insightface")
    np.testing.assert_array_equal(r.fold_sizes, [4, 4])


def test_hand_facenet() -> None:
    # Metric 1 keeps the order of the scores: arccos(0.79725)/pi = 0.2063 and
    # arccos(0.89725)/pi = 0.1456 give thresholds 0.21 and 0.15, and the same accuracies.
    r = facenet_kfold(HAND_SCORES, HAND_SAME, n_folds=2, distance_metric=1)
    np.testing.assert_array_equal(r.fold_accuracies, [0.75, 0.5])
    assert r.fold_thresholds == pytest.approx([0.21, 0.15], abs=1e-15)
    # Concatenated flips double the squared distance: 0.811 -> 0.82, 0.411 -> 0.42.
    r = facenet_kfold(HAND_SCORES, HAND_SAME, n_folds=2, concatenated_flips=True)
    np.testing.assert_array_equal(r.fold_accuracies, [0.75, 0.5])
    assert r.fold_thresholds == pytest.approx([0.82, 0.42], abs=1e-15)
    assert (r.mean, r.spread) == (0.625, 0.125)


def test_hand_facexzoo() -> None:
    # Fold 0 trains on fold 1: scores 0.09725..0.79725, step 0.0007; tpr - fpr = 1 - 1/2
    # already at the first threshold 0.09795 (first maximum). On fold 0 both genuine pairs
    # are above it, both impostors too (wrong): 2/4. Fold 1 trains on fold 0: first
    # threshold 0.19795; on fold 1 genuine 0.79725, 0.29725 right, impostor 0.09725 right,
    # 0.49725 wrong: 3/4.
    r = facexzoo_kfold(HAND_SCORES, HAND_SAME, n_folds=2)
    np.testing.assert_array_equal(r.fold_accuracies, [0.5, 0.75])
    assert r.fold_thresholds == pytest.approx([0.09795, 0.19795], abs=1e-7)
    assert r.mean == 0.625
    # std(ddof=1) / sqrt(2) of [0.5, 0.75] is 0.125 up to the rounding of two square roots
    assert r.spread == pytest.approx(0.125, rel=1e-15)
    assert r.std_kind == "standard error ddof=1/sqrt(k)"


def test_hand_facexzoo_ties_are_errors() -> None:
    # Fold 1 all 0.5: fold 0's threshold is 0.5 (span 0, every tpr - fpr = 0, first index),
    # so pairs 1 and 2 (both 0.5) are wrong whatever their label: 2/4. Fold 1 trains on
    # fold 0 (0.1 .. 0.9): threshold 0.1008; its genuine 0.5 are right, impostor 0.5 wrong.
    s = np.array([0.9, 0.5, 0.5, 0.1, 0.5, 0.5, 0.5, 0.5])
    r = facexzoo_kfold(s, HAND_SAME, n_folds=2)
    np.testing.assert_array_equal(r.fold_accuracies, [0.5, 0.5])
    assert r.fold_thresholds[0] == 0.5
    assert (r.mean, r.spread) == (0.5, 0.0)


def test_hand_val() -> None:
    # Target 0.5, fold 0 (trains on fold 1, impostor distances 1.0055, 1.8055): FAR = 0.5 on
    # grid 1.006 .. 1.805, 1.0 above. The spline interval ends at the last 0.5, so the
    # threshold is exactly grid[1805]; on fold 0 it accepts all: VAL 1, FAR 1. Fold 1: grid
    # [1605]; accepts both genuine and impostor 1.0055: VAL 1, FAR 0.5.
    grid = np.arange(0, 4, 0.001)
    r = insightface_val_at_far(HAND_SCORES, HAND_SAME, 0.5, n_folds=2)
    np.testing.assert_array_equal(r.fold_thresholds, grid[[1805, 1605]])
    np.testing.assert_array_equal(r.fold_vals, [1.0, 1.0])
    np.testing.assert_array_equal(r.fold_fars, [1.0, 0.5])
    assert (r.val_mean, r.val_std, r.far_mean) == (1.0, 0.0, 0.75)
    # Target 0.25: halfway between the last FAR 0 and the first FAR 0.5 (1.0055, 0.6055).
    r = insightface_val_at_far(HAND_SCORES, HAND_SAME, 0.25, n_folds=2)
    assert r.fold_thresholds == pytest.approx([1.0055, 0.6055], abs=1e-12)
    np.testing.assert_array_equal(r.fold_vals, [1.0, 0.5])
    np.testing.assert_array_equal(r.fold_fars, [0.5, 0.0])
    assert (r.val_mean, r.val_std, r.far_mean) == (0.75, 0.25, 0.25)
    # Target 1.0 is the maximum FAR, which repeats: zero-length interval, threshold 0.0.
    r = facenet_val_at_far(HAND_SCORES, HAND_SAME, 1.0, n_folds=2)
    np.testing.assert_array_equal(r.fold_thresholds, [0.0, 0.0])
    assert r.fold_interpolated.all()
    np.testing.assert_array_equal(r.fold_vals, [0.0, 0.0])


# -- folds, property, registry, validation -------------------------------------------------


@pytest.mark.parametrize(("n", "k"), [(10, 10), (11, 10), (6000, 10), (6003, 10), (17, 3)])
def test_fold_bounds_are_sklearn_kfold(n: int, k: int) -> None:
    bounds = contiguous_fold_bounds(n, k)
    for i, (_, test) in enumerate(KFold(n_splits=k, shuffle=False).split(np.arange(n))):
        np.testing.assert_array_equal(np.arange(bounds[i], bounds[i + 1]), test)


@settings(max_examples=40, deadline=None)
@given(
    scores=st.lists(
        st.floats(-1.0, 1.0, allow_nan=False).map(lambda v: round(v, 2)), min_size=20, max_size=60
    ),
    seed=st.integers(0, 2**32 - 1),
    n_folds=st.integers(2, 10),
)
@example(scores=[0.5] * 20, seed=0, n_folds=10)
def test_permutation_within_folds_changes_nothing(scores, seed, n_folds) -> None:
    s = np.asarray(scores)
    rng = np.random.default_rng(seed)
    y = rng.random(s.size) < 0.5
    y[0], y[1] = True, False
    a = insightface_kfold(s, y, n_folds=n_folds)
    bounds = contiguous_fold_bounds(s.size, n_folds)
    perm = np.concatenate(
        [start + rng.permutation(stop - start) for start, stop in itertools.pairwise(bounds)]
    )
    b = insightface_kfold(s[perm], y[perm], n_folds=n_folds)
    np.testing.assert_array_equal(a.fold_accuracies, b.fold_accuracies)
    np.testing.assert_array_equal(a.fold_thresholds, b.fold_thresholds)
    np.testing.assert_array_equal(a.tpr_curve, b.tpr_curve)
    assert (a.mean, a.spread) == (b.mean, b.spread)
    c = facexzoo_kfold(s[perm], y[perm], n_folds=n_folds)
    np.testing.assert_array_equal(
        facexzoo_kfold(s, y, n_folds=n_folds).fold_accuracies, c.fold_accuracies
    )


def test_registries() -> None:
    s, y = random_case(17, 600)
    assert list(COMPAT_KFOLD) == ["insightface", "facenet", "facexzoo"]
    for name, fn in COMPAT_KFOLD.items():
        r = fn(s, y, n_folds=10)
        assert r.rule == name
        assert r.fold_accuracies.shape == (10,)
    for name, fn in COMPAT_VAL_AT_FAR.items():
        assert fn(s, y, n_folds=10).rule == name


@pytest.mark.parametrize(
    ("scores", "is_same", "kwargs", "match"),
    [
        ([0.1, np.nan, 0.3] * 4, [True, False, True] * 4, {}, "first at index 1"),
        ([0.1, 0.2], [True, False, True], {}, "same length"),
        ([[0.1, 0.2]] * 10, [[True, False]] * 10, {}, "1-D"),
        ([0.1] * 12, [True] * 12, {}, "both genuine and impostor"),
        ([0.1] * 9, [True, False] * 4 + [True], {}, "at least `n_folds` = 10 pairs"),
        ([0.1] * 12, [True, False] * 6, {"n_folds": 1}, "integer >= 2"),
    ],
)
def test_bad_input(scores, is_same, kwargs, match) -> None:
    for fn in [*COMPAT_KFOLD.values(), *COMPAT_VAL_AT_FAR.values()]:
        with pytest.raises(MetricInputError, match=match):
            fn(scores, is_same, **kwargs)


def test_bad_options() -> None:
    s, y = random_case(18, 100)
    with pytest.raises(MetricInputError, match="distance_metric"):
        facenet_kfold(s, y, distance_metric=2)
    with pytest.raises(MetricInputError, match="far_target"):
        insightface_val_at_far(s, y, far_target=1.5)
    with pytest.raises(MetricInputError, match="numpy_promotion"):
        facexzoo_kfold(s, y, numpy_promotion="numpy3")  # type: ignore[arg-type]
