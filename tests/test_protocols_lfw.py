"""LFW pairs parsing: the shipped official files, and synthetic files in the exact format."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from facebench.errors import InputFormatError
from protocols import PROTOCOLS, lfw


def write_pairs(path: Path, sets: list[tuple[list, list]], header: str, eol: str = "\n") -> Path:
    lines = [header]
    for matched, mismatched in sets:
        lines += ["\t".join(map(str, m)) for m in matched]
        lines += ["\t".join(map(str, m)) for m in mismatched]
    path.write_bytes((eol.join(lines) + eol).encode())
    return path


SMALL = [
    ([("Ann_A", 1, 2), ("Bob_B", 1, 3)], [("Ann_A", 1, "Bob_B", 2), ("Cy_C", 1, "Ann_A", 3)]),
    ([("Cy_C", 1, 2), ("Bob_B", 2, 3)], [("Bob_B", 1, "Cy_C", 2), ("Ann_A", 2, "Cy_C", 1)]),
]


def test_shipped_pairs_txt_is_official_view2():
    path = lfw.shipped_file("pairs.txt")
    assert hashlib.md5(path.read_bytes()).hexdigest() == "9f1ba174e4e1c508ff7cdf10ac338a7d"
    p = PROTOCOLS["lfw"].load(None)
    assert p.n_pairs == 6000 and int(p.is_same.sum()) == 3000
    assert len(p.items) == 7701
    for fold in range(1, 11):
        in_fold = p.folds == fold
        assert in_fold.sum() == 600
        # each set: 300 matched lines, then 300 mismatched
        np.testing.assert_array_equal(p.is_same[in_fold], np.repeat([True, False], 300))
    assert p.left[0] == "Abel_Pacheco/Abel_Pacheco_0001.jpg"
    assert p.right[0] == "Abel_Pacheco/Abel_Pacheco_0004.jpg"
    assert p.warnings == ()
    assert p.counts == {
        "n_lines": 6001,
        "n_sets": 10,
        "pairs_per_set": 600,
        "n_pairs": 6000,
        "n_genuine": 3000,
        "n_items": 7701,
    }


@pytest.mark.parametrize(
    ("name", "n_pairs", "n_items"),
    [("pairsDevTrain.txt", 2200, 3443), ("pairsDevTest.txt", 1000, 1549)],
)
def test_shipped_view1_files(name, n_pairs, n_items):
    p = lfw.parse_pairs(lfw.shipped_file(name))
    assert p.n_pairs == n_pairs and int(p.is_same.sum()) == n_pairs // 2
    assert len(p.items) == n_items
    assert set(p.folds.tolist()) == {1}


@pytest.mark.parametrize("name", sorted(lfw.OFFICIAL_MD5))
def test_every_shipped_file_matches_its_md5(name):
    assert lfw.shipped_file(name).is_file()


def test_altered_shipped_file_is_refused(tmp_path, monkeypatch):
    copy = tmp_path / "lfw"
    shutil.copytree(lfw.DATA_DIR, copy)
    (copy / "pairs.txt").write_bytes(
        (copy / "pairs.txt").read_bytes().replace(b"\t4\n", b"\t5\n", 1)
    )
    monkeypatch.setattr(lfw, "DATA_DIR", copy)
    with pytest.raises(InputFormatError, match=r"MD5 .* differs from the official"):
        lfw.load()


@pytest.mark.parametrize("eol", ["\n", "\r\n"])
def test_synthetic_view2_format(tmp_path, eol):
    p = lfw.parse_pairs(write_pairs(tmp_path / "pairs.txt", SMALL, "2\t2", eol))
    assert p.left == (
        "Ann_A/Ann_A_0001.jpg",
        "Bob_B/Bob_B_0001.jpg",
        "Ann_A/Ann_A_0001.jpg",
        "Cy_C/Cy_C_0001.jpg",
        "Cy_C/Cy_C_0001.jpg",
        "Bob_B/Bob_B_0002.jpg",
        "Bob_B/Bob_B_0001.jpg",
        "Ann_A/Ann_A_0002.jpg",
    )
    assert p.right[3] == "Ann_A/Ann_A_0003.jpg"
    np.testing.assert_array_equal(p.is_same, [1, 1, 0, 0, 1, 1, 0, 0])
    np.testing.assert_array_equal(p.folds, [1, 1, 1, 1, 2, 2, 2, 2])


def test_bom_and_trailing_blank_lines_accepted(tmp_path):
    path = write_pairs(tmp_path / "pairs.txt", SMALL, "2\t2")
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes() + b"\n\n")
    assert lfw.parse_pairs(path).n_pairs == 8


def test_custom_pairs_file_warns_not_official(tmp_path):
    p = lfw.load(write_pairs(tmp_path / "mine.txt", SMALL, "2\t2"))
    assert len(p.warnings) == 1 and "not the official" in p.warnings[0]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda ls: ls.__setitem__(2, "Bob_B\t1"), r"pairs\.txt:3: expected a matched pair"),
        (lambda ls: ls.__setitem__(4, "Ann_A\t1\tBob_B"), r"pairs\.txt:5: expected a mismatched"),
        (lambda ls: ls.__setitem__(1, "Ann_A\tone\t2"), r"pairs\.txt:2: expected an image number"),
        (lambda ls: ls.__setitem__(1, "Ann_A\t0\t2"), r"pairs\.txt:2: expected an image number"),
        (lambda ls: ls.__setitem__(0, "2 2 2"), r"pairs\.txt:1: expected a header"),
        (lambda ls: ls.__setitem__(0, "x\t2"), r"pairs\.txt:1: expected the number of sets"),
        (lambda ls: ls.pop(), r"only 7; the file is truncated"),
        (lambda ls: ls.append("Ann_A\t1\t2"), r"pairs\.txt:10: .* the file goes on"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, mutate, message):
    path = write_pairs(tmp_path / "pairs.txt", SMALL, "2\t2", "\r\n")
    lines = path.read_text().splitlines()
    mutate(lines)
    path.write_text("\r\n".join(lines) + "\r\n")
    with pytest.raises(InputFormatError, match=message):
        lfw.parse_pairs(path)


def test_missing_empty_and_binary_files(tmp_path):
    with pytest.raises(InputFormatError, match="no such pairs file"):
        lfw.parse_pairs(tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_bytes(b"")
    with pytest.raises(InputFormatError, match="empty"):
        lfw.parse_pairs(tmp_path / "empty.txt")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(InputFormatError, match="expected UTF-8 text, but got the byte 0xff"):
        lfw.parse_pairs(tmp_path / "bin.txt")
