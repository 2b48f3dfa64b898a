"""IJB-B / IJB-C parsing on generated protocol folders in the release's formats (never real
metadata: it is licensed)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import ijbc_fixtures
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from ijbc_fixtures import file_names, write_ijbc

from facebench.errors import InputFormatError
from protocols import _text, ijbc
from protocols._types import TemplateProtocol, files_sha256

# -- helpers --------------------------------------------------------------------------------


def load(record: dict[str, Any], **kwargs: Any) -> TemplateProtocol:
    return ijbc.load_ijb(record["root"], record["variant"], **kwargs)


def path_of(record: dict[str, Any], kind: str) -> Path:
    return Path(record["root"]) / record["files"][kind]


def replace_line(path: Path, index: int, text: str) -> int:
    """Replace the ``index``-th non-blank line (0-based) by ``text``; return its line number."""
    lines = path.read_bytes().split(b"\n")
    filled = [i for i, line in enumerate(lines) if line.strip()]
    eol = b"\r" if lines[filled[index]].endswith(b"\r") else b""
    lines[filled[index]] = text.encode() + eol
    path.write_bytes(b"\n".join(lines))
    return filled[index] + 1


def drop_lines(path: Path, indices: list[int]) -> None:
    lines = path.read_bytes().split(b"\n")
    filled = [i for i, line in enumerate(lines) if line.strip()]
    gone = {filled[i] for i in indices}
    path.write_bytes(b"\n".join(line for i, line in enumerate(lines) if i not in gone))


def expect_error(record: dict[str, Any], kind: str, line: int | None, pattern: str) -> None:
    where = re.escape(str(path_of(record, kind))) + (f":{line}: " if line else ": ")
    with pytest.raises(InputFormatError, match=where + pattern):
        load(record)


def check_templates(templates: Any, record: dict[str, Any], ids: list[int], known: bool) -> None:
    """Templates hold ``ids`` (sorted), their images in file order, media, scores, subjects."""
    assert templates.ids.dtype == np.int64 and templates.ids.tolist() == sorted(ids)
    subjects = [record["subjects"][t] if known else -1 for t in sorted(ids)]
    assert templates.subjects.tolist() == subjects
    members = set(ids)
    rows = [(n, t, m) for n, t, m in record["images"] if t in members]
    assert templates.item_keys == tuple(f"loose_crop/{n}" for n, _, _ in rows)
    assert templates.ids[templates.item_template].tolist() == [t for _, t, _ in rows]
    assert templates.item_media.tolist() == [m for _, _, m in rows]
    assert templates.item_score.tolist() == [record["scores"][k] for k in templates.item_keys]


def check_matches(protocol: TemplateProtocol, record: dict[str, Any]) -> None:
    """Everything the loader returns equals what the generator wrote."""
    assert protocol.name == record["variant"]
    assert len(protocol.splits) == 1 and protocol.splits[0].split == 1
    split = protocol.splits[0]
    verification = split.verification
    assert verification is not None
    templates = verification.templates
    check_templates(templates, record, list(record["templates"]), record["with_1n"])
    pairs = list(
        zip(
            templates.ids[verification.left].tolist(),
            templates.ids[verification.right].tolist(),
            verification.is_same.astype(int).tolist(),
            strict=True,
        )
    )
    assert pairs == record["pairs"]
    # int64 from a parse, int32 (a read-only map of the entry) from the protocol cache
    assert verification.left.dtype in (np.int64, np.int32) and verification.is_same.dtype == bool
    assert protocol.counts == record["counts"]
    kinds = ["tid_mid", "pairs", "landmarks"]
    if record["with_1n"]:
        kinds += [*ijbc_fixtures.GALLERIES[record["variant"]], "probe_mixed"]
        assert [s.gallery for s in split.identification] == list(record["galleries"])
        for search in split.identification:
            gallery = record["galleries"][search.gallery]
            check_templates(search.gallery_templates, record, list(gallery), True)
            check_templates(search.probe_templates, record, list(record["probes"]), True)
    else:
        assert split.identification == ()
    assert protocol.files == tuple(record["files"][kind] for kind in kinds)
    assert protocol.sha256 == files_sha256(record["root"], list(protocol.files))
    assert protocol.items == sorted(record["scores"])


# -- parsing equals the generator's record --------------------------------------------------


@pytest.mark.parametrize("variant", ["ijbc", "ijbb"])
@pytest.mark.parametrize("with_1n", [True, False])
@pytest.mark.parametrize("style", ["release", "crlf-blanks"])
def test_parse_equals_record(tmp_path, variant, with_1n, style):
    messy = style == "crlf-blanks"
    record = write_ijbc(
        tmp_path, variant=variant, with_1n=with_1n, crlf=messy, blank_lines=messy, seed=3
    )
    check_matches(load(record), record)


def test_loaders_and_gallery_names(tmp_path):
    c = write_ijbc(tmp_path / "c", variant="ijbc")
    b = write_ijbc(tmp_path / "b", variant="ijbb")
    assert [s.gallery for s in ijbc.load_ijbc(c["root"]).splits[0].identification] == ["G1", "G2"]
    assert [s.gallery for s in ijbc.load_ijbb(b["root"]).splits[0].identification] == ["S1", "S2"]
    assert ijbc.load_ijbb(str(b["root"])).name == "ijbb"


def test_small_chunks_cross_lines_and_keep_line_numbers(tmp_path, monkeypatch):
    monkeypatch.setattr(_text, "_CHUNK", 37)
    record = write_ijbc(tmp_path, n_subjects=9, crlf=True, blank_lines=True, seed=5)
    check_matches(load(record), record)
    line = replace_line(path_of(record, "pairs"), 70, "1 2 3 4")
    expect_error(record, "pairs", line, r"Expected 3 fields .*but got 4")


def test_files_directly_in_the_protocol_dir(tmp_path):
    record = write_ijbc(tmp_path, meta_dir="")
    assert record["files"]["tid_mid"] == "ijbc_face_tid_mid.txt"
    check_matches(load(record), record)


def test_landmarks_are_joined_by_name_not_line_order(tmp_path):
    record = write_ijbc(tmp_path, landmark_order="shuffled", seed=8)
    check_matches(load(record), record)


def test_a_larger_set_with_video_media(tmp_path):
    record = write_ijbc(
        tmp_path, n_subjects=40, templates_per_subject=4, images_per_template=7, seed=11
    )
    check_matches(load(record), record)
    counts = record["counts"]["identification"]["galleries"]
    assert counts["G1"]["mated_probes"] + counts["G2"]["mated_probes"] == 40 * 3


def test_counts_differing_from_the_release_are_one_warning(tmp_path):
    protocol = load(write_ijbc(tmp_path))
    assert len(protocol.warnings) == 1
    assert protocol.warnings[0].startswith("ijbc: the counts differ from the official release")
    assert "templates 18 (official 23,124)" in protocol.warnings[0]
    assert "pairs 48 (official 15,658,489)" in protocol.warnings[0]


def test_release_counts_give_no_warning(monkeypatch, tmp_path):
    record = write_ijbc(tmp_path)
    counts = record["counts"]
    official = {
        "images": counts["images"],
        "templates": counts["templates"],
        "pairs": counts["pairs"],
        "genuine": counts["genuine"],
        "gallery_templates": 6,
        "probe_templates": 12,
    }
    monkeypatch.setitem(ijbc.VARIANTS, "ijbc", ijbc.Variant("ijbc", ("G1", "G2"), official))
    assert load(record).warnings == ()


# -- repeated lines -------------------------------------------------------------------------


def test_repeated_tid_mid_lines_are_kept_once_counted_and_warned(tmp_path):
    record = write_ijbc(tmp_path, repeated_lines=4)
    protocol = load(record)
    check_matches(protocol, record)
    assert protocol.counts["repeated_lines_dropped"] == {"tid_mid": 4, "landmarks": 0}
    n = len(record["images"])
    expected = f"{record['files']['tid_mid']}: 4 exactly repeated lines were dropped"
    assert any(w.startswith(expected) and f"line {n + 1})" in w for w in protocol.warnings)


def test_repeated_landmark_lines_are_kept_once(tmp_path):
    record = write_ijbc(tmp_path, repeated_landmark_lines=3, crlf=True)
    protocol = load(record)
    check_matches(protocol, record)
    assert any("3 exactly repeated lines" in w for w in protocol.warnings)


def test_unused_landmark_lines_are_a_warning(tmp_path):
    record = write_ijbc(tmp_path)
    path = path_of(record, "landmarks")
    path.write_bytes(path.read_bytes() + b"9999.jpg 1 2 3 4 5 6 7 8 9 10 0.5\n")
    protocol = load(record)
    assert any("1 landmarks lines name no image" in w for w in protocol.warnings)
    assert protocol.counts["landmark_lines"] == len(record["images"]) + 1


def test_same_image_name_with_another_template_is_an_error(tmp_path):
    record = write_ijbc(tmp_path)
    name, tid, mid = record["images"][0]
    line = replace_line(path_of(record, "tid_mid"), 5, f"{name} {tid} {mid + 1}")
    expect_error(record, "tid_mid", line, rf"Expected each image name once .*{name}.* line 1")


# -- bad inputs: each names its file and line -----------------------------------------------


BAD_LINES = [
    ("tid_mid", 3, "7.jpg 12", r"Expected 3 fields \(image_name template_id media_id\), but got 2"),
    ("tid_mid", 2, "7.jpg 12 34 5", r"Expected 3 fields .*but got 4"),
    ("tid_mid", 4, "7.jpg x 34", r"Expected an integer, but got 'x'"),
    ("tid_mid", 4, "7.jpg 12 1.5", r"Expected an integer, but got '1.5'"),
    ("tid_mid", 1, "7.jpg 12 -3", r"Expected non-negative template and media ids, but got 12 -3"),
    ("pairs", 5, "1 2", r"Expected 3 fields .*but got 2"),
    ("pairs", 6, "1 2 1 0", r"Expected 3 fields .*but got 4"),
    ("pairs", 7, "1 abc 0", r"Expected an integer, but got 'abc'"),
    ("pairs", 7, "99999999999999999999 1 0", r"Expected an integer, but got '9999"),
    ("pairs", 8, "1 2\x01 0", r"Expected text, but got the control byte b'\\x01'"),
    ("landmarks", 2, "2.jpg 1 2 3 4 5 6 7 8 9 10", r"Expected 12 fields .*but got 11"),
    ("landmarks", 3, "3.jpg 1 2 3 4 5 6 7 8 9 ten 0.9", r"Expected a finite number, but got 'ten'"),
    ("landmarks", 3, "3.jpg 1 2 3 4 5 6 7 8 9 1e1 0.9", None),  # an exponent is a number
    ("landmarks", 4, "4.jpg 1 2 3 4 5 6 7 8 9 nan 0.9", r"Expected finite landmark .*nan"),
]


@pytest.mark.parametrize(("kind", "index", "text", "pattern"), BAD_LINES)
@pytest.mark.parametrize("crlf", [False, True])
def test_bad_line_names_file_and_line(tmp_path, kind, index, text, pattern, crlf):
    record = write_ijbc(tmp_path, crlf=crlf, blank_lines=crlf)
    path = path_of(record, kind)
    if kind == "landmarks":  # keep the image's name so only the values are wrong
        name = path.read_bytes().split(b"\n")[index].split()[0].decode()
        text = name + text[text.index(" ") :]
    line = replace_line(path, index, text)
    if pattern is None:
        load(record)
    else:
        expect_error(record, kind, line, pattern)


def test_label_other_than_0_or_1(tmp_path):
    record = write_ijbc(tmp_path)
    a, b, _ = record["pairs"][9]
    line = replace_line(path_of(record, "pairs"), 9, f"{a} {b} 2")
    expect_error(
        record, "pairs", line, r"Expected the label 1 \(genuine\) or 0 \(impostor\), but got 2"
    )


@pytest.mark.parametrize("column", [0, 1])
def test_pair_naming_an_unknown_template(tmp_path, column):
    record = write_ijbc(tmp_path)
    pair = list(record["pairs"][4])
    pair[column] = 10**9 + 7
    line = replace_line(path_of(record, "pairs"), 4, " ".join(map(str, pair)))
    expect_error(
        record,
        "pairs",
        line,
        rf"Expected template ids listed in .*tid_mid.txt, but template {10**9 + 7}",
    )


def test_images_without_landmarks_name_count_and_first_five(tmp_path):
    record = write_ijbc(tmp_path)
    drop_lines(path_of(record, "landmarks"), [1, 2, 3, 5, 8, 13])
    first_five = ", ".join(record["images"][i][0] for i in (1, 2, 3, 5, 8))
    expect_error(
        record,
        "landmarks",
        None,
        rf"Expected a landmarks line for every image of .*, but 6 have none "
        rf"\(first 5: {first_five}\)",
    )


def test_non_utf8_image_name(tmp_path):
    record = write_ijbc(tmp_path)
    path = path_of(record, "tid_mid")
    lines = path.read_bytes().split(b"\n")
    lines[2] = b"\xff\xfe.jpg" + lines[2][lines[2].index(b" ") :]
    path.write_bytes(b"\n".join(lines))
    expect_error(record, "tid_mid", 3, "Expected a UTF-8 image name")


@pytest.mark.parametrize("content", [b"", b"\n\n \r\n"])
def test_empty_file(tmp_path, content):
    record = write_ijbc(tmp_path)
    path_of(record, "pairs").write_bytes(content)
    expect_error(record, "pairs", None, "Expected lines of template_id_1 template_id_2 label")


# -- the 1:N files --------------------------------------------------------------------------


def first_row(record: dict[str, Any], kind: str) -> list[str]:
    return path_of(record, kind).read_text().split("\n")[1].split(",")


CSV_CASES = [
    ("G1", 1, lambda row: "TEMPLATE,SUBJECT_ID,FILENAME", r"Expected a CSV header starting"),
    ("G2", 2, lambda row: row[0], r"Expected TEMPLATE_ID,SUBJECT_ID,\.\.\., but got"),
    ("probe_mixed", 2, lambda row: ",".join([row[0], "x", *row[2:]]), r"Expected SUBJECT_ID as"),
    ("probe_mixed", 2, lambda row: ",".join(["-4", *row[1:]]), r"Expected TEMPLATE_ID as"),
    (
        "G1",
        2,
        lambda row: ",".join(["424242", *row[1:]]),
        r"Expected template ids that have images in .*, but template 424242 has none",
    ),
]


@pytest.mark.parametrize(("kind", "line", "edit", "pattern"), CSV_CASES)
def test_bad_csv_line(tmp_path, kind, line, edit, pattern):
    record = write_ijbc(tmp_path)
    row = first_row(record, kind)
    path = path_of(record, kind)
    lines = path.read_text().split("\n")
    lines[line - 1] = edit(row)
    path.write_text("\n".join(lines))
    expect_error(record, kind, line, pattern)


def test_a_template_with_two_subjects_in_one_csv(tmp_path):
    record = write_ijbc(tmp_path, images_per_template=3)
    path = path_of(record, "probe_mixed")
    lines = path.read_text().split("\n")
    row = lines[2].split(",")  # the probe's second row
    lines[2] = ",".join([row[0], str(int(row[1]) + 1), *row[2:]])
    path.write_text("\n".join(lines))
    expect_error(record, "probe_mixed", 3, r"Expected one subject per template, but template")


def test_a_template_with_two_subjects_across_csvs(tmp_path):
    record = write_ijbc(tmp_path)
    gallery_tid = next(iter(record["galleries"]["G1"]))
    path = path_of(record, "probe_mixed")
    text = path.read_text()
    path.write_text(text + f"{gallery_tid},99999,img/1.jpg\n")
    line = text.count("\n") + 1
    expect_error(record, "probe_mixed", line, r"Expected one subject per template across the 1:N")


def test_crlf_csv(tmp_path):
    record = write_ijbc(tmp_path, crlf=True)
    for kind in ("G1", "G2", "probe_mixed"):
        assert b"\r\n" in path_of(record, kind).read_bytes()
    check_matches(load(record), record)


def test_disagreeing_pair_label_is_a_warning(tmp_path):
    record = write_ijbc(tmp_path)
    a, b, label = record["pairs"][0]
    line = replace_line(path_of(record, "pairs"), 0, f"{a} {b} {1 - label}")
    warnings = load(record).warnings
    assert any(
        f"1 pair labels disagree with the 1:N files' subjects (first on line {line})" in w
        for w in warnings
    )


def test_partial_1n_files_are_an_error(tmp_path):
    record = write_ijbc(tmp_path)
    path_of(record, "G2").unlink()
    with pytest.raises(
        InputFormatError, match=r"Expected the 1:N files .*ijbc_1N_gallery_G2.csv is missing"
    ):
        load(record)
    assert load(record, identification=False).splits[0].identification == ()


def test_identification_true_requires_the_files(tmp_path):
    record = write_ijbc(tmp_path, with_1n=False)
    with pytest.raises(InputFormatError, match="are missing"):
        load(record, identification=True)


def test_identification_false_skips_and_does_not_hash_them(tmp_path):
    record = write_ijbc(tmp_path)
    protocol = load(record, identification=False)
    assert protocol.splits[0].identification == ()
    assert protocol.files == tuple(record["files"][k] for k in ("tid_mid", "pairs", "landmarks"))
    assert "identification" not in protocol.counts
    assert protocol.sha256 == files_sha256(record["root"], list(protocol.files))
    assert protocol.sha256 != load(record).sha256


# -- files: missing, ambiguous, checksums ---------------------------------------------------


@pytest.mark.parametrize("kind", ["tid_mid", "pairs", "landmarks"])
def test_missing_meta_file_names_the_expected_path(tmp_path, kind):
    record = write_ijbc(tmp_path, variant="ijbb")
    path_of(record, kind).unlink()
    expected = Path(record["root"]) / "meta" / file_names("ijbb")[kind]
    with pytest.raises(InputFormatError, match=re.escape(f"{expected}: no such file")):
        load(record)


def test_a_file_in_both_places_is_ambiguous(tmp_path):
    record = write_ijbc(tmp_path)
    name = file_names("ijbc")["pairs"]
    (tmp_path / name).write_bytes(path_of(record, "pairs").read_bytes())
    with pytest.raises(InputFormatError, match=rf"Expected one copy of {name}, but got both"):
        load(record)


def test_protocol_dir_none_or_not_a_folder(tmp_path):
    with pytest.raises(InputFormatError, match="IJB-C is licensed and not shipped"):
        ijbc.load_ijbc(None)
    with pytest.raises(InputFormatError, match="Expected the IJB-B protocol folder"):
        ijbc.load_ijbb(tmp_path / "nowhere")


def test_sha256_covers_exactly_the_files_read(tmp_path):
    record = write_ijbc(tmp_path)
    protocol = load(record)
    assert protocol.sha256 == files_sha256(tmp_path, list(protocol.files))
    (tmp_path / "meta" / "notes.txt").write_text("not a protocol file")
    (tmp_path / "loose_crop").mkdir()
    (tmp_path / "loose_crop" / "1.jpg").write_bytes(b"an image is never hashed")
    assert load(record).sha256 == protocol.sha256
    for kind in protocol.files:
        path = tmp_path / kind
        original = path.read_bytes()
        path.write_bytes(original + b"\n")  # a blank line: same content, other bytes
        assert load(record).sha256 != protocol.sha256
        path.write_bytes(original)
    assert load(record).sha256 == protocol.sha256


# -- landmarks for the extractor ------------------------------------------------------------


def test_landmarks_of_every_item(tmp_path):
    record = write_ijbc(tmp_path, landmark_order="shuffled", repeated_landmark_lines=2)
    protocol = load(record)
    points = ijbc.landmarks(protocol)
    assert points == {key: record["landmarks"][key] for key in protocol.items}
    assert all(len(value) == 10 for value in points.values())
    table = ijbc.read_landmarks(tmp_path, "ijbc")
    assert table.points.shape == (len(record["images"]), 10)
    assert table.as_dict() == record["landmarks"]
    assert dict(zip(table.keys, table.score.tolist(), strict=True)) == record["scores"]


def test_landmarks_need_an_ijb_protocol(tmp_path):
    protocol = load(write_ijbc(tmp_path))
    other = TemplateProtocol(name="ijba", source=protocol.source, sha256="", splits=())
    with pytest.raises(InputFormatError, match="Expected an IJB-B or IJB-C protocol"):
        ijbc.landmarks(other)


# -- the fast paths against slow, obviously-correct readers ---------------------------------


def slow_read(path: Path) -> list[list[str]]:
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_any_whitespace_layout_parses_the_same(tmp_path, seed):
    """Tabs, runs of spaces, CRLF, blank lines: the same protocol as a plain split reads."""
    record = write_ijbc(tmp_path, seed=seed, n_subjects=8)
    rng = np.random.default_rng(seed)
    for kind in ("tid_mid", "pairs", "landmarks"):
        path = path_of(record, kind)
        rows = slow_read(path)
        out = []
        for row in rows:
            seps = rng.choice([" ", "  ", "\t", " \t "], len(row) - 1)
            text = "".join(f + s for f, s in zip(row, [*seps, ""], strict=True))
            out.append(rng.choice(["", " ", "\t"]) + text + rng.choice(["", " "]))
            if rng.random() < 0.1:
                out.append(rng.choice(["", "   ", "\t"]))
        path.write_text(rng.choice(["\n", "\r\n"]).join(out))  # no final newline
        assert slow_read(path) == rows
    check_matches(load(record), record)


DECIMAL = st.from_regex(r"[+-]?([0-9]{1,7}(\.[0-9]{0,7})?|\.[0-9]{1,7})", fullmatch=True)


@given(st.lists(DECIMAL, min_size=1, max_size=30), st.sampled_from([" ", "\t", "\n", "\r\n"]))
@example(["-0.0", "0", "+.5", "5.", "007.250"], " ")
@example(["123456789012345", "-999999.999999999"], "\n")
def test_decimals_read_exactly_as_strtod(tokens, sep):
    text = sep.join(tokens).encode()
    fast = _text._decimals(np.frombuffer(text, dtype=np.uint8))
    slow = np.array([float(t) for t in tokens])
    assert fast is not None
    np.testing.assert_array_equal(fast.view(np.int64), slow.view(np.int64))  # bit for bit


@pytest.mark.parametrize(
    "text", [b"1e5", b"1.2.3", b"--1", b"1-", b".", b"+", b"0x1", b"1234567890123456"]
)
def test_decimals_leave_other_numbers_to_strtod(text):
    assert _text._decimals(np.frombuffer(b"1.5 " + text, dtype=np.uint8)) is None


def test_full_size_writer_formats_like_python():
    text = ijbc_fixtures._ascii([np.array([0, 7, 123]), b" ", (np.array([5, 50, 500]), 3), b".x\n"])
    assert text == b"0 005.x\n7 050.x\n123 500.x\n"


CSV_FIELD = st.one_of(
    st.integers(0, 10**6).map(str),
    st.sampled_from(["", " 7", "7 ", "+3", "-3", "1 2", "x", "1.5", "\t9", "0007"]),
)
CSV_ROW = st.lists(CSV_FIELD, min_size=1, max_size=4).map(",".join)


def _csv_reference(data: bytes) -> Any:
    """What the first two fields of each non-blank row must give, written independently."""
    out: list[list[int]] = [[], [], []]
    for line_no, row in enumerate(data.decode().split("\n")[1:], start=2):
        if not row.strip():
            continue
        fields = [f.strip() for f in row.split(",")]
        if len(fields) < 2 or not all(f.isdigit() for f in fields[:2]):
            return f"probe.csv:{line_no}:"
        out[0].append(int(fields[0]))
        out[1].append(int(fields[1]))
        out[2].append(line_no)
    return out or None


@given(
    st.lists(CSV_ROW | st.sampled_from(["", "  "]), max_size=12), st.sampled_from(["\n", "\r\n"])
)
@example(["1,2", "3,4,img/1.jpg"], "\n")
@example(["1,2,", ",", "5"], "\r\n")
@example(["0,", "0,1 2"], "\n")
def test_csv_reader_against_an_independent_reference(rows, eol):
    data = eol.join(["TEMPLATE_ID,SUBJECT_ID,FILENAME", *rows]).encode()
    path = Path("probe.csv")
    expected = _csv_reference(data)
    try:
        got: Any = [a.tolist() for a in _text._parse_csv(path, data)]
    except InputFormatError as err:
        got = str(err)
    if isinstance(expected, str):
        assert isinstance(got, str) and got.startswith(expected), got
    elif expected == [[], [], []]:
        assert isinstance(got, str) and "has none" in got
    else:
        assert got == expected


def test_csv_with_two_columns_and_no_final_newline(tmp_path, monkeypatch):
    data = b"TEMPLATE_ID,SUBJECT_ID\r\n5,7\r\n\r\n 6 , 8\r\n9,10"
    templates, subjects, lines = _text._parse_csv(tmp_path / "g.csv", data)
    assert (templates.tolist(), subjects.tolist(), lines.tolist()) == (
        [5, 6, 9],
        [7, 8, 10],
        [2, 4, 5],
    )


@pytest.mark.parametrize("crlf", [False, True])
def test_valid_csvs_with_either_line_end(tmp_path, crlf):
    record = write_ijbc(tmp_path, variant="ijbb", crlf=crlf)
    check_matches(load(record), record)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(-5, 5), max_size=40))
def test_n_distinct_counts_as_np_unique(values: list[int]) -> None:
    from protocols.ijbc import _n_distinct

    assert _n_distinct(np.array(values, dtype=np.int64)) == np.unique(values).size
