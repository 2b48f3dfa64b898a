"""Fuzzing the feature store: a damaged store opens and reads, or raises StoreError.

Two kinds of damage to a valid store (flips, metadata, skipped items: every optional part):

- structural, written through h5py: a dataset or attribute dropped, renamed, replaced by
  one of another dtype or shape, rows out of range, a wrong schema version or
  preprocessing attribute, duplicate or malformed ids, NaN rows, a group where a dataset
  belongs;
- bytes: flipped, deleted or inserted bytes and truncation of the HDF5 file itself. The
  HDF5 C library reads these; a damaged file can make it crash the process, so each such
  example runs in a forked child and a crash (a signal) fails the test like an exception.

Property: ``FeatureStore.open`` and every read either succeed (then the rows read are unit
rows with finite norms) or raise FacebenchError with a one-line message.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from conftest import FUZZ, FUZZ_FORKED, in_child, parse_or_error
from hypothesis import given
from hypothesis import strategies as st

from facebench.errors import StoreError
from facebench.store import FeatureStore, create_store, normalize_rows

N_ROWS, DIM = 9, 5


def _valid_store(path: Path) -> Path:
    rng = np.random.default_rng(0)
    features, norms = normalize_rows(rng.normal(size=(N_ROWS, DIM)))
    flips, flip_norms = normalize_rows(rng.normal(size=(N_ROWS, DIM)))
    create_store(
        path,
        [f"p{i % 3}/img_{i:04d}.jpg" for i in range(N_ROWS)],
        features,
        norms,
        features_flip=flips,
        norms_flip=flip_norms,
        metadata={"score": np.linspace(0.1, 1.0, N_ROWS), "name": np.array(["a"] * N_ROWS)},
        model="fuzz-model",
        model_sha256="ab" * 32,
        preprocessing={"name": "none"},
        skipped=[("p9/bad.jpg", "p9/bad.jpg: truncated JPEG")],
    )
    return path


@pytest.fixture(scope="module")
def valid_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _valid_store(tmp_path_factory.mktemp("store") / "valid.h5")


def read_everything(path: Path) -> None:
    """Open ``path`` and read every part a command reads; check what comes back."""
    with FeatureStore.open(path) as store:
        for flip in (False, True) if store.info.has_flip else (False,):
            features, norms = store.read_all(flip=flip)
            assert features.shape == (store.info.n_items, store.info.dim)
            assert np.all(np.isfinite(norms)) and np.all(norms >= 0)
            np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, atol=2e-3)
            if store.ids:
                some = store.read_ids(store.ids[::-2], flip=flip)[0]
                assert some.shape == (len(store.ids[::-2]), store.info.dim)
        store.skipped()
        for key in store.info.metadata_keys:
            assert len(store.read_metadata(key)) == store.info.n_items


# --- structural damage, through h5py ----------------------------------------------------------

DATASETS = (
    "ids",
    "features",
    "norms",
    "features_flip",
    "norms_flip",
    "_block_sha256",
    "skipped_ids",
    "skipped_reasons",
    "meta/score",
    "meta/name",
)
ATTRIBUTES = (
    "schema_version",
    "model",
    "model_sha256",
    "preprocessing",
    "created",
    "facebench_version",
    "content_sha256",
)
#: Values written over a dataset: other dtypes, ranks and lengths.
REPLACEMENTS: tuple[Callable[[int], Any], ...] = (
    lambda n: np.zeros((n, DIM), dtype=np.float64),
    lambda n: np.zeros((n,), dtype=np.int32),
    lambda n: np.ones((n, DIM + 1), dtype=np.float32) / np.sqrt(DIM + 1),
    lambda n: np.ones((max(n - 1, 0), DIM), dtype=np.float32) / np.sqrt(DIM),
    lambda n: np.ones((n + 2,), dtype=np.float32),
    lambda n: np.full((n, DIM), np.nan, dtype=np.float32),
    lambda n: -np.ones((n,), dtype=np.float32),
    lambda n: np.array([b"x"] * n, dtype="S5"),
    lambda n: np.array(["a/1.jpg"] * n, dtype=object),
    lambda n: np.array([f"a\\{i}" for i in range(n)], dtype=object),
    lambda n: np.array([f"/abs/{i}" for i in range(n)], dtype=object),
    lambda n: np.zeros((0,), dtype=np.float32),
    lambda n: np.float32(1.0),  # a scalar dataset
    lambda n: np.zeros((n, 0), dtype=np.float32),
)
ATTRIBUTE_VALUES: tuple[Any, ...] = (
    0,
    2,
    -1,
    1.0,
    "1",
    b"1",
    np.array([1, 1]),
    np.int8(1),
    np.uint64(1),
    True,
    "not json {",
    "[1, 2]",
    "null",
    "",
    "\udcff".encode("utf-8", "surrogatepass"),
)
STRING = h5py.string_dtype("utf-8")


def _damage(handle: h5py.File, action: tuple[Any, ...]) -> None:
    kind = action[0]
    if kind == "drop":
        if action[1] in handle:
            del handle[action[1]]
    elif kind == "rename":
        if action[1] in handle:
            handle.move(action[1], action[1] + "_renamed")
    elif kind == "replace":
        name, make = action[1], REPLACEMENTS[action[2]]
        n_rows = handle["features"].shape[0] if "features" in handle else N_ROWS
        if name in handle:
            del handle[name]
        value = make(n_rows)
        kwargs = {"dtype": STRING} if np.asarray(value).dtype == object else {}
        handle.create_dataset(name, data=value, **kwargs)
    elif kind == "group":
        if action[1] in handle:
            del handle[action[1]]
        handle.create_group(action[1])
    elif kind == "attr":
        name, value = action[1], ATTRIBUTE_VALUES[action[2]]
        handle.attrs[name] = value
    elif kind == "del_attr":
        if action[1] in handle.attrs:
            del handle.attrs[action[1]]
    elif kind == "duplicate_id":
        ids = handle["ids"]
        ids[1] = ids[0]
    elif kind == "bad_value":
        row, value = action[1], action[2]
        dataset = handle[action[3]]
        if dataset.ndim == 2 and dataset.shape[0] > row:
            dataset[row, 0] = value
        elif dataset.ndim == 1 and dataset.shape[0] > row:
            dataset[row] = value
    elif kind == "resize":
        dataset = handle[action[1]] if action[1] in handle else None
        if dataset is not None and dataset.maxshape[0] is None:
            dataset.resize(action[2], axis=0)


actions = st.one_of(
    st.tuples(st.just("drop"), st.sampled_from(DATASETS)),
    st.tuples(st.just("rename"), st.sampled_from((*DATASETS, "meta"))),
    st.tuples(st.just("replace"), st.sampled_from(DATASETS), st.integers(0, len(REPLACEMENTS) - 1)),
    st.tuples(st.just("group"), st.sampled_from((*DATASETS, "meta"))),
    st.tuples(
        st.just("attr"), st.sampled_from(ATTRIBUTES), st.integers(0, len(ATTRIBUTE_VALUES) - 1)
    ),
    st.tuples(st.just("del_attr"), st.sampled_from(ATTRIBUTES)),
    st.tuples(st.just("duplicate_id")),
    st.tuples(
        st.just("bad_value"),
        st.integers(0, N_ROWS),
        st.sampled_from((np.nan, np.inf, -1.0, 0.0, 7.0, 1e38)),
        st.sampled_from(("features", "norms", "features_flip", "norms_flip")),
    ),
    st.tuples(
        st.just("resize"),
        st.sampled_from(DATASETS),
        st.sampled_from((0, 1, N_ROWS - 1, N_ROWS + 1, 3 * N_ROWS)),
    ),
)


@FUZZ
@given(damages=st.lists(actions, min_size=1, max_size=3))
def test_fuzz_store_structure(
    valid_store: Path, tmp_path_factory: pytest.TempPathFactory, damages: list[tuple[Any, ...]]
) -> None:
    path = tmp_path_factory.mktemp("damaged") / "s.h5"
    shutil.copyfile(valid_store, path)
    with h5py.File(path, "r+") as handle:
        for action in damages:
            try:
                _damage(handle, action)
            except (KeyError, TypeError, ValueError, IndexError, AttributeError, OSError):
                pass  # h5py cannot make this damage after the earlier ones: skip it
    parse_or_error(read_everything, path)


# --- byte damage, in a forked child ---------------------------------------------------------


def _bytes_damage(draw: st.DrawFn, data: bytes) -> bytes:
    kind = draw(st.sampled_from(("flip", "flip", "flip", "truncate", "delete", "insert", "zero")))
    at = draw(st.integers(0, len(data) - 1))
    if kind == "flip":
        return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
    if kind == "truncate":
        return data[:at]
    if kind == "delete":
        return data[:at] + data[at + draw(st.integers(1, 512)) :]
    if kind == "zero":
        return data[:at] + bytes(draw(st.integers(1, 512))) + data[at + 512 :]
    return data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:]


@FUZZ_FORKED
@given(seed=st.data())
def test_fuzz_store_bytes(
    valid_store: Path, tmp_path_factory: pytest.TempPathFactory, seed: st.DataObject
) -> None:
    data = valid_store.read_bytes()
    for _ in range(seed.draw(st.integers(1, 4), label="n_damages")):
        data = _bytes_damage(seed.draw, data) or b"\0"
    path = tmp_path_factory.mktemp("bytes") / "s.h5"
    path.write_bytes(data)
    in_child(lambda: read_everything(path))


# --- regressions and fixed cases --------------------------------------------------------------


def test_valid_store_reads(valid_store: Path) -> None:
    assert in_child(lambda: read_everything(valid_store)) == "ok"


@pytest.mark.parametrize(
    ("action", "phrase"),
    [
        (("drop", "ids"), "Expected a dataset 'ids'"),
        (("replace", "features", 0), "Expected a dataset 'features' of float32"),
        (("attr", "schema_version", 1), "Expected store schema_version in [1]"),
        (("attr", "preprocessing", 10), "preprocessing attribute to be a JSON object"),
        (("duplicate_id",), "Expected unique ids"),
        (("bad_value", 2, np.nan, "features"), "row 2"),
    ],
)
def test_known_damage_names_the_problem(
    valid_store: Path, tmp_path: Path, action: tuple[Any, ...], phrase: str
) -> None:
    path = tmp_path / "s.h5"
    shutil.copyfile(valid_store, path)
    with h5py.File(path, "r+") as handle:
        _damage(handle, action)
    with pytest.raises(StoreError) as info:
        read_everything(path)
    assert str(info.value).startswith(f"{path}") and phrase in str(info.value)
