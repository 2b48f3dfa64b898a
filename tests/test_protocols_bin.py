"""insightface ``.bin`` validation sets: every layout parses, a pickle that wants to run code
is refused before anything runs, ``verify --protocol bin`` equals the generic pairs path on
the same features, and ``extract`` reads the images straight from the file.

The .bin files are generated here as Python 2's cPickle wrote them (protocol 2: a ``str`` as
SHORT_BINSTRING/BINSTRING, BINPUT memo entries, NumPy arrays through
``numpy.core.multiarray._reconstruct``) by :func:`py2_dumps`, a writer of those opcodes; the
reference reader is the standard library's unrestricted ``pickle.loads(encoding='bytes')``,
which insightface's ``load_bin`` calls.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import tempfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from cli_helpers import assert_user_error, run
from conftest import FUZZ, mutated, parse_or_error
from hypothesis import given
from PIL import Image
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import KFold

from facebench.errors import FacebenchError
from facebench.metrics.compat import contiguous_fold_bounds
from facebench.store import create_store, normalize_rows
from protocols import PROTOCOLS, PairsProtocol
from protocols import bin as insightface_bin
from protocols.bin import BinFormatError, parse_bin, read_bin
from protocols.pairs import contiguous_folds

# ----------------------------------------------------------------------------- Python 2 writer


class _Py2Writer:
    """cPickle protocol 2 (Python 2.7) for str (bytes), bool, int, None, tuple, list and 1-D
    NumPy arrays, memoizing as cPickle does (BINPUT after each str, tuple and list)."""

    def __init__(self) -> None:
        self.out = bytearray(b"\x80\x02")
        self.memo = 0

    def put(self) -> None:
        self.out += (
            b"q" + bytes([self.memo]) if self.memo < 256 else b"r" + struct.pack("<I", self.memo)
        )
        self.memo += 1

    def global_(self, module: str, name: str) -> None:
        self.out += b"c" + module.encode() + b"\n" + name.encode() + b"\n"
        self.put()

    def tuple_(self, items: tuple[Any, ...]) -> None:
        if not items:
            self.out += b")"
            return
        if len(items) > 3:
            self.out += b"("
        for item in items:
            self.dump(item)
        self.out += {1: b"\x85", 2: b"\x86", 3: b"\x87"}.get(len(items), b"t")
        self.put()

    def array(self, value: np.ndarray) -> None:
        # ndarray.__reduce__ of NumPy 1.x under Python 2: _reconstruct(ndarray, (0,), 'b'),
        # then the state (1, shape, dtype, is_fortran, raw bytes); a dtype is
        # dtype('b1', 0, 1) with the state (3, '|', None, None, None, -1, -1, 0).
        self.global_("numpy.core.multiarray", "_reconstruct")
        self.out += b"("
        self.global_("numpy", "ndarray")
        self.tuple_((0,))
        self.dump(b"b")
        self.out += b"tR"
        self.put()
        self.out += b"("
        self.dump(1)
        self.tuple_(tuple(value.shape))
        self.global_("numpy", "dtype")
        self.tuple_((value.dtype.str[1:].encode(), 0, 1))
        self.out += b"R"
        self.put()
        self.tuple_((3, b"|", None, None, None, -1, -1, 0))
        self.out += b"b"
        self.dump(False)
        self.dump(value.tobytes())
        self.out += b"tb"

    def dump(self, value: Any) -> None:
        if value is None:
            self.out += b"N"
        elif isinstance(value, bool | np.bool_):
            self.out += b"\x88" if value else b"\x89"
        elif isinstance(value, int):
            self.out += (
                b"K" + bytes([value]) if 0 <= value < 256 else b"J" + struct.pack("<i", value)
            )
        elif isinstance(value, bytes):
            n = len(value)
            self.out += (b"U" + bytes([n]) if n < 256 else b"T" + struct.pack("<i", n)) + value
            self.put()
        elif isinstance(value, tuple):
            self.tuple_(value)
        elif isinstance(value, list):
            self.out += b"]"
            self.put()
            for start in range(0, len(value), 1000):  # cPickle's batches of APPENDS
                self.out += b"("
                for item in value[start : start + 1000]:
                    self.dump(item)
                self.out += b"e"
        elif isinstance(value, np.ndarray):
            self.array(value)
        else:
            raise TypeError(type(value))


def py2_dumps(value: Any) -> bytes:
    """``cPickle.dumps(value, protocol=2)`` as Python 2.7 wrote it."""
    writer = _Py2Writer()
    writer.dump(value)
    return bytes(writer.out + b".")


# ----------------------------------------------------------------------------- fixtures


def tiny_jpegs(n: int, size: int = 112, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
        images.append(buffer.getvalue())
    return images


N_PAIRS = 23  # not a multiple of 10: the first 3 folds hold 3 pairs, the others 2
JPEGS = tiny_jpegs(2 * N_PAIRS, size=16)
FLAGS = [bool(f) for f in np.random.default_rng(1).integers(0, 2, N_PAIRS)]
FLAGS[:2] = [True, False]


def layouts() -> dict[str, bytes]:
    """name -> .bin bytes: the layouts met in the wild, as Python 2 and Python 3 write them."""
    arrays = [np.frombuffer(j, dtype=np.uint8).copy() for j in JPEGS]
    flag_array = np.array(FLAGS, dtype=bool)
    out = {
        "py2 bytes + list of bool": py2_dumps((JPEGS, FLAGS)),
        "py2 bytes + bool array": py2_dumps((JPEGS, flag_array)),
        "py2 uint8 arrays + list of bool": py2_dumps((arrays, FLAGS)),
        "py2 uint8 arrays + bool array": py2_dumps((arrays, flag_array)),
        "py2 list pair": py2_dumps([JPEGS, FLAGS]),
    }
    for protocol in (2, 4, 5):
        out[f"py3 protocol {protocol} bytes + bool array"] = pickle.dumps(
            (JPEGS, flag_array), protocol=protocol
        )
        out[f"py3 protocol {protocol} uint8 + numpy bools"] = pickle.dumps(
            (arrays, [np.bool_(f) for f in FLAGS]), protocol=protocol
        )
    out["py3 numpy.bytes_ images"] = pickle.dumps(([np.bytes_(j) for j in JPEGS], FLAGS), 2)
    return out


LAYOUTS = layouts()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# ----------------------------------------------------------------------------- layouts


def test_py2_writer_is_read_by_the_standard_unpickler() -> None:
    images, flags = pickle.loads(py2_dumps((JPEGS, np.array(FLAGS))), encoding="bytes")
    assert images == JPEGS and flags.dtype == np.bool_ and flags.tolist() == FLAGS


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_every_layout_parses_as_the_standard_unpickler_reads_it(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / "cfp_fp.bin", LAYOUTS[name])
    images, flags = pickle.loads(LAYOUTS[name], encoding="bytes")  # insightface's load_bin
    reference_images = [bytes(i) if isinstance(i, bytes) else i.tobytes() for i in images]
    content = read_bin(path)
    assert list(content.images) == reference_images == JPEGS
    assert content.is_same.tolist() == [bool(f) for f in flags] == FLAGS
    protocol = parse_bin(path)
    assert protocol.n_pairs == N_PAIRS and protocol.name == "bin"
    assert protocol.left[:2] == ("cfp_fp.bin#0", "cfp_fp.bin#2")
    assert protocol.right[-1] == f"cfp_fp.bin#{2 * N_PAIRS - 1}"
    assert protocol.is_same.tolist() == FLAGS
    assert protocol.items == sorted(f"cfp_fp.bin#{i}" for i in range(2 * N_PAIRS))
    import hashlib

    assert protocol.sha256 == hashlib.sha256(LAYOUTS[name]).hexdigest()
    # 23 pairs are not the official 7,000 of cfp_fp.bin: said in a warning
    assert any("7000" in w for w in protocol.warnings)


@pytest.mark.parametrize("n_pairs", [10, 23, 6000, 7001])
def test_folds_are_sklearn_kfold_test_blocks(n_pairs: int) -> None:
    expected = np.empty(n_pairs, dtype=np.int64)
    for fold, (_, test) in enumerate(KFold(n_splits=10, shuffle=False).split(range(n_pairs))):
        expected[test] = fold + 1
    np.testing.assert_array_equal(contiguous_folds(n_pairs), expected)
    bounds = contiguous_fold_bounds(n_pairs, 10)  # the compat modes' own blocks
    np.testing.assert_array_equal(np.repeat(np.arange(1, 11), np.diff(bounds)), expected)


def test_registry_loader_needs_the_file(tmp_path: Path) -> None:
    spec = PROTOCOLS["bin"]
    assert spec.kind == "pairs"
    with pytest.raises(FacebenchError, match="--bin FILE"):
        spec.load(None)
    protocol = spec.load(write(tmp_path / "agedb_30.bin", LAYOUTS["py2 bytes + bool array"]))
    assert isinstance(protocol, PairsProtocol) and protocol.counts["n_pairs"] == N_PAIRS
    assert protocol.counts["official_n_pairs"] == 6000


# ----------------------------------------------------------------------------- bad files


def _flipped(data: bytes) -> bytes:
    return data[: len(data) // 2]


@pytest.mark.parametrize(
    ("content", "phrases"),
    [
        (py2_dumps((JPEGS[:-1], FLAGS)), ["45 images", "23 flags", "46 images expected"]),
        (py2_dumps((JPEGS, [*FLAGS, True])), ["46 images", "24 flags"]),
        (py2_dumps((JPEGS, [int(f) for f in FLAGS])), ["pair 0", "bool", "int"]),
        (py2_dumps((JPEGS, np.array(FLAGS, dtype=np.uint8))), ["bool array", "uint8"]),
        (py2_dumps(([*JPEGS[:3], 7, *JPEGS[4:]], FLAGS)), ["image 3", "#3", "int"]),
        (py2_dumps(([*JPEGS[:5], b"", *JPEGS[6:]], FLAGS)), ["image 5", "empty"]),
        (py2_dumps((JPEGS, FLAGS, None)), ["pair (images, is-same flags)", "length 3"]),
        (py2_dumps(JPEGS), ["pair (images, is-same flags)", "length 46"]),
        (py2_dumps((JPEGS[:8], FLAGS[:4])), ["at least 10 pairs", "4"]),
        (_flipped(LAYOUTS["py2 bytes + list of bool"]), ["does not unpickle"]),
        (JPEGS[0], ["does not unpickle"]),
        (b"", ["does not unpickle"]),
        (b"\x80\x02r\xff\xff\xff\x7fN.", ["memo slot 2147483647"]),
    ],
)
def test_bad_files_are_named_errors(tmp_path: Path, content: bytes, phrases: list[str]) -> None:
    path = write(tmp_path / "lfw.bin", content)
    with pytest.raises(BinFormatError) as caught:
        parse_bin(path)
    message = str(caught.value)
    assert message.startswith(str(path)) and "\n" not in message
    for phrase in phrases:
        assert phrase in message, message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BinFormatError, match=r"no such \.bin file"):
        parse_bin(tmp_path / "none.bin")


# ----------------------------------------------------------------------------- code in pickles


class _System:
    """Unpickling runs os.system(command): what a crafted .bin would do."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (self.command,))


def _py2_global_call(module: str, name: str, argument: bytes) -> bytes:
    """A Python 2 pickle of (images, flags) whose 4th image is ``module.name(argument)``."""
    head = py2_dumps((JPEGS[:3], FLAGS))
    call = b"c" + module.encode() + b"\n" + name.encode() + b"\n" + b"U"
    call += bytes([len(argument)]) + argument + b"\x85R"
    # splice the call in as a 4th element of the images list (before its APPENDS ends)
    marker = head.index(b"e", head.index(JPEGS[2]) + len(JPEGS[2]))
    return head[:marker] + call + head[marker:]


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_a_pickle_calling_os_system_is_refused_and_nothing_runs(
    tmp_path: Path, protocol: int
) -> None:
    marker = tmp_path / "MARKER"
    evil = pickle.dumps(([*JPEGS[:4], _System(f"touch {marker}")], FLAGS[:2]), protocol=protocol)
    path = write(tmp_path / "cfp_fp.bin", evil)
    with pytest.raises(BinFormatError) as caught:
        parse_bin(path)
    message = str(caught.value)
    assert f"{os.system.__module__}.system" in message
    assert "refusing" in message and "images and flags" in message
    assert not marker.exists()
    # the same file through the CLI: exit 2, one error line, still nothing run
    store = write(tmp_path / "x.h5", b"")  # the .bin is read before the store
    result = run("verify", "--protocol", "bin", "--bin", path, "--features", store)
    assert_user_error(result, "refusing", "system")
    assert not marker.exists()


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("os", "system"),
        ("posix", "system"),
        ("__builtin__", "eval"),
        ("builtins", "exec"),
        ("subprocess", "check_call"),
        ("numpy", "load"),
        ("numpy.lib.npyio", "load"),
        ("pickle", "loads"),
        ("copy_reg", "_reconstructor"),
    ],
)
def test_every_other_global_is_refused_by_name(tmp_path: Path, module: str, name: str) -> None:
    marker = tmp_path / "MARKER"
    data = _py2_global_call(module, name, f"touch {marker}".encode())
    path = write(tmp_path / "x.bin", data)
    with pytest.raises(BinFormatError, match=f"wants to import {module}.{name}; refusing"):
        read_bin(path)
    assert not marker.exists()


def test_admitted_numpy_constructors_are_checked(tmp_path: Path) -> None:
    # an object array could hold anything: refused at its dtype
    objects = pickle.dumps(([JPEGS[0]], np.array([True], dtype=object)), protocol=2)
    with pytest.raises(BinFormatError, match="dtype of booleans, integers or bytes"):
        read_bin(write(tmp_path / "o.bin", objects))
    # _reconstruct only rebuilds an empty ndarray (its state then fills it) ...
    other = b"\x80\x02cnumpy.core.multiarray\n_reconstruct\n(cnumpy\ndtype\nK\x00\x85U\x01btR."
    huge = other.replace(b"numpy\ndtype\nK\x00", b"numpy\nndarray\nJ\x00\x00\x00\x40")
    for data in (other, huge):
        with pytest.raises(BinFormatError, match=r"expected _reconstruct\(numpy.ndarray, \(0,\)"):
            read_bin(write(tmp_path / "r.bin", data))
    # ... and the ndarray class itself cannot be called (an array of any size)
    direct = b"\x80\x02cnumpy\nndarray\nJ\x00\x00\x00\x40\x85R."
    with pytest.raises(BinFormatError, match="does not unpickle"):
        read_bin(write(tmp_path / "d.bin", direct))


def _fuzz_base() -> bytes:
    return py2_dumps((tiny_jpegs(20, size=8, seed=3), [True, False] * 5))


@FUZZ
@given(data=mutated(_fuzz_base()))
def test_fuzz_bin(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("bin") / "lfw.bin"
    path.write_bytes(data)
    result = parse_or_error(parse_bin, path)
    if isinstance(result, PairsProtocol):
        assert result.n_pairs * 2 == len(result.items) and result.folds.min() == 1


# ----------------------------------------------------------------------------- verify


def features_for(n_pairs: int, flags: list[bool], seed: int = 5) -> np.ndarray:
    """Raw features of the 2 n images: a genuine pair shares an identity direction."""
    rng = np.random.default_rng(seed)
    dim = 32
    centres = rng.standard_normal((2 * n_pairs, dim))
    for i, same in enumerate(flags):
        if same:
            centres[2 * i + 1] = centres[2 * i]
    return (centres + 1.3 * rng.standard_normal((2 * n_pairs, dim))).astype(np.float32)


@pytest.fixture(scope="module")
def bin_case(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bincase")
    n_pairs = 203
    rng = np.random.default_rng(9)
    flags = [bool(f) for f in rng.integers(0, 2, n_pairs)]
    images = [b"\xff\xd8\xff" + bytes([i % 256]) for i in range(2 * n_pairs)]  # not decoded
    bin_path = write(root / "calfw.bin", py2_dumps((images, np.array(flags))))
    ids = [f"calfw.bin#{i}" for i in range(2 * n_pairs)]
    unit, norms = normalize_rows(features_for(n_pairs, flags))
    store = root / "calfw.h5"
    create_store(store, ids, unit, norms, model="synthetic")
    folds = contiguous_folds(n_pairs)
    lines = ["# the pairs of calfw.bin", "id1,id2,label,fold"]
    lines += [
        f"{ids[2 * i]},{ids[2 * i + 1]},{'same' if f else 'different'},{folds[i]}"
        for i, f in enumerate(flags)
    ]
    with_folds = root / "with_folds.csv"
    with_folds.write_text("\r\n".join(lines) + "\r\n")
    plain = root / "plain.txt"
    plain.write_text(
        "".join(f"{ids[2 * i]} {ids[2 * i + 1]} {int(f)}\n" for i, f in enumerate(flags))
    )
    return {"bin": bin_path, "store": store, "with_folds": with_folds, "plain": plain}


NUMBERS = ("accuracy", "auc", "eer", "eer_threshold", "tar_at_far", "roc", "n_pairs", "n_genuine")


def _verify(tmp_path: Path, name: str, store: Path, *args: str | Path) -> dict[str, Any]:
    """``verify ARGS --features STORE --json <name>.json`` -> the report."""
    out = tmp_path / f"{name}.json"
    result = run("verify", *args, "--features", store, "--json", out)
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(out.read_text())


@pytest.mark.parametrize("compat", [None, "insightface"])
def test_verify_bin_equals_the_generic_pairs_path(
    tmp_path: Path, bin_case: dict[str, Path], compat: str | None
) -> None:
    extra = ("--compat", compat) if compat else ()
    store = bin_case["store"]
    on_bin = _verify(tmp_path, "bin", store, "--protocol", "bin", "--bin", bin_case["bin"], *extra)
    for name in ("with_folds", "plain"):
        pairs = bin_case[name]
        on_pairs = _verify(tmp_path, name, store, "--protocol", "pairs", "--pairs", pairs, *extra)
        for key in NUMBERS:
            assert on_bin[key] == on_pairs[key], key
        assert on_bin.get("compat") == on_pairs.get("compat")
    assert on_bin["protocol"] == "bin" and on_bin["counts"]["n_pairs"] == 203
    assert on_bin["conventions"]["folds"].startswith("10 contiguous blocks")
    assert [w for w in on_bin["warnings"] if "6000" in w]  # calfw.bin has 6,000 pairs
    # an independent check of one number: the AUC of scores recomputed from the store
    with h5py.File(store) as handle:
        x = handle["features"][:].astype(np.float64)
    scores = (x[0::2] * x[1::2]).sum(axis=1)
    labels = np.load(tmp_path / "bin.scores.npz")["is_same"]
    assert on_bin["auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-14)
    np.testing.assert_array_equal(
        np.load(tmp_path / "bin.scores.npz")["fold"], contiguous_folds(203)
    )
    if compat:
        assert on_bin["compat"]["rule"] == "insightface"


def test_scores_command_takes_bin(tmp_path: Path, bin_case: dict[str, Path]) -> None:
    out = tmp_path / "calfw.csv"
    args = ("--protocol", "bin", "--bin", bin_case["bin"], "--features", bin_case["store"])
    result = run("scores", *args, "-o", out)
    assert result.exit_code == 0, result.output
    lines = out.read_text().splitlines()
    assert lines[0] == "id1,id2,score,label,fold" and len(lines) == 204
    assert lines[1].startswith("calfw.bin#0,calfw.bin#1,")


@pytest.mark.parametrize(
    ("args", "phrases"),
    [
        (("--protocol", "bin"), ["--bin FILE"]),
        (("--protocol", "lfw", "--bin", "BIN"), ["--bin only with --protocol bin"]),
        (("--protocol", "bin", "--bin", "BIN", "--pairs", "BIN"), ["got --pairs"]),
        (("--protocol", "pairs"), ["--pairs FILE"]),
    ],
)
def test_verify_option_errors(
    bin_case: dict[str, Path], args: tuple[str, ...], phrases: list[str]
) -> None:
    args = tuple(str(bin_case["bin"]) if a == "BIN" else a for a in args)
    result = run("verify", *args, "--features", bin_case["store"])
    assert_user_error(result, *phrases)


# ----------------------------------------------------------------------------- extract


def test_extract_reads_images_from_the_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from facebench.extract.api import ExtractRequest, extract
    from facebench.extract.preprocess import PRESETS, preprocess
    from facebench.extract.runner import ExtractOptions
    from facebench.models.registry import ARCHITECTURES

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    n_pairs = 12
    images = tiny_jpegs(2 * n_pairs, size=112, seed=4)
    arrays = [np.frombuffer(j, dtype=np.uint8).copy() for j in images]
    bin_path = write(tmp_path / "cplfw.bin", py2_dumps((arrays, [True, False] * 6)))
    torch.manual_seed(0)
    module = ARCHITECTURES["small-cnn"].build().eval()
    weights = tmp_path / "small.pth"
    torch.save(module.state_dict(), weights)
    out = tmp_path / "cplfw.h5"
    request = ExtractRequest(root=bin_path, output=out, arch="small-cnn", weights=weights)
    options = ExtractOptions(workers=0, device="cpu", progress=False, batch_size=5, chunk_size=7)
    extract(request, options, log=lambda message: None)
    assert list(scratch.iterdir()) == []  # the temporary copies are gone
    # reference: Pillow decodes the bytes, the preset's preprocessing, a plain forward
    config = PRESETS[ARCHITECTURES["small-cnn"].preset]
    batch = np.stack(
        [preprocess(np.asarray(Image.open(io.BytesIO(j)).convert("RGB")), config) for j in images]
    )
    with torch.no_grad():
        raw = module(torch.from_numpy(batch)).numpy().astype(np.float64)
    with h5py.File(out) as handle:
        ids = [i.decode() for i in handle["ids"][:]]
        stored = handle["features"][:]
    order = np.argsort([int(i.split("#")[1]) for i in ids])
    assert sorted(ids) == sorted(f"cplfw.bin#{i}" for i in range(2 * n_pairs))
    np.testing.assert_allclose(
        stored[order], raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-5
    )
    # and the store verifies on the same file
    result = run("verify", "--protocol", "bin", "--bin", bin_path, "--features", out)
    assert result.exit_code == 0, result.output
    assert "cplfw.bin holds 12 pairs" in result.stderr  # not the official 6,000


def test_extract_refuses_a_bin_with_protocol_or_list(tmp_path: Path) -> None:
    from facebench.extract.api import ExtractRequest, select_items

    bin_path = write(tmp_path / "lfw.bin", LAYOUTS["py2 bytes + list of bool"])
    with pytest.raises(FacebenchError, match=r"no --protocol with a \.bin source"):
        select_items(ExtractRequest(root=bin_path, output=tmp_path / "o.h5", protocol="lfw"))
    with pytest.raises(FacebenchError, match=r"give the \.bin file itself"):
        select_items(ExtractRequest(root=tmp_path, output=tmp_path / "o.h5", protocol="bin"))


def test_module_names_the_official_counts() -> None:
    assert insightface_bin.OFFICIAL_PAIRS["cfp_fp"] == 7000
    assert insightface_bin.OFFICIAL_PAIRS["agedb_30"] == 6000
