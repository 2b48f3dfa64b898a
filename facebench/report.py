"""Reports: one JSON shape for every protocol (PROTOCOLS.md, "Reports"), and their tables.

A fold report (LFW, YTF, generic pairs) holds, at the top level: ``schema_version``,
``protocol``, ``protocol_file``, ``protocol_sha256``, ``store`` {path, content_sha256,
attributes}, ``conventions`` (every rule and option used), ``counts`` (what the parser read
and the official counts), ``warnings``, ``n_pairs``, ``n_genuine``, ``n_impostor``,
``accuracy`` {mean, std, stderr, folds, thresholds, rule, std_kind}, ``auc``, ``eer``,
``eer_threshold``, ``tar_at_far`` [{far_target, tar, threshold, far_achieved,
n_impostors_at_or_above, resolution_limited, rule}], ``roc`` {far, tar, threshold}
(downsampled for plotting only: every point is a true operating point, no number in the
report is read from it), ``created``, ``facebench_version``. Non-finite thresholds are
written as ``null`` (+inf accepts nothing, -inf accepts everything; ``threshold_inf`` in
``conventions`` says which). Beside ``report.json`` verify writes ``report.scores.npz``
with every pair's ids, score, label and fold.

The two files land together (:func:`write_report`): the per-pair file is renamed into place
first and the report last, so a report under its final name always goes with the per-pair
file beside it, and a per-pair file without its report is an interrupted write's leftover
that the next write replaces without ``--overwrite`` (:func:`check_report_writable`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import json
import math
import os
import zipfile
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO

import numpy as np
import numpy.typing as npt

from facebench.columns import LazyColumn
from facebench.errors import ReportError
from facebench.fileio import atomic_paths, check_writable, output_errors
from facebench.metrics import OperatingPoint

REPORT_SCHEMA_VERSION = 1


def json_float(value: float | None) -> float | None:
    """A float for JSON: non-finite values and None become ``null``."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars made Python numbers and non-finite floats ``None``."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return json_float(float(value))
    return value


@dataclass(frozen=True)
class Accuracy:
    """k-fold accuracy as reported: per fold and summarized."""

    mean: float
    std: float
    stderr: float
    folds: list[float]
    thresholds: list[float]
    rule: str
    std_kind: str


@dataclass(frozen=True)
class FoldReport:
    """The report of a fold protocol (LFW, YTF, generic pairs)."""

    protocol: str
    protocol_file: str
    protocol_sha256: str
    store: dict[str, Any]
    conventions: dict[str, Any]
    counts: dict[str, Any]
    warnings: list[str]
    n_pairs: int
    n_genuine: int
    n_impostor: int
    accuracy: Accuracy
    auc: float
    eer: float
    eer_threshold: float
    tar_at_far: list[OperatingPoint]
    roc: dict[str, list[float | None]]
    created: str
    facebench_version: str
    label: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    schema_version: int = REPORT_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, keys in the documented order; ``extra`` merged at the top.

        Non-finite floats (infinite thresholds) become ``null``.
        """
        data = jsonable(dataclasses.asdict(self))
        extra = data.pop("extra")
        ordered = {"schema_version": data.pop("schema_version")}
        ordered.update(data)
        ordered.update(extra)
        return ordered


@dataclass(frozen=True)
class SplitReport:
    """The report of a split protocol (IJB-A, IJB-B, IJB-C).

    ``splits`` holds one entry per split (``split`` counts from 1): ``n_templates``,
    ``n_pairs``, ``n_genuine``, ``n_impostor``, ``auc``, ``eer``, ``tar_at_far``, ``roc``
    for 1:1; ``identification`` (one entry per gallery, plus ``gallery: "mean"`` when there
    are several), and the headline ``cmc`` {"1", "5", "10"} and ``tpir_at_fpir`` for 1:N.
    ``summary`` gives mean and std (ddof=1) over the splits.
    """

    protocol: str
    protocol_file: str
    protocol_sha256: str
    store: dict[str, Any]
    conventions: dict[str, Any]
    counts: dict[str, Any]
    warnings: list[str]
    n_pairs: int
    n_genuine: int
    splits: list[dict[str, Any]]
    summary: dict[str, Any]
    created: str
    facebench_version: str
    label: str | None = None
    schema_version: int = REPORT_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        """The JSON object; non-finite floats become ``null``."""
        data = jsonable(dataclasses.asdict(self))
        ordered = {"schema_version": data.pop("schema_version")}
        ordered.update(data)
        return ordered


def to_json(report: FoldReport | SplitReport) -> str:
    """Serialize a report as indented JSON (strict: no NaN or Infinity literals)."""
    return json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n"


def scores_path_for(report_path: str | Path) -> Path:
    """``x/report.json`` -> ``x/report.scores.npz``."""
    path = Path(report_path)
    stem = path.name[: -len(".json")] if path.name.endswith(".json") else path.name
    return path.with_name(stem + ".scores.npz")


def save_npz(handle: BinaryIO, arrays: Mapping[str, npt.ArrayLike]) -> None:
    """Write ``arrays`` as ``numpy.savez`` does, but with the same bytes for the same arrays.

    ``numpy.savez`` stamps every member of the zip archive with the time of writing; here
    every member carries the zip format's earliest date (1980-01-01), so that two reports of
    the same scores have byte-identical ``.scores.npz`` files. ``numpy.load`` reads them as
    any ``.npz``.
    """
    with _npz_archive(handle) as zf:
        for name, value in arrays.items():
            _write_member(zf, name, value)


def _npz_archive(handle: BinaryIO) -> zipfile.ZipFile:
    return zipfile.ZipFile(handle, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True)


_WRITE_STEP = 1 << 24  # bytes per write of an array's data into its zip member
_LAZY_STEP = 1 << 20  # bytes per block of a lazy column


def _write_member(zf: zipfile.ZipFile, name: str, value: npt.ArrayLike) -> None:
    """One ``name.npy`` member of a :func:`save_npz` archive.

    A C-ordered array of numbers or fixed-size strings is written as its header then its bytes
    (no copy: ``numpy.lib.format.write_array`` copies each block twice into a file-like
    object such as a zip member, 0.1 s for IJB-C's 300 MB); the bytes are the same
    (tested). Anything else goes through ``write_array``.
    """
    info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_STORED
    info.external_attr = 0o600 << 16  # what numpy.savez's members carry
    if isinstance(value, LazyColumn):
        with zf.open(info, "w", force_zip64=True) as member:
            _write_lazy(member, value)
        return
    array = np.asanyarray(value)
    with zf.open(info, "w", force_zip64=True) as member:
        plain = array.dtype.kind in "biufcSU" and array.dtype.names is None
        if not plain or not array.flags.c_contiguous or type(array) is not np.ndarray:
            np.lib.format.write_array(member, array, allow_pickle=True)
            return
        np.lib.format.write_array_header_1_0(
            member, np.lib.format.header_data_from_array_1_0(array)
        )
        data = array.reshape(-1).view(np.uint8)
        for start in range(0, data.size, _WRITE_STEP):
            member.write(data[start : start + _WRITE_STEP].data)


def _write_lazy(member: IO[bytes], column: LazyColumn) -> None:
    """A lazy column written as the array it stands for would be: the header of a
    C-ordered 1-D array of its dtype and size, then its values a block at a time."""
    header = {"descr": np.lib.format.dtype_to_descr(column.dtype), "fortran_order": False}
    np.lib.format.write_array_header_1_0(member, {**header, "shape": column.shape})
    # Blocks of 1 MiB: their temporaries (an int32 index taken as int64, a float32 block
    # widened) stay small enough for the allocator to reuse, never fresh pages.
    step = max(1, min(_WRITE_STEP, _LAZY_STEP) // column.dtype.itemsize)
    starts = range(0, column.size, step)

    def make(start: int) -> npt.NDArray[np.uint8]:
        block = column.block(start, min(start + step, column.size))
        return np.ascontiguousarray(block).view(np.uint8)

    # The next block is made in a thread while this one is written (numpy's take and the
    # zip member's crc32 and file write run without the GIL).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="facebench-npz") as pool:
        upcoming = pool.submit(make, starts[0]) if starts else None
        for k in range(len(starts)):
            assert upcoming is not None
            block = upcoming.result()
            upcoming = pool.submit(make, starts[k + 1]) if k + 1 < len(starts) else None
            member.write(block.data)


def check_report_writable(path: str | Path, overwrite: bool = False) -> tuple[Path, Path]:
    """Check that ``report.json`` and ``report.scores.npz`` may be written; return both.

    The report is refused when it exists, unless ``overwrite``. Its per-pair file is
    refused when it exists beside an existing report; one without its report is the
    leftover of an interrupted :func:`write_report` (which renames the per-pair file into
    place before the report) and is replaced without ``--overwrite``.

    Raises
    ------
    OutputExistsError
        A file that may not be replaced exists.
    """
    path = Path(path)
    npz_path = scores_path_for(path)
    check_writable(path, overwrite)
    if path.exists() or not npz_path.exists():
        check_writable(npz_path, overwrite)
    return path, npz_path


def write_report(
    report: FoldReport | SplitReport,
    path: str | Path,
    pair_data: dict[str, npt.NDArray[Any]],
    overwrite: bool = False,
) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.scores.npz`` so that they land together.

    See :func:`write_json_with_scores`.
    """
    return write_json_with_scores(to_json(report), path, pair_data, overwrite)


def write_json_with_scores(
    text: str,
    path: str | Path,
    arrays: Mapping[str, npt.ArrayLike],
    overwrite: bool = False,
) -> tuple[Path, Path]:
    """Write the JSON ``text`` to ``path`` and ``arrays`` to its ``.scores.npz``, together.

    Both are written to temporary files and flushed; then an existing report is removed,
    the per-pair file is renamed into place, and the report last. So a report under its
    final name always goes with the per-pair file beside it; a kill between the two renames
    leaves a per-pair file without its report, which the next write replaces (see
    :func:`check_report_writable`). Both targets are checked before anything is written.
    Any report and per-array file pair can be written so (``facebench search`` too).

    Returns
    -------
    (Path, Path)
        The report and the per-pair file.

    Raises
    ------
    OutputExistsError
        See :func:`check_report_writable`.
    OutputWriteError
        A file cannot be written (disk full, read-only, ...); nothing is renamed and the
        previous files stay.
    """
    with ReportWriter(path, overwrite) as writer:
        return writer.finish(text, arrays)


class ReportWriter:
    """:func:`write_json_with_scores` in two steps, so that the per-pair file's first
    columns can be written while the evaluation still runs.

    ``with ReportWriter(path) as writer:``, then optionally ``writer.begin(columns)`` (the
    first members of the per-pair file, written and flushed to disk in a thread from then
    on), then
    ``writer.finish(text, arrays)`` (waits for that thread, writes the members of
    ``arrays`` not written yet, in order, and the JSON). The files are the same bytes as
    :func:`write_json_with_scores` writes for ``arrays``: ``begin``'s columns must be the
    first entries of ``arrays``, the same objects. Leaving the block without ``finish``
    (an error in the evaluation) removes the temporary files and leaves the targets as
    they were. The targets are checked when the writer is made.
    """

    def __init__(self, path: str | Path, overwrite: bool = False) -> None:
        self.path, self.npz_path = check_report_writable(path, overwrite)
        self._flags = [overwrite or not self.path.exists(), overwrite]
        self._stack = contextlib.ExitStack()
        self._temporaries: list[Path] = []
        self._handle: BinaryIO | None = None
        self._zip: zipfile.ZipFile | None = None
        self._early: list[tuple[str, Any]] = []
        self._task: Future[None] | None = None
        self._finished = False

    def __enter__(self) -> ReportWriter:
        paths = atomic_paths([self.npz_path, self.path], self._flags)
        self._temporaries = self._stack.enter_context(paths)
        return self

    def __exit__(self, exc_type: Any, exc: Any, traceback: Any) -> bool | None:
        if self._task is not None:
            concurrent.futures.wait([self._task])  # never leave a thread writing
        if not self._finished:
            for part in (self._zip, self._handle):  # a half-written archive: let it go
                with contextlib.suppress(Exception):
                    if part is not None:
                        part.close()
            if exc_type is None:
                error = RuntimeError("ReportWriter left without finish()")
                self._stack.__exit__(RuntimeError, error, None)  # removes the temporaries
                raise error
        return self._stack.__exit__(exc_type, exc, traceback)

    def _open(self) -> zipfile.ZipFile:
        if self._zip is None:
            with output_errors(self.npz_path):
                self._handle = open(self._temporaries[0], "wb")
                self._zip = _npz_archive(self._handle)
        return self._zip

    def begin(self, columns: Mapping[str, Any]) -> None:
        """Start writing ``columns``, the per-pair file's first members, in a thread."""
        if self._task is not None or self._finished:
            raise RuntimeError("ReportWriter.begin() may be called once, before finish()")
        archive = self._open()
        handle = self._handle
        assert handle is not None
        self._early = list(columns.items())
        early = list(self._early)

        def write() -> None:
            for name, value in early:
                _write_member(archive, name, value)
            # Flushed to disk here, while the evaluation runs: the flush before the
            # rename then waits only for the members written after these.
            handle.flush()
            os.fdatasync(handle.fileno())

        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="facebench-report")
        self._task = pool.submit(write)
        pool.shutdown(wait=False)

    def finish(self, text: str, arrays: Mapping[str, npt.ArrayLike]) -> tuple[Path, Path]:
        """Write the rest of ``arrays`` and the JSON ``text``; the files land when the
        ``with`` block ends. Returns the report's and the per-pair file's paths."""
        items = list(arrays.items())
        head = items[: len(self._early)]
        if [n for n, _ in head] != [n for n, _ in self._early] or any(
            a is not b for (_, a), (_, b) in zip(head, self._early, strict=True)
        ):
            raise ValueError("Expected the columns begun to be the first of the arrays")
        archive = self._open()
        with output_errors(self.npz_path):
            if self._task is not None:
                self._task.result()  # its write errors are raised here
            for name, value in items[len(self._early) :]:
                _write_member(archive, name, value)
            archive.close()
            assert self._handle is not None
            self._handle.close()
        with output_errors(self.path):
            self._temporaries[1].write_text(text, encoding="utf-8")
        self._finished = True
        return self.path, self.npz_path


def load_report(path: str | Path) -> dict[str, Any]:
    """Read a report JSON written by ``facebench verify``.

    Raises
    ------
    ReportError
        When the file is missing, is not JSON, or is not a report of a known schema version.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportError(f"{path}: no such report file") from None
    except OSError as err:
        raise ReportError(f"{path}: cannot read the report ({err.strerror or err})") from None
    except UnicodeDecodeError as err:
        raise ReportError(
            f"{path}: not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start});"
            " is this a facebench report?"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ReportError(
            f"{path}:{err.lineno}: not valid JSON ({err.msg}); is this a facebench report?"
        ) from None
    if not isinstance(data, dict) or "schema_version" not in data or "protocol" not in data:
        raise ReportError(
            f"{path}: not a facebench report (expected an object with `schema_version` and"
            " `protocol`); write one with `facebench verify --json`"
        )
    if data["schema_version"] != REPORT_SCHEMA_VERSION:
        raise ReportError(
            f"{path}: report schema_version {data['schema_version']!r} is not known to this"
            f" facebench (expected {REPORT_SCHEMA_VERSION}); upgrade facebench or re-run verify"
        )
    return data
