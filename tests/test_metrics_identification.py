"""Open-set 1:N search, CMC and TPIR at an FPIR against loops over probes written here (the
full similarity matrix), a literal PFE-style DIR_FAR, and a hand-worked table."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from facebench.metrics import (
    IdentificationPoint,
    MetricInputError,
    SearchResult,
    cmc,
    search,
    search_scores,
    tpir_at_fpir,
)

# -- data and references --------------------------------------------------------------------


def random_search(seed: int, n_probes: int = 60, n_subjects: int = 12, quantize: bool = False):
    """Unit features; a few gallery subjects own two templates; about a third of the probes
    have no mate. ``quantize`` rounds features so that scores tie."""
    rng = np.random.default_rng(seed)
    d = 8
    centres = rng.standard_normal((n_subjects + 20, d))
    gallery_subjects = np.concatenate((np.arange(n_subjects), [0, 3, 5]))
    probe_subjects = rng.integers(0, n_subjects + 20, n_probes)
    probe_subjects[:2] = [1, n_subjects + 1]  # at least one mated and one non-mated
    g = centres[gallery_subjects] + 0.9 * rng.standard_normal((gallery_subjects.size, d))
    p = centres[probe_subjects] + 0.9 * rng.standard_normal((n_probes, d))
    if quantize:
        g, p = np.sign(g), np.sign(p)
    g /= np.linalg.norm(g, axis=1, keepdims=True)
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    return p, g, probe_subjects, gallery_subjects


def brute_search(sim, probe_subjects, gallery_subjects):
    """Probe by probe over the full matrix: the definitions of SearchResult."""
    rows = []
    for q in range(sim.shape[0]):
        mates = [j for j in range(sim.shape[1]) if gallery_subjects[j] == probe_subjects[q]]
        others = [j for j in range(sim.shape[1]) if j not in mates]
        top = max(sim[q])
        if not mates:
            first_top = min(j for j in range(sim.shape[1]) if sim[q, j] == top)
            rows.append((False, 0, math.nan, top, gallery_subjects[first_top]))
            continue
        best = max(sim[q, j] for j in mates)
        rank = 1 + sum(1 for j in others if sim[q, j] >= best)
        if rank == 1:
            subject = probe_subjects[q]
        else:
            best_other = max(sim[q, j] for j in others)
            subject = gallery_subjects[min(j for j in others if sim[q, j] == best_other)]
        rows.append((True, rank, best, top, subject))
    return rows


def brute_cmc(rows, r):
    mated = [row for row in rows if row[0]]
    return sum(1 for row in mated if row[1] <= r) / len(mated)


def brute_tpir_exact(rows, target):
    """Every candidate threshold: the largest TPIR within the FPIR budget, then the highest
    threshold reaching it."""
    mated = [row for row in rows if row[0]]
    nonmated_top = [row[3] for row in rows if not row[0]]
    budget = math.floor(Fraction(repr(float(target))) * len(nonmated_top))
    candidates = {math.inf} | {row[2] for row in mated if row[1] == 1} | set(nonmated_top)
    best = None
    for t in sorted(candidates, reverse=True):
        n_fp = sum(1 for s in nonmated_top if s >= t)
        if n_fp > budget:
            continue
        n_id = sum(1 for row in mated if row[1] == 1 and row[2] >= t)
        if best is None or n_id > best[1]:
            best = (t, n_id, n_fp)
    assert best is not None
    return best[0], best[1] / len(mated), best[2] / len(nonmated_top), best[2]


def pfe_dir_far(score_mat, label_mat, far):
    """PFE's DIR_FAR at rank 1, re-written here: thresholds from the non-mate probes' max
    scores (the round(n x FAR)-th highest, or the highest + 1e-8), a mate probe counts when
    its genuine score is >= the threshold and its mate is first in the sorted row."""
    match = label_mat.any(axis=1)
    max_nonmate = np.max(score_mat[~match], axis=1)
    neg = np.sort(max_nonmate)[::-1]
    k = int(np.round(neg.size * far))
    threshold = neg[0] + 1e-8 if k == 0 else neg[k - 1]
    scores_m, labels_m = score_mat[match], label_mat[match]
    first = np.argsort(scores_m, axis=1)[:, ::-1][:, 0]
    retrieved = labels_m[np.arange(first.size), first]
    genuine = scores_m[labels_m]
    dir_ = np.mean((genuine >= threshold) & retrieved)
    return dir_, np.mean(max_nonmate >= threshold), threshold


# -- search -------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("quantize", [False, True])
def test_search_matches_probe_loop(seed: int, quantize: bool) -> None:
    p, g, ps, gs = random_search(seed, quantize=quantize)
    sim = p @ g.T
    result = search(p, g, ps, gs)
    expected = brute_search(sim, ps, gs)
    np.testing.assert_array_equal(result.mated, [row[0] for row in expected])
    np.testing.assert_array_equal(result.mate_rank, [row[1] for row in expected])
    np.testing.assert_allclose(result.mate_score, [row[2] for row in expected], atol=1e-12)
    np.testing.assert_allclose(result.top_score, [row[3] for row in expected], atol=1e-12)
    np.testing.assert_array_equal(result.top_subject, [row[4] for row in expected])
    assert result.n_gallery == gs.size and result.n_probes == ps.size
    assert result.mate_rank.dtype == np.int64 and result.mate_score.dtype == np.float64


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_chunks_give_identical_results(chunk: int) -> None:
    p, g, ps, gs = random_search(4, quantize=True)
    whole = search_scores(p @ g.T, ps, gs)
    parts = search(p, g, ps, gs, chunk=chunk)
    for field in ("mated", "mate_rank", "mate_score", "top_score", "top_subject"):
        np.testing.assert_array_equal(getattr(parts, field), getattr(whole, field), field)


def test_float32_features_are_scored_in_float64() -> None:
    p, g, ps, gs = random_search(5)
    result = search(p.astype(np.float32), g.astype(np.float32), ps, gs)
    expected = p.astype(np.float32).astype(np.float64) @ g.astype(np.float32).astype(np.float64).T
    np.testing.assert_array_equal(result.top_score, expected.max(axis=1))


# -- hand-worked: 3 gallery subjects, 5 probes (2 non-mated) --------------------------------------

GALLERY = np.array([10, 20, 30])
PROBES = np.array([10, 20, 30, 40, 50])
SIM = np.array(
    [
        [0.9, 0.3, 0.1],  # mate first: rank 1
        [0.6, 0.5, 0.2],  # subject 10 ahead of the mate: rank 2
        [0.4, 0.4, 0.4],  # both others tie with the mate: rank 3 (ties rank the mate behind)
        [0.7, 0.2, 0.3],  # no mate; top 0.7
        [0.1, 0.35, 0.0],  # no mate; top 0.35
    ]
)


def test_hand_worked_search_and_cmc() -> None:
    r = search_scores(SIM, PROBES, GALLERY)
    np.testing.assert_array_equal(r.mated, [True, True, True, False, False])
    np.testing.assert_array_equal(r.mate_rank, [1, 2, 3, 0, 0])
    np.testing.assert_array_equal(r.mate_score, [0.9, 0.5, 0.4, np.nan, np.nan])
    np.testing.assert_array_equal(r.top_score, [0.9, 0.6, 0.4, 0.7, 0.35])
    np.testing.assert_array_equal(r.top_subject, [10, 10, 10, 10, 20])
    assert (r.n_mated, r.n_nonmated) == (3, 2)
    assert cmc(r, (1, 2, 3, 5)) == {1: 1 / 3, 2: 2 / 3, 3: 1.0, 5: 1.0}


def test_hand_worked_tpir() -> None:
    r = search_scores(SIM, PROBES, GALLERY)
    # Non-mated tops 0.7, 0.35. Only probe 0 (rank 1, mate 0.9) can ever be identified.
    exact = tpir_at_fpir(r, (0.1, 0.5, 1.0))
    assert exact == [
        IdentificationPoint(0.1, 1 / 3, 0.9, 0.0, 0, True, "exact"),
        IdentificationPoint(0.5, 1 / 3, 0.9, 0.0, 0, False, "exact"),
        IdentificationPoint(1.0, 1 / 3, 0.9, 0.0, 0, False, "exact"),
    ]
    count = tpir_at_fpir(r, (0.1, 0.5, 1.0), rule="count")
    assert count == [
        # round(0.2) = 0: just above the highest non-mated top score
        IdentificationPoint(0.1, 1 / 3, 0.7 + 1e-8, 0.0, 0, True, "count"),
        IdentificationPoint(0.5, 1 / 3, 0.7, 0.5, 1, False, "count"),
        IdentificationPoint(1.0, 1 / 3, 0.35, 1.0, 2, False, "count"),
    ]
    # Probe 0's mate score below the highest non-mated top: the exact rule must accept it.
    sim = SIM.copy()
    sim[0, 0] = 0.65
    r = search_scores(sim, PROBES, GALLERY)
    tight, loose = tpir_at_fpir(r, (0.1, 0.5))
    assert (tight.tpir, tight.threshold, tight.fpir_achieved) == (0.0, math.inf, 0.0)
    assert (loose.tpir, loose.threshold, loose.fpir_achieved) == (1 / 3, 0.65, 0.5)
    assert loose.n_nonmated_at_or_above == 1


def test_no_mate_at_rank_one_gives_zero_tpir() -> None:
    sim = SIM.copy()
    sim[0] = [0.1, 0.9, 0.3]
    r = search_scores(sim, PROBES, GALLERY)
    for rule, threshold in (("exact", math.inf), ("count", 0.7)):
        (point,) = tpir_at_fpir(r, (0.5,), rule=rule)
        assert point.tpir == 0.0 and point.threshold == threshold


# -- metrics vs brute force ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("quantize", [False, True])
def test_cmc_and_tpir_match_probe_loops(seed: int, quantize: bool) -> None:
    p, g, ps, gs = random_search(seed, n_probes=80, quantize=quantize)
    result = search(p, g, ps, gs)
    rows = brute_search(p @ g.T, ps, gs)
    ranks = (1, 2, 5, 10, 100)
    assert cmc(result, ranks) == pytest.approx({r: brute_cmc(rows, r) for r in ranks}, abs=0)
    targets = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0)
    for point, target in zip(tpir_at_fpir(result, targets), targets, strict=True):
        threshold, tpir, fpir, n_fp = brute_tpir_exact(rows, target)
        assert point.threshold == pytest.approx(threshold, abs=1e-12)
        assert (point.tpir, point.fpir_achieved, point.n_nonmated_at_or_above) == (
            pytest.approx(tpir, abs=0),
            pytest.approx(fpir, abs=0),
            n_fp,
        )
        assert point.fpir_achieved <= target
        n_nonmated = sum(1 for row in rows if not row[0])
        assert point.resolution_limited == (target * n_nonmated < 1)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_count_rule_matches_pfe_dir_far(seed: int) -> None:
    p, g, ps, gs = random_search(seed, n_probes=120, n_subjects=15)
    g, gs = g[:15], gs[:15]  # PFE's DIR_FAR wants at most one mate per probe
    sim = p @ g.T
    labels = ps[:, None] == gs[None, :]
    result = search_scores(sim, ps, gs)
    for target in (0.01, 0.05, 0.1, 0.3, 1.0):
        (point,) = tpir_at_fpir(result, (target,), rule="count")
        dir_, far, threshold = pfe_dir_far(sim, labels, target)
        assert point.threshold == threshold
        assert point.tpir == pytest.approx(dir_, abs=1e-15)
        assert point.fpir_achieved == pytest.approx(far, abs=1e-15)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
@example(seed=0)
def test_increasing_transform_and_probe_order_change_no_rate(seed: int) -> None:
    quantize = seed % 2 == 0
    p, g, ps, gs = random_search(seed % 500, n_probes=30, quantize=quantize)
    sim = p @ g.T
    base = search_scores(sim, ps, gs)
    # Strictly increasing in floating point too: a power of two keeps every tie a tie.
    warped = search_scores(8.0 * sim if quantize else np.exp(3 * sim) - 7, ps, gs)
    perm = np.random.default_rng(seed).permutation(ps.size)
    shuffled = search_scores(sim[perm], ps[perm], gs)
    np.testing.assert_array_equal(warped.mate_rank, base.mate_rank)
    np.testing.assert_array_equal(shuffled.mate_rank, base.mate_rank[perm])
    for rule in ("exact", "count"):
        if base.n_mated and base.n_nonmated:
            a = tpir_at_fpir(base, (0.1, 0.5), rule=rule)
            b = tpir_at_fpir(warped, (0.1, 0.5), rule=rule)
            c = tpir_at_fpir(shuffled, (0.1, 0.5), rule=rule)
            for x, y, z in zip(a, b, c, strict=True):
                assert x.tpir == z.tpir and x.fpir_achieved == z.fpir_achieved
                if rule == "exact":  # the count rule's +1e-8 is not transform-invariant
                    assert (x.tpir, x.fpir_achieved) == (y.tpir, y.fpir_achieved)
                assert 0.0 <= x.tpir <= 1.0 and 0.0 <= x.fpir_achieved <= 1.0
    if base.n_mated:
        assert cmc(base, (1, 3)) == cmc(warped, (1, 3)) == cmc(shuffled, (1, 3))


# -- ties and duplicates ------------------------------------------------------------------------


def test_ties_rank_the_mate_behind() -> None:
    # A matcher that scores everything alike identifies nobody at rank 1.
    sim = np.full((3, 4), 0.5)
    r = search_scores(sim, np.array([0, 1, 2]), np.array([0, 1, 2, 3]))
    np.testing.assert_array_equal(r.mate_rank, [4, 4, 4])
    np.testing.assert_array_equal(r.top_subject, [1, 0, 0])  # the first other subject
    assert cmc(r, (1, 3, 4)) == {1: 0.0, 3: 0.0, 4: 1.0}


def test_several_templates_of_one_subject() -> None:
    # Subject 7 owns gallery templates 0 and 2: its best template is its score; two
    # templates of subject 8 ahead of it count as two.
    sim = np.array([[0.2, 0.5, 0.6, 0.7, 0.1]])
    r = search_scores(sim, np.array([7]), np.array([7, 8, 7, 8, 9]))
    assert (r.mate_rank[0], r.mate_score[0], r.top_subject[0]) == (2, 0.6, 8)
    r = search_scores(
        np.array([[0.2, 0.5, 0.8, 0.7, 0.1]]), np.array([7]), np.array([7, 8, 7, 8, 9])
    )
    assert (r.mate_rank[0], r.top_subject[0]) == (1, 7)


# -- errors ---------------------------------------------------------------------------------------


def test_bad_input_is_refused() -> None:
    p, g, ps, gs = random_search(0)
    with pytest.raises(MetricInputError, match="non-negative subject ids"):
        search(p, g, ps, np.where(gs == 0, -1, gs))
    with pytest.raises(MetricInputError, match="1-D integer"):
        search(p, g, ps.astype(float), gs)
    with pytest.raises(MetricInputError, match="one dimension"):
        search(p, g[:, :4], ps, gs)
    with pytest.raises(MetricInputError, match=r"shape \(60, D\)"):
        search(p[:5], g, ps, gs)
    with pytest.raises(MetricInputError, match="chunk"):
        search(p, g, ps, gs, chunk=0)
    with pytest.raises(MetricInputError, match="finite"):
        search_scores(np.full((2, 3), np.nan), np.array([1, 2]), np.array([1, 2, 3]))
    with pytest.raises(MetricInputError, match="at least one gallery"):
        search_scores(np.zeros((2, 0)), np.array([1, 2]), np.zeros(0, dtype=int))
    r = search_scores(SIM, PROBES, GALLERY)
    with pytest.raises(MetricInputError, match="TPIR rule"):
        tpir_at_fpir(r, rule="nearest")
    with pytest.raises(MetricInputError, match="FPIR target"):
        tpir_at_fpir(r, (0.0,))
    with pytest.raises(MetricInputError, match="ranks"):
        cmc(r, (0,))
    closed = search_scores(SIM[:3], PROBES[:3], GALLERY)
    with pytest.raises(MetricInputError, match="non-mated probe"):
        tpir_at_fpir(closed)
    assert cmc(closed, (1,)) == {1: 1 / 3}
    nobody = search_scores(SIM[3:], PROBES[3:], GALLERY)
    with pytest.raises(MetricInputError, match="mated probe"):
        cmc(nobody)
    assert isinstance(nobody, SearchResult)
