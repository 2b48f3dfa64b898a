"""The IJB pair-file cache: answered only for the same bytes, checked like a parse, damaged
entries ignored; the landmarks file read only when detector scores are asked for; a large
file's digest kept only while the file is unchanged."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ijbc_fixtures import write_ijbc

from facebench import cache
from facebench.errors import InputFormatError
from protocols import ijbc
from protocols._types import TemplateProtocol, files_sha256


@pytest.fixture
def record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))  # this test's entries only
    return write_ijbc(tmp_path / "IJB-C", n_subjects=5, seed=4, with_1n=False)


def load(record: dict[str, Any], **kwargs: Any) -> TemplateProtocol:
    return ijbc.load_ijb(record["root"], record["variant"], **kwargs)


def entries() -> list[Path]:
    folder = cache.cache_dir()
    assert folder is not None
    return sorted(folder.glob("ijb-pairs-*.npy")) if folder.is_dir() else []


def same(a: TemplateProtocol, b: TemplateProtocol) -> None:
    va, vb = a.splits[0].verification, b.splits[0].verification
    assert va is not None and vb is not None
    for name in ("left", "right", "is_same"):
        assert np.array_equal(getattr(va, name), getattr(vb, name))
    assert a.sha256 == b.sha256
    assert a.counts == b.counts


def test_a_second_load_is_answered_from_the_cache_with_equal_results(
    record: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = load(record)
    (entry,) = entries()
    assert entry.name.startswith(f"ijb-pairs-v{ijbc.PAIRS_CACHE_VERSION}-")
    parsed: list[int] = []
    real = ijbc._parse_table
    monkeypatch.setattr(ijbc, "_parse_table", lambda *a, **k: parsed.append(1) or real(*a, **k))
    second = load(record)
    assert len(parsed) == 1  # the landmarks only: pair file and tid_mid from the cache
    same(first, second)
    va, vb = first.splits[0].verification, second.splits[0].verification
    assert va is not None and vb is not None
    # the cached positions are the entry's own rows, mapped read-only: nothing copied
    assert np.load(entry).shape == (3, va.left.size)
    for column in (vb.left, vb.right):
        assert column.dtype == np.int32 and not column.flags.writeable
        assert isinstance(column.base, np.memmap) or isinstance(column, np.memmap)
    assert va.left.dtype == np.int64  # a parse's
    assert va.templates.item_keys == vb.templates.item_keys
    for name in ("ids", "item_template", "item_media", "item_score"):
        assert np.array_equal(getattr(va.templates, name), getattr(vb.templates, name)), name


def test_a_tid_mid_with_repeated_lines_is_parsed_every_time(
    record: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    tid = Path(record["root"]) / record["files"]["tid_mid"]
    lines = tid.read_bytes().split(b"\n")
    tid.write_bytes(b"\n".join([lines[0], *lines]))  # the first line twice
    first = load(record)
    assert any("repeated lines were dropped" in w for w in first.warnings)
    parsed: list[int] = []
    real = ijbc._parse_table
    monkeypatch.setattr(ijbc, "_parse_table", lambda *a, **k: parsed.append(1) or real(*a, **k))
    second = load(record)
    assert len(parsed) == 2  # tid_mid again (its warning is made by the parse) and landmarks
    assert second.warnings == first.warnings
    same(first, second)


def test_a_tampered_tid_mid_entry_sends_the_load_to_the_parser(record: dict[str, Any]) -> None:
    first = load(record)
    folder = cache.cache_dir()
    assert folder is not None
    (names,) = folder.glob("ijb-tid-*.txt")
    names.write_text("only-one-name.jpg", encoding="utf-8")  # fewer names than rows
    same(first, load(record))
    (table,) = folder.glob("ijb-tid-*.npy")
    values = np.load(table)
    values[0, 0] = -5
    np.save(table, values)
    names.unlink()
    same(first, load(record))
    # each damaged entry was removed, and the parse stored a good one again
    (table,) = folder.glob("ijb-tid-*.npy")
    assert int(np.load(table).min()) >= 0
    assert len(next(folder.glob("ijb-tid-*.txt")).read_text(encoding="utf-8").split()) > 1


def test_changed_bytes_are_never_answered_from_the_old_entry(record: dict[str, Any]) -> None:
    load(record)
    pairs = Path(record["root"]) / record["files"]["pairs"]
    text = pairs.read_bytes()
    pairs.write_bytes(text.replace(b" 1\n", b" 0\n", 1))  # one genuine pair now impostor
    changed = load(record)
    assert len(entries()) == 2
    ver = changed.splits[0].verification
    assert ver is not None
    assert int(ver.is_same.sum()) == text.count(b" 1\n") - 1


def test_cached_values_that_fail_the_checks_send_the_load_to_the_parser(
    record: dict[str, Any],
) -> None:
    load(record)
    (entry,) = entries()
    table = np.load(entry)
    table[2, 3] = 7  # a label the file never had (row 2: the labels): a tampered entry
    np.save(entry, table)
    pairs = Path(record["root"]) / record["files"]["pairs"]
    assert load(record).sha256 == load(record).sha256  # the parser reads the true file
    # and a truly bad file is reported with its line, cache or not
    lines = pairs.read_bytes().split(b"\n")
    lines[4] = lines[4].rsplit(b" ", 1)[0] + b" 2"
    pairs.write_bytes(b"\n".join(lines))
    load_error = pytest.raises(InputFormatError, match=r":5: Expected the label 1 .* got 2")
    with load_error:
        load(record)


def test_a_damaged_entry_is_ignored_with_a_warning(
    record: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    first = load(record)
    (entry,) = entries()
    entry.write_bytes(b"not an npy file")
    again = load(record)
    same(first, again)
    assert "ignoring an unreadable protocol cache entry" in capsys.readouterr().err


def test_an_entry_of_the_wrong_shape_is_replaced(
    record: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    first = load(record)
    (entry,) = entries()
    good = entry.read_bytes()
    np.save(entry, np.load(entry)[:2])  # two columns where the layout has three
    same(first, load(record))
    assert "ignoring a protocol cache entry of shape (2," in capsys.readouterr().err
    assert entry.read_bytes() == good  # the parse stored a good entry in its place


@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_a_truncated_entry_is_ignored_with_a_warning(
    record: dict[str, Any], capsys: pytest.CaptureFixture[str], keep: float
) -> None:
    first = load(record)
    (entry,) = entries()
    data = entry.read_bytes()
    entry.write_bytes(data[: int(len(data) * keep)])  # its header promises more rows
    again = load(record)
    same(first, again)
    assert "ignoring an unreadable protocol cache entry" in capsys.readouterr().err
    assert entry.read_bytes() == data  # the parse stored a good entry in its place
    same(first, load(record))
    assert "ignoring" not in capsys.readouterr().err


def test_the_cache_can_be_turned_off(
    record: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(cache.CACHE_ENV, "off")
    assert cache.cache_dir() is None
    load(record)
    monkeypatch.delenv(cache.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", "/nonexistent-xdg")
    assert cache.cache_dir() == Path("/nonexistent-xdg/facebench/protocols")


def test_an_unwritable_cache_costs_a_warning_only(
    record: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv(cache.CACHE_ENV, str(blocker))  # protocols/ cannot be made under it
    protocol = load(record)
    assert protocol.splits[0].verification is not None
    assert "cannot write the protocol cache" in capsys.readouterr().err


def test_without_detector_scores_the_landmarks_file_is_neither_read_nor_hashed(
    record: dict[str, Any],
) -> None:
    root = Path(record["root"])
    load(record)
    (root / record["files"]["landmarks"]).write_bytes(b"garbage that would not parse\n")
    without = load(record, detector_scores=False)
    assert without.splits[0].verification is not None
    assert without.splits[0].verification.templates.item_score is None
    assert record["files"]["landmarks"] not in without.files
    assert "landmark_lines" not in without.counts
    assert without.sha256 == files_sha256(root, list(without.files))
    with pytest.raises(InputFormatError):
        load(record)  # asked for, the broken landmarks file is still an error


def test_the_checksum_from_bytes_read_equals_a_fresh_hash(record: dict[str, Any]) -> None:
    protocol = load(record)
    assert protocol.sha256 == files_sha256(Path(record["root"]), list(protocol.files))


# --- the digest of a large file, kept under its stat signature ------------------------------


def counting_hash(calls: list[Path]) -> Callable[[Path], str]:
    def compute(path: Path) -> str:
        calls.append(path)
        return hashlib.sha256(path.read_bytes()).hexdigest()

    return compute


@pytest.fixture
def data_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(cache.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "RACY_SECONDS", 0.0)  # files written just now count as settled
    path = tmp_path / "pairs.txt"
    path.write_bytes(b"1 2 1\n3 4 0\n")
    return path


def test_a_file_unchanged_since_it_was_hashed_is_not_hashed_again(data_file: Path) -> None:
    calls: list[Path] = []
    first = cache.file_sha256(data_file, counting_hash(calls))
    assert first == hashlib.sha256(data_file.read_bytes()).hexdigest()
    assert cache.file_sha256(data_file, counting_hash(calls)) == first
    assert len(calls) == 1


@pytest.mark.parametrize("how", ["same size", "mtime restored", "renamed over", "appended"])
def test_a_changed_file_is_hashed_again(data_file: Path, how: str) -> None:
    calls: list[Path] = []
    cache.file_sha256(data_file, counting_hash(calls))
    status = data_file.stat()
    if how == "renamed over":
        other = data_file.with_name("other.txt")
        other.write_bytes(b"1 2 0\n3 4 0\n")
        os.replace(other, data_file)
    elif how == "appended":
        with open(data_file, "ab") as handle:
            handle.write(b"5 6 1\n")
    else:
        time.sleep(0.01)  # a later status-change time, whatever the clock's tick
        data_file.write_bytes(b"1 2 0\n3 4 0\n")  # one label flipped: the same size
        if how == "mtime restored":
            os.utime(data_file, ns=(status.st_atime_ns, status.st_mtime_ns))
    digest = cache.file_sha256(data_file, counting_hash(calls))
    assert digest == hashlib.sha256(data_file.read_bytes()).hexdigest()
    assert len(calls) == 2


def test_a_file_changed_just_before_hashing_is_hashed_every_time(
    data_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache, "RACY_SECONDS", 3600.0)  # "just now": within the tick
    calls: list[Path] = []
    for _ in range(3):
        cache.file_sha256(data_file, counting_hash(calls))
    assert len(calls) == 3


def test_digests_with_the_cache_off_or_a_damaged_entry(
    data_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Path] = []
    truth = hashlib.sha256(data_file.read_bytes()).hexdigest()
    cache.file_sha256(data_file, counting_hash(calls))
    folder = cache.cache_dir()
    assert folder is not None
    (entry,) = folder.glob("sha256-*.txt")
    signature = entry.read_text(encoding="utf-8").split("\n")[0]
    for damaged in ("", "garbage", f"{signature}\n{'z' * 64}\n", f"{signature}\n{truth[:10]}\n"):
        entry.write_text(damaged, encoding="utf-8")
        assert cache.file_sha256(data_file, counting_hash(calls)) == truth
        assert entry.read_text(encoding="utf-8") == f"{signature}\n{truth}\n"  # stored again
    monkeypatch.setenv(cache.CACHE_ENV, "off")
    before = len(calls)
    for _ in range(2):
        assert cache.file_sha256(data_file, counting_hash(calls)) == truth
    assert len(calls) == before + 2


def test_a_second_ijb_load_hashes_neither_the_pair_file_nor_the_image_list(
    record: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache, "RACY_SECONDS", 0.0)
    hashed: list[Path] = []
    real = ijbc._mapped_sha256
    monkeypatch.setattr(ijbc, "_mapped_sha256", lambda p: hashed.append(p) or real(p))
    first = load(record)
    assert sorted(p.name for p in hashed) == sorted(
        Path(record["files"][kind]).name for kind in ("tid_mid", "pairs")
    )
    second = load(record)
    assert len(hashed) == 2  # neither file hashed again
    same(first, second)
    assert second.sha256 == files_sha256(Path(record["root"]), list(first.files))
