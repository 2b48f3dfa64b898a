"""Generic pairs files: any benchmark given as a list of ``id1 id2 label [fold]`` lines.

A new benchmark in the pairs shape needs no code: list its pairs in this format and run
``facebench verify --protocol pairs --pairs FILE``. The same reader parses score files
(``id1 id2 score label [fold]``) for ``facebench verify --scores FILE``.

Format
------
- UTF-8 text; a byte-order mark, CRLF line ends and a missing final newline are accepted.
- Blank lines and lines whose first non-space character is ``#`` are ignored (an id may hold
  a ``#`` elsewhere, as ``cfp_fp.bin#12`` does).
- Fields are separated by commas when the first non-comment line holds a comma (CSV: fields
  are stripped of surrounding spaces and may be quoted as RFC 4180, as ``facebench scores``
  writes them), otherwise by runs of whitespace. Every line of a file is split the same way.
- Columns, in this order: ``id1 id2 label [fold]``, or ``id1 id2 score label [fold]`` for a
  score file. ``id1`` and ``id2`` are store ids. ``label`` is ``1``/``same``/``true`` for a
  genuine pair and ``0``/``different``/``false`` for an impostor pair (any case). ``score``
  is a finite similarity (higher means "same"). ``fold`` is an integer; the folds must be
  numbered ``1..k`` or ``0..k-1`` (k >= 2; the report numbers them from 1).
- Either every pair line has the fold column or none has. Without it the pairs are split
  into 10 contiguous folds of pair order exactly as scikit-learn's
  ``KFold(n_splits=10, shuffle=False)`` (and insightface) split them: with ``n`` pairs, the
  first ``n % 10`` folds hold ``n // 10 + 1`` pairs and the others ``n // 10``.
- An optional header: the first non-comment line is a header when its label field is a
  column name (``label``, ``is_same``, ``issame``, ``genuine``, ``match``, ``target``).
  A header names the columns in the order above; a score column must then be named
  ``score``, ``similarity``, ``sim`` or ``cosine``, and a fold column ``fold``, ``split`` or
  ``set``. The CSV that ``facebench scores`` writes (``id1,id2,score,label,fold``) is a
  valid score file.

Every malformed line is an error naming the file and line; nothing is skipped or guessed.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from facebench.errors import FacebenchError, InputFormatError, located
from facebench.fileio import read_text_lines
from protocols._types import PairsProtocol, file_sha256

__all__ = [
    "DEFAULT_FOLDS",
    "FOLD_NAMES",
    "LABEL_NAMES",
    "LABEL_VALUES",
    "SCORE_NAMES",
    "ScoredPairs",
    "contiguous_folds",
    "load",
    "parse_pairs",
    "parse_scored_pairs",
]

#: Folds made from pair order when a file has no fold column.
DEFAULT_FOLDS = 10

#: Label text (case-folded) -> is_same.
LABEL_VALUES: dict[str, bool] = {
    "1": True,
    "same": True,
    "true": True,
    "0": False,
    "different": False,
    "false": False,
}

#: Header names (case-folded) of the label, score and fold columns.
LABEL_NAMES = ("label", "is_same", "issame", "genuine", "match", "target")
SCORE_NAMES = ("score", "similarity", "sim", "cosine")
FOLD_NAMES = ("fold", "split", "set")

_MAX_DIGITS = 9


@dataclass(frozen=True)
class ScoredPairs:
    """A score file: the pairs with their folds, and the score of each pair.

    Attributes
    ----------
    protocol : PairsProtocol
        The pairs, labels and folds, as a pairs file would give them.
    scores : ndarray of float64, shape (n_pairs,)
        The score of each pair, in file order; higher means "same".
    """

    protocol: PairsProtocol
    scores: npt.NDArray[np.float64]


def contiguous_folds(n_pairs: int, n_folds: int = DEFAULT_FOLDS) -> npt.NDArray[np.int64]:
    """The fold (from 1) of each pair for ``KFold(n_splits=n_folds, shuffle=False)``.

    Contiguous blocks of pair order: the first ``n_pairs % n_folds`` folds hold
    ``n_pairs // n_folds + 1`` pairs, the others ``n_pairs // n_folds`` (scikit-learn's
    rule, which insightface's verification code uses).

    Returns
    -------
    ndarray of int64, shape (n_pairs,)
        Non-decreasing fold numbers 1..n_folds.

    Raises
    ------
    FacebenchError
        When ``n_pairs < n_folds`` (a fold would be empty).
    """
    if n_pairs < n_folds:
        raise FacebenchError(
            f"Expected at least {n_folds} pairs to split into {n_folds} folds, but got {n_pairs}"
        )
    sizes = np.full(n_folds, n_pairs // n_folds, dtype=np.int64)
    sizes[: n_pairs % n_folds] += 1
    return np.repeat(np.arange(1, n_folds + 1, dtype=np.int64), sizes)


def _shown(text: str, limit: int = 120) -> str:
    """``repr(text)``, cut to ``limit`` characters: a message quotes a line, not a file."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _split(line: str, comma: bool) -> list[str]:
    if not comma:
        return line.split()
    return [field.strip() for field in next(csv.reader([line], skipinitialspace=True))]


@dataclass
class _Layout:
    """What the first lines of a file fixed: separator, columns, header."""

    comma: bool
    with_score: bool
    n_columns: int | None = None  # with or without the fold column, from the first pair line
    header_line: int | None = None

    @property
    def label_at(self) -> int:
        return 3 if self.with_score else 2

    @property
    def columns(self) -> str:
        return "id1 id2 score label [fold]" if self.with_score else "id1 id2 label [fold]"


def _parse_header(path: Path, line_no: int, fields: list[str], layout: _Layout) -> None:
    names = [f.casefold() for f in fields]
    if len(fields) not in (layout.label_at + 1, layout.label_at + 2):
        raise InputFormatError(
            located(
                path,
                line_no,
                f"expected a header of {layout.label_at + 1} or {layout.label_at + 2} columns"
                f" ({layout.columns}), but got {len(fields)}: {_shown(' '.join(fields))}",
            )
        )
    if layout.with_score and names[2] not in SCORE_NAMES:
        raise InputFormatError(
            located(
                path,
                line_no,
                f"expected the header to name column 3 the score ({', '.join(SCORE_NAMES)};"
                f" columns {layout.columns}), but got {_shown(fields[2])}; scores are"
                " similarities, higher meaning 'same'",
            )
        )
    if len(fields) == layout.label_at + 2 and names[-1] not in FOLD_NAMES:
        raise InputFormatError(
            located(
                path,
                line_no,
                f"expected the header's last column to be the fold ({', '.join(FOLD_NAMES)};"
                f" columns {layout.columns}), but got {_shown(fields[-1])}",
            )
        )
    layout.n_columns = len(fields)
    layout.header_line = line_no


def _parse_label(path: Path, line_no: int, text: str, layout: _Layout) -> bool:
    value = LABEL_VALUES.get(text.casefold())
    if value is None:
        hint = (
            "; a header line comes first and names this column `label`"
            if layout.header_line is None
            else ""
        )
        raise InputFormatError(
            located(
                path,
                line_no,
                f"expected the label in column {layout.label_at + 1} (1/same/true for a"
                f" genuine pair, 0/different/false for an impostor pair), but got"
                f" {_shown(text)}{hint}",
            )
        )
    return value


def _parse_fold(path: Path, line_no: int, text: str) -> int:
    if not (text.isascii() and text.isdigit() and len(text) <= _MAX_DIGITS):
        raise InputFormatError(
            located(
                path,
                line_no,
                f"expected the fold as a non-negative integer (ASCII digits, at most"
                f" {_MAX_DIGITS}), but got {_shown(text)}",
            )
        )
    return int(text)


def _parse_score(path: Path, line_no: int, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InputFormatError(
            located(path, line_no, f"expected the score as a number, but got {_shown(text)}")
        ) from None
    if not math.isfinite(value):
        raise InputFormatError(
            located(path, line_no, f"expected a finite score, but got {_shown(text)}")
        )
    return value


def _number_folds(path: Path, given: list[int], lines: list[int]) -> tuple[list[int], bool]:
    """Check the fold numbers (1..k or 0..k-1, k >= 2); return them from 1, and if shifted."""
    distinct = sorted(set(given))
    base = distinct[0]
    if base not in (0, 1) or distinct != list(range(base, base + len(distinct))):
        missing = sorted(set(range(1 if base > 0 else 0, distinct[-1] + 1)) - set(distinct))
        raise InputFormatError(
            f"{path}: expected folds numbered 1..k (or 0..k-1) without gaps, but got"
            f" {len(distinct)} distinct folds {distinct[:12]}"
            + (f" (missing {missing[:5]})" if missing else "")
            + "; renumber the fold column"
        )
    if len(distinct) < 2:
        raise InputFormatError(
            located(
                path,
                lines[0],
                f"expected at least 2 folds, but every pair is in fold {distinct[0]}; give each"
                " pair its fold, or drop the fold column for 10 contiguous folds",
            )
        )
    if base == 0:
        return [f + 1 for f in given], True
    return given, False


def _parse(path: str | Path, name: str, with_score: bool) -> tuple[PairsProtocol, list[float]]:
    path = Path(path)
    what = "score file" if with_score else "pairs file"
    lines = read_text_lines(path, what)
    layout: _Layout | None = None
    left: list[str] = []
    right: list[str] = []
    is_same: list[bool] = []
    scores: list[float] = []
    folds: list[int] = []
    pair_lines: list[int] = []
    n_comments = n_blank = 0
    for line_no, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped:
            n_blank += 1
            continue
        if stripped.startswith("#"):
            n_comments += 1
            continue
        if layout is None:
            layout = _Layout(comma="," in stripped, with_score=with_score)
        try:
            fields = _split(stripped, layout.comma)
        except csv.Error as err:
            raise InputFormatError(located(path, line_no, f"bad CSV quoting ({err})")) from None
        first = not pair_lines and layout.header_line is None
        if (
            first
            and len(fields) > layout.label_at
            and fields[layout.label_at].casefold() in LABEL_NAMES
        ):
            _parse_header(path, line_no, fields, layout)
            continue
        n_expected = layout.n_columns
        if n_expected is None:
            if len(fields) not in (layout.label_at + 1, layout.label_at + 2):
                hint = (
                    "; an LFW pairs.txt goes with --protocol lfw --pairs FILE"
                    if line_no == 1 and len(fields) in (1, 2)
                    else ""
                )
                raise InputFormatError(
                    located(
                        path,
                        line_no,
                        f"expected {layout.label_at + 1} or {layout.label_at + 2} columns"
                        f" ({layout.columns}), but got {len(fields)}: {_shown(line)}{hint}",
                    )
                )
            layout.n_columns = len(fields)
        elif len(fields) != n_expected:
            since = layout.header_line or pair_lines[0]
            raise InputFormatError(
                located(
                    path,
                    line_no,
                    f"expected {n_expected} columns ({layout.columns}) as on line {since},"
                    f" but got {len(fields)}: {_shown(line)}"
                    + (
                        "; every line has the fold column or none does"
                        if len(fields) in (layout.label_at + 1, layout.label_at + 2)
                        else ""
                    ),
                )
            )
        if not fields[0] or not fields[1]:
            raise InputFormatError(
                located(path, line_no, f"expected two non-empty ids, but got {_shown(line)}")
            )
        left.append(fields[0])
        right.append(fields[1])
        if with_score:
            scores.append(_parse_score(path, line_no, fields[2]))
        is_same.append(_parse_label(path, line_no, fields[layout.label_at], layout))
        if len(fields) == layout.label_at + 2:
            folds.append(_parse_fold(path, line_no, fields[-1]))
        pair_lines.append(line_no)
    if not pair_lines:
        columns = _Layout(comma=False, with_score=with_score).columns
        raise InputFormatError(f"{path}: expected lines of `{columns}`, but the file has none")
    warnings: list[str] = []
    folds_from_order = not folds
    if folds_from_order:
        if len(left) < DEFAULT_FOLDS:
            raise InputFormatError(
                f"{path}: expected at least {DEFAULT_FOLDS} pairs for {DEFAULT_FOLDS} contiguous"
                f" folds, but got {len(left)}; add a fold column to choose the folds"
            )
        fold_array = contiguous_folds(len(left))
        shifted = False
    else:
        numbered, shifted = _number_folds(path, folds, pair_lines)
        fold_array = np.asarray(numbered, dtype=np.int64)
        if shifted:
            warnings.append(
                f"{path} numbers its folds from 0; the report numbers them from 1 (file fold"
                " 0 is fold 1)"
            )
    repeated = sum(n - 1 for n in Counter(zip(left, right, strict=True)).values() if n > 1)
    if repeated:
        warnings.append(
            f"{path}: {repeated} pairs repeat an earlier (id1, id2) pair; each line is"
            " evaluated as its own pair"
        )
    n_genuine = int(sum(is_same))
    counts = {
        "n_lines": len(lines),
        "n_comment_lines": n_comments,
        "n_blank_lines": n_blank,
        "header": int(layout is not None and layout.header_line is not None),
        "n_pairs": len(left),
        "n_genuine": n_genuine,
        "n_items": len(set(left) | set(right)),
        "n_folds": int(np.unique(fold_array).size),
        "folds_from_order": int(folds_from_order),
        "fold_numbers_shifted": int(shifted),
        "n_repeated_pairs": repeated,
    }
    protocol = PairsProtocol(
        name=name,
        source=str(path),
        sha256=file_sha256(path),
        left=tuple(left),
        right=tuple(right),
        is_same=np.asarray(is_same, dtype=bool),
        folds=fold_array,
        counts=counts,
        warnings=tuple(warnings),
    )
    return protocol, scores


def parse_pairs(path: str | Path, name: str = "pairs") -> PairsProtocol:
    """Parse a generic pairs file (``id1 id2 label [fold]`` lines; module docstring).

    Parameters
    ----------
    path : str or Path
        The pairs file.
    name : str
        The protocol name recorded in the result.

    Returns
    -------
    PairsProtocol
        Pairs in file order; ``folds`` from the fold column (numbered from 1) or, without
        one, 10 contiguous folds of pair order (:func:`contiguous_folds`).
        ``counts["folds_from_order"]`` says which.

    Raises
    ------
    InputFormatError
        Naming the file and line: a wrong column count, a bad label or fold, an empty id,
        folds with gaps or a single fold, fewer than 10 pairs without a fold column.
    """
    protocol, _ = _parse(path, name, with_score=False)
    return protocol


def parse_scored_pairs(path: str | Path, name: str = "scores") -> ScoredPairs:
    """Parse a score file (``id1 id2 score label [fold]`` lines; module docstring).

    Returns
    -------
    ScoredPairs
        The pairs as :func:`parse_pairs` gives them, and the score of each (float64, as
        Python's ``float`` reads the text: every bit of a ``repr``-written float survives).

    Raises
    ------
    InputFormatError
        As :func:`parse_pairs`, and a score that is not a finite number.
    """
    protocol, scores = _parse(path, name, with_score=True)
    return ScoredPairs(protocol=protocol, scores=np.asarray(scores, dtype=np.float64))


def load(pairs: str | Path | None = None) -> PairsProtocol:
    """The ``pairs`` protocol: the user's generic pairs file (``--pairs FILE``), required.

    Raises
    ------
    FacebenchError
        Without a file: this protocol has no shipped definition.
    """
    if pairs is None:
        raise FacebenchError(
            "Expected --pairs FILE with --protocol pairs (lines `id1 id2 label [fold]`), but"
            " got none; this protocol has no shipped file"
        )
    return parse_pairs(pairs, name="pairs")
