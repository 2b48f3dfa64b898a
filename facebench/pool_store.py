"""Pool template sets straight from a feature store, a fixed block of rows at a time.

Every pooling mode is a weighted sum per template (:func:`facebench.pooling.pooling_weights`):
``pooled[t] = normalize(sum_i w_i n_i x_i)`` over the template's membership rows ``i``,
with ``x_i`` the row's (flip-fused) unit feature and ``n_i`` its norm factor. So the store
never has to be held whole: the rows the sets need are read in store order, ``UNIT_ROWS``
at a time; for each unit and each set, the membership rows that fall in the unit are
sorted by (template, row), gathered, weighted and summed per template
(:func:`numpy.add.reduceat`), and the unit's sums are added to the set's (T, D) float64
accumulator. Memory: the accumulators, one read (``units_per_read`` units) and O(M) integer
arrays; never the store's (N, D) features.

Exactness. The units are cut from the list of needed rows, not from the memory budget, so
the order of every addition is fixed by the store and the protocol alone: the pooled
features are bitwise the same whatever ``units_per_read`` is. They equal
:func:`facebench.pooling.pool_templates` on the same rows up to the order of float64
additions (a few units in the last place; the tests compare at 1e-12).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.sparse import csr_matrix

from facebench.errors import MissingItemsError
from facebench.fusion import FLIP_FUSIONS
from facebench.pooling import PoolingError, check_pooling, normalize_sets, pooling_weights
from facebench.store import FeatureStore
from protocols import Templates

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

UNIT_ROWS = 4096
"""Needed store rows per summation unit (8 MiB of float32 at D = 512). Fixed: it sets the
order of the additions, so it must not follow the memory budget."""


@dataclass(frozen=True)
class TemplateSet:
    """One template set to pool, its membership rows located in the store.

    Attributes
    ----------
    templates : Templates
        The set as the protocol gives it.
    keep : ndarray of bool, shape (M,), or None
        The membership rows that have features (None: all of them); rows of items skipped
        at extraction are left out (``--allow-skipped``).
    rows : ndarray of int64, shape (kept M,)
        The store row of each kept membership row.
    """

    templates: Templates
    keep: npt.NDArray[np.bool_] | None
    rows: IntArray


@dataclass(frozen=True)
class _Plan:
    """A set's kept membership rows, sorted by (unit, template, needed position)."""

    n_templates: int
    unit_bounds: IntArray  # (n_units + 1,): the entries of unit u are [bounds[u], bounds[u+1])
    template: IntArray  # per entry
    position: IntArray  # per entry: its row's position in the list of needed rows
    weight: FloatArray  # per entry: w_i of pooling_weights


def _plan(item: TemplateSet, position: IntArray, n_units: int, mode: str) -> _Plan:
    templates = item.templates
    n = templates.n_templates

    def kept(values: npt.NDArray[Any]) -> npt.NDArray[Any]:
        return values if item.keep is None else values[item.keep]

    template = kept(templates.item_template).astype(np.int64, copy=False)
    score = None if templates.item_score is None else kept(templates.item_score)
    weight, _ = pooling_weights(template, kept(templates.item_media), n, mode, score)
    needed = position[item.rows]
    unit = needed // UNIT_ROWS
    order = np.lexsort((needed, template, unit))
    unit_sorted = unit[order]
    bounds = np.searchsorted(unit_sorted, np.arange(n_units + 1), side="left")
    return _Plan(n, bounds, template[order], needed[order], weight[order])


def _check_nonempty(item: TemplateSet) -> None:
    templates = item.templates
    item_template = templates.item_template
    if item.keep is not None:
        item_template = item_template[item.keep]
    has = np.zeros(templates.n_templates, dtype=bool)
    has[item_template] = True
    if not has.all():
        empty = templates.ids[~has]
        raise MissingItemsError(
            f"Expected features for every template, but {empty.size} templates have none"
            f" (first: {', '.join(map(str, empty[:5]))}); their items were all skipped at"
            " extraction"
        )


def _streams(
    mode: str,
    flip_fusion: str,
    unit: npt.NDArray[np.float32],
    norms: FloatArray,
    unit_flip: npt.NDArray[np.float32] | None,
    norms_flip: FloatArray | None,
) -> list[tuple[npt.NDArray[np.floating[Any]], FloatArray | None]]:
    """(vectors x_i, norm factors n_i or None for 1) whose weighted sums add up to a set."""
    if mode == "insightface":
        # raw = unit x norm (+ mirror unit x mirror norm): each raw norm joins its weight.
        streams: list[tuple[npt.NDArray[np.floating[Any]], FloatArray | None]] = [(unit, norms)]
        if flip_fusion == "sum-raw":
            assert unit_flip is not None and norms_flip is not None  # read for sum-raw
            streams.append((unit_flip, norms_flip))
        return streams
    factor = None
    if mode == "norm":
        factor = norms if norms_flip is None else (norms + norms_flip) / 2.0
    if flip_fusion == "none":
        return [(unit, factor)]
    fused = FLIP_FUSIONS[flip_fusion](
        unit.astype(np.float64),
        norms,
        None if unit_flip is None else unit_flip.astype(np.float64),
        norms_flip,
    )
    return [(np.asarray(fused, dtype=np.float64), factor)]


def _add_unit(
    out: FloatArray,
    plan: _Plan,
    u: int,
    first: int,
    streams: list[tuple[FloatArray, FloatArray | None]],
) -> None:
    """Add unit ``u``'s weighted rows to ``out``; row 0 of the streams' float64 arrays is
    needed position ``first``."""
    a, b = int(plan.unit_bounds[u]), int(plan.unit_bounds[u + 1])
    if a == b:
        return
    template = plan.template[a:b]
    unit_first = u * UNIT_ROWS - first  # the unit's first row in the streams' arrays
    local = plan.position[a:b] - (first + unit_first)
    starts = np.flatnonzero(template[1:] != template[:-1]) + 1
    touched = template[np.concatenate(([0], starts))]
    indptr = np.concatenate(([0], starts, [b - a]))
    n_rows = int(local.max()) + 1
    for vectors, factor in streams:
        rows = vectors[unit_first : unit_first + n_rows]  # float64, C order: no copy below
        weight = (
            plan.weight[a:b] if factor is None else plan.weight[a:b] * factor[local + unit_first]
        )
        # Row k of the product is sum_i weight_i * rows[local_i] over the entries of the
        # k-th touched template, added in entry order (scipy's CSR kernel, in float64).
        matrix = csr_matrix((weight, local, indptr), shape=(touched.size, n_rows))
        out[touched] += matrix @ rows


def _as_float64(
    streams: list[tuple[npt.NDArray[np.floating[Any]], FloatArray | None]],
    buffers: list[FloatArray],
) -> list[tuple[FloatArray, FloatArray | None]]:
    """The streams' vectors as float64 (exactly), float32 ones copied into ``buffers``
    (allocated once per stream and reused: no fresh pages for every read)."""
    converted = []
    for i, (vectors, factor) in enumerate(streams):
        if vectors.dtype == np.float64:
            converted.append((np.ascontiguousarray(vectors, dtype=np.float64), factor))
            continue
        if len(buffers) <= i or buffers[i].shape[0] < vectors.shape[0]:
            buffers[i : i + 1] = [np.empty(vectors.shape, dtype=np.float64)]
        target = buffers[i][: vectors.shape[0]]
        np.copyto(target, vectors)
        converted.append((target, factor))
    return converted


def pool_from_store(
    store: FeatureStore,
    sets: Sequence[TemplateSet],
    *,
    mode: str = "media",
    flip_fusion: str = "none",
    units_per_read: int = 1,
) -> list[FloatArray]:
    """Pool every set's templates from the store's rows (see the module docstring).

    Parameters
    ----------
    store : FeatureStore
        Open; its rows are read once, in order, ``units_per_read x UNIT_ROWS`` at a time
        (every row read is checked as :meth:`FeatureStore.read_rows` checks).
    sets : sequence of TemplateSet
    mode : str
        A key of :data:`facebench.pooling.POOLING_MODES`.
    flip_fusion : str
        A key of :data:`facebench.fusion.FLIP_FUSIONS`; ``insightface`` takes only
        ``none`` and ``sum-raw`` (its own raw sum of the image and the mirror).
    units_per_read : int
        Units per store read: memory only; the results do not depend on it.

    Returns
    -------
    list of ndarray of float64, shape (T_s, D'), unit rows
        One per set, in order; ``D' = 2 D`` for ``concat``.

    Raises
    ------
    MissingItemsError
        A template has no row with features (all skipped at extraction).
    PoolingError
        An unknown mode or fusion, or a template whose weighted sum is zero or not finite.
    StoreError
        A damaged row, or mirrored features asked of a store without them.
    """
    check_pooling(mode, flip_fusion)
    if units_per_read < 1:
        raise PoolingError(f"Expected units_per_read >= 1, but got {units_per_read}")
    for item in sets:
        _check_nonempty(item)
    needed = np.zeros(store.info.n_items, dtype=bool)
    for item in sets:
        needed[item.rows] = True
    read = np.flatnonzero(needed)
    position = np.cumsum(needed, dtype=np.int64) - 1
    del needed
    n_units = -(-read.size // UNIT_ROWS)
    plans = [_plan(item, position, n_units, mode) for item in sets]
    del position
    flips = flip_fusion != "none"
    width = 2 * store.info.dim if flip_fusion == "concat" else store.info.dim
    pooled = [np.zeros((plan.n_templates, width), dtype=np.float64) for plan in plans]
    # Two reads in flight (the next one read and checked in a thread while this one is
    # converted to float64 and summed here: the two halves of the work about equal), each
    # of half the units asked for: the same memory. The sums are added here alone, in unit
    # order, so the results are those of one read at a time.
    step = max(1, units_per_read // 2) * UNIT_ROWS
    starts = list(range(0, read.size, step))
    buffers: list[FloatArray] = []  # the float64 rows of this read, reused

    def load(k: int) -> list[tuple[npt.NDArray[np.floating[Any]], FloatArray | None]]:
        rows = read[starts[k] : starts[k] + step]
        unit, norms32 = store.read_rows(rows)
        unit_flip = norms_flip = None
        if flips:
            unit_flip, flip32 = store.read_rows(rows, flip=True)
            norms_flip = flip32.astype(np.float64)
        return _streams(mode, flip_fusion, unit, norms32.astype(np.float64), unit_flip, norms_flip)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="facebench-read") as pool:
        upcoming = pool.submit(load, 0) if starts else None
        for k, start in enumerate(starts):
            assert upcoming is not None
            loaded = upcoming.result()
            upcoming = pool.submit(load, k + 1) if k + 1 < len(starts) else None
            streams = _as_float64(loaded, buffers)
            stop = min(start + step, read.size)
            for u in range(start // UNIT_ROWS, -(-stop // UNIT_ROWS)):
                for out, plan in zip(pooled, plans, strict=True):
                    _add_unit(out, plan, u, start, streams)
    why = "its weighted item features cancel out, its detector scores are 0, or an input holds NaN"
    return [
        normalize_sets(out, item.templates.ids, "template", why)
        for out, item in zip(pooled, sets, strict=True)
    ]
