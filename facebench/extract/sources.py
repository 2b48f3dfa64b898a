"""What to extract: the items (store id, image path, optional box and landmarks).

Items come from a folder walk, a list file, a protocol's item keys, or the images packed in
an insightface ``.bin`` validation set (:func:`bin_items`). An item's id is its path
relative to the dataset root with ``/`` separators, which is the feature store's id (see
:func:`facebench.store.id_problem`); a ``.bin`` image's id is ``<file name>#<index>``.
Relative paths from files and protocols are checked before any image is touched: no ``..``,
``.`` or empty component, no absolute path, no backslash, so an id names exactly one file
under the root.

Side files give per-image geometry in the pixel coordinates of the image as displayed
(EXIF orientation applied): :func:`read_landmarks` (5 points) and :func:`read_boxes`.
"""

from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from facebench.errors import InputFormatError, located
from facebench.fileio import read_text_lines
from facebench.store import id_problem

__all__ = [
    "IMAGE_SUFFIXES",
    "Item",
    "SourceError",
    "attach",
    "bin_items",
    "check_exist",
    "folder_items",
    "is_bin_file",
    "keyed_items",
    "line_of",
    "list_items",
    "read_boxes",
    "read_landmarks",
]

#: Suffixes of the image files that a folder walk collects, matched case-insensitively.
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp")
_N_SHOWN = 5
_DRIVE = re.compile(r"[A-Za-z]:/")


class SourceError(InputFormatError):
    """The items to extract cannot be determined (bad list, missing images, bad side file)."""


@dataclass(frozen=True)
class Item:
    """One image to extract.

    Attributes
    ----------
    id : str
        The store id: the path relative to the root with ``/`` separators, or a protocol's
        item key.
    path : Path
        The image file (the root joined with the id).
    box : tuple of 4 float or None
        Face box ``(x, y, width, height)`` in pixels of the full image, ``(x, y)`` its
        top-left corner.
    landmarks : tuple of 10 float or None
        ``x1 y1 ... x5 y5``: left eye, right eye, nose, left and right mouth corners as seen
        in the image, pixel-centre coordinates (pixel (i, j) has its centre at (j, i)).
    """

    id: str
    path: Path
    box: tuple[float, float, float, float] | None = None
    landmarks: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        problem = id_problem(self.id)
        if problem is not None:
            raise SourceError(problem)
        if self.box is not None and len(self.box) != 4:
            raise SourceError(
                f"{self.id}: expected a box of 4 numbers (x, y, width, height), "
                f"but got {len(self.box)}"
            )
        if self.landmarks is not None and len(self.landmarks) != 10:
            raise SourceError(
                f"{self.id}: expected 10 landmark numbers (5 x/y pairs), "
                f"but got {len(self.landmarks)}"
            )


def _shown(text: str, limit: int = 120) -> str:
    """``repr(text)``, cut to ``limit`` characters: a message quotes a path, not a file."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _path_problem(relative: str) -> str | None:
    """Why ``relative`` is not a clean relative path under the root, or None."""
    problem = id_problem(relative)
    if problem is not None:
        return problem if len(problem) <= 300 else problem[:300] + "..."
    if _DRIVE.match(relative):
        return f"expected a path relative to the root, but got the absolute path {_shown(relative)}"
    parts = relative.split("/")
    if ".." in parts:
        return (
            f"expected a path inside the root, but got {_shown(relative)}, which leaves it ('..')"
        )
    if "." in parts or "" in parts:
        return (
            f"expected a normalized relative path, but got {_shown(relative)} (a '.' or empty "
            "component); write it as `dir/name.jpg`"
        )
    if relative != relative.strip():
        return (
            f"expected a path without leading or trailing whitespace, but got {_shown(relative)}; "
            "a list file holds one path per line and nothing else"
        )
    return None


def _walk(directory: Path, relative: str, ancestors: frozenset[tuple[int, int]]) -> list[str]:
    found: list[str] = []
    try:
        entries = list(os.scandir(directory))
    except OSError as err:
        raise SourceError(f"{directory}: cannot list the folder ({err.strerror})") from None
    for entry in entries:
        name = relative + entry.name
        try:
            if entry.is_dir(follow_symlinks=True):
                info = entry.stat(follow_symlinks=True)
                key = (info.st_dev, info.st_ino)
                if key in ancestors:
                    raise SourceError(
                        f"{entry.path}: a symbolic link back to a folder above it (a cycle); "
                        "remove the link or pass a list file"
                    )
                found.extend(_walk(Path(entry.path), name + "/", ancestors | {key}))
            elif entry.name.lower().endswith(IMAGE_SUFFIXES):
                found.append(name)
        except OSError as err:
            raise SourceError(f"{entry.path}: cannot read ({err.strerror})") from None
    return found


def _check_root(root: Path) -> None:
    if not root.exists():
        raise SourceError(f"{root}: no such dataset root; check the path")
    if not root.is_dir():
        raise SourceError(
            f"{root}: Expected the dataset root to be a folder or an insightface .bin file,"
            " but it is another file"
        )


def folder_items(root: str | os.PathLike[str]) -> list[Item]:
    """Every image under ``root``, recursively, sorted by id.

    A file is an image when its name ends with one of :data:`IMAGE_SUFFIXES` (any case);
    hidden files are not special. Symbolic links to folders are followed (a link back to a
    folder above it is an error).

    Returns
    -------
    list of Item
        Sorted by id (code-point order); ``path = root / id``.

    Raises
    ------
    SourceError
        ``root`` is missing or not a folder, holds no image, a folder cannot be listed, or
        a file name is not a valid id (a backslash or a line break in it).
    """
    root = Path(root)
    _check_root(root)
    info = root.stat()
    names = sorted(_walk(root, "", frozenset({(info.st_dev, info.st_ino)})))
    if not names:
        raise SourceError(
            f"{root}: expected image files ({', '.join(IMAGE_SUFFIXES)}, any case) under the "
            "dataset root, but found none; check the path or pass a list file"
        )
    items = []
    for name in names:
        problem = id_problem(name)
        if problem is not None:
            raise SourceError(f"{root / name}: {problem}; rename the file")
        items.append(Item(name, root / name))
    return items


def list_items(root: str | os.PathLike[str], list_file: str | os.PathLike[str]) -> list[Item]:
    """The images named in ``list_file``, one path relative to ``root`` per line, in order.

    UTF-8 with an optional BOM, LF or CRLF line ends, a final newline optional. A blank
    line, a path that leaves the root or is absolute, a backslash, a ``.`` or empty
    component, surrounding whitespace or a repeated path is an error naming the file and
    line. The files are not checked here (:func:`check_exist`).
    """
    root, list_file = Path(root), Path(list_file)
    lines = read_text_lines(list_file, "list file", SourceError)
    if not lines:
        raise SourceError(f"{list_file}: expected one image path per line, but the file is empty")
    first_line: dict[str, int] = {}
    items = []
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            raise SourceError(
                located(list_file, line_no, "expected an image path, but got a blank line")
            )
        problem = _path_problem(line)
        if problem is not None:
            raise SourceError(located(list_file, line_no, problem))
        if line in first_line:
            raise SourceError(
                located(
                    list_file,
                    line_no,
                    f"expected each image once, but {_shown(line)} is also on line"
                    f" {first_line[line]}",
                )
            )
        first_line[line] = line_no
        items.append(Item(line, root / line))
    return items


def keyed_items(
    root: str | os.PathLike[str],
    keys: Sequence[str],
    *,
    where: Callable[[str], str] | None = None,
) -> list[Item]:
    """Items for a protocol's item keys that are relative paths (LFW's ``Name/Name_0001.jpg``).

    Order kept; the keys are checked as list-file lines are (see :func:`list_items`): a key
    that is absolute or leaves the root (a ``..`` component) is refused before any image is
    touched. ``where(key)`` tells where a key comes from (``"file:line"``) for the error;
    without it the error names the key's position.
    """
    root = Path(root)
    seen: dict[str, int] = {}
    items = []
    for index, key in enumerate(keys):
        problem = _path_problem(key)
        if problem is not None:
            place = where(key) if where is not None else f"protocol item {index}"
            raise SourceError(f"{place}: {problem}")
        if key in seen:
            raise SourceError(
                f"protocol item {index}: expected each key once, but {_shown(key)} is also item "
                f"{seen[key]}"
            )
        seen[key] = index
        items.append(Item(key, root / key))
    return items


def is_bin_file(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a file named ``*.bin`` (any case): an insightface validation set."""
    path = Path(path)
    return path.suffix.lower() == ".bin" and path.is_file()


def bin_items(path: str | os.PathLike[str], folder: str | os.PathLike[str]) -> list[Item]:
    """The images of an insightface ``.bin`` (:mod:`protocols.bin`), in file order.

    The file is read without running any code from it. Each encoded image is written,
    byte for byte, to ``folder / <id>`` (``folder`` must exist and outlive the extraction:
    a temporary folder), so that the images decode with the same decoder, checks and
    preprocessing as image files; nothing is decoded here.

    Returns
    -------
    list of Item
        ``id`` is ``<file name>#<index>`` (``cfp_fp.bin#0`` ...), the item keys of the
        ``bin`` protocol; ``path`` the written copy.

    Raises
    ------
    BinFormatError
        The file is not an insightface ``.bin`` (see :func:`protocols.bin.read_bin`).
    """
    from protocols.bin import item_key, read_bin

    content = read_bin(Path(path))
    folder = Path(folder)
    items = []
    for index, data in enumerate(content.images):
        key = item_key(content.path, index)
        target = folder / key
        try:
            target.write_bytes(data)
        except OSError as err:
            raise SourceError(
                f"{target}: cannot write the images of {content.path} to the temporary folder"
                f" ({err.strerror}); free space there or set TMPDIR to another folder"
            ) from None
        items.append(Item(key, target))
    return items


def line_of(path: str | os.PathLike[str], first_field: str) -> int | None:
    """The 1-based number of the first line of ``path`` whose first field is ``first_field``.

    Fields are separated by whitespace or commas; used to name the line of a bad protocol
    entry in an error. None when no line has it or the file cannot be read.
    """
    try:
        lines = read_text_lines(Path(path), "protocol file", SourceError)
    except SourceError:
        return None
    for number, line in enumerate(lines, start=1):
        fields = re.split(r"[\s,]+", line.strip(), maxsplit=1)
        if fields and fields[0] == first_field:
            return number
    return None


def _root_of(item: Item) -> Path:
    """The dataset root that ``item.path`` was joined from, when it can be told."""
    n_parts = len(item.id.split("/"))
    if item.path.as_posix().endswith("/" + item.id) and len(item.path.parts) > n_parts:
        return Path(*item.path.parts[:-n_parts])
    return item.path.parent


def check_exist(items: Sequence[Item]) -> None:
    """Raise :class:`SourceError` unless every ``item.path`` is a regular file.

    One ``os.stat`` per item, no decoding. The message gives the count and the first five
    missing ids, in item order.
    """
    missing: list[Item] = []
    for item in items:
        try:
            if not stat.S_ISREG(os.stat(item.path).st_mode):
                missing.append(item)
        except OSError:
            missing.append(item)
    if missing:
        shown = ", ".join(item.id for item in missing[:_N_SHOWN])
        more = ", ..." if len(missing) > _N_SHOWN else ""
        raise SourceError(
            f"{len(missing)} of {len(items)} images are missing under {_root_of(missing[0])} "
            f"(first: {shown}{more}); check the dataset root or pass --skip-bad"
        )


def _read_records(
    path: Path,
    what: str,
    n_values: int,
    columns: str,
    check: Callable[[tuple[float, ...]], str | None] | None = None,
) -> dict[str, tuple[float, ...]]:
    """``relpath v1 .. vn [score]`` lines -> {relpath: (v1, .., vn)}; ``check`` returns a
    problem with the values, or None."""
    lines = read_text_lines(path, what, SourceError)
    while lines and not lines[-1].strip():
        lines.pop()  # blank lines at the end
    records: dict[str, tuple[float, ...]] = {}
    first_line: dict[str, int] = {}
    for line_no, line in enumerate(lines, start=1):
        stripped = line.strip()
        if stripped.startswith("#"):
            continue
        if not stripped:
            raise SourceError(located(path, line_no, f"expected {columns}, but got a blank line"))
        fields = stripped.split()
        if len(fields) not in (n_values + 1, n_values + 2):
            raise SourceError(
                located(
                    path,
                    line_no,
                    f"expected {n_values + 1} or {n_values + 2} columns ({columns}), "
                    f"but got {len(fields)}",
                )
            )
        key = fields[0]
        problem = _path_problem(key)
        if problem is not None:
            raise SourceError(located(path, line_no, problem))
        try:
            values = tuple(float(text) for text in fields[1 : n_values + 1])
        except ValueError:
            raise SourceError(
                located(path, line_no, f"expected numbers after the path, but got {_shown(line)}")
            ) from None
        if not all(math.isfinite(value) for value in values):
            raise SourceError(located(path, line_no, f"expected finite numbers, but got {values}"))
        problem = None if check is None else check(values)
        if problem is not None:
            raise SourceError(located(path, line_no, problem))
        if key in first_line:
            raise SourceError(
                located(
                    path,
                    line_no,
                    f"expected each image once, but {_shown(key)} is also on line"
                    f" {first_line[key]}",
                )
            )
        first_line[key] = line_no
        records[key] = values
    if not records:
        raise SourceError(f"{path}: expected lines of {columns}, but the file has none")
    return records


def read_landmarks(path: str | os.PathLike[str]) -> dict[str, tuple[float, ...]]:
    """Read a 5-point landmarks file: ``relpath x1 y1 x2 y2 x3 y3 x4 y4 x5 y5 [score]``.

    Whitespace-separated (so paths cannot hold spaces), one image per line, points in the
    order left eye, right eye, nose, left mouth corner, right mouth corner, pixel-centre
    coordinates. An optional 12th column (a detector score, as in insightface's
    ``ijbc_name_5pts_score.txt``) is accepted and ignored. UTF-8 with optional BOM, CRLF,
    ``#`` comment lines and blank lines at the end are accepted.

    Returns
    -------
    dict
        relpath -> 10 floats ``(x1, y1, ..., x5, y5)``.

    Raises
    ------
    SourceError
        Naming the file and line: wrong column count, a value that is not a finite number,
        a repeated path, a bad path, a blank line before the end.
    """
    return _read_records(Path(path), "landmarks file", 10, "path, 5 x/y pairs, optional score")


def read_boxes(path: str | os.PathLike[str]) -> dict[str, tuple[float, float, float, float]]:
    """Read a face-box file: ``relpath x y width height [score]``.

    ``(x, y)`` is the box's top-left corner in pixels; width and height must be > 0. An
    optional 6th column (a detector score) is accepted and ignored. Same file rules as
    :func:`read_landmarks`.

    Returns
    -------
    dict
        relpath -> ``(x, y, width, height)``.
    """
    records = _read_records(
        Path(path), "boxes file", 4, "path, x, y, width, height, optional score", _box_problem
    )
    return {key: (x, y, width, height) for key, (x, y, width, height) in records.items()}


def _box_problem(values: tuple[float, ...]) -> str | None:
    width, height = values[2:]
    if width > 0 and height > 0:
        return None
    return f"expected a box width and height > 0, but got {width:g} x {height:g}"


def _missing(items: Sequence[Item], mapping: Mapping[str, object], what: str) -> None:
    absent = [item.id for item in items if item.id not in mapping]
    if absent:
        shown = ", ".join(absent[:_N_SHOWN])
        more = ", ..." if len(absent) > _N_SHOWN else ""
        raise SourceError(
            f"Expected {what} for every image, but {len(absent)} of {len(items)} have none "
            f"(first: {shown}{more}); the {what} file must use the same relative paths"
        )


def attach(
    items: Sequence[Item],
    *,
    landmarks: Mapping[str, Sequence[float]] | None = None,
    boxes: Mapping[str, Sequence[float]] | None = None,
) -> list[Item]:
    """Copies of ``items`` with their landmarks and/or boxes set from the mappings (by id).

    A given mapping must hold every item's id; entries for other ids are fine (a side file
    may cover a whole dataset).

    Raises
    ------
    SourceError
        With the count and the first five ids of the items that a mapping lacks.
    """
    if landmarks is not None:
        _missing(items, landmarks, "landmarks")
    if boxes is not None:
        _missing(items, boxes, "boxes")
    attached = []
    for item in items:
        box, points = item.box, item.landmarks
        if boxes is not None:
            values = tuple(float(value) for value in boxes[item.id])
            if len(values) != 4:
                raise SourceError(
                    f"{item.id}: expected a box of 4 numbers (x, y, width, height), "
                    f"but got {len(values)}"
                )
            box = (values[0], values[1], values[2], values[3])
        if landmarks is not None:
            points = tuple(float(value) for value in landmarks[item.id])
        attached.append(replace(item, box=box, landmarks=points))  # Item checks the lengths
    return attached
