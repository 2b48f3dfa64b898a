"""The 1:N search engine (facebench.metrics.identification) against a brute force written
here: every score by an exact fused-multiply-add chain (fractions), the full matrix, loops
over probes. Chunk sizes, screening products that err by the most float64 allows, and
gallery shards merged in any order must all give the brute force's result exactly."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from facebench.metrics import MetricInputError
from facebench.metrics.identification import (
    ArrayRows,
    SearchResult,
    best_mate_scores,
    exact_scores,
    finish_search,
    merge_shards,
    numpy_scorer,
    search,
    search_scores,
    search_shard,
    shard_rows,
)

FIELDS = ("mated", "mate_rank", "mate_score", "top_score", "top_subject")

# -- the brute force ------------------------------------------------------------------------


def fma_chain(x: np.ndarray, y: np.ndarray) -> float:
    """s = x0*y0, then s = round(x_k*y_k + s) with the exact product: fractions, no numpy."""
    s = Fraction(float(x[0])) * Fraction(float(y[0]))
    total = float(s)
    for a, b in zip(x[1:], y[1:], strict=True):
        total = float(Fraction(float(a)) * Fraction(float(b)) + Fraction(total))
    return total


def full_matrix(p: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Every score, one fma chain per pair."""
    return np.array([[fma_chain(p[i], g[j]) for j in range(len(g))] for i in range(len(p))])


def brute_search(sim: np.ndarray, ps: np.ndarray, gs: np.ndarray, k: int) -> dict:
    """Probe by probe over the full matrix: SearchResult's definitions, and the top k by
    decreasing score with ties by increasing gallery index."""
    out: dict[str, list] = {name: [] for name in (*FIELDS, "top_k_index", "top_k_score")}
    for q in range(sim.shape[0]):
        row = [float(v) for v in sim[q]]
        mates = [j for j in range(len(row)) if gs[j] == ps[q]]
        others = [j for j in range(len(row)) if gs[j] != ps[q]]
        order = sorted(range(len(row)), key=lambda j: (-row[j], j))[:k]
        out["top_k_index"].append(order)
        out["top_k_score"].append([row[j] for j in order])
        out["top_score"].append(max(row))
        best_other = max((row[j] for j in others), default=-math.inf)
        first_other = min((j for j in others if row[j] == best_other), default=None)
        if not mates:
            out["mated"].append(False)
            out["mate_rank"].append(0)
            out["mate_score"].append(math.nan)
            out["top_subject"].append(gs[first_other])
            continue
        best = max(row[j] for j in mates)
        rank = 1 + sum(1 for j in others if row[j] >= best)
        out["mated"].append(True)
        out["mate_rank"].append(rank)
        out["mate_score"].append(best)
        out["top_subject"].append(ps[q] if rank == 1 else gs[first_other])
    return out


def assert_same(result: SearchResult, expected: dict, k: int | None) -> None:
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(result, name), expected[name], err_msg=name)
    if k is None:
        assert result.top_k_index is None and result.top_k_score is None
    else:
        np.testing.assert_array_equal(result.top_k_index, expected["top_k_index"])
        np.testing.assert_array_equal(result.top_k_score, expected["top_k_score"])


def make_problem(seed: int, kind: str, n_probes: int = 24, n_gallery: int = 30, d: int = 6):
    """Unit features around subject centres. ``float32``: float32 values; ``float64``:
    float64 values; ``ties``: few distinct directions, so that many scores tie exactly.
    Some subjects own several gallery rows; about a third of the probes have no mate."""
    rng = np.random.default_rng(seed)
    n_subjects = 8
    centres = rng.standard_normal((n_subjects + 6, d))
    gs = rng.integers(0, n_subjects, n_gallery)
    ps = rng.integers(0, n_subjects + 6, n_probes)
    ps[:2] = [gs[0], n_subjects + 1]
    if kind == "ties":
        directions = np.sign(rng.standard_normal((5, d)))
        g = directions[rng.integers(0, 5, n_gallery)]
        p = directions[rng.integers(0, 5, n_probes)]
    else:
        g = centres[gs] + 0.8 * rng.standard_normal((n_gallery, d))
        p = centres[ps] + 0.8 * rng.standard_normal((n_probes, d))
    g = g / np.linalg.norm(g, axis=1, keepdims=True)
    p = p / np.linalg.norm(p, axis=1, keepdims=True)
    if kind == "float32":
        g, p = g.astype(np.float32), p.astype(np.float32)
    return p, g, ps, gs


# -- the score --------------------------------------------------------------------------------

# exact_scores' emulated FMA holds while no product underflows (|product| >= 2**-969, its
# docstring): values are 0 or at least 1e-100 in magnitude, so products stay above 1e-236.
finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False).filter(
    lambda v: v == 0 or abs(v) >= 1e-100
)
scaled = st.builds(lambda m, e: m * 2.0**e, finite, st.integers(-60, 60))


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 12).flatmap(
        lambda d: st.lists(st.tuples(scaled, scaled), min_size=d, max_size=d)
    )
)
@example([(1.0, 1.0), (2.0**-60, 1.0), (-1.0, 1.0)])  # a tiny term after cancellation
@example([(0.1, 0.3), (0.2, 0.7), (0.3, -0.1)])
def test_exact_scores_is_a_fused_multiply_add_chain(pairs: list[tuple[float, float]]) -> None:
    x = np.array([[a for a, _ in pairs]])
    y = np.array([[b for _, b in pairs]])
    assert exact_scores(x, y)[0] == fma_chain(x[0], y[0])
    as32 = (x.astype(np.float32), y.astype(np.float32))  # the float32 path: plain sums
    assert exact_scores(*as32)[0] == fma_chain(*(a[0].astype(np.float64) for a in as32))


def test_exact_scores_of_many_pairs() -> None:
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((50, 9)), rng.standard_normal((50, 9))
    np.testing.assert_array_equal(
        exact_scores(x, y), [fma_chain(a, b) for a, b in zip(x, y, strict=True)]
    )


# -- search against the brute force --------------------------------------------------------

CHUNKS = [(None, None), (1, 1), (3, 2), (7, 5), (1000, 1000)]


@pytest.mark.parametrize("kind", ["float32", "float64", "ties"])
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(("chunk", "gallery_chunk"), CHUNKS)
def test_search_equals_brute_force(kind: str, seed: int, chunk, gallery_chunk) -> None:
    p, g, ps, gs = make_problem(seed, kind)
    expected = brute_search(full_matrix(p, g), ps, gs, 4)
    result = search(p, g, ps, gs, chunk=chunk, gallery_chunk=gallery_chunk, top_k=4)
    assert_same(result, expected, 4)


@pytest.mark.parametrize("k", [1, 2, 30, 45])
def test_every_top_k(k: int) -> None:
    p, g, ps, gs = make_problem(5, "ties")
    expected = brute_search(full_matrix(p, g), ps, gs, k)
    result = search(p, g, ps, gs, top_k=k, gallery_chunk=4)
    assert result.top_k_index is not None and result.top_k_index.shape == (24, min(k, 30))
    assert_same(result, expected, k)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    shape=st.tuples(st.integers(1, 9), st.integers(1, 9), st.integers(1, 4)),
    chunk=st.integers(1, 10),
    gallery_chunk=st.integers(1, 10),
    k=st.one_of(st.none(), st.integers(1, 10)),
)
@example(seed=0, shape=(3, 4, 1), chunk=1, gallery_chunk=1, k=2)
def test_small_integer_features_with_ties(seed, shape, chunk, gallery_chunk, k) -> None:
    """Features of small integers: every score is exact and ties are everywhere."""
    n_probes, n_gallery, d = shape
    rng = np.random.default_rng(seed)
    p = rng.integers(-2, 3, (n_probes, d)).astype(np.float64)
    g = rng.integers(-2, 3, (n_gallery, d)).astype(np.float64)
    ps, gs = rng.integers(0, 4, n_probes), rng.integers(0, 4, n_gallery)
    expected = brute_search(full_matrix(p, g), ps, gs, k or 0)
    result = search(p, g, ps, gs, chunk=chunk, gallery_chunk=gallery_chunk, top_k=k)
    assert_same(result, expected, k)


def _worst_products(seed: int):
    """A Scorer whose products err by just under the most any float64 product may:
    2 gamma_D |p| |g| (module docstring), with random signs."""
    rng = np.random.default_rng(seed)

    def prepare(block):
        exact_block = block.copy()
        g_norm = np.linalg.norm(block, axis=1)

        def product(probes):
            d = probes.shape[1]
            gamma = d * 2.0**-53 / (1 - d * 2.0**-53)
            exact = np.array([[fma_chain(a, b) for b in exact_block] for a in probes])
            bound = 2 * gamma * np.linalg.norm(probes, axis=1)[:, None] * g_norm[None, :]
            return exact + 0.999 * bound * rng.choice([-1.0, 1.0], exact.shape)

        return product

    return prepare


@pytest.mark.parametrize("kind", ["float64", "ties"])
def test_screening_survives_the_worst_products(kind: str) -> None:
    p, g, ps, gs = make_problem(7, kind, n_probes=12, n_gallery=16)
    expected = brute_search(full_matrix(p, g), ps, gs, 3)
    for seed in range(3):
        result = search(p, g, ps, gs, gallery_chunk=5, top_k=3, scorer=_worst_products(seed))
        assert_same(result, expected, 3)


def _worst_float32_products(seed: int):
    """Stands in for the float32 screening product: errs by just under the most a float32
    product of float32 values may, plus the score's own float64 error."""
    rng = np.random.default_rng(seed)

    def prepare(block):
        exact_block = block.copy()
        g_norm = np.linalg.norm(block, axis=1)

        def product(probes):
            d = probes.shape[1]
            gamma = d * 2.0**-24 / (1 - d * 2.0**-24) + d * 2.0**-53 / (1 - d * 2.0**-53)
            exact = np.array([[fma_chain(a, b) for b in exact_block] for a in probes])
            bound = gamma * np.linalg.norm(probes, axis=1)[:, None] * g_norm[None, :]
            return exact + 0.999 * bound * rng.choice([-1.0, 1.0], exact.shape)

        return product

    return prepare


@pytest.mark.parametrize("kind", ["float32", "integers"])
def test_float32_screening_survives_the_worst_products(kind: str, monkeypatch) -> None:
    """Float32 values are screened by a float32 product; ties stress its wider margin."""
    import facebench.metrics.search_engine as search_engine

    p, g, ps, gs = make_problem(23, "float32", n_probes=12, n_gallery=16)
    if kind == "integers":
        rng = np.random.default_rng(23)
        p, g = rng.integers(-2, 3, p.shape).astype(np.float64), rng.integers(-2, 3, g.shape)
        g = g.astype(np.float64)
    expected = brute_search(full_matrix(p, g), ps, gs, 3)
    used = []
    for seed in range(3):
        worst = _worst_float32_products(seed)
        monkeypatch.setattr(
            search_engine, "_float32_product", lambda b, w=worst: used.append(1) or w(b)
        )
        assert_same(search(p, g, ps, gs, gallery_chunk=5, top_k=3), expected, 3)
    assert used  # the float32 path ran


def test_float32_features_give_float64_scores_of_float32_values() -> None:
    p, g, ps, gs = make_problem(2, "float32")
    result = search(p, g, ps, gs, top_k=1)
    wide = full_matrix(p.astype(np.float64), g.astype(np.float64))
    np.testing.assert_array_equal(result.top_score, wide.max(axis=1))
    assert result.top_score.dtype == np.float64


# -- shards ---------------------------------------------------------------------------------


def _sharded(p, g, ps, gs, bounds, k, reverse=False):
    rows = ArrayRows(g)
    ranges = list(itertools.pairwise(bounds))
    best = np.max([best_mate_scores(p, rows, ps, gs, rows=r) for r in ranges], axis=0)
    shares = [search_shard(p, rows, ps, gs, best, rows=r, top_k=k, gallery_chunk=3) for r in ranges]
    return finish_search(merge_shards(shares[::-1] if reverse else shares), best, ps, gs)


@pytest.mark.parametrize("kind", ["float32", "ties"])
@pytest.mark.parametrize("world_size", [2, 3, 7, 40])
def test_shards_merge_to_the_single_search(kind: str, world_size: int) -> None:
    p, g, ps, gs = make_problem(11, kind)
    single = search(p, g, ps, gs, top_k=5)
    bounds = [shard_rows(len(g), r, world_size)[0] for r in range(world_size)] + [len(g)]
    for reverse in (False, True):
        sharded = _sharded(p, g, ps, gs, bounds, 5, reverse)
        for name in (*FIELDS, "top_k_index", "top_k_score"):
            np.testing.assert_array_equal(getattr(sharded, name), getattr(single, name), name)


@settings(max_examples=30, deadline=None)
@given(cuts=st.lists(st.integers(0, 30), max_size=5), k=st.integers(1, 8))
def test_any_contiguous_shards(cuts: list[int], k: int) -> None:
    p, g, ps, gs = make_problem(13, "ties")
    bounds = [0, *sorted(cuts), len(g)]
    expected = brute_search(full_matrix(p, g), ps, gs, k)
    assert_same(_sharded(p, g, ps, gs, bounds, k), expected, k)


def test_shard_rows_cover_the_gallery_once() -> None:
    for n in (0, 1, 5, 1000):
        for world in (1, 2, 3, 8):
            spans = [shard_rows(n, r, world) for r in range(world)]
            assert spans[0][0] == 0 and spans[-1][1] == n
            assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
            assert max(h - lo for lo, h in spans) - min(h - lo for lo, h in spans) <= 1


# -- reading the gallery ---------------------------------------------------------------------


class SpyRows(ArrayRows):
    def __init__(self, features: np.ndarray) -> None:
        super().__init__(features)
        self.blocks: list[tuple[int, int]] = []
        self.taken: list[np.ndarray] = []

    def block(self, start: int, stop: int) -> np.ndarray:
        self.blocks.append((start, stop))
        return super().block(start, stop)

    def take(self, rows: np.ndarray) -> np.ndarray:
        self.taken.append(rows.copy())
        return super().take(rows)


def test_the_gallery_is_read_once_in_blocks_and_mates_by_row() -> None:
    p, g, ps, gs = make_problem(17, "float32", n_gallery=23)
    spy = SpyRows(g)
    best = best_mate_scores(p, spy, ps, gs, rows=(4, 23))
    search_shard(p, spy, ps, gs, best, rows=(4, 23), gallery_chunk=5, top_k=2)
    assert spy.blocks == [(4, 9), (9, 14), (14, 19), (19, 23)]
    taken = np.concatenate(spy.taken)
    assert set(taken) == {j for j in range(4, 23) if gs[j] in set(ps)}


# -- hand-worked -----------------------------------------------------------------------------


def test_hand_worked_ties() -> None:
    # One feature, so each score is the product. Probe 0 (subject 10) has mates at rows 0
    # (0.75) and 3 (0.5); row 2 (subject 30) ties with its best mate: rank 2, and the top
    # subject is 30. Probe 1 (subject 40) has no mate. Top 3 of probe 0: rows 0 and 2 tie at
    # 0.75, lower index first.
    g = np.array([[0.75], [0.25], [0.75], [0.5]])
    gs = np.array([10, 20, 30, 10])
    p = np.array([[1.0], [-1.0]])
    ps = np.array([10, 40])
    r = search(p, g, ps, gs, top_k=3, gallery_chunk=1)
    np.testing.assert_array_equal(r.mated, [True, False])
    np.testing.assert_array_equal(r.mate_rank, [2, 0])
    np.testing.assert_array_equal(r.mate_score, [0.75, np.nan])
    np.testing.assert_array_equal(r.top_score, [0.75, -0.25])
    np.testing.assert_array_equal(r.top_subject, [30, 20])
    np.testing.assert_array_equal(r.top_k_index, [[0, 2, 3], [1, 3, 0]])
    np.testing.assert_array_equal(r.top_k_score, [[0.75, 0.75, 0.5], [-0.25, -0.5, -0.75]])


def test_gallery_of_the_probes_subject_only() -> None:
    r = search(np.array([[1.0]]), np.array([[0.5], [0.25]]), [3], [3, 3], top_k=5)
    assert (r.mate_rank[0], r.top_subject[0], r.top_score[0]) == (1, 3, 0.5)
    np.testing.assert_array_equal(r.top_k_index, [[0, 1]])


def test_search_scores_top_k_matches_search() -> None:
    p, g, ps, gs = make_problem(19, "ties")
    from_matrix = search_scores(full_matrix(p, g), ps, gs, top_k=6)
    assert_same(search(p, g, ps, gs, top_k=6), brute_search(full_matrix(p, g), ps, gs, 6), 6)
    for name in (*FIELDS, "top_k_index", "top_k_score"):
        np.testing.assert_array_equal(
            getattr(from_matrix, name), getattr(search(p, g, ps, gs, top_k=6), name), name
        )


def test_numpy_scorer_is_the_matrix_product() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((4, 3)), rng.standard_normal((5, 3))
    np.testing.assert_array_equal(numpy_scorer(b)(a), a @ b.T)


# -- errors ----------------------------------------------------------------------------------


def test_bad_input_is_refused() -> None:
    p, g, ps, gs = make_problem(0, "float64")
    with pytest.raises(MetricInputError, match="top_k"):
        search(p, g, ps, gs, top_k=0)
    with pytest.raises(MetricInputError, match="gallery_chunk"):
        search(p, g, ps, gs, gallery_chunk=0)
    bad = g.copy()
    bad[3, 1] = np.nan
    with pytest.raises(MetricInputError, match="finite"):
        search(p, bad, ps, gs)
    with pytest.raises(MetricInputError, match="dimension D >= 1"):
        search(p[:, :0], g[:, :0], ps, gs)
    rows = ArrayRows(g)
    half = best_mate_scores(p, rows, ps, gs, rows=(0, 10))
    share = search_shard(p, rows, ps, gs, half)
    with pytest.raises(MetricInputError, match="whole gallery"):
        finish_search(share, half, ps, gs)
    with pytest.raises(MetricInputError, match="row range"):
        best_mate_scores(p, rows, ps, gs, rows=(5, 31))
    with pytest.raises(MetricInputError, match="at least one search shard"):
        merge_shards([])
    with pytest.raises(MetricInputError, match="rank"):
        shard_rows(10, 2, 2)
