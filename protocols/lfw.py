"""LFW: Labeled Faces in the Wild, View 1 and View 2 pairs files.

Format (http://vis-www.cs.umass.edu/lfw/README.txt): the first line gives the number of
sets and the number of matched (= mismatched) pairs per set, ``10\\t300`` for View 2's
``pairs.txt``, or only the per-set count for View 1 (``1100`` in pairsDevTrain.txt, one
set). Each set is that many matched lines ``Name\\tn1\\tn2`` followed by as many mismatched
lines ``Name1\\tn1\\tName2\\tn2``. Image numbers are 1-based; an item key is
``Name/Name_NNNN.jpg`` (four digits), the path relative to the ``lfw/`` folder.

The folds are the sets of the file, in order, counting from 1: never re-split, no pair
dropped. The official files ship in ``protocols/data/lfw`` and are checked against their
published MD5 whenever they are read.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np

from facebench.errors import InputFormatError, located
from facebench.fileio import read_text_lines
from protocols._types import PairsProtocol, file_sha256

DATA_DIR = Path(__file__).parent / "data" / "lfw"

#: MD5 of the official files as distributed by the LFW authors.
OFFICIAL_MD5 = {
    "pairs.txt": "9f1ba174e4e1c508ff7cdf10ac338a7d",
    "pairsDevTrain.txt": "4f27cbf15b2da4a85c1907eb4181ad21",
    "pairsDevTest.txt": "5132f7440eb68cf58910c8a45a2ac10b",
    "people.txt": "450f0863dd89e85e73936a6d71a3474b",
    "peopleDevTrain.txt": "54eaac34beb6d042ed3a7d883e247a21",
    "peopleDevTest.txt": "e4bf5be0a43b5dcd9dc5ccfcb8fb19c5",
}

#: View 2's official counts, for the report's comparison.
OFFICIAL_VIEW2 = {"n_sets": 10, "n_pairs": 6000, "n_genuine": 3000, "n_items": 7701}


def image_key(name: str, number: int) -> str:
    """The item key of image ``number`` (1-based) of ``name``: ``Name/Name_0001.jpg``."""
    return f"{name}/{name}_{number:04d}.jpg"


def shipped_file(name: str = "pairs.txt") -> Path:
    """Path of a shipped official file, after checking its MD5.

    Raises
    ------
    InputFormatError
        When the shipped copy was altered (its MD5 differs from the official one).
    """
    path = DATA_DIR / name
    md5 = hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
    if md5 != OFFICIAL_MD5[name]:
        raise InputFormatError(
            f"{path}: MD5 {md5} differs from the official {OFFICIAL_MD5[name]}; the shipped "
            "protocol file was modified, reinstall facebench"
        )
    return path


_MAX_DIGITS = 9  # image numbers and counts are small; this also keeps int() cheap


def _shown(text: str, limit: int = 120) -> str:
    """``repr(text)``, cut to ``limit`` characters: a message quotes a line, not a file."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _parse_number(path: Path, line_no: int, text: str, what: str) -> int:
    # str.isdigit() is True for non-ASCII digits too ("²", "٣"), which int() refuses or reads
    if not (text.isascii() and text.isdigit() and len(text) <= _MAX_DIGITS) or int(text) < 1:
        raise InputFormatError(
            located(
                path,
                line_no,
                f"expected {what} as a positive integer (ASCII digits, at most {_MAX_DIGITS}),"
                f" but got {_shown(text)}",
            )
        )
    return int(text)


def parse_pairs(path: str | Path, name: str = "lfw") -> PairsProtocol:
    """Parse an LFW pairs file (View 1 or View 2 format) into pairs with folds.

    Parameters
    ----------
    path : str or Path
        ``pairs.txt``, ``pairsDevTrain.txt``, ``pairsDevTest.txt`` or a file of that format.
    name : str
        The protocol name recorded in the result.

    Raises
    ------
    InputFormatError
        Naming the file and line: a bad header, a line with the wrong number of fields, a
        non-numeric image number, a missing or extra line.
    """
    path = Path(path)
    lines = read_text_lines(path, "pairs file")
    if not lines:
        raise InputFormatError(f"{path}: the pairs file is empty")
    header = lines[0].split()
    if len(header) == 2:
        n_sets = _parse_number(path, 1, header[0], "the number of sets")
        per_set = _parse_number(path, 1, header[1], "the number of pairs per set")
    elif len(header) == 1:
        n_sets, per_set = 1, _parse_number(path, 1, header[0], "the number of pairs")
    else:
        raise InputFormatError(
            located(
                path,
                1,
                f"expected a header `<sets>\\t<pairs per set>` or `<pairs>`, but got"
                f" {_shown(lines[0])}",
            )
        )
    expected_lines = 1 + n_sets * 2 * per_set
    if len(lines) < expected_lines:
        raise InputFormatError(
            f"{path}: the header announces {n_sets} sets of {per_set} matched + {per_set} "
            f"mismatched pairs ({expected_lines - 1} pair lines), but the file has only "
            f"{len(lines) - 1}; the file is truncated"
        )
    left: list[str] = []
    right: list[str] = []
    is_same: list[bool] = []
    folds: list[int] = []
    for line_no in range(2, expected_lines + 1):
        index = line_no - 2
        fold = index // (2 * per_set) + 1
        matched = index % (2 * per_set) < per_set
        fields = lines[line_no - 1].split()
        if matched:
            if len(fields) != 3:
                raise InputFormatError(
                    located(
                        path,
                        line_no,
                        f"expected a matched pair `Name<TAB>n1<TAB>n2` (set {fold}), but got "
                        f"{len(fields)} fields: {_shown(lines[line_no - 1])}",
                    )
                )
            person = fields[0]
            a = _parse_number(path, line_no, fields[1], "an image number")
            b = _parse_number(path, line_no, fields[2], "an image number")
            left.append(image_key(person, a))
            right.append(image_key(person, b))
        else:
            if len(fields) != 4:
                raise InputFormatError(
                    located(
                        path,
                        line_no,
                        f"expected a mismatched pair `Name1<TAB>n1<TAB>Name2<TAB>n2` (set "
                        f"{fold}), but got {len(fields)} fields: {_shown(lines[line_no - 1])}",
                    )
                )
            a = _parse_number(path, line_no, fields[1], "an image number")
            b = _parse_number(path, line_no, fields[3], "an image number")
            left.append(image_key(fields[0], a))
            right.append(image_key(fields[2], b))
        is_same.append(matched)
        folds.append(fold)
    extra = [i + 1 for i in range(expected_lines, len(lines)) if lines[i].strip()]
    if extra:
        raise InputFormatError(
            located(
                path,
                extra[0],
                f"the header announces {expected_lines - 1} pair lines, but the file goes on "
                f"({len(extra)} more non-empty lines); fix the header or remove the extra lines",
            )
        )
    n_items = len(set(left) | set(right))
    counts = {
        "n_lines": len(lines),
        "n_sets": n_sets,
        "pairs_per_set": 2 * per_set,
        "n_pairs": len(left),
        "n_genuine": int(sum(is_same)),
        "n_items": n_items,
    }
    return PairsProtocol(
        name=name,
        source=str(path),
        sha256=file_sha256(path),
        left=tuple(left),
        right=tuple(right),
        is_same=np.asarray(is_same, dtype=bool),
        folds=np.asarray(folds, dtype=np.int64),
        counts=counts,
    )


def load(pairs: str | Path | None = None) -> PairsProtocol:
    """LFW View 2: the shipped official ``pairs.txt`` (MD5-checked), or ``pairs`` if given."""
    path = shipped_file("pairs.txt") if pairs is None else Path(pairs)
    protocol = parse_pairs(path, name="lfw")
    if pairs is not None and protocol.sha256 != file_sha256(shipped_file("pairs.txt")):
        return dataclasses.replace(
            protocol,
            warnings=(
                f"{path} is not the official LFW pairs.txt (sha256 differs): numbers are "
                "not comparable with published LFW results",
            ),
        )
    return protocol
