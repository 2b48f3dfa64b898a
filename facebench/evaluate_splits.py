"""Store + template protocol (IJB-A, IJB-B, IJB-C) -> pooled templates -> 1:1 and 1:N
metrics per split -> a split report.

Every item the protocol needs is read from the store once; each split pools its own
templates (a template id can hold different items in different splits); 1:1 scores are
computed in chunks of pairs so memory does not grow with the number of pairs.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from facebench import __version__
from facebench.errors import FacebenchError, MissingItemsError
from facebench.evaluate import downsample_roc, store_summary
from facebench.metrics import auc, count_at_thresholds, equal_error_rate, tar_at_far
from facebench.report import SplitReport
from facebench.scoring import read_fused
from facebench.store import FeatureStore
from protocols import TemplateProtocol, Templates

PAIR_CHUNK = 1 << 15
DEFAULT_FAR = {"ijba": (1e-4, 1e-3, 1e-2)}
DEFAULT_FAR_WIDE = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
DEFAULT_FPIR = (0.01, 0.1)
CMC_RANKS = (1, 5, 10)
CMC_CURVE_RANKS = 20


@dataclass(frozen=True)
class SplitOptions:
    """Every choice that changes a number, recorded in the report's ``conventions``."""

    far_targets: tuple[float, ...] | None = None
    fpir_targets: tuple[float, ...] = DEFAULT_FPIR
    tar_rule: str = "exact"
    pooling: str = "media"
    flip_fusion: str = "none"
    splits: tuple[int, ...] | None = None
    allow_skipped: bool = False
    label: str | None = None


@dataclass
class _Features:
    """Fused unit features and raw norms of every needed item, addressable by key."""

    keys: npt.NDArray[np.str_]
    unit: npt.NDArray[np.float64]
    norms: npt.NDArray[np.float64]
    unit_flip: npt.NDArray[np.float64] | None
    norms_flip: npt.NDArray[np.float64] | None
    absent: set[str]

    def rows(self, keys: Sequence[str]) -> npt.NDArray[np.int64]:
        return np.searchsorted(self.keys, np.asarray(keys, dtype=str)).astype(np.int64)


def _read_items(
    store: FeatureStore, protocol: TemplateProtocol, options: SplitOptions
) -> tuple[_Features, list[str]]:
    needed = protocol.items
    skipped = store.skipped()
    lost = [k for k in needed if k in skipped]
    warnings: list[str] = []
    if lost and not options.allow_skipped:
        raise MissingItemsError(
            f"{store.info.path}: {len(lost)} items the protocol needs were skipped at"
            f" extraction (first: {lost[0]} ({skipped[lost[0]]})); fix those images and"
            " extract again, or pass --allow-skipped to pool templates from their remaining"
            " items (the report records it)"
        )
    if lost:
        warnings.append(
            f"{len(lost)} items were skipped at extraction (--allow-skipped; first: {lost[0]});"
            " their templates are pooled from the remaining items"
        )
    present = [k for k in needed if k not in skipped] if lost else needed
    rows = store.index_of(present)
    # insightface pooling needs the raw flipped features; the other modes fuse per item.
    per_item = "none" if options.pooling == "insightface" else options.flip_fusion
    unit, norms = read_fused(store, rows, per_item)
    unit_flip = norms_flip = None
    if options.pooling == "insightface" and options.flip_fusion != "none":
        f_unit, f_norms = store.read_rows(rows, flip=True)
        unit_flip, norms_flip = f_unit.astype(np.float64), f_norms.astype(np.float64)
    features = _Features(
        keys=np.asarray(present, dtype=str),
        unit=unit,
        norms=norms,
        unit_flip=unit_flip,
        norms_flip=norms_flip,
        absent=set(lost),
    )
    return features, warnings


def _pool(
    features: _Features, templates: Templates, options: SplitOptions
) -> npt.NDArray[np.float64]:
    """Unit feature of every template (T, D')."""
    from facebench.pooling import pool_templates

    keep = np.ones(len(templates.item_keys), dtype=bool)
    if features.absent:
        keep = np.fromiter((k not in features.absent for k in templates.item_keys), bool)
    keys = [k for k, ok in zip(templates.item_keys, keep, strict=True) if ok]
    rows = features.rows(keys)
    item_template = templates.item_template[keep]
    has = np.zeros(templates.n_templates, dtype=bool)
    has[item_template] = True
    if not has.all():
        empty = templates.ids[~has]
        raise MissingItemsError(
            f"Expected features for every template, but {empty.size} templates have none"
            f" (first: {', '.join(map(str, empty[:5]))}); their items were all skipped at"
            " extraction"
        )
    flips = options.pooling == "insightface" and features.unit_flip is not None
    return pool_templates(
        features.unit[rows],
        features.norms[rows],
        item_template,
        templates.item_media[keep],
        templates.n_templates,
        mode=options.pooling,
        unit_flip=features.unit_flip[rows] if flips and features.unit_flip is not None else None,
        norms_flip=features.norms_flip[rows] if flips and features.norms_flip is not None else None,
        flip_fusion=options.flip_fusion if options.pooling == "insightface" else "none",
        item_score=None if templates.item_score is None else templates.item_score[keep],
        template_ids=templates.ids,
    )


def chunked_scores(
    pooled: npt.NDArray[np.float64], left: npt.NDArray[np.int64], right: npt.NDArray[np.int64]
) -> npt.NDArray[np.float64]:
    """Dot products of template pairs, in chunks (memory independent of the pair count)."""
    scores = np.empty(left.size, dtype=np.float64)
    for start in range(0, left.size, PAIR_CHUNK):
        stop = start + PAIR_CHUNK
        scores[start:stop] = np.einsum(
            "ij,ij->i", pooled[left[start:stop]], pooled[right[start:stop]]
        )
    return scores


def _mean_std(values: list[float]) -> dict[str, float | None]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return {"mean": None, "std": None}
    return {
        "mean": float(arr.mean()),
        "std": float(arr.std(ddof=1)) if arr.size > 1 else None,
    }


def _operating(point: Any) -> dict[str, Any]:
    return dataclasses.asdict(point)


def evaluate_templates(
    protocol: TemplateProtocol, store_path: str | Path, options: SplitOptions | None = None
) -> tuple[SplitReport, dict[str, npt.NDArray[Any]]]:
    """Evaluate a template protocol on a feature store: 1:1 and 1:N of every split.

    Returns
    -------
    report : SplitReport
    pair_data : dict of ndarray
        For ``report.scores.npz``: per pair ``split``, ``left``/``right`` template ids,
        ``score``, ``is_same``; per probe ``probe_split``, ``probe_gallery``,
        ``probe_template``, ``probe_mated``, ``probe_mate_rank``, ``probe_mate_score``,
        ``probe_top_score``.
    """
    from facebench.metrics.identification import cmc, search, tpir_at_fpir

    options = options or SplitOptions()
    far_targets = options.far_targets
    if far_targets is None:
        far_targets = DEFAULT_FAR.get(protocol.name, DEFAULT_FAR_WIDE)
    splits = protocol.splits
    if options.splits is not None:
        known = {s.split for s in splits}
        unknown = sorted(set(options.splits) - known)
        if unknown:
            raise FacebenchError(
                f"Expected --split in {sorted(known)}, but got {', '.join(map(str, unknown))}"
            )
        splits = tuple(s for s in splits if s.split in options.splits)
    with FeatureStore.open(store_path) as store:
        features, warnings = _read_items(store, protocol, options)
        store_info = store_summary(store)
    entries: list[dict[str, Any]] = []
    pair_parts: dict[str, list[npt.NDArray[Any]]] = {
        k: [] for k in ("split", "left", "right", "score", "is_same")
    }
    probe_parts: dict[str, list[npt.NDArray[Any]]] = {
        k: []
        for k in (
            "probe_split",
            "probe_gallery",
            "probe_template",
            "probe_mated",
            "probe_mate_rank",
            "probe_mate_score",
            "probe_top_score",
        )
    }
    for split in splits:
        entry: dict[str, Any] = {"split": split.split}
        ver = split.verification
        if ver is not None:
            pooled = _pool(features, ver.templates, options)
            scores = chunked_scores(pooled, ver.left, ver.right)
            counts = count_at_thresholds(scores, ver.is_same)
            eer = equal_error_rate(counts)
            entry.update(
                n_templates=ver.templates.n_templates,
                n_pairs=int(scores.size),
                n_genuine=int(ver.is_same.sum()),
                n_impostor=int(scores.size - ver.is_same.sum()),
                auc=auc(counts),
                eer=eer.eer,
                tar_at_far=[
                    _operating(p) for p in tar_at_far(counts, far_targets, options.tar_rule)
                ],
                roc=downsample_roc(counts),
            )
            pair_parts["split"].append(np.full(scores.size, split.split, dtype=np.int16))
            pair_parts["left"].append(ver.templates.ids[ver.left])
            pair_parts["right"].append(ver.templates.ids[ver.right])
            pair_parts["score"].append(scores)
            pair_parts["is_same"].append(ver.is_same)
        searches = []
        for ident in split.identification:
            gallery = _pool(features, ident.gallery_templates, options)
            probes = _pool(features, ident.probe_templates, options)
            result = search(
                probes, gallery, ident.probe_templates.subjects, ident.gallery_templates.subjects
            )
            curve = cmc(result, ranks=tuple(range(1, CMC_CURVE_RANKS + 1)))
            searches.append(
                {
                    "gallery": ident.gallery,
                    "n_gallery": ident.gallery_templates.n_templates,
                    "n_probes": ident.probe_templates.n_templates,
                    "n_mated": int(result.mated.sum()),
                    "cmc": {str(r): float(curve[r]) for r in CMC_RANKS if r in curve},
                    "cmc_curve": [float(curve[r]) for r in sorted(curve)],
                    "tpir_at_fpir": [
                        _operating(p)
                        for p in tpir_at_fpir(result, options.fpir_targets, _tpir_rule(options))
                    ],
                }
            )
            n = ident.probe_templates.n_templates
            probe_parts["probe_split"].append(np.full(n, split.split, dtype=np.int16))
            probe_parts["probe_gallery"].append(np.full(n, ident.gallery))
            probe_parts["probe_template"].append(ident.probe_templates.ids)
            probe_parts["probe_mated"].append(result.mated)
            probe_parts["probe_mate_rank"].append(result.mate_rank)
            probe_parts["probe_mate_score"].append(result.mate_score)
            probe_parts["probe_top_score"].append(result.top_score)
        if len(searches) > 1:
            searches.append(_mean_search(searches))
        if searches:
            entry["identification"] = searches
            headline = searches[-1]
            entry["cmc"] = headline["cmc"]
            entry["tpir_at_fpir"] = headline["tpir_at_fpir"]
        entries.append(entry)
    report = SplitReport(
        protocol=protocol.name,
        protocol_file=protocol.source,
        protocol_sha256=protocol.sha256,
        store=store_info,
        conventions=_conventions(options, far_targets),
        counts=dict(protocol.counts),
        warnings=[*protocol.warnings, *warnings],
        n_pairs=int(sum(e.get("n_pairs", 0) for e in entries)),
        n_genuine=int(sum(e.get("n_genuine", 0) for e in entries)),
        splits=entries,
        summary=summarize(entries, far_targets, options.fpir_targets),
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        facebench_version=__version__,
        label=options.label,
    )
    data = {k: np.concatenate(v) for k, v in {**pair_parts, **probe_parts}.items() if v}
    return report, data


def _tpir_rule(options: SplitOptions) -> str:
    """TPIR takes the TAR rule when it has one of that name (exact, count), else exact."""
    from facebench.metrics.identification import TPIR_RULES

    return options.tar_rule if options.tar_rule in TPIR_RULES else "exact"


def _mean_search(searches: list[dict[str, Any]]) -> dict[str, Any]:
    """The average over galleries (IJB-B/C report TPIR per gallery and averaged)."""
    cmc_mean = {r: float(np.mean([s["cmc"][r] for s in searches])) for r in searches[0]["cmc"]}
    tpir = []
    for i, point in enumerate(searches[0]["tpir_at_fpir"]):
        tpir.append(
            {
                "fpir_target": point["fpir_target"],
                "tpir": float(np.mean([s["tpir_at_fpir"][i]["tpir"] for s in searches])),
                "threshold": None,
            }
        )
    curve = np.mean([s["cmc_curve"] for s in searches], axis=0)
    return {
        "gallery": "mean",
        "n_probes": searches[0]["n_probes"],
        "cmc": cmc_mean,
        "cmc_curve": [float(x) for x in curve],
        "tpir_at_fpir": tpir,
    }


def summarize(
    entries: list[dict[str, Any]], far_targets: Sequence[float], fpir_targets: Sequence[float]
) -> dict[str, Any]:
    """Mean and std (ddof=1; null with one split) over the splits."""
    with_11 = [e for e in entries if "tar_at_far" in e]
    with_1n = [e for e in entries if "cmc" in e]
    summary: dict[str, Any] = {"n_splits": len(entries)}
    if with_11:
        summary["auc"] = _mean_std([e["auc"] for e in with_11])
        summary["tar_at_far"] = [
            {"far_target": t, **_mean_std([e["tar_at_far"][i]["tar"] for e in with_11])}
            for i, t in enumerate(far_targets)
        ]
    if with_1n:
        summary["cmc"] = {r: _mean_std([e["cmc"][r] for e in with_1n]) for r in with_1n[0]["cmc"]}
        summary["tpir_at_fpir"] = [
            {"fpir_target": t, **_mean_std([e["tpir_at_fpir"][i]["tpir"] for e in with_1n])}
            for i, t in enumerate(fpir_targets)
        ]
    return summary


def _conventions(options: SplitOptions, far_targets: Sequence[float]) -> dict[str, Any]:
    return {
        "score": "cosine similarity of pooled template features, float64",
        "decision": "accept when score >= threshold",
        "pooling": options.pooling,
        "flip_fusion": options.flip_fusion,
        "tar_rule": options.tar_rule,
        "tpir_rule": _tpir_rule(options),
        "far_targets": list(far_targets),
        "fpir_targets": list(options.fpir_targets),
        "templates": "pooled per split; a template id never shares items across splits",
        "cmc": "fraction of mated probes whose mate is within rank r",
        "tpir": (
            "a mated probe is identified when its mate is at rank 1 and scores >= the"
            " threshold set on the top gallery scores of non-mated probes"
        ),
        "summary": "mean and std (ddof=1) over splits",
        "threshold_inf": "null thresholds: +inf (accepts nothing)",
        "std_null": "std is null when there is one split",
    }
