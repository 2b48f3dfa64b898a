"""The open-set search engine: screening products, exact scores where they matter, shards.

The fast path (:func:`search_shard`; :func:`facebench.metrics.identification.search` runs
it over one shard). Matrix products of a probe chunk and a gallery block (BLAS, or a GPU)
only *screen*: a product and the exact score of the same pair differ by at most half the
margin ``eps`` (the bound and the score's definition are in
:mod:`facebench.metrics.exact_dot`). A pair is decided from its product only when the
product lies more than ``eps`` away from the value it is compared with (the probe's best
mate score, the k-th best score so far, the best other-subject score so far); every other
pair that matters is scored exactly. Each probe's best mate score is computed exactly
first, from the gallery rows of its own subject (a gather), and the gallery is then read
once, block by block. Memory: ``chunk x gallery_chunk`` float64 scores, one gallery block,
and O(Q k) state.

Sharding. A shard is a contiguous range of gallery rows (:func:`shard_rows`). Per shard,
:func:`best_mate_scores` gives the best mate score among the shard's rows (the elementwise
maximum over the shards is the gallery's) and :func:`search_shard` the shard's exact share
given the gallery's best mate scores; :func:`merge_shards` combines shares (sums, maxima,
top-k by decreasing score, ties by increasing gallery index) and
:func:`facebench.metrics.identification.finish_search` makes the ``SearchResult``.
``search`` is the same sequence over a single shard, so a sharded search equals it exactly.

Here: the input checks, gallery access (:class:`GalleryRows`, :class:`ArrayRows`),
:class:`SearchShard`, :func:`best_mate_scores`, :func:`search_shard`, :func:`merge_shards`.
The definitions of a search result (the tie rule), ``SearchResult``, ``search``,
``search_scores`` and the metrics are in :mod:`facebench.metrics.identification`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from facebench.metrics.counts import MetricInputError
from facebench.metrics.exact_dot import (
    _EXACT_BATCH,
    Scorer,
    _float32_product,
    _is_float32,
    _margin,
    _pair_scores,
    exact_scores,
    numpy_scorer,
)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

#: Scores held at once by the fast path: probe chunk x gallery block (32 MiB of float64).
BLOCK_SCORES = 1 << 22
#: Gallery rows per block unless told otherwise.
GALLERY_BLOCK = 4096


# ------------------------------------------------------------------------------ inputs


def _subjects(name: str, x: npt.ArrayLike) -> IntArray:
    a = np.asarray(x)
    if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
        raise MetricInputError(
            f"Expected `{name}` to be a 1-D integer array, but got shape {a.shape} and dtype "
            f"{a.dtype}"
        )
    if a.size and int(a.min()) < 0:
        raise MetricInputError(
            f"Expected non-negative subject ids in `{name}`, but got {int(a.min())} (-1 marks "
            "a template whose subject the protocol files do not give; 1:N needs subjects)"
        )
    return a.astype(np.int64, copy=False)


def _positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise MetricInputError(f"Expected `{name}` to be an integer >= 1, but got {value!r}")
    return int(value)


def _row_range(rows: tuple[int, int] | None, n_rows: int) -> tuple[int, int]:
    if rows is None:
        return 0, n_rows
    lo, hi = (int(r) for r in rows)
    if not 0 <= lo <= hi <= n_rows:
        raise MetricInputError(
            f"Expected a gallery row range within [0, {n_rows}], but got [{lo}, {hi})"
        )
    return lo, hi


def _row_norms(features: FloatArray, name: str) -> FloatArray:
    """L2 norms in float64; refuses NaN/inf features (their scores would be NaN)."""
    norms = np.sqrt(np.einsum("ij,ij->i", features, features))
    if not np.isfinite(norms).all():
        raise MetricInputError(
            f"Expected finite similarity scores, but got NaN or inf {name} features (or"
            " norms too large for float64)"
        )
    return norms


def shard_rows(n_rows: int, rank: int, world_size: int) -> tuple[int, int]:
    """The contiguous gallery rows ``[lo, hi)`` of shard ``rank`` of ``world_size``.

    Shard sizes differ by at most one row; shard ``r`` ends where shard ``r + 1`` starts.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise MetricInputError(
            f"Expected 0 <= rank < world_size, but got rank {rank} and world size {world_size}"
        )
    return n_rows * rank // world_size, n_rows * (rank + 1) // world_size


class GalleryRows(Protocol):
    """Read access to the gallery's feature rows: an array, or a feature store on disk."""

    @property
    def shape(self) -> tuple[int, int]:
        """(G, D)."""
        ...

    def block(self, start: int, stop: int) -> npt.NDArray[np.floating[Any]]:
        """Rows ``start:stop``, shape (stop - start, D), any float dtype."""
        ...

    def take(self, rows: IntArray) -> npt.NDArray[np.floating[Any]]:
        """Rows ``rows`` (distinct, increasing) in that order, shape (len(rows), D)."""
        ...


class ArrayRows:
    """:class:`GalleryRows` of an in-memory (or memory-mapped) float array of shape (G, D)."""

    def __init__(self, features: npt.NDArray[np.floating[Any]]) -> None:
        self._features = features

    @property
    def shape(self) -> tuple[int, int]:
        """(G, D)."""
        return int(self._features.shape[0]), int(self._features.shape[1])

    def block(self, start: int, stop: int) -> npt.NDArray[np.floating[Any]]:
        """Rows ``start:stop``."""
        return self._features[start:stop]

    def take(self, rows: IntArray) -> npt.NDArray[np.floating[Any]]:
        """Rows ``rows``, in that order."""
        return self._features[rows]


class _SubjectIndex:
    """Rows of a run of gallery subjects, sorted by subject, to find mates by search."""

    def __init__(self, subjects: IntArray) -> None:
        self.subjects = subjects
        self._order = np.argsort(subjects, kind="stable")
        self._sorted = subjects[self._order]

    def pairs(self, probe: IntArray) -> tuple[IntArray, IntArray]:
        """``(q, j)`` for every probe ``q`` and row ``j`` of the same subject, by probe."""
        left = np.searchsorted(self._sorted, probe, "left")
        counts = np.searchsorted(self._sorted, probe, "right") - left
        q = np.repeat(np.arange(probe.size, dtype=np.int64), counts)
        first = np.repeat(left - (np.cumsum(counts) - counts), counts)
        return q, self._order[first + np.arange(q.size)].astype(np.int64)


def _merge_top(
    value: FloatArray, index: IntArray, rows: IntArray, new_value: FloatArray, new_index: IntArray
) -> tuple[FloatArray, IntArray]:
    """Each row's ``value.shape[1]`` best of its entries and the new ones (exact scores).

    Order: decreasing score, ties by increasing gallery index; ``-inf`` / ``-1`` pad rows
    with fewer entries. ``rows[i]`` is the row of candidate ``i``.
    """
    n_rows, k = value.shape
    all_rows = np.concatenate((np.repeat(np.arange(n_rows), k), rows))
    all_value = np.concatenate((value.ravel(), new_value))
    all_index = np.concatenate((index.ravel(), new_index))
    order = np.lexsort((all_index, -all_value, all_rows))
    sorted_rows = all_rows[order]
    place = np.arange(order.size) - np.searchsorted(sorted_rows, np.arange(n_rows))[sorted_rows]
    keep = place < k
    out_value = np.full((n_rows, k), -np.inf)
    out_index = np.full((n_rows, k), -1, dtype=np.int64)
    out_value[sorted_rows[keep], place[keep]] = all_value[order[keep]]
    out_index[sorted_rows[keep], place[keep]] = all_index[order[keep]]
    return out_value, out_index


# ------------------------------------------------------------------------------ search


@dataclass(frozen=True, eq=False)
class SearchShard:
    """One gallery shard's exact share of a search (see :func:`merge_shards`).

    Attributes
    ----------
    n_ahead : ndarray of int64, shape (Q,)
        The shard's templates of other subjects whose score is ``>=`` the probe's best
        mate score over the whole gallery; 0 for a non-mated probe.
    best_other_score : ndarray of float64, shape (Q,)
        The highest score among the shard's templates of other subjects; for a mated probe
        those scoring below its best mate score may be left out (they cannot come first).
        ``-inf`` if none.
    best_other_index : ndarray of int64, shape (Q,)
        The lowest gallery index (whole-gallery numbering) with that score; -1 if none.
    top_k_score : ndarray of float64, shape (Q, k)
        The shard's k highest scores (k = 0 when no top-k is asked for), by decreasing
        score, ties by increasing gallery index; ``-inf`` pads a shard of fewer rows.
    top_k_index : ndarray of int64, shape (Q, k)
        Their gallery indices; -1 pads.
    """

    n_ahead: IntArray
    best_other_score: FloatArray
    best_other_index: IntArray
    top_k_score: FloatArray
    top_k_index: IntArray


def best_mate_scores(
    probe_features: npt.ArrayLike,
    gallery: GalleryRows,
    probe_subjects: npt.ArrayLike,
    gallery_subjects: npt.ArrayLike,
    *,
    rows: tuple[int, int] | None = None,
) -> FloatArray:
    """Each probe's highest exact score against gallery rows of its own subject.

    Parameters
    ----------
    probe_features : array of float, shape (Q, D)
    gallery : GalleryRows
        The gallery, shape (G, D); only the mate rows within ``rows`` are read.
    probe_subjects : array of int, shape (Q,)
    gallery_subjects : array of int, shape (G,)
    rows : (int, int), optional
        Look only at gallery rows ``lo <= j < hi`` (a shard); default all.

    Returns
    -------
    ndarray of float64, shape (Q,)
        ``max_j score(q, j)`` over rows ``j`` in the range with the probe's subject;
        ``-inf`` where there is none. The elementwise maximum over shards is the
        gallery's.
    """
    probes = np.asarray(probe_features)
    probe = _subjects("probe_subjects", probe_subjects)
    subjects = _subjects("gallery_subjects", gallery_subjects)
    lo, hi = _row_range(rows, subjects.size)
    best = np.full(probe.size, -np.inf)
    q, j = _SubjectIndex(subjects[lo:hi]).pairs(probe)
    by_row = np.argsort(j, kind="stable")  # neighbouring rows: reads stay sequential
    q, j = q[by_row], j[by_row] + lo
    for s in range(0, q.size, _EXACT_BATCH):
        qs, js = q[s : s + _EXACT_BATCH], j[s : s + _EXACT_BATCH]
        unique, inverse = np.unique(js, return_inverse=True)
        gallery_rows = np.asarray(gallery.take(unique), dtype=np.float64)
        probe_rows = np.asarray(probes[qs], dtype=np.float64)
        _row_norms(gallery_rows, "gallery")
        _row_norms(probe_rows, "probe")
        np.maximum.at(best, qs, exact_scores(probe_rows, gallery_rows[inverse.ravel()]))
    return best


@dataclass
class _State:
    """The running exact share of a shard, for all Q probes."""

    n_ahead: IntArray
    other_score: FloatArray  # (Q, 1)
    other_index: IntArray  # (Q, 1)
    top_score: FloatArray  # (Q, k)
    top_index: IntArray  # (Q, k)


def _thresholds(
    state: _State,
    rows: slice,
    scores: FloatArray,
    eps: FloatArray,
    mates: tuple[IntArray, IntArray],
    floor: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """Products below which a block's row can be neither the best other nor in the top k.

    ``floor``: a mated probe's best other matters only when it scores at least the best
    mate score (else the mate ranks first), so its rows need a product >= m - eps.
    """
    n_cols = scores.shape[1]
    best_other = state.other_score[rows, 0]
    # an exact score >= the best so far has a product >= best - eps
    other_at = np.maximum(best_other - eps, floor)
    if (best_other == -np.inf).any():  # nothing to compare with yet: the block's own best
        mate_rows, mate_cols = mates
        kept = scores[mate_rows, mate_cols]
        scores[mate_rows, mate_cols] = -np.inf
        block_best = scores.max(axis=1)
        scores[mate_rows, mate_cols] = kept
        other_at = np.where(
            block_best == -np.inf, np.inf, np.maximum(other_at, block_best - 2 * eps)
        )
    k = state.top_score.shape[1]
    if k == 0:
        return other_at, np.full(eps.size, np.inf)
    kth = state.top_score[rows, k - 1]
    top_at = kth - eps
    open_rows = kth == -np.inf  # fewer than k entries so far: the block's own k-th best
    if open_rows.any() and k < n_cols:
        block_kth = np.partition(scores[open_rows], n_cols - k, axis=1)[:, n_cols - k]
        top_at[open_rows] = block_kth - 2 * eps[open_rows]
    return other_at, top_at


@dataclass(frozen=True)
class _Candidates:
    """Pairs of one gallery block to score exactly, and what each is wanted for."""

    rows: IntArray  # probe (whole probe numbering)
    cols: IntArray  # row within the block
    window: BoolArray  # another subject, product within eps of the best mate score
    want_top: BoolArray  # may enter the top k
    want_other: BoolArray  # another subject that may be the best other

    @classmethod
    def join(cls, parts: list[_Candidates]) -> _Candidates:
        names = [f.name for f in fields(cls)]
        return cls(*(np.concatenate([getattr(p, name) for p in parts]) for name in names))


def _screen(
    state: _State,
    rows: slice,
    scores: npt.NDArray[Any],
    eps: FloatArray,
    subjects: tuple[IntArray, _SubjectIndex],
    best_mate: FloatArray,
) -> _Candidates:
    """Screen one (probe chunk x gallery block) of products.

    Rows ahead of the mate by more than ``eps`` are counted into ``state.n_ahead``; the
    pairs that need an exact score are returned. ``scores`` holds the products (float64 or
    float32; changed and restored in place), ``eps`` each probe's margin, ``best_mate``
    the probes' exact best mate scores (``-inf``: non-mated).
    """
    probe, index = subjects
    mates = index.pairs(probe)
    mated = best_mate > -np.inf
    low = np.where(mated, best_mate - eps, np.inf)  # [low, high]: decide by exact score
    high = np.where(mated, best_mate + eps, np.inf)
    other_at, top_at = _thresholds(state, rows, scores, eps, mates, np.where(mated, low, -np.inf))
    wanted = np.minimum(other_at, top_at)
    hit = scores >= np.minimum(low, wanted)[:, None]
    ahead = np.zeros(probe.size, dtype=np.int64)
    # Probes far from their mate (wanted > high): count the rows ahead without listing
    # them, and list only the window around the mate score and the candidates.
    split = mated & (wanted > high)
    if split.any():
        far = np.flatnonzero(split)
        sub = scores[far]
        hit[far] &= (sub <= high[far, None]) | (sub >= wanted[far, None])
        ahead[far] = np.count_nonzero(sub > high[far, None], axis=1)
    r, c = np.nonzero(hit)
    value = scores[r, c]
    other = index.subjects[c] != probe[r]
    sure_ahead = other & (value > high[r]) & ~split[r]  # a mate never exceeds `high`
    state.n_ahead[rows] += ahead + np.bincount(r[sure_ahead], minlength=probe.size)
    window = other & (value >= low[r]) & (value <= high[r])
    want_top = value >= top_at[r]
    want_other = other & (value >= other_at[r])
    need = window | want_top | want_other
    return _Candidates(
        rows=(rows.start + r[need]).astype(np.int64),
        cols=c[need].astype(np.int64),
        window=window[need],
        want_top=want_top[need],
        want_other=want_other[need],
    )


def _settle(
    state: _State, found: _Candidates, exact: FloatArray, best_mate: FloatArray, first_col: int
) -> None:
    """Add the exactly scored candidates of a block (gallery rows from ``first_col``)."""
    r = found.rows
    ties_or_above = found.window & (exact >= best_mate[r])
    state.n_ahead += np.bincount(r[ties_or_above], minlength=state.n_ahead.size)
    gallery_index = first_col + found.cols
    lists = (
        (found.want_top, state.top_score, state.top_index),
        (found.want_other, state.other_score, state.other_index),
    )
    for keep, score, index in lists:
        if score.shape[1] == 0 or not keep.any():
            continue
        affected, local = np.unique(r[keep], return_inverse=True)
        score[affected], index[affected] = _merge_top(
            score[affected], index[affected], local.ravel(), exact[keep], gallery_index[keep]
        )


def search_shard(
    probe_features: npt.ArrayLike,
    gallery: GalleryRows,
    probe_subjects: npt.ArrayLike,
    gallery_subjects: npt.ArrayLike,
    best_mate: npt.ArrayLike,
    *,
    rows: tuple[int, int] | None = None,
    top_k: int | None = None,
    chunk: int | None = None,
    gallery_chunk: int | None = None,
    scorer: Scorer | None = None,
) -> SearchShard:
    """The exact share of gallery rows ``rows`` in the search of every probe.

    Parameters
    ----------
    probe_features : array of float, shape (Q, D)
    gallery : GalleryRows
        The gallery, shape (G, D); rows ``rows`` are read once, ``gallery_chunk`` at a time.
    probe_subjects : array of int, shape (Q,)
    gallery_subjects : array of int, shape (G,)
    best_mate : array of float, shape (Q,)
        Each probe's best mate score over the *whole* gallery (:func:`best_mate_scores`,
        maximum over shards); ``-inf`` for a non-mated probe.
    rows : (int, int), optional
        The shard: gallery rows ``lo <= j < hi``; default all.
    top_k : int, optional
        Keep the k best gallery templates of each probe; default none.
    chunk : int, optional
        Probes per matrix product; default ``BLOCK_SCORES // gallery_chunk``.
    gallery_chunk : int, optional
        Gallery rows per block; default ``min(GALLERY_BLOCK, rows in the shard)``.
    scorer : Scorer, optional
        The matrix product that screens (default :func:`numpy_scorer`).

    Returns
    -------
    SearchShard
        Exact (module docstring): it depends on none of ``chunk``, ``gallery_chunk`` and
        ``scorer``.
    """
    probes = np.asarray(probe_features)
    probe = _subjects("probe_subjects", probe_subjects)
    subjects = _subjects("gallery_subjects", gallery_subjects)
    mate = np.asarray(best_mate, dtype=np.float64)
    lo, hi = _row_range(rows, subjects.size)
    if mate.shape != probe.shape or probes.shape[:1] != probe.shape:
        raise MetricInputError(
            f"Expected {probe.size} probe rows, subjects and best mate scores, but got"
            f" features {probes.shape}, best mate scores {mate.shape}"
        )
    k = 0 if top_k is None else _positive("top_k", top_k)
    block = _positive("gallery_chunk", gallery_chunk or min(GALLERY_BLOCK, max(1, hi - lo)))
    chunk = _positive("chunk", chunk or max(1, BLOCK_SCORES // block))
    n_probes, dim = probes.shape
    state = _State(
        n_ahead=np.zeros(n_probes, dtype=np.int64),
        other_score=np.full((n_probes, 1), -np.inf),
        other_index=np.full((n_probes, 1), -1, dtype=np.int64),
        top_score=np.full((n_probes, k), -np.inf),
        top_index=np.full((n_probes, k), -1, dtype=np.int64),
    )
    probe_norms = np.zeros(n_probes)
    probes_float32 = True
    for q0 in range(0, n_probes, chunk):
        part = np.asarray(probes[q0 : q0 + chunk], dtype=np.float64)
        probe_norms[q0 : q0 + chunk] = _row_norms(part, "probe")
        probes_float32 = probes_float32 and _is_float32(part)
    probe_norm_max = float(probe_norms.max(initial=0.0))
    product_of = scorer or numpy_scorer
    for b0 in range(lo, hi, block):
        raw = np.asarray(gallery.block(b0, min(b0 + block, hi)))
        gallery_rows = raw.astype(np.float64)
        exact_products = probes_float32 and (raw.dtype == np.float32 or _is_float32(gallery_rows))
        if gallery_rows.shape != (min(b0 + block, hi) - b0, dim):
            raise MetricInputError(
                f"Expected gallery rows {b0}:{min(b0 + block, hi)} of dimension {dim}, but got"
                f" shape {gallery_rows.shape}"
            )
        gallery_norm = float(_row_norms(gallery_rows, "gallery").max())
        # float32 products need float32 values (exact conversion) and no overflow
        float32_products = (
            scorer is None and exact_products and probe_norm_max * gallery_norm < 2.0**100
        )
        product = (_float32_product if float32_products else product_of)(gallery_rows)
        index = _SubjectIndex(subjects[b0 : b0 + gallery_rows.shape[0]])
        found = []
        for q0 in range(0, n_probes, chunk):
            sl = slice(q0, min(q0 + chunk, n_probes))
            scores = np.asarray(product(np.asarray(probes[sl], dtype=np.float64)))
            if scores.shape != (sl.stop - q0, gallery_rows.shape[0]):
                raise MetricInputError(
                    f"Expected products of shape {(sl.stop - q0, gallery_rows.shape[0])} from"
                    f" the scorer, but got {scores.shape}"
                )
            eps = _margin(dim, probe_norms[sl], gallery_norm, float32_products)
            found.append(_screen(state, sl, scores, eps, (probe[sl], index), mate[sl]))
        # Scored together: one exact pass per block, however many probe chunks.
        candidates = _Candidates.join(found)
        exact = _pair_scores(probes, gallery_rows, candidates.rows, candidates.cols, exact_products)
        _settle(state, candidates, exact, mate, b0)
    return SearchShard(
        n_ahead=state.n_ahead,
        best_other_score=state.other_score[:, 0],
        best_other_index=state.other_index[:, 0],
        top_k_score=state.top_score,
        top_k_index=state.top_index,
    )


def merge_shards(shards: Sequence[SearchShard]) -> SearchShard:
    """Combine the shares of disjoint gallery shards into the share of their union.

    Counts add; the best other template is the highest score, ties by the lowest gallery
    index; the top k are the k best of all shards' lists in the same order.
    """
    if not shards:
        raise MetricInputError("Expected at least one search shard, but got none")
    first = shards[0]
    n_probes, k = first.top_k_score.shape
    merged = first
    for shard in shards[1:]:
        if shard.top_k_score.shape != (n_probes, k) or shard.n_ahead.shape != (n_probes,):
            raise MetricInputError(
                f"Expected shards of {n_probes} probes and top {k}, but got top-k shape"
                f" {shard.top_k_score.shape}"
            )
        rows = np.repeat(np.arange(n_probes), k)
        real = shard.top_k_index.ravel() >= 0
        top_score, top_index = _merge_top(
            merged.top_k_score,
            merged.top_k_index,
            rows[real],
            shard.top_k_score.ravel()[real],
            shard.top_k_index.ravel()[real],
        )
        has_other = shard.best_other_index >= 0
        other_score, other_index = _merge_top(
            merged.best_other_score[:, None],
            merged.best_other_index[:, None],
            np.flatnonzero(has_other),
            shard.best_other_score[has_other],
            shard.best_other_index[has_other],
        )
        merged = SearchShard(
            n_ahead=merged.n_ahead + shard.n_ahead,
            best_other_score=other_score[:, 0],
            best_other_index=other_index[:, 0],
            top_k_score=top_score,
            top_k_index=top_index,
        )
    return merged
