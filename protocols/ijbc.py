"""IJB-B and IJB-C: 1:1 template verification and 1:N open-set search (insightface's meta files).

The licensed NIST metadata is never shipped: users point ``--protocol-dir`` at their own copy
of the files that insightface distributes (``recognition/_evaluation_/ijb``)::

    <protocol_dir>/loose_crop/<image_name>             the crops (store id loose_crop/<name>)
    <protocol_dir>/meta/ijbc_face_tid_mid.txt          image_name template_id media_id
    <protocol_dir>/meta/ijbc_template_pair_label.txt   template_id_1 template_id_2 label (1 / 0)
    <protocol_dir>/meta/ijbc_name_5pts_score.txt       image_name x1 y1 ... x5 y5 detector_score
    <protocol_dir>/meta/ijbc_1N_gallery_G1.csv         1:N, optional (all three or none)
    <protocol_dir>/meta/ijbc_1N_gallery_G2.csv
    <protocol_dir>/meta/ijbc_1N_probe_mixed.csv

IJB-B: the prefix ``ijbb`` and the galleries ``S1`` and ``S2``. Each file is found by name in
``meta/`` or directly in ``protocol_dir`` (both at once is an error: which one is meant?).

Conventions:

- The ``.txt`` files: fields separated by ASCII whitespace, LF (the release) or CRLF line
  ends, blank lines ignored; line numbers in errors are the file's physical lines.
- Each ``tid_mid`` line is one loose crop (the release names them ``1.jpg``, ``2.jpg``, ... and
  insightface pairs the line with the landmarks line of the same position), so an image name
  occurs once. A line repeated exactly is kept once, counted and warned about (the rule of
  IJB-A in PROTOCOLS.md); the same name with another template or media is an error.
- Landmarks and detector scores are joined to ``tid_mid`` by image name, never by line order;
  an image without a landmarks line is an error, a landmarks line for no image a warning.
- A 1:1 template is every ``tid_mid`` row with its template id; ``Templates.ids`` are sorted
  ascending; ``item_score`` is the detector score; subjects come from the 1:N files when they
  are read (else -1): the pair file's labels define 1:1, and a label that disagrees with the
  subjects is reported as a warning.
- 1:N (insightface ``ijb_1n.py``; NIST's CSVs): one CSV row per face sighting on the
  original media (``FILENAME`` is a full image or a video frame, not a loose crop); only the
  first two columns, TEMPLATE_ID and SUBJECT_ID, are read (as insightface does). A 1:N
  template is made of the ``tid_mid`` rows with the same template id (insightface's
  ``image2template_feature`` selects them from the ``tid_mid`` arrays), so the 1:N templates
  are 1:1 templates (IJB-C: 1,772 + 1,759 gallery and 19,593 probe templates = 23,124). Each
  gallery is one :class:`Identification` whose probes are all of ``probe_mixed``; a probe is
  mated when its subject has a template in that gallery. insightface searches G1 and G2 as
  one gallery; facebench reports each gallery and their mean (PROTOCOLS.md "Reports").

Parsing is vectorized (numpy over the file's bytes, in 1 MiB chunks; template ids -> positions
by a lookup table): the whole IJB-C 1:1 load, 15.7 M pairs included, takes about 4-5 s on a
2-core VM. Lines are only examined one by one to name the first bad line
of a chunk that failed the bulk checks. The readers of the files' text (the vectorized
table reader, the 1:N CSV reader) are :mod:`protocols._text`; this module gives the columns
their meaning and checks the protocol.
"""

from __future__ import annotations

import dataclasses
import hashlib
import mmap
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from facebench import cache
from facebench.errors import InputFormatError, located
from protocols._text import (
    _BadRow,
    _decode_names,
    _drop_repeats,
    _first_bad,
    _parse_csv,
    _parse_table,
    _read,
    _Table,
)
from protocols._types import (
    DeferredTemplateProtocol,
    Identification,
    Split,
    TemplateProtocol,
    Templates,
    Verification,
    files_sha256,
)

__all__ = [
    "VARIANTS",
    "Landmarks",
    "Variant",
    "landmarks",
    "load_ijb",
    "load_ijbb",
    "load_ijbc",
    "read_landmarks",
]

IntArray = npt.NDArray[np.int64]
AnyIntArray = npt.NDArray[np.integer[Any]]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Variant:
    """One release: its file prefix, gallery names and official counts."""

    name: str
    galleries: tuple[str, str]
    official: dict[str, int]

    @property
    def tid_mid(self) -> str:
        """File name of the image -> template, media table."""
        return f"{self.name}_face_tid_mid.txt"

    @property
    def pairs(self) -> str:
        """File name of the 1:1 template pairs."""
        return f"{self.name}_template_pair_label.txt"

    @property
    def landmarks(self) -> str:
        """File name of the landmarks and detector scores."""
        return f"{self.name}_name_5pts_score.txt"

    def gallery(self, gallery: str) -> str:
        """File name of a 1:N gallery."""
        return f"{self.name}_1N_gallery_{gallery}.csv"

    @property
    def probes(self) -> str:
        """File name of the 1:N probes."""
        return f"{self.name}_1N_probe_mixed.csv"


#: The releases (insightface's meta files). Counts: the papers and peers' printed shapes
#: (IJB-B's 227,630 image lines and both 1:N totals as keras_insightface prints them).
VARIANTS: dict[str, Variant] = {
    "ijbc": Variant(
        "ijbc",
        ("G1", "G2"),
        {
            "images": 469_375,
            "templates": 23_124,
            "pairs": 15_658_489,
            "genuine": 19_557,
            "gallery_templates": 3_531,
            "probe_templates": 19_593,
        },
    ),
    "ijbb": Variant(
        "ijbb",
        ("S1", "S2"),
        {
            "images": 227_630,
            "templates": 12_115,
            "pairs": 8_010_270,
            "genuine": 10_270,
            "gallery_templates": 1_845,
            "probe_templates": 10_270,
        },
    ),
}

_N_SHOWN = 5


# -- reading files --------------------------------------------------------------------------


def _locate(root: Path, name: str) -> str | None:
    """The path of ``name`` relative to ``root`` (``meta/<name>`` or ``<name>``), or None."""
    found = [rel for rel in (f"meta/{name}", name) if (root / rel).is_file()]
    if len(found) == 2:
        raise InputFormatError(
            f"{root}: Expected one copy of {name}, but got both meta/{name} and {name}; "
            "remove one of them"
        )
    return found[0] if found else None


# -- the 1:N files --------------------------------------------------------------------------


@dataclass(frozen=True)
class _SearchSet:
    """One 1:N file: its distinct templates (sorted) and their subjects."""

    name: str
    ids: IntArray
    subjects: IntArray
    lines: IntArray  # the first line of each template
    n_rows: int


def _read_search_set(
    path: Path, data: bytes, name: str, known: IntArray, tid_rel: str
) -> _SearchSet:
    templates, subjects, lines = _parse_csv(path, data)
    order = np.argsort(templates, kind="stable")
    ids, first = np.unique(templates[order], return_index=True)
    subject_of = subjects[order][first]
    # each row's subject against its template's first one
    conflict = subjects[order] != np.repeat(subject_of, np.diff(np.append(first, order.size)))
    if conflict.any():
        row = int(order[np.argmax(conflict)])
        tid = int(templates[row])
        raise InputFormatError(
            located(
                path,
                int(lines[row]),
                f"Expected one subject per template, but template {tid} has subject "
                f"{int(subjects[row])} here and {int(subject_of[np.searchsorted(ids, tid)])} "
                "on an earlier line",
            )
        )
    pos = np.minimum(np.searchsorted(known, ids), known.size - 1)
    absent = known[pos] != ids
    if absent.any():
        tid = int(ids[np.argmax(absent)])
        row = int(np.argmax(templates == tid))
        raise InputFormatError(
            located(
                path,
                int(lines[row]),
                f"Expected template ids that have images in {tid_rel}, but template {tid} has none",
            )
        )
    return _SearchSet(name, ids, subject_of, lines[order][first], int(templates.size))


# -- assembling the protocol ----------------------------------------------------------------


def _landmark_table(
    path: Path, digests: dict[Path, str] | None = None
) -> tuple[list[str], _Table, npt.NDArray[np.bool_]]:
    """Names (repeats dropped), the parsed table, and the keep mask of its rows."""
    table = _parse_table(
        path, _read(path, digests), ("name",) + ("float",) * 11, "image_name x1 y1 ... x5 y5 score"
    )
    names = _decode_names(path, table)
    _first_bad(
        path,
        table,
        ~np.isfinite(table.values).all(axis=1),
        lambda row: (
            "Expected finite landmark coordinates and detector score, but got "
            f"{table.values[row].tolist()}"
        ),
    )
    keep = _drop_repeats(path, names, table, "one line per image")
    return _kept(names, keep), table, keep


def _kept(names: list[str], keep: npt.NDArray[np.bool_]) -> list[str]:
    if keep.all():
        return names
    return [name for name, k in zip(names, keep.tolist(), strict=True) if k]


def _repeats_warning(rel: str, table: _Table, keep: npt.NDArray[np.bool_]) -> list[str]:
    n_repeated = int(keep.size - keep.sum())
    if not n_repeated:
        return []
    return [
        f"{rel}: {n_repeated} exactly repeated lines were dropped (each kept once; the first "
        f"on line {table.line(int(np.argmin(keep)))})"
    ]


def _detector_scores(
    root: Path,
    tid_rel: str,
    pts_rel: str,
    names: list[str],
    warnings: list[str],
    digests: dict[Path, str],
) -> tuple[npt.NDArray[np.float64], dict[str, int]]:
    """Each tid_mid image's detector score, joined by name; and the landmarks counts."""
    pts_names, pts, pts_keep = _landmark_table(root / pts_rel, digests)
    warnings += _repeats_warning(pts_rel, pts, pts_keep)
    if pts_names == names:  # the release: the same images in the same order
        scores = pts.values[pts_keep, 10]
    else:
        row_of = dict(zip(pts_names, range(len(pts_names)), strict=True))
        where = [row_of.get(name, -1) for name in names]
        lacking = [name for name, row in zip(names, where, strict=True) if row < 0]
        if lacking:
            raise InputFormatError(
                f"{root / pts_rel}: Expected a landmarks line for every image of {tid_rel}, "
                f"but {len(lacking)} have none (first {min(len(lacking), _N_SHOWN)}: "
                f"{', '.join(lacking[:_N_SHOWN])})"
            )
        scores = pts.values[pts_keep, 10][where]
        if len(pts_names) > len(names):
            warnings.append(
                f"{pts_rel}: {len(pts_names) - len(names)} landmarks lines name no image of "
                f"{tid_rel}"
            )
    return scores, {"lines": pts.n_rows, "dropped": int(pts_keep.size - pts_keep.sum())}


TID_CACHE_VERSION = 1
"""Bumped whenever the tid_mid parser could read a file differently."""


def _cached_tid(digest: str) -> tuple[str, IntArray, IntArray] | None:
    """A tid_mid file parsed before (cached only when it had no repeated lines): its names
    (one per line), template ids and media ids; None when not cached or when an entry fails
    the checks a parse makes (then the file is parsed again)."""
    values = cache.load_table("ijb-tid", TID_CACHE_VERSION, digest, 2)
    text = None if values is None else cache.load_text("ijb-tid", TID_CACHE_VERSION, digest)
    if values is None or text is None:
        cache.discard("ijb-tid", TID_CACHE_VERSION, digest)  # half an entry: start afresh
        return None
    n_names = text.count("\n") + 1 if text else 0
    if n_names != values.shape[0] or (values.size and int(values.min()) < 0):
        cache.discard("ijb-tid", TID_CACHE_VERSION, digest)
        return None
    as64: IntArray = values.astype(np.int64)
    return text, as64[:, 0].copy(), as64[:, 1].copy()


def _prefixed(prefix: str, lines: str) -> tuple[str, ...]:
    """``prefix`` + each line of ``lines`` (names joined by line breaks): three passes
    over one string instead of a string built per name (0.03 s instead of 0.1 s for
    IJB-C's 469,375 names)."""
    if not lines:
        return ()
    return tuple((prefix + lines.replace("\n", "\n" + prefix)).split("\n"))


def _images(
    root: Path,
    tid_rel: str,
    pts_rel: str | None,
    warnings: list[str],
    digests: dict[Path, str],
) -> tuple[Templates, dict[str, Any]]:
    """Every tid_mid template with its images, media and (with ``pts_rel``) detector
    scores; subjects -1."""
    path = root / tid_rel
    # A file unchanged since it was hashed is neither read nor hashed again when its parse
    # is cached (facebench.cache.file_sha256); else it is read whole and hashed.
    digest = cache.file_sha256(path, _mapped_sha256)
    found_in_cache = _cached_tid(digest)
    if found_in_cache is not None:
        digests[path] = digest
        lines, template_of, media_of = found_in_cache
        n_lines, n_dropped = template_of.size, 0
    else:
        data = _read(path, digests)  # the digest of exactly the bytes parsed
        table = _parse_table(path, data, ("name", "int", "int"), "image_name template_id media_id")
        _first_bad(
            path,
            table,
            (table.values < 0).any(axis=1),
            lambda row: (
                "Expected non-negative template and media ids, but got "
                f"{int(table.values[row, 0])} {int(table.values[row, 1])}"
            ),
        )
        all_names = _decode_names(path, table)
        keep = _drop_repeats(path, all_names, table, "each line is one loose crop")
        names = _kept(all_names, keep)
        warnings += _repeats_warning(tid_rel, table, keep)
        template_of, media_of = table.values[keep, 0], table.values[keep, 1]
        n_lines, n_dropped = table.n_rows, int(keep.size - keep.sum())
        lines = "\n".join(names)
        if not n_dropped:  # a file without repeats: its names, templates and media cached
            cache.save_table("ijb-tid", TID_CACHE_VERSION, digests[path], table.values)
            cache.save_text("ijb-tid", TID_CACHE_VERSION, digests[path], lines)
    scores = None
    dropped = {"tid_mid": n_dropped}
    landmark_counts: dict[str, int] = {}
    if pts_rel is not None:
        names = lines.split("\n") if lines else []
        scores, found = _detector_scores(root, tid_rel, pts_rel, names, warnings, digests)
        landmark_counts["landmark_lines"] = found["lines"]
        dropped["landmarks"] = found["dropped"]
    ids, position = np.unique(template_of, return_inverse=True)
    templates = Templates(
        ids=ids,
        subjects=np.full(ids.size, -1, dtype=np.int64),
        item_keys=_prefixed("loose_crop/", lines),
        item_template=position.astype(np.int64),
        item_media=media_of,
        item_score=scores,
    )
    counts = {
        "image_lines": n_lines,
        "images": int(template_of.size),
        "templates": int(ids.size),
        "media": _n_distinct(media_of),
        **landmark_counts,
        "repeated_lines_dropped": dropped,
    }
    return templates, counts


def _lookup(ids: IntArray) -> Callable[[IntArray], IntArray]:
    """A function: template ids -> positions in ``ids`` (sorted, distinct, >= 0), -1 if absent.

    A dense table when the ids are small (the release's are below 200,000): one gather per
    pair instead of a binary search (0.04 s instead of 1.6 s for IJB-C's 2 x 15.7 M ids).
    """
    top = int(ids[-1])
    if top < max(1 << 22, 8 * ids.size):
        table = np.full(top + 2, -1, dtype=np.int64)  # the last entry answers out-of-range ids
        table[ids] = np.arange(ids.size)
        return lambda wanted: table[np.clip(wanted, -1, top + 1)]

    def search(wanted: IntArray) -> IntArray:
        pos = np.minimum(np.searchsorted(ids, wanted), ids.size - 1)
        return np.where(ids[pos] == wanted, pos, -1)

    return search


PAIRS_CACHE_VERSION = 2
"""Bumped whenever the pair parser could read a file differently, or the entry's layout
changes (2: one row per column, memory-mapped); old entries are unused."""


def _mapped_sha256(path: Path) -> str:
    """The sha256 of every byte of the file, hashed from a read-only memory map (no copy of
    the file in memory; :func:`protocols._text._read` hashes the same bytes)."""
    try:
        with open(path, "rb") as handle:
            if os.fstat(handle.fileno()).st_size == 0:
                return hashlib.sha256(b"").hexdigest()
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                return hashlib.sha256(mapped).hexdigest()
    except OSError as err:
        raise InputFormatError(f"{path}: cannot read the file ({err.strerror})") from None


def _pairs(
    root: Path,
    pairs_rel: str,
    ids: IntArray,
    tid_rel: str,
    digests: dict[Path, str],
) -> tuple[AnyIntArray, AnyIntArray, npt.NDArray[np.bool_], _Table]:
    """Positions in ``ids`` of both templates of each pair, is_same, the parsed table
    (the pair file's sha256 already in ``digests``: a cached parse is found by it; a file
    parsed is read whole and its digest taken again from the bytes parsed).

    A file without blank lines is parsed once per content: the result (both positions
    and the label of each pair) is kept in :mod:`facebench.cache` under the sha256 of the
    pair file and of the template ids, the only inputs it depends on; a cached table is
    used only if every value is one a parse can give, else the file is parsed again.
    """
    path = root / pairs_rel
    position = _lookup(ids)
    ids_digest = hashlib.sha256(ids.astype("<i8").tobytes()).hexdigest()

    def cache_key() -> str:  # the positions depend on the pair file and the template ids
        return hashlib.sha256(f"{digests[path]} {ids_digest}".encode()).hexdigest()

    key = cache_key()
    cached = cache.load_columns("ijb-pairs", PAIRS_CACHE_VERSION, key, 3)
    if cached is not None:
        found = _checked_positions(cached, ids.size)
        if found is None:
            cache.discard("ijb-pairs", PAIRS_CACHE_VERSION, key)
        else:
            n = cached.shape[0]
            table = _Table([], np.empty((0, 3), dtype=np.int64), [0], [0], [None], n)
            return (*found, table)
    data = _read(path, digests)  # the digest of exactly the bytes parsed
    key = cache_key()
    n_max = data.count(b"\n") + 1
    left = np.empty(n_max, dtype=np.int64)
    right = np.empty(n_max, dtype=np.int64)
    is_same = np.empty(n_max, dtype=bool)

    def sink(rows: IntArray, first: int) -> None:
        label = rows[:, 2]
        bad = (label != 0) & (label != 1)
        if bad.any():
            row = int(np.argmax(bad))
            raise _BadRow(
                first + row,
                f"Expected the label 1 (genuine) or 0 (impostor), but got {int(label[row])}",
            )
        for column, out in ((0, left), (1, right)):
            pos = position(rows[:, column])
            if (pos < 0).any():
                row = int(np.argmax(pos < 0))
                raise _BadRow(
                    first + row,
                    f"Expected template ids listed in {tid_rel}, but template "
                    f"{int(rows[row, column])} has no image there",
                )
            out[first : first + rows.shape[0]] = pos
        is_same[first : first + rows.shape[0]] = label == 1

    table = _parse_table(path, data, ("int",) * 3, "template_id_1 template_id_2 label", sink)
    n = table.n_rows
    if all(filled is None for filled in table.chunk_filled):  # row r is line r + 1
        # One column per row of the table: each is a contiguous slice of the mapped file.
        positions = np.empty((3, n), dtype=np.int32 if ids.size < 2**31 else np.int64)
        positions[0], positions[1], positions[2] = left[:n], right[:n], is_same[:n]
        cache.save_table("ijb-pairs", PAIRS_CACHE_VERSION, key, positions)
    return left[:n], right[:n], is_same[:n], table


def _n_distinct(values: IntArray) -> int:
    """How many distinct values (by one sort: numpy's hash-table ``np.unique`` takes ten
    times longer on IJB-C's 469,375 media ids)."""
    ordered = np.sort(values)
    return int(np.count_nonzero(ordered[1:] != ordered[:-1])) + 1 if ordered.size else 0


def _checked_positions(
    found: AnyIntArray, n_templates: int
) -> tuple[AnyIntArray, AnyIntArray, npt.NDArray[np.bool_]] | None:
    """A cached (left, right, label) table, shape (3, P), as the parse's arrays: the
    positions as the table's own (read-only, memory-mapped) rows, int32 for any protocol
    of fewer than 2**31 templates; None unless every value is one a parse can give
    (positions in range, labels 0/1)."""
    left, right, label = found[0], found[1], found[2]
    if left.size:
        for column in (left, right):
            if int(column.min()) < 0 or int(column.max()) >= n_templates:
                return None
        if int(label.min()) < 0 or int(label.max()) > 1:
            return None
    return left, right, label == 1


def _subset(templates: Templates, ids: IntArray, subjects: IntArray) -> Templates:
    """The templates ``ids`` (sorted, all in ``templates.ids``) with their rows, in file order."""
    where = np.searchsorted(templates.ids, ids)
    new_index = np.full(templates.n_templates, -1, dtype=np.int64)
    new_index[where] = np.arange(ids.size)
    rows = np.flatnonzero(new_index[templates.item_template] >= 0)
    score = templates.item_score
    return Templates(
        ids=ids,
        subjects=subjects,
        item_keys=tuple(templates.item_keys[i] for i in rows.tolist()),
        item_template=new_index[templates.item_template[rows]],
        item_media=templates.item_media[rows],
        item_score=None if score is None else score[rows],
    )


def _identification(
    root: Path,
    rels: list[str],
    names: list[str],
    templates: Templates,
    tid_rel: str,
    digests: dict[Path, str],
) -> tuple[Templates, tuple[Identification, ...], dict[str, Any], list[str]]:
    """The 1:N searches; ``rels``/``names``: the galleries' files and names, then the probes'.

    Returns the templates with their subjects filled in, one Identification per gallery,
    the counts and the warnings.
    """
    subjects = np.full(templates.n_templates, -1, dtype=np.int64)
    sets = []
    for name, rel in zip(names, rels, strict=True):
        found = _read_search_set(
            root / rel, _read(root / rel, digests), name, templates.ids, tid_rel
        )
        where = np.searchsorted(templates.ids, found.ids)
        clash = (subjects[where] >= 0) & (subjects[where] != found.subjects)
        if clash.any():
            i = int(np.argmax(clash))
            raise InputFormatError(
                located(
                    root / rel,
                    int(found.lines[i]),
                    "Expected one subject per template across the 1:N files, but template "
                    f"{int(found.ids[i])} has subject {int(found.subjects[i])} here and "
                    f"{int(subjects[where[i]])} in an earlier file",
                )
            )
        subjects[where] = found.subjects
        sets.append(found)
    warnings = []
    if sum(s.ids.size for s in sets) != np.count_nonzero(subjects >= 0):
        warnings.append("1:N: some templates are listed in more than one of the 1:N files")
    templates = dataclasses.replace(templates, subjects=subjects)
    probe_set = sets[-1]
    probes = _subset(templates, probe_set.ids, probe_set.subjects)
    searches = []
    galleries: dict[str, Any] = {}
    for gallery_set in sets[:-1]:
        gallery = _subset(templates, gallery_set.ids, gallery_set.subjects)
        searches.append(Identification(gallery_set.name, gallery, probes))
        mated = int(np.isin(probe_set.subjects, gallery_set.subjects).sum())
        n_subjects = int(np.unique(gallery_set.subjects).size)
        galleries[gallery_set.name] = {
            "templates": int(gallery_set.ids.size),
            "subjects": n_subjects,
            "rows": gallery_set.n_rows,
            "mated_probes": mated,
            "non_mated_probes": int(probe_set.ids.size) - mated,
        }
        if n_subjects != gallery_set.ids.size:
            warnings.append(
                f"1:N gallery {gallery_set.name}: {gallery_set.ids.size} templates of "
                f"{n_subjects} subjects (the release has one template per subject)"
            )
    counts = {
        "galleries": galleries,
        "probe_templates": int(probe_set.ids.size),
        "probe_rows": probe_set.n_rows,
    }
    return templates, tuple(searches), counts, warnings


def _label_check(
    subject: IntArray,
    left: AnyIntArray,
    right: AnyIntArray,
    is_same: npt.NDArray[np.bool_],
    rel: str,
    table: _Table,
) -> list[str]:
    """A warning when pair labels disagree with the subjects the 1:N files give."""
    n_disagree, first = 0, -1
    step = 1 << 20  # blocks: no 15.7 M-long temporaries
    for start in range(0, is_same.size, step):
        a, b = subject[left[start : start + step]], subject[right[start : start + step]]
        disagree = (a >= 0) & (b >= 0) & ((a == b) != is_same[start : start + step])
        if disagree.any():
            n_disagree += int(disagree.sum())
            first = start + int(np.argmax(disagree)) if first < 0 else first
    if not n_disagree:
        return []
    return [
        f"{rel}: {n_disagree} pair labels disagree with the 1:N files' subjects (first on "
        f"line {table.line(first)})"
    ]


def _official_warnings(variant: Variant, observed: dict[str, int]) -> list[str]:
    differ = [
        f"{key} {observed[key]:,} (official {variant.official[key]:,})"
        for key in variant.official
        if key in observed and observed[key] != variant.official[key]
    ]
    if not differ:
        return []
    return [
        f"{variant.name}: the counts differ from the official release: {'; '.join(differ)}; "
        "numbers are not comparable with published results"
    ]


def _search_files(root: Path, spec: Variant, identification: bool | None) -> list[str]:
    """The 1:N files' relative paths (galleries, then probes), or [] for 1:1 only."""
    names = [spec.gallery(g) for g in spec.galleries] + [spec.probes]
    found = {name: _locate(root, name) for name in names} if identification is not False else {}
    missing = [name for name, rel in found.items() if rel is None]
    if identification is None and len(missing) == len(names):
        return []
    if missing:
        raise InputFormatError(
            f"{root / 'meta'}: Expected the 1:N files {', '.join(names)}, but "
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing; add them, or "
            "remove the others to evaluate 1:1 only"
        )
    return [rel for rel in found.values() if rel is not None]


def load_ijb(
    protocol_dir: str | Path | None,
    variant: str,
    *,
    identification: bool | None = None,
    detector_scores: bool = True,
    defer_pairs: bool = False,
) -> Any:
    """Parse an IJB-B or IJB-C protocol folder into one split of 1:1 pairs and 1:N searches.

    Parameters
    ----------
    protocol_dir : str or Path
        The folder holding ``meta/`` (and ``loose_crop/``), see the module docstring.
    variant : {"ijbc", "ijbb"}
        The release.
    identification : bool or None
        Read the 1:N files: None when any of the three exists (then all must), True requires
        them, False skips them (they are then neither read nor part of ``sha256``).
    detector_scores : bool
        Read the landmarks file for the detector scores (``item_score``; insightface's
        pooling weighs by them). False leaves ``item_score`` None and the file unread (nor
        part of ``sha256``): the other pooling modes do not use it.
    defer_pairs : bool
        Return a :class:`DeferredTemplateProtocol` as soon as the image list and the 1:N
        files are parsed, the pair file still being read in a thread (its errors are raised
        by ``result()``); its ``result()`` is what ``False`` returns.

    Returns
    -------
    TemplateProtocol (or DeferredTemplateProtocol)
        ``name`` = variant, one :class:`Split` (``split`` = 1) holding the 1:1
        :class:`Verification` (every ``tid_mid`` template; ``left``/``right`` index its
        sorted ``ids``) and, with 1:N, one :class:`Identification` per gallery ("G1", "G2"
        or "S1", "S2") sharing the probe templates. ``files``: the relative paths read;
        ``sha256`` = ``files_sha256`` of them. ``counts``: image_lines, images, templates,
        media, landmark_lines, repeated_lines_dropped {tid_mid, landmarks}, pairs, genuine,
        impostor and, with 1:N, identification {galleries {name: {templates, subjects, rows,
        mated_probes, non_mated_probes}}, probe_templates, probe_rows}. ``warnings``: repeated
        lines, unused landmarks, differences from the official counts, ...

    Raises
    ------
    InputFormatError
        A missing file (naming the expected path) or a bad line ("file:line: Expected ...,
        but got ...").
    """
    spec = VARIANTS[variant]
    label = variant.upper().replace("IJB", "IJB-")
    if protocol_dir is None:
        raise InputFormatError(
            f"{label} is licensed and not shipped: pass --protocol-dir, the folder holding "
            f"meta/{spec.tid_mid}"
        )
    root = Path(protocol_dir)
    if not root.is_dir():
        raise InputFormatError(f"{root}: Expected the {label} protocol folder (with meta/)")
    required = []
    wanted = (spec.tid_mid, spec.pairs, spec.landmarks)
    for name in wanted if detector_scores else wanted[:2]:
        rel = _locate(root, name)
        if rel is None:
            raise InputFormatError(
                f"{root / 'meta' / name}: no such file; {label} needs meta/{name} in the "
                "protocol folder (insightface's meta files)"
            )
        required.append(rel)
    tid_rel, pairs_rel = required[:2]
    pts_rel = required[2] if detector_scores else None
    search_rels = _search_files(root, spec, identification)

    warnings: list[str] = []
    digests: dict[Path, str] = {}
    # The pair file (233 MB for IJB-C) is hashed, then its positions loaded or parsed, in a
    # thread while the image list and the 1:N files are parsed (hashing and numpy's large
    # operations run without the GIL); with the digest a parse cached before is found
    # without reading the file into memory. With ``defer_pairs`` the caller goes on (pools
    # the templates) while the thread works.
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="facebench-pairs")
    try:
        pair_digest = pool.submit(cache.file_sha256, root / pairs_rel, _mapped_sha256)
        templates, counts = _images(root, tid_rel, pts_rel, warnings, digests)
        ids = templates.ids

        def pairs_of() -> tuple[AnyIntArray, AnyIntArray, npt.NDArray[np.bool_], _Table, str]:
            # _pairs records the digest of the bytes it parses, when it reads the file
            local = {root / pairs_rel: pair_digest.result()}
            found = _pairs(root, pairs_rel, ids, tid_rel, local)
            return (*found, local[root / pairs_rel])

        pair_task = pool.submit(pairs_of)
    finally:
        pool.shutdown(wait=False)
    searches: tuple[Identification, ...] = ()
    found: dict[str, Any] = {}
    if search_rels:
        search_names = [*spec.galleries, "probe_mixed"]
        templates, searches, found, notes = _identification(
            root, search_rels, search_names, templates, tid_rel, digests
        )
        warnings += notes
    files = [tid_rel, pairs_rel, *([] if pts_rel is None else [pts_rel]), *search_rels]

    def finish() -> TemplateProtocol:
        left, right, is_same, pair_table, digest = pair_task.result()
        digests[root / pairs_rel] = digest
        counts.update(
            pairs=int(is_same.size),
            genuine=int(is_same.sum()),
            impostor=int(is_same.size - is_same.sum()),
        )
        observed = {key: counts[key] for key in ("images", "templates", "pairs", "genuine")}
        if search_rels:
            counts["identification"] = found
            observed["gallery_templates"] = sum(g["templates"] for g in found["galleries"].values())
            observed["probe_templates"] = found["probe_templates"]
            warnings.extend(
                _label_check(templates.subjects, left, right, is_same, pairs_rel, pair_table)
            )
        warnings.extend(_official_warnings(spec, observed))
        known = {str(path.relative_to(root).as_posix()): sha for path, sha in digests.items()}
        return TemplateProtocol(
            name=variant,
            source=str(root),
            sha256=files_sha256(root, files, known),
            splits=(Split(1, Verification(templates, left, right, is_same), searches),),
            counts=counts,
            warnings=tuple(warnings),
            files=tuple(files),
        )

    if not defer_pairs:
        return finish()
    none = np.zeros(0, dtype=np.int64)
    placeholder = Verification(templates, none, none, np.zeros(0, dtype=bool))
    view = TemplateProtocol(
        name=variant, source=str(root), sha256="", splits=(Split(1, placeholder, searches),)
    )
    return DeferredTemplateProtocol(view=view, finish=finish)


def load_ijbc(
    protocol_dir: str | Path | None,
    *,
    identification: bool | None = None,
    detector_scores: bool = True,
    defer_pairs: bool = False,
) -> Any:
    """IJB-C from insightface's meta files; see :func:`load_ijb` (galleries G1, G2)."""
    return load_ijb(
        protocol_dir,
        "ijbc",
        identification=identification,
        detector_scores=detector_scores,
        defer_pairs=defer_pairs,
    )


def load_ijbb(
    protocol_dir: str | Path | None,
    *,
    identification: bool | None = None,
    detector_scores: bool = True,
    defer_pairs: bool = False,
) -> Any:
    """IJB-B from insightface's meta files; see :func:`load_ijb` (galleries S1, S2)."""
    return load_ijb(
        protocol_dir,
        "ijbb",
        identification=identification,
        detector_scores=detector_scores,
        defer_pairs=defer_pairs,
    )


# -- landmarks for the extractor ------------------------------------------------------------


@dataclass(frozen=True)
class Landmarks:
    """The landmarks file: 5 points and a detector score per loose crop.

    Attributes
    ----------
    keys : tuple of str, length N
        Store ids, ``loose_crop/<image_name>``, in file order (repeated lines dropped).
    points : ndarray of float64, shape (N, 10)
        ``x1 y1 ... x5 y5`` in pixels of the loose crop, in the file's order of points.
    score : ndarray of float64, shape (N,)
        The detector score (insightface multiplies features by it before pooling).
    """

    keys: tuple[str, ...]
    points: FloatArray
    score: FloatArray

    def as_dict(self) -> dict[str, tuple[float, ...]]:
        """Store id -> the 10 numbers: the mapping ``facebench.extract.sources.attach`` takes."""
        return dict(zip(self.keys, map(tuple, self.points.tolist()), strict=True))


def read_landmarks(protocol_dir: str | Path, variant: str = "ijbc") -> Landmarks:
    """Read ``<variant>_name_5pts_score.txt`` of a protocol folder (found as the loader does).

    Raises
    ------
    InputFormatError
        A missing file, a bad line, or an image name on two lines with other values.
    """
    root = Path(protocol_dir)
    name = VARIANTS[variant].landmarks
    rel = _locate(root, name)
    if rel is None:
        raise InputFormatError(f"{root / 'meta' / name}: no such file")
    names, table, keep = _landmark_table(root / rel)
    return Landmarks(
        keys=tuple(f"loose_crop/{n}" for n in names),
        points=table.values[keep, :10],
        score=table.values[keep, 10],
    )


def landmarks(protocol: TemplateProtocol) -> dict[str, tuple[float, ...]]:
    """Store id -> ``(x1, y1, ..., x5, y5)`` for every item of an IJB-B/C protocol.

    Re-reads the landmarks file of ``protocol.source`` (the one :func:`load_ijb` read), for
    ``facebench.extract.sources.attach(items, landmarks=...)``.

    Raises
    ------
    InputFormatError
        When the protocol is not IJB-B/C, or an item has no landmarks (the file changed).
    """
    if protocol.name not in VARIANTS:
        raise InputFormatError(f"Expected an IJB-B or IJB-C protocol, but got {protocol.name!r}")
    table = read_landmarks(protocol.source, protocol.name)
    row_of = dict(zip(table.keys, range(len(table.keys)), strict=True))
    items = protocol.items
    lacking = [key for key in items if key not in row_of]
    if lacking:
        raise InputFormatError(
            f"{protocol.source}: Expected landmarks for every item, but {len(lacking)} have "
            f"none (first: {', '.join(lacking[:_N_SHOWN])}); was the landmarks file changed?"
        )
    rows = table.points.tolist()
    return {key: tuple(rows[row_of[key]]) for key in items}
