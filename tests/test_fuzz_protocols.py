"""Fuzzing the protocol parsers: every mutated protocol file parses or raises FacebenchError.

Each target starts from a valid file in the benchmark's official format (the shipped LFW and
YTF files' first lines; the IJB-A and IJB-B/C folders of ``ijba_fixtures`` and
``ijbc_fixtures``) and feeds the parser mutated copies (``conftest.mutated``). The property
(``conftest.parse_or_error``): a valid result, or a FacebenchError with a one-line message;
never another exception, never a hang. Every crash fuzzing found is pinned as an explicit
regression test below the fuzz tests.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import FUZZ, mutated, parse_or_error
from hypothesis import given
from hypothesis import strategies as st
from ijba_fixtures import write_ijba
from ijbc_fixtures import write_ijbc

from facebench.errors import FacebenchError, InputFormatError
from protocols import PairsProtocol, TemplateProtocol, ijba, ijbc, lfw, ytf


def _lfw_base() -> bytes:
    """A 2-set pairs.txt in View 2's exact format: the shipped file's first pairs."""
    lines = lfw.shipped_file("pairs.txt").read_bytes().split(b"\n")
    matched, mismatched = lines[1:7], lines[301:307]
    body = matched[:3] + mismatched[:3] + matched[3:] + mismatched[3:]
    return b"2\t3\n" + b"\n".join(body) + b"\n"


def _ytf_base() -> bytes:
    """The shipped splits.txt's header and its first pairs, in two splits."""
    lines = ytf.shipped_file().read_bytes().split(b"\n")
    second = [line.replace(b"1, ", b"2, ", 1) for line in lines[1:4]]
    return b"\n".join([lines[0], *lines[1:5], *second]) + b"\n"


LFW_BASE = _lfw_base()
YTF_BASE = _ytf_base()


def _check_pairs(result: PairsProtocol | FacebenchError) -> None:
    if isinstance(result, PairsProtocol):
        n = result.n_pairs
        assert len(result.right) == n == result.is_same.size == result.folds.size
        assert n == 0 or int(result.folds.min()) >= 1


def _check_templates(result: TemplateProtocol | FacebenchError) -> None:
    if not isinstance(result, TemplateProtocol):
        return
    for split in result.splits:
        if split.verification is not None:
            v = split.verification
            assert v.left.size == v.right.size == v.is_same.size > 0
            n_templates = v.templates.n_templates
            assert 0 <= v.left.min() and max(v.left.max(), v.right.max()) < n_templates
            assert len(v.templates.item_keys) == v.templates.item_template.size


# --- LFW ------------------------------------------------------------------------------------


def test_lfw_base_parses(tmp_path: Path) -> None:
    path = tmp_path / "pairs.txt"
    path.write_bytes(LFW_BASE)
    protocol = lfw.parse_pairs(path)
    assert protocol.n_pairs == 12 and protocol.folds.tolist() == [1] * 6 + [2] * 6


@FUZZ
@given(data=mutated(LFW_BASE))
def test_fuzz_lfw_pairs(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("lfw") / "pairs.txt"
    path.write_bytes(data)
    _check_pairs(parse_or_error(lfw.parse_pairs, path))


# --- YTF ------------------------------------------------------------------------------------


def test_ytf_base_parses(tmp_path: Path) -> None:
    path = tmp_path / "splits.txt"
    path.write_bytes(YTF_BASE)
    protocol = ytf.parse_splits(path)
    assert protocol.n_pairs == 7 and sorted(set(protocol.folds.tolist())) == [1, 2]


@FUZZ
@given(data=mutated(YTF_BASE))
def test_fuzz_ytf_splits(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("ytf") / "splits.txt"
    path.write_bytes(data)
    _check_pairs(parse_or_error(ytf.parse_splits, path))


# --- IJB-A ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ijba_folder(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("ijba")
    record = write_ijba(root, n_splits=2, n_subjects=4, templates_per_subject=2, bom=True)
    return record


def _with_file(root: Path, rel: str, data: bytes) -> Path:
    """A copy of the folder ``root`` with ``rel`` replaced by ``data``."""
    copy = root.parent / f"{root.name}-case"
    if copy.exists():
        shutil.rmtree(copy)
    shutil.copytree(root, copy)
    (copy / rel).write_bytes(data)
    return copy


@FUZZ
@given(which=st.integers(0, 7), seed=st.data())
def test_fuzz_ijba_folder(ijba_folder: dict[str, object], which: int, seed: st.DataObject) -> None:
    root = Path(str(ijba_folder["root"]))
    files = list(ijba_folder["files"])  # type: ignore[call-overload]
    rel = files[which % len(files)]
    data = seed.draw(mutated((root / rel).read_bytes()), label=rel)
    _check_templates(parse_or_error(ijba.load, _with_file(root, rel, data)))


# --- IJB-B / IJB-C --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ijbc_folder(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("ijbc")
    return write_ijbc(root, n_subjects=4, templates_per_subject=2, images_per_template=2)


@FUZZ
@given(which=st.integers(0, 5), seed=st.data())
def test_fuzz_ijbc_folder(ijbc_folder: dict[str, object], which: int, seed: st.DataObject) -> None:
    root = Path(str(ijbc_folder["root"]))
    files = sorted(dict(ijbc_folder["files"]).values())  # type: ignore[call-overload]
    rel = files[which % len(files)]
    data = seed.draw(mutated((root / rel).read_bytes()), label=rel)
    case = _with_file(root, rel, data)
    _check_templates(parse_or_error(ijbc.load_ijbc, case))
    result = parse_or_error(ijbc.read_landmarks, case)
    if isinstance(result, ijbc.Landmarks):
        assert result.points.shape == (len(result.keys), 10) == (result.score.size, 10)


@pytest.mark.parametrize(("kind", "column"), [("tid_mid", 1), ("pairs", 0), ("G1", 0)])
def test_ijbc_huge_integers_are_input_errors(tmp_path: Path, kind: str, column: int) -> None:
    record = write_ijbc(tmp_path / "ijbc", n_subjects=4, templates_per_subject=2)
    path = Path(str(record["root"])) / record["files"][kind]
    lines = path.read_text(encoding="utf-8").split("\n")
    row, separator = (1, ",") if path.suffix == ".csv" else (0, " ")
    fields = lines[row].split(separator)
    fields[column] = "9" * 5000
    lines[row] = separator.join(fields)
    path.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(InputFormatError, match=f"{path}:{row + 1}: Expected"):
        ijbc.load_ijbc(record["root"])


# --- regressions: what fuzzing found, pinned --------------------------------------------------


@pytest.mark.parametrize(
    ("line", "phrase"),
    [
        ("Abel_Pacheco\t\u00b2\t4", "an image number as a positive integer"),  # isdigit, not int
        ("Abel_Pacheco\t\u0663\t4", "an image number as a positive integer"),  # Arabic-Indic 3
        ("Abel_Pacheco\t1\t" + "9" * 5000, "an image number as a positive integer"),
    ],
)
def test_lfw_odd_digits_are_input_errors(tmp_path: Path, line: str, phrase: str) -> None:
    path = tmp_path / "pairs.txt"
    path.write_text("1\t1\n" + line + "\nA\t1\tB\t2\n", encoding="utf-8")
    with pytest.raises(InputFormatError, match=phrase) as info:
        lfw.parse_pairs(path)
    assert str(info.value).startswith(f"{path}:2: ")
    assert len(str(info.value)) < 400


def test_lfw_a_huge_bad_line_is_shortened_in_the_message(tmp_path: Path) -> None:
    path = tmp_path / "pairs.txt"
    path.write_text("1\t1\n" + "x " * 100_000 + "\nA\t1\tB\t2\n", encoding="utf-8")
    with pytest.raises(InputFormatError, match=r"pairs.txt:2: expected a matched pair") as info:
        lfw.parse_pairs(path)
    assert len(str(info.value)) < 400


@pytest.mark.parametrize(
    ("header", "phrase"),
    [
        ("9" * 30 + "\t" + "9" * 30, "expected the number of sets as a positive integer"),
        ("999999999\t999999999", "the file is truncated"),  # no allocation for the counts
    ],
)
def test_lfw_huge_header_counts_are_input_errors(tmp_path: Path, header: str, phrase: str) -> None:
    path = tmp_path / "pairs.txt"
    path.write_text(header + "\nA\t1\t2\n", encoding="utf-8")
    with pytest.raises(InputFormatError, match=phrase):
        lfw.parse_pairs(path)


@pytest.mark.parametrize(
    ("value", "column"),
    [("\u00b2", "split number"), ("9" * 5000, "split number"), ("\u0663", "split number")],
)
def test_ytf_odd_split_numbers_are_input_errors(tmp_path: Path, value: str, column: str) -> None:
    path = tmp_path / "splits.txt"
    path.write_text(f"{value}, 1, A/1, B/2, 1\n", encoding="utf-8")
    with pytest.raises(InputFormatError, match=f"{path}:1: Expected a {column}"):
        ytf.parse_splits(path)


def test_ytf_line_numbers_count_only_newlines(tmp_path: Path) -> None:
    # A FILE SEPARATOR (\x1c) inside a line is not a line break: the error is on line 3.
    path = tmp_path / "splits.txt"
    rows = ["1, 1, A/1, B/2, 1", "1, 2, A/1, B\x1c/2, 1", "1, 3, A/1, B/2, x"]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    with pytest.raises(InputFormatError, match=f"{path}:3: Expected 'is same'"):
        ytf.parse_splits(path)


@pytest.mark.parametrize("tid", ["9" * 5000, "9" * 20, "\u0663"])
def test_ijba_out_of_range_ids_are_input_errors(tmp_path: Path, tid: str) -> None:
    record = write_ijba(tmp_path / "ijba", n_splits=1, n_subjects=3, with_1n=False, crlf=False)
    metadata = Path(str(record["root"])) / record["files"][0]
    lines = metadata.read_text(encoding="utf-8").split("\n")
    lines[1] = tid + lines[1][lines[1].index(",") :]
    metadata.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(InputFormatError, match="TEMPLATE_ID") as info:
        ijba.load(record["root"])
    assert str(info.value).startswith(f"{metadata}:2: ")
    assert len(str(info.value)) < 600


@pytest.mark.parametrize(
    "file", ["img\\1.jpg", "img/1\x00.jpg", "../img/1.jpg", "/data/img/1.jpg", "C:/img/1.jpg"]
)
def test_ijba_file_that_is_no_clean_relative_path_is_refused(tmp_path: Path, file: str) -> None:
    record = write_ijba(tmp_path / "ijba", n_splits=1, n_subjects=3, with_1n=False, crlf=False)
    metadata = Path(str(record["root"])) / record["files"][0]
    lines = metadata.read_text(encoding="utf-8").split("\n")
    fields = lines[3].split(",")
    fields[2] = file
    lines[3] = ",".join(fields)
    metadata.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(InputFormatError, match="Expected FILE") as info:
        ijba.load(record["root"])
    assert str(info.value).startswith(f"{metadata}:4: ")


def test_ijbc_base_parses(ijbc_folder: dict[str, object]) -> None:
    protocol = ijbc.load_ijbc(Path(str(ijbc_folder["root"])))
    assert protocol.counts["pairs"] == ijbc_folder["counts"]["pairs"]  # type: ignore[index]
    assert np.all(protocol.splits[0].verification.is_same.size > 0)  # type: ignore[union-attr]
