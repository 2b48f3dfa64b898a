"""The paired bootstrap of ``facebench compare``: strata, draws, and each report's numbers.

Paired bootstrap (the same resampled units for every report)
------------------------------------------------------------
A paired bootstrap needs the same units in the same order in every report: the per-unit
files must hold identical ``left``, ``right``, ``is_same`` and ``fold`` (fold protocols) or
``split``, ``left``, ``right``, ``is_same`` and ``probe_split``, ``probe_gallery``,
``probe_template``, ``probe_mated`` (split protocols); anything else is refused.

Fold protocols, unit = pair. The pairs are cut into strata by (fold, is_same); each resample
draws, in every stratum, as many pairs as it holds, with replacement. The protocol fixes the
number of genuine and impostor pairs of each fold (LFW 300 + 300, YTF 250 + 250), so the
resample keeps every fold's size and class balance, and the FAR budget
``floor(target x n_impostor)`` of TAR at a FAR does not move between resamples. In every
resample the fold thresholds are refit (facebench's k-fold rule, exactly
:func:`facebench.metrics.kfold_accuracy` applied to the resampled scores, labels and folds),
so the interval includes the noise of the threshold choice; AUC, EER and TAR at FAR are
recomputed on the pooled resample (exactly :func:`facebench.metrics.count_at_thresholds` and
the metric functions on the resampled pairs).

Split protocols, unit = template (1:1) and probe template (1:N); splits are never mixed.
1:1, a two-way template bootstrap: the templates of a split (every id that appears in its
comparisons, left or right) are drawn as many times as there are, with replacement; a
comparison then counts ``w(left) x w(right)`` times, ``w`` being how often each of its two
templates was drawn, so the correlation of all comparisons that share a template is carried
into the resample (a pair-level bootstrap would treat them as independent and give intervals
that are too narrow). 1:N: the probe templates of a split are drawn with replacement within
strata of probes with the same mated status in every gallery of the split (IJB-A has one
gallery; in IJB-B/C each probe is mated in one of the two), each stratum keeping its size; a
probe drawn ``w`` times counts ``w`` times in every gallery's search (its rank and scores
against the gallery do not depend on the other probes, so nothing is searched again). Each
split's metric is recomputed on its resample, then averaged over splits (and galleries) as
in the report.

Random numbers: ``numpy.random.default_rng(seed)``; resamples ``r = 0 .. R-1`` are drawn in
order; within a resample the strata are visited in a fixed order (fold protocols: folds
ascending, impostors before genuine pairs; split protocols: splits ascending, in each the 1:1
templates (ids ascending) then the 1:N probe strata (mated patterns ascending, in each the
probe ids ascending)), and a stratum of ``n`` units draws ``rng.integers(0, n, size=n)``,
indices into its units in that order. The results do not depend on how resamples are batched.

Each report's numbers on a batch of resamples come from the weighted-resample engines of
:mod:`facebench.metrics.bootstrap`; the intervals are made in :mod:`facebench.compare.reports`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from facebench.metrics.bootstrap import (
    FoldEngine,
    IdentificationEngine,
    Stats,
    VerificationEngine,
)

IntArray = npt.NDArray[np.int64]

CMC_RANKS = (1, 5, 10)
CHUNK_ELEMENTS = 1 << 21
"""Resamples are evaluated in batches of about this many (resample x unit) weights."""

FOLD_SCHEME = (
    "pairs drawn with replacement within each (fold, is_same) stratum, every stratum keeping"
    " its size; fold thresholds refit in every resample (facebench's k-fold rule); AUC, EER"
    " and TAR at FAR recomputed on the pooled resample"
)
SPLIT_SCHEME = (
    "1:1: within each split its templates drawn with replacement, a comparison counting"
    " w(left) x w(right) times (two-way template bootstrap); 1:N: within each split the probe"
    " templates drawn with replacement within strata of equal mated status in every gallery,"
    " a probe counting as often as drawn in every gallery's search; each split's metric"
    " recomputed, then averaged over galleries and splits as in the report"
)
RNG_RULE = (
    "numpy.random.default_rng(seed); resamples in order; in each, strata in order (folds"
    " ascending, impostors then genuine; or splits ascending, 1:1 templates by id then 1:N"
    " probe strata by mated pattern, probes by id); a stratum of n units draws"
    " rng.integers(0, n, size=n)"
)


def draw_counts(rng: np.random.Generator, strata: Sequence[IntArray], n_units: int) -> IntArray:
    """One resample's multiplicities: each stratum drawn with replacement, keeping its size.

    Parameters
    ----------
    rng : numpy.random.Generator
    strata : sequence of int arrays
        The unit indices of each stratum, in the order they are drawn.
    n_units : int
        The length of the result.

    Returns
    -------
    ndarray of int64, shape (n_units,)
        How many times each unit is drawn; for a stratum ``u`` of ``n`` units,
        ``idx = rng.integers(0, n, size=n)`` and unit ``u[i]`` counts ``#{idx == i}``.
    """
    counts = np.zeros(n_units, dtype=np.int64)
    for units in strata:
        n = units.size
        if n:
            counts[units] = np.bincount(rng.integers(0, n, size=n), minlength=n)
    return counts


def _chunks(n_resamples: int, n_units: int) -> list[tuple[int, int]]:
    size = max(1, CHUNK_ELEMENTS // max(n_units, 1))
    return [(a, min(a + size, n_resamples)) for a in range(0, n_resamples, size)]


def fold_strata(folds: npt.ArrayLike, is_same: npt.ArrayLike) -> list[IntArray]:
    """The (fold, is_same) strata: folds ascending, impostors before genuine pairs."""
    f, y = np.asarray(folds), np.asarray(is_same, dtype=bool)
    return [
        np.flatnonzero((f == k) & (y == label)).astype(np.int64)
        for k in np.unique(f)
        for label in (False, True)
    ]


def bootstrap_folds(
    engines: Sequence[FoldEngine], strata: Sequence[IntArray], n_resamples: int, seed: int
) -> list[Stats]:
    """Each engine's numbers on the same ``n_resamples`` stratified pair resamples.

    Returns
    -------
    list of dict of str to ndarray, shape (n_resamples,)
        One dict per engine, in order.
    """
    n = engines[0].scores.size
    rng = np.random.default_rng(seed)
    parts: list[list[Stats]] = [[] for _ in engines]
    for a, b in _chunks(n_resamples, n):
        weights = np.stack([draw_counts(rng, strata, n) for _ in range(a, b)])
        for e, engine in enumerate(engines):
            parts[e].append(engine.statistics(weights, f" (of resamples {a}..{b - 1})"))
    return [_concat(p) for p in parts]


def _concat(parts: list[Stats]) -> Stats:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


@dataclass(frozen=True)
class SplitLayout:
    """The units of one split, shared by every report (their ids are identical).

    Attributes
    ----------
    split : int
    pair_rows : ndarray of int64
        The rows of the per-pair arrays in this split.
    templates : int
        The number of distinct 1:1 templates (ids of ``left`` and ``right``).
    left, right : ndarray of int64, shape (len(pair_rows),)
        Each pair's template indices into the split's distinct ids, ascending.
    probe_strata : list of ndarray of int64
        The 1:N probe strata (equal mated pattern over the galleries; patterns ascending),
        as indices into the split's distinct probe ids, ascending.
    n_probes : int
        The number of distinct probe templates.
    galleries : list of (name, rows, index)
        Per gallery (in file order): its rows of the per-probe arrays and each row's probe
        index.
    """

    split: int
    pair_rows: IntArray
    templates: int
    left: IntArray
    right: IntArray
    probe_strata: list[IntArray]
    n_probes: int
    galleries: list[tuple[str, IntArray, IntArray]]


def split_layouts(units: dict[str, npt.NDArray[Any]]) -> list[SplitLayout]:
    """Each split's units: its pairs' template indices, its probes' strata and galleries."""
    none = np.zeros(0, dtype=np.int64)
    pair_split, probe_split = units.get("split", none), units.get("probe_split", none)
    pair_left, pair_right = units.get("left", none), units.get("right", none)
    layouts = []
    for split in np.unique(np.concatenate((pair_split, probe_split))):
        rows = np.flatnonzero(pair_split == split).astype(np.int64)
        templates = np.unique(np.concatenate((pair_left[rows], pair_right[rows])))
        left = np.searchsorted(templates, pair_left[rows]).astype(np.int64)
        right = np.searchsorted(templates, pair_right[rows]).astype(np.int64)
        p_rows = np.flatnonzero(probe_split == split).astype(np.int64)
        galleries: list[tuple[str, IntArray, IntArray]] = []
        strata: list[IntArray] = []
        n_probes = 0
        if p_rows.size:
            probes = np.unique(units["probe_template"][p_rows])
            n_probes = probes.size
            names = list(dict.fromkeys(str(g) for g in units["probe_gallery"][p_rows]))
            pattern = np.zeros((len(names), n_probes), dtype=np.int8)  # 0 absent, 1 no, 2 yes
            for g, name in enumerate(names):
                g_rows = p_rows[units["probe_gallery"][p_rows] == name]
                index = np.searchsorted(probes, units["probe_template"][g_rows]).astype(np.int64)
                pattern[g, index] = np.where(units["probe_mated"][g_rows], 2, 1)
                galleries.append((name, g_rows, index))
            kinds, inverse = np.unique(pattern.T, axis=0, return_inverse=True)
            inverse = np.asarray(inverse).reshape(-1)
            strata = [np.flatnonzero(inverse == k).astype(np.int64) for k in range(len(kinds))]
        layouts.append(
            SplitLayout(
                split=int(split),
                pair_rows=rows,
                templates=int(templates.size),
                left=left,
                right=right,
                probe_strata=strata,
                n_probes=n_probes,
                galleries=galleries,
            )
        )
    return layouts


@dataclass
class SplitEngines:
    """One report's engines, split by split (None where a split has no 1:1 or no 1:N)."""

    verification: list[VerificationEngine | None]
    identification: list[list[IdentificationEngine]]


def split_engines(
    data: dict[str, npt.NDArray[Any]],
    layouts: Sequence[SplitLayout],
    far_targets: Sequence[float],
    fpir_targets: Sequence[float],
    tar_rule: str,
    tpir_rule: str,
) -> SplitEngines:
    """One report's engines over ``layouts`` (from its per-unit arrays ``data``)."""
    ver: list[VerificationEngine | None] = []
    ident: list[list[IdentificationEngine]] = []
    for layout in layouts:
        rows = layout.pair_rows
        ver.append(
            VerificationEngine(data["score"][rows], data["is_same"][rows], far_targets, tar_rule)
            if rows.size
            else None
        )
        ident.append(
            [
                IdentificationEngine(
                    data["probe_mated"][g_rows],
                    data["probe_mate_rank"][g_rows],
                    data["probe_mate_score"][g_rows],
                    data["probe_top_score"][g_rows],
                    CMC_RANKS,
                    fpir_targets,
                    tpir_rule,
                )
                for _, g_rows, _ in layout.galleries
            ]
        )
    return SplitEngines(ver, ident)


def _combine_splits(per_split: list[list[dict[str, Any]]]) -> dict[str, Any]:
    """Mean over galleries within a split, then over splits (as the report's summary).

    ``per_split[s]`` lists per-gallery (or the one 1:1) dicts of values; values may be
    floats or arrays of resamples (then the mean runs over the last axis of a stack).
    """
    split_values: list[dict[str, Any]] = []
    for entries in per_split:
        if not entries:
            continue
        if len(entries) == 1:
            split_values.append(entries[0])
        else:
            split_values.append(
                {k: np.stack([e[k] for e in entries], axis=-1).mean(axis=-1) for k in entries[0]}
            )
    if not split_values:
        return {}
    return {
        k: np.stack([v[k] for v in split_values], axis=-1).mean(axis=-1) for k in split_values[0]
    }


def split_point(engines: SplitEngines) -> dict[str, float]:
    """The full-sample split-protocol numbers (library functions, averaged as the report)."""
    out = _combine_splits([[v.point()] if v else [] for v in engines.verification])
    out.update(_combine_splits([[g.point() for g in gs] for gs in engines.identification]))
    return {k: float(v) for k, v in out.items()}


def bootstrap_splits(
    engines: Sequence[SplitEngines],
    layouts: Sequence[SplitLayout],
    n_resamples: int,
    seed: int,
) -> list[Stats]:
    """Each report's split-protocol numbers on the same resamples (module docstring)."""
    rng = np.random.default_rng(seed)
    widest = max([layout.pair_rows.size + layout.n_probes for layout in layouts] + [1])
    parts: list[list[Stats]] = [[] for _ in engines]
    for a, b in _chunks(n_resamples, widest):
        template_w = [np.zeros((b - a, lay.templates), dtype=np.int64) for lay in layouts]
        probe_w = [np.zeros((b - a, lay.n_probes), dtype=np.int64) for lay in layouts]
        for r in range(b - a):
            for s, lay in enumerate(layouts):
                if lay.pair_rows.size:
                    everything = [np.arange(lay.templates, dtype=np.int64)]
                    template_w[s][r] = draw_counts(rng, everything, lay.templates)
                if lay.n_probes:
                    probe_w[s][r] = draw_counts(rng, lay.probe_strata, lay.n_probes)
        where = f" (of resamples {a}..{b - 1})"
        for e, eng in enumerate(engines):
            ver_stats: list[list[Stats]] = []
            ident_stats: list[list[Stats]] = []
            for s, lay in enumerate(layouts):
                v = eng.verification[s]
                if v is None:
                    ver_stats.append([])
                else:
                    stats = v.template_statistics(
                        template_w[s], lay.left, lay.right, f"{where} of split {lay.split}"
                    )
                    ver_stats.append([stats])
                ident_stats.append(
                    [
                        g.statistics(probe_w[s][:, index], f"{where} of split {lay.split}")
                        for g, (_, _, index) in zip(
                            eng.identification[s], lay.galleries, strict=True
                        )
                    ]
                )
            combined = _combine_splits(ver_stats)
            combined.update(_combine_splits(ident_stats))
            parts[e].append(combined)
    return [_concat(p) for p in parts]
