"""The items to extract: folder walks, list files, protocol keys, side files of landmarks and
boxes; every bad input names its file and line."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from facebench.errors import InputFormatError
from facebench.extract.sources import (
    IMAGE_SUFFIXES,
    Item,
    SourceError,
    attach,
    check_exist,
    folder_items,
    keyed_items,
    list_items,
    read_boxes,
    read_landmarks,
)

POINTS = "38.3 51.7 73.5 51.5 56.0 71.7 41.5 92.4 70.7 92.2"


def touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def write(path: Path, text: str, bom: bool = False) -> Path:
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def raises_at(match: str):
    return pytest.raises(SourceError, match=re.escape(match))


# --- folders ----------------------------------------------------------------------------


def test_folder_walk(tmp_path: Path):
    touch(tmp_path, "b/x.JPG", "a/c/y.png", "a/z.Jpeg", "top.bmp", "notes.txt", "a/c/w.gif")
    items = folder_items(tmp_path)
    assert [item.id for item in items] == ["a/c/y.png", "a/z.Jpeg", "b/x.JPG", "top.bmp"]
    assert all(item.path == tmp_path / item.id for item in items)
    assert all(item.box is None and item.landmarks is None for item in items)


def test_folder_follows_symlinked_folders(tmp_path: Path):
    touch(tmp_path / "elsewhere", "p/q.jpg")
    root = tmp_path / "root"
    touch(root, "own.jpg")
    os.symlink(tmp_path / "elsewhere", root / "linked")
    assert [item.id for item in folder_items(root)] == ["linked/p/q.jpg", "own.jpg"]
    os.symlink(root, root / "linked" / "p" / "loop")
    with pytest.raises(SourceError, match="cycle"):
        folder_items(root)


def test_folder_errors(tmp_path: Path):
    touch(tmp_path, "empty/readme.txt")
    with pytest.raises(SourceError) as info:
        folder_items(tmp_path / "empty")
    assert str(info.value).startswith(f"{tmp_path / 'empty'}: expected image files")
    assert all(suffix in str(info.value) for suffix in IMAGE_SUFFIXES)
    with raises_at(f"{tmp_path / 'nope'}: no such dataset root"):
        folder_items(tmp_path / "nope")
    with pytest.raises(SourceError, match=r"or an insightface \.bin file, but it is another file"):
        folder_items(tmp_path / "empty" / "readme.txt")
    touch(tmp_path, "bad/a\\b.jpg")
    with pytest.raises(SourceError, match="backslash"):
        folder_items(tmp_path / "bad")
    assert issubclass(SourceError, InputFormatError)


# --- list files -------------------------------------------------------------------------


def test_list_file_keeps_order_crlf_bom(tmp_path: Path):
    listing = write(tmp_path / "list.txt", "b/2.jpg\r\na/1.jpg\r\nc d/3.png\r\n", bom=True)
    items = list_items(tmp_path / "root", listing)
    assert [item.id for item in items] == ["b/2.jpg", "a/1.jpg", "c d/3.png"]
    assert items[0].path == tmp_path / "root" / "b" / "2.jpg"
    no_final_newline = write(tmp_path / "l2.txt", "a/1.jpg\nb/2.jpg")
    assert len(list_items(tmp_path, no_final_newline)) == 2


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("a.jpg\n\nb.jpg\n", 2, "blank line"),
        ("a.jpg\nb.jpg\n\n", 3, "blank line"),
        ("a.jpg\nb.jpg\na.jpg\n", 3, "'a.jpg' is also on line 1"),
        ("a.jpg\n../b.jpg\n", 2, "leaves it ('..')"),
        ("x/../../b.jpg\n", 1, "leaves it"),
        ("/data/b.jpg\n", 1, "relative"),
        ("C:/data/b.jpg\n", 1, "absolute"),
        ("dir\\b.jpg\n", 1, "use '/' separators"),
        ("./b.jpg\n", 1, "normalized"),
        ("a//b.jpg\n", 1, "normalized"),
        ("a.jpg\n b.jpg\n", 2, "whitespace"),
        ("a.jpg\t\n", 1, "whitespace"),
    ],
)
def test_list_file_errors_name_file_and_line(tmp_path: Path, text: str, line: int, words: str):
    listing = write(tmp_path / "list.txt", text)
    with pytest.raises(SourceError) as info:
        list_items(tmp_path, listing)
    assert str(info.value).startswith(f"{listing}:{line}: ")
    assert words in str(info.value)


def test_list_file_unreadable(tmp_path: Path):
    with raises_at(f"{tmp_path / 'none.txt'}: no such list file"):
        list_items(tmp_path, tmp_path / "none.txt")
    with pytest.raises(SourceError, match="empty"):
        list_items(tmp_path, write(tmp_path / "e.txt", ""))
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"a.jpg\nJos\xe9.jpg\n")
    with raises_at(f"{latin}:2: expected UTF-8 text, but got the byte 0xe9"):
        list_items(tmp_path, latin)


# --- protocol keys and existence --------------------------------------------------------


def test_keyed_items(tmp_path: Path):
    keys = ["Aaron_Eckhart/Aaron_Eckhart_0001.jpg", "Abel_Pacheco/Abel_Pacheco_0004.jpg"]
    items = keyed_items(tmp_path / "lfw", keys)
    assert [item.id for item in items] == keys
    assert items[1].path == tmp_path / "lfw" / "Abel_Pacheco" / "Abel_Pacheco_0004.jpg"
    with pytest.raises(SourceError, match=r"protocol item 1: .*leaves"):
        keyed_items(tmp_path, ["a.jpg", "../b.jpg"])
    with pytest.raises(SourceError, match=r"protocol item 2: .*also item 0"):
        keyed_items(tmp_path, ["a.jpg", "b.jpg", "a.jpg"])


def test_check_exist(tmp_path: Path):
    root = tmp_path / "lfw"
    names = [f"P/P_{n:04d}.jpg" for n in range(1, 11)]
    touch(root, *names[:3])
    (root / names[3]).mkdir()  # a folder is not an image file
    items = keyed_items(root, names)
    check_exist(items[:3])
    with pytest.raises(SourceError) as info:
        check_exist(items)
    assert str(info.value) == (
        f"7 of 10 images are missing under {root} (first: P/P_0004.jpg, P/P_0005.jpg, "
        "P/P_0006.jpg, P/P_0007.jpg, P/P_0008.jpg, ...); check the dataset root or pass "
        "--skip-bad"
    )


# --- landmarks and boxes ----------------------------------------------------------------


def test_landmarks_file(tmp_path: Path):
    text = f"# detector v2\r\na/1.jpg {POINTS}\r\nb/2.jpg\t{POINTS} 0.98\r\n\r\n"
    landmarks = read_landmarks(write(tmp_path / "landmarks.txt", text, bom=True))
    assert sorted(landmarks) == ["a/1.jpg", "b/2.jpg"]
    assert landmarks["b/2.jpg"] == tuple(float(v) for v in POINTS.split())


@pytest.mark.parametrize(
    ("body", "line", "words"),
    [
        ("a.jpg 1 2 3 4 5 6 7 8", 2, "expected 11 or 12 columns (path, 5 x/y pairs, optional "),
        (f"a.jpg {POINTS} 0.9 extra", 2, "but got 13"),
        (f"a.jpg {POINTS.replace('51.5', 'abc')}", 2, "expected numbers"),
        (f"a.jpg {POINTS.replace('51.5', 'nan')}", 2, "finite"),
        (f"a.jpg {POINTS}\nb.jpg {POINTS}\na.jpg {POINTS}", 4, "also on line 2"),
        (f"a.jpg {POINTS}\n\nb.jpg {POINTS}", 3, "blank line"),
        (f"../a.jpg {POINTS}", 2, "leaves"),
    ],
)
def test_landmarks_errors(tmp_path: Path, body: str, line: int, words: str):
    path = write(tmp_path / "landmarks.txt", "# header comment\n" + body + "\n")
    with pytest.raises(SourceError) as info:
        read_landmarks(path)
    assert str(info.value).startswith(f"{path}:{line}: ")
    assert words in str(info.value)


def test_landmarks_message_shape(tmp_path: Path):
    path = write(tmp_path / "landmarks.txt", "".join(f"i{n}.jpg {POINTS}\n" for n in range(6)))
    path.write_text(path.read_text() + "bad.jpg 1 2 3 4 5 6 7 8\n")
    with raises_at(
        f"{path}:7: expected 11 or 12 columns (path, 5 x/y pairs, optional score), but got 9"
    ):
        read_landmarks(path)
    with pytest.raises(SourceError, match="has none"):
        read_landmarks(write(tmp_path / "only_comments.txt", "# nothing\n"))


def test_boxes_file(tmp_path: Path):
    path = write(tmp_path / "boxes.txt", "a.jpg 10 20 30.5 40\r\nb.jpg 0 0 5 5 0.7\r\n")
    assert read_boxes(path) == {"a.jpg": (10.0, 20.0, 30.5, 40.0), "b.jpg": (0.0, 0.0, 5.0, 5.0)}


@pytest.mark.parametrize(
    ("body", "line", "words"),
    [
        ("a.jpg 1 2 3", 1, "expected 5 or 6 columns (path, x, y, width, height, optional"),
        ("a.jpg 1 2 0 4", 1, "width and height > 0, but got 0 x 4"),
        ("a.jpg 1 2 3 4\nb.jpg 1 2 3 -4", 2, "> 0"),
        ("a.jpg 1 2 3 x", 1, "expected numbers"),
        ("a.jpg 1 2 3 inf", 1, "finite"),
        ("a.jpg 1 2 3 4\na.jpg 1 2 3 4", 2, "also on line 1"),
    ],
)
def test_boxes_errors(tmp_path: Path, body: str, line: int, words: str):
    path = write(tmp_path / "boxes.txt", body + "\n")
    with pytest.raises(SourceError) as info:
        read_boxes(path)
    assert str(info.value).startswith(f"{path}:{line}: ")
    assert words in str(info.value)


def test_attach(tmp_path: Path):
    items = keyed_items(tmp_path, ["a.jpg", "b.jpg"])
    points = tuple(float(v) for v in POINTS.split())
    landmarks = {"a.jpg": points, "b.jpg": points, "other.jpg": points}
    boxes = {"a.jpg": (1.0, 2.0, 3.0, 4.0), "b.jpg": (0, 0, 9, 9)}
    attached = attach(items, landmarks=landmarks, boxes=boxes)
    assert attached[0] == Item("a.jpg", tmp_path / "a.jpg", (1.0, 2.0, 3.0, 4.0), points)
    assert attached[1].box == (0.0, 0.0, 9.0, 9.0)
    assert items[0].box is None  # copies
    assert attach(items) == items
    with_boxes = attach(items, boxes=boxes)
    assert attach(with_boxes, landmarks=landmarks)[1].box == (0.0, 0.0, 9.0, 9.0)


def test_attach_missing_entries(tmp_path: Path):
    items = keyed_items(tmp_path, [f"{n}.jpg" for n in range(8)])
    with raises_at(
        "Expected landmarks for every image, but 7 of 8 have none (first: 1.jpg, 2.jpg, "
        "3.jpg, 4.jpg, 5.jpg, ...)"
    ):
        attach(items, landmarks={"0.jpg": (0.0,) * 10})
    with pytest.raises(SourceError, match="boxes for every image, but 8 of 8"):
        attach(items, boxes={})
    with pytest.raises(SourceError, match="10 landmark numbers"):
        attach(items[:1], landmarks={"0.jpg": (0.0,) * 8})
