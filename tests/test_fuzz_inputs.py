"""Fuzzing every other file facebench reads from a user: a damaged one is a FacebenchError.

Targets, each from a valid file in its format (``conftest.mutated`` for text files, byte
damage for binary ones): the ids file of ``facebench import`` and its feature arrays
(.npy, .npz, .h5), the list, landmarks and boxes files of ``facebench extract``, an
extraction's work folder (chunk files and job.json, read by ``facebench merge`` and a
resumed extract), a weights file for ``--arch``/``--weights``, and images (PNG, JPEG).
Property: a valid result, or a FacebenchError with a one-line message; never another
exception, never a hang. Reproducers of crashes in modules this file does not fix are
marked ``xfail(strict=True)``: they pass the day the module is fixed, and then fail here
until their mark is removed.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from conftest import FUZZ, FUZZ_FORKED, in_child, mutated, parse_or_error
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from facebench.errors import FacebenchError
from facebench.extract import journal, sources
from facebench.extract.preprocess import decode_image
from facebench.importing import read_id_file
from facebench.models.loaders import load_model
from facebench.models.registry import ARCHITECTURES
from facebench.store import FeatureStore, read_array

POINTS = "38.3 51.7 73.5 51.5 56.0 71.7 41.5 92.4 70.7 92.2"
IDS_BASE = b"".join(f"person_{i // 2}/img_{i:04d}.jpg\n".encode() for i in range(8))
LIST_BASE = IDS_BASE
LANDMARKS_BASE = b"# path x1 y1 ... x5 y5 score\n" + b"".join(
    f"person_{i // 2}/img_{i:04d}.jpg {POINTS} 0.99\n".encode() for i in range(6)
)
BOXES_BASE = b"".join(
    f"person_{i // 2}/img_{i:04d}.jpg {10 + i} 12.5 40 48.25\n".encode() for i in range(6)
)


def _byte_damage(draw: st.DrawFn, data: bytes, max_damages: int = 3) -> bytes:
    """Flipped, deleted, inserted or zeroed bytes, or truncation, anywhere in ``data``."""
    for _ in range(draw(st.integers(1, max_damages))):
        if not data:
            return data
        kind = draw(st.sampled_from(("flip", "flip", "truncate", "delete", "insert", "zero")))
        at = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data = data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
        elif kind == "truncate":
            data = data[:at]
        elif kind == "delete":
            data = data[:at] + data[at + draw(st.integers(1, 64)) :]
        elif kind == "zero":
            data = data[:at] + bytes(draw(st.integers(1, 64))) + data[at + 64 :]
        else:
            data = data[:at] + draw(st.binary(min_size=1, max_size=16)) + data[at:]
    return data


# --- facebench import: the ids file and the feature arrays -------------------------------------


@FUZZ
@given(data=mutated(IDS_BASE))
def test_fuzz_ids_file(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("ids") / "ids.txt"
    path.write_bytes(data)
    result = parse_or_error(read_id_file, path)
    if isinstance(result, list):
        assert len(set(result)) == len(result)


def _array_bytes(suffix: str) -> bytes:
    buffer = io.BytesIO()
    array = np.arange(20, dtype=np.float32).reshape(5, 4)
    if suffix == ".npy":
        np.save(buffer, array)
    else:
        np.savez(buffer, features=array)
    return buffer.getvalue()


@FUZZ
@given(suffix=st.sampled_from((".npy", ".npz")), seed=st.data())
def test_fuzz_feature_arrays(
    tmp_path_factory: pytest.TempPathFactory, suffix: str, seed: st.DataObject
) -> None:
    path = tmp_path_factory.mktemp("array") / f"features{suffix}"
    path.write_bytes(_byte_damage(seed.draw, _array_bytes(suffix)))
    result = parse_or_error(read_array, path)
    if isinstance(result, np.ndarray):
        assert result.size <= 1 << 20


def _hdf5_array(path: Path) -> Path:
    with h5py.File(path, "w") as handle:
        handle.create_dataset("emb/feats", data=np.ones((5, 4), dtype=np.float32))
    return path


@FUZZ_FORKED
@given(seed=st.data())
def test_fuzz_feature_arrays_hdf5(tmp_path_factory: pytest.TempPathFactory, seed: st.DataObject):
    folder = tmp_path_factory.mktemp("h5")
    base = _hdf5_array(folder / "base.h5")
    path = folder / "features.h5"
    path.write_bytes(_byte_damage(seed.draw, base.read_bytes()))
    in_child(lambda: read_array(path, "emb/feats"))


def test_damaged_hdf5_feature_file_is_an_input_error(tmp_path: Path) -> None:
    path = _hdf5_array(tmp_path / "features.h5")
    data = path.read_bytes()
    path.write_bytes(data.replace(b"TREE", b"TRE\0", 1))
    with pytest.raises(FacebenchError, match=f"{path}"):
        read_array(path, "emb/feats")


def _damaged_array(kind: str) -> bytes:
    if kind == "npy header":
        return _array_bytes(".npy").replace(b"}", b"(", 1)
    data = bytearray(_array_bytes(".npz"))
    directory = data.rfind(b"PK\x01\x02")
    if kind == "npz crc":
        data[200] ^= 0xFF
    elif kind == "npz encrypted":
        data[directory + 8] |= 1
    else:
        data[directory + 10] = 99  # an unknown compression method
    return bytes(data)


@pytest.mark.parametrize("kind", ["npy header", "npz crc", "npz encrypted", "npz compression"])
def test_damaged_feature_array_is_an_input_error(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"features.{kind[:3]}"
    path.write_bytes(_damaged_array(kind))
    with pytest.raises(FacebenchError, match=f"{path}: cannot read the array"):
        read_array(path)


# --- facebench extract: list, landmarks and boxes files ----------------------------------------


@FUZZ
@given(data=mutated(LIST_BASE))
def test_fuzz_list_file(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    folder = tmp_path_factory.mktemp("list")
    path = folder / "list.txt"
    path.write_bytes(data)
    result = parse_or_error(sources.list_items, folder / "root", path)
    if isinstance(result, list):
        for item in result:  # every accepted path stays under the root
            assert item.path.resolve().is_relative_to((folder / "root").resolve())


@FUZZ
@given(kind=st.sampled_from(("landmarks", "boxes")), seed=st.data())
def test_fuzz_side_files(
    tmp_path_factory: pytest.TempPathFactory, kind: str, seed: st.DataObject
) -> None:
    base = LANDMARKS_BASE if kind == "landmarks" else BOXES_BASE
    path = tmp_path_factory.mktemp("side") / f"{kind}.txt"
    path.write_bytes(seed.draw(mutated(base)))
    reader = sources.read_landmarks if kind == "landmarks" else sources.read_boxes
    result = parse_or_error(reader, path)
    if isinstance(result, dict):
        assert all(len(v) == (10 if kind == "landmarks" else 4) for v in result.values())


# --- an extraction's work folder: chunk files and job.json ------------------------------------


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("parts") / "out.h5.parts"
    ids = tuple(f"p/{i}.jpg" for i in range(7))
    job = journal.Job(ids, 3, "m", "", {"name": "none"}, flip=True)
    journal.prepare_parts(folder, job, discard_other=False)
    rng = np.random.default_rng(0)
    for chunk in range(job.n_chunks):
        span = list(ids[job.chunk_slice(chunk)])
        kept, skipped = span[:-1] if chunk == 1 else span, [(span[-1], "bad")] if chunk == 1 else []
        feats = rng.normal(size=(len(kept), 4)).astype(np.float32)
        journal.write_chunk(folder, chunk, span, kept, feats, feats[:, ::-1].copy(), skipped)
    return folder


@FUZZ
@given(which=st.sampled_from(("job.json", "chunk-000000.npz", "chunk-000001.npz")), seed=st.data())
def test_fuzz_work_folder(
    parts: Path, tmp_path_factory: pytest.TempPathFactory, which: str, seed: st.DataObject
) -> None:
    copy = tmp_path_factory.mktemp("case") / parts.name
    shutil.copytree(parts, copy)
    original = (copy / which).read_bytes()
    damaged = seed.draw(mutated(original)) if which == "job.json" else b""
    (copy / which).write_bytes(damaged or _byte_damage(seed.draw, original))
    output = copy.parent / "out.h5"
    result = parse_or_error(journal.assemble, copy, output)
    if not isinstance(result, FacebenchError):
        with FeatureStore.open(output) as store:
            assert store.info.n_items + store.info.n_skipped == 7


def test_work_folder_base_assembles(parts: Path, tmp_path: Path) -> None:
    copy = tmp_path / parts.name
    shutil.copytree(parts, copy)
    info = journal.assemble(copy, tmp_path / "out.h5")
    assert (info.n_items, info.n_skipped, info.has_flip) == (6, 1, True)
    assert not copy.exists()


@pytest.mark.parametrize(
    ("manifest", "phrase"),
    [
        ("[]", "but got a list"),
        ('{"n_items": "7"}', "n_items='7'"),
        ('{"n_items": 7, "chunk_size": 0}', "chunk_size=0"),
    ],
)
def test_damaged_manifest_is_a_journal_error(
    parts: Path, tmp_path: Path, manifest: str, phrase: str
) -> None:
    copy = tmp_path / parts.name
    shutil.copytree(parts, copy)
    complete = json.loads((parts / "job.json").read_text())
    edited = json.loads(manifest)
    if isinstance(edited, dict):
        edited = {**complete, **edited}
    (copy / "job.json").write_text(json.dumps(edited))
    with pytest.raises(journal.JournalError, match=r"job\.json: Expected the manifest") as info:
        journal.assemble(copy, tmp_path / "out.h5")
    assert phrase in str(info.value)


def test_a_manifest_announcing_huge_counts_is_answered_at_once(parts: Path, tmp_path: Path):
    copy = tmp_path / parts.name
    shutil.copytree(parts, copy)
    manifest = json.loads((parts / "job.json").read_text())
    (copy / "job.json").write_text(json.dumps({**manifest, "n_items": 10**18}))
    result = parse_or_error(journal.assemble, copy, tmp_path / "out.h5")  # under a deadline
    assert isinstance(result, journal.JournalError)
    expected = "333333333333333331 of 333333333333333334 chunks are not finished (first: 3, 4,"
    assert expected in str(result)


@pytest.mark.parametrize("damage", ["crc", "header", "compression"])
def test_damaged_chunk_is_a_journal_error(parts: Path, tmp_path: Path, damage: str) -> None:
    copy = tmp_path / parts.name
    shutil.copytree(parts, copy)
    chunk = copy / "chunk-000001.npz"
    data = bytearray(chunk.read_bytes())
    directory = data.rfind(b"PK\x01\x02")
    if damage == "crc":
        data[300] ^= 0xFF
    elif damage == "header":
        at = data.index(b"'descr'")
        data[at : at + 7] = b"((((((("
    else:
        data[directory + 10] = 99
    chunk.write_bytes(bytes(data))
    with pytest.raises(journal.JournalError, match=f"{chunk}: damaged chunk"):
        journal.assemble(copy, tmp_path / "out.h5")
    assert (copy / "chunk-000000.npz").exists()  # nothing else was touched


# --- weights files -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def weights_bytes() -> bytes:
    torch.manual_seed(0)
    buffer = io.BytesIO()
    torch.save(ARCHITECTURES["small-cnn"].build().state_dict(), buffer)
    return buffer.getvalue()


@FUZZ
@given(seed=st.data())
def test_fuzz_weights_file(
    weights_bytes: bytes, tmp_path_factory: pytest.TempPathFactory, seed: st.DataObject
) -> None:
    path = tmp_path_factory.mktemp("weights") / "w.pth"
    path.write_bytes(_byte_damage(seed.draw, weights_bytes))
    parse_or_error(load_model, arch="small-cnn", weights=path, log=lambda message: None)


# --- images ------------------------------------------------------------------------------------


def _image_bytes(image_format: str) -> bytes:
    rng = np.random.default_rng(1)
    buffer = io.BytesIO()
    pixels = rng.integers(0, 256, size=(24, 20, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format=image_format)
    return buffer.getvalue()


IMAGES = {name: _image_bytes(name) for name in ("PNG", "JPEG", "BMP")}


@FUZZ
@given(image_format=st.sampled_from(sorted(IMAGES)), seed=st.data())
def test_fuzz_images(
    tmp_path_factory: pytest.TempPathFactory, image_format: str, seed: st.DataObject
) -> None:
    path = tmp_path_factory.mktemp("img") / f"face.{image_format.lower()}"
    path.write_bytes(_byte_damage(seed.draw, IMAGES[image_format]))
    result = parse_or_error(decode_image, path, max_pixels=1 << 16)
    if isinstance(result, np.ndarray):
        assert result.dtype == np.uint8 and result.ndim == 3 and result.shape[2] == 3
