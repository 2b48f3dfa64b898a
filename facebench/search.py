"""1:N search of a probe store against a gallery store (``facebench search``), at MegaFace scale.

Subjects. Each store item needs a subject: from a labels file (``--gallery-labels``,
``--probe-labels``: UTF-8 lines ``<id> <subject>``, the subject the last whitespace-separated
field, a BOM, CRLF and blank lines tolerated; every store id exactly once, no other ids) or,
without one, from the store's per-item metadata ``meta/subject`` (integers or strings).
Subjects are compared as written (``"7"`` and ``"07"`` differ; integers from both stores
compare as numbers). A probe is mated when its subject owns a gallery item.

Overlap. Probes and gallery are distinct stores (MegaFace: FaceScrub probes against
distractors plus the probes' gallery images): the same store twice, or an id in both,
is refused, because a probe would find itself (leave-one-out search is not supported).

The search is :mod:`facebench.metrics.identification` (the engine IJB's 1:N uses): the
gallery is read from the store block by block, each probe's best mate score is computed
exactly, and products of probe chunks with gallery blocks only screen pairs, so memory is
bounded by the chunk size and no result depends on it. Under ``torchrun`` (``WORLD_SIZE``
> 1; gloo on the CPU, nccl with ``--device cuda``) each rank searches a contiguous shard of
the gallery rows; best mate scores are combined by an all-reduce (max), the shards' shares
by an all-gather and :func:`facebench.metrics.identification.merge_shards`, so the result
equals a single process's exactly. Rank 0 writes the report.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from facebench import __version__
from facebench.errors import FacebenchError, InputFormatError, MissingItemsError, located
from facebench.fileio import file_sha256
from facebench.metrics.exact_dot import Scorer
from facebench.metrics.identification import (
    TPIR_RULES,
    SearchResult,
    cmc,
    finish_search,
    tpir_at_fpir,
)
from facebench.metrics.search_engine import (
    BLOCK_SCORES,
    GALLERY_BLOCK,
    SearchShard,
    best_mate_scores,
    merge_shards,
    search_shard,
    shard_rows,
)
from facebench.report import REPORT_SCHEMA_VERSION, jsonable, write_json_with_scores
from facebench.store import FeatureStore

#: The metadata key that holds each item's subject when no labels file is given.
SUBJECT_KEY = "subject"
CMC_RANKS = (1, 5, 10)
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class SearchOptions:
    """How ``facebench search`` runs; only ``top_k``, the FPIR targets and the rule change
    the numbers.

    Attributes
    ----------
    top_k : int
        Gallery items listed per probe (>= 1).
    chunk_size : int or None
        Gallery rows read and scored per block (default ``GALLERY_BLOCK``); probes per
        product are ``BLOCK_SCORES // chunk_size``.
    fpir_targets : tuple of float
        FPIR targets for TPIR, each in (0, 1].
    tpir_rule : str
        A key of ``TPIR_RULES``.
    device : str
        ``cpu`` or ``cuda`` (matrix products on the GPU; they only screen).
    label : str or None
        A name for the report.
    """

    top_k: int = 10
    chunk_size: int | None = None
    fpir_targets: tuple[float, ...] = (0.01, 0.1)
    tpir_rule: str = "exact"
    device: str = "cpu"
    label: str | None = None


@dataclass(frozen=True)
class SearchReport:
    """The JSON report of ``facebench search``.

    ``gallery`` and ``probes`` identify the stores (path, content checksum, size,
    attributes); ``subjects`` says where subjects came from; ``counts`` gives
    ``n_gallery``, ``n_gallery_subjects``, ``n_probes``, ``n_mated``, ``n_nonmated``;
    ``cmc`` maps "1", "5", "10" to the identification rate at that rank and ``cmc_curve``
    gives ``rank`` and ``rate`` lists (ranks 1-20, then 50, 100, 200, 500, ... up to the
    gallery size); ``tpir_at_fpir`` lists {fpir_target, tpir, threshold, fpir_achieved,
    n_nonmated_at_or_above, resolution_limited, rule} (empty with a warning when no probe
    is non-mated); ``execution`` records settings that change no number.
    """

    gallery: dict[str, Any]
    probes: dict[str, Any]
    subjects: dict[str, Any]
    conventions: dict[str, Any]
    counts: dict[str, int]
    warnings: list[str]
    cmc: dict[str, float]
    cmc_curve: dict[str, list[Any]]
    tpir_at_fpir: list[dict[str, Any]]
    top_k: int
    execution: dict[str, Any]
    created: str
    facebench_version: str
    label: str | None = None
    protocol: str = "search"
    schema_version: int = REPORT_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        """The JSON object; non-finite floats become ``null``."""
        data = jsonable(dataclasses.asdict(self))
        ordered = {"schema_version": data.pop("schema_version"), "protocol": data.pop("protocol")}
        ordered.update(data)
        return ordered


@dataclass(frozen=True)
class SearchRun:
    """A finished search: the report and the per-probe arrays (identical on every rank)."""

    report: SearchReport
    per_probe: dict[str, npt.NDArray[Any]]
    rank: int = 0
    world_size: int = 1


# ----------------------------------------------------------------------------- subjects


def read_labels(path: str | Path, store: FeatureStore) -> npt.NDArray[np.str_]:
    """The subject of every item of ``store``, in row order, from a labels file.

    Parameters
    ----------
    path : path
        UTF-8 text, one ``<id> <subject>`` per line (the subject is the last whitespace-
        separated field, so ids may hold spaces); a BOM, CRLF line ends and blank lines
        are tolerated.
    store : FeatureStore

    Raises
    ------
    InputFormatError
        A malformed line, an id that is not in the store, an id given twice (each named by
        file and line), or store ids without a label (the first few named).
    """
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputFormatError(f"{source}: no such labels file") from None
    except UnicodeDecodeError as err:
        raise InputFormatError(f"{source}: Expected UTF-8 text, but got {err}") from None
    except OSError as err:
        raise InputFormatError(f"{source}: cannot read the labels file ({err})") from None
    ids: list[str] = []
    subjects: list[str] = []
    lines: list[int] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line:
            continue
        fields = line.rsplit(None, 1)
        if len(fields) != 2:
            raise InputFormatError(
                located(source, number, f"Expected `<id> <subject>`, but got {line!r}")
            )
        ids.append(fields[0].strip())
        subjects.append(fields[1])
        lines.append(number)
    line_of = np.asarray(lines, dtype=np.int64)
    try:
        rows = store.index_of(ids)
    except MissingItemsError:
        known = set(store.ids)
        at = next(i for i, item in enumerate(ids) if item not in known)
        raise InputFormatError(
            located(
                source,
                int(line_of[at]),
                f"Expected an id of the store {store.info.path}, but got {ids[at]!r}; label"
                " exactly the store's items",
            )
        ) from None
    order = np.argsort(rows, kind="stable")
    repeated = np.flatnonzero(rows[order][1:] == rows[order][:-1])
    if repeated.size:
        first, second = order[repeated[0]], order[repeated[0] + 1]
        raise InputFormatError(
            located(
                source,
                int(line_of[second]),
                f"Expected each id once, but {ids[second]!r} is also labelled on line"
                f" {int(line_of[first])}; keep one of the two lines",
            )
        )
    if rows.size != store.info.n_items:
        unlabelled = np.setdiff1d(np.arange(store.info.n_items), rows)
        first_ids = ", ".join(repr(store.ids[int(r)]) for r in unlabelled[:5])
        raise InputFormatError(
            f"{source}: Expected a label for every item of {store.info.path}, but"
            f" {unlabelled.size} of {store.info.n_items} have none (first: {first_ids})"
        )
    labels = np.asarray(subjects, dtype=str)
    out: npt.NDArray[np.str_] = labels[order]
    return out


def store_subjects(store: FeatureStore, option: str) -> npt.NDArray[Any]:
    """The store's ``meta/subject`` values (integers or strings), shape (N,).

    Raises
    ------
    FacebenchError
        The store has no ``meta/subject``, or its values are neither integers nor strings;
        the message names ``option``, the labels-file option to pass instead.
    """
    if SUBJECT_KEY not in store.info.metadata_keys:
        raise FacebenchError(
            f"{store.info.path}: the store holds no subjects (no meta/{SUBJECT_KEY}); pass"
            f" {option} FILE with lines `<id> <subject>`"
        )
    values = store.read_metadata(SUBJECT_KEY)
    if values.ndim != 1 or values.dtype.kind not in "iuU":
        raise FacebenchError(
            f"{store.info.path}: Expected meta/{SUBJECT_KEY} of integers or strings, one per"
            f" item, but got dtype {values.dtype} and shape {values.shape}; pass {option} FILE"
        )
    return values


def encode_subjects(
    gallery: npt.NDArray[Any], probes: npt.NDArray[Any]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[Any]]:
    """Integer codes for both sides' subjects over one vocabulary.

    Returns
    -------
    gallery_codes, probe_codes : ndarray of int64
        Indices into ``names``; equal subjects get equal codes.
    names : ndarray
        The distinct subjects, sorted (integers when both sides are integers, else strings).
    """
    if not (gallery.dtype.kind in "iu" and probes.dtype.kind in "iu"):
        gallery, probes = gallery.astype(str), probes.astype(str)
    names, codes = np.unique(np.concatenate((gallery, probes)), return_inverse=True)
    codes = codes.ravel().astype(np.int64)
    return codes[: gallery.size], codes[gallery.size :], names


# ----------------------------------------------------------------------------- the run


class StoreRows:
    """:class:`facebench.metrics.identification.GalleryRows` read from a feature store.

    Every row read is checked by the store (finite, unit norm).
    """

    def __init__(self, store: FeatureStore) -> None:
        self._store = store

    @property
    def shape(self) -> tuple[int, int]:
        """(N, D)."""
        return self._store.info.n_items, self._store.info.dim

    def block(self, start: int, stop: int) -> npt.NDArray[np.float32]:
        """Rows ``start:stop`` as float32."""
        features: npt.NDArray[np.float32] = self._store.read_rows(np.arange(start, stop))[0]
        return features

    def take(self, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        """Rows ``rows`` as float32."""
        features: npt.NDArray[np.float32] = self._store.read_rows(rows)[0]
        return features


def torch_scorer(device: str) -> Scorer:
    """Matrix products with torch on ``device`` (float64), for ``--device cuda``.

    Not exercised on a GPU by the test suite. Products only screen pairs, so any rounding
    of the device's kernels leaves the results unchanged.
    """
    import torch

    target = torch.device(device)

    def prepare(block: npt.NDArray[np.float64]) -> Callable[[npt.NDArray[np.float64]], Any]:
        gallery_t = torch.from_numpy(np.ascontiguousarray(block)).to(target).T

        def product(probes: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
            probes_t = torch.from_numpy(np.ascontiguousarray(probes)).to(target)
            out: npt.NDArray[np.float64] = (probes_t @ gallery_t).cpu().numpy()
            return out

        return product

    return prepare


@dataclass
class _Group:
    """This process's place in a torchrun job and the collectives the search needs."""

    rank: int = 0
    world_size: int = 1
    device: str = "cpu"
    close: Callable[[], None] = field(default=lambda: None)

    def maximum(self, values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        if self.world_size == 1:
            return values
        import torch
        import torch.distributed as dist

        tensor = torch.from_numpy(values.copy()).to(self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        out: npt.NDArray[np.float64] = tensor.cpu().numpy()
        return out

    def gather(self, shard: SearchShard) -> list[SearchShard]:
        if self.world_size == 1:
            return [shard]
        import torch
        import torch.distributed as dist

        names = [f.name for f in dataclasses.fields(SearchShard)]
        gathered: dict[str, list[npt.NDArray[Any]]] = {}
        for name in names:
            tensor = torch.from_numpy(np.ascontiguousarray(getattr(shard, name))).to(self.device)
            parts = [torch.empty_like(tensor) for _ in range(self.world_size)]
            dist.all_gather(parts, tensor)
            gathered[name] = [p.cpu().numpy() for p in parts]
        return [
            SearchShard(**{name: gathered[name][r] for name in names})
            for r in range(self.world_size)
        ]


def _join_group(device: str) -> _Group:
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return _Group(device=device)
    import torch.distributed as dist

    if not dist.is_available():
        raise FacebenchError(
            "torchrun started several processes, but this torch has no torch.distributed"
        )
    from facebench.extract.distributed import ranks_from_env, shutdown

    ranks, rank_device = ranks_from_env("cuda" if device == "cuda" else "cpu")
    return _Group(ranks.rank, ranks.world_size, rank_device, shutdown)


def _store_entry(store: FeatureStore) -> dict[str, Any]:
    info = store.info
    return {
        "path": str(Path(info.path).resolve()),
        "content_sha256": info.content_sha256,
        "n_items": info.n_items,
        "dim": info.dim,
        "attributes": dict(info.attributes),
    }


def _subjects_of(
    store: FeatureStore, labels: Path | None, option: str
) -> tuple[npt.NDArray[Any], dict[str, Any]]:
    if labels is None:
        return store_subjects(store, option), {"source": f"store meta/{SUBJECT_KEY}"}
    values = read_labels(labels, store)
    return values, {
        "source": "labels file",
        "path": str(labels.resolve()),
        "sha256": file_sha256(labels),
    }


def _check_distinct(gallery: FeatureStore, probes: FeatureStore) -> None:
    same_file = Path(gallery.info.path).resolve() == Path(probes.info.path).resolve()
    if same_file or gallery.info.content_sha256 == probes.info.content_sha256:
        raise FacebenchError(
            f"{probes.info.path}: Expected probes and gallery in two different stores, but"
            f" both are {gallery.info.path}{'' if same_file else ' (same content)'}; a probe"
            " would find itself (leave-one-out search is not supported)"
        )
    probe_ids = set(probes.ids)
    shared = [item for item in gallery.ids if item in probe_ids]
    if shared:
        raise FacebenchError(
            f"{probes.info.path}: Expected no id in both stores, but {len(shared)} are also in"
            f" {gallery.info.path} (first: {', '.join(map(repr, shared[:5]))}); a probe must not"
            " be in the gallery"
        )


def _curve_ranks(n_gallery: int) -> list[int]:
    ranks = list(range(1, 21))
    decade = 10
    while True:
        for step in (5, 10, 20):
            if decade * step > n_gallery:
                return [r for r in ranks if r <= n_gallery]
            ranks.append(decade * step)
        decade *= 10


def _conventions(options: SearchOptions) -> dict[str, Any]:
    return {
        "score": (
            "dot product of the stores' unit-norm features in float64, accumulated in"
            " feature order (for float32 features: exact products, float64 sums in order)"
        ),
        "screening": (
            "matrix products only screen pairs; every pair within eps = 4 gamma_D |p| |g| of"
            " a decision is scored exactly, so chunk sizes, BLAS threads, the device and"
            " sharding change no number"
        ),
        "decision": "accept when score >= threshold",
        "tie_rule": (
            "mate rank = 1 + gallery items of other subjects with score >= the best mate"
            " score (ties rank the mate behind)"
        ),
        "top_k_order": "decreasing score, ties by increasing gallery row (store row numbers)",
        "top_subject": (
            "the probe's subject when its mate is at rank 1, else the subject of the first"
            " gallery row with the best score among other subjects"
        ),
        "cmc": "fraction of mated probes whose mate is within rank r",
        "tpir": (
            "a mated probe is identified when its mate is at rank 1 and scores >= the"
            " threshold set on the top gallery scores of non-mated probes"
        ),
        "tpir_rule": options.tpir_rule,
        "fpir_targets": list(options.fpir_targets),
        "threshold_inf": "null thresholds: +inf (accepts nothing)",
        "overlap": "probes and gallery are distinct stores with no id in common",
    }


def _per_probe(
    result: SearchResult,
    probes: FeatureStore,
    gallery: FeatureStore,
    names: npt.NDArray[Any],
) -> dict[str, npt.NDArray[Any]]:
    assert result.top_k_index is not None and result.top_k_score is not None
    gallery_ids = gallery.ids
    return {
        "probe_id": np.asarray(probes.ids, dtype=str),
        "probe_subject": names[result.probe_subjects].astype(str),
        "mated": result.mated,
        "mate_rank": result.mate_rank,
        "mate_score": result.mate_score,
        "top_score": result.top_score,
        "top_subject": names[result.top_subject].astype(str),
        "top_k_index": result.top_k_index,
        "top_k_score": result.top_k_score,
        "top_k_id": np.asarray(
            [[gallery_ids[int(j)] for j in row] for row in result.top_k_index], dtype=str
        ).reshape(result.top_k_index.shape),
    }


def _check_options(options: SearchOptions) -> None:
    if options.tpir_rule not in TPIR_RULES:
        raise FacebenchError(
            f"Expected a TPIR rule in {sorted(TPIR_RULES)}, but got {options.tpir_rule!r}"
        )
    if options.device not in DEVICES:
        raise FacebenchError(f"Expected --device in {list(DEVICES)}, but got {options.device!r}")
    if options.top_k < 1:
        raise FacebenchError(f"Expected --top-k >= 1, but got {options.top_k}")
    if options.chunk_size is not None and options.chunk_size < 1:
        raise FacebenchError(f"Expected --chunk-size >= 1, but got {options.chunk_size}")


def _no_timer(stage: str) -> None:
    """The default ``timer``: nothing."""


def run_search(
    gallery_path: str | Path,
    probes_path: str | Path,
    gallery_labels: str | Path | None = None,
    probe_labels: str | Path | None = None,
    options: SearchOptions | None = None,
    timer: Callable[[str], None] = _no_timer,
) -> SearchRun:
    """Search every probe of one store against the gallery store.

    Under torchrun each rank searches its shard of the gallery and every rank ends with
    the same, complete result; the caller writes it on rank 0 only.

    Parameters
    ----------
    gallery_path, probes_path : path
        Feature stores (distinct; no id in both).
    gallery_labels, probe_labels : path, optional
        Labels files; without one, the store's ``meta/subject``.
    options : SearchOptions, optional
    timer : callable, optional
        Called with a stage name when each stage ends (``read``, ``mates``, ``scan``,
        ``merge``, ``metrics``); the benchmark times stages with it.

    Returns
    -------
    SearchRun
        The report and the per-probe arrays: ``probe_id``, ``probe_subject``, ``mated``,
        ``mate_rank``, ``mate_score`` (NaN when non-mated), ``top_score``, ``top_subject``,
        ``top_k_index`` (gallery store rows, shape (Q, min(k, G))), ``top_k_score``,
        ``top_k_id``.

    Raises
    ------
    FacebenchError
        Missing or invalid stores, labels, overlapping stores, no mated probe.
    """
    options = options or SearchOptions()
    _check_options(options)
    if options.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise FacebenchError("--device cuda was asked for, but torch sees no CUDA device")
    paths = {"--gallery": Path(gallery_path), "--probes": Path(probes_path)}
    for option, path in paths.items():
        if not path.exists():
            raise FacebenchError(
                f"{path}: no such feature store ({option}); write one with `facebench import`"
                " or `facebench extract`"
            )
    with (
        FeatureStore.open(paths["--gallery"]) as gallery,
        FeatureStore.open(paths["--probes"]) as probes,
    ):
        if gallery.info.dim != probes.info.dim:
            raise FacebenchError(
                f"{probes.info.path}: Expected features of the gallery's dimension"
                f" {gallery.info.dim}, but got {probes.info.dim}; extract both with one model"
            )
        if gallery.info.n_items == 0 or probes.info.n_items == 0:
            empty = gallery if gallery.info.n_items == 0 else probes
            raise FacebenchError(f"{empty.info.path}: Expected items in the store, but it is empty")
        _check_distinct(gallery, probes)
        g_values, g_source = _subjects_of(
            gallery, None if gallery_labels is None else Path(gallery_labels), "--gallery-labels"
        )
        p_values, p_source = _subjects_of(
            probes, None if probe_labels is None else Path(probe_labels), "--probe-labels"
        )
        g_codes, p_codes, names = encode_subjects(g_values, p_values)
        del g_values, p_values
        if not np.isin(p_codes, g_codes).any():
            raise FacebenchError(
                f"{probes.info.path}: Expected at least one probe whose subject has gallery"
                " items, but no probe subject is in the gallery; check the labels"
            )
        probe_features = probes.read_all()[0]
        timer("read")
        group = _join_group(options.device)
        try:
            result = _search(gallery, probe_features, g_codes, p_codes, options, group, timer)
        finally:
            group.close()
        report = _report(
            result,
            (gallery, probes),
            {"gallery": g_source, "probes": p_source},
            int(np.unique(g_codes).size),
            options,
            group.world_size,
        )
        per_probe = _per_probe(result, probes, gallery, names)
        timer("metrics")
    return SearchRun(report, per_probe, group.rank, group.world_size)


def _search(
    gallery: FeatureStore,
    probe_features: npt.NDArray[np.float32],
    g_codes: npt.NDArray[np.int64],
    p_codes: npt.NDArray[np.int64],
    options: SearchOptions,
    group: _Group,
    timer: Callable[[str], None],
) -> SearchResult:
    rows = StoreRows(gallery)
    shard = shard_rows(gallery.info.n_items, group.rank, group.world_size)
    best_mate = group.maximum(best_mate_scores(probe_features, rows, p_codes, g_codes, rows=shard))
    timer("mates")
    scorer = torch_scorer(group.device) if options.device == "cuda" else None
    share = search_shard(
        probe_features,
        rows,
        p_codes,
        g_codes,
        best_mate,
        rows=shard,
        top_k=options.top_k,
        gallery_chunk=options.chunk_size,
        scorer=scorer,
    )
    timer("scan")
    merged = merge_shards(group.gather(share))
    result = finish_search(merged, best_mate, p_codes, g_codes)
    timer("merge")
    return result


def _report(
    result: SearchResult,
    stores: tuple[FeatureStore, FeatureStore],
    subjects: dict[str, Any],
    n_gallery_subjects: int,
    options: SearchOptions,
    world_size: int,
) -> SearchReport:
    warnings: list[str] = []
    ranks = _curve_ranks(result.n_gallery)
    curve = cmc(result, ranks=tuple(sorted(set(ranks) | set(CMC_RANKS))))
    points: list[dict[str, Any]] = []
    if result.n_nonmated:
        points = [
            dataclasses.asdict(p)
            for p in tpir_at_fpir(result, options.fpir_targets, options.tpir_rule)
        ]
    else:
        warnings.append(
            "no probe is non-mated (closed set): TPIR at FPIR needs non-mated probes and is"
            " not reported"
        )
    block = options.chunk_size or min(GALLERY_BLOCK, result.n_gallery)
    return SearchReport(
        gallery=_store_entry(stores[0]),
        probes=_store_entry(stores[1]),
        subjects=subjects,
        conventions=_conventions(options),
        counts={
            "n_gallery": result.n_gallery,
            "n_gallery_subjects": n_gallery_subjects,
            "n_probes": result.n_probes,
            "n_mated": result.n_mated,
            "n_nonmated": result.n_nonmated,
        },
        warnings=warnings,
        cmc={str(r): curve[r] for r in CMC_RANKS if r in curve},
        cmc_curve={"rank": ranks, "rate": [curve[r] for r in ranks]},
        tpir_at_fpir=points,
        top_k=options.top_k,
        execution={
            "chunk_size": block,
            "probe_chunk": max(1, BLOCK_SCORES // block),
            "world_size": world_size,
            "device": options.device,
            "note": "execution settings change no number in this report",
        },
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        facebench_version=__version__,
        label=options.label,
    )


def write_search(run: SearchRun, path: str | Path, overwrite: bool = False) -> tuple[Path, Path]:
    """Write ``path`` (the JSON report) and ``path``'s ``.scores.npz`` (per-probe arrays)
    as a pair (:func:`facebench.report.write_json_with_scores`): both checked first, both
    written to temporary files, the arrays renamed into place before the report."""
    import json

    text = json.dumps(run.report.to_dict(), indent=2, allow_nan=False) + "\n"
    return write_json_with_scores(text, path, run.per_probe, overwrite)


__all__: Sequence[str] = (
    "SUBJECT_KEY",
    "SearchOptions",
    "SearchReport",
    "SearchRun",
    "StoreRows",
    "encode_subjects",
    "read_labels",
    "run_search",
    "store_subjects",
    "torch_scorer",
    "write_search",
)
