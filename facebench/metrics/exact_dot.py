"""Exact 1:N scores: the fused-multiply-add chain, and the error bound of a screening product.

Scores. A score is the dot product of a probe's and a gallery template's features in
float64, accumulated in feature order by fused multiply-adds: ``s = p[0]*g[0]``, then
``s = fma(p[k], g[k], s)`` for ``k = 1 .. D-1``, one rounding per step
(:func:`exact_scores`). For float32 features (a store's) every product is exact in float64
and this is the plain float64 sum in feature order; it is also what a BLAS matrix product
with one accumulator per score computes, e.g. OpenBLAS on small matrices. A score is thus
a function of the two feature rows alone: results never depend on chunk sizes, BLAS
threads, how the gallery is sharded across processes, or the device. A BLAS product of
large matrices does not give that: its summation order changes with the matrix shapes and
the number of threads, and the last bit of a score, and with it a tie, would change with
the chunk size.

Screening products (:data:`Scorer`, :func:`numpy_scorer`, :func:`_float32_product`).
Matrix products of a probe chunk and a gallery block (BLAS, or a GPU) only *screen*. Any
float64 evaluation of ``p . g`` lies within ``gamma_D * sum_k |p_k g_k| <= gamma_D ||p||
||g||`` of the exact value, with ``gamma_D = D u / (1 - D u)`` and ``u = 2**-53`` (Higham,
*Accuracy and Stability of Numerical Algorithms*, 2nd ed., eq. 3.5), whatever the
summation order; a product and the score above therefore differ by at most ``2 gamma_D
||p|| ||g||``, half the margin ``eps`` (:func:`_margin`) the search uses.

The search that screens with these products and scores exactly where it matters is
:mod:`facebench.metrics.search_engine`; the definitions of a search result (the tie rule)
and the metrics are in :mod:`facebench.metrics.identification`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from facebench.metrics.counts import MetricInputError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_EXACT_BATCH = 4096  # pairs scored exactly at a time: two (4096, D) float64 arrays
_UNIT_ROUNDOFF = 2.0**-53

#: ``scorer(gallery_block)`` returns ``product`` with ``product(probes) == probes @
#: gallery_block.T`` up to rounding (float64 in, float64 (chunk, block) out). The block is
#: prepared once (moved to a device, say) and scored against every probe chunk. Products
#: only screen (module docstring), so any float64 matrix product will do.
Scorer = Callable[[FloatArray], Callable[[FloatArray], FloatArray]]


def numpy_scorer(gallery_block: FloatArray) -> Callable[[FloatArray], FloatArray]:
    """The default :data:`Scorer`: numpy's BLAS matrix product on the CPU."""
    transposed = gallery_block.T

    def product(probes: FloatArray) -> FloatArray:
        return np.asarray(probes @ transposed, dtype=np.float64)

    return product


def exact_scores(left: npt.ArrayLike, right: npt.ArrayLike) -> FloatArray:
    """The score of each pair of rows, by the module's definition.

    Parameters
    ----------
    left, right : array of float, shape (n, D), D >= 1
        Feature rows; pair ``i`` is ``(left[i], right[i])``.

    Returns
    -------
    ndarray of float64, shape (n,)
        ``s = l[0]*r[0]``, then ``s = fma(l[k], r[k], s)`` for ``k = 1 .. D-1``: each step
        adds the exact product to ``s`` and rounds once to float64 (round to nearest).
        When every value is a float32 number the products are exact float64 numbers and
        this is the plain float64 sum in feature order, computed so. Otherwise the fused
        multiply-add is emulated exactly (:func:`_fma`), provided no product underflows
        (``|l[k] r[k]| >= 2**-969``; the emulation stays deterministic below that).
    """
    a = np.asarray(left, dtype=np.float64)
    b = np.asarray(right, dtype=np.float64)
    return _chain(a, b, _is_float32(a) and _is_float32(b))


def _chain(a: FloatArray, b: FloatArray, exact_products: bool) -> FloatArray:
    """:func:`exact_scores` of float64 rows; ``exact_products``: all values are float32's."""
    if exact_products:  # fma(x, y, s) == fl(x*y + s) == fl(fl(x*y) + s): a sequential sum
        # ufunc.accumulate adds strictly left to right (``np.sum`` would pair terms).
        return np.asarray(np.add.accumulate(a * b, axis=1)[:, -1], dtype=np.float64)
    by_feature_a, by_feature_b = np.ascontiguousarray(a.T), np.ascontiguousarray(b.T)
    high_a, low_a = _split(by_feature_a)
    high_b, low_b = _split(by_feature_b)
    total = np.multiply(by_feature_a[0], by_feature_b[0])
    for k in range(1, a.shape[1]):
        total = _fma(
            (by_feature_a[k], high_a[k], low_a[k]), (by_feature_b[k], high_b[k], low_b[k]), total
        )
    return total


def _is_float32(x: FloatArray) -> bool:
    """Whether every value is a float32 number (then products are exact in float64)."""
    with np.errstate(over="ignore"):
        return bool(np.array_equal(x.astype(np.float32).astype(np.float64), x))


def _split(x: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Veltkamp's split: ``x = high + low`` exactly, each half of 26 bits or fewer."""
    c = 134217729.0 * x  # 2**27 + 1
    high = c - (c - x)
    return high, x - high


def _two_sum(a: FloatArray, b: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Knuth's TwoSum: ``a + b = s + e`` exactly, ``s = fl(a + b)``."""
    s = a + b
    b_virtual = s - a
    return s, (a - (s - b_virtual)) + (b - b_virtual)


def _fma(
    a: tuple[FloatArray, FloatArray, FloatArray],
    b: tuple[FloatArray, FloatArray, FloatArray],
    c: FloatArray,
) -> FloatArray:
    """``fl(a*b + c)`` with one rounding; ``a`` and ``b`` come with their :func:`_split`.

    Boldo and Melquiond, "Emulation of FMA and correctly rounded sums: proved algorithms
    using rounding to odd", IEEE Trans. Computers 57(4), 2008: with ``a*b = uh + ul``
    exactly (Dekker's product) and ``c + uh = th + tl`` exactly (TwoSum), the result is
    ``fl(th + RO(tl + ul))``, RO rounding to odd. Exact unless something overflows or
    the product's error term underflows.
    """
    (x, x_high, x_low), (y, y_high, y_low) = a, b
    uh = x * y
    ul = ((x_high * y_high - uh) + x_high * y_low + x_low * y_high) + x_low * y_low
    th, tl = _two_sum(c, uh)
    v, error = _two_sum(tl, ul)
    # Round to odd: an inexact sum with an even last bit moves to its odd neighbour,
    # which lies on the side of the error.
    inexact_even = (error != 0) & ((v.view(np.int64) & 1) == 0)
    if inexact_even.any():
        v[inexact_even] = np.nextafter(v[inexact_even], np.copysign(np.inf, error[inexact_even]))
    return np.asarray(th + v, dtype=np.float64)


def _pair_scores(
    probes: npt.NDArray[Any],
    gallery: FloatArray,
    rows: IntArray,
    cols: IntArray,
    exact_products: bool,
) -> FloatArray:
    """Scores of ``probes[rows[i]]`` with ``gallery[cols[i]]``, in bounded batches."""
    out = np.empty(rows.size)
    for s in range(0, rows.size, _EXACT_BATCH):
        batch = slice(s, s + _EXACT_BATCH)
        out[batch] = _chain(
            np.asarray(probes[rows[batch]], dtype=np.float64), gallery[cols[batch]], exact_products
        )
    return out


def _gamma(dim: int, unit_roundoff: float) -> float:
    return dim * unit_roundoff / (1.0 - dim * unit_roundoff)


def _margin(
    dim: int, probe_norms: FloatArray, gallery_norm: float, float32_products: bool
) -> FloatArray:
    """``eps`` per probe: twice the largest ``|product - score|`` (module docstring).

    A score and a float64 product each lie within ``gamma_D ||p|| ||g||`` of the exact dot
    product (a float32 product of float32 values within ``gamma_D`` of float32's unit
    roundoff), so ``eps = 2 (gamma_product + gamma_score) ||p|| max||g||``, widened by
    2**-20 for the rounding of the norms and by ``D 2**-1060`` (float32: ``D 2**-140``)
    for underflow.
    """
    product = _gamma(dim, 2.0**-24) if float32_products else _gamma(dim, _UNIT_ROUNDOFF)
    tiny = dim * (2.0**-140 if float32_products else 2.0**-1060)
    spread = 2.0 * (product + _gamma(dim, _UNIT_ROUNDOFF)) * (1.0 + 2.0**-20)
    eps = spread * probe_norms * gallery_norm + tiny
    if not np.isfinite(eps).all():
        raise MetricInputError(
            "Expected finite similarity scores, but the features' norms are too large for float64"
        )
    return np.asarray(eps, dtype=np.float64)


def _float32_product(gallery_block: FloatArray) -> Callable[[FloatArray], npt.NDArray[Any]]:
    """The screening product of float32 values: a float32 BLAS product (half the work).

    Used only when every feature value is a float32 number, so the conversion is exact;
    :func:`_margin` then allows for float32 rounding.
    """
    transposed = gallery_block.astype(np.float32).T

    def product(probes: FloatArray) -> npt.NDArray[Any]:
        return np.asarray(probes.astype(np.float32) @ transposed)

    return product
