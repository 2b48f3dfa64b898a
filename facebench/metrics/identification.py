"""Open-set 1:N identification (IJB-A/B/C, MegaFace-style galleries): search, CMC, TPIR.

PROTOCOLS.md ("IJB-A", 1:N): probe templates are searched against a gallery of templates
with known subjects. A probe is *mated* when its subject has a gallery template, else
*non-mated*.

Scores. A score is the dot product of a probe's and a gallery template's features in
float64, accumulated in feature order by fused multiply-adds: ``s = p[0]*g[0]``, then
``s = fma(p[k], g[k], s)`` for ``k = 1 .. D-1``, one rounding per step
(:func:`exact_scores`). For float32 features (a store's) every product is exact in float64
and this is the plain float64 sum in feature order; it is also what a BLAS matrix product
with one accumulator per score computes, e.g. OpenBLAS on small matrices. A score is thus
a function of the two feature rows alone: results never depend on chunk sizes, BLAS
threads, how the gallery is sharded across processes, or the device. A BLAS product of
large matrices does not give that: its summation order changes with the matrix shapes and
the number of threads, and the last bit of a score, and with it a tie, would change with
the chunk size.

The fast path (:func:`search`, :func:`search_shard`). Matrix products of a probe chunk and
a gallery block (BLAS, or a GPU) only *screen*. Any float64 evaluation of ``p . g`` lies
within ``gamma_D * sum_k |p_k g_k| <= gamma_D ||p|| ||g||`` of the exact value, with
``gamma_D = D u / (1 - D u)`` and ``u = 2**-53`` (Higham, *Accuracy and Stability of
Numerical Algorithms*, 2nd ed., eq. 3.5), whatever the summation order; a product and the
score above therefore differ by at most ``2 gamma_D ||p|| ||g||``, half the margin ``eps``
used here. A pair is decided from its product only when the product lies more than
``eps`` away from the value it is compared with (the probe's best mate score, the k-th
best score so far, the best other-subject score so far); every other pair that matters is
scored exactly. Each probe's best mate score is computed exactly first, from the gallery
rows of its own subject (a gather), and the gallery is then read once, block by block.
Memory: ``chunk x gallery_chunk`` float64 scores, one gallery block, and O(Q k) state.

Rank of the mate (the tie rule). With ``m`` the highest score of the probe's mate
templates, ``rank = 1 + #{gallery templates of other subjects with score >= m}``: a
non-mate that ties with the mate is ranked ahead of it (pessimistic). Neither reference
implementation defines ties: insightface's ``ijb_1n.py`` (``np.argsort(-similarity)``) and
PFE's ``DIR_FAR`` (``np.argsort(score_mat, axis=1)`` reversed) take whatever order an
unstable sort leaves, so no rule of theirs can be reproduced; on tie-free scores every rule
agrees with them. The pessimistic rule never credits a search that cannot tell the mate
from a non-mate (a matcher that gives every template the same score has rank 1 for no
probe, instead of for every probe). Ranks count gallery *templates*; in IJB each subject
has one gallery template, and several mate templates of one subject count once (the best).
The top-k list orders the gallery by decreasing score, ties by increasing gallery index.

Sharding. A shard is a contiguous range of gallery rows. Per shard, :func:`best_mate_scores`
gives the best mate score among the shard's rows (the elementwise maximum over the shards
is the gallery's) and :func:`search_shard` the shard's exact share given the gallery's
best mate scores; :func:`merge_shards` combines shares (sums, maxima, top-k by the order
above) and :func:`finish_search` makes the :class:`SearchResult`. :func:`search` is the
same sequence over a single shard, so a sharded search equals it exactly.

TPIR at an FPIR: a mated probe is identified at threshold ``t`` when its mate is at rank 1
and its mate score is ``>= t``; TPIR = identified mated probes / mated probes. FPIR = non-
mated probes whose top gallery score is ``>= t`` / non-mated probes. The threshold comes
from the non-mated probes' top scores by facebench's TAR rules
(:mod:`facebench.metrics.operating`), built on the same counts core
(:func:`facebench.metrics.counts.count_at_thresholds`): mated probes play the genuine
pairs (those not at rank 1 are never accepted), non-mated probes' top scores the impostors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from facebench.metrics.counts import MetricInputError, ThresholdCounts, count_at_thresholds
from facebench.metrics.operating import OperatingPoint, tar_count, tar_exact

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

#: Scores held at once by the fast path: probe chunk x gallery block (32 MiB of float64).
BLOCK_SCORES = 1 << 22
#: Gallery rows per block unless told otherwise.
GALLERY_BLOCK = 4096
_EXACT_BATCH = 4096  # pairs scored exactly at a time: two (4096, D) float64 arrays
_UNIT_ROUNDOFF = 2.0**-53


@dataclass(frozen=True, eq=False)
class SearchResult:
    """The outcome of searching every probe against the gallery.

    Attributes
    ----------
    probe_subjects : ndarray of int64, shape (Q,)
        The subject of each probe.
    mated : ndarray of bool, shape (Q,)
        True when the probe's subject has at least one gallery template.
    mate_rank : ndarray of int64, shape (Q,)
        ``1 + `` the number of gallery templates of other subjects whose score is ``>=``
        the best mate score (ties rank the mate behind); 0 for a non-mated probe.
    mate_score : ndarray of float64, shape (Q,)
        The highest score of the probe's mate templates; NaN for a non-mated probe.
    top_score : ndarray of float64, shape (Q,)
        The highest score over the whole gallery.
    top_subject : ndarray of int64, shape (Q,)
        The subject ranked first: the probe's own subject exactly when ``mate_rank == 1``;
        otherwise the subject of the first gallery template (lowest index) with the
        highest score among the templates of other subjects.
    n_gallery : int
        G, the number of gallery templates.
    top_k_index : ndarray of int64, shape (Q, min(k, G)), or None
        Row ``q`` lists the gallery templates with the k highest scores for probe ``q``
        (mates included), by decreasing score, ties by increasing gallery index. None
        when no top-k was asked for.
    top_k_score : ndarray of float64, shape (Q, min(k, G)), or None
        Their scores.
    """

    probe_subjects: IntArray
    mated: BoolArray
    mate_rank: IntArray
    mate_score: FloatArray
    top_score: FloatArray
    top_subject: IntArray
    n_gallery: int
    top_k_index: IntArray | None = None
    top_k_score: FloatArray | None = None

    @property
    def n_probes(self) -> int:
        """Q."""
        return int(self.mated.size)

    @property
    def n_mated(self) -> int:
        """Probes whose subject is in the gallery."""
        return int(self.mated.sum())

    @property
    def n_nonmated(self) -> int:
        """Probes whose subject is not in the gallery."""
        return self.n_probes - self.n_mated


@dataclass(frozen=True)
class IdentificationPoint:
    """TPIR at one FPIR target.

    Attributes
    ----------
    fpir_target : float
        The requested false positive identification rate.
    tpir : float
        Mated probes with the mate at rank 1 and mate score ``>= threshold``, over all
        mated probes.
    threshold : float
        Accept a search result when its score is ``>= threshold``; ``+inf`` accepts none.
    fpir_achieved : float
        Non-mated probes with top score ``>= threshold``, over all non-mated probes.
    n_nonmated_at_or_above : int
        The count behind ``fpir_achieved``.
    resolution_limited : bool
        True when ``fpir_target * n_nonmated < 1``: not one non-mated probe may be
        accepted, so the FPIR cannot be measured at this target; the TPIR is still given.
    rule : str
        ``"exact"`` or ``"count"`` (see :data:`TPIR_RULES`).
    """

    fpir_target: float
    tpir: float
    threshold: float
    fpir_achieved: float
    n_nonmated_at_or_above: int
    resolution_limited: bool
    rule: str


TPIR_RULES: dict[str, Callable[[ThresholdCounts, float], OperatingPoint]] = {
    "exact": tar_exact,
    "count": tar_count,
}
"""Threshold rules for TPIR at an FPIR, shared with TAR at a FAR.

``exact`` (default): the operating point with the largest TPIR whose FPIR is at most the
target (the budget is ``floor(target x n_nonmated)`` non-mated probes at or above the
threshold); among equal TPIRs the highest threshold. ``count`` (PFE's ``DIR_FAR`` at rank
1): ``k = round(n_nonmated x target)``; the threshold is the k-th highest non-mated top
score, or the highest plus 1e-8 when ``k == 0``.
"""


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


# ------------------------------------------------------------------------------ scores

#: ``scorer(gallery_block)`` returns ``product`` with ``product(probes) == probes @
#: gallery_block.T`` up to rounding (float64 in, float64 (chunk, block) out). The block is
#: prepared once (moved to a device, say) and scored against every probe chunk. Products
#: only screen (module docstring), so any float64 matrix product will do.
Scorer = Callable[[FloatArray], Callable[[FloatArray], FloatArray]]


def numpy_scorer(gallery_block: FloatArray) -> Callable[[FloatArray], FloatArray]:
    """The default :data:`Scorer`: numpy's BLAS matrix product on the CPU."""
    transposed = gallery_block.T

    def product(probes: FloatArray) -> FloatArray:
        return np.asarray(probes @ transposed, dtype=np.float64)

    return product


def exact_scores(left: npt.ArrayLike, right: npt.ArrayLike) -> FloatArray:
    """The score of each pair of rows, by the module's definition.

    Parameters
    ----------
    left, right : array of float, shape (n, D), D >= 1
        Feature rows; pair ``i`` is ``(left[i], right[i])``.

    Returns
    -------
    ndarray of float64, shape (n,)
        ``s = l[0]*r[0]``, then ``s = fma(l[k], r[k], s)`` for ``k = 1 .. D-1``: each step
        adds the exact product to ``s`` and rounds once to float64 (round to nearest).
        When every value is a float32 number the products are exact float64 numbers and
        this is the plain float64 sum in feature order, computed so. Otherwise the fused
        multiply-add is emulated exactly (:func:`_fma`), provided no product underflows
        (``|l[k] r[k]| >= 2**-969``; the emulation stays deterministic below that).
    """
    a = np.asarray(left, dtype=np.float64)
    b = np.asarray(right, dtype=np.float64)
    return _chain(a, b, _is_float32(a) and _is_float32(b))


def _chain(a: FloatArray, b: FloatArray, exact_products: bool) -> FloatArray:
    """:func:`exact_scores` of float64 rows; ``exact_products``: all values are float32's."""
    if exact_products:  # fma(x, y, s) == fl(x*y + s) == fl(fl(x*y) + s): a sequential sum
        # ufunc.accumulate adds strictly left to right (``np.sum`` would pair terms).
        return np.asarray(np.add.accumulate(a * b, axis=1)[:, -1], dtype=np.float64)
    by_feature_a, by_feature_b = np.ascontiguousarray(a.T), np.ascontiguousarray(b.T)
    high_a, low_a = _split(by_feature_a)
    high_b, low_b = _split(by_feature_b)
    total = np.multiply(by_feature_a[0], by_feature_b[0])
    for k in range(1, a.shape[1]):
        total = _fma(
            (by_feature_a[k], high_a[k], low_a[k]), (by_feature_b[k], high_b[k], low_b[k]), total
        )
    return total


def _is_float32(x: FloatArray) -> bool:
    """Whether every value is a float32 number (then products are exact in float64)."""
    with np.errstate(over="ignore"):
        return bool(np.array_equal(x.astype(np.float32).astype(np.float64), x))


def _split(x: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Veltkamp's split: ``x = high + low`` exactly, each half of 26 bits or fewer."""
    c = 134217729.0 * x  # 2**27 + 1
    high = c - (c - x)
    return high, x - high


def _two_sum(a: FloatArray, b: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Knuth's TwoSum: ``a + b = s + e`` exactly, ``s = fl(a + b)``."""
    s = a + b
    b_virtual = s - a
    return s, (a - (s - b_virtual)) + (b - b_virtual)


def _fma(
    a: tuple[FloatArray, FloatArray, FloatArray],
    b: tuple[FloatArray, FloatArray, FloatArray],
    c: FloatArray,
) -> FloatArray:
    """``fl(a*b + c)`` with one rounding; ``a`` and ``b`` come with their :func:`_split`.

    Boldo and Melquiond, "Emulation of FMA and correctly rounded sums: proved algorithms
    using rounding to odd", IEEE Trans. Computers 57(4), 2008: with ``a*b = uh + ul``
    exactly (Dekker's product) and ``c + uh = th + tl`` exactly (TwoSum), the result is
    ``fl(th + RO(tl + ul))``, RO rounding to odd. Exact unless something overflows or
    the product's error term underflows.
    """
    (x, x_high, x_low), (y, y_high, y_low) = a, b
    uh = x * y
    ul = ((x_high * y_high - uh) + x_high * y_low + x_low * y_high) + x_low * y_low
    th, tl = _two_sum(c, uh)
    v, error = _two_sum(tl, ul)
    # Round to odd: an inexact sum with an even last bit moves to its odd neighbour,
    # which lies on the side of the error.
    inexact_even = (error != 0) & ((v.view(np.int64) & 1) == 0)
    if inexact_even.any():
        v[inexact_even] = np.nextafter(v[inexact_even], np.copysign(np.inf, error[inexact_even]))
    return np.asarray(th + v, dtype=np.float64)


def _pair_scores(
    probes: npt.NDArray[Any],
    gallery: FloatArray,
    rows: IntArray,
    cols: IntArray,
    exact_products: bool,
) -> FloatArray:
    """Scores of ``probes[rows[i]]`` with ``gallery[cols[i]]``, in bounded batches."""
    out = np.empty(rows.size)
    for s in range(0, rows.size, _EXACT_BATCH):
        batch = slice(s, s + _EXACT_BATCH)
        out[batch] = _chain(
            np.asarray(probes[rows[batch]], dtype=np.float64), gallery[cols[batch]], exact_products
        )
    return out


def _gamma(dim: int, unit_roundoff: float) -> float:
    return dim * unit_roundoff / (1.0 - dim * unit_roundoff)


def _margin(
    dim: int, probe_norms: FloatArray, gallery_norm: float, float32_products: bool
) -> FloatArray:
    """``eps`` per probe: twice the largest ``|product - score|`` (module docstring).

    A score and a float64 product each lie within ``gamma_D ||p|| ||g||`` of the exact dot
    product (a float32 product of float32 values within ``gamma_D`` of float32's unit
    roundoff), so ``eps = 2 (gamma_product + gamma_score) ||p|| max||g||``, widened by
    2**-20 for the rounding of the norms and by ``D 2**-1060`` (float32: ``D 2**-140``)
    for underflow.
    """
    product = _gamma(dim, 2.0**-24) if float32_products else _gamma(dim, _UNIT_ROUNDOFF)
    tiny = dim * (2.0**-140 if float32_products else 2.0**-1060)
    spread = 2.0 * (product + _gamma(dim, _UNIT_ROUNDOFF)) * (1.0 + 2.0**-20)
    eps = spread * probe_norms * gallery_norm + tiny
    if not np.isfinite(eps).all():
        raise MetricInputError(
            "Expected finite similarity scores, but the features' norms are too large for float64"
        )
    return np.asarray(eps, dtype=np.float64)


def _float32_product(gallery_block: FloatArray) -> Callable[[FloatArray], npt.NDArray[Any]]:
    """The screening product of float32 values: a float32 BLAS product (half the work).

    Used only when every feature value is a float32 number, so the conversion is exact;
    :func:`_margin` then allows for float32 rounding.
    """
    transposed = gallery_block.astype(np.float32).T

    def product(probes: FloatArray) -> npt.NDArray[Any]:
        return np.asarray(probes.astype(np.float32) @ transposed)

    return product


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


def finish_search(
    shard: SearchShard,
    best_mate: npt.ArrayLike,
    probe_subjects: npt.ArrayLike,
    gallery_subjects: npt.ArrayLike,
) -> SearchResult:
    """The search result from the whole gallery's share and best mate scores.

    Parameters
    ----------
    shard : SearchShard
        The share of the whole gallery (one shard, or :func:`merge_shards` of all).
    best_mate : array of float, shape (Q,)
        :func:`best_mate_scores` over the whole gallery.
    probe_subjects : array of int, shape (Q,)
    gallery_subjects : array of int, shape (G,)

    Returns
    -------
    SearchResult
        With ``top_k_index`` and ``top_k_score`` (``min(k, G)`` columns) when the shard
        kept a top k.
    """
    probe = _subjects("probe_subjects", probe_subjects)
    gallery = _subjects("gallery_subjects", gallery_subjects)
    mate = np.asarray(best_mate, dtype=np.float64)
    mated = np.isin(probe, gallery)
    if mate.shape != probe.shape or not np.array_equal(mated, mate > -np.inf):
        raise MetricInputError(
            "Expected the best mate score of every probe over the whole gallery (finite"
            " exactly for the mated probes), but got another array; take the maximum of"
            " best_mate_scores over all shards"
        )
    rank = np.where(mated, 1 + shard.n_ahead, 0).astype(np.int64)
    first_other = gallery[np.maximum(shard.best_other_index, 0)]
    k = min(shard.top_k_score.shape[1], gallery.size)
    has_top = shard.top_k_score.shape[1] > 0
    return SearchResult(
        probe_subjects=probe,
        mated=mated,
        mate_rank=rank,
        mate_score=np.where(mated, mate, np.nan),
        top_score=np.maximum(mate, shard.best_other_score),
        top_subject=np.where(mated & (rank == 1), probe, first_other).astype(np.int64),
        n_gallery=int(gallery.size),
        top_k_index=shard.top_k_index[:, :k].copy() if has_top else None,
        top_k_score=shard.top_k_score[:, :k].copy() if has_top else None,
    )


def _search_block(scores: FloatArray, probe: IntArray, gallery: IntArray) -> SearchResult:
    """The definitions applied to a full score matrix (:func:`search_scores`)."""
    if not np.isfinite(scores).all():
        raise MetricInputError("Expected finite similarity scores, but got NaN or inf")
    is_mate = probe[:, None] == gallery[None, :]
    mated = is_mate.any(axis=1)
    best_mate = np.where(is_mate, scores, -np.inf).max(axis=1)
    others = np.where(is_mate, -np.inf, scores)
    best_other = others.max(axis=1)
    ahead = (others >= best_mate[:, None]).sum(axis=1)  # -inf is never >= a mate's score
    # The first other-subject template with the top score; a probe whose gallery holds
    # only its own subject falls back to index 0, which the `where` below replaces.
    first_other = np.argmax(others, axis=1)
    return SearchResult(
        probe_subjects=probe,
        mated=mated,
        mate_rank=np.where(mated, 1 + ahead, 0).astype(np.int64),
        mate_score=np.where(mated, best_mate, np.nan),
        top_score=scores.max(axis=1) if scores.shape[1] else np.zeros(0),
        top_subject=np.where(mated & (best_mate > best_other), probe, gallery[first_other]),
        n_gallery=int(gallery.size),
    )


def search_scores(
    similarity: npt.ArrayLike,
    probe_subjects: npt.ArrayLike,
    gallery_subjects: npt.ArrayLike,
    *,
    top_k: int | None = None,
) -> SearchResult:
    """Search results from a full similarity matrix (higher means "same").

    Parameters
    ----------
    similarity : array of float, shape (Q, G)
        Score of every probe against every gallery template.
    probe_subjects : array of int, shape (Q,)
    gallery_subjects : array of int, shape (G,)
        Subject ids (non-negative); a subject may own several gallery templates.
    top_k : int, optional
        Also list each probe's k best gallery templates.

    Returns
    -------
    SearchResult
        As :func:`search` (same definitions, same tie rule), on the scores given.
    """
    s = np.asarray(similarity)
    probe = _subjects("probe_subjects", probe_subjects)
    gallery = _subjects("gallery_subjects", gallery_subjects)
    if s.shape != (probe.size, gallery.size) or not np.issubdtype(s.dtype, np.number):
        raise MetricInputError(
            f"Expected a numeric `similarity` of shape (probes, gallery) = "
            f"({probe.size}, {gallery.size}), but got shape {s.shape} and dtype {s.dtype}"
        )
    if gallery.size == 0:
        raise MetricInputError("Expected at least one gallery template, but got 0")
    scores = s.astype(np.float64, copy=False)
    result = _search_block(scores, probe, gallery)
    if top_k is None:
        return result
    k = min(_positive("top_k", top_k), gallery.size)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k].astype(np.int64)
    return replace(result, top_k_index=order, top_k_score=np.take_along_axis(scores, order, axis=1))


def search(
    probe_features: npt.ArrayLike,
    gallery_features: npt.ArrayLike,
    probe_subjects: npt.ArrayLike,
    gallery_subjects: npt.ArrayLike,
    *,
    chunk: int | None = None,
    gallery_chunk: int | None = None,
    top_k: int | None = None,
    scorer: Scorer | None = None,
) -> SearchResult:
    """Search every probe template against the gallery by cosine similarity.

    Parameters
    ----------
    probe_features : array of float, shape (Q, D)
        Unit-norm pooled probe features (``facebench.pooling.pool_templates``).
    gallery_features : array of float, shape (G, D)
        Unit-norm pooled gallery features (an array or a ``numpy.memmap``).
    probe_subjects : array of int, shape (Q,)
    gallery_subjects : array of int, shape (G,)
        Subject ids (non-negative); a subject may own several gallery templates.
    chunk : int, optional
        Probes per matrix product; default ``BLOCK_SCORES // gallery_chunk``.
    gallery_chunk : int, optional
        Gallery rows converted to float64 and scored at a time; default
        ``min(G, GALLERY_BLOCK)``. At most ``chunk x gallery_chunk`` float64 scores, one
        float64 gallery block and one float64 probe chunk exist at once. The results do not
        depend on ``chunk`` or ``gallery_chunk``.
    top_k : int, optional
        Also list each probe's k best gallery templates (``SearchResult.top_k_*``).
    scorer : Scorer, optional
        The matrix product that screens pairs (default: numpy on the CPU); the results do
        not depend on it.

    Returns
    -------
    SearchResult
        Scores as defined in the module docstring (float64, feature order); see
        :class:`SearchResult` for each field and the module docstring for the tie rule.
    """
    probes = np.asarray(probe_features)
    gallery_f = np.asarray(gallery_features)
    probe = _subjects("probe_subjects", probe_subjects)
    gallery = _subjects("gallery_subjects", gallery_subjects)
    for name, f, n in (("probe", probes, probe.size), ("gallery", gallery_f, gallery.size)):
        if f.ndim != 2 or f.shape[0] != n or not np.issubdtype(f.dtype, np.floating):
            raise MetricInputError(
                f"Expected `{name}_features` to be a float array of shape ({n}, D), one row per "
                f"{name} subject, but got shape {f.shape} and dtype {f.dtype}"
            )
    if probes.shape[1] != gallery_f.shape[1]:
        raise MetricInputError(
            f"Expected probe and gallery features of one dimension, but got "
            f"{probes.shape[1]} and {gallery_f.shape[1]}"
        )
    if gallery.size == 0:
        raise MetricInputError("Expected at least one gallery template, but got 0")
    if probes.shape[1] == 0:
        raise MetricInputError("Expected features of dimension D >= 1, but got D = 0")
    for name, value in (("chunk", chunk), ("gallery_chunk", gallery_chunk)):
        if value is not None:
            _positive(name, value)
    rows = ArrayRows(gallery_f)
    best = best_mate_scores(probes, rows, probe, gallery)
    shard = search_shard(
        probes,
        rows,
        probe,
        gallery,
        best,
        top_k=top_k,
        chunk=chunk,
        gallery_chunk=gallery_chunk,
        scorer=scorer,
    )
    return finish_search(shard, best, probe, gallery)


# ------------------------------------------------------------------------------ metrics


def cmc(result: SearchResult, ranks: Sequence[int] = (1, 5, 10)) -> dict[int, float]:
    """Cumulative match characteristic over the mated probes.

    Returns
    -------
    dict of int to float
        ``r -> #{mated probes with mate_rank <= r} / #{mated probes}`` (closed-set
        identification rate at rank ``r``; non-mated probes take no part).
    """
    if result.n_mated == 0:
        raise MetricInputError("Expected at least one mated probe for the CMC, but got 0")
    out: dict[int, float] = {}
    mated_ranks = result.mate_rank[result.mated]
    for r in ranks:
        if isinstance(r, bool) or not isinstance(r, int | np.integer) or r < 1:
            raise MetricInputError(f"Expected ranks to be integers >= 1, but got {r!r}")
        out[int(r)] = float(np.count_nonzero(mated_ranks <= r) / mated_ranks.size)
    return out


def open_set_counts(result: SearchResult) -> ThresholdCounts:
    """The counts core of TPIR/FPIR: accepted mated and non-mated probes at each threshold.

    Genuine side: the mated probes; one counts as accepted at ``t`` when its mate is at
    rank 1 and its mate score is ``>= t`` (a mated probe not at rank 1 is never accepted,
    yet counts in ``n_genuine``). Impostor side: each non-mated probe's top score. So
    ``counts.tar`` is the TPIR and ``counts.far`` the FPIR at every threshold.
    """
    if result.n_nonmated == 0:
        raise MetricInputError(
            "Expected at least one non-mated probe to set a threshold at an FPIR, but got 0"
        )
    if result.n_mated == 0:
        raise MetricInputError("Expected at least one mated probe for the TPIR, but got 0")
    nonmated_top = result.top_score[~result.mated]
    at_rank_1 = result.mate_score[result.mated & (result.mate_rank == 1)]
    if at_rank_1.size:
        scores = np.concatenate((at_rank_1, nonmated_top))
        labels = np.arange(scores.size) < at_rank_1.size
        counts = count_at_thresholds(scores, labels)
        return replace(counts, n_genuine=result.n_mated)
    # No mate at rank 1: nothing is ever identified. A stand-in genuine score equal to the
    # highest non-mated one leaves the thresholds as they are; its count is then dropped.
    scores = np.concatenate(([nonmated_top.max()], nonmated_top))
    counts = count_at_thresholds(scores, np.arange(scores.size) == 0)
    return replace(
        counts,
        n_genuine_accepted=np.zeros_like(counts.n_genuine_accepted),
        n_genuine=result.n_mated,
        genuine_sorted=np.zeros(0, dtype=np.float64),
    )


def tpir_at_fpir(
    result: SearchResult, fpir_targets: Sequence[float] = (0.01, 0.1), rule: str = "exact"
) -> list[IdentificationPoint]:
    """TPIR at each FPIR target, the threshold set on the non-mated probes' top scores.

    Parameters
    ----------
    result : SearchResult
        From :func:`search` or :func:`search_scores`; needs mated and non-mated probes.
    fpir_targets : sequence of float
        Each in (0, 1].
    rule : str
        A key of :data:`TPIR_RULES`.

    Returns
    -------
    list of IdentificationPoint
        One per target, in order. A mated probe is identified when its mate is at rank 1
        and its mate score is ``>= threshold`` (PROTOCOLS.md, IJB-A 1:N).
    """
    if rule not in TPIR_RULES:
        raise MetricInputError(f"Expected a TPIR rule in {sorted(TPIR_RULES)}, but got {rule!r}")
    counts = open_set_counts(result)
    points = []
    for target in fpir_targets:
        if not 0.0 < float(target) <= 1.0:
            raise MetricInputError(f"Expected an FPIR target in (0, 1], but got {target!r}")
        op = TPIR_RULES[rule](counts, float(target))
        assert op.threshold is not None and op.n_impostors_at_or_above is not None
        points.append(
            IdentificationPoint(
                fpir_target=op.far_target,
                tpir=op.tar,
                threshold=op.threshold,
                fpir_achieved=op.far_achieved,
                n_nonmated_at_or_above=op.n_impostors_at_or_above,
                resolution_limited=op.resolution_limited,
                rule=rule,
            )
        )
    return points
