"""What a facebench file holds: a feature store, a report, or a report's per-pair scores.

:func:`inspect_path` tells the three apart by content (the HDF5 signature, a zip archive,
a JSON object), not by name, and returns a summary dataclass; ``facebench inspect`` prints
it as a table or as JSON (:meth:`to_dict`).

A store's summary reads the attributes and the raw norms; the features are read in blocks
of rows (the store offers no read of the norms alone), never whole, and the content
checksum is not recomputed unless asked (``check=True``): then every row is read again,
its values checked as every read checks them, and the checksum of the blocks (the rule of
:mod:`facebench.store`) compared with the one recorded when the store was written.
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from facebench import store as store_module
from facebench.errors import FacebenchError, InputFormatError
from facebench.report import jsonable, load_report
from facebench.store import FeatureStore, block_digests
from facebench.store import content_sha256 as recompute_content_sha256

__all__ = [
    "INSPECT_KINDS",
    "ChecksumCheck",
    "NormSummary",
    "ReportSummary",
    "ScoresSummary",
    "StoreSummary",
    "inspect_path",
    "inspect_report",
    "inspect_scores",
    "inspect_store",
]

INSPECT_KINDS: dict[str, str] = {
    "store": "a feature store (HDF5) written by facebench import / extract",
    "report": "a report (JSON) written by facebench verify --json",
    "scores": "a report's per-pair scores (.scores.npz) written beside it",
}
"""What :func:`inspect_path` recognizes: kind -> one-line definition."""

N_SKIPPED_SHOWN = 5
READ_BYTES = 1 << 26  # feature bytes per read when only the norms are wanted
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")


def _to_dict(value: Any) -> dict[str, Any]:
    """``value``'s fields in plain JSON types, ``kind`` first."""
    data: dict[str, Any] = jsonable(dataclasses.asdict(value))
    return {"kind": data.pop("kind"), **data}


@dataclass(frozen=True)
class NormSummary:
    """Raw feature norms (before L2 normalization) of every row of a store.

    Attributes
    ----------
    n : int
        Rows summarized.
    min, median, mean, max : float or None
        Over the rows, computed in float64; None for an empty store.
    """

    n: int
    min: float | None
    median: float | None
    mean: float | None
    max: float | None

    @classmethod
    def of(cls, norms: npt.NDArray[np.floating[Any]]) -> NormSummary:
        """The summary of an array of norms."""
        values = np.asarray(norms, dtype=np.float64)
        if values.size == 0:
            return cls(0, None, None, None, None)
        return cls(
            n=int(values.size),
            min=float(values.min()),
            median=float(np.median(values)),
            mean=float(values.mean()),
            max=float(values.max()),
        )


@dataclass(frozen=True)
class ChecksumCheck:
    """The content checksum recomputed from every row (``inspect --check``).

    Attributes
    ----------
    recorded : str
        ``content_sha256`` as the store records it.
    computed : str
        The same rule applied to the rows as read now.
    ok : bool
        ``computed == recorded``: the ids, features and norms are those written.
    n_rows, n_blocks : int
        Rows read and blocks of ``BLOCK_ROWS`` rows hashed.
    """

    recorded: str
    computed: str
    ok: bool
    n_rows: int
    n_blocks: int


@dataclass(frozen=True)
class StoreSummary:
    """What a feature store holds (see :mod:`facebench.store` for the schema).

    Attributes
    ----------
    path : str
    n_items, dim : int
        Rows N and feature length D.
    has_flip : bool
        Mirrored-image features present.
    model, model_sha256 : str
        The model's name and the SHA-256 of its file ("" when unknown).
    preprocessing : dict
        The recorded preprocessing.
    created, facebench_version : str
    schema_version : int
    content_sha256 : str
        The content checksum recorded at write time (cited by every report).
    metadata_keys : list of str
        The names under ``meta/``.
    norms, norms_flip : NormSummary or None
        The raw norms (``norms_flip`` only with flips).
    n_skipped : int
        Items extraction skipped (``--skip-bad``).
    skipped : list of [id, reason]
        The first :data:`N_SKIPPED_SHOWN` of them, by id.
    check : ChecksumCheck or None
        Only when asked for.
    """

    path: str
    n_items: int
    dim: int
    has_flip: bool
    model: str
    model_sha256: str
    preprocessing: dict[str, Any]
    created: str
    facebench_version: str
    schema_version: int
    content_sha256: str
    metadata_keys: list[str]
    norms: NormSummary | None
    norms_flip: NormSummary | None
    n_skipped: int
    skipped: list[tuple[str, str]]
    check: ChecksumCheck | None = None
    kind: str = field(default="store", init=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; non-finite floats become ``null``."""
        return _to_dict(self)


@dataclass(frozen=True)
class ReportSummary:
    """A report's identity, conventions and headline numbers.

    Attributes
    ----------
    report_kind : str
        ``"fold"`` (LFW, YTF: accuracy by folds) or ``"split"`` (IJB: per split).
    store : dict
        ``path``, ``content_sha256`` and ``model`` of the store it was computed from.
    headline : dict
        Fold reports: ``accuracy`` {mean, std, stderr}, ``auc``, ``eer``, ``tar_at_far``
        [{far_target, tar, far_achieved, threshold, resolution_limited}]. Split reports:
        the report's ``summary`` (mean and std over splits of AUC, TAR@FAR, CMC, TPIR@FPIR).
    """

    path: str
    protocol: str
    label: str | None
    report_kind: str
    protocol_file: str
    protocol_sha256: str
    store: dict[str, Any]
    conventions: dict[str, Any]
    counts: dict[str, Any]
    warnings: list[str]
    n_pairs: int
    n_genuine: int
    headline: dict[str, Any]
    created: str
    facebench_version: str
    schema_version: int
    kind: str = field(default="report", init=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; non-finite floats become ``null``."""
        return _to_dict(self)


@dataclass(frozen=True)
class ScoresSummary:
    """A report's per-pair scores file (``report.scores.npz``).

    Attributes
    ----------
    arrays : dict
        name -> {dtype, shape} of every array in the file.
    n_pairs, n_genuine, n_impostor : int
    score_min, score_max : float or None
    groups : dict
        ``fold`` or ``split`` -> the distinct values, when the file has that array.
    """

    path: str
    arrays: dict[str, dict[str, Any]]
    n_pairs: int
    n_genuine: int
    n_impostor: int
    score_min: float | None
    score_max: float | None
    groups: dict[str, list[int]]
    kind: str = field(default="scores", init=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; non-finite floats become ``null``."""
        return _to_dict(self)


Summary = StoreSummary | ReportSummary | ScoresSummary


# ----------------------------------------------------------------------------- stores


def _row_blocks(n_rows: int, block_rows: int) -> Iterator[npt.NDArray[np.int64]]:
    for start in range(0, n_rows, block_rows):
        yield np.arange(start, min(start + block_rows, n_rows), dtype=np.int64)


def inspect_store(path: str | Path, *, check: bool = False) -> StoreSummary:
    """Summarize a feature store; with ``check``, recompute its content checksum.

    Every row that is read is checked as :class:`~facebench.store.FeatureStore` checks
    reads (finite, unit rows, finite non-negative norms).

    Raises
    ------
    facebench.errors.StoreError
        Not a store, an unknown schema version, a broken structure or a damaged row.
    """
    with FeatureStore.open(path) as store:
        info = store.info
        attributes = info.attributes
        flips = (False, True) if info.has_flip else (False,)
        norms: dict[bool, list[npt.NDArray[np.float32]]] = {flip: [] for flip in flips}
        digests: list[bytes] = []
        # A check hashes whole blocks of BLOCK_ROWS rows (the checksum's unit); otherwise
        # rows are read in blocks of about READ_BYTES of features.
        block_rows = (
            store_module.BLOCK_ROWS if check else max(1, READ_BYTES // max(1, 4 * info.dim))
        )
        for rows in _row_blocks(info.n_items, block_rows):
            read = {}
            for flip in flips:
                features, block_norms = store.read_rows(rows, flip=flip)
                norms[flip].append(block_norms)
                suffix = "_flip" if flip else ""
                read[f"features{suffix}"], read[f"norms{suffix}"] = features, block_norms
            if check:
                digests += block_digests(store.ids[rows[0] : rows[-1] + 1], read)
        skipped = sorted(store.skipped().items())
    summaries = {
        flip: NormSummary.of(np.concatenate(parts) if parts else np.empty(0))
        for flip, parts in norms.items()
    }
    result = None
    if check:
        computed = recompute_content_sha256(digests)
        result = ChecksumCheck(
            recorded=info.content_sha256,
            computed=computed,
            ok=computed == info.content_sha256,
            n_rows=info.n_items,
            n_blocks=len(digests),
        )
    return StoreSummary(
        path=str(info.path),
        n_items=info.n_items,
        dim=info.dim,
        has_flip=info.has_flip,
        model=str(attributes.get("model", "")),
        model_sha256=str(attributes.get("model_sha256", "")),
        preprocessing=dict(attributes.get("preprocessing") or {}),
        created=str(attributes.get("created", "")),
        facebench_version=str(attributes.get("facebench_version", "")),
        schema_version=int(attributes.get("schema_version", 0)),
        content_sha256=info.content_sha256,
        metadata_keys=list(info.metadata_keys),
        norms=summaries[False],
        norms_flip=summaries.get(True),
        n_skipped=info.n_skipped,
        skipped=skipped[:N_SKIPPED_SHOWN],
        check=result,
    )


# ----------------------------------------------------------------------------- reports


def _fold_headline(data: dict[str, Any]) -> dict[str, Any]:
    accuracy = data.get("accuracy") or {}
    return {
        "accuracy": {k: accuracy.get(k) for k in ("mean", "std", "stderr")},
        "auc": data.get("auc"),
        "eer": data.get("eer"),
        "tar_at_far": [
            {
                k: point.get(k)
                for k in ("far_target", "tar", "far_achieved", "threshold", "resolution_limited")
            }
            for point in data.get("tar_at_far") or []
        ],
    }


def inspect_report(path: str | Path) -> ReportSummary:
    """Summarize a report JSON (``facebench verify --json``).

    Raises
    ------
    facebench.errors.ReportError
        Not JSON, not a facebench report, or an unknown schema version.
    """
    data = load_report(path)
    is_fold = "accuracy" in data
    store = data.get("store") or {}
    return ReportSummary(
        path=str(path),
        protocol=str(data["protocol"]),
        label=data.get("label"),
        report_kind="fold" if is_fold else "split",
        protocol_file=str(data.get("protocol_file", "")),
        protocol_sha256=str(data.get("protocol_sha256", "")),
        store={
            "path": store.get("path"),
            "content_sha256": store.get("content_sha256"),
            "model": (store.get("attributes") or {}).get("model"),
        },
        conventions=dict(data.get("conventions") or {}),
        counts=dict(data.get("counts") or {}),
        warnings=list(data.get("warnings") or []),
        n_pairs=int(data.get("n_pairs") or 0),
        n_genuine=int(data.get("n_genuine") or 0),
        headline=_fold_headline(data) if is_fold else dict(data.get("summary") or {}),
        created=str(data.get("created", "")),
        facebench_version=str(data.get("facebench_version", "")),
        schema_version=int(data["schema_version"]),
    )


# ----------------------------------------------------------------------------- scores


def inspect_scores(path: str | Path) -> ScoresSummary:
    """Summarize a per-pair scores file (``report.scores.npz``).

    Raises
    ------
    facebench.errors.InputFormatError
        Not a readable .npz, or without the ``score`` and ``is_same`` arrays.
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        raise InputFormatError(
            f"{path}: Expected a scores file (.npz) written by `facebench verify --json`, but"
            f" it cannot be read ({err})"
        ) from None
    if "score" not in arrays or "is_same" not in arrays:
        raise InputFormatError(
            f"{path}: Expected the arrays `score` and `is_same` of a scores file written by"
            f" `facebench verify --json`, but got {sorted(arrays)}"
        )
    score = np.asarray(arrays["score"], dtype=np.float64)
    is_same = np.asarray(arrays["is_same"], dtype=bool)
    if score.shape != is_same.shape or score.ndim != 1:
        raise InputFormatError(
            f"{path}: Expected `score` and `is_same` of one shape (n_pairs,), but got"
            f" {score.shape} and {is_same.shape}"
        )
    n_genuine = int(is_same.sum())
    return ScoresSummary(
        path=str(path),
        arrays={
            name: {"dtype": str(value.dtype), "shape": list(value.shape)}
            for name, value in arrays.items()
        },
        n_pairs=int(score.size),
        n_genuine=n_genuine,
        n_impostor=int(score.size) - n_genuine,
        score_min=float(score.min()) if score.size else None,
        score_max=float(score.max()) if score.size else None,
        groups={
            name: [int(v) for v in np.unique(arrays[name])]
            for name in ("fold", "split")
            if name in arrays
        },
    )


# ----------------------------------------------------------------------------- dispatch


def detect_kind(path: str | Path) -> str:
    """``"store"``, ``"report"`` or ``"scores"``, from the file's first bytes.

    Raises
    ------
    facebench.errors.InputFormatError
        No such file, a folder, or a file that is none of the three.
    """
    path = Path(path)
    if not path.exists():
        raise InputFormatError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise InputFormatError(
            f"{path}: Expected a file (a store, a report or a scores file), but got a folder"
        )
    try:
        with open(path, "rb") as handle:
            head = handle.read(512)
    except OSError as err:
        raise InputFormatError(f"{path}: cannot read the file ({err.strerror})") from None
    if head.startswith(_HDF5_SIGNATURE):
        return "store"
    if head.startswith(_ZIP_SIGNATURES):
        return "scores"
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        return "report"
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        return "store"  # the store's own error names what is wrong with it
    if suffix == ".json":
        return "report"
    raise InputFormatError(
        f"{path}: Expected a feature store (HDF5), a report (JSON) or a scores file (.npz),"
        f" but the file is none of them (it starts with {head[:8]!r}); give a file written"
        " by `facebench import`, `extract` or `verify --json`"
    )


def inspect_path(path: str | Path, *, check: bool = False) -> Summary:
    """Summarize a store, a report or a scores file, whichever ``path`` holds.

    ``check`` recomputes a store's content checksum (ignored for the other kinds).

    Raises
    ------
    facebench.errors.FacebenchError
        The file is none of the three, or is damaged, or has an unknown schema version.
    """
    kind = detect_kind(path)
    if kind == "store":
        return inspect_store(path, check=check)
    if kind == "report":
        return inspect_report(path)
    return inspect_scores(path)


def to_json(summary: Summary) -> str:
    """The summary as indented JSON (strict: no NaN or Infinity literals)."""
    try:
        return json.dumps(summary.to_dict(), indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as err:  # a report holding values JSON cannot
        raise FacebenchError(f"{summary.path}: cannot write the summary as JSON ({err})") from None
