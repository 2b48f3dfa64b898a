"""Readers of the IJB-B/C meta files' text: whitespace-separated tables and 1:N CSVs.

Only bytes to arrays, with the first bad line named; what the columns mean, and every check
of the protocol, is :mod:`protocols.ijbc`.

- :func:`_parse_table`: a whitespace-separated file (an optional name column, then numeric
  columns), fields separated by bytes 0-32, LF or CRLF line ends, blank lines ignored; line
  numbers in errors are the file's physical lines. Parsing is vectorized: numpy over the
  file's bytes, in ``_CHUNK`` (1 MiB) chunks, plain decimals read exactly as strtod does
  (:func:`_decimals`); a ``sink`` may take each chunk's rows instead of the table. Lines are
  only examined one by one (:func:`_check_token`, the slow, obviously-correct rule) to name
  the first bad line of a chunk that failed the bulk checks.
- :func:`_parse_csv`: TEMPLATE_ID and SUBJECT_ID of each row of a NIST 1:N CSV, line by line.
- :func:`_read` (a file's bytes without a BOM, with its sha256), :func:`_shown` (a token
  quoted for an error message), and the table helpers :func:`_decode_names`,
  :func:`_first_bad`, :func:`_drop_repeats`.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from facebench.errors import InputFormatError, located

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

_CHUNK = 1 << 20  # bytes per vectorized block: cache-sized; tests shrink it
_FIELD = re.compile(rb"[^\x00-\x20]+")
_CONTROL = re.compile(rb"[\x00-\x08\x0e-\x1f]")  # control bytes other than whitespace
_INT = re.compile(rb"[+-]?[0-9]+")
_FLOAT = re.compile(rb"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_POWERS_OF_TEN = np.array([float(f"1e{k}") for k in range(16)])  # exact doubles
_INT64_LIMITS = (np.iinfo(np.int64).min, np.iinfo(np.int64).max)


# -- reading files --------------------------------------------------------------------------


def _read(path: Path, digests: dict[Path, str] | None = None) -> bytes:
    """The file's bytes without a UTF-8 BOM; with ``digests``, its sha256 is recorded there
    (of every byte, as :func:`facebench.fileio.file_sha256` computes it)."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise InputFormatError(f"{path}: cannot read the file ({err.strerror})") from None
    if digests is not None:
        digests[path] = hashlib.sha256(data).hexdigest()
    return data[3:] if data.startswith(b"\xef\xbb\xbf") else data


def _shown(token: bytes | str, limit: int = 80) -> str:
    text = token.decode("utf-8", "replace") if isinstance(token, bytes) else token
    return repr(text if len(text) <= limit else text[:limit] + "...")


# -- the vectorized table reader ------------------------------------------------------------


@dataclass(frozen=True)
class _Table:
    """A whitespace-separated file: an optional name column, then numeric columns.

    Row -> line numbers are kept per chunk (a chunk without blank lines maps rows to lines
    by an offset), since they are only needed to name a bad line.
    """

    names: list[bytes]  # empty when the file has no name column
    values: npt.NDArray[Any]  # (n_rows, n_numeric); (0, n_numeric) when a sink took them
    chunk_rows: list[int]  # first row of each chunk
    chunk_lines: list[int]  # lines before each chunk
    chunk_filled: list[IntArray | None]  # non-blank line offsets of a chunk with blank lines
    n_rows: int = 0

    def line(self, row: int) -> int:
        """The 1-based physical line of ``row``."""
        chunk = bisect.bisect_right(self.chunk_rows, row) - 1
        offset = row - self.chunk_rows[chunk]
        filled = self.chunk_filled[chunk]
        return self.chunk_lines[chunk] + 1 + (offset if filled is None else int(filled[offset]))


class _BadRow(Exception):
    """Raised by a sink: row ``row`` of the table is wrong, ``message`` says how."""

    def __init__(self, row: int, message: str) -> None:
        super().__init__(message)
        self.row = row
        self.message = message


#: A sink takes each chunk's parsed rows (n, n_numeric) and the table row of the first.
_Sink = Callable[[npt.NDArray[Any], int], None]


def _check_token(kind: str, token: bytes) -> str | None:
    """What is wrong with one field (the slow, obviously-correct rule), or None."""
    if kind == "name":
        try:
            token.decode("utf-8")
        except UnicodeDecodeError:
            return f"Expected a UTF-8 image name, but got {_shown(token)}"
        return None
    if kind == "int":
        # at most 20 characters (a sign and 19 digits) before int(): Python refuses to
        # convert strings of more than 4,300 digits, and none of them fits int64 anyway
        if (
            len(token) > 20
            or not _INT.fullmatch(token)
            or not _INT64_LIMITS[0] < int(token) < _INT64_LIMITS[1]
        ):
            return f"Expected an integer, but got {_shown(token)}"
        return None
    if not _FLOAT.fullmatch(token):
        return f"Expected a finite number, but got {_shown(token)}"
    return None


def _explain_chunk(path: Path, chunk: bytes, first_line: int, kinds: tuple[str, ...]) -> None:
    """Raise for the first bad field of ``chunk`` (its lines start at ``first_line``)."""
    for offset, line in enumerate(chunk.split(b"\n")):
        control = _CONTROL.search(line)
        if control:
            raise InputFormatError(
                located(
                    path,
                    first_line + offset,
                    f"Expected text, but got the control byte {control.group()!r}: {_shown(line)}",
                )
            )
        for kind, token in zip(kinds, _FIELD.findall(line), strict=False):
            problem = _check_token(kind, token)
            if problem is not None:
                raise InputFormatError(located(path, first_line + offset, problem))
    last_line = first_line + chunk.count(b"\n")
    raise InputFormatError(  # the bulk parser and the rules above disagree: report, not guess
        f"{path}: lines {first_line}-{last_line} could not be parsed as numbers; please "
        "report this file"
    )


def _chunks(data: bytes) -> list[tuple[int, int]]:
    """``(start, end)`` byte ranges of at most about ``_CHUNK`` bytes, cut after a newline."""
    ranges: list[tuple[int, int]] = []
    start = 0
    while start < len(data):
        cut = data.find(b"\n", min(start + _CHUNK, len(data)) - 1)
        end = len(data) if cut < 0 else cut + 1
        ranges.append((start, end))
        start = end
    return ranges


def _decimals(block: npt.NDArray[np.uint8]) -> FloatArray | None:
    """The plain decimals (``-12.345``, at most 15 digits) of a block, or None if others.

    strtod (``np.fromstring``) reads 5 M landmarks numbers in 1.7 s; this reads them in
    about 0.3 s with identical results: mantissa m and d decimals give m / 10**d, a division
    of two exactly represented doubles, which IEEE rounds to the double nearest m / 10**d,
    as strtod does.
    """
    token = block > 32
    dot = block == 46
    sign = (block == 45) | (block == 43)
    digit = (block >= 48) & (block <= 57)
    begins = token.copy()
    begins[1:] &= ~token[:-1]
    if (token & ~(digit | dot | sign)).any() or (sign & ~begins).any():
        return None
    ends = token.copy()
    ends[:-1] &= ~token[1:]
    stops = np.flatnonzero(ends) + 1
    index = np.cumsum(begins) - 1  # the token of each byte
    n_tokens = stops.size
    if n_tokens == 0:  # fromstring would read a 0 from mere whitespace
        return np.empty(0)
    digits = np.bincount(index[digit], minlength=n_tokens)
    dots = np.flatnonzero(dot)
    dotted = index[dots]  # ascending: a token with two dots repeats
    if (digits == 0).any() or (digits > 15).any() or (np.diff(dotted) == 0).any():
        return None
    places = np.zeros(n_tokens, dtype=np.int64)
    places[dotted] = stops[dotted] - dots - 1
    try:
        mantissa = np.fromstring(block[~(dot | sign)].tobytes(), dtype=np.int64, sep=" ")
    except ValueError:  # a control byte that strtol does not skip
        return None
    if mantissa.size != n_tokens:
        return None
    negative = block[np.flatnonzero(begins)] == 45
    return np.where(negative, -1.0, 1.0) * (mantissa / _POWERS_OF_TEN[places])


def _parse_table(
    path: Path, data: bytes, kinds: tuple[str, ...], layout: str, sink: _Sink | None = None
) -> _Table:
    """Parse ``data`` whose non-blank lines hold exactly ``len(kinds)`` fields.

    ``kinds`` is ``("name", "int", ...)`` or ``("name", "float", ...)``: an optional name
    first, then numbers of one kind. Bytes 0-32 (space, tab, CR, LF, other control bytes)
    separate fields. ``sink``, when given, receives each chunk's rows instead of the table
    (it may raise :class:`_BadRow`). Raises InputFormatError naming the first bad line.
    """
    has_name = kinds[0] == "name"
    n_fields, n_numeric = len(kinds), len(kinds) - has_name
    dtype = np.int64 if kinds[-1] == "int" else np.float64
    buf = np.frombuffer(data, dtype=np.uint8)
    n_max = 0 if sink else data.count(b"\n") + 1  # rows <= lines
    values = np.empty((n_max, n_numeric), dtype=dtype)
    table = _Table([], values, [], [], [])
    n_rows = n_lines = 0
    for start, end in _chunks(data):
        block = buf[start:end]
        space = block <= 32
        begins = ~space
        begins[1:] &= space[:-1]
        line_ends = np.flatnonzero(block == 10)
        if block[-1] != 10:  # the last line has no newline
            line_ends = np.append(line_ends, block.size - 1)
        line_starts = np.concatenate(([0], line_ends[:-1] + 1))
        per_line = np.add.reduceat(begins.view(np.uint8), line_starts, dtype=np.int64)
        bad = (per_line != 0) & (per_line != n_fields)
        if bad.any():
            i = int(np.argmax(bad))
            text = data[start + int(line_starts[i]) : start + int(line_ends[i]) + 1].strip()
            raise InputFormatError(
                located(
                    path,
                    n_lines + i + 1,
                    f"Expected {n_fields} fields ({layout}), but got {int(per_line[i])}: "
                    f"{_shown(text, 200)}",
                )
            )
        filled = np.flatnonzero(per_line) if (per_line == 0).any() else None
        rows = per_line.size if filled is None else filled.size
        table.chunk_rows.append(n_rows)
        table.chunk_lines.append(n_lines)
        table.chunk_filled.append(filled)
        numeric = block
        if has_name:
            first = (np.cumsum(per_line) - per_line)[per_line > 0]
            ends = ~space
            ends[:-1] &= space[1:]
            name_starts = np.flatnonzero(begins)[first]
            name_ends = np.flatnonzero(ends)[first] + 1
            table.names.extend(
                data[start + a : start + b]
                for a, b in zip(name_starts.tolist(), name_ends.tolist(), strict=True)
            )
            edge = np.zeros(block.size + 1, dtype=np.int8)
            edge[name_starts] = 1
            edge[name_ends] = -1
            numeric = block.copy()
            numeric[np.cumsum(edge[:-1], dtype=np.int8) > 0] = 32  # the names out of the way
        parsed = _decimals(numeric) if dtype is np.float64 and rows else None
        if not rows:  # fromstring reads a 0 from mere whitespace
            parsed = np.empty(0, dtype=dtype)
        elif parsed is None:
            try:
                parsed = np.fromstring(numeric.tobytes(), dtype=dtype, sep=" ")
            except ValueError:
                parsed = np.empty(0, dtype=dtype)
        if parsed.size != rows * n_numeric or (
            dtype is np.int64
            and parsed.size
            and (parsed.max() == _INT64_LIMITS[1] or parsed.min() == _INT64_LIMITS[0])
        ):
            _explain_chunk(path, data[start:end], n_lines + 1, kinds)
        if sink is None:
            values[n_rows : n_rows + rows] = parsed.reshape(rows, n_numeric)
        else:
            try:
                sink(parsed.reshape(rows, n_numeric), n_rows)
            except _BadRow as bad_row:
                where = located(path, table.line(bad_row.row), bad_row.message)
                raise InputFormatError(where) from None
        n_rows += rows
        n_lines += line_ends.size
    if n_rows == 0:
        raise InputFormatError(f"{path}: Expected lines of {layout}, but the file has none")
    return dataclasses.replace(table, values=values[: 0 if sink else n_rows], n_rows=n_rows)


def _decode_names(path: Path, table: _Table) -> list[str]:
    try:
        return [name.decode("utf-8") for name in table.names]
    except UnicodeDecodeError:
        for row, name in enumerate(table.names):
            problem = _check_token("name", name)
            if problem is not None:
                raise InputFormatError(located(path, table.line(row), problem)) from None
        raise


def _first_bad(
    path: Path, table: _Table, bad: npt.ArrayLike, describe: Callable[[int], str]
) -> None:
    """Raise ``describe(row)`` at the line of the first row where ``bad`` is True."""
    if np.any(bad):
        row = int(np.argmax(bad))
        raise InputFormatError(located(path, table.line(row), describe(row)))


def _drop_repeats(path: Path, names: list[str], table: _Table, what: str) -> npt.NDArray[np.bool_]:
    """Keep mask: a line repeated exactly is kept once; a name with other values is an error."""
    keep = np.ones(len(names), dtype=bool)
    if len(set(names)) == len(names):
        return keep
    first: dict[str, int] = {}
    for row, name in enumerate(names):
        seen = first.setdefault(name, row)
        if seen == row:
            continue
        if not np.array_equal(table.values[row], table.values[seen]):
            raise InputFormatError(
                located(
                    path,
                    table.line(row),
                    f"Expected each image name once ({what}), but got {_shown(name)} again "
                    f"with other values; it is also on line {table.line(seen)}",
                )
            )
        keep[row] = False
    return keep


# -- the 1:N CSV reader ---------------------------------------------------------------------


def _parse_csv(path: Path, data: bytes) -> tuple[IntArray, IntArray, IntArray]:
    """TEMPLATE_ID and SUBJECT_ID of each row (the first two fields), and its line number.

    The 1:N files have at most a few hundred thousand rows, so they are read line by line
    (a vectorized reader was tried and found, by a property test, to accept rows whose
    empty and space-split fields compensate each other).
    """
    first_line = data.split(b"\n", 1)[0]
    header = [field.strip().upper() for field in first_line.split(b",")]
    if header[:2] != [b"TEMPLATE_ID", b"SUBJECT_ID"]:
        raise InputFormatError(
            located(
                path,
                1,
                "Expected a CSV header starting with TEMPLATE_ID,SUBJECT_ID, but got "
                f"{_shown(first_line.strip(), 200)}",
            )
        )
    return _parse_csv_slowly(path, data)


def _parse_csv_slowly(path: Path, data: bytes) -> tuple[IntArray, IntArray, IntArray]:
    """The rows of a 1:N CSV after its header, line by line, naming the first bad line."""
    rows = data.split(b"\n")
    templates: list[int] = []
    subjects: list[int] = []
    lines: list[int] = []
    for line_no, row in enumerate(rows[1:], start=2):
        if not row.strip():
            continue
        fields = row.split(b",", 2)
        if len(fields) < 2:
            raise InputFormatError(
                located(
                    path,
                    line_no,
                    f"Expected TEMPLATE_ID,SUBJECT_ID,..., but got {_shown(row.strip(), 200)}",
                )
            )
        tokens = [field.strip() for field in fields[:2]]
        for token, what in zip(tokens, ("TEMPLATE_ID", "SUBJECT_ID"), strict=True):
            if not token.isdigit() or len(token) > 18 or int(token) >= 10**18:
                raise InputFormatError(
                    located(
                        path,
                        line_no,
                        f"Expected {what} as a non-negative integer, but got {_shown(token)}",
                    )
                )
        templates.append(int(tokens[0]))
        subjects.append(int(tokens[1]))
        lines.append(line_no)
    if not templates:
        raise InputFormatError(f"{path}: Expected rows after the header, but the file has none")
    return (
        np.asarray(templates, dtype=np.int64),
        np.asarray(subjects, dtype=np.int64),
        np.asarray(lines, dtype=np.int64),
    )
