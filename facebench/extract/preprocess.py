"""Decode an image and turn it into a model input, as a named, versioned configuration.

Pure numpy and Pillow: this runs inside DataLoader worker processes. A
:class:`Preprocessing` is recorded in the feature store (``preprocessing`` attribute) so a
store says how its images were prepared; :data:`PRESETS` names the common ones.

Pixel coordinates (landmarks, boxes) are those of the decoded image after its EXIF
orientation is applied, which is what a detector run on the displayed image sees.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facebench.errors import FacebenchError
from facebench.extract.align import TEMPLATES, AlignmentError, align

if TYPE_CHECKING:
    from facebench.extract.sources import Item

__all__ = [
    "PREPROCESSING_VERSION",
    "PRESETS",
    "ImageError",
    "Preprocessing",
    "PreprocessingError",
    "decode_image",
    "flip_horizontal",
    "load_item",
    "preprocess",
]

PREPROCESSING_VERSION: int = 1
CROPS: tuple[str, ...] = ("none", "center")


class PreprocessingError(FacebenchError):
    """A preprocessing configuration is invalid or does not fit the inputs it is given."""


class ImageError(FacebenchError):
    """One image cannot be used: it does not decode, or its box or landmarks do not fit.

    The message is ``"<path>: <what is wrong>"``; ``path`` and ``reason`` hold the parts
    (``path`` is None when the error arose without a file, in :func:`preprocess`).
    """

    def __init__(self, message: str, path: str | None = None, reason: str | None = None):
        super().__init__(message)
        self.path = path
        self.reason = message if reason is None else reason

    @classmethod
    def at(cls, path: str | os.PathLike[str], reason: str) -> ImageError:
        """The error ``"<path>: <reason>"``."""
        return cls(f"{path}: {reason}", path=str(path), reason=reason)


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes a model input; see :func:`preprocess` for the order of steps.

    Attributes
    ----------
    name : str
        A preset's name, or ``"custom"``; ``"<preset>+custom"`` after overrides.
    version : int
        :data:`PREPROCESSING_VERSION`; a change of the steps' meaning bumps it.
    image_size : tuple of int or None
        ``(H, W)`` of the model input; None keeps the size after cropping/alignment.
    crop : str
        ``"none"``, or ``"center"``: crop the largest centred region with the aspect ratio
        of ``image_size`` before resizing (no effect without ``image_size``).
    bgr : bool
        Give the model BGR instead of RGB channel order.
    mean, std : tuple of float
        Per channel in the model's channel order, on pixel values scaled to [0, 1]: the
        input is ``(pixel / 255 - mean) / std``.
    box_margin : float
        Relative margin added on each side of a face box (0.1: 10 % of the box's width on
        the left and on the right, 10 % of its height above and below).
    align_template : str or None
        A key of :data:`facebench.extract.align.TEMPLATES`, used when landmarks are given.
    """

    name: str = "custom"
    version: int = PREPROCESSING_VERSION
    image_size: tuple[int, int] | None = None
    crop: str = "none"
    bgr: bool = False
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    box_margin: float = 0.0
    align_template: str | None = None

    def __post_init__(self) -> None:
        problems = _config_problems(self)
        if problems:
            raise PreprocessingError(f"Invalid preprocessing {self.name!r}: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """The configuration as a JSON-ready dict (tuples become lists)."""
        return {
            "name": self.name,
            "version": self.version,
            "image_size": None if self.image_size is None else list(self.image_size),
            "crop": self.crop,
            "bgr": self.bgr,
            "mean": list(self.mean),
            "std": list(self.std),
            "box_margin": self.box_margin,
            "align_template": self.align_template,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preprocessing:
        """Rebuild a configuration from :meth:`to_dict`'s output (e.g. read from a store).

        Raises
        ------
        PreprocessingError
            Unknown keys, another version, or invalid values.
        """
        if not isinstance(data, Mapping):
            raise PreprocessingError(
                f"Expected a preprocessing object, but got {type(data).__name__}"
            )
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PreprocessingError(
                f"Expected preprocessing keys among {sorted(known)}, but got unknown {unknown}; "
                "the store was written by another facebench version"
            )
        version = data.get("version", PREPROCESSING_VERSION)
        if version != PREPROCESSING_VERSION:
            raise PreprocessingError(
                f"Expected preprocessing version {PREPROCESSING_VERSION}, but got {version!r}; "
                "the store was written by another facebench version"
            )
        values = dict(data)
        for key in ("image_size", "mean", "std"):
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        return cls(**values)

    def with_overrides(self, **overrides: Any) -> Preprocessing:
        """A copy with ``overrides`` applied; its name becomes ``"<name>+custom"`` if
        anything changed (unless ``name`` is among the overrides)."""
        if "name" in overrides:
            return dataclasses.replace(self, **overrides)
        changed = dataclasses.replace(self, **overrides)
        if changed == self:
            return self
        name = self.name if self.name.endswith("+custom") else f"{self.name}+custom"
        return dataclasses.replace(changed, name=name)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _config_problems(config: Preprocessing) -> list[str]:
    """Each invalid field of ``config``, as an "expected ..., but got ..." phrase."""
    problems: list[str] = []
    if not isinstance(config.name, str) or not config.name:
        problems.append(f"expected a non-empty name, but got {config.name!r}")
    if config.version != PREPROCESSING_VERSION or isinstance(config.version, bool):
        problems.append(f"expected version {PREPROCESSING_VERSION}, but got {config.version!r}")
    size = config.image_size
    if size is not None and not (
        isinstance(size, tuple)
        and len(size) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in size)
    ):
        problems.append(f"expected image_size (H, W) of positive ints or None, but got {size!r}")
    if config.crop not in CROPS:
        problems.append(f"expected crop in {list(CROPS)}, but got {config.crop!r}")
    if not isinstance(config.bgr, bool):
        problems.append(f"expected bgr true or false, but got {config.bgr!r}")
    for key in ("mean", "std"):
        value = getattr(config, key)
        if not (
            isinstance(value, tuple)
            and len(value) == 3
            and all(_is_number(v) and math.isfinite(v) for v in value)
        ):
            problems.append(f"expected {key} as 3 finite numbers, but got {value!r}")
        elif key == "std" and min(value) <= 0:
            problems.append(f"expected std > 0 in every channel, but got {value!r}")
    margin = config.box_margin
    if not (_is_number(margin) and math.isfinite(margin) and margin >= 0):
        problems.append(f"expected box_margin >= 0, but got {margin!r}")
    if config.align_template is not None and config.align_template not in TEMPLATES:
        problems.append(
            f"expected align_template in {sorted(TEMPLATES)} or None, "
            f"but got {config.align_template!r}"
        )
    return problems


_FACE_RESNET = 127.5 / 255.0, 128.0 / 255.0

#: Named configurations, the CLI's ``--preprocessing`` choices.
#:
#: ``arcface112``: insightface ArcFace models (``arcface_torch``, the model zoo): 5-point
#:   similarity alignment to ``arcface_dst`` at 112x112, RGB, ``(x - 127.5) / 127.5``.
#: ``face-resnet-112x96``: the center-loss face ResNet (Wen et al., ECCV 2016) and
#:   SphereFace (Liu et al., CVPR 2017): the ArcFace template shifted 8 px left on a
#:   112x96 crop, RGB, ``(x - 127.5) / 128``.
#: ``facenet-160``: facenet / facenet-pytorch Inception-ResNet-v1 on 160x160 crops
#:   around a detector box, RGB, ``(x - 127.5) / 128`` (``fixed_image_standardization``).
#:   facenet adds an absolute margin (32 px at 160, ``align_dataset_mtcnn.py``), which has
#:   no relative equivalent here; set ``box_margin`` to match your detector's boxes.
#: ``small32``: facebench's demo CNN (``facebench.models.small_cnn``, architecture
#:   ``small-cnn``): the whole image resized to 32x32, RGB, ``(x - 127.5) / 127.5``.
#: ``none``: the decoded image as it is, ``(x - 127.5) / 127.5``.
PRESETS: dict[str, Preprocessing] = {
    "arcface112": Preprocessing(
        name="arcface112", image_size=(112, 112), align_template="arcface112"
    ),
    "face-resnet-112x96": Preprocessing(
        name="face-resnet-112x96",
        image_size=(112, 96),
        mean=(_FACE_RESNET[0],) * 3,
        std=(_FACE_RESNET[1],) * 3,
        align_template="face-resnet-112x96",
    ),
    "facenet-160": Preprocessing(
        name="facenet-160",
        image_size=(160, 160),
        mean=(_FACE_RESNET[0],) * 3,
        std=(_FACE_RESNET[1],) * 3,
    ),
    "small32": Preprocessing(name="small32", image_size=(32, 32)),
    "small16": Preprocessing(name="small16", image_size=(16, 16)),
    "none": Preprocessing(name="none"),
}


# --- decoding ---------------------------------------------------------------------------

_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")
#: File signatures, to tell a corrupt image from a file that is not an image at all.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


class _PixelValuesError(Exception):
    """Pixel values outside the range that :func:`decode_image` documents."""


def _image_size(path: Path) -> str:
    """``"W x H"`` read from the header alone (nothing decoded), or ``""`` if unreadable."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # the header only: no pixel is decoded
    try:
        with Image.open(path) as opened:
            return f"{opened.size[0]} x {opened.size[1]}"
    except Exception:  # the size is a detail of the message; the error stands without it
        return ""
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _too_large(path: Path, err: Exception, limit: int) -> ImageError:
    found = _BOMB_PIXELS.search(str(err))
    pixels = f"{int(found.group(1))} pixels" if found else str(err)
    size = _image_size(path)
    return ImageError.at(
        path,
        f"image too large ({pixels}; the limit is {limit} pixels, Pillow's guard against"
        f" decompression bombs{'; the image is ' + size if size else ''}); if you trust"
        " this image, raise the limit with --max-image-pixels",
    )


def _unidentified(path: Path) -> str:
    """Why Pillow could not identify ``path``: a corrupt header, or not an image."""
    try:
        with open(path, "rb") as handle:
            prefix = handle.read(16)
    except OSError:
        prefix = b""
    for signature, name in _SIGNATURES:
        if prefix.startswith(signature):
            return (
                f"cannot decode {name} image (it starts with the {name} signature, but its "
                "header is corrupt)"
            )
    if prefix[:4] == b"RIFF" and prefix[8:12] == b"WEBP":
        return "cannot decode WEBP image (its header is corrupt)"
    return "not an image (no known image format)"


def _composite_on_black(rgba: np.ndarray) -> np.ndarray:
    """``round(rgb * alpha / 255)``, the image over a black background."""
    rgb = rgba[:, :, :3].astype(np.uint32)
    alpha = rgba[:, :, 3:].astype(np.uint32)
    return ((rgb * alpha + 127) // 255).astype(np.uint8)


def _to_rgb(image: Image.Image) -> np.ndarray:
    """An open, loaded Pillow image -> (H, W, 3) uint8 RGB (see :func:`decode_image`)."""
    mode = image.mode
    if mode == "RGB":
        return np.array(image, dtype=np.uint8)
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in image.info):
        return _composite_on_black(np.asarray(image.convert("RGBA")))
    if mode in _SIXTEEN_BIT or mode in ("I", "F"):
        values = np.asarray(image)
        if mode == "F":
            low, high, scale = 0.0, 1.0, 255.0
        else:
            low, high, scale = 0, 65535, 255.0 / 65535.0
        if values.size and not (
            np.isfinite(values).all() and values.min() >= low and values.max() <= high
        ):
            raise _PixelValuesError(
                f"expected {mode} pixel values in [{low}, {high}], but got "
                f"{values.min()}..{values.max()}; convert the image to 8-bit"
            )
        gray = np.rint(values.astype(np.float64) * scale).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    return np.array(image.convert("RGB"), dtype=np.uint8)


def decode_image(path: str | os.PathLike[str], max_pixels: int | None = None) -> np.ndarray:
    """Decode an image file to RGB, upright.

    The first frame of multi-frame files is used. EXIF orientation is applied
    (``ImageOps.exif_transpose``). Modes: ``RGB`` as is; ``L``, ``1`` (bilevel: 0 or 255),
    ``P`` without transparency, ``CMYK`` (Pillow's conversion, no ICC profile), ``YCbCr``
    and others through Pillow's ``convert("RGB")``; images with alpha (``RGBA``, ``LA``,
    ``PA``, ``P`` with a transparent colour) are composited on black,
    ``round(rgb * alpha / 255)``, so a transparent pixel is black whatever colour it hides;
    16-bit grey (``I;16*``, and ``I`` with values in 0..65535) is scaled by
    ``round(v * 255 / 65535)``, the full 16-bit range to the full 8-bit range (Pillow's own
    ``convert("L")`` would clip at 255); float ``F`` images must hold values in [0, 1] and
    are scaled by 255. Other values are an error, never guessed. 16-bit colour PNGs are
    reduced to 8 bits by Pillow's decoder, which keeps the high byte (``v >> 8``, at most one
    level below the grey rule).

    Truncated files fail (``LOAD_TRUNCATED_IMAGES`` is never set).

    Parameters
    ----------
    path : str or PathLike
    max_pixels : int, optional
        The largest image (width x height) decoded; a larger one is refused from its header,
        before any pixel is decoded. Default: Pillow's ``MAX_IMAGE_PIXELS`` (89,478,485,
        about 9,459 x 9,459), the ``--max-image-pixels`` of ``facebench extract``.

    Returns
    -------
    numpy.ndarray, shape (H, W, 3), uint8, RGB

    Raises
    ------
    ImageError
        ``"<path>: <what is wrong>"``: a missing or empty file, not an image, a file that
        does not decode, an image of more than ``max_pixels`` pixels (Pillow's
        decompression-bomb guard, which is treated as an error already at its warning
        level; the message gives the size and names ``--max-image-pixels``), or
        unsupported pixel values. No Pillow exception escapes.
    """
    path = Path(path)
    try:
        n_bytes = path.stat().st_size
    except FileNotFoundError:
        raise ImageError.at(path, "no such file") from None
    except OSError as err:
        raise ImageError.at(path, f"cannot read the file ({err.strerror})") from None
    if not path.is_file():
        raise ImageError.at(path, "not a regular file")
    if n_bytes == 0:
        raise ImageError.at(path, "empty file (0 bytes)")
    if max_pixels is not None and (
        not isinstance(max_pixels, int) or isinstance(max_pixels, bool) or max_pixels < 1
    ):
        raise PreprocessingError(
            f"Expected --max-image-pixels as a positive integer, but got {max_pixels!r}"
        )
    limit = Image.MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    image_format = "image"
    saved = Image.MAX_IMAGE_PIXELS
    try:
        # Pillow reads its limit from this module attribute at open and load time; the
        # extraction decodes in one thread per process, so setting it for the call is safe.
        Image.MAX_IMAGE_PIXELS = limit
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                image_format = f"{opened.format} image" if opened.format else "image"
                opened.load()
                upright = ImageOps.exif_transpose(opened)
                return _to_rgb(upright)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as err:
        raise _too_large(path, err, limit or 0) from None
    except _PixelValuesError as err:
        raise ImageError.at(path, str(err)) from None
    except UnidentifiedImageError:
        raise ImageError.at(path, _unidentified(path)) from None
    except OSError as err:
        if err.errno is not None:  # a file-system error, not a decoding one
            reason = f"cannot read the file ({err.strerror})"
        else:
            reason = f"cannot decode {image_format} ({err})"
        raise ImageError.at(path, reason) from None
    except Exception as err:  # SyntaxError, ValueError, struct.error, zlib.error, ... of Pillow
        detail = str(err) or type(err).__name__
        raise ImageError.at(path, f"cannot decode {image_format} ({detail})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = saved


# --- transforming -----------------------------------------------------------------------


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise PreprocessingError(f"Expected an (H, W, 3) image, but got shape {shape}")
    if image.dtype != np.uint8 or image.shape[0] < 1 or image.shape[1] < 1:
        raise PreprocessingError(
            f"Expected a non-empty uint8 image, but got {image.dtype} of shape {image.shape}"
        )


def _crop_box(
    image: np.ndarray, box: tuple[float, float, float, float], margin: float
) -> np.ndarray:
    """Rows ``round(y - m h) .. round(y + h + m h) - 1`` and the same for columns."""
    values = np.asarray(box, dtype=np.float64)
    if values.shape != (4,) or not np.isfinite(values).all() or min(values[2:]) <= 0:
        raise ImageError(
            f"Expected a face box (x, y, width, height) with finite values and width, height "
            f"> 0, but got {tuple(box)}"
        )
    x, y, w, h = (float(v) for v in values)
    rows, cols = image.shape[:2]
    if x >= cols or y >= rows or x + w <= 0 or y + h <= 0:
        raise ImageError(
            f"Expected a face box inside the {cols}x{rows} (WxH) image, but got "
            f"x={x:g}, y={y:g}, width={w:g}, height={h:g}; are the boxes of another image size?"
        )
    top = math.floor(y - margin * h + 0.5)
    bottom = max(top + 1, math.floor(y + h + margin * h + 0.5))
    left = math.floor(x - margin * w + 0.5)
    right = max(left + 1, math.floor(x + w + margin * w + 0.5))
    out = np.zeros((bottom - top, right - left, 3), dtype=np.uint8)
    src_top, src_bottom = max(top, 0), min(bottom, rows)
    src_left, src_right = max(left, 0), min(right, cols)
    if src_top < src_bottom and src_left < src_right:
        out[src_top - top : src_bottom - top, src_left - left : src_right - left] = image[
            src_top:src_bottom, src_left:src_right
        ]
    return out


def _crop_center(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    rows, cols = image.shape[:2]
    target_rows, target_cols = size
    if cols * target_rows > rows * target_cols:  # too wide
        keep = max(1, round(rows * target_cols / target_rows))
        left = (cols - keep) // 2
        return image[:, left : left + keep]
    keep = max(1, round(cols * target_rows / target_cols))
    top = (rows - keep) // 2
    return image[top : top + keep]


def preprocess(
    image: np.ndarray,
    config: Preprocessing,
    *,
    box: tuple[float, float, float, float] | None = None,
    landmarks: tuple[float, ...] | np.ndarray | None = None,
) -> np.ndarray:
    """Turn a decoded image into a model input.

    Steps, in order:

    1. ``landmarks`` given: similarity warp to ``config.align_template``
       (:func:`facebench.extract.align.align`), giving exactly the template's size; the box,
       if any, is then not used.
    2. Otherwise, ``box`` given: crop the box ``(x, y, width, height)`` (pixels, top-left
       corner) enlarged by ``box_margin`` on each side, to rows
       ``round(y - m h) .. round(y + h + m h) - 1`` and likewise for columns. Parts outside
       the image are zeros (black), so the face keeps its place and aspect in the crop.
    3. ``crop == "center"`` and ``image_size`` set: crop the centred region of its aspect.
    4. Resize to ``image_size`` with Pillow's BILINEAR filter (anti-aliased when
       shrinking), only when the size differs: an image of the right size is untouched.
    5. ``pixel / 255``, RGB -> BGR if ``bgr``, then ``(x - mean) / std`` per channel.

    Parameters
    ----------
    image : numpy.ndarray, shape (H, W, 3), uint8, RGB
    config : Preprocessing
    box : tuple of 4 float, optional
    landmarks : 10 floats ``x1 y1 ... x5 y5`` or (5, 2), optional

    Returns
    -------
    numpy.ndarray, shape (3, H', W'), float32, C-contiguous
        ``(H', W') = config.image_size``, or the size after steps 1-3 when it is None.

    Raises
    ------
    PreprocessingError
        A bad image array, or landmarks with a configuration that has no
        ``align_template`` (landmarks are never ignored silently: choose a template or do
        not pass landmarks).
    ImageError
        Box or landmarks that cannot be used for this image (without a path: see
        :func:`load_item`).
    """
    _check_image(image)
    if landmarks is not None:
        if config.align_template is None:
            raise PreprocessingError(
                f"Expected a preprocessing with an alignment template when landmarks are "
                f"given, but {config.name!r} has align_template None; choose one of "
                f"{sorted(TEMPLATES)} or do not pass landmarks"
            )
        try:
            image = align(image, landmarks, config.align_template)
        except AlignmentError as err:
            raise ImageError(f"cannot align the face: {err}") from None
    elif box is not None:
        image = _crop_box(image, box, config.box_margin)
    if config.image_size is not None:
        if config.crop == "center":
            image = _crop_center(image, config.image_size)
        height, width = config.image_size
        if image.shape[:2] != (height, width):
            resized = Image.fromarray(image).resize(
                (width, height), resample=Image.Resampling.BILINEAR
            )
            image = np.asarray(resized)
    pixels = image.astype(np.float32) / np.float32(255.0)
    if config.bgr:
        pixels = pixels[:, :, ::-1]
    mean = np.asarray(config.mean, dtype=np.float32)
    std = np.asarray(config.std, dtype=np.float32)
    normalized = (pixels - mean) / std
    return np.ascontiguousarray(normalized.transpose(2, 0, 1), dtype=np.float32)


def flip_horizontal(tensor: np.ndarray) -> np.ndarray:
    """The mirror image of a (3, H, W) model input (a C-contiguous copy)."""
    if tensor.ndim != 3 or tensor.shape[0] != 3:
        raise PreprocessingError(f"Expected a (3, H, W) array, but got shape {tensor.shape}")
    return np.ascontiguousarray(tensor[:, :, ::-1])


def load_item(item: Item, config: Preprocessing, max_pixels: int | None = None) -> np.ndarray:
    """Decode ``item.path`` and preprocess it with the item's box and landmarks.

    ``max_pixels`` is :func:`decode_image`'s limit on the image's size (default Pillow's).

    Returns
    -------
    numpy.ndarray, shape (3, H, W), float32 (see :func:`preprocess`)

    Raises
    ------
    ImageError
        ``"<path>: ..."`` when the image does not decode or its box/landmarks do not fit.
    PreprocessingError
        When the configuration does not fit the items (landmarks without a template).
    """
    image = decode_image(item.path, max_pixels)
    try:
        return preprocess(image, config, box=item.box, landmarks=item.landmarks)
    except ImageError as err:
        raise ImageError.at(item.path, err.reason) from None
