"""Five-point similarity alignment: fit landmarks to a template, warp the image onto it.

Coordinates follow insightface and OpenCV's ``warpAffine``: pixel ``(i, j)`` (row ``i``,
column ``j``) has its centre at ``(x, y) = (j, i)``, so a landmark at ``(x, y)`` lands at
``A @ (x, y) + t`` in the output, and the template points are in that convention too.

``warp`` reproduces ``cv2.warpAffine(image, M, (W, H), flags=INTER_LINEAR,
borderMode=BORDER_CONSTANT, borderValue=0)`` with Pillow. Pillow's ``Image.transform(AFFINE)``
takes the inverse map from output to input in *corner* coordinates: it sends the output
pixel centre ``(x + 0.5, y + 0.5)`` through the matrix and samples the input at that point
minus 0.5 (measured with a pure sub-pixel translation). ``warp`` converts the matrix
accordingly. Two further differences are removed: Pillow's 8-bit bilinear filter truncates
(``59.9`` becomes 59), so each channel is warped in 32-bit float and rounded to nearest; and
Pillow repeats the edge pixel within half a pixel outside the image where OpenCV blends with
the zero border, so the image gets a one-pixel zero border first. What remains is OpenCV's
own 5-bit fixed-point interpolation weights: results agree within one grey level.

Reference: S. Umeyama, "Least-squares estimation of transformation parameters between two
point patterns", IEEE TPAMI 13(4), 1991; insightface ``face_align.norm_crop``.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike
from PIL import Image

from facebench.errors import FacebenchError

__all__ = ["TEMPLATES", "AlignmentError", "align", "umeyama", "warp"]


class AlignmentError(FacebenchError):
    """Landmarks or a transform from which no alignment can be made."""


def _template(points: list[tuple[float, float]]) -> np.ndarray:
    array = np.array(points, dtype=np.float64)
    array.setflags(write=False)
    return array


_ARCFACE_112 = [
    (38.2946, 51.6963),
    (73.5318, 51.5014),
    (56.0252, 71.7366),
    (41.5493, 92.3655),
    (70.7299, 92.2041),
]

#: name -> ((5, 2) template points (x, y) in pixel-centre coordinates, output size (H, W)).
#: Points: left eye, right eye, nose tip, left and right mouth corners, as seen in the image.
#:
#: ``arcface112``: insightface's ``arcface_dst`` (``face_align.py``) for 112x112 crops.
#: ``face-resnet-112x96``: the same points with ``x - 8`` on a 112x96 (H x W) crop, the
#: template of the center-loss face ResNet and SphereFace (``(30.2946, 51.6963), ...``).
TEMPLATES: dict[str, tuple[np.ndarray, tuple[int, int]]] = {
    "arcface112": (_template(_ARCFACE_112), (112, 112)),
    "face-resnet-112x96": (_template([(x - 8.0, y) for x, y in _ARCFACE_112]), (112, 96)),
}


def _points(points: ArrayLike, what: str) -> np.ndarray:
    array = np.asarray(points, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 2 or array.shape[0] < 2:
        raise AlignmentError(
            f"Expected `{what}` to be an (n, 2) array of points with n >= 2, "
            f"but got shape {array.shape}"
        )
    if not np.isfinite(array).all():
        raise AlignmentError(f"Expected finite `{what}` points, but got {array.tolist()}")
    return array


def _spread(centred: np.ndarray) -> float:
    return math.sqrt(float((centred**2).sum()) / len(centred))


def umeyama(src: ArrayLike, dst: ArrayLike) -> np.ndarray:
    """Least-squares similarity transform from ``src`` to ``dst`` (Umeyama 1991).

    Finds the rotation ``R`` (no reflection), uniform scale ``c`` and translation ``t``
    minimizing ``sum_k |dst_k - (c R src_k + t)|^2``.

    Parameters
    ----------
    src, dst : array_like, shape (n, 2)
        Corresponding points ``(x, y)``, n >= 2.

    Returns
    -------
    numpy.ndarray, shape (2, 3), float64
        ``[A | t]`` with ``A = c R``: ``dst_k ~= A @ src_k + t``. This is the forward matrix
        that ``cv2.warpAffine`` and :func:`warp` take.

    Raises
    ------
    AlignmentError
        Shapes differ or values are not finite; all ``src`` points coincide (the scale is
        undefined); or the best fit has zero scale (all ``dst`` points coincide, or ``dst``
        is a mirror image of ``src`` that no rotation fits). Collinear points are not
        degenerate in 2-D: two distinct points determine a similarity, which is Umeyama's
        condition ``rank(cov) >= m - 1`` for a unique solution.
    """
    source = _points(src, "src")
    target = _points(dst, "dst")
    if source.shape != target.shape:
        raise AlignmentError(
            f"Expected `src` and `dst` of the same shape, but got {source.shape} and {target.shape}"
        )
    mean_src = source.mean(axis=0)
    mean_dst = target.mean(axis=0)
    centred_src = source - mean_src
    centred_dst = target - mean_dst
    size_src = max(1.0, float(np.abs(source).max()))
    if _spread(centred_src) <= 1e-9 * size_src:
        raise AlignmentError(
            f"Expected distinct landmark points, but all of them lie at {mean_src.tolist()}; "
            "the detection failed for this face"
        )
    n = len(source)
    cov = centred_dst.T @ centred_src / n
    u, singular, vt = np.linalg.svd(cov)
    signs = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        signs[-1] = -1.0  # the best orthogonal fit is a reflection: use the nearest rotation
    rotation = u @ np.diag(signs) @ vt
    variance_src = float((centred_src**2).sum()) / n
    scale = float((singular * signs).sum()) / variance_src
    size_dst = max(1.0, float(np.abs(target).max()))
    if not scale * _spread(centred_src) > 1e-9 * size_dst:
        raise AlignmentError(
            f"Expected points that a rotation and scale can fit, but the best fit has scale "
            f"{scale:.3g} (the target points coincide, or one set is a mirror image of the "
            "other: are left and right swapped?)"
        )
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = mean_dst - scale * rotation @ mean_src
    return matrix


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    if (
        len(size) != 2
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in size)
        or min(size) < 1
    ):
        raise AlignmentError(f"Expected an output size (H, W) of positive ints, but got {size}")
    return int(size[0]), int(size[1])


def warp(image: np.ndarray, matrix: ArrayLike, size: tuple[int, int]) -> np.ndarray:
    """Warp ``image`` by the forward affine ``matrix`` onto an image of ``size``.

    The output pixel ``(i, j)`` takes the bilinear interpolation of ``image`` at
    ``A^-1 @ ((j, i) - t)`` in pixel-centre coordinates, with zeros outside the image: the
    same as ``cv2.warpAffine`` with ``INTER_LINEAR`` and a constant zero border (see the
    module docstring). No anti-aliasing: like OpenCV, a strong downscale aliases.

    Parameters
    ----------
    image : numpy.ndarray, shape (H_in, W_in, 3), uint8
    matrix : array_like, shape (2, 3)
        ``[A | t]`` mapping input points to output points (as :func:`umeyama` returns).
    size : tuple of int
        ``(H, W)`` of the output.

    Returns
    -------
    numpy.ndarray, shape (H, W, 3), uint8
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise AlignmentError(
            f"Expected an (H, W, 3) uint8 image, but got shape {image.shape} {image.dtype}"
        )
    height, width = _check_size(size)
    forward = np.asarray(matrix, dtype=np.float64)
    if forward.shape != (2, 3) or not np.isfinite(forward).all():
        raise AlignmentError(f"Expected a finite 2x3 matrix, but got {forward.tolist()}")
    linear = forward[:, :2]
    if abs(np.linalg.det(linear)) < 1e-12:
        raise AlignmentError(f"Expected an invertible transform, but got {forward.tolist()}")
    inverse = np.linalg.inv(linear)
    # The input region that the output samples (with room for the bilinear neighbours), so
    # that a large image is not converted to float as a whole.
    corners = np.array(
        [[-0.5, -0.5], [width - 0.5, -0.5], [-0.5, height - 0.5], [width - 0.5, height - 0.5]]
    )
    sources = (corners - forward[:, 2]) @ inverse.T
    x_lo = max(0, math.floor(sources[:, 0].min()) - 1)
    y_lo = max(0, math.floor(sources[:, 1].min()) - 1)
    x_hi = min(image.shape[1], math.floor(sources[:, 0].max()) + 3)
    y_hi = min(image.shape[0], math.floor(sources[:, 1].max()) + 3)
    if x_lo >= x_hi or y_lo >= y_hi:
        return np.zeros((height, width, 3), dtype=np.uint8)
    # The one-pixel zero border makes Pillow blend with zeros at the image edge as OpenCV
    # does; inside the region it is never sampled.
    region = np.zeros((y_hi - y_lo + 2, x_hi - x_lo + 2, 3), dtype=np.float32)
    region[1:-1, 1:-1] = image[y_lo:y_hi, x_lo:x_hi]
    # Input corner coordinates = pixel-centre coordinates relative to the region + 0.5.
    offset = -inverse @ (forward[:, 2] + 0.5) + 0.5 + 1.0 - np.array([x_lo, y_lo])
    data = (inverse[0, 0], inverse[0, 1], offset[0], inverse[1, 0], inverse[1, 1], offset[1])
    out = np.empty((height, width, 3), dtype=np.float32)
    for channel in range(3):
        plane = Image.fromarray(np.ascontiguousarray(region[:, :, channel]))
        out[:, :, channel] = np.asarray(
            plane.transform(
                (width, height),
                Image.Transform.AFFINE,
                data,
                resample=Image.Resampling.BILINEAR,
                fillcolor=0.0,
            )
        )
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def align(image: np.ndarray, landmarks: ArrayLike, template: str) -> np.ndarray:
    """Similarity-align a face: fit ``landmarks`` to the template, warp onto its size.

    Parameters
    ----------
    image : numpy.ndarray, shape (H_in, W_in, 3), uint8
    landmarks : array_like, shape (5, 2) or (10,)
        Left eye, right eye, nose, left and right mouth corners as ``(x, y)`` in
        pixel-centre coordinates of ``image`` (``x1 y1 ... x5 y5`` when flat).
    template : str
        A key of :data:`TEMPLATES`.

    Returns
    -------
    numpy.ndarray, shape TEMPLATES[template][1] + (3,), uint8
    """
    if template not in TEMPLATES:
        raise AlignmentError(
            f"Expected an alignment template in {sorted(TEMPLATES)}, but got {template!r}"
        )
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape == (10,):
        points = points.reshape(5, 2)
    if points.shape != (5, 2):
        raise AlignmentError(
            f"Expected 5 landmarks as a (5, 2) or (10,) array, but got shape {points.shape}"
        )
    destination, size = TEMPLATES[template]
    return warp(image, umeyama(points, destination), size)
