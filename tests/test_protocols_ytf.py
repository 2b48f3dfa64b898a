"""YTF splits.txt parsing: the shipped file, and synthetic files in the format's variants."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facebench.errors import InputFormatError
from protocols import PROTOCOLS, ytf

HEADER = "split number, pair number, first name, second name, is same"
ROWS = [
    "1, 1, Ann_A/0, Ann_A/2, 1",
    "1, 2, Ann_A/1, Bob_B/0, 0",
    "2, 3, Bob_B/0, Bob_B/1, 1",
    "2, 4, Cy_C/3, Ann_A/0, 0",
]


def write(path: Path, lines: list[str], eol: str = "\n") -> Path:
    path.write_bytes((eol.join(lines) + eol).encode())
    return path


def test_shipped_splits():
    p = PROTOCOLS["ytf"].load(None)
    assert p.n_pairs == 5000 and int(p.is_same.sum()) == 2500 and p.unit == "video"
    for split in range(1, 11):
        in_split = p.folds == split
        assert in_split.sum() == 500 and p.is_same[in_split].sum() == 250
    assert (p.left[0], p.right[0]) == ("Sadie_Frost/1", "Sadie_Frost/5")
    assert p.warnings == ()
    assert p.counts["n_videos"] == len(p.items)


@pytest.mark.parametrize("eol", ["\n", "\r\n"])
@pytest.mark.parametrize(
    "header",
    [
        HEADER,
        "Split_Number,Pair_Number,First_Name,Second_Name,Is_Same",
        "split, pair, name1, name2, same",
    ],
)
def test_header_variants_and_line_ends(tmp_path: Path, eol: str, header: str):
    p = ytf.parse_splits(write(tmp_path / "s.txt", [header, *ROWS], eol))
    assert p.left == ("Ann_A/0", "Ann_A/1", "Bob_B/0", "Cy_C/3")
    assert p.right == ("Ann_A/2", "Bob_B/0", "Bob_B/1", "Ann_A/0")
    np.testing.assert_array_equal(p.is_same, [1, 0, 1, 0])
    np.testing.assert_array_equal(p.folds, [1, 1, 2, 2])
    assert any("official YTF protocol has 10" in w for w in p.warnings)


def test_columns_found_by_name_in_any_order(tmp_path: Path):
    lines = ["is same, second name, first name, pair number, split number"]
    lines += ["1, Ann_A/2, Ann_A/0, 1, 1", "0, Bob_B/0, Ann_A/1, 2, 2"]
    p = ytf.parse_splits(write(tmp_path / "s.txt", lines))
    assert p.left == ("Ann_A/0", "Ann_A/1") and p.right == ("Ann_A/2", "Bob_B/0")
    np.testing.assert_array_equal(p.folds, [1, 2])


def test_no_header_uses_the_column_order(tmp_path: Path):
    p = ytf.parse_splits(write(tmp_path / "s.txt", ROWS))
    assert p.n_pairs == 4 and p.counts["n_lines"] == 4


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("1, 5, Ann_A/0, Ann_A/2", r"s\.txt:6: Expected at least 5"),
        ("x, 5, Ann_A/0, Ann_A/2, 1", r"s\.txt:6: Expected a split number"),
        ("1, 5, Ann_A/0, Ann_A/2, 2", r"s\.txt:6: Expected 'is same' as 0 or 1"),
        ("1, 5, Ann_A, Ann_A/2, 1", r"s\.txt:6: Expected a video name"),
        ("1, 5, ../x/0, Ann_A/2, 1", r"s\.txt:6: Expected a video name"),
        ("", r"s\.txt:6: Expected at least 5"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path: Path, row: str, message: str):
    path = write(tmp_path / "s.txt", [HEADER, *ROWS, row, "2, 9, Ann_A/0, Ann_A/1, 1"])
    with pytest.raises(InputFormatError, match=message):
        ytf.parse_splits(path)


def test_incomplete_header(tmp_path: Path):
    with pytest.raises(InputFormatError, match="could not find"):
        ytf.parse_splits(
            write(tmp_path / "s.txt", ["split number, pair number, first name", *ROWS])
        )


def test_frame_numbers_are_numeric():
    names = ["aligned_detect_0.10.jpg", "aligned_detect_0.9.jpg", "aligned_detect_0.100.jpg"]
    assert sorted(names, key=ytf.frame_number) == [names[1], names[0], names[2]]
    with pytest.raises(InputFormatError, match="frame name"):
        ytf.frame_number("cover.jpg")
