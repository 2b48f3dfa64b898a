"""Open-set 1:N identification (IJB-A/B/C, MegaFace-style galleries): search, CMC, TPIR.

PROTOCOLS.md ("IJB-A", 1:N): probe templates are searched against a gallery of templates
with known subjects. A probe is *mated* when its subject has a gallery template, else
*non-mated*.

Scores. A score is the dot product of a probe's and a gallery template's features in
float64, accumulated in feature order by fused multiply-adds: ``s = p[0]*g[0]``, then
``s = fma(p[k], g[k], s)`` for ``k = 1 .. D-1``, one rounding per step
(:func:`facebench.metrics.exact_dot.exact_scores`; why, and how it is computed, is in
:mod:`facebench.metrics.exact_dot`). A score is a function of the two feature rows alone:
results never depend on chunk sizes, BLAS threads, how the gallery is sharded across
processes, or the device. :func:`search` screens with fast matrix products and scores
exactly every pair that matters (:mod:`facebench.metrics.search_engine`, which also holds
the gallery shards and their merge).

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

TPIR at an FPIR: a mated probe is identified at threshold ``t`` when its mate is at rank 1
and its mate score is ``>= t``; TPIR = identified mated probes / mated probes. FPIR = non-
mated probes whose top gallery score is ``>= t`` / non-mated probes. The threshold comes
from the non-mated probes' top scores by facebench's TAR rules
(:mod:`facebench.metrics.operating`), built on the same counts core
(:func:`facebench.metrics.counts.count_at_thresholds`): mated probes play the genuine
pairs (those not at rank 1 are never accepted), non-mated probes' top scores the impostors.

Here: :class:`SearchResult`, :class:`IdentificationPoint`, :data:`TPIR_RULES`,
:func:`finish_search` (a shard's share -> the result), :func:`search`,
:func:`search_scores`, :func:`cmc`, :func:`open_set_counts`, :func:`tpir_at_fpir`. The
engine's public names (shards, scorers, :func:`exact_scores`) are re-exported from here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from facebench.metrics.counts import MetricInputError, ThresholdCounts, count_at_thresholds
from facebench.metrics.exact_dot import Scorer, exact_scores, numpy_scorer
from facebench.metrics.operating import OperatingPoint, tar_count, tar_exact
from facebench.metrics.search_engine import (
    BLOCK_SCORES,
    GALLERY_BLOCK,
    ArrayRows,
    GalleryRows,
    SearchShard,
    _positive,
    _subjects,
    best_mate_scores,
    merge_shards,
    search_shard,
    shard_rows,
)

__all__ = [
    "BLOCK_SCORES",
    "GALLERY_BLOCK",
    "TPIR_RULES",
    "ArrayRows",
    "GalleryRows",
    "IdentificationPoint",
    "Scorer",
    "SearchResult",
    "SearchShard",
    "best_mate_scores",
    "cmc",
    "exact_scores",
    "finish_search",
    "merge_shards",
    "numpy_scorer",
    "open_set_counts",
    "search",
    "search_scores",
    "search_shard",
    "shard_rows",
    "tpir_at_fpir",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


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


# ------------------------------------------------------------------------------ search


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
    # No mate at rank 1: nothing is ever identified. A stand-in genuine score lets the
    # scores be checked as any others; it is then dropped (the thresholds are the non-mated
    # top scores, and no genuine score is ever accepted).
    scores = np.concatenate(([nonmated_top.max()], nonmated_top))
    counts = count_at_thresholds(scores, np.arange(scores.size) == 0)
    return replace(counts, genuine_sorted=np.zeros(0, dtype=np.float64), n_genuine=result.n_mated)


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
