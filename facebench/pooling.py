"""Template and video pooling: many item features -> one unit-norm feature per set.

Templates (IJB-A, IJB-B, IJB-C; PROTOCOLS.md, "Template pooling") come as membership rows
(:class:`protocols._types.Templates`): row ``i`` puts item ``i`` (a face box, with its unit
feature and raw norm from the store) into template ``item_template[i]`` and media
``item_media[i]`` (one still image, or one video whose frames are several rows). Videos
(YouTube Faces; PROTOCOLS.md, "YTF") come as frame rows with a video index.

Flip fusion happens first, per item, exactly as :data:`facebench.fusion.FLIP_FUSIONS`
defines it; pooling then works on the fused per-item features. Every pooling mode ends by
L2-normalizing the pooled vector, so a comparison score is a dot product.

Every mode is one weighted sum per template, ``sum_i w_i x_i`` over the template's rows,
which equals the nested means and sums of its definition (a mean over a media is a sum with
weight ``1 / rows in the media``; the weights come from one stable sort by (template,
media) and :func:`numpy.bincount`). Templates are then taken by their number of rows: the
``k`` templates with ``L`` rows each are one batched product ``(k, 1, L) @ (k, L, D)``, a
few thousand rows (4 MB of float64) at a time. No Python loop runs over templates or media
(only over blocks and over the distinct template sizes), and beside the inputs and the
(T, D') output only a block of rows and O(M) integer arrays are held. At IJB-C scale
(469,375 rows, D = 512, 23,124 templates) a mode takes about 0.4 s on one core.

The ``insightface`` mode, checked step by step against insightface's own scripts
(``recognition/arcface_torch/eval_ijbc.py``, ``recognition/_evaluation_/ijb/ijb_11.py`` and
``ijb_1n.py``, in the block after "Step3: Get Template Features" and in
``image2template_feature``), all three with ``use_norm_score = use_detector_score =
use_flip_test = True``:

1. Flip (``use_flip_test``): the model's raw, unnormalized outputs for the image and its
   mirror are added (``img_feats[:, :D] + img_feats[:, D:]``, "add --- F2"; the concatenation
   "F1" is commented out). Without it, the image's raw output alone.
2. ``use_norm_score = True``: nothing is normalized per image (with ``False`` the fused
   vector would be L2-normalized per image here, before the detector score; that variant is
   not a facebench mode).
3. ``use_detector_score = True``: the fused raw vector is multiplied by the image's detector
   (faceness) score, the last column of ``*_name_5pts_score.txt``, after the flip sum.
4. ``image2template_feature``: for each template id (``np.unique``), its rows; for each of
   their media ids (``np.unique``), the mean of that media's rows (a single row as is); the
   media vectors are SUMMED (their normalization is commented out); the sum is L2-normalized
   (``sklearn.preprocessing.normalize`` in eval_ijbc.py and ijb_11.py, an explicit division
   in ijb_1n.py). Stills and video frames are not told apart: every row is grouped by its
   media id.

Here the raw vector is ``unit * norm`` from the store, computed in float64, so pooled
features agree with insightface's float32 arithmetic to about 1e-6. insightface leaves a
zero template vector at zero (every score 0) or divides by zero (NaN); facebench raises.
Without detector scores and flips, ``insightface`` points where ``norm`` does (a sum over
a template's media is their mean times their number).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from facebench.errors import FacebenchError
from facebench.fusion import FLIP_FUSIONS

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

# Rows per block x feature width (float64 elements): 4 MB per block, which stays in cache.
_BLOCK_ELEMENTS = 1 << 19

POOLING_MODES: dict[str, str] = {
    "mean": "mean of the template's unit item features, L2-normalized",
    "media": (
        "mean of unit item features within each media, then mean over the template's "
        "media, L2-normalized (facebench default)"
    ),
    "norm": (
        "as media but on raw features (unit feature x raw norm), so the raw norm weights "
        "each item, L2-normalized"
    ),
    "insightface": (
        "insightface eval_ijbc.py: raw features (image + mirror raw when flipped) x detector "
        "score, mean within each media, SUM over media, L2-normalized"
    ),
}
"""Template pooling modes: name -> one-line definition (CLI choices and reports)."""

INSIGHTFACE_FLIP_FUSIONS: tuple[str, ...] = ("none", "sum-raw")
"""The flip fusions the ``insightface`` mode accepts (its flip is the raw sum)."""

VIDEO_POOLING_MODES: dict[str, str] = {
    "mean": "mean of the video's unit frame features, L2-normalized (feature centre; default)",
    "first": (
        "mean of the unit features of the video's first n_frames frames by numeric frame "
        "number (all frames when it has fewer), L2-normalized"
    ),
}
"""Video pooling modes: name -> one-line definition."""


class PoolingError(FacebenchError):
    """Pooling inputs are inconsistent, or a set cannot be pooled into a unit vector."""


# ------------------------------------------------------------------------------ checks


def _features(name: str, x: npt.ArrayLike) -> npt.NDArray[np.floating[Any]]:
    a = np.asarray(x)
    if a.ndim != 2 or not np.issubdtype(a.dtype, np.floating):
        raise PoolingError(
            f"Expected `{name}` to be a 2-D float array (rows x dimensions), but got "
            f"shape {a.shape} and dtype {a.dtype}"
        )
    return a


def _vector(name: str, x: npt.ArrayLike, n: int, kind: str) -> npt.NDArray[Any]:
    a = np.asarray(x)
    if a.shape != (n,):
        raise PoolingError(f"Expected `{name}` of shape ({n},), one per row, but got {a.shape}")
    if kind == "int":
        if not np.issubdtype(a.dtype, np.integer):
            raise PoolingError(f"Expected integer `{name}`, but got dtype {a.dtype}")
        return a.astype(np.int64, copy=False)
    if not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
        raise PoolingError(f"Expected real-valued `{name}`, but got dtype {a.dtype}")
    a64 = a.astype(np.float64, copy=False)
    if not np.isfinite(a64).all():
        first = int(np.flatnonzero(~np.isfinite(a64))[0])
        raise PoolingError(
            f"Expected finite `{name}`, but got {a64[first]} at row {first}; fix the store "
            "or the protocol file it came from"
        )
    return a64


def _length(name: str, x: npt.ArrayLike) -> int:
    a = np.asarray(x)
    if a.ndim != 1:
        raise PoolingError(f"Expected 1-D `{name}`, but got shape {a.shape}")
    return int(a.shape[0])


def _index(name: str, x: npt.ArrayLike, n_rows: int, n_sets: int, what: str) -> IntArray:
    a = _vector(name, x, n_rows, "int")
    if isinstance(n_sets, bool) or not isinstance(n_sets, int | np.integer) or n_sets < 0:
        raise PoolingError(f"Expected the number of {what}s to be an integer >= 0, got {n_sets!r}")
    if a.size and (int(a.min()) < 0 or int(a.max()) >= n_sets):
        bad = int(a[(a < 0) | (a >= n_sets)][0])
        raise PoolingError(
            f"Expected `{name}` in 0..{n_sets - 1} ({n_sets} {what}s), but got {bad}"
        )
    return a


def _set_name(i: int, ids: npt.NDArray[Any] | None, what: str) -> str:
    return f"{what} {ids[i]}" if ids is not None else f"{what} at index {i}"


def _require_rows(
    rows_per_set: IntArray, ids: npt.NDArray[Any] | None, what: str, items: str
) -> None:
    empty = np.flatnonzero(rows_per_set == 0)
    if empty.size:
        names = ", ".join(_set_name(int(i), ids, what) for i in empty[:5])
        more = f" ({empty.size} in all)" if empty.size > 5 else ""
        raise PoolingError(
            f"Expected every {what} to have {items} with features, but got "
            f"{_set_name(int(empty[0]), ids, what)} with no {items} with features "
            f"(empty: {names}{more})"
        )


# ----------------------------------------------------------------------- segment sums


RowSource = Callable[[IntArray], npt.NDArray[np.float64]]
"""Rows (indices into the inputs) -> their vectors as float64, shape (len(rows), width)."""


class _Gather:
    """Rows of one feature array as float64, gathered into reused buffers.

    The returned array is a view of a buffer, valid until the next call. Reusing buffers
    of a few MB keeps the blocks in cache and avoids page faults from fresh allocations.
    With ``table_rows``, row ``i`` is ``features[table_rows[i]]`` (a table of distinct
    items that membership rows point into), so the rows are never copied as a whole.
    Float32 rows are converted to float64 a block at a time (exactly: every float32 is a
    float64), so pooling float32 input gives the same numbers as its float64 copy.
    """

    def __init__(
        self,
        features: npt.NDArray[np.floating[Any]],
        cap: int,
        table_rows: IntArray | None = None,
    ) -> None:
        self.features = features
        self.table_rows = table_rows
        self.same = np.empty((cap, features.shape[1]), dtype=features.dtype)
        self.f64 = np.empty((cap, features.shape[1]), dtype=np.float64)

    def __call__(self, rows: IntArray) -> npt.NDArray[np.float64]:
        n = rows.size
        if self.table_rows is not None:
            rows = self.table_rows[rows]
        if self.features.dtype == np.float64:
            return np.take(self.features, rows, axis=0, out=self.f64[:n])
        np.take(self.features, rows, axis=0, out=self.same[:n])
        self.f64[:n] = self.same[:n]
        return self.f64[:n]


@dataclass(frozen=True)
class _Segments:
    """Rows grouped by segment (template or video) for weighted segment sums.

    Segments are ordered by their number of rows, and rows by segment in that order, so
    that the ``k`` segments of one length ``L`` are ``k`` consecutive runs of ``L`` rows: their
    weighted sums are one batched product ``(k, 1, L) @ (k, L, width)``. The only Python
    loops run over blocks of rows and over the distinct segment lengths, never over
    segments (except segments longer than a block, summed block by block).
    """

    n_segments: int
    cap: int  # rows per block
    order: IntArray  # rows, by (segment length, segment)
    by_length: IntArray  # segments, by length
    start: IntArray  # (n_segments + 1,) offsets into `order` of the segments in `by_length`
    runs: tuple[tuple[int, int, int], ...]  # (length, first, stop) into `by_length`

    @classmethod
    def of(
        cls, segment: IntArray, n_segments: int, width: int, grouped: IntArray | None = None
    ) -> _Segments:
        """Plan the sums of ``segment``'s rows.

        ``grouped``, when given, is a permutation of the rows that lists the rows of segment
        0, then those of segment 1, and so on (any order within a segment); computed by a
        stable sort when None.
        """
        if grouped is None:
            grouped = np.argsort(segment, kind="stable")
        length = np.bincount(segment, minlength=n_segments)
        by_length = np.argsort(length, kind="stable")
        sorted_length = length[by_length]
        start = np.concatenate(([0], np.cumsum(sorted_length))).astype(np.int64)
        # Move each segment's run of rows from its place in `grouped` to its place here.
        segment_start = np.cumsum(length) - length
        shift = np.repeat(segment_start[by_length] - start[:-1], sorted_length)
        order = grouped[np.arange(segment.size) + shift]
        distinct, first = np.unique(sorted_length, return_index=True)
        stop = np.append(first[1:], n_segments)
        runs = tuple(
            (int(n), int(a), int(b)) for n, a, b in zip(distinct, first, stop, strict=True) if n > 0
        )
        cap = max(1, _BLOCK_ELEMENTS // max(width, 1))
        return cls(n_segments, cap, order, by_length, start, runs)

    def weighted_sum(self, rows_of: RowSource, weights: FloatArray, width: int) -> FloatArray:
        """``out[s] = sum_i weights[i] * rows_of([i])`` over the rows ``i`` of segment ``s``."""
        out = np.zeros((self.n_segments, width), dtype=np.float64)
        for length, first, stop in self.runs:
            if length > self.cap:
                for s in range(first, stop):  # only segments longer than a block
                    total = np.zeros(width, dtype=np.float64)
                    for a in range(int(self.start[s]), int(self.start[s + 1]), self.cap):
                        rows = self.order[a : min(a + self.cap, int(self.start[s + 1]))]
                        total += weights[rows] @ rows_of(rows)
                    out[self.by_length[s]] = total
                continue
            per_block = self.cap // length
            for a in range(first, stop, per_block):
                b = min(a + per_block, stop)
                rows = self.order[self.start[a] : self.start[b]]
                x = rows_of(rows).reshape(b - a, length, width)
                w = weights[rows].reshape(b - a, 1, length)
                out[self.by_length[a:b]] = np.matmul(w, x)[:, 0, :]
        return out


def normalize_sets(
    pooled: FloatArray, ids: npt.NDArray[Any] | None, what: str, why: str
) -> FloatArray:
    """L2-normalize the rows of ``pooled`` in place (and return it)."""
    # Row blocks: np.linalg.norm squares its whole input first; each row's norm is the
    # same number whatever the block (one reduction per row).
    step = max(1, _BLOCK_ELEMENTS // max(pooled.shape[1], 1))
    norms = np.concatenate(
        [np.zeros(0)]
        + [np.linalg.norm(pooled[a : a + step], axis=1) for a in range(0, len(pooled), step)]
    )
    bad = ~(np.isfinite(norms) & (norms > 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        kind = "a zero vector" if norms[i] == 0 else "a non-finite vector"
        raise PoolingError(
            f"Expected a non-zero, finite pooled feature for every {what}, but "
            f"{_set_name(i, ids, what)} pooled to {kind}, which cannot be L2-normalized "
            f"({int(bad.sum())} {what}s in all; {why})"
        )
    pooled /= norms[:, None]  # in place: the same quotients without a second (T, D) array
    return pooled


# ------------------------------------------------------------------------- templates


def check_pooling(mode: str, flip_fusion: str) -> None:
    """Raise :class:`PoolingError` unless ``mode`` and ``flip_fusion`` are known and go
    together (``insightface`` pooling takes only its own raw flip sum)."""
    if mode not in POOLING_MODES:
        raise PoolingError(f"Expected a pooling mode in {sorted(POOLING_MODES)}, but got {mode!r}")
    if flip_fusion not in FLIP_FUSIONS:
        raise PoolingError(
            f"Expected a flip fusion in {sorted(FLIP_FUSIONS)}, but got {flip_fusion!r}"
        )
    if mode == "insightface" and flip_fusion not in INSIGHTFACE_FLIP_FUSIONS:
        raise PoolingError(
            f"Expected flip fusion 'none' or 'sum-raw' with pooling mode 'insightface', but got "
            f"{flip_fusion!r}: insightface's flip test adds the raw features of the image and "
            "its mirror ('sum-raw'); use another pooling mode for 'sum-unit' or 'concat'"
        )


def pool_templates(
    unit: npt.ArrayLike,
    norms: npt.ArrayLike,
    item_template: npt.ArrayLike,
    item_media: npt.ArrayLike,
    n_templates: int,
    *,
    mode: str = "media",
    unit_flip: npt.ArrayLike | None = None,
    norms_flip: npt.ArrayLike | None = None,
    flip_fusion: str = "none",
    item_score: npt.ArrayLike | None = None,
    template_ids: npt.ArrayLike | None = None,
    item_rows: npt.ArrayLike | None = None,
) -> FloatArray:
    """Pool membership rows into one unit-norm feature per template.

    Parameters
    ----------
    unit : array of float, shape (M, D), or (N, D) with ``item_rows``
        Unit-norm feature of each row's item (rows may repeat an item). Any float dtype;
        float32 rows are converted to float64 a block at a time (exact), so float32 input
        pools to the same numbers as its float64 copy without a float64 copy of the whole.
    norms : array of float, shape (M,)
        Raw (pre-normalization) norm of each row's feature.
    item_template : array of int, shape (M,)
        Template index of each row, in ``0 .. n_templates - 1``.
    item_media : array of int, shape (M,)
        Media id of each row (any integers; compared within a template).
    n_templates : int
        T. Every template must have at least one row.
    mode : str
        A key of :data:`POOLING_MODES`. With ``f_i`` the fused unit feature of row ``i``,
        ``r_i`` its raw norm and ``s_i`` its detector score:

        - ``mean``: ``mean_i f_i`` over the template's rows;
        - ``media`` (default): ``mean over media of (mean_i f_i within the media)``;
        - ``norm``: as ``media`` on ``r_i f_i``, where ``r_i`` is ``norms`` without flips
          and ``(norms + norms_flip) / 2`` with a flip fusion;
        - ``insightface``: ``sum over media of (mean_i s_i g_i within the media)`` with
          ``g_i = unit * norms`` (flip ``none``) or ``unit * norms + unit_flip *
          norms_flip`` (flip ``sum-raw``), and ``s_i = 1`` when ``item_score`` is None.

        Each result is then L2-normalized.
    unit_flip : array of float, shape (M, D), or (N, D) with ``item_rows``, optional
        Unit feature of each row's mirrored image; required by every flip fusion but
        ``none``.
    norms_flip : array of float, shape (M,), optional
        Raw norms of the mirrored features; required by ``sum-raw`` and by mode ``norm``
        with a flip fusion.
    flip_fusion : str
        A key of :data:`facebench.fusion.FLIP_FUSIONS`, applied to each row before pooling.
        Mode ``insightface`` accepts only ``none`` and ``sum-raw`` (its own raw flip sum).
    item_score : array of float, shape (M,), optional
        Detector score of each row (IJB-B/C). Used by ``insightface`` only; the other modes
        are defined without detector scores and ignore it.
    template_ids : array, shape (T,), optional
        Template ids, used in error messages only.
    item_rows : array of int, shape (M,), optional
        When given, ``unit`` and ``unit_flip`` are tables of N distinct items and row ``i``
        uses their row ``item_rows[i]`` (every other per-row input stays per row). The
        result equals passing ``unit[item_rows]``, without that (M, D) copy.

    Returns
    -------
    ndarray of float64, shape (T, D'), with unit rows
        Row ``t`` is template ``t``'s feature; ``D' = 2 D`` for ``concat``, else ``D``.

    Raises
    ------
    PoolingError
        On disagreeing shapes, an unknown mode or fusion, a missing flip input, a template
        without rows, or a template whose pooled vector is zero or not finite.
    """
    check_pooling(mode, flip_fusion)
    u = _features("unit", unit)
    d = u.shape[1]
    table: IntArray | None = None
    if item_rows is None:
        m = u.shape[0]
    else:
        m = _length("item_rows", item_rows)
        table = _index("item_rows", item_rows, m, u.shape[0], "item table row")
    r = _vector("norms", norms, m, "float")
    t = _index("item_template", item_template, m, n_templates, "template")
    media = _vector("item_media", item_media, m, "int")
    ids = None if template_ids is None else np.asarray(template_ids)
    if ids is not None and ids.shape != (n_templates,):
        raise PoolingError(
            f"Expected `template_ids` of shape ({n_templates},), but got {ids.shape}"
        )
    uf: npt.NDArray[np.floating[Any]] | None = None
    rf: FloatArray | None = None
    if flip_fusion != "none":
        if unit_flip is None:
            raise PoolingError(
                f"Expected `unit_flip` (the mirrored images' features) for flip fusion "
                f"{flip_fusion!r}, but got None; import the store with --flip-features"
            )
        uf = _features("unit_flip", unit_flip)
        if uf.shape != u.shape:
            raise PoolingError(
                f"Expected `unit_flip` of the shape of `unit` {u.shape}, but got {uf.shape}"
            )
        if flip_fusion == "sum-raw" or mode == "norm":
            if norms_flip is None:
                raise PoolingError(
                    f"Expected `norms_flip` for flip fusion {flip_fusion!r} with mode "
                    f"{mode!r}, but got None"
                )
            rf = _vector("norms_flip", norms_flip, m, "float")
    score = None
    if mode == "insightface" and item_score is not None:
        score = _vector("item_score", item_score, m, "float")

    rows_per_template = np.bincount(t, minlength=n_templates)
    _require_rows(rows_per_template, ids, "template", "items")
    width = 2 * d if flip_fusion == "concat" else d

    weights, grouped = pooling_weights(t, media, n_templates, mode, score)
    if mode == "norm":
        weights = weights * (r if rf is None else (r + rf) / 2.0)

    segments = _Segments.of(t, n_templates, width, grouped)
    cap = segments.cap
    if mode == "insightface":
        # raw = unit x norm (+ mirror unit x mirror norm): each norm joins its row's weight.
        pooled = segments.weighted_sum(_Gather(u, cap, table), weights * r, d)
        if flip_fusion == "sum-raw":
            assert uf is not None and rf is not None  # checked above
            pooled += segments.weighted_sum(_Gather(uf, cap, table), weights * rf, d)
    elif flip_fusion == "none":
        pooled = segments.weighted_sum(_Gather(u, cap, table), weights, d)
    else:
        assert uf is not None  # checked above
        pooled = segments.weighted_sum(
            _fused_rows(flip_fusion, u, r, uf, rf, cap, table), weights, width
        )
    return normalize_sets(
        pooled,
        ids,
        "template",
        "its weighted item features cancel out, its detector scores are 0, or an input holds NaN",
    )


def pooling_weights(
    item_template: IntArray,
    item_media: IntArray,
    n_templates: int,
    mode: str,
    item_score: FloatArray | None = None,
) -> tuple[FloatArray, IntArray | None]:
    """The weight of each membership row in its template's sum, before any raw norm.

    Every mode of :data:`POOLING_MODES` pools template ``t`` as
    ``normalize(sum_i w_i n_i x_i)`` over its rows ``i``, where ``x_i`` is the row's
    (fused) unit feature and ``n_i`` a norm factor: 1 for ``mean`` and ``media``, the raw
    norm (or the mean of the image's and mirror's) for ``norm``, and for ``insightface``
    the raw norm of each of the two raw features it adds. This function gives ``w_i``:

    - ``mean``: ``1 / rows of the template``;
    - ``media`` and ``norm``: ``1 / (rows of the row's media x media of the template)``;
    - ``insightface``: ``score_i / rows of the row's media`` (``score_i = 1`` without
      detector scores): the mean within a media, summed over media.

    Returns
    -------
    weights : ndarray of float64, shape (M,)
    grouped : ndarray of int64, shape (M,), or None
        The rows sorted stably by (template, media) (None for ``mean``), which lists each
        template's rows together.
    """
    if mode == "mean":
        rows_per_template = np.bincount(item_template, minlength=n_templates)
        return 1.0 / rows_per_template[item_template], None
    # One group per (template, media) pair: mean over a group's rows, then over (or, for
    # insightface, sum over) the template's groups. One stable sort by (template, media)
    # finds the groups and lists each template's rows together.
    grouped, group, group_template = _media_groups(item_template, item_media, n_templates)
    rows_per_group = np.bincount(group)
    if mode == "insightface":
        weights = 1.0 / rows_per_group[group]  # mean within a media, SUM over media
        return (weights if item_score is None else weights * item_score), grouped
    media_per_template = np.bincount(group_template, minlength=n_templates)
    return 1.0 / (rows_per_group[group] * media_per_template[item_template]), grouped


def _media_groups(
    template: IntArray, media: IntArray, n_templates: int
) -> tuple[IntArray, IntArray, IntArray]:
    """Group rows by (template, media).

    Returns
    -------
    grouped : ndarray of int64, shape (M,)
        The rows sorted by (template, media), stably.
    group : ndarray of int64, shape (M,)
        Each row's group, numbered 0.. in (template, media) order.
    group_template : ndarray of int64, shape (n_groups,)
        Each group's template.
    """
    if template.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty
    low, high = int(media.min()), int(media.max())
    if (high - low + 1) * max(n_templates, 1) < 2**62:
        media_code, n_codes = media - low, high - low + 1
    else:  # media ids too sparse to pack beside the template: number them densely first
        _, media_code = np.unique(media, return_inverse=True)
        media_code = media_code.reshape(-1)
        n_codes = int(media_code.max()) + 1
    key = template * n_codes + media_code
    grouped = np.argsort(key, kind="stable")
    key_sorted = key[grouped]
    new_group = np.concatenate(([True], key_sorted[1:] != key_sorted[:-1]))
    group = np.empty(template.size, dtype=np.int64)
    group[grouped] = np.cumsum(new_group) - 1
    group_template = key_sorted[new_group] // n_codes
    return grouped, group, group_template


def _fused_rows(
    flip_fusion: str,
    unit: npt.NDArray[np.floating[Any]],
    norms: FloatArray,
    unit_flip: npt.NDArray[np.floating[Any]],
    norms_flip: FloatArray | None,
    cap: int,
    table: IntArray | None = None,
) -> RowSource:
    """Rows -> their fused unit features, exactly as :data:`FLIP_FUSIONS` defines them."""
    fuse = FLIP_FUSIONS[flip_fusion]
    image, mirror = _Gather(unit, cap, table), _Gather(unit_flip, cap, table)

    def fused(rows: IntArray) -> npt.NDArray[np.float64]:
        nf = None if norms_flip is None else norms_flip[rows]
        return np.asarray(fuse(image(rows), norms[rows], mirror(rows), nf), dtype=np.float64)

    return fused


# ---------------------------------------------------------------------------- videos


def first_frames(
    item_video: npt.ArrayLike, frame_numbers: npt.ArrayLike, n_frames: int
) -> BoolArray:
    """Mark each video's first ``n_frames`` frames by numeric frame number.

    Parameters
    ----------
    item_video : array of int, shape (M,)
        Video index of each frame row.
    frame_numbers : array of int, shape (M,)
        Frame number of each row (``<vid>.<frame>.jpg``), compared as integers.
    n_frames : int
        N >= 1. A video with fewer frames keeps all of them (FaceNet used N = 100).

    Returns
    -------
    ndarray of bool, shape (M,)
        True for the rows kept. Use it to select rows for :func:`pool_videos` or
        :func:`mean_pair_similarity` (FaceNet's YTF figure: mean pair similarity of the
        first 100 frames).

    Raises
    ------
    PoolingError
        When a video lists the same frame number twice, or ``n_frames < 1``.
    """
    v = _vector("item_video", item_video, _length("item_video", item_video), "int")
    f = _vector("frame_numbers", frame_numbers, v.size, "int")
    if isinstance(n_frames, bool) or not isinstance(n_frames, int | np.integer) or n_frames < 1:
        raise PoolingError(f"Expected `n_frames` to be an integer >= 1, but got {n_frames!r}")
    order = np.lexsort((f, v))
    vs, fs = v[order], f[order]
    same = (vs[1:] == vs[:-1]) & (fs[1:] == fs[:-1])
    if same.any():
        j = int(np.flatnonzero(same)[0])
        raise PoolingError(
            f"Expected distinct frame numbers within a video, but video index {vs[j]} lists "
            f"frame {fs[j]} twice (rows {order[j]} and {order[j + 1]})"
        )
    run_start = np.flatnonzero(np.concatenate(([True], vs[1:] != vs[:-1])))
    position = np.arange(vs.size) - np.repeat(run_start, np.diff(np.append(run_start, vs.size)))
    keep = np.zeros(v.size, dtype=bool)
    keep[order[position < n_frames]] = True
    return keep


def pool_videos(
    unit: npt.ArrayLike,
    item_video: npt.ArrayLike,
    n_videos: int,
    *,
    mode: str = "mean",
    frame_numbers: npt.ArrayLike | None = None,
    n_frames: int | None = None,
) -> FloatArray:
    """Pool frame rows into one unit-norm feature per video (YouTube Faces).

    Parameters
    ----------
    unit : array of float, shape (M, D)
        Unit-norm feature of each frame.
    item_video : array of int, shape (M,)
        Video index of each row, in ``0 .. n_videos - 1``.
    n_videos : int
        V. Every video must have at least one frame.
    mode : str
        A key of :data:`VIDEO_POOLING_MODES`: ``mean`` (default; ArcFace's "feature centre")
        or ``first`` (the first ``n_frames`` frames by ``frame_numbers``, see
        :func:`first_frames`). Each is the mean of the unit frame features, L2-normalized.
    frame_numbers : array of int, shape (M,), optional
        Required by ``first``.
    n_frames : int, optional
        Required by ``first``, refused by ``mean``.

    Returns
    -------
    ndarray of float64, shape (V, D), with unit rows

    Raises
    ------
    PoolingError
        On disagreeing shapes, a video without frames, a missing or extra option, or a
        video whose mean feature is zero or not finite.
    """
    if mode not in VIDEO_POOLING_MODES:
        raise PoolingError(
            f"Expected a video pooling mode in {sorted(VIDEO_POOLING_MODES)}, but got {mode!r}"
        )
    u = _features("unit", unit)
    v = _index("item_video", item_video, u.shape[0], n_videos, "video")
    if mode == "first":
        if frame_numbers is None or n_frames is None:
            raise PoolingError(
                "Expected `frame_numbers` and `n_frames` for video pooling mode 'first', but "
                f"got frame_numbers={'None' if frame_numbers is None else '...'} and "
                f"n_frames={n_frames!r}"
            )
        keep = first_frames(v, frame_numbers, n_frames)
        rows = np.flatnonzero(keep)
        u, v = u[rows], v[rows]
    elif n_frames is not None:
        raise PoolingError(
            f"Expected `n_frames` only with video pooling mode 'first', but got "
            f"n_frames={n_frames!r} with mode {mode!r}"
        )
    frames_per_video = np.bincount(v, minlength=n_videos)
    _require_rows(frames_per_video, None, "video", "frames")
    weights = 1.0 / frames_per_video[v]
    segments = _Segments.of(v, n_videos, u.shape[1])
    pooled = segments.weighted_sum(_Gather(u, segments.cap), weights, u.shape[1])
    return normalize_sets(pooled, None, "video", "its frame features cancel out or hold NaN")


def mean_pair_similarity(
    unit: npt.ArrayLike,
    item_video: npt.ArrayLike,
    left: npt.ArrayLike,
    right: npt.ArrayLike,
    *,
    chunk: int = 65536,
) -> FloatArray:
    """Mean of all frame-pair cosine similarities of each video pair.

    For pair ``p`` with frames ``a_1..a_m`` of video ``left[p]`` and ``b_1..b_n`` of video
    ``right[p]``, the score is ``(1 / (m n)) sum_{j, k} a_j . b_k``, the mean of the
    ``m x n`` cosine matrix. The dot product is bilinear, so this equals ``mean_j a_j .
    mean_k b_k`` (the UNnormalized mean features): computed that way, exactly the same
    number up to rounding, in O(V D) memory, with pairs taken ``chunk`` at a time.

    Parameters
    ----------
    unit : array of float, shape (M, D)
        Unit-norm feature of each frame (select rows first, e.g. with
        :func:`first_frames`, for FaceNet's first-100-frames figure).
    item_video : array of int, shape (M,)
        Video index of each row (non-negative).
    left, right : array of int, shape (P,)
        Video indices of each pair; each must have at least one frame row.
    chunk : int
        Pairs scored at a time (memory ``2 x chunk x D`` float64).

    Returns
    -------
    ndarray of float64, shape (P,)
    """
    if isinstance(chunk, bool) or not isinstance(chunk, int | np.integer) or chunk < 1:
        raise PoolingError(f"Expected `chunk` to be an integer >= 1, but got {chunk!r}")
    u = _features("unit", unit)
    vid = _vector("item_video", item_video, u.shape[0], "int")
    p = _length("left", left)
    a = _vector("left", left, p, "int")
    b = _vector("right", right, p, "int")
    n_videos = 1 + max(
        int(vid.max()) if vid.size else -1,
        int(a.max()) if a.size else -1,
        int(b.max()) if b.size else -1,
    )
    v = _index("item_video", vid, u.shape[0], n_videos, "video")
    for name, ref in (("left", a), ("right", b)):
        if ref.size and int(ref.min()) < 0:
            raise PoolingError(f"Expected non-negative video indices in `{name}`, got {ref.min()}")
    frames_per_video = np.bincount(v, minlength=n_videos)
    used = np.zeros(n_videos, dtype=bool)
    used[a] = True
    used[b] = True
    empty = np.flatnonzero(used & (frames_per_video == 0))
    if empty.size:
        raise PoolingError(
            f"Expected every video of a pair to have frames with features, but got video "
            f"index {empty[0]} with no frames ({empty.size} such videos)"
        )
    weights = 1.0 / np.maximum(frames_per_video, 1)[v]
    segments = _Segments.of(v, n_videos, u.shape[1])
    means = segments.weighted_sum(_Gather(u, segments.cap), weights, u.shape[1])
    out = np.empty(p, dtype=np.float64)
    for start in range(0, p, int(chunk)):
        sl = slice(start, start + int(chunk))
        out[sl] = np.einsum("ij,ij->i", means[a[sl]], means[b[sl]])
    return out
