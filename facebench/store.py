"""The feature store: one HDF5 file of L2-normalized features, the only module that touches h5py.

Schema, version 1 (``SCHEMA_VERSION``); docs/store.md is the user-facing copy.

Root datasets, all with N rows in the same order:

``ids``
    Variable-length UTF-8 strings, shape (N,), unique. A relative image path with ``/``
    separators (``Aaron_Eckhart/Aaron_Eckhart_0001.jpg``) or an item key that a protocol
    defines (``frame/28337_00300.png#8484``). An id is non-empty and holds no line break,
    no backslash and no NUL character, and does not start with ``/``.
``features``
    float32, shape (N, D), D >= 1; every row has unit L2 norm (within ``UNIT_NORM_TOLERANCE``).
``norms``
    float32, shape (N,): the raw L2 norm of each feature before normalization (finite, >= 0).
``features_flip``, ``norms_flip`` (optional, both or neither)
    The same for the horizontally mirrored image.
``meta/<key>`` (optional group)
    Per-item values, shape (N, ...), numbers or variable-length UTF-8 strings (detector
    scores, landmarks, ...).
``skipped_ids``, ``skipped_reasons`` (optional, both or neither)
    Variable-length UTF-8 strings, shape (S,): items that extraction was asked to skip
    (``--skip-bad``) and why (``"<path>: truncated JPEG"``). Skipped ids are not rows; they
    are distinct from each other and from ``ids``. Verify refuses pairs that need them unless
    told otherwise.
``_block_sha256``
    Fixed-length 32-byte strings, shape (ceil(N / BLOCK_ROWS),): the digest of each block of
    ``BLOCK_ROWS`` rows (see below).

Every dataset above is chunked and growable along its first axis (``maxshape=(None, ...)``),
chunks of about 1 MiB of rows (at least one row), uncompressed unless ``compression`` is
``"lzf"`` or ``"gzip"``. Compression applies to numeric datasets only: HDF5 filters do not
compress the heap where variable-length strings live.

Root attributes: ``schema_version`` (int), ``model`` (str), ``model_sha256`` (64 hex digits or
``""``), ``preprocessing`` (JSON text of an object), ``created`` (ISO 8601 UTC, e.g.
``2024-05-01T12:00:00Z``), ``facebench_version`` (str) and ``content_sha256`` (hex).

Content checksum. Rows are cut into blocks of ``BLOCK_ROWS`` rows (the last one may be
shorter). A block's digest is the SHA-256 of, in order: each id's UTF-8 bytes followed by
``b"\\n"``; the block's features as little-endian float32 C-order bytes; its norms (float32
LE); then its ``features_flip`` and ``norms_flip`` when the store has them. ``content_sha256``
is the hex SHA-256 of the concatenated block digests (``sha256(b"")`` for an empty store).
Metadata is not covered. The checksum is computed when rows are written or appended (an
append re-hashes only the last partial block and the new ones), never on read, so it does
not depend on how rows were batched into write and append calls.

Validation. Writing validates everything before the file is touched. Opening checks the
structure (schema version, datasets, dtypes, shapes, unique and well-formed ids; with
``read_ids=False`` the ids when first read, see :func:`open_for_lookups`); the values
(finite, unit rows, finite non-negative norms) are checked on every row that is read.

Crash safety and concurrent readers. A store under its final name is always complete: a
new store is written to a temporary file beside it and renamed into place; an append is
copy-on-write (the store is copied to a temporary file, the rows are appended to the copy,
which is flushed and renamed over the store). A reader that opened the store before the
rename keeps reading the old file (the open file outlives the rename), one that opens it
afterwards reads the new one: no reader ever sees a half-appended store, and a kill -9 at
any point of a write leaves the previous store as it was. Appends to stores of one folder
are serialized by an advisory lock on the folder (``flock``), so that two appenders cannot
lose each other's rows. HDF5's SWMR mode is not used: it cannot create datasets in SWMR
mode, readers must opt in, and a writer killed mid-write can still leave a damaged file.

HDF5 crashes the process (SIGSEGV while closing the file) when the operating system
refuses one of its writes (disk full, ``ulimit -f``). The library therefore writes through
a Python file object that records the first refused write and accepts the rest
(:class:`_LatchedFile`); once HDF5 has closed the file, the recorded error is raised (an
:class:`~facebench.fileio.OutputWriteError`) and the temporary file removed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import math
import mmap
import os
import re
import shutil
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from facebench import __version__, cache
from facebench.errors import FacebenchError, InputFormatError, MissingItemsError, StoreError
from facebench.fileio import (
    OutputWriteError,
    atomic_path,
    check_free_space,
    check_writable,
    write_error,
)

SCHEMA_VERSION: int = 1
READABLE_SCHEMA_VERSIONS: tuple[int, ...] = (1,)
BLOCK_ROWS: int = 65536
UNIT_NORM_TOLERANCE: float = 1e-3
CHUNK_BYTES: int = 1 << 20
COMPRESSIONS: dict[str, str | None] = {"none": None, "lzf": "lzf", "gzip": "gzip"}

_STR = h5py.string_dtype("utf-8")
_DIGEST = np.dtype("S32")
_ATTRIBUTES = (
    "model",
    "model_sha256",
    "preprocessing",
    "created",
    "facebench_version",
    "content_sha256",
)
_LAYOUT: dict[str, tuple[str, int]] = {  # dataset: (type, rank)
    "ids": ("str", 1),
    "features": ("float32", 2),
    "norms": ("float32", 1),
    "features_flip": ("float32", 2),
    "norms_flip": ("float32", 1),
    "_block_sha256": ("32-byte digest", 1),
    "skipped_ids": ("str", 1),
    "skipped_reasons": ("str", 1),
}
_OPTIONAL = ("features_flip", "norms_flip", "skipped_ids", "skipped_reasons")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_RUN_SPAN_CHUNKS = 8  # a contiguous read spans at most this many chunks (bounded memory)


@dataclass(frozen=True)
class StoreInfo:
    """What a store holds, without its rows.

    Attributes
    ----------
    path : str
        The store's file path.
    n_items, dim : int
        N (rows) and D (feature dimension).
    has_flip : bool
        Whether ``features_flip`` and ``norms_flip`` are present.
    content_sha256 : str
        The content checksum recorded in the store (hex; see the module docstring).
    attributes : dict
        ``model``, ``model_sha256``, ``preprocessing`` (parsed dict), ``created``,
        ``facebench_version``, ``schema_version`` and ``content_sha256``.
    metadata_keys : tuple of str
        The names under ``meta/``, sorted.
    n_skipped : int
        Items skipped at extraction (``skipped_ids``), 0 when none.
    """

    path: str
    n_items: int
    dim: int
    has_flip: bool
    content_sha256: str
    attributes: dict[str, Any] = field(repr=False)
    metadata_keys: tuple[str, ...]
    n_skipped: int = 0


# ----------------------------------------------------------------------------- validation


def id_problem(item: object) -> str | None:
    """Return why ``item`` is not a valid id (a phrase for an error message), or None."""
    if not isinstance(item, str):
        return f"Expected an id of type str, but got {type(item).__name__} {item!r}"
    if not item:
        return "Expected a non-empty id, but got an empty one"
    if "\n" in item or "\r" in item:
        return f"Expected an id without line breaks, but got {item!r}"
    if "\\" in item:
        return f"Expected '/' separators, but got a backslash in {item!r}; use '/' separators"
    if item.startswith("/"):
        return f"Expected a relative id, but got {item!r}; remove the leading '/'"
    if "\x00" in item:
        return f"Expected an id without NUL characters, but got {item!r}"
    return None


def _ids_are_clean(ids: Sequence[str]) -> bool:
    """A fast, conservative check of the id rules on all ids at once (False: look closer)."""
    try:
        text = "\n".join(ids)
    except TypeError:
        return False
    return (
        text.count("\n") == len(ids) - 1  # no line break inside an id
        and not any(bad in text for bad in ("\\", "\r", "\x00", "\n\n", "\n/"))
        and text[:1] not in ("", "\n", "/")
        and not text.endswith("\n")
    )


def _check_ids(ids: Sequence[str], where: str) -> None:
    """Check the id rules and uniqueness (:func:`_distinct`; the {id: row} map is built
    only when a lookup needs it)."""
    if not (_ids_are_clean(ids) and _distinct(ids)):
        _index_ids(ids, where)  # raises, naming the first bad id and its rows


def _joined_sha256(ids: Sequence[str]) -> str:
    """The hex sha256 of ``ids`` joined by line breaks, UTF-8 encoded."""
    return hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()


def _distinct(ids: Sequence[str]) -> bool:
    """Whether no id repeats. Distinct hashes prove it (equal strings hash equally): one
    sort of 64-bit hashes, a third of the time of a set of 469,375 ids; a repeated hash (a
    repeated id, or two ids that collide) is settled by a set."""
    hashes = np.fromiter(map(hash, ids), dtype=np.int64, count=len(ids))
    hashes.sort()
    if not bool(np.any(hashes[1:] == hashes[:-1])):
        return True
    return len(set(ids)) == len(ids)


def _index_ids(ids: Sequence[str], where: str) -> dict[str, int]:
    """Check the id rules and uniqueness; return {id: row}. Errors name ``where`` and rows."""
    if _ids_are_clean(ids):
        fast = dict(zip(ids, range(len(ids)), strict=True))
        if len(fast) == len(ids):
            return fast
    index: dict[str, int] = {}
    for row, item in enumerate(ids):
        problem = id_problem(item)
        if problem is not None:
            raise StoreError(f"{where}, row {row}: {problem}")
        first = index.setdefault(item, row)
        if first != row:
            raise StoreError(
                f"{where}: Expected unique ids, but {item!r} appears at rows {first} and {row};"
                " remove the duplicate"
            )
    return index


def _first_bad_row(features: np.ndarray, norms: np.ndarray) -> tuple[int, str] | None:
    """Return (row, problem) of the first row that is not finite and unit-norm, or None."""
    # float32 sums of squares: within 1e-6 of float64's for unit rows, far inside the
    # tolerance; NaN and inf propagate into them.
    squared = np.einsum("ij,ij->i", features, features).astype(np.float64)
    ok = np.abs(np.sqrt(squared) - 1.0) <= UNIT_NORM_TOLERANCE
    ok &= np.isfinite(norms) & (norms >= 0)
    if ok.all():
        return None
    row = int(np.flatnonzero(~ok)[0])
    if not np.isfinite(features[row]).all():
        return row, "Expected finite feature values, but got NaN or inf"
    if not (np.isfinite(norms[row]) and norms[row] >= 0):
        return row, f"Expected a finite raw norm >= 0, but got {norms[row]}"
    return row, (
        f"Expected a unit-norm feature (within {UNIT_NORM_TOLERANCE}), but got norm"
        f" {math.sqrt(squared[row]):.6g}"
    )


def _as_float32(array: object, name: str, ndim: int, n_rows: int, dim: int | None) -> np.ndarray:
    """``array`` as float32 of rank ``ndim`` with ``n_rows`` rows (and ``dim`` columns)."""
    values = np.asarray(array)
    if values.dtype.kind not in "biuf":
        raise StoreError(f"Expected {name} of a real dtype, but got dtype {values.dtype}")
    expected = (n_rows,) if ndim == 1 else (n_rows, dim if dim is not None else "D")
    if (
        values.ndim != ndim
        or values.shape[0] != n_rows
        or (ndim == 2 and dim is not None and values.shape[1] != dim)
    ):
        raise StoreError(
            f"Expected {name} of shape {expected} (one row per id), but got shape {values.shape}"
        )
    if ndim == 2 and values.shape[1] < 1:
        raise StoreError(f"Expected {name} with at least one column, but got {values.shape}")
    return np.ascontiguousarray(values, dtype="<f4")


def _check_rows(ids: Sequence[str], rows: dict[str, np.ndarray]) -> None:
    """Raise StoreError on the first row to write that is not finite, unit-norm data."""
    for kind in ("", "_flip"):
        if "features" + kind not in rows:
            continue
        bad = _first_bad_row(rows["features" + kind], rows["norms" + kind])
        if bad is not None:
            row, problem = bad
            raise StoreError(
                f"features{kind}, row {row} (id {ids[row]!r}): {problem}; fix that row"
                " (facebench.store.normalize_rows makes unit rows and raw norms)"
            )


def _prepare_rows(
    ids: Sequence[str],
    features: np.ndarray,
    norms: np.ndarray,
    features_flip: np.ndarray | None,
    norms_flip: np.ndarray | None,
    dim: int | None = None,
) -> tuple[list[str], dict[str, np.ndarray]]:
    """Validate the rows to write; return the ids and {dataset name: float32 array}."""
    if isinstance(ids, (str, bytes)):
        raise StoreError(f"Expected ids as a sequence of str, but got {type(ids).__name__}")
    id_list = list(ids)
    n_rows = len(id_list)
    _check_ids(id_list, "ids")
    if (features_flip is None) != (norms_flip is None):
        raise StoreError(
            "Expected features_flip and norms_flip together, but got only "
            + ("features_flip" if norms_flip is None else "norms_flip")
            + "; pass both or neither"
        )
    rows = {"features": _as_float32(features, "features", 2, n_rows, dim)}
    dim = rows["features"].shape[1]
    rows["norms"] = _as_float32(norms, "norms", 1, n_rows, None)
    if features_flip is not None and norms_flip is not None:
        rows["features_flip"] = _as_float32(features_flip, "features_flip", 2, n_rows, dim)
        rows["norms_flip"] = _as_float32(norms_flip, "norms_flip", 1, n_rows, None)
    _check_rows(id_list, rows)
    return id_list, rows


def _prepare_metadata(metadata: Mapping[str, Any] | None, n_rows: int) -> dict[str, np.ndarray]:
    prepared: dict[str, np.ndarray] = {}
    for key, value in (metadata or {}).items():
        if not isinstance(key, str) or not key or "/" in key or key == ".":
            raise StoreError(f"Expected a metadata key without '/', but got {key!r}")
        array = np.asarray(value)
        if array.dtype.kind == "O" and all(isinstance(v, str) for v in array.flat):
            array = array.astype(str)
        if array.dtype.kind not in "biufU":
            raise StoreError(
                f"Expected metadata {key!r} of numbers or str, but got dtype {array.dtype}"
            )
        if array.ndim < 1 or array.shape[0] != n_rows or 0 in array.shape[1:]:
            raise StoreError(
                f"Expected metadata {key!r} with {n_rows} rows (one per id), but got shape"
                f" {array.shape}"
            )
        if array.dtype.kind == "U" and any("\x00" in v for v in array.flat):
            raise StoreError(f"Expected metadata {key!r} without NUL characters")
        prepared[key] = array
    return prepared


# ----------------------------------------------------------------------------- checksum


def block_digests(ids: Sequence[str], rows: Mapping[str, np.ndarray]) -> list[bytes]:
    """SHA-256 digest of each block of ``BLOCK_ROWS`` rows, counted from the first row given.

    ``rows`` holds ``features`` and ``norms`` (and ``features_flip``, ``norms_flip``).
    """
    order = [name for name in ("features", "norms", "features_flip", "norms_flip") if name in rows]
    digests = []
    for start in range(0, len(ids), BLOCK_ROWS):
        stop = start + BLOCK_ROWS
        digest = hashlib.sha256("".join(f"{i}\n" for i in ids[start:stop]).encode("utf-8"))
        for name in order:
            digest.update(np.ascontiguousarray(rows[name][start:stop], dtype="<f4").data)
        digests.append(digest.digest())
    return digests


def content_sha256(digests: Sequence[bytes]) -> str:
    """The store's ``content_sha256``: hex SHA-256 of the concatenated block digests.

    ``digests`` are the blocks' digests in row order (:func:`block_digests` of all rows, or
    :meth:`FeatureStore.read_block_digests`); ``sha256(b"")`` for an empty store.
    """
    return hashlib.sha256(b"".join(digests)).hexdigest()


# ----------------------------------------------------------------------------- writing


@contextlib.contextmanager
def _h5_errors(path: str | os.PathLike[str], action: str) -> Iterator[None]:
    """Turn h5py's exceptions into :class:`StoreError` naming ``path``.

    An operating-system error while writing (disk full, read-only, ...) becomes an
    :class:`~facebench.fileio.OutputWriteError` with the errno's meaning and remedy.
    """
    try:
        yield
    except FacebenchError:
        raise
    except OSError as err:
        if action in ("write", "append to") and err.errno is not None:  # disk full, read-only
            raise OutputWriteError(write_error(path, err, "the store"), err.errno, path) from err
        reason = err.strerror if err.errno is not None and err.strerror else err
        raise StoreError(f"{path}: cannot {action} the store ({reason})") from err
    except (KeyError, RuntimeError, UnicodeDecodeError) as err:
        raise StoreError(f"{path}: cannot {action} the store ({err})") from err


class _LatchedFile:
    """A file for h5py's file-object driver that never lets HDF5 see a refused write.

    HDF5 crashes the process while closing a file after the operating system refused one
    of its writes (ENOSPC, EFBIG). Here the first refused write or truncate is recorded in
    :attr:`error`, and that call and every later one report success; HDF5 finishes and
    closes normally, and the caller raises :attr:`error`. The file's content is then
    garbage: it is a temporary file, removed by :func:`~facebench.fileio.atomic_path`.
    """

    def __init__(self, raw: io.FileIO) -> None:
        self._raw = raw
        self.error: OSError | None = None

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def readinto(self, buffer: Any) -> int:
        return self._raw.readinto(buffer) or 0

    def read(self, size: int = -1) -> bytes:
        return self._raw.read(size) or b""

    def write(self, data: Any) -> int:
        size = memoryview(data).nbytes
        if self.error is None:
            try:
                view = memoryview(data).cast("B")
                while view:  # a raw write may be partial
                    written = self._raw.write(view)
                    if not written:
                        raise OSError(errno.EIO, "the file accepted no bytes")
                    view = view[written:]
            except OSError as err:
                self.error = err
        return size

    def truncate(self, size: int | None = None) -> int:
        if self.error is None:
            try:
                return self._raw.truncate(size)
            except OSError as err:
                self.error = err
        return self._raw.tell() if size is None else size

    def flush(self) -> None:
        return None  # unbuffered: every write went to the operating system


@contextlib.contextmanager
def _hdf5_file(path: Path, mode: str) -> Iterator[h5py.File]:
    """Open ``path`` for writing (``"w"``, ``"r+"``) through a :class:`_LatchedFile`.

    Raises the first write error the operating system reported, once HDF5 has closed the
    file (an OSError; callers turn it into :class:`~facebench.fileio.OutputWriteError`).
    """
    with open(path, "r+b" if mode == "r+" else "w+b", buffering=0) as raw:
        latched = _LatchedFile(raw)
        with h5py.File(latched, mode) as handle:
            yield handle
        if latched.error is not None:
            raise latched.error


def _growable(
    group: h5py.Group, name: str, data: np.ndarray, compression: str | None
) -> h5py.Dataset:
    is_str = data.dtype.kind in "UO"
    row_bytes = (16 if is_str else data.dtype.itemsize) * math.prod(data.shape[1:])
    chunk_rows = max(1, CHUNK_BYTES // max(1, row_bytes))
    return group.create_dataset(
        name,
        data=data.astype(object) if is_str else data,
        dtype=_STR if is_str else data.dtype,
        maxshape=(None, *data.shape[1:]),
        chunks=(chunk_rows, *data.shape[1:]),
        compression=None if is_str else compression,
    )


def _prepare_skipped(
    skipped: Sequence[tuple[str, str]] | None, ids: Sequence[str]
) -> list[tuple[str, str]]:
    """Check the skipped (id, reason) pairs: well-formed, distinct, not among the rows."""
    result = [(str(i), str(r)) for i, r in (skipped or ())]
    known = set(ids)
    seen: set[str] = set()
    for item, reason in result:
        problem = id_problem(item)
        if problem is not None:
            raise StoreError(f"skipped ids: {problem}")
        if item in known or item in seen:
            raise StoreError(
                f"Expected skipped ids distinct from each other and from the stored ids, but"
                f" {item!r} appears twice"
            )
        if not reason:
            raise StoreError(f"Expected a reason for skipped id {item!r}, but got ''")
        seen.add(item)
    return result


def _digest_array(digests: Sequence[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(digests), dtype=_DIGEST)


def create_store(
    path: str | Path,
    ids: Sequence[str],
    features: np.ndarray,
    norms: np.ndarray,
    *,
    features_flip: np.ndarray | None = None,
    norms_flip: np.ndarray | None = None,
    metadata: Mapping[str, np.ndarray] | None = None,
    model: str,
    model_sha256: str = "",
    preprocessing: Mapping[str, Any] | None = None,
    compression: str | None = None,
    overwrite: bool = False,
    skipped: Sequence[tuple[str, str]] | None = None,
) -> StoreInfo:
    """Write a new store atomically (temporary file beside ``path``, renamed into place).

    Parameters
    ----------
    ids : sequence of str, length N
        Unique item ids (see the module docstring for the rules).
    features : array (N, D)
        Unit-norm rows, any real dtype castable to float32 (use :func:`normalize_rows`).
    norms : array (N,)
        Raw L2 norms before normalization.
    features_flip, norms_flip : arrays (N, D) and (N,), optional
        The mirrored images' features and raw norms; both or neither.
    metadata : mapping of str to array (N, ...), optional
        Per-item numbers or strings, stored under ``meta/``.
    model, model_sha256, preprocessing
        Provenance attributes: a model name, the hex SHA-256 of its weights (or ``""``), and a
        JSON-serializable description of the preprocessing.
    compression : {None, "lzf", "gzip"}
        Filter for the numeric datasets.
    overwrite : bool
        Replace an existing file at ``path``.
    skipped : sequence of (id, reason), optional
        Items extraction skipped (``--skip-bad``), stored as ``skipped_ids`` and
        ``skipped_reasons``.

    Returns
    -------
    StoreInfo
        The written store's description.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``overwrite`` is false (checked first).
    StoreError
        Any input breaks the schema; nothing is written.
    """
    target = check_writable(path, overwrite)
    id_list, rows = _prepare_rows(ids, features, norms, features_flip, norms_flip)
    meta = _prepare_metadata(metadata, len(id_list))
    if compression not in COMPRESSIONS.values():
        raise StoreError(f"Expected compression None, 'lzf' or 'gzip', but got {compression!r}")
    if not isinstance(model, str):
        raise StoreError(f"Expected model of type str, but got {type(model).__name__}")
    if model_sha256 and not _HEX64.fullmatch(model_sha256):
        raise StoreError(f"Expected model_sha256 of 64 hex digits or '', but got {model_sha256!r}")
    try:
        preprocessing_json = json.dumps(dict(preprocessing or {}), sort_keys=True)
    except (TypeError, ValueError) as err:
        raise StoreError(f"Expected JSON-serializable preprocessing, but got {err}") from None
    skipped_list = _prepare_skipped(skipped, id_list)
    digests = block_digests(id_list, rows)
    with atomic_path(target, overwrite) as tmp, _h5_errors(target, "write"):
        with _hdf5_file(tmp, "w") as handle:
            _growable(handle, "ids", np.array(id_list, dtype=object), None)
            for name, values in rows.items():
                _growable(handle, name, values, compression)
            _growable(handle, "_block_sha256", _digest_array(digests), None)
            if skipped_list:
                _growable(
                    handle, "skipped_ids", np.array([i for i, _ in skipped_list], object), None
                )
                reasons = np.array([r for _, r in skipped_list], dtype=object)
                _growable(handle, "skipped_reasons", reasons, None)
            if meta:
                group = handle.create_group("meta")
                for key, values in meta.items():
                    _growable(group, key, values, compression)
            handle.attrs["schema_version"] = np.int64(SCHEMA_VERSION)
            handle.attrs["model"] = model
            handle.attrs["model_sha256"] = model_sha256.lower()
            handle.attrs["preprocessing"] = preprocessing_json
            handle.attrs["created"] = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            handle.attrs["facebench_version"] = __version__
            handle.attrs["content_sha256"] = content_sha256(digests)
            info = _read_info(handle, str(target))
    return info


@contextlib.contextmanager
def _appenders_lock(target: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock (``flock``) on the folder of ``target``.

    Appends are copy-on-write: two appenders copying the same store would each rename their
    own copy into place, and one's rows would be lost. The lock serializes them. It is taken
    on the folder, so no lock file is left beside the store; readers take no lock. Where
    the folder cannot be locked (a file system without ``flock``), appends go unlocked.
    """
    try:
        descriptor = os.open(target.parent if str(target.parent) else ".", os.O_RDONLY)
    except OSError:
        yield
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def append_to_store(
    path: str | Path,
    ids: Sequence[str],
    features: np.ndarray,
    norms: np.ndarray,
    *,
    features_flip: np.ndarray | None = None,
    norms_flip: np.ndarray | None = None,
    metadata: Mapping[str, np.ndarray] | None = None,
) -> StoreInfo:
    """Append rows to an existing store and update its content checksum (copy-on-write).

    The new rows follow the rules of :func:`create_store` and must match the store: same D,
    flips present exactly when the store has them, the same metadata keys and kinds, and ids
    not already in the store. Everything is checked before anything is written. The store
    is then copied to a temporary file beside it, the rows are appended to the copy, and the
    copy is flushed and renamed over the store: readers that have the store open keep
    reading the old file, later ones read the new one, and an error or a kill at any point
    leaves the store as it was. An append therefore copies the whole file (and needs the
    free space for it): gather rows and append them in few calls. Appends to stores of one
    folder are serialized by a lock on the folder.

    Raises
    ------
    StoreError
        The store is invalid or the rows do not fit it.
    OutputWriteError
        The copy cannot be written (disk full, read-only, ...); the store is unchanged.
    """
    target = Path(path)
    with _appenders_lock(target):
        with FeatureStore.open(target) as store:
            info = store.info
            known = store._index
            meta_kinds = {key: store._meta_dataset(key).dtype for key in info.metadata_keys}
        id_list, rows, meta = _check_append(
            target,
            info,
            known,
            meta_kinds,
            ids,
            features,
            norms,
            features_flip,
            norms_flip,
            metadata,
        )
        new_bytes = sum(a.nbytes for a in (*rows.values(), *meta.values()))
        check_free_space(target, target.stat().st_size + new_bytes + (1 << 20))
        with atomic_path(target, overwrite=True) as tmp, _h5_errors(target, "append to"):
            shutil.copyfile(target, tmp)
            shutil.copymode(target, tmp)
            with _hdf5_file(tmp, "r+") as handle:
                _append_rows(handle, info, id_list, rows, meta)
                appended = _read_info(handle, str(target))
    return appended


def _check_append(
    path: Path,
    info: StoreInfo,
    known: Mapping[str, int],
    meta_kinds: Mapping[str, np.dtype[Any]],
    ids: Sequence[str],
    features: np.ndarray,
    norms: np.ndarray,
    features_flip: np.ndarray | None,
    norms_flip: np.ndarray | None,
    metadata: Mapping[str, np.ndarray] | None,
) -> tuple[list[str], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Validate rows to append to the store ``info``; return ids, rows and metadata."""
    if (features_flip is not None) != info.has_flip:
        raise StoreError(
            f"{path}: Expected {'mirrored' if info.has_flip else 'no mirrored'} features to"
            f" append, but got {'none' if features_flip is None else 'some'}; the store"
            f" {'has' if info.has_flip else 'has no'} features_flip"
        )
    id_list, rows = _prepare_rows(ids, features, norms, features_flip, norms_flip, info.dim)
    clashes = [item for item in id_list if item in known]
    if clashes:
        raise StoreError(
            f"{path}: Expected new ids, but {len(clashes)} are already in the store (first:"
            f" {', '.join(map(repr, clashes[:5]))}); drop them or write a new store"
        )
    meta = _prepare_metadata(metadata, len(id_list))
    if set(meta) != set(info.metadata_keys):
        raise StoreError(
            f"{path}: Expected metadata keys {sorted(info.metadata_keys)}, but got {sorted(meta)}"
        )
    for key, values in meta.items():
        stored = meta_kinds[key]
        is_str = h5py.check_string_dtype(stored) is not None
        fits = (
            values.dtype.kind == "U"
            if is_str
            else (values.dtype.kind != "U" and np.can_cast(values.dtype, stored, "same_kind"))
        )
        if not fits:
            raise StoreError(
                f"{path}: Expected metadata {key!r} values that fit dtype"
                f" {'str' if is_str else stored}, but got {values.dtype}"
            )
    return id_list, rows, meta


def _append_rows(
    handle: h5py.File,
    info: StoreInfo,
    id_list: list[str],
    rows: Mapping[str, np.ndarray],
    meta: Mapping[str, np.ndarray],
) -> None:
    """Append validated rows to an open store (the temporary copy) and its checksum."""
    start = info.n_items // BLOCK_ROWS * BLOCK_ROWS
    # Only the last, partial block and the new rows need hashing.
    tail_ids = [*handle["ids"].asstr()[start:].tolist(), *id_list]
    tail = {name: np.concatenate([handle[name][start:], new]) for name, new in rows.items()}
    old_digests = np.asarray(handle["_block_sha256"][...])
    digests = np.concatenate(
        [old_digests[: start // BLOCK_ROWS], _digest_array(block_digests(tail_ids, tail))]
    )
    columns = [(handle["ids"], np.array(id_list, dtype=object))]
    columns += [(handle[name], new) for name, new in rows.items()]
    columns += [
        (handle["meta"][key], new.astype(object) if new.dtype.kind == "U" else new)
        for key, new in meta.items()
    ]
    columns.append((handle["_block_sha256"], digests[len(old_digests) :]))
    for dataset, new in columns:
        old_rows = dataset.shape[0]
        dataset.resize(old_rows + len(new), axis=0)
        dataset[old_rows:] = new
    handle["_block_sha256"][: len(old_digests)] = digests[: len(old_digests)]
    handle.attrs["content_sha256"] = hashlib.sha256(digests.tobytes()).hexdigest()


# ----------------------------------------------------------------------------- reading


def _attr_str(handle: h5py.File, name: str, path: str) -> str:
    if name not in handle.attrs:
        raise StoreError(
            f"{path}: Expected a root attribute {name!r}, but it is missing; re-create the"
            " store with facebench"
        )
    value = handle.attrs[name]
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _plain(value: object) -> object:
    """A numpy scalar as a Python value, for messages."""
    return value.item() if isinstance(value, np.generic) else value


def _kind(node: h5py.Dataset) -> str:
    if node.dtype == _DIGEST:
        return "32-byte digest"
    string = h5py.check_string_dtype(node.dtype)
    if string is not None:
        return "str" if string.length is None else f"fixed-length {string.length}-byte str"
    return "float32" if node.dtype.kind == "f" and node.dtype.itemsize == 4 else str(node.dtype)


def _read_info(handle: h5py.File, path: str) -> StoreInfo:
    """Check the structure (not the values) of an open store and describe it."""
    version = handle.attrs.get("schema_version")
    if version is None:
        raise StoreError(
            f"{path}: Expected a facebench feature store, but the file has no schema_version"
            " attribute; create stores with `facebench import` or `facebench extract`"
        )
    if not isinstance(version, (int, np.integer)) or int(version) not in READABLE_SCHEMA_VERSIONS:
        raise StoreError(
            f"{path}: Expected store schema_version in {list(READABLE_SCHEMA_VERSIONS)} (the"
            f" versions facebench {__version__} reads), but got {_plain(version)!r}; upgrade"
            " facebench"
        )
    attributes: dict[str, Any] = {name: _attr_str(handle, name, path) for name in _ATTRIBUTES}
    try:
        attributes["preprocessing"] = json.loads(attributes["preprocessing"])
    except json.JSONDecodeError:
        attributes["preprocessing"] = None
    if not isinstance(attributes["preprocessing"], dict):
        raise StoreError(f"{path}: Expected the preprocessing attribute to be a JSON object")
    attributes["schema_version"] = int(version)
    nodes: dict[str, h5py.Dataset] = {}
    for name, (kind, rank) in _LAYOUT.items():
        node = handle.get(name)
        if node is None and name in _OPTIONAL:
            continue
        if not isinstance(node, h5py.Dataset) or node.ndim != rank or _kind(node) != kind:
            got = f"{_kind(node)} of shape {node.shape}" if isinstance(node, h5py.Dataset) else node
            raise StoreError(
                f"{path}: Expected a dataset {name!r} of {kind} and rank {rank}, but got {got};"
                " the store is damaged or not a facebench store, re-create it"
            )
        nodes[name] = node
    if ("features_flip" in nodes) != ("norms_flip" in nodes):
        raise StoreError(f"{path}: Expected features_flip and norms_flip both or neither")
    n_skipped = 0
    if ("skipped_ids" in nodes) != ("skipped_reasons" in nodes) or (
        "skipped_ids" in nodes and nodes["skipped_ids"].shape != nodes["skipped_reasons"].shape
    ):
        raise StoreError(
            f"{path}: Expected skipped_ids and skipped_reasons both or neither, of one length;"
            " the store is damaged, re-create it"
        )
    if "skipped_ids" in nodes:
        n_skipped = int(nodes.pop("skipped_ids").shape[0])
        nodes.pop("skipped_reasons")
    n_items, dim = nodes["features"].shape
    expected: dict[str, tuple[int, ...]] = {name: (n_items,) for name in _LAYOUT}
    expected.update(features=(n_items, dim), features_flip=(n_items, dim))
    expected["_block_sha256"] = (-(-n_items // BLOCK_ROWS),)
    shapes = {name: node.shape for name, node in nodes.items()}
    meta = handle.get("meta")
    keys = tuple(sorted(meta)) if isinstance(meta, h5py.Group) else ()
    for key in keys:
        node = meta[key]
        shapes[f"meta/{key}"] = node.shape[:1] if isinstance(node, h5py.Dataset) else ()
        expected[f"meta/{key}"] = (n_items,)
    for name, shape in shapes.items():
        if shape != expected[name]:
            raise StoreError(
                f"{path}: Expected {name} of shape {expected[name]} (features are {n_items} x"
                f" {dim}), but got {shape}; the store is damaged, re-create it"
            )
    return StoreInfo(
        path=path,
        n_items=n_items,
        dim=dim,
        has_flip="features_flip" in nodes,
        content_sha256=attributes["content_sha256"],
        attributes=attributes,
        metadata_keys=keys,
        n_skipped=n_skipped,
    )


def normalize_rows(raw: np.ndarray, *, source: str = "features") -> tuple[np.ndarray, np.ndarray]:
    """L2-normalize each row; return the unit rows and the raw norms.

    Parameters
    ----------
    raw : array (N, D), any real dtype
        Raw features; computed in float64.
    source : str
        Where ``raw`` came from (a file name), for error messages.

    Returns
    -------
    features : float32 array (N, D)
        ``raw[i] / ||raw[i]||_2``.
    norms : float32 array (N,)
        ``||raw[i]||_2``.

    Raises
    ------
    StoreError
        ``raw`` is not a real 2-D array, or a row has a NaN/inf value or a zero norm (the
        error names ``source`` and the row index).
    """
    values = np.asarray(raw)
    if values.dtype.kind not in "biuf" or values.ndim != 2 or values.shape[1] < 1:
        raise StoreError(
            f"{source}: Expected raw features of a real dtype and shape (N, D), but got dtype"
            f" {values.dtype} and shape {values.shape}"
        )
    as64 = values.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        norms = np.sqrt(np.einsum("ij,ij->i", as64, as64))
        bad = ~np.isfinite(norms) | (norms == 0) | ~np.isfinite(norms.astype(np.float32))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        got = "NaN or inf values" if not np.isfinite(as64[row]).all() else f"norm {norms[row]:.6g}"
        raise StoreError(
            f"{source}, row {row}: Expected a finite feature with a nonzero, float32-finite"
            f" norm, but got {got}; fix or drop that item"
        )
    return (as64 / norms[:, None]).astype(np.float32), norms.astype(np.float32)


class FeatureStore:
    """An open feature store (read side); see the module docstring for the schema.

    ``FeatureStore.open(path)`` checks the structure cheaply: a known ``schema_version``, the
    required datasets with their dtypes and ranks, shapes that agree, unique well-formed ids
    (when read: at open, or at first use with ``read_ids=False``).
    The values (finite, unit rows within ``UNIT_NORM_TOLERANCE``, finite non-negative norms)
    are checked on every row that :meth:`read_all`, :meth:`read_rows` or :meth:`read_ids`
    returns; an error names the store, the row and the id. Use as a context manager, or call
    :meth:`close`.

    Attributes
    ----------
    info : StoreInfo
        What the store holds.
    """

    def __init__(self, handle: h5py.File, info: StoreInfo) -> None:
        self._handle = handle
        self.info = info
        self._ids: list[str] | None = None
        self._ids_digest: str | None = None
        self._index_map: dict[str, int] | None = None
        self._layouts: dict[str, tuple[int, np.ndarray] | None] = {}

    @classmethod
    def open(cls, path: str | Path, *, read_ids: bool = True) -> FeatureStore:
        """Open the store at ``path`` for reading.

        ``read_ids=False`` leaves the ids to be read and checked when first needed
        (:attr:`ids`), or not at all when :meth:`ids_sha256` is answered from the cache
        and the lookups ask for the store's own ids in order (:meth:`index_of`).

        Raises
        ------
        StoreError
            No such file, not an HDF5 file, an unknown schema version, or a broken structure.
        """
        target = Path(path)
        if not target.is_file():
            what = "a directory" if target.is_dir() else "no such store"
            raise StoreError(
                f"{target}: Expected a feature store file, but got {what}; check the path or"
                " create the store with `facebench import` or `facebench extract`"
            )
        with _h5_errors(target, "open"):
            with open(target, "rb"):  # an unreadable file says why (h5py would say "not HDF5")
                pass
            if not h5py.is_hdf5(target):
                raise StoreError(
                    f"{target}: Expected an HDF5 feature store, but the file is not HDF5;"
                    " create the store with `facebench import` or `facebench extract`"
                )
            handle = h5py.File(target, "r")
        try:
            with _h5_errors(target, "read"):
                store = cls(handle, _read_info(handle, str(target)))
            if read_ids:
                store.ids  # noqa: B018  (read and checked now)
            return store
        except BaseException:
            handle.close()
            raise

    @property
    def ids(self) -> list[str]:
        """All ids, in row order (read and checked, unique and well-formed, on first use)."""
        if self._ids is None:
            with _h5_errors(self.info.path, "read"):
                ids = [item.decode("utf-8") for item in self._handle["ids"][...]]
            _check_ids(ids, f"{self.info.path}: ids")
            self._ids = ids
        return self._ids

    def ids_sha256(self) -> str:
        """The sha256 of the ids joined by line breaks (UTF-8): kept in facebench's cache
        under the file's stat signature (``facebench.cache.kept_digest``: device, inode,
        size, modification and status-change times), so that a later open of the unchanged
        file knows it without reading the ids; else computed from :attr:`ids` (read and
        checked) and kept."""
        if self._ids_digest is None:
            before = self._status()
            digest = None if before is None else cache.kept_digest("store-ids", self._path, before)
            if digest is None:
                digest = _joined_sha256(self.ids)
                after = self._status()
                if before is not None and after is not None:
                    cache.keep_digest("store-ids", self._path, before, after, digest)
            self._ids_digest = digest
        return self._ids_digest

    @property
    def _path(self) -> Path:
        return Path(self.info.path)

    def _status(self) -> os.stat_result | None:
        """``fstat`` of the file HDF5 has open (not of the path's file now), or None."""
        try:
            fd = self._handle.id.get_vfd_handle()
            return os.fstat(fd) if isinstance(fd, int) and fd >= 0 else None
        except (OSError, TypeError, ValueError):
            return None

    def close(self) -> None:
        """Close the file; the store cannot be read afterwards."""
        self._handle.close()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FeatureStore({self.info.path!r}, n_items={self.info.n_items}, dim={self.info.dim})"

    @property
    def _index(self) -> dict[str, int]:
        """{id: row}, built on first use (the ids were checked unique when read)."""
        if self._index_map is None:
            self._index_map = dict(zip(self.ids, range(len(self.ids)), strict=True))
        return self._index_map

    def index_of(self, ids: Sequence[str]) -> np.ndarray:
        """Row positions (int64, in request order) of ``ids``.

        Raises
        ------
        MissingItemsError
            Some ids are not in the store; the message gives their count and the first five.
        """
        if len(ids) == self.info.n_items and self._own_ids_in_order(ids):
            # The protocol lists the store's own ids in order (a store extracted for it):
            # a comparison of the lists (or of their digests) instead of a lookup per id.
            return np.arange(len(ids), dtype=np.int64)
        index = self._index
        missing = [item for item in ids if item not in index]
        if missing:
            first = ", ".join(repr(item) for item in missing[:5])
            raise MissingItemsError(
                f"{self.info.path}: Expected every requested id in the store, but {len(missing)}"
                f" of {len(ids)} are missing (first: {first}); extract them, or check that the"
                " store was built for this protocol"
            )
        return np.fromiter((index[item] for item in ids), dtype=np.int64, count=len(ids))

    def _own_ids_in_order(self, ids: Sequence[str]) -> bool:
        """Whether ``ids`` (as many as the store's) are the store's ids in row order. With
        the ids not read and their digest known (:meth:`ids_sha256`), by the digest: the
        store's ids hold no line break, so equal joined texts of as many ids are equal
        lists."""
        if self._ids is None and self._ids_digest is not None:
            try:
                if _joined_sha256(ids) == self._ids_digest:
                    return True
            except (TypeError, UnicodeEncodeError):
                pass
        return list(ids) == self.ids

    def read_all(self, flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """All rows: features float32 (N, D) and raw norms float32 (N,); ``flip`` for mirrors."""
        names = self._names(flip)
        with _h5_errors(self.info.path, "read"):
            features = self._handle[names[0]][...].astype(np.float32, copy=False)
            norms = self._handle[names[1]][...].astype(np.float32, copy=False)
        self._check(np.arange(self.info.n_items), features, norms, names[0])
        return features, norms

    def read_rows(self, rows: np.ndarray, flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Features (len(rows), D) and norms (len(rows),) of ``rows``, in the order given.

        Rows may repeat and come in any order. Only the rows asked for are read: the distinct
        rows are sorted and read in contiguous runs (joined across gaps of less than a chunk,
        each at most a few chunks long), then put in the requested order.
        """
        positions = np.asarray(rows)
        n_items = self.info.n_items
        if positions.ndim != 1 or (positions.size and positions.dtype.kind not in "iu"):
            raise StoreError(
                f"Expected a 1-D array of row numbers, but got {positions.dtype}"
                f" of shape {positions.shape}"
            )
        if positions.size and (int(positions.min()) < 0 or int(positions.max()) >= n_items):
            raise StoreError(
                f"{self.info.path}: Expected row numbers in [0, {n_items}), but got"
                f" {positions.min()}..{positions.max()}"
            )
        positions = positions.astype(np.int64, copy=False)
        inverse: np.ndarray | None = None
        if positions.size > 1 and bool(np.all(positions[1:] > positions[:-1])):
            unique = positions  # ascending and distinct already: no sort, no reordering copy
        else:
            unique, inverse = np.unique(positions, return_inverse=True)
        names = self._names(flip)
        if inverse is None and unique.size and int(unique[-1]) - int(unique[0]) + 1 == unique.size:
            mapped = self._mapped(names, int(unique[0]), unique.size)
            if mapped is not None:
                self._check(unique, *mapped, names[0])
                return mapped
        features = np.empty((unique.size, self.info.dim), dtype=np.float32)
        norms = np.empty(unique.size, dtype=np.float32)
        dataset = self._handle[names[0]]
        chunk_rows = dataset.chunks[0] if dataset.chunks else BLOCK_ROWS
        with _h5_errors(self.info.path, "read"):
            norms_dataset = self._handle[names[1]]
            for start, stop in _runs(unique, chunk_rows):
                first, last = int(unique[start]), int(unique[stop - 1]) + 1
                if last - first == stop - start:  # every row of the run: read in place
                    dataset.read_direct(features, np.s_[first:last], np.s_[start:stop])
                    norms_dataset.read_direct(norms, np.s_[first:last], np.s_[start:stop])
                    continue
                picked = unique[start:stop] - first
                features[start:stop] = dataset[first:last][picked]
                norms[start:stop] = norms_dataset[first:last][picked]
        self._check(unique, features, norms, names[0])
        if inverse is None:
            return features, norms
        return features[inverse.ravel()], norms[inverse.ravel()]

    def _mapped(
        self, names: tuple[str, str], first: int, n: int
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Rows ``first .. first + n - 1`` from read-only memory maps of the file's bytes,
        and their norms; None unless the features are stored unfiltered as little-endian
        float32 in whole-row chunks (how facebench writes a store; :meth:`_layout`). When
        the rows' chunks lie back to back in the file the result is one map, no copy: the
        pages come from the operating system's file cache and go when the array does;
        otherwise the maps of each back-to-back stretch are copied into one array."""
        layout = self._layout(names[0])
        if layout is None:
            return None
        chunk_rows, offsets = layout
        dim = self.info.dim
        row_bytes = 4 * dim
        c0, c1 = first // chunk_rows, (first + n - 1) // chunk_rows + 1
        gaps = np.flatnonzero(np.diff(offsets[c0:c1]) != chunk_rows * row_bytes) + c0 + 1
        with _h5_errors(self.info.path, "read"):
            pieces = []
            for a, b in zip([c0, *gaps.tolist()], [*gaps.tolist(), c1], strict=True):
                lo, hi = max(first, a * chunk_rows), min(first + n, b * chunk_rows)
                start = int(offsets[a]) + (lo - a * chunk_rows) * row_bytes
                pieces.append(self._map_bytes(start, (hi - lo, dim)))
            features = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
            norms = np.empty(n, dtype=np.float32)
            self._handle[names[1]].read_direct(norms, np.s_[first : first + n])
        return features, norms

    def _map_bytes(self, offset: int, shape: tuple[int, int]) -> np.ndarray:
        """A read-only float32 array over bytes ``offset ..`` of the file HDF5 has open.

        Mapped through HDF5's own file descriptor, never by path: a store replaced under
        the same name while open (an append renames a new file into place) is still read
        from the file whose layout was read."""
        fd = self._handle.id.get_vfd_handle()
        aligned = offset - offset % mmap.ALLOCATIONGRANULARITY
        length = offset - aligned + shape[0] * shape[1] * 4
        mapped = mmap.mmap(fd, length, offset=aligned, access=mmap.ACCESS_READ)
        return np.ndarray(shape, dtype="<f4", buffer=mapped, offset=offset - aligned)

    def _layout(self, name: str) -> tuple[int, np.ndarray] | None:
        """(rows per chunk, file offset of each chunk) of dataset ``name`` when its rows can
        be mapped: no filters, little-endian float32, contiguous or chunked by whole rows,
        every chunk allocated inside the file; else None (read through h5py)."""
        if name in self._layouts:
            return self._layouts[name]
        found: tuple[int, np.ndarray] | None = None
        dataset = self._handle[name]
        dim = self.info.dim
        try:
            fd = self._handle.id.get_vfd_handle()  # HDF5's own file (not the path's now)
            if not isinstance(fd, int) or fd < 0:
                raise TypeError("not a file descriptor")
            size = os.fstat(fd).st_size
            plain = (
                dataset.dtype.str == "<f4"
                and dataset.ndim == 2
                and dataset.shape[1] == dim
                and dataset.shape[0] > 0
                and dataset.id.get_create_plist().get_nfilters() == 0
            )
            if plain and dataset.chunks is None:
                offset = dataset.id.get_offset()
                if offset is not None:
                    found = (dataset.shape[0], np.array([int(offset)], dtype=np.int64))
            elif plain and dataset.chunks is not None and dataset.chunks[1] == dim:
                chunk_rows = dataset.chunks[0]
                infos = [
                    dataset.id.get_chunk_info_by_coord((i * chunk_rows, 0))
                    for i in range(-(-dataset.shape[0] // chunk_rows))
                ]
                if all(i.size == chunk_rows * dim * 4 and i.byte_offset is not None for i in infos):
                    offsets = np.array([int(i.byte_offset) for i in infos], dtype=np.int64)
                    found = (chunk_rows, offsets)
            if found is not None:
                chunk_bytes = found[0] * dim * 4
                if int(found[1].min()) < 0 or int(found[1].max()) + chunk_bytes > size:
                    found = None  # a damaged file: h5py's read says what is wrong
        except (KeyError, OSError, RuntimeError, ValueError, TypeError):
            found = None  # unallocated chunks, an old HDF5 library: read through h5py
        self._layouts[name] = found
        return found

    def read_ids(self, ids: Sequence[str], flip: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Features and norms of ``ids``, in the order given (see :meth:`index_of`)."""
        return self.read_rows(self.index_of(ids), flip=flip)

    def read_norms(self, start: int = 0, stop: int | None = None, flip: bool = False) -> np.ndarray:
        """Raw norms float32 of rows ``start`` to ``stop - 1`` (``stop`` None: to the end).

        Reads the norms alone (no features); each is checked finite and >= 0.

        Raises
        ------
        StoreError
            Bounds outside [0, N], no flips for ``flip``, or a damaged norm (named by row
            and id).
        """
        n_items = self.info.n_items
        stop = n_items if stop is None else stop
        if not (0 <= start <= stop <= n_items):
            raise StoreError(
                f"{self.info.path}: Expected 0 <= start <= stop <= {n_items}, but got start"
                f" {start} and stop {stop}"
            )
        name = self._names(flip)[1]
        with _h5_errors(self.info.path, "read"):
            norms = np.asarray(self._handle[name][start:stop], dtype=np.float32)
        bad = np.flatnonzero(~(np.isfinite(norms) & (norms >= 0)))
        if bad.size:
            row = start + int(bad[0])
            raise StoreError(
                f"{self.info.path}: {name} row {row} (id {self.ids[row]!r}): Expected a finite"
                f" raw norm >= 0, but got {norms[bad[0]]}; the store is damaged or was not"
                " written by facebench, re-create it"
            )
        return norms

    def read_block_digests(self) -> list[bytes]:
        """The recorded digest of each block of ``BLOCK_ROWS`` rows (``_block_sha256``).

        ``content_sha256(store.read_block_digests())`` equals ``store.info.content_sha256``
        for a store written by facebench; to verify the rows themselves, recompute the
        digests with :func:`block_digests` from what :meth:`read_rows` returns.
        """
        if not self._handle:
            raise StoreError(f"{self.info.path}: the store is closed; open it again")
        with _h5_errors(self.info.path, "read"):
            data = np.ascontiguousarray(self._handle["_block_sha256"][...]).tobytes()
        # Not bytes(element): numpy strips the trailing NUL bytes of an S32 element.
        return [data[at : at + _DIGEST.itemsize] for at in range(0, len(data), _DIGEST.itemsize)]

    def skipped(self) -> dict[str, str]:
        """The items extraction skipped (``--skip-bad``): id -> reason (empty when none)."""
        if not self.info.n_skipped:
            return {}
        with _h5_errors(self.info.path, "read"):
            ids = self._handle["skipped_ids"].asstr()[...].tolist()
            reasons = self._handle["skipped_reasons"].asstr()[...].tolist()
        return dict(zip(ids, reasons, strict=True))

    def read_metadata(self, key: str) -> np.ndarray:
        """The values of ``meta/<key>`` (strings as a ``str`` array)."""
        dataset = self._meta_dataset(key)
        with _h5_errors(self.info.path, "read"):
            if h5py.check_string_dtype(dataset.dtype) is not None:
                return np.asarray(dataset.asstr()[...].tolist(), dtype=str)
            return np.asarray(dataset[...])

    def _meta_dataset(self, key: str) -> h5py.Dataset:
        if key not in self.info.metadata_keys:
            raise StoreError(
                f"{self.info.path}: Expected a metadata key in {list(self.info.metadata_keys)},"
                f" but got {key!r}"
            )
        return self._handle["meta"][key]

    def _names(self, flip: bool) -> tuple[str, str]:
        if not self._handle:
            raise StoreError(f"{self.info.path}: the store is closed; open it again")
        if flip and not self.info.has_flip:
            raise StoreError(
                f"{self.info.path}: Expected mirrored features (features_flip), but the store has"
                " none; extract with --flip, or evaluate without flips"
            )
        return ("features_flip", "norms_flip") if flip else ("features", "norms")

    def _check(self, rows: np.ndarray, features: np.ndarray, norms: np.ndarray, name: str) -> None:
        bad = _first_bad_row(features, norms)
        if bad is not None:
            at, problem = bad
            row = int(rows[at])
            raise StoreError(
                f"{self.info.path}: {name} row {row} (id {self.ids[row]!r}): {problem}; the"
                " store is damaged or was not written by facebench, re-create it"
            )


def open_for_lookups(path: str | Path) -> FeatureStore:
    """:meth:`FeatureStore.open` with the ids' digest known (:meth:`FeatureStore.ids_sha256`):
    when the cache holds it for the unchanged file, the ids are not read, and a protocol that
    lists the store's own ids in order is located by the digest alone; else the ids are read
    and checked here, as by a plain open."""
    store = FeatureStore.open(path, read_ids=False)
    try:
        store.ids_sha256()
    except BaseException:
        store.close()
        raise
    return store


class StoreOpening:
    """A store opened in a thread (:func:`open_for_lookups`: its structure checked, its ids'
    digest found in the cache or its ids read and checked) while the caller does other
    work, such as parsing a protocol.

    ``with StoreOpening(path) as opening: ...; store = opening.take()``. :meth:`take`
    waits for the opening and returns the open store, or raises its error; the caller then
    owns the store and closes it. A store never taken is closed when the block ends, and
    its opening's error, if any, is dropped: the block's own error (a bad protocol found
    while the store was opening) is the one to fix first. HDF5 reads variable-length
    strings without Python's lock, so ids that must be read are read meanwhile (IJB-C:
    0.13 s).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="facebench-open")
        self._future: Future[FeatureStore] | None = pool.submit(open_for_lookups, self.path)
        pool.shutdown(wait=False)

    def _result(self) -> FeatureStore:
        """The opening's store or error, forgotten here (the taker owns the store)."""
        if self._future is None:
            raise RuntimeError(f"{self.path}: the store opened in the background was taken")
        future, self._future = self._future, None
        try:
            return future.result()
        finally:
            del future  # holds the store (and its id list) while it lives

    def take(self) -> FeatureStore:
        """The open store, once (the opening's error raised here)."""
        return self._result()

    def __enter__(self) -> StoreOpening:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._future is None:
            return
        try:
            store = self._result()
        except Exception:  # of no use now; see the class docstring
            return
        store.close()


def _runs(unique: np.ndarray, chunk_rows: int) -> Iterator[tuple[int, int]]:
    """Split sorted distinct rows into [start, stop) index runs that are cheap to read at once.

    Neighbours closer than a chunk join a run (the chunk is read anyway); a run spans at most
    ``_RUN_SPAN_CHUNKS`` chunks of rows so that memory stays bounded.
    """
    if unique.size == 0:
        return
    max_span = chunk_rows * _RUN_SPAN_CHUNKS
    start = 0
    for index in np.flatnonzero(np.diff(unique) > chunk_rows) + 1:
        yield from _split_span(unique, start, int(index), max_span)
        start = int(index)
    yield from _split_span(unique, start, unique.size, max_span)


def _split_span(
    unique: np.ndarray, start: int, stop: int, max_span: int
) -> Iterator[tuple[int, int]]:
    while start < stop:
        limit = int(unique[start]) + max_span
        end = start + int(np.searchsorted(unique[start:stop], limit, side="left"))
        yield start, end
        start = end


# ----------------------------------------------------------------------------- importing


def read_array(path: str | Path, key: str | None = None) -> np.ndarray:
    """Read one array from a .npy, .npz or .h5/.hdf5 file.

    Parameters
    ----------
    path : path
        The file; its suffix picks the format.
    key : str, optional
        The array's name in a .npz (optional when it holds exactly one array) or the dataset
        path in an HDF5 file (required). Not allowed for .npy.

    Raises
    ------
    InputFormatError
        Unknown suffix, unreadable file, a missing or ambiguous key (the message lists the
        available ones).
    """
    source = Path(path)
    suffix = source.suffix.lower()
    if suffix not in (".npy", ".npz", ".h5", ".hdf5"):
        raise InputFormatError(
            f"{source}: Expected a .npy, .npz, .h5 or .hdf5 file, but got suffix {suffix!r}"
        )
    if suffix == ".npy" and key is not None:
        raise InputFormatError(f"{source}: Expected no --key for a .npy file, but got {key!r}")
    try:
        if suffix in (".h5", ".hdf5"):
            return _read_hdf5_array(source, key)
        if suffix == ".npy":
            return np.load(source, allow_pickle=False)
        with np.load(source, allow_pickle=False) as archive:
            names = list(archive.files)
            if key is None and len(names) == 1:
                key = names[0]
            if key is None or key not in names:
                wanted = "an array name with --key" if key is None else f"array {key!r}"
                raise InputFormatError(
                    f"{source}: Expected {wanted}, but the file holds {names}; pass --key NAME"
                )
            return archive[key]
    except FacebenchError:
        raise
    except Exception as err:
        # A damaged .npy/.npz/.h5 raises OSError, ValueError, EOFError, zipfile.BadZipFile,
        # RuntimeError (h5py), NotImplementedError (an unsupported zip method) or
        # tokenize.TokenError (a broken .npy header): all mean "not a readable array".
        raise InputFormatError(
            f"{source}: cannot read the array ({type(err).__name__}: {err}); check that the"
            " file is complete and of the format its suffix says"
        ) from err


def _read_hdf5_array(source: Path, key: str | None) -> np.ndarray:
    if not h5py.is_hdf5(source):
        raise InputFormatError(f"{source}: Expected an HDF5 file, but the file is not HDF5")
    with h5py.File(source, "r") as handle:
        names: list[str] = []
        handle.visititems(
            lambda name, node: names.append(name) if isinstance(node, h5py.Dataset) else None
        )
        node = handle.get(key) if key is not None else None
        if not isinstance(node, h5py.Dataset):
            wanted = "a dataset path with --key" if key is None else f"a dataset {key!r}"
            raise InputFormatError(
                f"{source}: Expected {wanted}, but the file holds datasets {names}; pass --key PATH"
            )
        return np.asarray(node[...])
