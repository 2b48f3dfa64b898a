"""Tests of facebench.store: schema round trip, checksum, validation, atomic writes."""

from __future__ import annotations

import hashlib
import re
import tempfile
from pathlib import Path
from typing import Any

import h5py
import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from facebench import __version__
from facebench import store as store_module
from facebench.errors import MissingItemsError, OutputExistsError, StoreError
from facebench.store import (
    BLOCK_ROWS,
    SCHEMA_VERSION,
    FeatureStore,
    append_to_store,
    create_store,
    normalize_rows,
)

SHA = "ab" * 32


def unit_rows(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return normalize_rows(rng.normal(size=(n, dim)) * rng.uniform(0.5, 30.0, size=(n, 1)))


def make_ids(n: int, prefix: str = "person") -> list[str]:
    return [f"{prefix}_{i // 3}/{prefix}_{i // 3}_{i % 3:04d}.jpg" for i in range(n)]


def reference_checksum(ids: list[str], *arrays: np.ndarray) -> str:
    """The schema's checksum, written out the slow, obvious way."""
    digests = b""
    for start in range(0, len(ids), 65536):
        block = hashlib.sha256()
        for item in ids[start : start + 65536]:
            block.update(item.encode("utf-8") + b"\n")
        for array in arrays:
            block.update(array[start : start + 65536].astype("<f4").tobytes(order="C"))
        digests += block.digest()
    return hashlib.sha256(digests).hexdigest()


def write(path: Path, n: int = 12, dim: int = 6, *, flip: bool = False, **kwargs: Any) -> Path:
    features, norms = unit_rows(n, dim)
    extra: dict[str, Any] = {"model": "test-model"}
    if flip:
        extra["features_flip"], extra["norms_flip"] = unit_rows(n, dim, seed=1)
    extra.update(kwargs)
    create_store(path, make_ids(n), features, norms, **extra)
    return path


def as_bits(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype="<f4").view(np.uint32)


# ----------------------------------------------------------------------------- round trip


def test_round_trip_is_exact(tmp_path: Path) -> None:
    features, norms = unit_rows(40, 16)
    flip, norms_flip = unit_rows(40, 16, seed=3)
    ids = [*make_ids(39), "frame/28337_00300.png#8484"]
    meta = {
        "det_score": np.linspace(0.5, 1.0, 40),
        "media": np.arange(40, dtype=np.int64) // 4,
        "source": np.array([f"cam{i % 3}é" for i in range(40)]),
        "landmarks": np.arange(400, dtype=np.float32).reshape(40, 5, 2),
    }
    info = create_store(
        tmp_path / "s.h5",
        ids,
        features,
        norms,
        features_flip=flip,
        norms_flip=norms_flip,
        metadata=meta,
        model="r50",
        model_sha256=SHA.upper(),
        preprocessing={"crop": [112, 112], "align": "arcface"},
    )
    expected_sha = reference_checksum(ids, features, norms, flip, norms_flip)
    assert info.content_sha256 == expected_sha
    with FeatureStore.open(tmp_path / "s.h5") as store:
        assert store.info == info
        assert store.ids == ids
        got_features, got_norms = store.read_all()
        got_flip, got_norms_flip = store.read_all(flip=True)
        for got, want in [
            (got_features, features),
            (got_norms, norms),
            (got_flip, flip),
            (got_norms_flip, norms_flip),
        ]:
            assert got.dtype == np.float32
            np.testing.assert_array_equal(as_bits(got), as_bits(want))
        assert store.info.metadata_keys == ("det_score", "landmarks", "media", "source")
        for key, values in meta.items():
            got_meta = store.read_metadata(key)
            assert got_meta.dtype.kind == values.dtype.kind
            np.testing.assert_array_equal(got_meta, values)
        attributes = store.info.attributes
    assert info.n_items == 40 and info.dim == 16 and info.has_flip
    assert attributes["model"] == "r50"
    assert attributes["model_sha256"] == SHA
    assert attributes["preprocessing"] == {"crop": [112, 112], "align": "arcface"}
    assert attributes["schema_version"] == SCHEMA_VERSION == 1
    assert attributes["facebench_version"] == __version__
    assert attributes["content_sha256"] == expected_sha
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", attributes["created"])


id_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n\r\\\x00"),
    min_size=1,
    max_size=12,
).filter(lambda item: not item.startswith("/"))


@st.composite
def stores(draw: st.DrawFn) -> tuple[list[str], np.ndarray]:
    ids = draw(st.lists(id_text, unique=True, max_size=12))
    dim = draw(st.integers(1, 5))
    finite = st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=False, width=32)
    raw = draw(hnp.arrays(np.float32, (len(ids), dim), elements=finite))
    return ids, raw


@settings(max_examples=40, deadline=None)
@given(stores())
@example((["a"], np.array([[3.0]], dtype=np.float32)))
@example((["ü/#1", "日本/x y.png#0"], np.array([[1e-30, 0.0], [-2.0, 1e6]], dtype=np.float32)))
@example(([], np.zeros((0, 3), dtype=np.float32)))
def test_random_stores_round_trip_exactly(case: tuple[list[str], np.ndarray]) -> None:
    ids, raw = case
    assume(bool(np.all(np.linalg.norm(raw.astype(np.float64), axis=1) > 0)))
    features, norms = normalize_rows(raw)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "s.h5"
        info = create_store(path, ids, features, norms, model="m")
        assert info.content_sha256 == reference_checksum(ids, features, norms)
        with FeatureStore.open(path) as store:
            assert store.ids == ids
            got_features, got_norms = store.read_all()
            np.testing.assert_array_equal(as_bits(got_features), as_bits(features))
            np.testing.assert_array_equal(as_bits(got_norms), as_bits(norms))
            reversed_ids = ids[::-1]
            np.testing.assert_array_equal(store.read_ids(reversed_ids)[0], features[::-1])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet="ab/\\\n\r\x00", max_size=4), max_size=5))
@example(["a", ""])
@example([""])
@example(["a\n", "b"])
def test_fast_id_check_agrees_with_the_rules(ids: list[str]) -> None:
    all_valid = all(store_module.id_problem(item) is None for item in ids)
    assert store_module._ids_are_clean(ids) == (all_valid and len(ids) > 0)


def test_empty_store(tmp_path: Path) -> None:
    info = create_store(tmp_path / "e.h5", [], np.zeros((0, 8)), np.zeros(0), model="m")
    assert info.n_items == 0 and info.dim == 8
    assert info.content_sha256 == hashlib.sha256(b"").hexdigest()
    with FeatureStore.open(tmp_path / "e.h5") as store:
        assert store.read_all()[0].shape == (0, 8)
        assert store.read_rows(np.array([], dtype=np.int64))[0].shape == (0, 8)


# ----------------------------------------------------------------------------- reading


def test_read_rows_and_ids_keep_order_and_repeats(tmp_path: Path) -> None:
    # D = 1024 makes chunks of 256 rows, so requests span several chunks and runs.
    n, dim = 1500, 1024
    path = write(tmp_path / "s.h5", n, dim, flip=True)
    rng = np.random.default_rng(5)
    with FeatureStore.open(path) as store:
        all_features, all_norms = store.read_all()
        all_flip, _ = store.read_all(flip=True)
        for rows in [
            rng.integers(0, n, size=700),
            np.array([n - 1, 0, 0, 700, 3, n - 1]),
            np.arange(n)[::-1],
            np.concatenate([np.arange(10, 20), np.arange(1200, 1210), [5000 % n]]),
        ]:
            features, norms = store.read_rows(rows)
            np.testing.assert_array_equal(features, all_features[rows])
            np.testing.assert_array_equal(norms, all_norms[rows])
            np.testing.assert_array_equal(store.read_rows(rows, flip=True)[0], all_flip[rows])
        ids = [store.ids[7], store.ids[2], store.ids[7]]
        np.testing.assert_array_equal(store.read_ids(ids)[0], all_features[[7, 2, 7]])
        np.testing.assert_array_equal(store.index_of(ids), [7, 2, 7])
        assert store.index_of(ids).dtype == np.int64
        with pytest.raises(StoreError, match=r"Expected row numbers in \[0, 1500\)"):
            store.read_rows(np.array([0, n]))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 5000), unique=True, max_size=200).map(sorted),
    st.integers(1, 64),
)
def test_runs_cover_rows_in_bounded_spans(rows: list[int], chunk_rows: int) -> None:
    unique = np.array(rows, dtype=np.int64)
    runs = list(store_module._runs(unique, chunk_rows))
    assert [index for start, stop in runs for index in range(start, stop)] == list(range(len(rows)))
    for start, stop in runs:
        assert stop > start
        assert unique[stop - 1] - unique[start] < chunk_rows * store_module._RUN_SPAN_CHUNKS


def test_metadata_key_errors(tmp_path: Path) -> None:
    path = write(tmp_path / "s.h5", metadata={"q": np.ones(12)})
    with FeatureStore.open(path) as store, pytest.raises(StoreError, match="'nope'"):
        store.read_metadata("nope")
    with pytest.raises(StoreError, match="with 12 rows"):
        write(tmp_path / "t.h5", metadata={"q": np.ones(11)})


def test_flip_on_store_without_flips(tmp_path: Path) -> None:
    with FeatureStore.open(write(tmp_path / "s.h5")) as store:
        with pytest.raises(StoreError, match="--flip"):
            store.read_all(flip=True)
        with pytest.raises(StoreError, match="--flip"):
            store.read_rows(np.array([0]), flip=True)


def test_index_of_names_count_and_first_five_missing(tmp_path: Path) -> None:
    with FeatureStore.open(write(tmp_path / "s.h5")) as store:
        wanted = [store.ids[0], "m/1", "m/2", store.ids[1], "m/3", "m/4", "m/5", "m/6", "m/7"]
        with pytest.raises(MissingItemsError) as caught:
            store.index_of(wanted)
    message = str(caught.value)
    assert "7 of 9 are missing" in message
    assert "'m/1', 'm/2', 'm/3', 'm/4', 'm/5'" in message
    assert "m/6" not in message
    assert "extract them, or check that the store was built for this protocol" in message


# ----------------------------------------------------------------------------- append, checksum


def test_append_then_read(tmp_path: Path) -> None:
    features, norms = unit_rows(15, 4)
    flip, norms_flip = unit_rows(15, 4, seed=9)
    ids = make_ids(15)
    path = tmp_path / "s.h5"
    score = np.arange(15.0)
    create_store(
        path,
        ids[:10],
        features[:10],
        norms[:10],
        features_flip=flip[:10],
        norms_flip=norms_flip[:10],
        metadata={"score": score[:10]},
        model="m",
    )
    info = append_to_store(
        path,
        ids[10:],
        features[10:],
        norms[10:],
        features_flip=flip[10:],
        norms_flip=norms_flip[10:],
        metadata={"score": score[10:]},
    )
    assert info.n_items == 15
    assert info.content_sha256 == reference_checksum(ids, features, norms, flip, norms_flip)
    with FeatureStore.open(path) as store:
        assert store.ids == ids
        np.testing.assert_array_equal(store.read_all()[0], features)
        np.testing.assert_array_equal(store.read_all(flip=True)[1], norms_flip)
        np.testing.assert_array_equal(store.read_metadata("score"), score)
        assert store.info.content_sha256 == info.content_sha256


def test_append_refuses_rows_that_do_not_fit(tmp_path: Path) -> None:
    path = write(tmp_path / "s.h5", 6, 4)
    before = path.read_bytes()
    features, norms = unit_rows(3, 4, seed=2)
    with pytest.raises(StoreError, match="already in the store") as caught:
        append_to_store(path, [make_ids(6)[4], "new/1", make_ids(6)[1]], features, norms)
    assert repr(make_ids(6)[4]) in str(caught.value)
    with pytest.raises(StoreError, match="shape"):
        append_to_store(path, ["a", "b", "c"], unit_rows(3, 5)[0], norms)
    with pytest.raises(StoreError, match="features_flip"):
        append_to_store(
            path, ["a", "b", "c"], features, norms, features_flip=features, norms_flip=norms
        )
    with pytest.raises(StoreError, match="metadata keys"):
        append_to_store(path, ["a", "b", "c"], features, norms, metadata={"x": np.ones(3)})
    assert path.read_bytes() == before


def test_checksum_does_not_depend_on_batching(tmp_path: Path) -> None:
    n = 150_000
    rng = np.random.default_rng(11)
    features, norms = normalize_rows(rng.normal(size=(n, 4)))
    flip, norms_flip = normalize_rows(rng.normal(size=(n, 4)))
    ids = [f"v/{i}" for i in range(n)]
    whole = create_store(
        tmp_path / "whole.h5",
        ids,
        features,
        norms,
        features_flip=flip,
        norms_flip=norms_flip,
        model="m",
    )
    # Batches of 1,000, 70,000 and 79,000 rows: the last append starts inside the second block.
    parts = tmp_path / "parts.h5"
    first = slice(0, 1000)
    create_store(
        parts,
        ids[first],
        features[first],
        norms[first],
        features_flip=flip[first],
        norms_flip=norms_flip[first],
        model="m",
    )
    for rows in (slice(1000, 71_000), slice(71_000, n)):
        info = append_to_store(
            parts,
            ids[rows],
            features[rows],
            norms[rows],
            features_flip=flip[rows],
            norms_flip=norms_flip[rows],
        )
    assert info.content_sha256 == whole.content_sha256
    assert whole.content_sha256 == reference_checksum(ids, features, norms, flip, norms_flip)
    with h5py.File(parts, "r") as handle:
        assert handle["_block_sha256"].shape == (-(-n // BLOCK_ROWS),)

    changed = features.copy()
    changed[120_000] = changed[120_000][::-1]  # still unit norm, one row differs
    other = create_store(
        tmp_path / "other.h5",
        ids,
        changed,
        norms,
        features_flip=flip,
        norms_flip=norms_flip,
        model="m",
    )
    assert other.content_sha256 != whole.content_sha256


@pytest.mark.parametrize("compression", ["lzf", "gzip"])
def test_compressed_round_trip(tmp_path: Path, compression: str) -> None:
    features, norms = unit_rows(300, 32)
    path = tmp_path / "c.h5"
    create_store(path, make_ids(300), features, norms, model="m", compression=compression)
    with h5py.File(path, "r") as handle:
        assert handle["features"].compression == compression
        assert handle["features"].maxshape == (None, 32)
        assert handle["features"].chunks == (8192, 32)  # 1 MiB of float32 rows
    with FeatureStore.open(path) as store:
        np.testing.assert_array_equal(store.read_all()[0], features)
        np.testing.assert_array_equal(store.read_rows(np.array([299, 0]))[1], norms[[299, 0]])


# ----------------------------------------------------------------------------- validation


def test_normalize_rows_matches_numpy_and_rejects_bad_rows() -> None:
    raw = np.array([[3, 4], [0, -2], [1, 1]], dtype=np.int16)
    features, norms = normalize_rows(raw)
    reference = np.linalg.norm(raw.astype(np.float64), axis=1)
    np.testing.assert_allclose(norms, reference, rtol=1e-7)
    np.testing.assert_allclose(features, raw / reference[:, None], rtol=1e-7)
    assert features.dtype == norms.dtype == np.float32
    for bad, phrase in [(np.nan, "NaN or inf"), (np.inf, "NaN or inf"), (0.0, "norm 0")]:
        values = np.ones((4, 3))
        values[2] = bad if bad else 0.0
        with pytest.raises(StoreError, match=rf"feats\.npy, row 2: .*{phrase}"):
            normalize_rows(values, source="feats.npy")
    with pytest.raises(StoreError, match="shape"):
        normalize_rows(np.ones(3))


@pytest.mark.parametrize(
    ("bad_id", "phrase"),
    [
        ("a\\b.jpg", "use '/' separators"),
        ("/abs/a.jpg", "leading '/'"),
        ("", "non-empty"),
        ("a\nb", "line breaks"),
    ],
)
def test_create_rejects_bad_ids(tmp_path: Path, bad_id: str, phrase: str) -> None:
    features, norms = unit_rows(3, 4)
    with pytest.raises(StoreError, match=re.escape(phrase)):
        create_store(tmp_path / "s.h5", ["ok", bad_id, "fine"], features, norms, model="m")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("change", "phrase"),
    [
        ({"ids": ["a", "b", "a"]}, "'a' appears at rows 0 and 2"),
        ({"features": np.array([[1.0, 0], [np.nan, 0], [0, 1]])}, "row 1 .*NaN or inf"),
        ({"features": np.array([[1.0, 0], [0.5, 0], [0, 1]])}, "row 1 .*unit-norm.*0.5"),
        ({"norms": np.array([1.0, -1, 1])}, "row 1 .*norm >= 0"),
        ({"norms": np.ones(4)}, r"norms of shape \(3,\)"),
        ({"features": np.eye(4)[:2]}, r"features of shape \(3, 'D'\)"),
        ({"features": np.eye(3) * 1j}, "real dtype"),
        ({"features_flip": np.eye(3)}, "features_flip and norms_flip together"),
        ({"norms_flip": np.ones(3)}, "features_flip and norms_flip together"),
        ({"model_sha256": "xyz"}, "64 hex digits"),
        ({"compression": "zstd"}, "compression"),
        ({"preprocessing": {"f": object()}}, "JSON"),
    ],
)
def test_create_rejects_invalid_input(tmp_path: Path, change: dict[str, Any], phrase: str) -> None:
    arguments: dict[str, Any] = {
        "ids": ["a", "b", "c"],
        "features": np.eye(3),
        "norms": np.ones(3),
        "model": "m",
    }
    arguments.update(change)
    with pytest.raises(StoreError, match=phrase):
        create_store(tmp_path / "s.h5", **arguments)
    assert list(tmp_path.iterdir()) == []


def edit(path: Path, action: Any) -> None:
    with h5py.File(path, "r+") as handle:
        action(handle)


def test_unknown_schema_version(tmp_path: Path) -> None:
    path = write(tmp_path / "s.h5")
    edit(path, lambda handle: handle.attrs.__setitem__("schema_version", 7))
    with pytest.raises(StoreError, match=r"schema_version in \[1\].*got 7; upgrade facebench"):
        FeatureStore.open(path)


def test_duplicate_ids_in_file(tmp_path: Path) -> None:
    path = write(tmp_path / "s.h5")
    edit(path, lambda handle: handle["ids"].__setitem__(9, handle["ids"][2]))
    with pytest.raises(StoreError, match=r"appears at rows 2 and 9"):
        FeatureStore.open(path)


@pytest.mark.parametrize("collide", [False, True])
def test_ids_are_checked_distinct_by_hash_then_by_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, collide: bool
) -> None:
    import facebench.store as store_module

    path = write(tmp_path / "s.h5")
    if collide:  # every id hashes alike: distinct ids are told apart by the set
        monkeypatch.setattr(store_module, "hash", lambda item: 7, raising=False)
    with FeatureStore.open(path) as store:
        assert len(set(store.ids)) == len(store.ids)
    edit(path, lambda handle: handle["ids"].__setitem__(9, handle["ids"][2]))
    with pytest.raises(StoreError, match=r"appears at rows 2 and 9"):
        FeatureStore.open(path)


@pytest.mark.parametrize(("value", "phrase"), [(np.nan, "NaN or inf"), (0.2, "unit-norm")])
def test_bad_rows_in_file_are_found_when_read(tmp_path: Path, value: float, phrase: str) -> None:
    path = write(tmp_path / "s.h5", flip=True)
    edit(path, lambda handle: handle["features_flip"].__setitem__((5, 0), value))
    with FeatureStore.open(path) as store:
        store.read_all()
        store.read_rows(np.array([0, 4, 6]), flip=True)
        bad_id = re.escape(repr(store.ids[5]))
        with pytest.raises(StoreError, match=rf"s\.h5: features_flip row 5 \(id {bad_id}\)"):
            store.read_all(flip=True)
        with pytest.raises(StoreError, match=phrase):
            store.read_rows(np.array([9, 5]), flip=True)
        with pytest.raises(StoreError, match="row 5"):
            store.read_ids([store.ids[5]], flip=True)


@pytest.mark.parametrize(
    ("action", "phrase"),
    [
        (lambda h: h["norms"].resize((11,)), r"norms of shape \(12,\).*got \(11,\)"),
        (lambda h: h.__delitem__("norms_flip"), "features_flip and norms_flip both or neither"),
        (lambda h: h.__delitem__("ids"), "dataset 'ids'"),
        (lambda h: h.__delitem__("features"), "dataset 'features'"),
        (lambda h: h.attrs.__delitem__("model"), "attribute 'model'"),
        (lambda h: h.attrs.__delitem__("schema_version"), "no schema_version"),
    ],
)
def test_broken_structure_is_refused_on_open(tmp_path: Path, action: Any, phrase: str) -> None:
    path = write(tmp_path / "s.h5", flip=True)
    edit(path, action)
    with pytest.raises(StoreError, match=phrase):
        FeatureStore.open(path)


def test_missing_and_non_hdf5_files(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no such store"):
        FeatureStore.open(tmp_path / "absent.h5")
    with pytest.raises(StoreError, match="a directory"):
        FeatureStore.open(tmp_path)
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5\n")
    with pytest.raises(StoreError, match=r"notes\.h5: .*not HDF5"):
        FeatureStore.open(text)


# ----------------------------------------------------------------------------- atomic writes


def test_existing_file_is_not_replaced_without_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "s.h5"
    path.write_bytes(b"precious")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        write(path)
    assert path.read_bytes() == b"precious"
    write(path, overwrite=True)
    with FeatureStore.open(path) as store:
        assert store.info.n_items == 12
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5"]


def test_failed_write_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.h5"
    path.write_bytes(b"precious")

    def fail(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(store_module, "_read_info", fail)
    with pytest.raises(StoreError, match="disk full"):
        write(path, overwrite=True)
    assert path.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5"]


@pytest.mark.parametrize("n_before", [0, 5])
def test_failed_append_leaves_the_store_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, n_before: int
) -> None:
    features, norms = unit_rows(8, 4)
    ids = make_ids(8)
    path = tmp_path / "s.h5"
    before = create_store(path, ids[:n_before], features[:n_before], norms[:n_before], model="m")
    write_rows = h5py.Dataset.__setitem__

    def fail_on_norms(self: h5py.Dataset, key: Any, value: Any) -> None:
        if self.name == "/norms":
            raise OSError("disk full")
        write_rows(self, key, value)

    monkeypatch.setattr(h5py.Dataset, "__setitem__", fail_on_norms)
    with pytest.raises(StoreError, match="disk full"):
        append_to_store(path, ids[n_before:], features[n_before:], norms[n_before:])
    monkeypatch.undo()
    with FeatureStore.open(path) as store:
        assert store.info == before
        assert store.ids == ids[:n_before]
    after = append_to_store(path, ids[n_before:], features[n_before:], norms[n_before:])
    assert after.content_sha256 == reference_checksum(ids, features, norms)


# --- rows read as a memory map of the file -------------------------------------------------


def is_mapped(array: np.ndarray) -> bool:
    """Whether ``array``'s memory is a memory map of a file (no copy)."""
    import mmap

    base = array
    while isinstance(base, np.ndarray):
        base = base.base
    return isinstance(base, mmap.mmap)


@pytest.mark.parametrize("compression", [None, "gzip"])
@pytest.mark.parametrize("n", [1, 700, 1300])
def test_contiguous_rows_are_mapped_when_the_layout_allows(
    tmp_path: Path, compression: str | None, n: int
) -> None:
    """A run of consecutive rows of an unfiltered store is a read-only memory map of the
    file (no copy); a compressed store is read through h5py; both give h5py's values."""
    import h5py

    rng = np.random.default_rng(n)
    unit, norms = normalize_rows(rng.standard_normal((n, 24)))
    flip, flip_norms = normalize_rows(rng.standard_normal((n, 24)))
    path = tmp_path / "s.h5"
    ids = [f"i{k}" for k in range(n)]
    create_store(
        path,
        ids,
        unit,
        norms,
        features_flip=flip,
        norms_flip=flip_norms,
        model="m",
        compression=compression,
    )
    with h5py.File(path, "r") as handle:
        expected = {name: handle[name][...] for name in ("features", "norms", "features_flip")}
    with FeatureStore.open(path) as store:
        for first, stop in ((0, n), (n // 3, n), (n - 1, n), (0, max(1, n // 2))):
            rows = np.arange(first, stop)
            got, got_norms = store.read_rows(rows)
            # (a single row is read through h5py: not worth a map)
            assert is_mapped(got) == (compression is None and stop - first > 1)
            np.testing.assert_array_equal(got, expected["features"][first:stop])
            np.testing.assert_array_equal(got_norms, expected["norms"][first:stop])
            got_flip, _ = store.read_rows(rows, flip=True)
            np.testing.assert_array_equal(got_flip, expected["features_flip"][first:stop])
        # rows with a gap, or out of order: read and ordered through h5py as before
        picked = np.array([n - 1, 0]) if n > 1 else np.array([0, 0])
        got, _ = store.read_rows(picked)
        assert not is_mapped(got)
        np.testing.assert_array_equal(got, expected["features"][picked])


def test_a_damaged_mapped_row_is_reported(tmp_path: Path) -> None:
    """The mapped rows are checked as read ones are: a NaN written into the file's bytes
    names its row and id."""
    rng = np.random.default_rng(0)
    unit, norms = normalize_rows(rng.standard_normal((600, 16)))
    path = tmp_path / "s.h5"
    create_store(path, [f"i{k}" for k in range(600)], unit, norms, model="m")
    with FeatureStore.open(path) as store:
        layout = store._layout("features")
    assert layout is not None
    offset = int(layout[1][0])  # one chunk of 600 rows
    with open(path, "r+b") as handle:
        handle.seek(offset + 517 * 16 * 4 + 8)
        handle.write(np.float32(np.nan).tobytes())
    damaged = r"row 517 \(id 'i517'\)"
    with FeatureStore.open(path) as store, pytest.raises(StoreError, match=damaged):
        store.read_rows(np.arange(600))


def test_mapped_rows_across_chunks_that_are_not_back_to_back(tmp_path: Path) -> None:
    """Chunks out of row order, or with other data between them (HDF5 may put metadata
    there): each stretch of back-to-back chunks is mapped and the stretches joined; the
    values are h5py's."""
    import h5py

    rng = np.random.default_rng(4)
    unit, norms = normalize_rows(rng.standard_normal((1000, 8)))
    path = tmp_path / "s.h5"
    create_store(path, [f"i{k}" for k in range(1000)], unit, norms, model="m")
    with h5py.File(path, "r+") as handle:  # rewrite the rows chunk by chunk, other data between
        values = handle["features"][...]
        attrs = dict(handle["features"].attrs)
        del handle["features"]
        features = handle.create_dataset(
            "features", shape=values.shape, dtype="<f4", chunks=(100, 8)
        )
        for name, value in attrs.items():
            features.attrs[name] = value
        for k in (3, 4, 0, 1, 2, 7, 8, 9, 5, 6):  # chunks land in the file in write order
            features[k * 100 : (k + 1) * 100] = values[k * 100 : (k + 1) * 100]
    with FeatureStore.open(path) as store:
        chunk_rows, offsets = store._layout("features")
        assert chunk_rows == 100
        assert np.any(np.diff(offsets) != 100 * 8 * 4)  # really not back to back
        for first, stop in ((0, 1000), (150, 720), (199, 201)):
            got, got_norms = store.read_rows(np.arange(first, stop))
            np.testing.assert_array_equal(got, values[first:stop])
            np.testing.assert_array_equal(got_norms, norms.astype(np.float32)[first:stop])


def test_a_store_replaced_while_open_is_still_read_from_its_own_file(tmp_path: Path) -> None:
    """An append renames a new file into the store's place while a reader has it open: the
    reader's mapped rows come from the file it opened (HDF5's descriptor), never from
    whatever the path names now."""
    rng = np.random.default_rng(9)
    first, first_norms = normalize_rows(rng.standard_normal((800, 8)))
    other, other_norms = normalize_rows(rng.standard_normal((900, 8)))
    path = tmp_path / "s.h5"
    create_store(path, [f"i{k}" for k in range(800)], first, first_norms, model="m")
    replacement = tmp_path / "new.h5"
    create_store(replacement, [f"j{k}" for k in range(900)], other, other_norms, model="m")
    with FeatureStore.open(path) as store:
        replacement.replace(path)  # the path now names another file
        got, _ = store.read_rows(np.arange(800))
        assert is_mapped(got)
        np.testing.assert_array_equal(got, first.astype(np.float32))


def test_a_store_opened_in_a_thread_is_the_store_opened_here(tmp_path: Path) -> None:
    from facebench.store import StoreOpening

    path = write(tmp_path / "s.h5", flip=True)
    with StoreOpening(path) as opening:
        store = opening.take()
        with pytest.raises(RuntimeError, match="was taken"):
            opening.take()
    with store, FeatureStore.open(path) as here:  # the taker closes it; still open now
        assert store.ids == here.ids and store.info == here.info
        for flip in (False, True):
            pairs = zip(store.read_all(flip=flip), here.read_all(flip=flip), strict=True)
            for got, expected in pairs:
                assert np.array_equal(as_bits(got), as_bits(expected))
    with pytest.raises(StoreError, match="closed"):
        store.read_rows(np.arange(2))


def test_a_store_opened_in_a_thread_raises_its_error_when_taken(tmp_path: Path) -> None:
    from facebench.store import StoreOpening

    (tmp_path / "not.h5").write_text("plain text\n", encoding="utf-8")
    for name, phrase in [("none.h5", "no such store"), ("not.h5", "the file is not HDF5")]:
        with StoreOpening(tmp_path / name) as opening:
            with pytest.raises(StoreError, match=phrase):
                opening.take()


def test_a_store_opened_in_a_thread_and_never_taken_is_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The block's own error passes (an opening's error is dropped); the store is closed."""
    from facebench.store import StoreOpening

    opened: list[FeatureStore] = []
    real_open = FeatureStore.open

    def recorded(path: Any, **options: Any) -> FeatureStore:
        opened.append(real_open(path, **options))
        return opened[-1]

    monkeypatch.setattr(FeatureStore, "open", staticmethod(recorded))
    path = write(tmp_path / "s.h5")
    with pytest.raises(KeyError, match="the protocol was bad"):
        with StoreOpening(path):
            raise KeyError("the protocol was bad")
    with StoreOpening(path):
        pass
    assert len(opened) == 2
    for store in opened:
        with pytest.raises(StoreError, match="closed"):
            store.read_rows(np.arange(2))
    with pytest.raises(KeyError, match="the protocol was bad"):
        with StoreOpening(tmp_path / "none.h5"):  # its StoreError is not the one to fix
            raise KeyError("the protocol was bad")


# ------------------------------------------------------- the ids' digest kept under the file


@pytest.fixture
def settled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files written by the test count as settled (no racy window) so digests are kept."""
    from facebench import cache

    monkeypatch.setattr(cache, "RACY_SECONDS", 0.0)


def test_ids_are_read_when_first_needed_and_checked_then(tmp_path: Path) -> None:
    path = write(tmp_path / "s.h5")
    with FeatureStore.open(path) as eager, FeatureStore.open(path, read_ids=False) as lazy:
        assert lazy._ids is None
        assert lazy.ids == eager.ids == make_ids(12)
    edit(path, lambda handle: handle["ids"].__setitem__(9, handle["ids"][2]))
    with FeatureStore.open(path, read_ids=False) as lazy:  # the structure is sound
        with pytest.raises(StoreError, match=r"appears at rows 2 and 9"):
            _ = lazy.ids


def test_the_ids_digest_is_kept_and_answers_an_unchanged_store(
    tmp_path: Path, settled: None
) -> None:
    from facebench.store import open_for_lookups

    path = write(tmp_path / "s.h5")
    expected = hashlib.sha256("\n".join(make_ids(12)).encode("utf-8")).hexdigest()
    with open_for_lookups(path) as first:
        assert first._ids is not None  # nothing kept yet: read, checked, hashed
        assert first.ids_sha256() == expected
    with open_for_lookups(path) as second:
        assert second._ids is None and second.ids_sha256() == expected
        # The store's own ids in order: located by the digest, the ids still unread.
        assert np.array_equal(second.index_of(make_ids(12)), np.arange(12))
        assert second._ids is None
        # Anything else: the ids are read and looked up.
        wanted = make_ids(12)[::-1]
        assert np.array_equal(second.index_of(wanted), np.arange(12)[::-1])
        assert second._ids == make_ids(12)
    with open_for_lookups(path) as third:
        with pytest.raises(MissingItemsError, match=r"1 of 12 are missing \(first: 'other'\)"):
            third.index_of([*make_ids(11), "other"])


def test_a_changed_store_has_its_ids_read_again(tmp_path: Path, settled: None) -> None:
    from facebench.store import open_for_lookups

    path = write(tmp_path / "s.h5")
    with open_for_lookups(path):
        pass
    features, norms = unit_rows(3, 6, seed=5)
    append_to_store(path, ["new/a.jpg", "new/b.jpg", "new/c.jpg"], features, norms)
    ids = [*make_ids(12), "new/a.jpg", "new/b.jpg", "new/c.jpg"]
    with open_for_lookups(path) as store:
        assert store._ids == ids  # the file changed: its ids read and checked again
        assert store.ids_sha256() == hashlib.sha256("\n".join(ids).encode()).hexdigest()
        assert np.array_equal(store.index_of(ids), np.arange(15))
    # Renamed over by another store of the same size and the same ids but one.
    other = write(tmp_path / "other.h5")
    edit(other, lambda handle: handle["ids"].__setitem__(0, "someone/else.jpg"))
    path.unlink()
    write(path)
    with open_for_lookups(path):
        pass
    other.replace(path)
    with open_for_lookups(path) as store:
        assert store._ids is not None and store.ids[0] == "someone/else.jpg"
        with pytest.raises(MissingItemsError, match="person_0_0000"):
            store.index_of(make_ids(12))


def test_the_ids_digest_with_the_cache_off_a_damaged_entry_or_a_racy_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from facebench import cache
    from facebench.store import open_for_lookups

    path = write(tmp_path / "s.h5")
    with open_for_lookups(path):  # written just now: racy, not kept
        pass
    with open_for_lookups(path) as store:
        assert store._ids is not None
    monkeypatch.setattr(cache, "RACY_SECONDS", 0.0)
    with open_for_lookups(path):
        pass
    entry = cache._digest_entry("store-ids", path)
    assert entry is not None and entry.is_file()
    for damaged in ("", "garbage", entry.read_text(encoding="utf-8")[:-10]):
        entry.write_text(damaged, encoding="utf-8")
        with open_for_lookups(path) as store:
            assert store._ids is not None  # not answered: read, and the entry rewritten
    with open_for_lookups(path) as store:
        assert store._ids is None
    monkeypatch.setenv("FACEBENCH_CACHE_DIR", "off")
    with open_for_lookups(path) as store:
        assert store._ids is not None and store.index_of(make_ids(12)).size == 12


def test_a_damaged_row_names_its_id_when_the_ids_were_never_read(tmp_path: Path) -> None:
    path = write(tmp_path / "s.h5")
    edit(path, lambda handle: handle["features"].__setitem__(7, np.full(6, np.nan)))
    with FeatureStore.open(path, read_ids=False) as store:
        with pytest.raises(StoreError, match=r"row 7 \(id 'person_2/person_2_0001.jpg'\)"):
            store.read_rows(np.arange(12))
