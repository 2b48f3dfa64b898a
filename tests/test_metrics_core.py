"""The sorted-score core, ROC, AUC, EER and TAR@FAR rules against independent references:
scikit-learn, slow brute-force versions written here, and hand-worked tables."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from facebench.metrics import (
    MetricInputError,
    auc,
    count_at_thresholds,
    equal_error_rate,
    roc_curve,
    tar_at_far,
)


def random_case(seed: int, n: int = 500, quantize: float | None = None):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.4
    y[0], y[1] = True, False
    s = rng.normal(size=n) + 1.0 * y
    if quantize:
        s = np.round(s / quantize) * quantize
    return s, y


# -- brute-force references -------------------------------------------------------------


def brute_counts(s, y):
    """Every distinct score as a threshold, counted one by one."""
    thresholds = [math.inf, *sorted(set(s.tolist()), reverse=True)]
    tp = [sum(1 for v, g in zip(s, y, strict=True) if g and v >= t) for t in thresholds]
    fp = [sum(1 for v, g in zip(s, y, strict=True) if not g and v >= t) for t in thresholds]
    return np.array(thresholds), np.array(tp), np.array(fp)


def brute_auc(s, y):
    gen, imp = s[y], s[~y]
    wins = sum((g > i) + 0.5 * (g == i) for g in gen for i in imp)
    return wins / (gen.size * imp.size)


def brute_tar_exact(s, y, target):
    thr, tp, fp = brute_counts(s, y)
    n_gen, n_imp = int(y.sum()), int((~y).sum())
    best = None
    for t, a, b in zip(thr, tp, fp, strict=True):
        if b / n_imp <= target + 1e-15 and (best is None or a > best[1]):
            best = (t, a, b)
    assert best is not None
    return best[0], best[1] / n_gen, best[2]


def brute_eer(s, y):
    """Walk the segments of the ROC and solve FAR = FRR on the one that crosses."""
    _, tp, fp = brute_counts(s, y)
    n_gen, n_imp = int(y.sum()), int((~y).sum())
    far = [b / n_imp for b in fp]
    frr = [1 - a / n_gen for a in tp]
    for i in range(len(far)):
        if far[i] >= frr[i]:
            if far[i] == frr[i] or i == 0:
                return far[i]
            d0, d1 = far[i - 1] - frr[i - 1], far[i] - frr[i]
            lam = -d0 / (d1 - d0)
            return far[i - 1] + lam * (far[i] - far[i - 1])
    raise AssertionError("unreachable")


# -- counts and ROC -----------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("quantize", [None, 0.25])
def test_counts_equal_brute_force(seed, quantize):
    s, y = random_case(seed, n=300, quantize=quantize)
    c = count_at_thresholds(s, y)
    thr, tp, fp = brute_counts(s, y)
    np.testing.assert_array_equal(c.thresholds, thr)
    np.testing.assert_array_equal(c.n_genuine_accepted, tp)
    np.testing.assert_array_equal(c.n_impostor_accepted, fp)
    assert c.n_genuine_accepted.dtype == np.int64


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("quantize", [None, 0.1, 1.0])
@pytest.mark.parametrize("drop", [False, True])
def test_roc_equals_sklearn(seed, quantize, drop):
    s, y = random_case(seed, quantize=quantize)
    roc = roc_curve(count_at_thresholds(s, y), drop_intermediate=drop)
    far, tar, thr = sk_roc_curve(y, s, drop_intermediate=drop)
    np.testing.assert_array_equal(roc.far, far)
    np.testing.assert_array_equal(roc.tar, tar)
    np.testing.assert_array_equal(roc.thresholds, thr)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("quantize", [None, 0.5])
def test_auc_equals_sklearn_and_mann_whitney(seed, quantize):
    s, y = random_case(seed, n=200, quantize=quantize)
    value = auc(count_at_thresholds(s, y))
    assert value == pytest.approx(roc_auc_score(y, s), abs=1e-15)
    assert value == pytest.approx(brute_auc(s, y), abs=1e-15)


def test_hand_worked_table():
    # scores:  0.9 G, 0.8 I, 0.7 G, 0.7 I, 0.5 G, 0.3 I, 0.2 I, 0.1 G
    s = np.array([0.9, 0.8, 0.7, 0.7, 0.5, 0.3, 0.2, 0.1])
    y = np.array([1, 0, 1, 0, 1, 0, 0, 1], dtype=bool)
    c = count_at_thresholds(s, y)
    np.testing.assert_array_equal(c.thresholds, [np.inf, 0.9, 0.8, 0.7, 0.5, 0.3, 0.2, 0.1])
    np.testing.assert_array_equal(c.n_genuine_accepted, [0, 1, 1, 2, 3, 3, 3, 4])
    np.testing.assert_array_equal(c.n_impostor_accepted, [0, 0, 1, 2, 2, 3, 4, 4])
    # AUC: genuine 0.9 beats 4, 0.7 beats 2 and ties 1, 0.5 beats 2, 0.1 beats 0 -> 8.5/16
    assert auc(c) == 8.5 / 16
    # TAR at FAR <= 0.25: one impostor allowed; 0.8 reaches no more TAR than 0.9, so the
    # point with fewer false accepts is reported: threshold 0.9, TAR 1/4, FAR 0
    (p,) = tar_at_far(c, [0.25])
    assert (p.tar, p.threshold, p.n_impostors_at_or_above, p.far_achieved) == (0.25, 0.9, 0, 0.0)
    # FAR <= 0.5: two impostors -> the lowest such threshold is 0.5 with TAR 3/4
    (p,) = tar_at_far(c, [0.5])
    assert (p.tar, p.threshold, p.n_impostors_at_or_above) == (0.75, 0.5, 2)
    assert not p.resolution_limited
    # FAR 0.2 < 1/4: budget 0, TAR at the lowest threshold above every impostor: 0.9 -> 1/4
    (p,) = tar_at_far(c, [0.2])
    assert (p.tar, p.threshold, p.n_impostors_at_or_above) == (0.25, 0.9, 0)
    assert p.resolution_limited
    # EER: d = FAR - FRR: [-1, -.75, -.5, 0, .25, ...] -> FAR = FRR = 0.5 at threshold 0.7
    e = equal_error_rate(c)
    assert (e.eer, e.threshold) == (0.5, 0.7)


def test_eer_interpolates_inside_a_segment():
    # G 0.9, I 0.8, G 0.6, I 0.4: points (FAR, FRR): (0,1) (0,.5) (.5,.5)... equal at 0.5
    # shift: G 0.9, G 0.85, I 0.8, I 0.7, G 0.6, I 0.4 -> n_gen 3, n_imp 3
    s = np.array([0.9, 0.85, 0.8, 0.7, 0.6, 0.4])
    y = np.array([1, 1, 0, 0, 1, 0], dtype=bool)
    c = count_at_thresholds(s, y)
    # points: t=.85: FAR 0, FRR 1/3 ; t=.8: FAR 1/3, FRR 1/3 -> exactly equal at 1/3
    assert equal_error_rate(c).eer == pytest.approx(1 / 3)
    s2 = np.array([0.9, 0.8, 0.7, 0.6])
    y2 = np.array([1, 0, 0, 1], dtype=bool)
    # points: (0, .5) at .9 -> d=-.5; (.5, .5) at .8 -> d=0 -> EER .5
    assert equal_error_rate(count_at_thresholds(s2, y2)).eer == 0.5
    s3 = np.array([0.9, 0.8, 0.7])
    y3 = np.array([1, 1, 0], dtype=bool)
    # points (FAR, FRR): (0,1), (0,.5), (0,0) -> d reaches 0 at t=0.8: EER 0
    assert equal_error_rate(count_at_thresholds(s3, y3)).eer == 0.0
    s4 = np.array([0.9, 0.5])
    y4 = np.array([0, 1], dtype=bool)
    # (0,1) -> (1,1) -> (1,0): crossing on the first segment at FAR = FRR = 1
    assert equal_error_rate(count_at_thresholds(s4, y4)).eer == 1.0


@pytest.mark.parametrize("seed", range(10))
@pytest.mark.parametrize("quantize", [None, 0.2])
def test_eer_equals_brute_force(seed, quantize):
    s, y = random_case(seed, n=150, quantize=quantize)
    assert equal_error_rate(count_at_thresholds(s, y)).eer == pytest.approx(
        brute_eer(s, y), abs=1e-12
    )


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("target", [1e-3, 0.01, 0.05, 0.1, 0.3, 1.0])
def test_tar_exact_equals_brute_force(seed, target):
    s, y = random_case(seed, n=400, quantize=0.05 if seed % 2 else None)
    (p,) = tar_at_far(count_at_thresholds(s, y), [target])
    thr, tar, fp = brute_tar_exact(s, y, target)
    assert (p.threshold, p.tar, p.n_impostors_at_or_above) == (thr, tar, fp)
    assert p.far_achieved <= target
    assert p.resolution_limited == (target * int((~y).sum()) < 1)


def test_tar_exact_far_budget_is_exact_decimal():
    # 1000 impostors, FAR 1e-3 allows exactly one false accept (0.001 * 1000 == 1).
    imp = np.linspace(0.0, 0.5, 1000)
    gen = np.array([0.2, 0.45, 0.4999, 0.6])
    s = np.concatenate((gen, imp))
    y = np.concatenate((np.ones(4, bool), np.zeros(1000, bool)))
    (p,) = tar_at_far(count_at_thresholds(s, y), [1e-3])
    # scores >= 0.4999 accept the genuine 0.6 and 0.4999 and the one impostor 0.5; the next
    # threshold down is the second-highest impostor (0.4995), a second false accept.
    assert p.n_impostors_at_or_above == 1
    assert (p.tar, p.threshold) == (0.5, 0.4999)


def test_tar_rule_nearest_is_insightface_literal():
    for seed in range(6):
        s, y = random_case(seed, n=3000, quantize=0.01 if seed % 2 else None)
        counts = count_at_thresholds(s, y)
        fpr, tpr, thr = sk_roc_curve(y, s)
        fpr, tpr, thr = np.flipud(fpr), np.flipud(tpr), np.flipud(thr)
        for target in (1e-4, 1e-3, 1e-2, 1e-1):
            # insightface eval_ijbc.py: min_index = np.argmin(list(abs(fpr - far)))
            min_index = np.argmin(list(abs(fpr - target)))
            (p,) = tar_at_far(counts, [target], rule="nearest")
            assert (p.tar, p.threshold, p.far_achieved) == (
                tpr[min_index],
                thr[min_index],
                fpr[min_index],
            )


def test_tar_rule_interpolate_is_numpy_interp_on_sklearn_roc():
    for seed in range(6):
        s, y = random_case(seed, n=3000, quantize=0.02 if seed % 2 else None)
        counts = count_at_thresholds(s, y)
        fpr, tpr, _ = sk_roc_curve(y, s)
        for target in (1e-4, 1e-3, 1e-2, 1e-1):
            (p,) = tar_at_far(counts, [target], rule="interpolate")
            assert p.tar == np.interp(target, fpr, tpr)
            assert p.threshold is None and p.n_impostors_at_or_above is None


def test_tar_rule_count_is_pfe_literal():
    def pfe(score_vec, label_vec, far):
        # PFE evaluation/metrics.py, find_thresholds_by_FAR + ROC, written out
        score_neg = np.sort(score_vec[~label_vec])[::-1]
        num_neg = len(score_neg)
        num_false_alarm = round(num_neg * far)
        if num_false_alarm == 0:
            threshold = score_neg[0] + 1e-8
        else:
            threshold = score_neg[num_false_alarm - 1]
        accept = score_vec >= threshold
        tar = np.mean(accept[label_vec])
        far_real = np.mean(accept[~label_vec])
        return tar, far_real, threshold

    for seed in range(6):
        s, y = random_case(seed, n=2000, quantize=0.05 if seed % 2 else None)
        counts = count_at_thresholds(s, y)
        for target in (1e-4, 1e-3, 1e-2, 1e-1, 0.25):
            (p,) = tar_at_far(counts, [target], rule="count")
            tar, far_real, thr = pfe(s, y, target)
            assert (p.tar, p.far_achieved, p.threshold) == (tar, far_real, thr)


def test_bad_inputs_are_clear_errors():
    with pytest.raises(MetricInputError, match="non-finite"):
        count_at_thresholds(np.array([0.1, np.nan]), np.array([True, False]))
    with pytest.raises(MetricInputError, match="both genuine and impostor"):
        count_at_thresholds(np.array([0.1, 0.2]), np.array([True, True]))
    with pytest.raises(MetricInputError, match="same length"):
        count_at_thresholds(np.array([0.1, 0.2]), np.array([True]))
    with pytest.raises(MetricInputError, match="0/1"):
        count_at_thresholds(np.array([0.1, 0.2]), np.array([2, 0]))
    counts = count_at_thresholds(np.array([0.1, 0.2]), np.array([True, False]))
    with pytest.raises(MetricInputError, match="TAR rule"):
        tar_at_far(counts, [0.1], rule="magic")
    with pytest.raises(MetricInputError, match=r"\(0, 1\]"):
        tar_at_far(counts, [0.0])


# -- properties -----------------------------------------------------------------------------

small_cases = st.lists(
    st.tuples(st.integers(-40, 40), st.booleans()), min_size=2, max_size=60
).filter(lambda xs: any(g for _, g in xs) and not all(g for _, g in xs))


@given(small_cases, st.randoms(use_true_random=False))
@example([(0, True), (0, False)], __import__("random").Random(0))
@settings(max_examples=150, deadline=None)
def test_permutation_and_monotone_transform_invariance(case, rnd):
    s = np.array([v for v, _ in case], dtype=np.float64) / 8.0
    y = np.array([g for _, g in case])
    c = count_at_thresholds(s, y)
    perm = list(range(len(case)))
    rnd.shuffle(perm)
    c_perm = count_at_thresholds(s[perm], y[perm])
    np.testing.assert_array_equal(c.n_genuine_accepted, c_perm.n_genuine_accepted)
    np.testing.assert_array_equal(c.n_impostor_accepted, c_perm.n_impostor_accepted)
    # strictly increasing and exact on these values (multiples of 1/8 below 5)
    c_t = count_at_thresholds(s**3 + 4 * s, y)
    np.testing.assert_array_equal(c.n_genuine_accepted, c_t.n_genuine_accepted)
    np.testing.assert_array_equal(c.n_impostor_accepted, c_t.n_impostor_accepted)
    assert auc(c) == auc(c_t) == auc(c_perm)
    assert equal_error_rate(c).eer == equal_error_rate(c_t).eer
    for target in (0.05, 0.3):
        assert tar_at_far(c, [target])[0].tar == tar_at_far(c_t, [target])[0].tar


@given(small_cases)
@settings(max_examples=150, deadline=None)
def test_rates_in_unit_interval_and_roc_monotone(case):
    s = np.array([v for v, _ in case], dtype=np.float64)
    y = np.array([g for _, g in case])
    c = count_at_thresholds(s, y)
    for drop in (False, True):
        roc = roc_curve(c, drop_intermediate=drop)
        assert np.all((roc.far >= 0) & (roc.far <= 1) & (roc.tar >= 0) & (roc.tar <= 1))
        assert np.all(np.diff(roc.far) >= 0) and np.all(np.diff(roc.tar) >= 0)
        assert np.all(np.diff(roc.thresholds) < 0)
        assert (roc.far[0], roc.tar[0], roc.far[-1], roc.tar[-1]) == (0, 0, 1, 1)
    assert 0 <= auc(c) <= 1
    assert 0 <= equal_error_rate(c).eer <= 1


@pytest.mark.parametrize("quantize", [None, 0.02, 0.25, 1.0])
@pytest.mark.parametrize("seed", range(6))
def test_eer_and_auc_equal_their_whole_array_formulas(seed: int, quantize: float | None) -> None:
    """The EER found by bisection and the AUC summed by blocks are bitwise the numbers of
    the whole-array formulas they replaced (which hold every threshold's rates at once)."""
    s, y = random_case(seed, n=700, quantize=quantize)
    c = count_at_thresholds(s, y)
    far = c.n_impostor_accepted / c.n_impostor
    frr = 1.0 - c.n_genuine_accepted / c.n_genuine
    d = far - frr
    i = int(np.searchsorted(d, 0.0, side="left"))
    if d[i] == 0.0 or i == 0:
        expected = float(far[i])
    else:
        lam = -d[i - 1] / (d[i] - d[i - 1])
        expected = float(far[i - 1] + lam * (far[i] - far[i - 1]))
    got = equal_error_rate(c)
    assert got.eer == expected and got.threshold == float(c.thresholds[i])
    tp, fp = c.n_genuine_accepted, c.n_impostor_accepted
    twice = int(np.sum(np.diff(fp) * (tp[1:] + tp[:-1]), dtype=np.int64))
    assert auc(c) == twice / (2 * c.n_genuine * c.n_impostor)
