"""YouTube Faces (YTF): the 5,000 video pairs of ``splits.txt`` in 10 splits.

Format: CSV with a header, fields separated by ``", "`` (spaces stripped). Columns are found
by header name, ignoring case, spaces and underscores: split number, pair number, first name,
second name, is same (obvious variants such as ``split``, ``first``, ``name1``, ``same`` are
accepted); a file without a header is read in that column order. A name is
``<Person>/<video>``, the video's folder under ``aligned_images_DB`` (or
``frame_images_DB``). The shipped file was rebuilt from the official
``meta_and_splits.mat`` (``protocols/data/ytf/splits.txt``).

The pairs are video keys; the store holds frames whose ids lie under the video's folder
(``Person/3/aligned_detect_3.123.jpg``). A video's feature is pooled from its frames at
evaluation time (``facebench.pooling``). Accuracy is 10-fold exactly as LFW's, folds = splits.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from facebench.errors import InputFormatError, located
from protocols._types import PairsProtocol, file_sha256

DATA_DIR = Path(__file__).parent / "data" / "ytf"
OFFICIAL = {"n_splits": 10, "n_pairs": 5000, "pairs_per_split": 500, "n_genuine": 2500}

_COLUMNS = {
    "split": ("splitnumber", "split", "fold", "foldnumber"),
    "pair": ("pairnumber", "pair", "pairid", "index"),
    "first": ("firstname", "first", "name1", "video1", "firstvideo"),
    "second": ("secondname", "second", "name2", "video2", "secondvideo"),
    "same": ("issame", "same", "label", "match"),
}
_ORDER = ("split", "pair", "first", "second", "same")
_MAX_DIGITS = 9  # split numbers are small; this also keeps int() cheap
_FRAME = re.compile(r"\.(\d+)\.[A-Za-z]+$")


def shipped_file() -> Path:
    """The shipped ``splits.txt``."""
    return DATA_DIR / "splits.txt"


def frame_number(filename: str) -> int:
    """The frame number of ``aligned_detect_3.123.jpg`` (123); numeric order, not text order.

    Raises
    ------
    InputFormatError
        When the name does not end in ``.<number>.<ext>``.
    """
    match = _FRAME.search(filename)
    if match is None:
        raise InputFormatError(
            f"Expected a YTF frame name like 'aligned_detect_3.123.jpg', but got {filename!r}"
        )
    return int(match.group(1))


def _shown(text: object, limit: int = 120) -> str:
    """``repr(text)``, cut to ``limit`` characters: a message quotes a line, not a file."""
    shown = repr(text)
    return shown if len(shown) <= limit else shown[:limit] + "..."


def _header_map(fields: list[str]) -> dict[str, int] | None:
    normalized = [re.sub(r"[\s_]", "", f).lower() for f in fields]
    found = {}
    for column, names in _COLUMNS.items():
        for i, name in enumerate(normalized):
            if name in names:
                found[column] = i
                break
    if not found:
        return None
    missing = [c for c in _ORDER if c not in found]
    if missing:
        raise InputFormatError(
            f"header: Expected the columns split number, pair number, first name, second name,"
            f" is same, but could not find {', '.join(missing)} in {_shown(fields)}"
        )
    return found


def _check_video(path: Path, line_no: int, name: str) -> str:
    parts = name.split("/")
    if len(parts) != 2 or not all(parts) or any(p in (".", "..") for p in parts):
        raise InputFormatError(
            located(
                path, line_no, f"Expected a video name '<Person>/<video>', but got {_shown(name)}"
            )
        )
    return name


def parse_splits(path: str | Path, name: str = "ytf") -> PairsProtocol:
    """Parse a YTF ``splits.txt`` into video pairs with folds (= splits).

    Raises
    ------
    InputFormatError
        Naming the file and line: a wrong field count, a non-integer split, a label other
        than 0/1 (or true/false), a malformed video name.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise InputFormatError(f"{path}: cannot read the splits file ({err.strerror})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise InputFormatError(f"{path}: not UTF-8 text (byte {err.start})") from None
    # Lines end at LF (or CRLF) only: str.splitlines() would also break at \x1c, \x85,
    # U+2028, ..., and the line numbers in errors would not be the file's.
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise InputFormatError(f"{path}: the splits file is empty")
    first = [f.strip() for f in lines[0].split(",")]
    try:
        columns = _header_map(first)
    except InputFormatError as err:
        raise InputFormatError(f"{path}:1: {err}") from None
    start = 2 if columns is not None else 1
    columns = columns or {c: i for i, c in enumerate(_ORDER)}
    width = max(columns.values()) + 1
    left, right, same, folds = [], [], [], []
    for line_no, line in enumerate(lines[start - 1 :], start=start):
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < width or not line.strip():
            raise InputFormatError(
                located(
                    path,
                    line_no,
                    f"Expected at least {width} comma-separated fields, but"
                    f" got {len(fields) if line.strip() else 0}: {_shown(line)}",
                )
            )
        split = fields[columns["split"]]
        # str.isdigit() is True for non-ASCII digits too ("²", "٣"), which int() refuses
        if not (split.isascii() and split.isdigit() and len(split) <= _MAX_DIGITS) or (
            int(split) < 1
        ):
            raise InputFormatError(
                located(
                    path,
                    line_no,
                    f"Expected a split number >= 1 (ASCII digits, at most {_MAX_DIGITS}), but"
                    f" got {_shown(split)}",
                )
            )
        label = fields[columns["same"]].lower()
        if label not in ("0", "1", "true", "false"):
            raise InputFormatError(
                located(path, line_no, f"Expected 'is same' as 0 or 1, but got {_shown(label)}")
            )
        left.append(_check_video(path, line_no, fields[columns["first"]]))
        right.append(_check_video(path, line_no, fields[columns["second"]]))
        same.append(label in ("1", "true"))
        folds.append(int(split))
    fold_array = np.asarray(folds, dtype=np.int64)
    n_splits = int(np.unique(fold_array).size)
    counts = {
        "n_lines": len(lines),
        "n_splits": n_splits,
        "n_pairs": len(left),
        "n_genuine": int(sum(same)),
        "n_videos": len(set(left) | set(right)),
    }
    warnings = []
    for key in ("n_splits", "n_pairs", "n_genuine"):
        if counts[key] != OFFICIAL[key]:
            warnings.append(
                f"{path}: {counts[key]} {key[2:]}, the official YTF protocol has"
                f" {OFFICIAL[key]}: numbers are not comparable with published YTF results"
            )
    return PairsProtocol(
        name=name,
        source=str(path),
        sha256=file_sha256(path),
        left=tuple(left),
        right=tuple(right),
        is_same=np.asarray(same, dtype=bool),
        folds=fold_array,
        counts=counts,
        warnings=tuple(warnings),
        unit="video",
    )


def load(splits: str | Path | None = None) -> PairsProtocol:
    """YTF's 10 splits: the shipped ``splits.txt``, or ``splits`` if given."""
    return parse_splits(shipped_file() if splits is None else Path(splits), name="ytf")
