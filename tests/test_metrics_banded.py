"""Float32 scores + float64 re-scores near the operating thresholds give exactly the TAR at
each FAR of the float64 scores (facebench.metrics.banded).

The "true" scores play the float64 scores; the approximate ones are within the bound of
them, with adversarial errors (the largest the bound allows, signs chosen to reorder close
scores), ties in the true scores, bands that overlap, and bounds as wide as the scores'
whole range."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from facebench.metrics import MetricInputError, auc, count_at_thresholds, tar_at_far
from facebench.metrics.banded import exact_at_targets

TARGETS = (1e-6, 1e-4, 1e-3, 0.01, 0.05, 0.1, 0.3, 1.0)


def approximate(true: np.ndarray, bound: float, rng: np.random.Generator) -> np.ndarray:
    """float32 scores within ``bound`` of ``true``: errors near +-bound, random signs."""
    error = rng.choice([-0.95, -0.5, 0.0, 0.5, 0.95], size=true.size) * bound
    approx = (true + error).astype(np.float32)
    # float32 rounding adds at most one unit in the last place; stay inside the bound
    too_far = np.abs(approx.astype(np.float64) - true) > bound
    approx[too_far] = true[too_far].astype(np.float32)
    assert np.all(np.abs(approx.astype(np.float64) - true) <= bound)
    return approx


def check(true: np.ndarray, y: np.ndarray, bound: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    approx = approximate(true, bound, rng)
    asked: list[int] = []

    def rescore(pairs: np.ndarray) -> np.ndarray:
        asked.extend(pairs.tolist())
        return true[pairs]

    banded = exact_at_targets(approx, y, bound, rescore, TARGETS)
    expected = tar_at_far(count_at_thresholds(true, y), TARGETS, "exact")
    got = tar_at_far(banded.counts, TARGETS, "exact")
    assert got == expected
    # the mixed scores: exact where re-scored, the float32 value elsewhere
    np.testing.assert_array_equal(banded.scores[banded.exact], true[banded.exact])
    np.testing.assert_array_equal(banded.scores[~banded.exact], approx[~banded.exact])
    assert banded.exact[y].all()
    # the counts are those of the mixed scores
    direct = count_at_thresholds(banded.scores, y)
    np.testing.assert_array_equal(banded.counts.impostor_sorted, direct.impostor_sorted)
    np.testing.assert_array_equal(banded.counts.genuine_sorted, direct.genuine_sorted)
    assert auc(banded.counts) == auc(direct)
    # every pair re-scored is exact; the TAR did not need the others
    assert set(asked) >= set(np.flatnonzero(banded.exact).tolist())
    # and none is re-scored twice (the second bands reuse the first bands' re-scores)
    assert len(asked) == len(set(asked))
    return {"n_exact": int(banded.exact.sum()), "bands": banded.bands}


@st.composite
def cases(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, float, int]:
    n = draw(st.integers(2, 300))
    levels = draw(st.integers(1, 50))
    values = draw(st.lists(st.integers(0, levels), min_size=n, max_size=n))
    labels = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    labels[0], labels[1] = True, False
    # the bound relative to the spacing of the levels: from far below to many levels wide
    spacing = 1.0 / levels
    bound = spacing * draw(st.sampled_from([0.01, 0.3, 0.5, 1.0, 2.5, 40.0]))
    true = np.array(values, dtype=np.float64) * spacing - 0.5
    # make the ties inexact in float32 too: a level is rarely a float32 number
    true = true + 1e-9
    return true, np.array(labels), bound, draw(st.integers(0, 2**16))


@settings(max_examples=200, deadline=None)
@given(cases())
def test_tar_at_far_equals_float64_with_ties_and_adversarial_errors(
    case: tuple[np.ndarray, np.ndarray, float, int],
) -> None:
    true, y, bound, seed = case
    check(true, y, bound, seed)


@pytest.mark.parametrize("seed", range(4))
def test_continuous_scores_rescore_a_small_share(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 200_000
    y = rng.random(n) < 0.01
    true = np.where(y, rng.normal(0.6, 0.15, n), rng.normal(0.0, 0.1, n))
    found = check(true, y, 3e-5, seed)
    assert found["n_exact"] < int(y.sum()) + n // 50  # the genuine pairs and thin bands


def test_a_bound_of_zero_rescores_only_the_genuine_pairs_and_ties() -> None:
    rng = np.random.default_rng(1)
    y = rng.random(5000) < 0.2
    true = rng.normal(y * 1.0, 1.0).astype(np.float32).astype(np.float64)  # float32 values
    found = check(true, y, 0.0, 2)
    assert found["n_exact"] < int(y.sum()) + 20


def test_an_everything_band() -> None:
    rng = np.random.default_rng(2)
    y = rng.random(1000) < 0.5
    true = rng.random(1000)
    found = check(true, y, 10.0, 3)
    assert found["n_exact"] == 1000


def test_bad_inputs_are_refused() -> None:
    y = np.array([True, False])
    ok = np.array([0.5, 0.1], dtype=np.float32)
    with pytest.raises(MetricInputError, match="float32"):
        exact_at_targets(ok.astype(np.float64), y, 1e-5, lambda p: p * 0.0, [0.1])
    with pytest.raises(MetricInputError, match="finite approximate"):
        exact_at_targets(np.array([np.nan, 0.1], np.float32), y, 1e-5, lambda p: p * 0.0, [0.1])
    with pytest.raises(MetricInputError, match="both genuine and impostor"):
        exact_at_targets(ok, np.array([True, True]), 1e-5, lambda p: p * 0.0, [0.1])
    with pytest.raises(MetricInputError, match="FAR target"):
        exact_at_targets(ok, y, 1e-5, lambda p: p * 0.0, [0.0])
    with pytest.raises(MetricInputError, match="error bound"):
        exact_at_targets(ok, y, float("nan"), lambda p: p * 0.0, [0.1])


def test_a_broken_bound_is_an_error() -> None:
    """Every re-scored pair checks the bound the caller claimed: scores further apart make
    the bands too narrow, which must not pass silently."""
    rng = np.random.default_rng(5)
    y = rng.random(2000) < 0.3
    true = rng.random(2000)
    approx = (true + 1e-3).astype(np.float32)
    with pytest.raises(MetricInputError, match="within 1e-06 of the exact ones"):
        exact_at_targets(approx, y, 1e-6, lambda p: true[p], [0.1])
