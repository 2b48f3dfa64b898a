"""k-fold accuracy (facebench's rule) against a literal brute-force version and hand-worked
cases."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facebench.metrics import MetricInputError, kfold_accuracy


def brute_threshold(s, y):
    """PROTOCOLS.md literally: candidates -inf, midpoints of distinct scores, +inf; highest
    training accuracy; median of the tied (lower middle when even)."""
    distinct = sorted(set(s.tolist()))
    candidates = [-math.inf]
    candidates += [(a + b) / 2 for a, b in itertools.pairwise(distinct)]
    candidates.append(math.inf)
    accs = [np.mean((s >= t) == y) for t in candidates]
    best = max(accs)
    tied = [t for t, a in zip(candidates, accs, strict=True) if a == best]
    return tied[(len(tied) - 1) // 2]


def brute_kfold(s, y, folds):
    accs, thresholds = [], []
    for k in sorted(set(folds.tolist())):
        train = folds != k
        t = brute_threshold(s[train], y[train])
        test = ~train
        accs.append(np.mean((s[test] >= t) == y[test]))
        thresholds.append(t)
    return np.array(accs), np.array(thresholds)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("quantize", [None, 0.1, 0.5])
def test_equals_brute_force(seed, quantize):
    rng = np.random.default_rng(seed)
    n = 600
    y = np.tile(np.repeat([True, False], 30), 10)
    s = rng.normal(size=n) + 1.2 * y
    if quantize:
        s = np.round(s / quantize) * quantize
    folds = np.repeat(np.arange(1, 11), 60)
    result = kfold_accuracy(s, y, folds)
    accs, thresholds = brute_kfold(s, y, folds)
    np.testing.assert_array_equal(result.accuracies, accs)
    np.testing.assert_array_equal(result.thresholds, thresholds)
    assert result.mean == pytest.approx(accs.mean(), abs=1e-15)
    assert result.std == pytest.approx(np.std(accs, ddof=1), abs=1e-15)
    assert result.stderr == pytest.approx(np.std(accs, ddof=1) / math.sqrt(10), abs=1e-15)


def test_hand_worked_two_folds():
    # fold 1: G .9, G .6, I .5, I .1      fold 2: G .8, I .7, G .3, I .2
    s = np.array([0.9, 0.6, 0.5, 0.1, 0.8, 0.7, 0.3, 0.2])
    y = np.array([1, 1, 0, 0, 1, 0, 1, 0], dtype=bool)
    folds = np.array([1, 1, 1, 1, 2, 2, 2, 2])
    r = kfold_accuracy(s, y, folds)
    # Fold 1 is tested with a threshold trained on fold 2 (.8 G, .7 I, .3 G, .2 I): the
    # candidates -inf, .25, .5, .75, inf reach 2, 3, 2, 3, 2 correct of 4: tied .25 and .75,
    # the lower middle of two is .25. On fold 1 every pair is right (.9, .6 >= .25; .5 >=
    # .25 is a false accept!): .5 is an impostor accepted -> 3 of 4.
    assert r.thresholds[0] == 0.25
    assert r.accuracies[0] == 0.75
    # Fold 2 trained on fold 1 (.9 G, .6 G, .5 I, .1 I): .55 separates perfectly (4/4)
    # and is the only best candidate. On fold 2: .8 G ok, .7 I wrongly accepted, .3 G
    # rejected (wrong), .2 I ok -> 2 of 4.
    assert r.thresholds[1] == 0.55
    assert r.accuracies[1] == 0.5
    assert r.mean == 0.625
    assert r.std == pytest.approx(np.std([0.75, 0.5], ddof=1))
    np.testing.assert_array_equal(r.n_correct, [3, 2])
    np.testing.assert_array_equal(r.n_pairs, [4, 4])


def test_median_of_ties_odd_count():
    # Training scores where three candidates tie: G .9, I .8, G .7, I .6 -> candidates
    # -inf(2), .65(3)? accept >= .65: .9G .8I .7G -> correct G.9, G.7, I.6 = 3;
    # .75: accept .9 .8 -> correct .9, .6 = 2 ... computed by the brute force
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.9, 0.8, 0.7, 0.6])
    y = np.array([1, 0, 1, 0, 1, 0, 1, 0], dtype=bool)
    folds = np.array([1, 1, 1, 1, 2, 2, 2, 2])
    r = kfold_accuracy(s, y, folds)
    accs, thresholds = brute_kfold(s, y, folds)
    np.testing.assert_array_equal(r.thresholds, thresholds)
    np.testing.assert_array_equal(r.accuracies, accs)


def test_separable_scores_are_perfect():
    s = np.concatenate((np.linspace(0.6, 1, 50), np.linspace(-1, 0.4, 50)))
    y = np.concatenate((np.ones(50, bool), np.zeros(50, bool)))
    folds = np.tile(np.arange(5), 20)
    r = kfold_accuracy(s, y, folds)
    assert r.mean == 1.0 and r.std == 0.0


@given(st.lists(st.tuples(st.integers(-6, 6), st.booleans()), min_size=12, max_size=40))
@settings(max_examples=100, deadline=None)
def test_property_equals_brute_force_and_permutation_invariant(case):
    s = np.array([v for v, _ in case], dtype=np.float64) / 4
    y = np.array([g for _, g in case])
    folds = np.arange(len(case)) % 3
    y[:3] = [True, False, True]  # both classes present overall
    try:
        r = kfold_accuracy(s, y, folds)
    except MetricInputError:
        return
    accs, thresholds = brute_kfold(s, y, folds)
    np.testing.assert_array_equal(r.accuracies, accs)
    np.testing.assert_array_equal(r.thresholds, thresholds)
    perm = np.random.default_rng(len(case)).permutation(len(case))
    r2 = kfold_accuracy(s[perm], y[perm], folds[perm])
    np.testing.assert_array_equal(r.accuracies, r2.accuracies)
    assert np.all((r.accuracies >= 0) & (r.accuracies <= 1))


def test_bad_folds():
    s = np.array([0.1, 0.2, 0.3, 0.4])
    y = np.array([1, 0, 1, 0], dtype=bool)
    with pytest.raises(MetricInputError, match="at least 2 folds"):
        kfold_accuracy(s, y, np.zeros(4, dtype=int))
    with pytest.raises(MetricInputError, match="integer `folds`"):
        kfold_accuracy(s, y, np.zeros(3, dtype=int))
