"""1:1 scores of template pairs: float64 matrix products, or float32 ones with float64
re-scores where TAR at a FAR needs them.

Two ways to score the pairs of a template protocol (``verify --score-precision``):

- ``float64``: every score a float64 dot product of the pooled float64 templates
  (:func:`chunked_scores`: blocks of BLAS matrix products, or gathered rows when the pairs
  are sparse among the templates).
- ``float32``: the same products in float32 (half the time and memory), then
  :func:`facebench.metrics.banded.exact_at_targets`: every genuine pair and every impostor
  pair whose float32 score lies within the error bound (:func:`float32_bound`) of a TAR@FAR
  operating threshold gets its float64 score (:func:`rescore`). TAR at each FAR target,
  its threshold, achieved FAR and impostor count are then those of float64 scores of every
  pair; AUC, EER and the ROC are those of the mixed scores (float32-accurate where not
  re-scored: within the bound, about 3e-5 at D = 512).
- ``auto`` (the default): ``float32`` from :data:`FLOAT32_MIN_PAIRS` pairs under the
  ``exact`` TAR rule (IJB-B, IJB-C), else ``float64`` (IJB-A, small protocols, the other
  rules, whose points the bands do not cover).

A float64 re-score is the sum of the float64 products of the two templates' features in
feature order (one rounding per product and per addition): a function of the two rows
alone, whatever the batch. It and a BLAS float64 product (the ``float64`` way) differ by a
few units in the last place.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from facebench.columns import Patched
from facebench.errors import FacebenchError
from facebench.metrics import ThresholdCounts, count_at_thresholds
from facebench.metrics.banded import exact_at_targets

PAIR_CHUNK = 1 << 15
SCORE_BLOCK_BYTES = 1 << 26
"""Scores per matrix product in :func:`chunked_scores` (64 MiB)."""
MASKED_BLOCKS = 16
"""Up to this many blocks, :func:`chunked_scores` finds a block's pairs with one pass over
the pairs' block numbers; beyond, with one stable sort (no (P,) permutation below it)."""
DENSE_PAIRS = 1 / 64
"""Pairs per (left template x right template) from which matrix products score the pairs:
per element, a float64 matrix product costs 1/100 to 1/200 of a gathered dot product
(measured at IJB-C size: 3,531 x 19,593 templates, 15.7 M pairs)."""
FLOAT32_MIN_PAIRS = 1 << 20
"""From this many pairs, ``--score-precision auto`` scores in float32 (with the bands)."""
SCORE_PRECISIONS = ("auto", "float64", "float32")
_RESCORE_BATCH = 256  # pairs per re-score step: its (256, D) products stay in the L2 cache
IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


def _used(index: npt.NDArray[np.integer[Any]], n: int) -> tuple[IntArray, npt.NDArray[np.int32]]:
    """The distinct values of ``index`` (ascending) and a map value -> its position."""
    marks = np.zeros((2, n), dtype=bool)  # a row per half of ``index``: a thread each

    def mark(first: int, last: int) -> None:
        row = marks[0 if first == 0 else 1]
        for start in range(first, last, _READ_STEP):  # cache-sized index conversions
            row[index[start : min(start + _READ_STEP, last)]] = True

    _in_halves(index.size, mark)
    used = marks[0] | marks[1]
    position = np.cumsum(used, dtype=np.int32)
    position -= 1
    return np.flatnonzero(used), position


def _block_key_dtype(n_blocks: int) -> type[np.integer[Any]]:
    """The narrowest unsigned dtype for block numbers (numpy radix-sorts 8/16-bit keys)."""
    if n_blocks <= 1 << 8:
        return np.uint8
    return np.uint16 if n_blocks <= 1 << 16 else np.int64


def chunked_scores(
    pooled: npt.NDArray[np.floating[Any]],
    left: npt.NDArray[np.integer[Any]],
    right: npt.NDArray[np.integer[Any]],
    *,
    block_bytes: int = SCORE_BLOCK_BYTES,
    products: Products | None = None,
) -> npt.NDArray[np.floating[Any]]:
    """Dot products of template pairs in ``pooled``'s dtype (float64 or float32), in memory
    independent of the pair count.

    ``scores[p] = pooled[left[p]] . pooled[right[p]]``. When the pairs are dense among the
    templates they use (IJB-B/C: every probe against a large share of the gallery), the
    dot products are read off matrix products: the left templates are taken
    ``SCORE_BLOCK_BYTES`` of scores at a time, ``block @ right_templates.T`` (BLAS, in
    ``pooled``'s dtype), and each pair of the block picks its element. Otherwise each pair's
    two rows are gathered and multiplied, ``PAIR_CHUNK`` pairs at a time. Both are dot
    products of the same vectors in the same dtype; they differ only in the order of the D
    additions (float64: a few units in the last place, well within 1e-12 for unit vectors;
    float32: within :func:`float32_bound` of the float64 score either way).

    Parameters
    ----------
    pooled : ndarray of float64 or float32, shape (T, D)
    left, right : ndarray of int, shape (P,)
        Rows of ``pooled`` of each pair.
    products : Products, optional
        How the matrix products are computed (default: numpy's BLAS); see
        :func:`torch_products` for a GPU.

    Returns
    -------
    ndarray of ``pooled.dtype``, shape (P,)
    """
    dtype = pooled.dtype
    scores = np.empty(left.size, dtype=dtype)
    if left.size == 0:
        return scores
    lefts, left_position = _used(left, pooled.shape[0])
    rights, right_position = _used(right, pooled.shape[0])
    if left.size < DENSE_PAIRS * lefts.size * rights.size:
        for start in range(0, left.size, PAIR_CHUNK):
            stop = start + PAIR_CHUNK
            scores[start:stop] = np.einsum(
                "ij,ij->i", pooled[left[start:stop]], pooled[right[start:stop]]
            )
        return scores
    width = rights.size
    # At least two rows a block: numpy sends a one-row product to the matrix-vector kernel,
    # which sums in another order, and a score must not depend on the memory budget.
    # A block's elements are numbered in int32: at most 2**31 - 1 of them, whatever the budget.
    rows_fit = min(block_bytes // (dtype.itemsize * width), (2**31 - 1) // width)
    block = int(max(min(2, lefts.size), min(lefts.size, rows_fit)))
    n_blocks = -(-lefts.size // block)
    # Per pair: its block of left templates, and the element of that block's score matrix
    # it reads, looked up in per-template tables (no division per pair).
    block_of: npt.NDArray[np.integer[Any]] = (left_position // block).astype(
        _block_key_dtype(n_blocks)
    )
    row_start = ((left_position % block) * width).astype(np.int32)
    column = right_position.astype(np.int32)
    in_block = np.empty_like(block_of, shape=left.size)
    element = np.empty(left.size, dtype=np.int32)

    def locate(first: int, last: int) -> None:
        for start in range(first, last, _READ_STEP):
            stop = min(start + _READ_STEP, last)
            lefts_here = left[start:stop]
            np.take(block_of, lefts_here, out=in_block[start:stop])
            here = element[start:stop]
            np.take(row_start, lefts_here, out=here)
            here += column.take(right[start:stop])

    _in_halves(left.size, locate)
    order = bounds = None
    if n_blocks > MASKED_BLOCKS:
        # A stable sort by block (a radix sort for 8- and 16-bit keys).
        order = np.argsort(in_block, kind="stable")
        bounds = np.concatenate(([0], np.cumsum(np.bincount(in_block, minlength=n_blocks))))
        element = element[order]
    right_rows = pooled[rights].T
    left_rows = pooled[lefts]
    multiply = (products or numpy_products)(right_rows)
    matrix = np.empty((block, width), dtype=dtype)
    for k in range(n_blocks):
        rows = left_rows[k * block : (k + 1) * block]
        if rows.shape[0] == 1 < block:  # a last block of one row: padded to two (see above)
            padded = multiply(np.concatenate((rows, rows)), matrix[:2])
            product = padded[:1].reshape(-1)
        else:
            product = multiply(rows, matrix[: rows.shape[0]]).reshape(-1)
        reads = left.size if order is None or bounds is None else int(bounds[k + 1] - bounds[k])
        _in_halves(
            reads,
            functools.partial(
                _read_off, product, k, n_blocks, element, in_block, order, bounds, scores
            ),
        )
    return scores


def _read_off(
    product: npt.NDArray[np.floating[Any]],
    k: int,
    n_blocks: int,
    element: npt.NDArray[np.int32],
    in_block: npt.NDArray[np.integer[Any]],
    order: npt.NDArray[np.intp] | None,
    bounds: npt.NDArray[np.intp] | None,
    scores: npt.NDArray[np.floating[Any]],
    first: int,
    last: int,
) -> None:
    """The scores of block ``k``'s pairs ``first .. last - 1`` (of all pairs in file order,
    or of the block's pairs in ``order``), read off its flattened product."""
    if n_blocks == 1:
        np.take(product, element[first:last], out=scores[first:last])
    elif order is None or bounds is None:
        # In steps of _READ_STEP pairs: the temporaries stay in the caches (and are reused
        # by the allocator), never fresh pages.
        for start in range(first, last, _READ_STEP):
            stop = min(start + _READ_STEP, last)
            pairs = np.flatnonzero(in_block[start:stop] == k)  # file order
            pairs += start
            scores[pairs] = product.take(element.take(pairs))
    else:
        a = int(bounds[k])
        scores[order[a + first : a + last]] = product.take(element[a + first : a + last])


_PARALLEL_MIN = 1 << 16
_READ_STEP = 1 << 18


def _in_halves(n: int, work: Callable[[int, int], None]) -> None:
    """``work(0, h)`` and ``work(h, n)`` in two threads (numpy's gathers run without the
    GIL, and two threads keep twice the memory reads in flight: random reads of 15.7 M
    scores take about half the time); one call below ``_PARALLEL_MIN``. The halves write
    disjoint elements, so the result is the one call's."""
    if n < _PARALLEL_MIN:
        work(0, n)
        return
    half = n // 2
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="facebench-reads") as pool:
        for part in [pool.submit(work, 0, half), pool.submit(work, half, n)]:
            part.result()


#: ``products(right_rows)`` prepares the right-hand (D, W) matrix once and returns
#: ``multiply(rows, out)``, which writes ``rows @ right_rows`` into ``out`` (host memory, the
#: dtype of the rows) and returns it.
Products = Callable[
    [npt.NDArray[np.floating[Any]]],
    Callable[[npt.NDArray[np.floating[Any]], npt.NDArray[np.floating[Any]]], Any],
]


def numpy_products(
    right_rows: npt.NDArray[np.floating[Any]],
) -> Callable[[npt.NDArray[np.floating[Any]], npt.NDArray[np.floating[Any]]], Any]:
    """The default :data:`Products`: numpy's BLAS on the CPU."""

    def multiply(rows: npt.NDArray[np.floating[Any]], out: npt.NDArray[np.floating[Any]]) -> Any:
        return np.matmul(rows, right_rows, out=out)

    return multiply


def torch_products(device: str) -> Products:
    """:data:`Products` computed by torch on ``device`` (``verify --device cuda``).

    Float32 products are computed in IEEE float32 (:class:`facebench.precision.Float32Mode`:
    TF32 and other reduced-precision modes off for each product, the process's settings
    restored), so :func:`float32_bound` holds for them as for any float32 summation order,
    and TAR at a FAR stays exactly the float64 one. Float64 products on a GPU sum in another
    order than the CPU's BLAS: the scores can differ in the last bits. Tested with
    ``device="cpu"`` here; tests/test_gpu.py checks it on a GPU.
    """
    import torch

    from facebench.precision import Float32Mode

    target = torch.device(device)

    def prepare(
        right_rows: npt.NDArray[np.floating[Any]],
    ) -> Callable[[npt.NDArray[np.floating[Any]], npt.NDArray[np.floating[Any]]], Any]:
        right_t = torch.from_numpy(np.ascontiguousarray(right_rows)).to(target)

        def multiply(
            rows: npt.NDArray[np.floating[Any]], out: npt.NDArray[np.floating[Any]]
        ) -> Any:
            rows_t = torch.from_numpy(np.ascontiguousarray(rows)).to(target)
            with Float32Mode(target.type):
                product = rows_t @ right_t
            out[...] = product.cpu().numpy()
            return out

        return multiply

    return prepare


def _gamma(dim: int, unit_roundoff: float) -> float:
    return dim * unit_roundoff / (1.0 - dim * unit_roundoff)


def float32_bound(dim: int, max_norm: float) -> float:
    """An upper bound on ``|float32 score - float64 re-score|`` of two rows of norm at most
    ``max_norm``.

    With ``u = 2**-24``: converting the float64 rows to float32 moves each product
    ``x_k y_k`` by at most ``(2u + u**2) |x_k y_k|``; any float32 evaluation of the dot
    product of the converted rows (any summation order, fused or not) lies within
    ``gamma_D (1 + u)**2 sum_k |x_k y_k|`` of their exact dot product; the re-score (float64
    products summed in order) within ``gamma_D(2**-53) sum_k |x_k y_k|`` of the exact one
    (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., eq. 3.5). With
    ``sum_k |x_k y_k| <= max_norm**2``, widened by 2**-20 for the rounding of this formula,
    plus ``D 2**-140`` for float32 underflow.
    """
    u = 2.0**-24
    relative = _gamma(dim, u) * (1 + u) ** 2 + 2 * u + u * u + _gamma(dim, 2.0**-53)
    return relative * max_norm * max_norm * (1 + 2.0**-20) + dim * 2.0**-140


def rescore(
    pooled: FloatArray, left: npt.NDArray[np.integer[Any]], right: npt.NDArray[np.integer[Any]]
) -> FloatArray:
    """Float64 scores of the pairs ``(pooled[left[i]], pooled[right[i]])``: the products
    of their features summed in feature order, one rounding per product and per addition
    (the same number for the same two rows in any batch)."""
    out = np.empty(left.size, dtype=np.float64)
    for start in range(0, left.size, _RESCORE_BATCH):
        stop = start + _RESCORE_BATCH
        products = pooled[left[start:stop]]
        products *= pooled[right[start:stop]]
        # ufunc.accumulate adds strictly left to right along a row (np.sum would pair terms)
        np.add.accumulate(products, axis=1, out=products)
        out[start:stop] = products[:, -1]
    return out


@dataclass(frozen=True)
class PairScores:
    """The scores of a split's 1:1 pairs, their counts core and how they were computed.

    Attributes
    ----------
    scores : ndarray of float64, or Patched, shape (P,)
        float32: the float32 scores with the re-scored pairs' float64 ones, made a block
        at a time (:class:`facebench.columns.Patched`; ``np.asarray`` gives the array).
    counts : ThresholdCounts
    precision : str
        ``float64`` or ``float32`` (the way used; see the module docstring).
    bound : float or None
        float32: the error bound of the scores not re-scored.
    n_rescored : int
        float32: pairs given their float64 score.
    """

    scores: FloatArray | Patched
    counts: ThresholdCounts
    precision: str
    bound: float | None = None
    n_rescored: int = 0

    def entry(self) -> dict[str, Any]:
        """The report's ``score_precision`` entry of the split."""
        if self.precision == "float64":
            return {"precision": "float64", "rule": "float64 dot products (BLAS)"}
        return {
            "precision": "float32",
            "rule": (
                "float32 products; every genuine pair and every impostor pair within"
                " error_bound of a TAR@FAR threshold re-scored in float64 (TAR@FAR exact;"
                " AUC, EER and ROC from these scores)"
            ),
            "error_bound": self.bound,
            "n_rescored": self.n_rescored,
        }


def resolve_precision(precision: str, n_pairs: int, tar_rule: str) -> str:
    """The way ``precision`` (a key of :data:`SCORE_PRECISIONS`) scores ``n_pairs`` pairs."""
    if precision not in SCORE_PRECISIONS:
        raise FacebenchError(
            f"Expected --score-precision in {list(SCORE_PRECISIONS)}, but got {precision!r}"
        )
    if precision == "float32" and tar_rule != "exact":
        raise FacebenchError(
            "--score-precision float32 keeps TAR at a FAR exact under the exact TAR rule only,"
            f" but --tar-rule is {tar_rule!r}; use --score-precision float64 (or auto)"
        )
    if precision == "auto":
        return "float32" if tar_rule == "exact" and n_pairs >= FLOAT32_MIN_PAIRS else "float64"
    return precision


def score_pairs(
    pooled: FloatArray,
    left: npt.NDArray[np.integer[Any]],
    right: npt.NDArray[np.integer[Any]],
    is_same: npt.NDArray[np.bool_],
    far_targets: Sequence[float],
    *,
    precision: str = "float64",
    block_bytes: int = SCORE_BLOCK_BYTES,
    timer: Callable[[str], None] | None = None,
    products: Products | None = None,
) -> PairScores:
    """Score a split's pairs and count them, the ``precision`` way (``float64`` or
    ``float32``, as :func:`resolve_precision` gives; module docstring). ``timer`` is
    called with ``score`` when the products are done and ``counts`` at the end."""
    tick = timer or (lambda stage: None)
    if precision == "float64":
        scores = np.asarray(
            chunked_scores(pooled, left, right, block_bytes=block_bytes), np.float64
        )
        tick("score")
        counts = count_at_thresholds(scores, is_same)
        tick("counts")
        return PairScores(scores, counts, "float64")
    if precision != "float32":
        raise FacebenchError(f"Expected a score precision float64 or float32, got {precision!r}")
    max_norm = float(np.sqrt(np.max(np.einsum("ij,ij->i", pooled, pooled)))) if len(pooled) else 1.0
    bound = float32_bound(pooled.shape[1], max_norm)
    approx = chunked_scores(
        pooled.astype(np.float32), left, right, block_bytes=block_bytes, products=products
    )
    tick("score")
    banded = exact_at_targets(
        approx,
        is_same,
        bound,
        lambda pairs: rescore(pooled, left[pairs], right[pairs]),
        far_targets,
    )
    tick("counts")
    patched = Patched(banded.approx, banded.rescored, banded.rescored_scores)
    return PairScores(patched, banded.counts, "float32", bound, int(banded.rescored.size))
