"""Store + template protocol (IJB-A, IJB-B, IJB-C) -> pooled templates -> 1:1 and 1:N
metrics per split -> a split report.

Every item the protocol needs is read from the store once, as the store's float32 rows
(:mod:`facebench.pool_store`: streamed, never held whole); each split pools its own
templates (a template id can hold different items in different splits), all before any
score exists; 1:1 scores are computed by blocks of templates, in float64 or in float32
with float64 re-scores where TAR at a FAR needs them (:mod:`facebench.template_scores`), so
memory does not grow with the number of pairs. At IJB-C size (469,375 items x 512, 15.7 M
pairs) the largest arrays are the per-pair arrays and the counts core's sorted scores.
IJB-B/C may come as a :class:`protocols.DeferredTemplateProtocol`: the store is pooled
while its pair file is read.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from facebench import __version__, pool_store
from facebench.columns import Taken
from facebench.errors import FacebenchError, MissingItemsError
from facebench.evaluate import downsample_roc, store_summary
from facebench.metrics import auc, equal_error_rate, tar_at_far
from facebench.pool_store import TemplateSet, pool_from_store
from facebench.report import SplitReport
from facebench.store import FeatureStore, StoreOpening, open_for_lookups
from facebench.template_scores import Products, resolve_precision, score_pairs, torch_products
from protocols import DeferredTemplateProtocol, Split, TemplateProtocol, Templates

DEFAULT_MEMORY_MIB = 256
"""Working memory of the streamed stages (store reads, score blocks) unless told."""
MIN_MEMORY_MIB = 16
_MIB = 1 << 20  # bytes per MiB of the budget (tests shrink it to exercise many blocks)
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
    score_precision: str = "auto"
    device: str = "cpu"


IntArray = npt.NDArray[np.int64]


def _splits_sets(splits: Sequence[Split]) -> tuple[list[Templates], dict[int, int]]:
    """The distinct template sets the chosen splits use, and id(Templates) -> its uses."""
    sets: dict[int, Templates] = {}
    uses: dict[int, int] = {}
    for split in splits:
        used = [] if split.verification is None else [split.verification.templates]
        for ident in split.identification:
            used += [ident.gallery_templates, ident.probe_templates]
        for templates in used:
            sets.setdefault(id(templates), templates)
            uses[id(templates)] = uses.get(id(templates), 0) + 1
    return list(sets.values()), uses


def _locate(
    store: FeatureStore,
    protocol: TemplateProtocol,
    sets: Sequence[Templates],
    options: SplitOptions,
) -> tuple[list[TemplateSet], list[str]]:
    """Each set's membership rows found in the store (skipped items left out)."""
    skipped = store.skipped()
    lost: list[str] = []
    warnings: list[str] = []
    if skipped:
        lost = [k for k in protocol.items if k in skipped]
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
    absent = set(lost)
    located = []
    for templates in sets:
        keys: Sequence[str] = templates.item_keys
        keep = None
        if absent:
            keep = np.fromiter((k not in absent for k in keys), bool, count=len(keys))
            keys = [k for k, ok in zip(keys, keep, strict=True) if ok]
        try:
            located.append(TemplateSet(templates, keep, store.index_of(keys)))
        except MissingItemsError:
            # The error of a lookup of every needed item, sorted (its first missing ids).
            store.index_of([k for k in protocol.items if k not in absent])
            raise
    return located, warnings


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
    protocol: TemplateProtocol | DeferredTemplateProtocol,
    store_path: str | Path | StoreOpening,
    options: SplitOptions | None = None,
    *,
    timer: Callable[[str], None] | None = None,
    memory_mib: int | None = None,
    pair_sink: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[SplitReport, dict[str, npt.NDArray[Any]]]:
    """Evaluate a template protocol on a feature store: 1:1 and 1:N of every split.

    Parameters
    ----------
    store_path : path or StoreOpening
        The feature store, or one opening in a thread (taken here; closed after pooling).
    memory_mib : int, optional
        Working memory for the streamed stages, in MiB (default ``DEFAULT_MEMORY_MIB``):
        a quarter for each store read, a quarter for each block of 1:1 score products.
        It never changes a number (reads are summed in fixed units, and every score is
        its own dot product), only how much is held at once; the protocol's arrays, the
        pooled templates and the scores of all pairs come on top.
    protocol : TemplateProtocol or DeferredTemplateProtocol
        A deferred protocol (IJB-B/C loaded with ``defer_pairs``) has its templates found
        and pooled from the store while its pair file is still being read; the pairs are
        waited for only then.
    pair_sink : callable, optional
        Of a protocol with one split (IJB-B/C): called with the per-pair columns ``split``,
        ``left``, ``right``, ``is_same`` (the first entries of ``pair_data``, the same
        objects) once the pairs are scored, while the scores are counted:
        :meth:`facebench.report.ReportWriter.begin` writes them meanwhile.
    timer : callable, optional
        Called with a stage's name as each stage ends (for benchmarks; see
        :data:`STAGES`): ``read`` (store opened, needed rows read), ``pool`` (the
        template sets of every split), ``pairs`` (a deferred protocol's pairs waited
        for), ``score`` (1:1 pair scores), ``counts`` (the
        sorted-score core), ``metrics`` (TAR at FAR, ROC, AUC, EER), ``identification``
        (1:N) and ``assemble`` (report and per-pair arrays). ``score`` to
        ``identification`` end once per split.

    Returns
    -------
    report : SplitReport
    pair_data : dict of ndarray or LazyColumn
        For ``report.scores.npz``: per pair ``split``, ``left``/``right`` template ids,
        ``score``, ``is_same``; per probe ``probe_split``, ``probe_gallery``,
        ``probe_template``, ``probe_mated``, ``probe_mate_rank``, ``probe_mate_score``,
        ``probe_top_score``. Of a single split, ``split``, ``left``, ``right`` and (float32
        scores) ``score`` are :class:`facebench.columns.LazyColumn`: made as the file is
        written; ``np.asarray`` gives the array.
    """
    from facebench.metrics.identification import cmc, search, tpir_at_fpir

    options = options or SplitOptions()
    deferred = protocol if isinstance(protocol, DeferredTemplateProtocol) else None
    view = protocol.view if isinstance(protocol, DeferredTemplateProtocol) else protocol
    far_targets = options.far_targets
    if far_targets is None:
        far_targets = DEFAULT_FAR.get(view.name, DEFAULT_FAR_WIDE)
    splits = view.splits
    if options.splits is not None:
        known = {s.split for s in splits}
        unknown = sorted(set(options.splits) - known)
        if unknown:
            raise FacebenchError(
                f"Expected --split in {sorted(known)}, but got {', '.join(map(str, unknown))}"
            )
        splits = tuple(s for s in splits if s.split in options.splits)
    tick = timer or _no_timer
    if memory_mib is not None and memory_mib < MIN_MEMORY_MIB:
        raise FacebenchError(
            f"Expected a memory budget of at least {MIN_MEMORY_MIB} MiB, but got {memory_mib}"
        )
    working = (memory_mib or DEFAULT_MEMORY_MIB) * _MIB
    score_block_bytes = working // 4
    products = _products(options.device)
    sets, uses = _splits_sets(splits)
    try:
        with _opened(store_path) as store:
            # A read holds about three copies of its rows (HDF5, the checked rows, float64).
            unit_bytes = pool_store.UNIT_ROWS * max(store.info.dim, 1) * 4 * 3
            units_per_read = max(1, working // 4 // unit_bytes)
            located, warnings = _locate(store, view, sets, options)
            store_info = store_summary(store)
            tick("read")
            pooled = pool_from_store(
                store,
                located,
                mode=options.pooling,
                flip_fusion=options.flip_fusion,
                units_per_read=units_per_read,
            )
    except FacebenchError:
        if deferred is not None:
            deferred.result()  # a bad protocol is the first thing to fix: its error first
        raise
    del store, located  # the store's id list and index (tens of MB at IJB-C size)
    pooled_sets = {id(t): p for t, p in zip(sets, pooled, strict=True)}
    del pooled
    tick("pool")
    if deferred is not None:
        whole = deferred.result()  # the pair file's errors are raised here
        chosen = {s.split for s in splits}
        splits = tuple(s for s in whole.splits if s.split in chosen)
        if {id(t) for t in _splits_sets(splits)[0]} != set(pooled_sets):
            raise AssertionError("a deferred protocol's templates changed when its pairs came")
        tick("pairs")
    else:
        whole = protocol  # type: ignore[assignment]  # a TemplateProtocol here

    def take(templates: Templates) -> npt.NDArray[np.float64]:
        """A set's pooled features, forgotten here after their last use."""
        key = id(templates)
        uses[key] -= 1
        return pooled_sets[key] if uses[key] else pooled_sets.pop(key)

    entries: list[dict[str, Any]] = []
    pair_parts: dict[str, list[Any]] = {
        k: [] for k in ("split", "left", "right", "is_same", "score")
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
            # The per-pair file's columns, made as it is written (facebench.columns)
            ids = _compact_ids(ver.templates.ids)
            n_pairs = int(ver.left.size)
            pair_parts["split"].append(Taken(np.array([split.split], np.int16), None, n_pairs))
            pair_parts["left"].append(Taken(ids, ver.left, n_pairs))
            pair_parts["right"].append(Taken(ids, ver.right, n_pairs))
            labels = ver.is_same.view()  # the protocol's labels, read-only through this view
            labels.flags.writeable = False
            pair_parts["is_same"].append(labels)
            precision = resolve_precision(
                options.score_precision, int(ver.left.size), options.tar_rule
            )
            early = None
            if pair_sink is not None and len(splits) == 1:  # the per-pair file's first columns
                early = {k: pair_parts[k][0] for k in ("split", "left", "right", "is_same")}

            def scoring_tick(stage: str, early: dict[str, Any] | None = early) -> None:
                tick(stage)
                if stage == "score" and early is not None and pair_sink is not None:
                    pair_sink(early)  # written while the scores are counted

            scored = score_pairs(
                take(ver.templates),
                ver.left,
                ver.right,
                ver.is_same,
                far_targets,
                precision=precision,
                block_bytes=score_block_bytes,
                timer=scoring_tick,
                products=products,
            )
            scores, counts = scored.scores, scored.counts
            pair_parts["score"].append(scores)
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
                score_precision=scored.entry(),
            )
            del scored
            del counts  # its sorted copies of the scores: before the next split's exist
            tick("metrics")
        searches = []
        for ident in split.identification:
            gallery = take(ident.gallery_templates)
            probes = take(ident.probe_templates)
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
            probe_parts["probe_template"].append(ident.probe_templates.ids.copy())
            probe_parts["probe_mated"].append(result.mated)
            probe_parts["probe_mate_rank"].append(result.mate_rank)
            probe_parts["probe_mate_score"].append(result.mate_score)
            probe_parts["probe_top_score"].append(result.top_score)
        if split.identification:
            tick("identification")
        if len(searches) > 1:
            searches.append(_mean_search(searches))
        if searches:
            entry["identification"] = searches
            headline = searches[-1]
            entry["cmc"] = headline["cmc"]
            entry["tpir_at_fpir"] = headline["tpir_at_fpir"]
        entries.append(entry)
    report = SplitReport(
        protocol=whole.name,
        protocol_file=whole.source,
        protocol_sha256=whole.sha256,
        store=store_info,
        conventions=_conventions(options, far_targets),
        counts=dict(whole.counts),
        warnings=[*whole.warnings, *warnings],
        n_pairs=int(sum(e.get("n_pairs", 0) for e in entries)),
        n_genuine=int(sum(e.get("n_genuine", 0) for e in entries)),
        splits=entries,
        summary=summarize(entries, far_targets, options.fpir_targets),
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        facebench_version=__version__,
        label=options.label,
    )
    data = {k: _joined(v) for k, v in {**pair_parts, **probe_parts}.items() if v}
    tick("assemble")
    return report, data


def _opened(store: str | Path | StoreOpening) -> FeatureStore:
    """The store at a path, opened for lookups; or the one opened in a thread, taken."""
    return store.take() if isinstance(store, StoreOpening) else open_for_lookups(store)


def _products(device: str) -> Products | None:
    """The matrix products of 1:1 scoring on ``device`` (None: numpy on the CPU)."""
    if device == "cpu":
        return None
    if device != "cuda":
        raise FacebenchError(f"Expected --device cpu or cuda, but got {device!r}")
    import torch

    if not torch.cuda.is_available():
        raise FacebenchError("--device cuda was asked for, but torch sees no CUDA device")
    return torch_products("cuda")


def _compact_ids(ids: IntArray) -> npt.NDArray[np.integer[Any]]:
    """Template ids as int32 when they all fit (every IJB release), else as they are."""
    info = np.iinfo(np.int32)
    if ids.size and info.min <= int(ids.min()) and int(ids.max()) <= info.max:
        return ids.astype(np.int32)
    return ids


def _joined(parts: list[Any]) -> Any:
    """One column of the parts: a single part as it is (no copy of 15 M scores; a part
    that is the protocol's own array, the labels, is a read-only view of it; a
    :class:`facebench.columns.LazyColumn` stays one), several parts as one array."""
    return parts[0] if len(parts) == 1 else np.concatenate([np.asarray(p) for p in parts])


STAGES = ("read", "pool", "pairs", "score", "counts", "metrics", "identification", "assemble")
"""The stage names :func:`evaluate_templates` passes to its ``timer``, in order."""


def _no_timer(stage: str) -> None:
    """The default ``timer``: nothing."""


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
        "score": (
            "cosine similarity of pooled template features (float64 templates); each"
            " split's score_precision says how its 1:1 scores were computed"
        ),
        "score_precision": options.score_precision,
        "device": options.device,
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
        "gallery_mean": (
            "IJB-B/C: the gallery 'mean' entry averages CMC and TPIR over the galleries; its"
            " TPIR entries have no threshold (null: each gallery has its own)"
        ),
        "std_null": "std is null when there is one split",
    }
