"""Flip fusion: how an image's feature and its mirror's are combined (PROTOCOLS.md, "Flip").

Every mode returns unit-norm float64 rows, so a pair's score is a dot product.
``none``: the image's unit feature alone. ``sum-raw``: the raw features (unit x norm) of the
image and its mirror are added, then normalized (insightface, face.evoLVe). ``sum-unit``:
the two unit features are added, then normalized (TFace). ``concat``: the two unit features
are joined and divided by sqrt(2), so a score is the mean of the two cosines (facenet joins
them too).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]


def _normalize(x: Array) -> Array:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / norms


def fuse_none(
    unit: Array, norms: Array, unit_flip: Array | None, norms_flip: Array | None
) -> Array:
    """The image's own unit feature."""
    return unit


def fuse_sum_raw(
    unit: Array, norms: Array, unit_flip: Array | None, norms_flip: Array | None
) -> Array:
    """Normalize(unit * norm + unit_flip * norm_flip)."""
    assert unit_flip is not None and norms_flip is not None
    return _normalize(unit * norms[:, None] + unit_flip * norms_flip[:, None])


def fuse_sum_unit(
    unit: Array, norms: Array, unit_flip: Array | None, norms_flip: Array | None
) -> Array:
    """Normalize(unit + unit_flip)."""
    assert unit_flip is not None
    return _normalize(unit + unit_flip)


def fuse_concat(
    unit: Array, norms: Array, unit_flip: Array | None, norms_flip: Array | None
) -> Array:
    """[unit, unit_flip] / sqrt(2): the score is the mean of the two cosines."""
    assert unit_flip is not None
    return np.concatenate((unit, unit_flip), axis=1) / np.sqrt(2.0)


FLIP_FUSIONS: dict[str, Callable[[Array, Array, Array | None, Array | None], Array]] = {
    "none": fuse_none,
    "sum-raw": fuse_sum_raw,
    "sum-unit": fuse_sum_unit,
    "concat": fuse_concat,
}
