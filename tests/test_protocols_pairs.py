"""Generic pairs files (``id1 id2 label [fold]``) and score files (``id1 id2 score label
[fold]``): every accepted variant parses to the pairs that were written, folds without a
fold column are scikit-learn's KFold blocks, and every malformed line is an error naming
the file and line."""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

import numpy as np
import pytest
from conftest import FUZZ, mutated, parse_or_error
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.model_selection import KFold

from facebench.errors import FacebenchError, InputFormatError
from protocols import PROTOCOLS, PairsProtocol, lfw
from protocols.pairs import load, parse_pairs, parse_scored_pairs


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def kfold_reference(n_pairs: int) -> list[int]:
    folds = [0] * n_pairs
    for fold, (_, test) in enumerate(KFold(n_splits=10, shuffle=False).split(range(n_pairs))):
        for i in test:
            folds[i] = fold + 1
    return folds


def test_whitespace_file_with_folds(tmp_path: Path) -> None:
    path = write(
        tmp_path / "p.txt", "a/1.jpg b/1.jpg 1 1\na/2.jpg c/1.jpg 0 2\nc/1.jpg\tc/2.jpg 1\t2\n"
    )
    p = parse_pairs(path)
    assert p.name == "pairs" and p.source == str(path)
    assert p.left == ("a/1.jpg", "a/2.jpg", "c/1.jpg")
    assert p.right == ("b/1.jpg", "c/1.jpg", "c/2.jpg")
    assert p.is_same.tolist() == [True, False, True] and p.folds.tolist() == [1, 2, 2]
    assert p.folds.dtype == np.int64 and p.is_same.dtype == np.bool_
    assert p.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert p.counts["n_items"] == 5 and p.counts["folds_from_order"] == 0
    assert p.items == ["a/1.jpg", "a/2.jpg", "b/1.jpg", "c/1.jpg", "c/2.jpg"]


def test_csv_with_bom_crlf_comments_header_and_word_labels(tmp_path: Path) -> None:
    text = (
        "\ufeff# made by hand\r\n"
        "\r\n"
        "ID1, ID2, Label, Fold\r\n"
        "x.bin#0, x.bin#1, SAME, 1\r\n"
        "  # a comment between pairs\r\n"
        '"a, b.jpg", c.jpg, Different, 2\r\n'
        "d.jpg,e.jpg,true,2"  # no final newline
    )
    p = parse_pairs(write(tmp_path / "p.csv", text))
    assert p.left == ("x.bin#0", "a, b.jpg", "d.jpg")  # '#' inside an id is kept
    assert p.right == ("x.bin#1", "c.jpg", "e.jpg")
    assert p.is_same.tolist() == [True, False, True] and p.folds.tolist() == [1, 2, 2]
    assert p.counts["header"] == 1 and p.counts["n_comment_lines"] == 2
    assert p.counts["n_blank_lines"] == 1 and p.counts["n_lines"] == 7


@pytest.mark.parametrize("n_pairs", [10, 23, 101])
def test_without_fold_column_folds_are_kfold_blocks(tmp_path: Path, n_pairs: int) -> None:
    text = "".join(f"i{k} j{k} {k % 2}\n" for k in range(n_pairs))
    p = parse_pairs(write(tmp_path / "p.txt", text))
    assert p.folds.tolist() == kfold_reference(n_pairs)
    assert p.counts["folds_from_order"] == 1 and p.counts["n_folds"] == 10


def test_zero_based_folds_are_numbered_from_one(tmp_path: Path) -> None:
    p = parse_pairs(write(tmp_path / "p.txt", "a b 1 0\nc d 0 1\ne f 1 0\n"))
    assert p.folds.tolist() == [1, 2, 1] and p.counts["fold_numbers_shifted"] == 1
    assert any("from 0" in w for w in p.warnings)


def test_repeated_pairs_are_kept_and_counted(tmp_path: Path) -> None:
    p = parse_pairs(write(tmp_path / "p.txt", "a b 1 1\na b 1 2\nc d 0 2\n"))
    assert p.n_pairs == 3 and p.counts["n_repeated_pairs"] == 1 and len(p.warnings) == 1


def test_scores_files_and_facebench_scores_csv(tmp_path: Path) -> None:
    rows = [
        ("a.jpg", "b,c.jpg", 0.1 + 0.2, 1, 1),
        ("d", "e", -1e-300, 0, 2),
        ("f", "g", 5e-324, 1, 2),
    ]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id1", "id2", "score", "label", "fold"])
    writer.writerows(rows)
    scored = parse_scored_pairs(write(tmp_path / "s.csv", buffer.getvalue()))
    assert scored.scores.tolist() == [r[2] for r in rows]  # every bit of repr survives
    assert scored.protocol.left == ("a.jpg", "d", "f") and scored.protocol.right[0] == "b,c.jpg"
    assert scored.protocol.is_same.tolist() == [True, False, True]
    assert scored.protocol.name == "scores"


def test_registry_and_loader(tmp_path: Path) -> None:
    assert PROTOCOLS["pairs"].kind == "pairs"
    with pytest.raises(FacebenchError, match="--pairs FILE"):
        load(None)
    p = PROTOCOLS["pairs"].load(write(tmp_path / "p.txt", "a b same 1\nc d different 2\n"))
    assert isinstance(p, PairsProtocol) and p.name == "pairs"


# ----------------------------------------------------------------------------- round trip

_ID = st.text(
    alphabet=st.characters(categories=["L", "N"], include_characters="/._-#"), min_size=1
).filter(lambda s: not s.startswith("#"))


@settings(max_examples=60, deadline=None)
@given(
    pairs=st.lists(st.tuples(_ID, _ID, st.booleans()), min_size=10, max_size=30),
    comma=st.booleans(),
    header=st.booleans(),
    words=st.sampled_from([("1", "0"), ("same", "different"), ("True", "FALSE")]),
    crlf=st.booleans(),
    bom=st.booleans(),
    with_folds=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_written_pairs_parse_back(
    tmp_path_factory: pytest.TempPathFactory,
    pairs: list[tuple[str, str, bool]],
    comma: bool,
    header: bool,
    words: tuple[str, str],
    crlf: bool,
    bom: bool,
    with_folds: bool,
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    folds = rng.permutation(np.arange(len(pairs)) % 3 + 1).tolist()
    sep = ", " if comma else rng.choice([" ", "\t", "  "])
    lines = ["# pairs"]
    if header:
        lines.append(sep.join(["id1", "id2", "label"] + (["fold"] if with_folds else [])))
    for (a, b, same), fold in zip(pairs, folds, strict=True):
        fields = [a, b, words[0] if same else words[1]] + ([str(fold)] if with_folds else [])
        lines.append(sep.join(fields))
    text = ("\r\n" if crlf else "\n").join(lines) + "\n"
    path = tmp_path_factory.mktemp("rt") / "pairs.txt"
    write(path, ("\ufeff" if bom else "") + text)
    p = parse_pairs(path)
    assert list(p.left) == [a for a, _, _ in pairs] and list(p.right) == [b for _, b, _ in pairs]
    assert p.is_same.tolist() == [s for _, _, s in pairs]
    assert p.folds.tolist() == (folds if with_folds else kfold_reference(len(pairs)))


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("text", "line", "phrases"),
    [
        ("a b 1 1\nc d\n", 2, ["4 columns", "got 2"]),
        ("a b 1 1\nc d 0\n", 2, ["4 columns", "as on line 1", "fold column"]),
        ("a b 1\nc d 0 1\n", 2, ["3 columns", "as on line 1"]),
        ("a b 1 1\nc d yes 2\n", 2, ["label in column 3", "'yes'", "same"]),
        ("a b 1 1\nc d 0 x\n", 2, ["fold", "'x'"]),
        ("a b 1 1\nc d 0 -1\n", 2, ["fold", "'-1'"]),
        ("a b 1 1\nc d 0 1.5\n", 2, ["fold", "'1.5'"]),
        ("a b 1 1\nc d 0 ٣\n", 2, ["fold", "ASCII"]),
        ("a,b,1,1\nc,,0,2\n", 2, ["non-empty ids"]),
        ("# c\nid1 id2 label folds\na b 1 1\n", 2, ["fold", "'folds'"]),
        ("id1 id2 label fold x\n", 1, ["header of 3 or 4 columns"]),
        ("10\t300\nAbel\t1\t2\n", 1, ["3 or 4 columns", "--protocol lfw"]),
        ("a b 1 1\n\xff\n", 2, ["UTF-8"]),
        ('a,"b,1,1\n', 1, ["columns"]),
    ],
)
def test_bad_lines_name_file_and_line(
    tmp_path: Path, text: str, line: int, phrases: list[str]
) -> None:
    data = text.encode("utf-8").replace("\xff".encode(), b"\xff")
    path = write(tmp_path / "pairs.txt", data)
    with pytest.raises(InputFormatError) as caught:
        parse_pairs(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}: "), message
    for phrase in phrases:
        assert phrase in message, message


@pytest.mark.parametrize(
    ("text", "phrases"),
    [
        ("", ["has none"]),
        ("# only a comment\n\n", ["has none"]),
        ("a b 1\nc d 0\n", ["at least 10 pairs", "fold column"]),
        ("a b 1 1\nc d 0 3\n", ["without gaps", "missing [2]"]),
        ("a b 1 2\nc d 0 3\n", ["1..k"]),
        ("a b 1 4\nc d 0 4\n", ["1..k"]),
        ("a b 1 1\nc d 0 1\n", ["at least 2 folds"]),
    ],
)
def test_bad_files(tmp_path: Path, text: str, phrases: list[str]) -> None:
    path = write(tmp_path / "pairs.txt", text)
    with pytest.raises(InputFormatError) as caught:
        parse_pairs(path)
    message = str(caught.value)
    assert message.startswith(str(path)), message
    for phrase in phrases:
        assert phrase in message, message


@pytest.mark.parametrize(
    ("text", "line", "phrases"),
    [
        ("a b 0.5 1 1\nc d nan 0 2\n", 2, ["finite score", "'nan'"]),
        ("a b 0.5 1 1\nc d inf 0 2\n", 2, ["finite score"]),
        ("a b 0.5 1 1\nc d high 0 2\n", 2, ["score as a number", "'high'"]),
        ("id1,id2,distance,label\na,b,0.5,1\n", 1, ["score", "'distance'", "similarities"]),
        ("a b 0.5 1 1\nc d 0.1 2 2\n", 2, ["label in column 4"]),
    ],
)
def test_bad_score_lines(tmp_path: Path, text: str, line: int, phrases: list[str]) -> None:
    path = write(tmp_path / "s.txt", text)
    with pytest.raises(InputFormatError) as caught:
        parse_scored_pairs(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}: "), message
    for phrase in phrases:
        assert phrase in message, message


def test_missing_file_and_folder(tmp_path: Path) -> None:
    with pytest.raises(InputFormatError, match="no such pairs file"):
        parse_pairs(tmp_path / "none.txt")
    with pytest.raises(InputFormatError, match="folder"):
        parse_pairs(tmp_path)


def _fuzz_base() -> bytes:
    lines = lfw.shipped_file().read_text().splitlines()[1:4]
    keys = [lfw.image_key(f[0], int(f[1])) for f in (line.split("\t") for line in lines)]
    body = [f"{keys[i % 3]},{keys[(i + 1) % 3]},{i % 2},{i % 3 + 1}" for i in range(9)]
    return ("id1,id2,label,fold\n" + "\n".join(body) + "\n").encode()


@FUZZ
@given(data=mutated(_fuzz_base()))
def test_fuzz_pairs(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("pairs") / "pairs.csv"
    path.write_bytes(data)
    result = parse_or_error(parse_pairs, path)
    if isinstance(result, PairsProtocol):
        assert result.n_pairs == len(result.right) == result.is_same.size == result.folds.size
        assert int(result.folds.min()) == 1 and np.unique(result.folds).size >= 2
