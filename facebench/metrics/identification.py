"""Open-set 1:N identification (IJB-A, IJB-B, IJB-C): search, CMC, TPIR at an FPIR.

PROTOCOLS.md ("IJB-A", 1:N): probe templates are searched against a gallery of templates
with known subjects. A probe is *mated* when its subject has a gallery template, else
*non-mated*. Scores are dot products of the unit-norm pooled features, in float64.

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
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from facebench.metrics.counts import MetricInputError, ThresholdCounts, count_at_thresholds
from facebench.metrics.operating import OperatingPoint, tar_count, tar_exact

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

# Probe rows per chunk x gallery size: about 2**21 scores (16 MB of float64) per array.
_CHUNK_SCORES = 1 << 21


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
    """

    probe_subjects: IntArray
    mated: BoolArray
    mate_rank: IntArray
    mate_score: FloatArray
    top_score: FloatArray
    top_subject: IntArray
    n_gallery: int

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


@dataclass(frozen=True)
class _Block:
    mated: BoolArray
    mate_rank: IntArray
    mate_score: FloatArray
    top_score: FloatArray
    top_subject: IntArray


def _search_block(scores: FloatArray, probe: IntArray, gallery: IntArray) -> _Block:
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
    return _Block(
        mated=mated,
        mate_rank=np.where(mated, 1 + ahead, 0).astype(np.int64),
        mate_score=np.where(mated, best_mate, np.nan),
        top_score=scores.max(axis=1),
        top_subject=np.where(mated & (best_mate > best_other), probe, gallery[first_other]),
    )


def _matrix_product(a: FloatArray, b: FloatArray) -> FloatArray:
    """``a @ b.T``, always through the BLAS matrix-matrix kernel.

    numpy hands a product with a single row or column to the matrix-vector kernel, which
    sums in another order: a score could then differ in its last bit with the chunk size,
    and a tie become a non-tie. Padding to two rows keeps every score on one kernel.
    """
    pad_a, pad_b = a.shape[0] == 1, b.shape[0] == 1
    a2 = np.concatenate((a, a)) if pad_a else a
    b2 = np.concatenate((b, b)) if pad_b else b
    out = a2 @ b2.T
    return np.ascontiguousarray(out[: a.shape[0], : b.shape[0]])


def _assemble(probe: IntArray, n_gallery: int, blocks: list[_Block]) -> SearchResult:
    def cat(arrays: list[npt.NDArray[np.generic]], dtype: type) -> npt.NDArray[Any]:
        return np.concatenate(arrays).astype(dtype, copy=False) if arrays else np.zeros(0, dtype)

    return SearchResult(
        probe_subjects=probe,
        mated=cat([b.mated for b in blocks], np.bool_),
        mate_rank=cat([b.mate_rank for b in blocks], np.int64),
        mate_score=cat([b.mate_score for b in blocks], np.float64),
        top_score=cat([b.top_score for b in blocks], np.float64),
        top_subject=cat([b.top_subject for b in blocks], np.int64),
        n_gallery=n_gallery,
    )


def search_scores(
    similarity: npt.ArrayLike, probe_subjects: npt.ArrayLike, gallery_subjects: npt.ArrayLike
) -> SearchResult:
    """Search results from a full similarity matrix (higher means "same").

    Parameters
    ----------
    similarity : array of float, shape (Q, G)
        Score of every probe against every gallery template.
    probe_subjects : array of int, shape (Q,)
    gallery_subjects : array of int, shape (G,)
        Subject ids (non-negative); a subject may own several gallery templates.

    Returns
    -------
    SearchResult
        As :func:`search` (same definitions, same tie rule).
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
    block = _search_block(s.astype(np.float64, copy=False), probe, gallery)
    return _assemble(probe, gallery.size, [block])


def search(
    probe_features: npt.ArrayLike,
    gallery_features: npt.ArrayLike,
    probe_subjects: npt.ArrayLike,
    gallery_subjects: npt.ArrayLike,
    *,
    chunk: int | None = None,
) -> SearchResult:
    """Search every probe template against the gallery by cosine similarity.

    Parameters
    ----------
    probe_features : array of float, shape (Q, D)
        Unit-norm pooled probe features (``facebench.pooling.pool_templates``).
    gallery_features : array of float, shape (G, D)
        Unit-norm pooled gallery features.
    probe_subjects : array of int, shape (Q,)
    gallery_subjects : array of int, shape (G,)
        Subject ids (non-negative); a subject may own several gallery templates.
    chunk : int, optional
        Probes scored at a time; by default about 2**21 / G, so that no more than a few
        ``chunk x G`` float64 arrays exist at once (never the full ``Q x G`` matrix when it
        is large). The results do not depend on it.

    Returns
    -------
    SearchResult
        Scores are float64 dot products; see :class:`SearchResult` for each field and the
        module docstring for the tie rule.
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
    if chunk is None:
        chunk = max(1, _CHUNK_SCORES // gallery.size)
    if isinstance(chunk, bool) or not isinstance(chunk, int | np.integer) or chunk < 1:
        raise MetricInputError(f"Expected `chunk` to be an integer >= 1, but got {chunk!r}")
    g64 = gallery_f.astype(np.float64)
    blocks = []
    for start in range(0, probe.size, int(chunk)):
        sl = slice(start, start + int(chunk))
        scores = _matrix_product(probes[sl].astype(np.float64), g64)
        blocks.append(_search_block(scores, probe[sl], gallery))
    return _assemble(probe, gallery.size, blocks)


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
