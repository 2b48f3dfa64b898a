"""IJB-A parsing, on generated folders in the exact official format (the real files are
licensed and never committed): the parse equals what the generator wrote, and every bad input
is an error naming the file and line."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ijba_fixtures import COLUMNS, write_ijba

from facebench.errors import InputFormatError
from protocols import ijba
from protocols._types import Templates, files_sha256

V1 = "IJB-A_11_sets/split1/verify_metadata_1.csv"
C1 = "IJB-A_11_sets/split1/verify_comparisons_1.csv"


def as_record(templates: Templates) -> list[dict[str, Any]]:
    """Templates in the generator's record shape (file order, rows in file order)."""
    out = [
        {"id": int(t), "subject": int(s), "keys": [], "media": []}
        for t, s in zip(templates.ids, templates.subjects, strict=True)
    ]
    for key, position, media in zip(
        templates.item_keys, templates.item_template, templates.item_media, strict=True
    ):
        out[position]["keys"].append(key)
        out[position]["media"].append(int(media))
    return out


def read_lines(path: Path) -> tuple[list[str], str]:
    text = path.read_bytes().decode("utf-8")
    eol = "\r\n" if "\r\n" in text else "\n"
    return text.split(eol)[:-1], eol


def write_lines(path: Path, lines: list[str], eol: str = "\r\n") -> None:
    path.write_bytes((eol.join(lines) + eol).encode("utf-8"))


def edit_row(path: Path, line_no: int, **fields: str) -> list[str]:
    """Set named columns of the metadata row at ``line_no`` (1 = header); return the row."""
    lines, eol = read_lines(path)
    row = lines[line_no - 1].split(",")
    for name, value in fields.items():
        row[COLUMNS.index(name.upper())] = value
    lines[line_no - 1] = ",".join(row)
    write_lines(path, lines, eol)
    return row


def field(path: Path, line_no: int, name: str) -> str:
    return read_lines(path)[0][line_no - 1].split(",")[COLUMNS.index(name)]


def line_of(path: Path, tid: int, index: int = 0) -> int:
    """The line number of the ``index``-th row of template ``tid``."""
    lines, _ = read_lines(path)
    found = [i + 1 for i, line in enumerate(lines[1:], 1) if line.split(",")[0] == str(tid)]
    return found[index]


@pytest.fixture
def small(tmp_path: Path) -> dict[str, Any]:
    return write_ijba(tmp_path / "ijba", n_splits=3, n_subjects=12)


def load_error(root: Path, **kwargs: Any) -> str:
    with pytest.raises(InputFormatError) as info:
        ijba.load(root, **kwargs)
    return str(info.value)


# --- the parse equals the record ------------------------------------------------------------


@pytest.mark.parametrize(
    ("crlf", "with_1n", "bom"),
    [(True, True, False), (False, True, True), (True, False, True), (False, False, False)],
)
def test_parse_equals_generated_record(tmp_path: Path, crlf: bool, with_1n: bool, bom: bool):
    record = write_ijba(tmp_path / "ijba", n_splits=3, crlf=crlf, with_1n=with_1n, bom=bom)
    protocol = ijba.load(tmp_path / "ijba")
    assert protocol.name == "ijba"
    assert protocol.source == str(tmp_path / "ijba")
    assert protocol.counts == record["counts"]
    assert [s.split for s in protocol.splits] == [1, 2, 3]
    for split, expected in zip(protocol.splits, record["splits"], strict=True):
        ver = split.verification
        assert ver is not None
        assert as_record(ver.templates) == expected["verify"]
        ids = ver.templates.ids
        got = list(
            zip(ids[ver.left].tolist(), ids[ver.right].tolist(), ver.is_same.tolist(), strict=True)
        )
        assert got == expected["comparisons"]
        assert ver.left.dtype == np.int64 and ver.is_same.dtype == np.bool_
        if with_1n:
            (search,) = split.identification
            assert search.gallery == "gallery"
            assert as_record(search.gallery_templates) == expected["gallery"]
            assert as_record(search.probe_templates) == expected["probe"]
        else:
            assert split.identification == ()
            assert "n_gallery_templates" not in protocol.counts["splits"][0]
    assert protocol.items == record["keys"]
    assert ijba.boxes(protocol) == record["boxes"]
    assert list(protocol.files) == record["files"]
    assert protocol.sha256 == files_sha256(tmp_path / "ijba", record["files"])
    # a small copy loads; its differences from the release are warnings, not errors
    assert "3 splits found, the release has 10" in protocol.warnings
    assert "split 2: 90 templates, the release has 1,814-2,040" in protocol.warnings
    n = record["counts"]["splits"][1]["n_comparisons"]
    assert f"split 2: {n} comparisons, the release has 11,648-11,869" in protocol.warnings
    assert len(protocol.warnings) == 1 + 3 * 3


def test_fixture_has_the_release_quirks(small: dict[str, Any]):
    verify = small["splits"][0]["verify"]
    # a template mixing stills and video frames
    assert any(
        any(k.startswith("img/") for k in t["keys"])
        and any(k.startswith("frame/") for k in t["keys"])
        for t in verify
    )
    # one frame listed twice under two sighting ids (two items, slightly different boxes)
    files = [k.split("#")[0] for t in verify for k in set(t["keys"])]
    assert len(files) > len(set(files))
    # a face box in two templates of one split: one store item, two membership rows
    counts = small["counts"]["splits"][0]
    assert counts["n_rows"] > counts["n_items"]
    # non-mated probes
    assert 0 < counts["n_nonmated_probes"] < counts["n_probe_templates"]
    assert all(k in small["key_subject"] for k in small["keys"])


def test_same_template_id_in_two_splits_stays_separate(small: dict[str, Any]):
    protocol = ijba.load(small["root"])
    first, second = (as_record(s.verification.templates) for s in protocol.splits[:2])
    by_id = {t["id"]: t for t in second}
    reused = [(t, by_id[t["id"]]) for t in first if t["id"] in by_id]
    assert reused
    assert any(a["keys"] != b["keys"] for a, b in reused)
    for a, b in reused:  # each split keeps its own items
        assert a in small["splits"][0]["verify"] and b in small["splits"][1]["verify"]


def test_repeated_rows_are_read_once_counted_and_warned(tmp_path: Path):
    record = write_ijba(tmp_path / "r", n_splits=2, repeated_rows=3)
    protocol = ijba.load(tmp_path / "r")
    assert protocol.counts == record["counts"]
    assert [c["repeated_rows_dropped"] for c in protocol.counts["splits"]] == [9, 9]
    assert protocol.counts["total"]["repeated_rows_dropped"] == 18
    for split, expected in zip(protocol.splits, record["splits"], strict=True):
        assert as_record(split.verification.templates) == expected["verify"]
    assert f"{V1}: 3 rows repeat an earlier row exactly; each was read once" in protocol.warnings


def test_columns_found_by_name_in_any_order_case_and_spacing(small: dict[str, Any]):
    path = small["root"] / V1
    lines, eol = read_lines(path)
    order = [COLUMNS.index(c) for c in reversed(COLUMNS)]
    header = [f"  {c.lower()} " for c in reversed(COLUMNS)]
    rows = [header] + [[line.split(",")[i] for i in order] for line in lines[1:]]
    write_lines(path, [",".join(r) for r in rows] + ["", ""], eol)  # blank final lines
    protocol = ijba.load(small["root"])
    assert protocol.counts == small["counts"]
    assert as_record(protocol.splits[0].verification.templates) == small["splits"][0]["verify"]


def test_only_required_columns_are_needed(small: dict[str, Any]):
    path = small["root"] / V1
    lines, eol = read_lines(path)
    keep = [COLUMNS.index(c) for c in ijba.REQUIRED_COLUMNS]
    write_lines(path, [",".join(line.split(",")[i] for i in keep) for line in lines], eol)
    assert ijba.load(small["root"]).counts == small["counts"]


def test_protocol_dir_may_be_the_11_sets_folder(small: dict[str, Any]):
    direct = ijba.load(small["root"])
    inner = ijba.load(small["root"] / "IJB-A_11_sets")
    assert inner.sha256 == direct.sha256 and inner.source == direct.source
    assert inner.counts == direct.counts


def test_splits_selects_and_unknown_split_lists_the_available(small: dict[str, Any]):
    protocol = ijba.load(small["root"], splits=[3, 2, 3])
    assert [s.split for s in protocol.splits] == [2, 3]
    assert protocol.counts["splits"] == small["counts"]["splits"][1:]
    assert protocol.counts["total"]["n_splits"] == 2
    assert protocol.counts["total"]["n_splits_found"] == 3
    assert "only splits 2, 3 of the 3 found were read" in protocol.warnings
    assert all("split1/" not in f for f in protocol.files)
    message = load_error(small["root"], splits=[4])
    assert "Expected splits among the available 1, 2, 3, but got split 4" in message


def test_train_files_are_not_read(small: dict[str, Any]):
    before = ijba.load(small["root"])
    train = small["root"] / "IJB-A_11_sets/split1/train_1.csv"
    train.write_bytes(b"garbage,\r\n")
    after = ijba.load(small["root"])
    assert after.sha256 == before.sha256
    assert all("train" not in f for f in after.files)


# --- checksums ------------------------------------------------------------------------------


def test_sha256_changes_with_one_file_and_not_with_read_order(small: dict[str, Any]):
    root = small["root"]
    protocol = ijba.load(root)
    assert files_sha256(root, list(reversed(protocol.files))) == protocol.sha256
    assert ijba.load(root, splits=[2, 1]).sha256 == ijba.load(root, splits=[1, 2]).sha256
    path = root / "IJB-A_1N_sets/split3/search_probe_3.csv"
    lines, eol = read_lines(path)
    write_lines(path, [lines[0], *lines[1:][::-1]], eol)  # same rows, another order
    assert ijba.load(root).sha256 != protocol.sha256


def test_release_differences():
    in_range = {"split": 1, "n_templates": 1900, "n_comparisons": 11700, "n_genuine": 1700}
    counts = {"splits": [in_range] * 10, "total": {"n_splits_found": 10}}
    assert ijba.release_differences(counts) == []
    counts["splits"] = [in_range, {**in_range, "split": 2, "n_genuine": 1875}]
    assert ijba.release_differences(counts) == [
        "split 2: 1,875 genuine comparisons, the release has 1,648-1,874"
    ]


# --- keys and boxes -------------------------------------------------------------------------


def test_keys_boxes_and_image_paths(small: dict[str, Any]):
    protocol = ijba.load(small["root"])
    key = protocol.items[0]
    assert key == ijba.item_key(ijba.image_path(key), int(key.rsplit("#", 1)[1]))
    assert ijba.image_path("frame/28337_00300.png#8484") == "frame/28337_00300.png"
    assert ijba.image_path("img/a#b.jpg#12") == "img/a#b.jpg"
    for bad in ("img/1.jpg", "img/1.jpg#", "img/1.jpg#8484.0", "#12"):
        with pytest.raises(InputFormatError, match="Expected an IJB-A item key"):
            ijba.image_path(bad)
    boxes = ijba.boxes(protocol)
    boxes.clear()  # a copy
    assert ijba.boxes(protocol) == small["boxes"]
    with pytest.raises(TypeError, match="carries no IJB-A boxes"):
        ijba.boxes(ijba.TemplateProtocol(name="x", source="", sha256="", splits=()))


def test_sighting_ids_are_written_as_integers(small: dict[str, Any]):
    path = small["root"] / V1
    edit_row(path, 2, sighting_id="00" + field(path, 2, "SIGHTING_ID"))
    assert ijba.load(small["root"]).counts == small["counts"]


# --- bad inputs -----------------------------------------------------------------------------


def test_comparison_naming_an_absent_template(small: dict[str, Any]):
    path = small["root"] / "IJB-A_11_sets/split2/verify_comparisons_2.csv"
    lines, eol = read_lines(path)
    first = lines[4].split(",")[0]
    lines[4] = f"{first},999999"
    write_lines(path, lines, eol)
    message = load_error(small["root"])
    assert message.startswith(f"{path}:5: Expected template ids listed in verify_metadata_2.csv")
    assert "template 999999 is not in verify_metadata_2.csv" in message


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("1,2,3", r":4: Expected 2 fields `tid1,tid2`, but got 3"),
        ("1", r":4: Expected 2 fields `tid1,tid2`, but got 1"),
        ("1,x2", r":4: Expected a template id as an integer, but got 'x2'"),
        ("TEMPLATE_ID1,TEMPLATE_ID2", r":4: Expected a template id as an integer"),
    ],
)
def test_malformed_comparison_lines(small: dict[str, Any], line: str, expected: str):
    path = small["root"] / C1
    lines, eol = read_lines(path)
    lines[3] = line
    write_lines(path, lines, eol)
    assert re.search(re.escape(str(path)) + expected, load_error(small["root"]))


def test_blank_line_inside_a_file(small: dict[str, Any]):
    path = small["root"] / C1
    lines, eol = read_lines(path)
    write_lines(path, [*lines[:3], "", *lines[3:]], eol)
    message = load_error(small["root"])
    assert message.startswith(f"{path}:4: Expected a row, but got an empty line")


def test_self_and_repeated_comparisons_are_kept_counted_and_warned(small: dict[str, Any]):
    path = small["root"] / C1
    lines, eol = read_lines(path)
    a, b = lines[0].split(",")
    write_lines(path, [*lines, f"{a},{a}", f"{b},{a}"], eol)
    protocol = ijba.load(small["root"])
    counts = protocol.counts["splits"][0]
    assert counts["n_comparisons"] == small["counts"]["splits"][0]["n_comparisons"] + 2
    assert counts["n_self_comparisons"] == 1 and counts["n_repeated_comparisons"] == 1
    assert any(
        w.startswith(f"{C1}: 1 comparisons of a template with itself") for w in protocol.warnings
    )
    assert any(w.startswith(f"{C1}: 1 comparisons listed again") for w in protocol.warnings)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        ({"template_id": "12a"}, "Expected TEMPLATE_ID as an integer, but got '12a'"),
        ({"template_id": "-3"}, "Expected TEMPLATE_ID as an integer, but got '-3'"),
        ({"subject_id": ""}, "Expected SUBJECT_ID as an integer, but got ''"),
        ({"media_id": "1.5"}, "Expected MEDIA_ID as an integer, but got '1.5'"),
        ({"sighting_id": "8484.0"}, "Expected SIGHTING_ID as an integer, but got '8484.0'"),
        ({"face_x": "left"}, "Expected FACE_X as a finite number, but got 'left'"),
        ({"face_y": "nan"}, "Expected FACE_Y as a finite number, but got 'nan'"),
        ({"face_width": "0"}, "Expected FACE_WIDTH as a positive number, but got '0'"),
        ({"face_height": ""}, "Expected FACE_HEIGHT as a positive number, but got ''"),
        ({"file": "../img/1.jpg"}, "Expected FILE relative to the IJB-A image folder"),
        ({"file": "img/../../etc/x.jpg"}, "but got 'img/../../etc/x.jpg', which leaves"),
        ({"file": "/etc/x.jpg"}, "but got '/etc/x.jpg', which leaves that folder"),
        ({"file": r"C:\img\1.jpg"}, "Expected FILE relative to the IJB-A image folder"),
        ({"file": r"img\..\..\1.jpg"}, "Expected FILE relative to the IJB-A image folder"),
        ({"file": ""}, "Expected FILE relative to the IJB-A image folder"),
    ],
)
def test_bad_metadata_field_names_file_and_line(
    small: dict[str, Any], edit: dict[str, str], expected: str
):
    path = small["root"] / "IJB-A_1N_sets/split2/search_gallery_2.csv"
    edit_row(path, 6, **edit)
    message = load_error(small["root"])
    assert message.startswith(f"{path}:6: Expected ") and expected in message


def test_wrong_column_count_names_file_and_line(small: dict[str, Any]):
    path = small["root"] / V1
    lines, eol = read_lines(path)
    lines[6] += ","
    write_lines(path, lines, eol)
    assert load_error(small["root"]) == f"{path}:7: Expected 25 fields (as the header), but got 26"


def test_missing_header_column(small: dict[str, Any]):
    path = small["root"] / V1
    lines, eol = read_lines(path)
    lines[0] = lines[0].replace("FACE_WIDTH", "FACE_W")
    write_lines(path, lines, eol)
    message = load_error(small["root"])
    assert message.startswith(f"{path}:1: Expected an IJB-A metadata header with the columns")
    assert "but got no FACE_WIDTH column" in message


def test_duplicate_header_column(small: dict[str, Any]):
    path = small["root"] / V1
    lines, eol = read_lines(path)
    lines[0] = lines[0].replace("AGE", "face_x")
    write_lines(path, lines, eol)
    assert (
        load_error(small["root"])
        == f"{path}:1: Expected distinct column names, but got FACE_X twice"
    )


def test_empty_and_non_utf8_files(small: dict[str, Any]):
    path = small["root"] / V1
    header = path.read_bytes().split(b"\r\n")[0]
    path.write_bytes(header + b"\r\n")
    assert load_error(small["root"]) == (
        f"{path}:1: Expected template rows after the header, but got none"
    )
    path.write_bytes(b"")
    assert "but got an empty file" in load_error(small["root"])
    (small["root"] / C1).write_bytes(b"\r\n")
    assert load_error(small["root"], splits=[1, 3]).startswith(str(path))  # metadata first
    path.write_bytes(b"TEMPLATE_ID,\xff\r\n")
    assert "Expected UTF-8 text" in load_error(small["root"])


def test_inconsistent_subject_in_a_template(small: dict[str, Any]):
    path = small["root"] / V1
    tid = small["splits"][0]["verify"][0]["id"]
    subject = small["splits"][0]["verify"][0]["subject"]
    line = line_of(path, tid, 1)
    edit_row(path, line, subject_id=str(subject + 100000))
    assert load_error(small["root"]) == (
        f"{path}:{line}: Expected SUBJECT_ID {subject} for template {tid} (as on line "
        f"{line_of(path, tid, 0)}), but got {subject + 100000}; a template has one subject"
    )


def test_same_key_with_two_boxes_across_splits(small: dict[str, Any]):
    first = small["root"] / V1
    second = small["root"] / "IJB-A_11_sets/split2/verify_metadata_2.csv"
    edit_row(first, 3, file="img/424242.jpg", sighting_id="999999", face_x="10")
    edit_row(second, 2, file="img/424242.jpg", sighting_id="999999", face_x="11")
    message = load_error(small["root"])
    assert message.startswith(f"{second}:2: Expected one box per face img/424242.jpg#999999")
    assert f"at {first}:3; a store id must mean one crop" in message


def test_same_key_with_the_same_box_in_two_templates_is_one_item(small: dict[str, Any]):
    path = small["root"] / V1
    row = read_lines(path)[0][1].split(",")
    other = small["splits"][0]["verify"][1]
    assert row[0] != str(other["id"])  # the first row belongs to the first template
    line = line_of(path, other["id"])
    fields = ["file", "sighting_id", "face_x", "face_y", "face_width", "face_height"]
    edit_row(path, line, **{n: row[COLUMNS.index(n.upper())] for n in fields})
    protocol = ijba.load(small["root"])
    assert protocol.counts["splits"][0]["n_rows"] == small["counts"]["splits"][0]["n_rows"]
    assert as_record(protocol.splits[0].verification.templates)[1]["keys"][0] == (
        f"{row[2]}#{row[4]}"
    )


def test_same_key_twice_in_one_template(small: dict[str, Any]):
    path = small["root"] / V1
    tid = small["splits"][0]["verify"][0]["id"]
    first, second = line_of(path, tid, 0), line_of(path, tid, 1)
    row = read_lines(path)[0][first - 1].split(",")
    edit_row(path, second, file=row[2], sighting_id=row[4], face_x="1.5")
    message = load_error(small["root"])
    assert message.startswith(f"{path}:{second}: Expected each face once per template, but got")
    assert f"again in template {tid} (first on line {first})" in message


def test_missing_split_folder_names_the_path(small: dict[str, Any]):
    folder = small["root"] / "IJB-A_11_sets/split2"
    for f in folder.iterdir():
        f.unlink()
    folder.rmdir()
    assert load_error(small["root"]).startswith(
        f"{folder}: Expected the folder of split 2 (splits 1, 3 exist)"
    )


@pytest.mark.parametrize(
    "rel",
    [
        "IJB-A_11_sets/split2/verify_comparisons_2.csv",
        "IJB-A_11_sets/split3/verify_metadata_3.csv",
        "IJB-A_1N_sets/split1/search_probe_1.csv",
    ],
)
def test_missing_file_names_the_path(small: dict[str, Any], rel: str):
    (small["root"] / rel).unlink()
    message = load_error(small["root"])
    assert message.startswith(f"{small['root'] / rel}: Expected ") and "no such file" in message


def test_missing_1n_split_folder(small: dict[str, Any]):
    folder = small["root"] / "IJB-A_1N_sets/split3"
    for f in folder.iterdir():
        f.unlink()
    folder.rmdir()
    assert load_error(small["root"]).startswith(f"{folder / 'search_gallery_3.csv'}: Expected")


def test_not_an_ijba_folder(tmp_path: Path):
    assert "Expected the IJB-A protocol folder that holds IJB-A_11_sets/" in load_error(tmp_path)
    assert "no such folder" in load_error(tmp_path / "absent")
    (tmp_path / "IJB-A_11_sets").mkdir()
    assert "Expected split folders split1 .. split10, but got none" in load_error(tmp_path)


def test_empty_comparisons_file(small: dict[str, Any]):
    path = small["root"] / C1
    path.write_bytes(b"\r\n")
    assert load_error(small["root"]) == f"{path}: Expected comparisons `tid1,tid2`, but got none"


def test_template_id_in_gallery_and_probe_is_warned(small: dict[str, Any]):
    path = small["root"] / "IJB-A_1N_sets/split1/search_probe_1.csv"
    gallery_id = small["splits"][0]["gallery"][0]["id"]
    probe_id = small["splits"][0]["probe"][0]["id"]
    lines, eol = read_lines(path)
    renamed = [
        ",".join([str(gallery_id), *line.split(",")[1:]])
        if line.split(",")[0] == str(probe_id)
        else line
        for line in lines
    ]
    write_lines(path, renamed, eol)
    protocol = ijba.load(small["root"])
    assert f"split 1: 1 template ids are both gallery and probe (first: {gallery_id})" in (
        protocol.warnings
    )
