"""What ``facebench train DATA`` reads: an image tree of one folder per class, or a built-in set.

``DATA`` is, in this order:

- a built-in name (:data:`BUILTIN`):

  ``digits``
      scikit-learn's bundled copy of the UCI handwritten digits (1,797 images of 8x8 grey
      levels 0..16, classes ``"0"`` .. ``"9"``; offline). Grey levels become uint8 RGB,
      ``round(v * 255 / 16)`` in every channel.
  ``fashion-mnist``
      Zalando's Fashion-MNIST read from its idx files (60,000 training and 10,000 test
      images of 28x28 grey levels, 10 classes, :data:`FASHION_MNIST_CLASSES`), from
      ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist`` package) or
      the folder given as ``data_dir``. The idx format is parsed here
      (:func:`read_idx`), plain or gzip-compressed.

  A folder of the same name as a built-in set is read when written as a path
  (``./digits``).
- an existing folder laid out as CASIA-WebFace is, ``ROOT/<class>/<images>``: the classes
  are the sub-folders of ROOT, sorted by name (code-point order), and a class's images are
  the image files (:data:`facebench.extract.sources.IMAGE_SUFFIXES`) anywhere below its
  folder, sorted by path. Every class needs at least :data:`MIN_IMAGES_PER_CLASS` images:
  an empty class folder or one holding a single image is an error naming the folder (a
  class of one image is almost always a mistake in the tree, and it gives the classifier
  no variation of the identity to learn). Image files directly in ROOT have no class and
  are an error; other files are not read.

Held-out classes (``holdout``) are kept out of training, so that a verification benchmark
can be built from identities the model never saw. A class is named by its name or, when no
class has that name, by its index in the sorted class list (``"5"`` is the digit 5 either
way).

Training and extraction share the preprocessing code: :class:`ImageDataset` calls
:func:`facebench.extract.preprocess.preprocess` with the same :class:`Preprocessing` that
``facebench extract`` records (an 8x8 digit becomes a 32x32 input by bilinear resizing
under ``small32``). The only augmentation is a random horizontal flip, on by default for
image trees (faces are roughly mirror-symmetric) and off for the built-in sets (a mirrored
digit is not the same digit; a mirrored shoe points the other way).
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from facebench.errors import FacebenchError
from facebench.extract.preprocess import (
    Preprocessing,
    decode_image,
    flip_horizontal,
    preprocess,
)
from facebench.extract.sources import IMAGE_SUFFIXES, SourceError, folder_items
from facebench.fileio import atomic_path

__all__ = [
    "BUILTIN",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DIR",
    "MIN_IMAGES_PER_CLASS",
    "DatasetError",
    "ImageDataset",
    "ImageSet",
    "TrainingData",
    "export_images",
    "load_images",
    "load_training_data",
    "parse_holdout",
    "read_idx",
    "resolve_classes",
]

MIN_IMAGES_PER_CLASS = 2
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
#: Fashion-MNIST's labels 0..9, spelled as folder names ("T-shirt/top" has a slash).
FASHION_MNIST_CLASSES: tuple[str, ...] = (
    "tshirt-top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle-boot",
)
FASHION_MNIST_INSTALL = "apt-get install dataset-fashion-mnist"
_SHOWN = 20
#: idx element types: the third byte of the magic number -> big-endian numpy dtype.
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DatasetError(FacebenchError):
    """A training data set cannot be used (unknown name, bad tree, bad idx file, bad holdout)."""


def _shown(names: Sequence[str]) -> str:
    more = f", ... ({len(names) - _SHOWN} more)" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


@dataclass(frozen=True, eq=False)
class ImageSet:
    """Labelled images, held in memory (built-in sets) or as files (image trees).

    Attributes
    ----------
    name : str
        ``"digits"``, ``"fashion-mnist"`` or the tree's root folder.
    classes : tuple of str
        Class names; label ``k`` is ``classes[k]``.
    labels : numpy.ndarray, shape (N,), int64
        The label of each image, in ``range(len(classes))``.
    pixels : numpy.ndarray or None
        (N, H, W) uint8 grey or (N, H, W, 3) uint8 RGB images; None for files.
    paths : tuple of Path or None
        The image files; None for images in memory.
    flip_default : bool
        Whether random horizontal flips suit this data (image trees of faces: yes).
    """

    name: str
    classes: tuple[str, ...]
    labels: np.ndarray
    pixels: np.ndarray | None = None
    paths: tuple[Path, ...] | None = None
    flip_default: bool = False

    def __post_init__(self) -> None:
        if (self.pixels is None) == (self.paths is None):
            raise ValueError("Expected exactly one of `pixels` and `paths`")
        n_images = len(self.pixels) if self.pixels is not None else len(self.paths or ())
        labels = np.asarray(self.labels)
        if labels.shape != (n_images,) or (
            n_images and not 0 <= labels.min() <= labels.max() < len(self.classes)
        ):
            raise ValueError(
                f"Expected {n_images} labels in range({len(self.classes)}), but got "
                f"shape {labels.shape}"
            )

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, index: int) -> np.ndarray:
        """Image ``index`` as (H, W, 3) uint8 RGB (decoded from its file for image trees)."""
        if self.paths is not None:
            return decode_image(self.paths[index])
        assert self.pixels is not None  # __post_init__: exactly one of the two is set
        image = self.pixels[index]
        return np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image

    def counts(self) -> np.ndarray:
        """(C,) int64: the number of images of each class."""
        return np.bincount(self.labels, minlength=len(self.classes)).astype(np.int64)

    def select_classes(self, indices: Sequence[int]) -> ImageSet:
        """The images of the classes ``indices`` (kept in this set's order), relabelled
        ``0 .. len(indices) - 1`` in that order."""
        kept = sorted(set(indices))
        relabel = np.full(len(self.classes), -1, dtype=np.int64)
        relabel[kept] = np.arange(len(kept))
        rows = np.flatnonzero(relabel[self.labels] >= 0)
        return self._subset(rows, tuple(self.classes[k] for k in kept), relabel[self.labels[rows]])

    def first_per_class(self, n_per_class: int) -> ImageSet:
        """The first ``n_per_class`` images of each class (all of a smaller class)."""
        if n_per_class < 1:
            raise DatasetError(f"Expected at least 1 image per class, but got {n_per_class}")
        rank = np.zeros(len(self), dtype=np.int64)
        seen = np.zeros(len(self.classes), dtype=np.int64)
        for row, label in enumerate(self.labels):
            rank[row] = seen[label]
            seen[label] += 1
        rows = np.flatnonzero(rank < n_per_class)
        return self._subset(rows, self.classes, self.labels[rows])

    def _subset(self, rows: np.ndarray, classes: tuple[str, ...], labels: np.ndarray) -> ImageSet:
        return ImageSet(
            name=self.name,
            classes=classes,
            labels=np.ascontiguousarray(labels, dtype=np.int64),
            pixels=None if self.pixels is None else self.pixels[rows],
            paths=None if self.paths is None else tuple(self.paths[i] for i in rows),
            flip_default=self.flip_default,
        )


# --- reading ----------------------------------------------------------------------------


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an idx file (the MNIST format), plain or gzip-compressed (told by content).

    Format (http://yann.lecun.com/exdb/mnist/): a 4-byte magic number ``0x00 0x00 T n``,
    with T the element type (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
    0x0E float64) and n the number of dimensions; n big-endian uint32 sizes; then the
    elements, big-endian, in C order, and nothing after them.

    Returns
    -------
    numpy.ndarray
        Of the sizes in the header, in native byte order.

    Raises
    ------
    DatasetError
        Naming the file: unreadable, a bad magic number, or a size that disagrees with the
        header (truncated or with trailing bytes).
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as err:
        raise DatasetError(f"{path}: cannot read the idx file ({err})") from None
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_TYPES or raw[3] == 0:
        raise DatasetError(
            f"{path}: expected an idx file (magic 0x00 0x00 <type> <dims>, type among "
            f"{sorted(hex(t) for t in _IDX_TYPES)}), but it starts with {raw[:4].hex(' ')}"
        )
    dtype, n_dims = np.dtype(_IDX_TYPES[raw[2]]), raw[3]
    header = 4 + 4 * n_dims
    if len(raw) < header:
        raise DatasetError(f"{path}: the idx header announces {n_dims} sizes, but is truncated")
    shape = tuple(int(v) for v in np.frombuffer(raw, dtype=">u4", count=n_dims, offset=4))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise DatasetError(
            f"{path}: the idx header announces shape {shape} ({expected} bytes in all), but the "
            f"file holds {len(raw)} bytes; it is truncated or damaged"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def _idx_file(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def load_fashion_mnist(data_dir: Path | None = None, split: str = "train") -> ImageSet:
    """Fashion-MNIST's ``split`` (``"train"``: 60,000 images, ``"test"``: 10,000).

    Raises
    ------
    DatasetError
        The idx files are not in ``data_dir`` (default :data:`FASHION_MNIST_DIR`), saying
        how to install them, or they are malformed.
    """
    if split not in ("train", "test"):
        raise DatasetError(f"Expected split 'train' or 'test', but got {split!r}")
    folder = FASHION_MNIST_DIR if data_dir is None else Path(data_dir)
    prefix = "train" if split == "train" else "t10k"
    stems = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
    files = [_idx_file(folder, stem) for stem in stems]
    if files[0] is None or files[1] is None:
        raise DatasetError(
            f"{folder}: Fashion-MNIST's idx files are not there (expected {stems[0]}(.gz) and "
            f"{stems[1]}(.gz)); install them with `{FASHION_MNIST_INSTALL}` (into "
            f"{FASHION_MNIST_DIR}) or give the folder that holds them with --data-dir"
        )
    images, labels = read_idx(files[0]), read_idx(files[1])
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DatasetError(
            f"{files[0]}: expected N x H x W uint8 images, but got {images.dtype} {images.shape}"
        )
    if labels.shape != images.shape[:1] or (
        labels.size and not 0 <= labels.min() <= labels.max() < len(FASHION_MNIST_CLASSES)
    ):
        raise DatasetError(
            f"{files[1]}: expected {images.shape[0]} labels in 0..9, one per image of "
            f"{files[0].name}, but got shape {labels.shape}"
        )
    return ImageSet("fashion-mnist", FASHION_MNIST_CLASSES, labels.astype(np.int64), images)


def load_digits_set() -> ImageSet:
    """scikit-learn's bundled digits as uint8 grey images, ``round(v * 255 / 16)``."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = np.rint(np.asarray(bunch.images, dtype=np.float64) * (255.0 / 16.0))
    classes = tuple(str(int(k)) for k in bunch.target_names)
    return ImageSet("digits", classes, np.asarray(bunch.target, np.int64), pixels.astype(np.uint8))


def _has_image(folder: Path) -> bool:
    """Whether an image file lies anywhere below ``folder`` (symbolic links not followed)."""
    for _, _, names in os.walk(folder):
        if any(name.lower().endswith(IMAGE_SUFFIXES) for name in names):
            return True
    return False


def load_folder(root: Path) -> ImageSet:
    """An image tree ``ROOT/<class>/<images>`` (see the module's description).

    Raises
    ------
    DatasetError
        No class folder, image files directly in ROOT, or a class folder with fewer than
        :data:`MIN_IMAGES_PER_CLASS` images.
    """
    class_dirs = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    loose = sorted(
        entry.name
        for entry in os.scandir(root)
        if entry.is_file() and entry.name.lower().endswith(IMAGE_SUFFIXES)
    )
    if loose:
        raise DatasetError(
            f"{root}: expected one folder per class (ROOT/<class>/<image>), but found "
            f"{len(loose)} image file(s) directly in the root ({_shown(loose)}); move them into "
            "their class's folder"
        )
    if not class_dirs:
        raise DatasetError(
            f"{root}: expected one folder per class (ROOT/<class>/<image>), but found no folder"
        )
    by_class: dict[str, list[Path]] = {name: [] for name in class_dirs}
    try:
        items = folder_items(root)
    except SourceError:
        if any(_has_image(root / name) for name in class_dirs):
            raise
        items = []  # every class folder is empty: say so below, naming the first
    for item in items:
        by_class[item.id.split("/", 1)[0]].append(item.path)
    for name in class_dirs:
        n_images = len(by_class[name])
        if n_images < MIN_IMAGES_PER_CLASS:
            what = "is empty" if n_images == 0 else f"holds {n_images} image"
            raise DatasetError(
                f"{root / name}: expected at least {MIN_IMAGES_PER_CLASS} images "
                f"({', '.join(IMAGE_SUFFIXES)}) in each class folder, but this class folder "
                f"{what}; add images or remove the folder"
            )
    paths = tuple(path for name in class_dirs for path in by_class[name])
    labels = np.repeat(np.arange(len(class_dirs)), [len(by_class[n]) for n in class_dirs])
    return ImageSet(str(root), tuple(class_dirs), labels, paths=paths, flip_default=True)


#: The built-in data sets: name -> loader(data_dir).
BUILTIN: dict[str, Callable[[Path | None], ImageSet]] = {
    "digits": lambda data_dir: load_digits_set(),
    "fashion-mnist": lambda data_dir: load_fashion_mnist(data_dir),
}


def load_images(data: str | os.PathLike[str], data_dir: Path | None = None) -> ImageSet:
    """The data set ``data``: a built-in name (:data:`BUILTIN`) or an image-tree folder.

    Parameters
    ----------
    data : str or PathLike
        ``"digits"``, ``"fashion-mnist"``, or a folder ``ROOT/<class>/<images>``.
    data_dir : Path, optional
        Where a built-in set's files are (Fashion-MNIST's idx files).

    Raises
    ------
    DatasetError
        Neither a built-in name nor a folder (listing the built-in names), or a bad set.
    """
    if isinstance(data, str) and data in BUILTIN:
        return BUILTIN[data](data_dir)
    root = Path(data)
    if not root.is_dir():
        found = "a file, not a folder" if root.exists() else "no such folder"
        raise DatasetError(
            f"{data}: expected a built-in data set ({', '.join(BUILTIN)}) or a folder of one "
            f"sub-folder of images per class, but it is {found}"
        )
    return load_folder(root)


# --- held-out classes -------------------------------------------------------------------


def parse_holdout(text: str | None) -> tuple[str, ...]:
    """``"5,6,7"`` -> ``("5", "6", "7")``; None or ``""`` -> ``()``.

    Raises
    ------
    DatasetError
        An empty entry (``"5,,6"``).
    """
    if not text:
        return ()
    tokens = tuple(token.strip() for token in text.split(","))
    if not all(tokens):
        raise DatasetError(
            f"Expected --holdout as comma-separated class names or indices, but got {text!r}"
        )
    return tokens


def resolve_classes(images: ImageSet, tokens: Sequence[str]) -> list[int]:
    """The class indices that ``tokens`` name, in order, each once.

    A token is a class name or, when no class has that name, an index into
    ``images.classes``.

    Raises
    ------
    DatasetError
        A token that names no class, listing the known ones.
    """
    position = {name: k for k, name in enumerate(images.classes)}
    found: list[int] = []
    unknown: list[str] = []
    for token in tokens:
        index = position.get(token)
        if index is None and token.isdigit() and int(token) < len(images.classes):
            index = int(token)
        if index is None:
            unknown.append(token)
        elif index not in found:
            found.append(index)
    if unknown:
        raise DatasetError(
            f"{images.name}: expected held-out classes among its {len(images.classes)} classes "
            f"({_shown(list(images.classes))}; or their indices 0..{len(images.classes) - 1}), "
            f"but got unknown {unknown}"
        )
    return found


@dataclass(frozen=True, eq=False)
class TrainingData:
    """The training classes and the held-out ones.

    Attributes
    ----------
    source : str
        ``DATA`` as given (a built-in name or a folder).
    train : ImageSet
        The training images, labelled ``0 .. C - 1`` over the training classes.
    held_out : ImageSet or None
        The held-out classes' images (all of them), or None without a holdout.
    holdout : tuple of str
        The held-out class names, in the data set's class order.
    max_per_class : int or None
        The cap on training images per class, if any.
    """

    source: str
    train: ImageSet
    held_out: ImageSet | None
    holdout: tuple[str, ...]
    max_per_class: int | None = None


def load_training_data(
    data: str | os.PathLike[str],
    *,
    holdout: Sequence[str] = (),
    data_dir: Path | None = None,
    max_per_class: int | None = None,
) -> TrainingData:
    """Load ``data`` and split off the ``holdout`` classes.

    Parameters
    ----------
    data : str or PathLike
        See :func:`load_images`.
    holdout : sequence of str
        Class names or indices to keep out of training (see :func:`resolve_classes`).
    data_dir : Path, optional
        Where a built-in set's files are.
    max_per_class : int, optional
        Train on the first ``max_per_class`` images of each class only (a quick run); the
        cap is recorded in the checkpoint.

    Raises
    ------
    DatasetError
        A bad data set, unknown held-out classes, or fewer than 2 classes left to train on.
    """
    images = load_images(data, data_dir)
    held = sorted(resolve_classes(images, holdout))
    kept = sorted(set(range(len(images.classes))) - set(held))
    if len(kept) < 2:
        raise DatasetError(
            f"{images.name}: holding out {len(held)} of its {len(images.classes)} classes "
            f"leaves {len(kept)} to train on, but training needs at least 2; hold out fewer"
        )
    train = images.select_classes(kept)
    if max_per_class is not None:
        train = train.first_per_class(max_per_class)
    return TrainingData(
        source=str(data),
        train=train,
        held_out=images.select_classes(held) if held else None,
        holdout=tuple(images.classes[k] for k in held),
        max_per_class=max_per_class,
    )


# --- the torch side ---------------------------------------------------------------------


class ImageDataset(torch.utils.data.Dataset[tuple[torch.Tensor, int]]):
    """``(input, label)`` pairs: ``preprocess(image, preprocessing)``, randomly mirrored.

    Parameters
    ----------
    images : ImageSet
    preprocessing : Preprocessing
        The configuration ``facebench extract`` will use for this model.
    flip : bool
        Mirror each input with probability 1/2, drawn from torch's random generator (in
        a DataLoader worker, the worker's generator, which the loader seeds from its own
        ``generator``: the flips are reproducible for a given seed and worker count).

    Items are float32 tensors of shape (3, H, W) and int labels.
    """

    def __init__(self, images: ImageSet, preprocessing: Preprocessing, flip: bool = False):
        self.images = images
        self.preprocessing = preprocessing
        self.flip = flip

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        array = preprocess(self.images.image(index), self.preprocessing)
        if self.flip and bool(torch.rand(()) < 0.5):
            array = flip_horizontal(array)
        return torch.from_numpy(array), int(self.images.labels[index])


# --- export -----------------------------------------------------------------------------

IMAGE_FORMATS = {"png": "PNG", "jpg": "JPEG"}


def export_images(
    images: ImageSet,
    classes: Sequence[str],
    out_dir: str | os.PathLike[str],
    *,
    per_class: int | None = None,
    prefix: str = "",
    image_format: str = "png",
    overwrite: bool = False,
) -> list[str]:
    """Write the images of ``classes`` as files, one folder per class.

    Image ``n`` (1-based, in the set's order) of class ``c`` goes to
    ``out_dir/<prefix><c>/<prefix><c>_<nnnn>.<image_format>``, the LFW layout
    (``Name/Name_0001.jpg``), so that ``facebench extract`` and an LFW-format pairs file
    can use them. PNG is lossless; JPEG is written at quality 95.

    Parameters
    ----------
    images : ImageSet
    classes : sequence of str
        Class names or indices (see :func:`resolve_classes`).
    out_dir : str or PathLike
        Created if missing.
    per_class : int, optional
        Export only the first ``per_class`` images of each class.
    prefix : str
        Put before every class name (``"digit"``: ``digit5/digit5_0001.png``).
    image_format : str
        ``"png"`` or ``"jpg"``.
    overwrite : bool
        Replace existing files of the same names.

    Returns
    -------
    list of str
        The written files' paths relative to ``out_dir`` with ``/`` separators, by class
        then number.

    Raises
    ------
    DatasetError
        Unknown classes or format.
    facebench.errors.OutputExistsError
        A file exists and ``overwrite`` is false.
    """
    if image_format not in IMAGE_FORMATS:
        raise DatasetError(
            f"Expected image_format in {list(IMAGE_FORMATS)}, but got {image_format!r}"
        )
    chosen = images.select_classes(resolve_classes(images, classes))
    if per_class is not None:
        chosen = chosen.first_per_class(per_class)
    out = Path(out_dir)
    written: list[str] = []
    numbers = np.zeros(len(chosen.classes), dtype=np.int64)
    for row, label in enumerate(chosen.labels):
        numbers[label] += 1
        folder = f"{prefix}{chosen.classes[label]}"
        relative = f"{folder}/{folder}_{numbers[label]:04d}.{image_format}"
        (out / folder).mkdir(parents=True, exist_ok=True)
        with atomic_path(out / relative, overwrite) as tmp:
            extra = {"quality": 95} if image_format == "jpg" else {}
            Image.fromarray(chosen.image(row)).save(
                tmp, format=IMAGE_FORMATS[image_format], **extra
            )
        written.append(relative)
    return written
