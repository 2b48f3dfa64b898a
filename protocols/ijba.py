"""IJB-A: IARPA Janus Benchmark A, 1:1 verification and 1:N search in 10 splits.

The metadata is licensed by NIST and never shipped: :func:`load` reads a user's copy of the
release. ``protocol_dir`` is the folder that holds ``IJB-A_11_sets/`` (and, when the 1:N
protocol is there too, ``IJB-A_1N_sets/`` beside it); pointing at ``IJB-A_11_sets`` itself
is accepted as well and means its parent. Files read, for each split ``N``::

    IJB-A_11_sets/splitN/verify_metadata_N.csv      templates of the 1:1 protocol
    IJB-A_11_sets/splitN/verify_comparisons_N.csv   `tid1,tid2` per line, no header
    IJB-A_1N_sets/splitN/search_gallery_N.csv       only when IJB-A_1N_sets/ exists
    IJB-A_1N_sets/splitN/search_probe_N.csv

``train_N.csv`` (training data) is never read. Format decisions, each checked with an
:class:`~facebench.errors.InputFormatError` naming the file and line:

- Metadata files are CSV with the 25-column header of :data:`METADATA_COLUMNS`; columns are
  found by name (case and surrounding spaces ignored), :data:`REQUIRED_COLUMNS` must be
  present, the rest may be empty. CRLF or LF line ends, an optional UTF-8 BOM, empty lines
  only at the end of a file. Every row has as many fields as the header; a file has at
  least one row (a comparisons file, one comparison).
- TEMPLATE_ID, SUBJECT_ID, MEDIA_ID and SIGHTING_ID are unsigned decimal integers
  (``8484.0`` is refused: the release writes integers, and a float would make the item key
  ambiguous). FACE_X, FACE_Y (top-left corner), FACE_WIDTH and FACE_HEIGHT are finite
  numbers, the width and height positive.
- An item (store id) is one face box, keyed ``<FILE>#<SIGHTING_ID>`` with the sighting id
  written as a plain integer, e.g. ``frame/28337_00300.png#8484``. FILE must stay inside the
  image folder (no absolute path, drive letter or ``..``). A key means one crop: the same
  key with two different boxes anywhere in the files read is an error.
- A row repeated exactly (every field identical to an earlier row of the same file, as in
  copies rebuilt from databases) is read once, counted (``repeated_rows_dropped``) and named
  in ``warnings``. The same key twice in one template otherwise is an error.
- A template has one SUBJECT_ID. Templates belong to their split: the same TEMPLATE_ID
  can hold different items in different splits, so every split has its own
  :class:`~protocols._types.Templates`.
- A comparison's label is SUBJECT_ID(tid1) == SUBJECT_ID(tid2), both from the split's
  verify metadata; a template absent from it is an error. Comparisons are kept as the file
  lists them; a template compared with itself or a pair listed twice is counted and warned.
- 1:N: one gallery (``"gallery"``) per split; a probe is mated when its subject has a
  gallery template.

Counts (``TemplateProtocol.counts``) are compared with the release's (:data:`OFFICIAL`) and
each difference becomes a warning, never an error, so that small test copies load.
Reference: Klare et al., "Pushing the Frontiers of Unconstrained Face Detection and
Recognition: IARPA Janus Benchmark A", CVPR 2015.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facebench.errors import InputFormatError, located
from protocols._types import (
    Identification,
    Split,
    TemplateProtocol,
    Templates,
    Verification,
    files_sha256,
)

__all__ = [
    "METADATA_COLUMNS",
    "OFFICIAL",
    "REQUIRED_COLUMNS",
    "IJBAProtocol",
    "boxes",
    "find_root",
    "image_path",
    "item_key",
    "load",
    "release_differences",
]

NAME = "ijba"
VERIFY_DIR = "IJB-A_11_sets"
SEARCH_DIR = "IJB-A_1N_sets"

#: The metadata header of the release, in its order.
METADATA_COLUMNS = (
    "TEMPLATE_ID", "SUBJECT_ID", "FILE", "MEDIA_ID", "SIGHTING_ID", "FRAME",
    "FACE_X", "FACE_Y", "FACE_WIDTH", "FACE_HEIGHT",
    "RIGHT_EYE_X", "RIGHT_EYE_Y", "LEFT_EYE_X", "LEFT_EYE_Y", "NOSE_BASE_X", "NOSE_BASE_Y",
    "FACE_YAW", "FOREHEAD_VISIBLE", "EYES_VISIBLE", "NOSE_MOUTH_VISIBLE", "INDOOR",
    "GENDER", "SKIN_TONE", "AGE", "FACIAL_HAIR",
)  # fmt: skip

#: The columns facebench reads; the others may be empty or absent.
REQUIRED_COLUMNS = METADATA_COLUMNS[:5] + METADATA_COLUMNS[6:10]

#: The release's counts (PROTOCOLS.md): 10 splits, per split an inclusive range.
OFFICIAL: dict[str, Any] = {
    "n_splits": 10,
    "n_templates": (1814, 2040),
    "n_comparisons": (11648, 11869),
    "n_genuine": (1648, 1874),
}

Box = tuple[float, float, float, float]

_SPLIT_DIR = re.compile(r"split([1-9][0-9]*)")
_BOM = b"\xef\xbb\xbf"
_MAX_DIGITS = 18  # ids fit int64 (the release's are below 10**6); keeps int() cheap
_BAD_FILE_CHARS = re.compile(r"[\\\x00-\x1f\x7f]")  # a backslash or a control character


def _shown(text: str, limit: int = 120) -> str:
    """``repr(text)``, cut to ``limit`` characters: a message quotes a field, not a file."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


@dataclass(frozen=True)
class IJBAProtocol(TemplateProtocol):
    """An IJB-A :class:`~protocols._types.TemplateProtocol` that also carries its face boxes.

    Attributes
    ----------
    item_boxes : dict of str to (x, y, width, height)
        Item key -> FACE_X, FACE_Y, FACE_WIDTH, FACE_HEIGHT in pixels of the full image
        (top-left corner), for every item of every file read. Read it through :func:`boxes`.
    """

    item_boxes: dict[str, Box] = field(default_factory=dict, repr=False)


def item_key(file: str, sighting_id: int) -> str:
    """The store id of a face box: ``<FILE>#<SIGHTING_ID>``."""
    return f"{file}#{sighting_id}"


def image_path(key: str) -> str:
    """The image of an item key, relative to the IJB-A image folder (``frame/1_00300.png``).

    Raises
    ------
    InputFormatError
        When ``key`` is not ``<FILE>#<SIGHTING_ID>``.
    """
    file, sep, sighting = key.rpartition("#")
    if not sep or not file or not (sighting.isascii() and sighting.isdigit()):
        raise InputFormatError(
            f"Expected an IJB-A item key `<FILE>#<SIGHTING_ID>`, but got {key!r}"
        )
    return file


def boxes(protocol: TemplateProtocol) -> dict[str, Box]:
    """Item key -> (FACE_X, FACE_Y, FACE_WIDTH, FACE_HEIGHT) of every item ``protocol`` read.

    The box is the release's, in pixels of the full image ``image_path(key)``; the extractor
    crops it with its own margin. Only protocols returned by :func:`load` carry boxes.

    Returns
    -------
    dict of str to (float, float, float, float)
        A copy: key -> (x, y, width, height), (x, y) the top-left corner.

    Raises
    ------
    TypeError
        When ``protocol`` did not come from :func:`load`.
    """
    if not isinstance(protocol, IJBAProtocol):
        raise TypeError(
            f"Expected a protocol from protocols.ijba.load, but got {type(protocol).__name__}"
            f" {protocol.name!r}, which carries no IJB-A boxes"
        )
    return dict(protocol.item_boxes)


def find_root(protocol_dir: str | Path) -> Path:
    """The folder holding ``IJB-A_11_sets/``: ``protocol_dir`` or, if that is it, its parent.

    Raises
    ------
    InputFormatError
        When neither holds the 1:1 protocol folder.
    """
    folder = Path(protocol_dir)
    if (folder / VERIFY_DIR).is_dir():
        return folder
    if folder.name == VERIFY_DIR and folder.is_dir():
        return folder.parent
    found = "no such folder" if not folder.exists() else f"no {VERIFY_DIR}/ in it"
    raise InputFormatError(
        f"{folder}: Expected the IJB-A protocol folder that holds {VERIFY_DIR}/ (and "
        f"optionally {SEARCH_DIR}/), but got {found}; pass the folder of your IJB-A release"
    )


# --- reading --------------------------------------------------------------------------------


def _read_rows(path: Path, what: str) -> list[tuple[int, list[str]]]:
    """``(line number, fields)`` of every non-empty CSV row; empty lines may only end it."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputFormatError(f"{path}: Expected {what}, but got no such file") from None
    except OSError as err:
        raise InputFormatError(f"{path}: Expected {what}, but got {err.strerror}") from None
    if raw.startswith(_BOM):
        raw = raw[len(_BOM) :]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputFormatError(
            f"{path}: Expected UTF-8 text ({what}), but got a non-UTF-8 byte at offset {err.start}"
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[tuple[int, list[str]]] = []
    empty_line: int | None = None
    try:
        for fields in reader:
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                empty_line = empty_line or reader.line_num
                continue
            if empty_line is not None:
                raise InputFormatError(
                    located(
                        path,
                        empty_line,
                        "Expected a row, but got an empty line before more rows (only the end "
                        "of the file may have empty lines)",
                    )
                )
            rows.append((reader.line_num, fields))
    except csv.Error as err:
        raise InputFormatError(
            located(path, reader.line_num, f"Expected CSV ({what}), but got {err}")
        ) from None
    return rows


def _integer(path: Path, line_no: int, text: str, column: str) -> int:
    value = text.strip()
    if not (value.isascii() and value.isdigit() and len(value) <= _MAX_DIGITS):
        raise InputFormatError(
            located(
                path,
                line_no,
                f"Expected {column} as an integer, but got {_shown(text)}"
                + (f" (more than {_MAX_DIGITS} digits)" if len(value) > _MAX_DIGITS else ""),
            )
        )
    return int(value)


def _number(path: Path, line_no: int, text: str, column: str, positive: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or (positive and value <= 0):
        kind = "a positive number" if positive else "a finite number"
        raise InputFormatError(
            located(path, line_no, f"Expected {column} as {kind}, but got {_shown(text)}")
        )
    return value


def _image_file(path: Path, line_no: int, text: str) -> str:
    file = text.strip()
    parts = file.replace("\\", "/").split("/")  # a backslash may be meant as a separator
    if not file or file[0] in "/\\" or re.match(r"[A-Za-z]:", file) or ".." in parts:
        raise InputFormatError(
            located(
                path,
                line_no,
                "Expected FILE relative to the IJB-A image folder (img/<id>.jpg or "
                f"frame/<media>_<frame>.png), but got {_shown(text)}, which leaves that folder",
            )
        )
    if _BAD_FILE_CHARS.search(file):  # a store id cannot hold them (facebench.store.id_problem)
        raise InputFormatError(
            located(
                path,
                line_no,
                f"Expected FILE with '/' separators and no control characters, but got"
                f" {_shown(text)}; write it as the release does (img/<id>.jpg)",
            )
        )
    return file


def _row_values(
    path: Path, line_no: int, fields: list[str], columns: tuple[int, ...]
) -> tuple[int, int, int, str, Box]:
    """(TEMPLATE_ID, SUBJECT_ID, MEDIA_ID, item key, box) of a row; ``columns`` in the
    order of :data:`REQUIRED_COLUMNS`."""
    c_tid, c_sub, c_file, c_media, c_sight, c_x, c_y, c_w, c_h = columns
    tid, sub, media, sight = fields[c_tid], fields[c_sub], fields[c_media], fields[c_sight]
    file = fields[c_file].strip()
    digits = tid + sub + media + sight
    try:  # the common case in one pass; anything unusual takes the checks that name it
        box = (float(fields[c_x]), float(fields[c_y]), float(fields[c_w]), float(fields[c_h]))
        if (
            0 < len(tid) <= _MAX_DIGITS
            and 0 < len(sub) <= _MAX_DIGITS
            and 0 < len(media) <= _MAX_DIGITS
            and 0 < len(sight) <= _MAX_DIGITS
            and digits.isdigit()
            and digits.isascii()
            and box[2] > 0
            and box[3] > 0
            and math.isfinite(box[0] + box[1] + box[2] + box[3])
            and file
            and file[0] != "/"
            and ".." not in file
            and file[1:2] != ":"
            and file.isprintable()
            and "\\" not in file
        ):
            return int(tid), int(sub), int(media), item_key(file, int(sight)), box
    except ValueError:
        pass
    tid_value = _integer(path, line_no, tid, "TEMPLATE_ID")
    sub_value = _integer(path, line_no, sub, "SUBJECT_ID")
    file = _image_file(path, line_no, file)
    media_value = _integer(path, line_no, media, "MEDIA_ID")
    key = item_key(file, _integer(path, line_no, sight, "SIGHTING_ID"))
    box = (
        _number(path, line_no, fields[c_x], "FACE_X", False),
        _number(path, line_no, fields[c_y], "FACE_Y", False),
        _number(path, line_no, fields[c_w], "FACE_WIDTH", True),
        _number(path, line_no, fields[c_h], "FACE_HEIGHT", True),
    )
    return tid_value, sub_value, media_value, key, box


def _columns(path: Path, line_no: int, header: list[str]) -> dict[str, int]:
    index: dict[str, int] = {}
    for i, name in enumerate(header):
        norm = name.strip().upper()
        if norm in index and norm:
            raise InputFormatError(
                located(path, line_no, f"Expected distinct column names, but got {norm} twice")
            )
        index[norm] = i
    missing = [c for c in REQUIRED_COLUMNS if c not in index]
    if missing:
        raise InputFormatError(
            located(
                path,
                line_no,
                f"Expected an IJB-A metadata header with the columns {', '.join(METADATA_COLUMNS)}"
                f", but got no {', '.join(missing)} column in {_shown(','.join(header))}",
            )
        )
    return index


@dataclass
class _Seen:
    """Every item read so far (across files and splits): its box and where it was first met."""

    boxes: dict[str, Box] = field(default_factory=dict)
    where: dict[str, tuple[Path, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Metadata:
    templates: Templates
    repeated: int


def _parse_metadata(path: Path, seen: _Seen) -> _Metadata:
    """Templates of one metadata file, in order of first appearance, rows in file order."""
    what = "an IJB-A metadata CSV (TEMPLATE_ID,SUBJECT_ID,FILE,...)"
    rows = _read_rows(path, what)
    if not rows:
        raise InputFormatError(f"{path}: Expected {what}, but got an empty file")
    header_line, header = rows[0]
    col = _columns(path, header_line, header)
    columns = tuple(col[c] for c in REQUIRED_COLUMNS)
    n_fields = len(header)

    template_index: dict[int, int] = {}
    template_ids: list[int] = []
    subjects: list[int] = []
    subject_line: list[int] = []
    keys: list[str] = []
    rows_template: list[int] = []
    rows_media: list[int] = []
    in_template: dict[tuple[int, str], int] = {}  # (template position, key) -> line
    exact: set[tuple[str, ...]] = set()
    repeated = 0
    for line_no, fields in rows[1:]:
        if len(fields) != n_fields:
            raise InputFormatError(
                located(
                    path,
                    line_no,
                    f"Expected {n_fields} fields (as the header), but got {len(fields)}",
                )
            )
        row = tuple(fields)
        if row in exact:
            repeated += 1  # an exact copy of an earlier row: read once
            continue
        exact.add(row)
        tid, subject, media, key, box = _row_values(path, line_no, fields, columns)

        position = template_index.get(tid)
        if position is None:
            position = template_index[tid] = len(template_ids)
            template_ids.append(tid)
            subjects.append(subject)
            subject_line.append(line_no)
        elif subjects[position] != subject:
            raise InputFormatError(
                located(
                    path,
                    line_no,
                    f"Expected SUBJECT_ID {subjects[position]} for template {tid} (as on line "
                    f"{subject_line[position]}), but got {subject}; a template has one subject",
                )
            )
        first = in_template.setdefault((position, key), line_no)
        if first != line_no:
            raise InputFormatError(
                located(
                    path,
                    line_no,
                    f"Expected each face once per template, but got {key} again in template "
                    f"{tid} (first on line {first}) with other fields; one store id holds "
                    "one crop",
                )
            )
        known = seen.boxes.get(key)
        if known is None:
            seen.boxes[key] = box
            seen.where[key] = (path, line_no)
        elif known != box:
            other, other_line = seen.where[key]
            raise InputFormatError(
                located(
                    path,
                    line_no,
                    f"Expected one box per face {key}, but got {box} here and {known} at "
                    f"{other}:{other_line}; a store id must mean one crop",
                )
            )
        keys.append(key)
        rows_template.append(position)
        rows_media.append(media)
    if not keys:
        raise InputFormatError(
            located(path, header_line, "Expected template rows after the header, but got none")
        )

    templates = Templates(
        ids=np.asarray(template_ids, dtype=np.int64),
        subjects=np.asarray(subjects, dtype=np.int64),
        item_keys=tuple(keys),
        item_template=np.asarray(rows_template, dtype=np.int64),
        item_media=np.asarray(rows_media, dtype=np.int64),
    )
    return _Metadata(templates, repeated)


@dataclass(frozen=True)
class _Comparisons:
    verification: Verification
    n_self: int
    n_repeated: int


def _parse_comparisons(path: Path, templates: Templates, metadata: str) -> _Comparisons:
    """1:1 comparisons ``tid1,tid2`` (no header), labelled by the templates' subjects."""
    index = templates.index()
    left: list[int] = []
    right: list[int] = []
    pairs: set[tuple[int, int]] = set()
    n_self = n_repeated = 0
    for line_no, fields in _read_rows(path, "IJB-A comparisons `tid1,tid2` per line"):
        if len(fields) != 2:
            raise InputFormatError(
                located(
                    path,
                    line_no,
                    f"Expected 2 fields `tid1,tid2`, but got {len(fields)}:"
                    f" {_shown(','.join(fields))}",
                )
            )
        first, second = fields
        both = first + second
        short = 0 < len(first) <= _MAX_DIGITS and 0 < len(second) <= _MAX_DIGITS
        if short and both.isdigit() and both.isascii():
            tids = (int(first), int(second))
        else:
            tids = (
                _integer(path, line_no, first, "a template id"),
                _integer(path, line_no, second, "a template id"),
            )
        for tid in tids:
            if tid not in index:
                raise InputFormatError(
                    located(
                        path,
                        line_no,
                        f"Expected template ids listed in {metadata}, but got {tid}: template "
                        f"{tid} is not in {metadata} (comparisons use their own split's "
                        "templates)",
                    )
                )
        a, b = index[tids[0]], index[tids[1]]
        n_self += a == b
        pair = (min(a, b), max(a, b))
        n_repeated += pair in pairs
        pairs.add(pair)
        left.append(a)
        right.append(b)
    if not left:
        raise InputFormatError(f"{path}: Expected comparisons `tid1,tid2`, but got none")
    left_a = np.asarray(left, dtype=np.int64)
    right_a = np.asarray(right, dtype=np.int64)
    verification = Verification(
        templates=templates,
        left=left_a,
        right=right_a,
        is_same=templates.subjects[left_a] == templates.subjects[right_a],
    )
    return _Comparisons(verification, n_self, n_repeated)


# --- splits ---------------------------------------------------------------------------------


def _split_numbers(root: Path, selected: Sequence[int] | None) -> tuple[list[int], list[int]]:
    """(split numbers found, split numbers to read); found must run 1..K without a gap."""
    sets = root / VERIFY_DIR
    found = sorted(
        int(m.group(1))
        for p in sets.iterdir()
        if p.is_dir() and (m := _SPLIT_DIR.fullmatch(p.name)) is not None
    )
    if not found:
        raise InputFormatError(
            f"{sets}: Expected split folders split1 .. split{OFFICIAL['n_splits']}, but got none"
        )
    if selected is None:
        gaps = sorted(set(range(1, found[-1] + 1)) - set(found))
        if gaps:
            raise InputFormatError(
                f"{sets / f'split{gaps[0]}'}: Expected the folder of split {gaps[0]} (splits "
                f"{', '.join(map(str, found))} exist), but got no such folder"
            )
        return found, found
    chosen = sorted(set(selected))
    unknown = [s for s in chosen if s not in found]
    if unknown or not chosen:
        got = f"split {unknown[0]!r}" if unknown else "no split"
        raise InputFormatError(
            f"{sets}: Expected splits among the available {', '.join(map(str, found))}, "
            f"but got {got}"
        )
    return found, chosen


def _template_counts(templates: Templates) -> dict[str, int]:
    return {
        "n_templates": templates.n_templates,
        "n_subjects": len(set(templates.subjects.tolist())),
        "n_media": len(set(templates.item_media.tolist())),
        "n_rows": len(templates.item_keys),
        "n_items": len(set(templates.item_keys)),
    }


def _read_split(
    root: Path, number: int, with_search: bool, seen: _Seen
) -> tuple[Split, dict[str, int], list[str], list[str]]:
    """One split: (Split, its counts, the relative paths read, warnings)."""
    files: list[str] = []
    warnings: list[str] = []
    repeated = 0

    def metadata(rel: str) -> Templates:
        nonlocal repeated
        files.append(rel)
        parsed = _parse_metadata(root / rel, seen)
        if parsed.repeated:
            repeated += parsed.repeated
            warnings.append(
                f"{rel}: {parsed.repeated} rows repeat an earlier row exactly; each was read once"
            )
        return parsed.templates

    verify_dir = f"{VERIFY_DIR}/split{number}"
    verify_name = f"verify_metadata_{number}.csv"
    templates = metadata(f"{verify_dir}/{verify_name}")
    comparisons_rel = f"{verify_dir}/verify_comparisons_{number}.csv"
    files.append(comparisons_rel)
    comparisons = _parse_comparisons(root / comparisons_rel, templates, verify_name)
    verification = comparisons.verification
    n_genuine = int(verification.is_same.sum())
    counts: dict[str, int] = {"split": number, **_template_counts(templates)}
    counts.update(
        n_comparisons=int(verification.left.size),
        n_genuine=n_genuine,
        n_impostor=int(verification.left.size) - n_genuine,
        n_self_comparisons=comparisons.n_self,
        n_repeated_comparisons=comparisons.n_repeated,
    )
    if comparisons.n_self:
        warnings.append(
            f"{comparisons_rel}: {comparisons.n_self} comparisons of a template with itself"
            " (kept, as the file lists them)"
        )
    if comparisons.n_repeated:
        warnings.append(
            f"{comparisons_rel}: {comparisons.n_repeated} comparisons listed again (kept, "
            "as the file lists them)"
        )
    identification: tuple[Identification, ...] = ()
    if with_search:
        search_dir = f"{SEARCH_DIR}/split{number}"
        gallery = metadata(f"{search_dir}/search_gallery_{number}.csv")
        probe = metadata(f"{search_dir}/search_probe_{number}.csv")
        mated = np.isin(probe.subjects, gallery.subjects)
        counts.update(
            n_gallery_templates=gallery.n_templates,
            n_probe_templates=probe.n_templates,
            n_mated_probes=int(mated.sum()),
            n_nonmated_probes=int((~mated).sum()),
            n_gallery_rows=len(gallery.item_keys),
            n_probe_rows=len(probe.item_keys),
        )
        shared = np.intersect1d(gallery.ids, probe.ids)
        if shared.size:
            warnings.append(
                f"split {number}: {shared.size} template ids are both gallery and probe "
                f"(first: {int(shared[0])})"
            )
        identification = (Identification("gallery", gallery, probe),)
    counts["repeated_rows_dropped"] = repeated
    return Split(number, verification, identification), counts, files, warnings


def release_differences(counts: dict[str, Any]) -> list[str]:
    """How ``counts`` (the shape of ``TemplateProtocol.counts``) differ from the release's.

    Returns
    -------
    list of str
        One sentence per difference ("3 splits found, the release has 10"; "split 2: 40
        comparisons, the release has 11,648-11,869"), empty for a complete release.
    """
    out: list[str] = []
    n_found = counts["total"]["n_splits_found"]
    if n_found != OFFICIAL["n_splits"]:
        out.append(f"{n_found} splits found, the release has {OFFICIAL['n_splits']}")
    what = {"n_templates": "templates", "n_comparisons": "comparisons"}
    what["n_genuine"] = "genuine comparisons"
    for split in counts["splits"]:
        for name, label in what.items():
            low, high = OFFICIAL[name]
            if not low <= split[name] <= high:
                out.append(
                    f"split {split['split']}: {split[name]:,} {label}, the release has "
                    f"{low:,}-{high:,}"
                )
    return out


def _total(
    per_split: list[dict[str, int]], found: list[int], splits: list[Split]
) -> dict[str, int]:
    total: dict[str, int] = {"n_splits": len(per_split), "n_splits_found": len(found)}
    for counts in per_split:
        for name, value in counts.items():
            if name != "split":
                total[name] = total.get(name, 0) + value
    # subjects, media and items are global in IJB-A: count distinct ones over all files
    subjects: set[int] = set()
    media: set[int] = set()
    keys: set[str] = set()
    for split in splits:
        searches = [(s.gallery_templates, s.probe_templates) for s in split.identification]
        verification = [split.verification.templates] if split.verification else []
        for templates in verification + [t for pair in searches for t in pair]:
            subjects.update(templates.subjects.tolist())
            media.update(templates.item_media.tolist())
            keys.update(templates.item_keys)
    total.update(n_subjects=len(subjects), n_media=len(media), n_items=len(keys))
    return total


def load(protocol_dir: str | Path, *, splits: Sequence[int] | None = None) -> IJBAProtocol:
    """Parse a user's IJB-A protocol folder into 1:1 (and, when present, 1:N) splits.

    Parameters
    ----------
    protocol_dir : str or Path
        The folder holding ``IJB-A_11_sets/`` (optionally ``IJB-A_1N_sets/``), or
        ``IJB-A_11_sets`` itself.
    splits : sequence of int, optional
        The splits to read (1-based); default every ``splitN`` folder, which must run from
        1 without a gap.

    Returns
    -------
    IJBAProtocol
        ``splits`` in increasing order, each with its verification and, when
        ``IJB-A_1N_sets/`` exists, one identification (``gallery="gallery"``).
        ``counts`` is ``{"splits": [...], "total": {...}}``; per split: ``n_templates``,
        ``n_subjects``, ``n_media``, ``n_rows`` (membership rows kept) and ``n_items``
        (distinct keys) of the verify metadata; ``n_comparisons``, ``n_genuine``,
        ``n_impostor``, ``n_self_comparisons``, ``n_repeated_comparisons``;
        ``repeated_rows_dropped`` over the split's files; with 1:N ``n_gallery_templates``,
        ``n_probe_templates``, ``n_mated_probes``, ``n_nonmated_probes``,
        ``n_gallery_rows``, ``n_probe_rows``. ``total`` sums them over the splits read,
        except ``n_subjects``, ``n_media`` and ``n_items``: distinct over every file read
        (``n_items`` = ``len(protocol.items)``); ``n_splits`` (read) and
        ``n_splits_found``. ``warnings`` name repeated rows and every difference from the
        release's counts. ``sha256`` is :func:`~protocols._types.files_sha256` of exactly
        the files read (``files``, relative to the folder holding ``IJB-A_11_sets``).

    Raises
    ------
    InputFormatError
        Naming the file (and line): a missing folder or file, a malformed row, a template
        absent from the metadata, inconsistent subjects or boxes, a FILE leaving the image
        folder, an unknown split.
    """
    root = find_root(protocol_dir)
    found, chosen = _split_numbers(root, splits)
    with_search = (root / SEARCH_DIR).exists()
    seen = _Seen()
    parsed: list[Split] = []
    per_split: list[dict[str, int]] = []
    files: list[str] = []
    warnings: list[str] = []
    for number in chosen:
        split, counts, split_files, split_warnings = _read_split(root, number, with_search, seen)
        parsed.append(split)
        per_split.append(counts)
        files += split_files
        warnings += split_warnings
    counts_all: dict[str, Any] = {"splits": per_split}
    counts_all["total"] = _total(per_split, found, parsed)
    if chosen != found:
        warnings.append(
            f"only splits {', '.join(map(str, chosen))} of the {len(found)} found were read"
        )
    warnings += release_differences(counts_all)
    return IJBAProtocol(
        name=NAME,
        source=str(root),
        sha256=files_sha256(root, files),
        splits=tuple(parsed),
        counts=counts_all,
        warnings=tuple(warnings),
        files=tuple(files),
        item_boxes=seen.boxes,
    )
