"""insightface validation sets: ``lfw.bin``, ``cfp_fp.bin``, ``cfp_ff.bin``, ``agedb_30.bin``,
``calfw.bin``, ``cplfw.bin`` (and any file of that layout).

Format (what insightface's ``load_bin`` reads with ``pickle.load(f, encoding='bytes')``):
a pickle, written by Python 2 with protocol 2, of the pair ``(bins, issame_list)``.
``bins`` is a list of the encoded images (JPEG, already aligned to 112 x 112), each a Python 2
``str`` (``bytes`` here) or a 1-D ``uint8`` NumPy array of the encoded bytes; images
``2 i`` and ``2 i + 1`` form pair ``i``. ``issame_list`` holds one flag per pair: a list of
``bool`` (or NumPy ``bool_``) or a 1-D NumPy ``bool`` array. Files re-saved by Python 3
(pickle protocols 2 to 5) are read too.

The folds are insightface's: ``KFold(n_splits=10, shuffle=False)`` over pair order, i.e. 10
contiguous blocks, the first ``n_pairs % 10`` of them one pair longer
(:func:`protocols.pairs.contiguous_folds`). An item key is ``<file name>#<image index>``
(``cfp_fp.bin#0`` .. ``cfp_fp.bin#13999``); ``facebench extract cfp_fp.bin ...`` stores
the images under these ids.

Reading never runs code from the file: the unpickler admits only the few NumPy
constructors that these layouts use (checked: a plain ``dtype`` of booleans, integers or
bytes, an array rebuilt from its bytes), and refuses every other global by name.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import pickletools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from facebench.errors import FacebenchError, InputFormatError
from protocols._types import PairsProtocol
from protocols.pairs import DEFAULT_FOLDS, contiguous_folds

__all__ = [
    "OFFICIAL_PAIRS",
    "BinFile",
    "BinFormatError",
    "item_key",
    "load",
    "parse_bin",
    "protocol_of",
    "read_bin",
]

#: Pairs in each insightface validation set, by file stem (the images are twice as many).
OFFICIAL_PAIRS: dict[str, int] = {
    "lfw": 6000,
    "cfp_fp": 7000,
    "cfp_ff": 7000,
    "agedb_30": 6000,
    "calfw": 6000,
    "cplfw": 6000,
    "vgg2_fp": 5000,
}

_REFUSAL = "a .bin holds only images and flags"


class BinFormatError(InputFormatError):
    """A file is not an insightface ``.bin`` validation set (or asks to run code)."""


# ----------------------------------------------------------------------------- unpickling


def _constructor(obj: Any, protocol: int) -> Callable[..., Any]:
    """The function NumPy pickles ``obj`` with: the real one, whether it lives in
    ``numpy.core`` (NumPy 1) or ``numpy._core`` (NumPy 2), without importing either by name."""
    reduced: Any = obj.__reduce_ex__(protocol)
    function: Callable[..., Any] = reduced[0]
    return function


_RECONSTRUCT = _constructor(np.zeros(1), 2)
_SCALAR = _constructor(np.bool_(True), 2)
_FROMBUFFER = _constructor(np.zeros(1), 5)
_DTYPE_KINDS = "biuS"  # bool, signed and unsigned integers, byte strings; never objects


class _NDArrayToken:
    """Stands for ``numpy.ndarray`` in a pickle: only :func:`_reconstruct` accepts it, so the
    file cannot call the class itself (an array of any shape)."""


def _text(value: object) -> object:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def _dtype(spec: object, align: object = False, copy: object = False) -> np.dtype[Any]:
    dtype = np.dtype(_text(spec))  # type: ignore[call-overload]
    if dtype.kind not in _DTYPE_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise pickle.UnpicklingError(
            f"expected a dtype of booleans, integers or bytes, but got {dtype!r}"
        )
    return dtype


def _checked_dtype(dtype: object) -> np.dtype[Any]:
    if not isinstance(dtype, np.dtype) or dtype.kind not in _DTYPE_KINDS:
        raise pickle.UnpicklingError(
            f"expected a dtype of booleans, integers or bytes, but got {dtype!r}"
        )
    return dtype


def _reconstruct(subtype: object, shape: object, dtype: object) -> Any:
    # NumPy pickles an array as _reconstruct(ndarray, (0,), b'b') and then sets its state
    # (shape, dtype, bytes), which checks that the bytes fill the shape.
    if subtype is not _NDArrayToken or shape != (0,):
        raise pickle.UnpicklingError(
            f"expected _reconstruct(numpy.ndarray, (0,), ...), but got ({subtype!r}, {shape!r})"
        )
    return _RECONSTRUCT(np.ndarray, (0,), dtype)


def _scalar(dtype: object, data: object = None) -> Any:
    return _SCALAR(_checked_dtype(dtype), data)


def _frombuffer(buffer: object, dtype: object, shape: object, order: object) -> Any:
    if not isinstance(buffer, bytes | bytearray | pickle.PickleBuffer):
        raise pickle.UnpicklingError(f"expected an array's bytes, but got {type(buffer).__name__}")
    return _FROMBUFFER(buffer, _checked_dtype(dtype), shape, order)


def _latin1(text: object, encoding: object = None) -> bytes:
    # Python 3 writes bytes under pickle protocol 2 as _codecs.encode(str, 'latin1').
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(
            f"expected _codecs.encode(str, 'latin1'), but got {encoding!r}"
        )
    return text.encode("latin-1")


def _empty_bytes(*args: object) -> bytes:
    # ... and empty bytes as bytes().
    if args:
        raise pickle.UnpicklingError(f"expected bytes() without arguments, but got {args!r:.60}")
    return b""


_NUMPY_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray")
_NUMERIC_MODULES = ("numpy.core.numeric", "numpy._core.numeric")

#: (module, name) -> what the unpickler hands out for it; nothing else is importable.
_ALLOWED: dict[tuple[str, str], Any] = {
    **{(module, "_reconstruct"): _reconstruct for module in _NUMPY_MODULES},
    **{(module, "scalar"): _scalar for module in _NUMPY_MODULES},
    **{(module, "_frombuffer"): _frombuffer for module in _NUMERIC_MODULES},
    ("numpy", "ndarray"): _NDArrayToken,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _latin1,
    ("__builtin__", "bytes"): _empty_bytes,
    ("builtins", "bytes"): _empty_bytes,
}


class _RefusedGlobal(Exception):
    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        self.module, self.name = module, name


class _BinUnpickler(pickle.Unpickler):
    """An unpickler that imports nothing but the entries of :data:`_ALLOWED`."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED.get((module, name))
        if allowed is None:
            raise _RefusedGlobal(module, name)
        return allowed

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("expected no persistent ids, which a .bin never holds")


_PUT_OPCODES = ("PUT", "BINPUT", "LONG_BINPUT")


def _check_memo(path: Path, raw: bytes) -> None:
    """Refuse memo indices that no pickler writes: the unpickler would size its memo table by
    them (a 4-byte index asks for tens of gigabytes). Nothing is built here."""
    for position, (opcode, argument, _) in enumerate(pickletools.genops(raw)):
        if opcode.name in _PUT_OPCODES and isinstance(argument, int) and argument > position:
            raise BinFormatError(
                f"{path}: Expected a pickle of images and flags, but opcode {position} stores"
                f" into memo slot {argument}, which no pickler writes; the file is damaged"
                " or crafted"
            )


def _unpickle(path: Path, raw: bytes) -> Any:
    try:
        _check_memo(path, raw)
        return _BinUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except BinFormatError:
        raise
    except _RefusedGlobal as err:
        raise BinFormatError(
            f"{path}: Expected an insightface .bin (a pickle of images and flags), but the file"
            f" wants to import {err.module}.{err.name}; refusing: {_REFUSAL}. Nothing from it"
            " was run; do not load this file with pickle elsewhere either"
        ) from None
    except RecursionError:
        raise BinFormatError(f"{path}: the pickle nests too deeply; {_REFUSAL}") from None
    except Exception as err:  # only our own constructors run: any failure is a bad file
        detail = " ".join(str(err).split())[:200] or type(err).__name__
        raise BinFormatError(
            f"{path}: Expected an insightface .bin (a pickle of (images, is-same flags)), but"
            f" it does not unpickle: {detail}; is this a complete .bin file?"
        ) from None


# ----------------------------------------------------------------------------- the layout


@dataclass(frozen=True)
class BinFile:
    """The content of an insightface ``.bin``.

    Attributes
    ----------
    path : Path
        The file read.
    sha256 : str
        SHA-256 of its bytes.
    images : tuple of bytes, length 2 * n_pairs
        The encoded images in file order; pair ``i`` is images ``2 i`` and ``2 i + 1``.
    is_same : ndarray of bool, shape (n_pairs,)
        True for a genuine pair.
    layout : str
        How the file stores them, e.g. ``"images: bytes; flags: list of bool"``.
    """

    path: Path
    sha256: str
    images: tuple[bytes, ...]
    is_same: npt.NDArray[np.bool_]
    layout: str

    @property
    def n_pairs(self) -> int:
        """Number of pairs."""
        return int(self.is_same.size)


def item_key(path: str | Path, index: int) -> str:
    """The store id of image ``index`` (from 0) of a ``.bin``: ``<file name>#<index>``."""
    return f"{Path(path).name}#{index}"


def _kind(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"a {value.ndim}-D numpy array of {value.dtype}"
    return type(value).__name__


def _images(path: Path, bins: object) -> tuple[tuple[bytes, ...], str]:
    if isinstance(bins, np.ndarray) and bins.ndim == 2 and bins.dtype == np.uint8:
        raise BinFormatError(
            f"{path}: expected a list of encoded images, but got a 2-D uint8 array"
            f" {bins.shape}; a .bin holds each image's JPEG bytes"
        )
    if not isinstance(bins, list | tuple):
        raise BinFormatError(
            f"{path}: expected the first element to be the list of encoded images, but got"
            f" {_kind(bins)}"
        )
    images: list[bytes] = []
    kinds: set[str] = set()
    for index, image in enumerate(bins):
        if isinstance(image, bytes):  # numpy.bytes_ too (a subclass)
            data, kind = bytes(image), "bytes"
        elif isinstance(image, np.ndarray) and image.ndim == 1 and image.dtype == np.uint8:
            data, kind = image.tobytes(), "uint8 arrays"
        else:
            raise BinFormatError(
                f"{path}: expected image {index} (item {item_key(path, index)}) as encoded bytes"
                f" or a 1-D uint8 array, but got {_kind(image)}"
            )
        if not data:
            raise BinFormatError(
                f"{path}: expected image {index} (item {item_key(path, index)}) to hold an"
                " encoded image, but it is empty (0 bytes)"
            )
        images.append(data)
        kinds.add(kind)
    return tuple(images), " and ".join(sorted(kinds)) or "none"


def _flags(path: Path, flags: object) -> tuple[npt.NDArray[np.bool_], str]:
    if isinstance(flags, np.ndarray):
        if flags.ndim != 1 or flags.dtype != np.bool_:
            raise BinFormatError(
                f"{path}: expected the is-same flags as a 1-D bool array, but got {_kind(flags)}"
            )
        return flags.astype(bool, copy=True), "numpy bool array"
    if not isinstance(flags, list | tuple):
        raise BinFormatError(
            f"{path}: expected the second element to be the is-same flags (a list of bool or"
            f" a bool array), but got {_kind(flags)}"
        )
    for index, flag in enumerate(flags):
        if not isinstance(flag, bool | np.bool_):
            raise BinFormatError(
                f"{path}: expected the is-same flag of pair {index} as a bool, but got"
                f" {_kind(flag)} {flag!r:.40}"
            )
    return np.asarray(flags, dtype=bool), "list of bool"


def read_bin(path: str | Path) -> BinFile:
    """Read an insightface ``.bin`` without running any code from it (module docstring).

    Parameters
    ----------
    path : str or Path
        The ``.bin`` file.

    Returns
    -------
    BinFile
        The encoded images (not decoded here) and the is-same flags.

    Raises
    ------
    BinFormatError
        A missing or unreadable file, a pickle that asks for any global outside the
        admitted NumPy constructors (named in the message; nothing is run), a pickle that
        is not ``(images, flags)``, an image that is not bytes or a 1-D uint8 array, a flag
        that is not a bool, or image and flag counts that do not match (2 images per flag).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise BinFormatError(f"{path}: no such .bin file") from None
    except IsADirectoryError:
        raise BinFormatError(
            f"{path}: expected an insightface .bin file, but got a folder"
        ) from None
    except OSError as err:
        raise BinFormatError(f"{path}: cannot read the .bin file ({err.strerror})") from None
    sha256 = hashlib.sha256(raw).hexdigest()
    content = _unpickle(path, raw)
    del raw
    if not isinstance(content, tuple | list) or len(content) != 2:
        size = f" of length {len(content)}" if isinstance(content, tuple | list) else ""
        raise BinFormatError(
            f"{path}: expected a pickled pair (images, is-same flags), but got"
            f" {_kind(content)}{size}"
        )
    images, image_kind = _images(path, content[0])
    is_same, flag_kind = _flags(path, content[1])
    if len(images) != 2 * is_same.size:
        raise BinFormatError(
            f"{path}: expected 2 images per is-same flag, but got {len(images)} images and"
            f" {is_same.size} flags ({2 * is_same.size} images expected); the file is"
            " truncated or not a verification .bin"
        )
    if is_same.size == 0:
        raise BinFormatError(f"{path}: expected pairs, but the file holds none")
    return BinFile(
        path=path,
        sha256=sha256,
        images=images,
        is_same=is_same,
        layout=f"images: {image_kind}; flags: {flag_kind}",
    )


def protocol_of(content: BinFile, name: str = "bin") -> PairsProtocol:
    """The pairs and folds of a read ``.bin`` (items ``<file name>#<index>``)."""
    path = content.path
    n_pairs = content.n_pairs
    if n_pairs < DEFAULT_FOLDS:
        raise BinFormatError(
            f"{path}: expected at least {DEFAULT_FOLDS} pairs for insightface's"
            f" {DEFAULT_FOLDS} folds, but the file holds {n_pairs}"
        )
    left = tuple(item_key(path, 2 * i) for i in range(n_pairs))
    right = tuple(item_key(path, 2 * i + 1) for i in range(n_pairs))
    warnings: list[str] = []
    official = OFFICIAL_PAIRS.get(path.stem)
    if official is not None and official != n_pairs:
        warnings.append(
            f"{path.name} holds {n_pairs} pairs, but insightface's {path.name} has {official}:"
            " numbers are not comparable with published ones"
        )
    counts = {
        "n_images": 2 * n_pairs,
        "n_pairs": n_pairs,
        "n_genuine": int(content.is_same.sum()),
        "n_items": 2 * n_pairs,
        "n_folds": DEFAULT_FOLDS,
        "folds_from_order": 1,
    }
    if official is not None:
        counts["official_n_pairs"] = official
    return PairsProtocol(
        name=name,
        source=str(path),
        sha256=content.sha256,
        left=left,
        right=right,
        is_same=content.is_same.copy(),
        folds=contiguous_folds(n_pairs, DEFAULT_FOLDS),
        counts=counts,
        warnings=tuple(warnings),
    )


def parse_bin(path: str | Path, name: str = "bin") -> PairsProtocol:
    """Parse an insightface ``.bin`` into pairs with insightface's 10 contiguous folds.

    Returns
    -------
    PairsProtocol
        Pair ``i`` compares items ``<file name>#<2 i>`` and ``<file name>#<2 i + 1>``;
        ``folds`` are :func:`protocols.pairs.contiguous_folds` of the pair count.

    Raises
    ------
    BinFormatError
        See :func:`read_bin`; also fewer than 10 pairs.
    """
    return protocol_of(read_bin(path), name=name)


def load(path: str | Path | None = None) -> PairsProtocol:
    """The ``bin`` protocol: the user's ``.bin`` file (``--bin FILE``), required."""
    if path is None:
        raise FacebenchError(
            "Expected --bin FILE with --protocol bin (an insightface validation set such as"
            " cfp_fp.bin), but got none"
        )
    return parse_bin(path, name="bin")
