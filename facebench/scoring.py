"""Store + protocol -> scores: features read once per needed item, fused, pooled, compared.

Scores are cosine similarities in float64 from the store's float32 unit features. Pair
protocols compare items; video protocols (YTF) pool each video's frames first; template
protocols (IJB) pool each template's items (``facebench.pooling``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from facebench.errors import FacebenchError, MissingItemsError, StoreError
from facebench.fusion import FLIP_FUSIONS
from facebench.store import FeatureStore

VIDEO_POOLING = ("mean", "first", "pair-mean")
READ_BLOCK_BYTES = 1 << 24
"""Float32 feature bytes per :meth:`FeatureStore.read_rows` call in :func:`read_features`
(16 MiB: below glibc's largest mmap threshold, so the blocks' buffers are reused rather
than mapped and faulted in afresh)."""


def _check_flip_fusion(store: FeatureStore, flip_fusion: str) -> None:
    if flip_fusion not in FLIP_FUSIONS:
        raise FacebenchError(
            f"Expected --flip-fusion in {sorted(FLIP_FUSIONS)}, but got {flip_fusion!r}"
        )
    if flip_fusion != "none" and not store.info.has_flip:
        raise StoreError(
            f"{store.info.path}: --flip-fusion {flip_fusion} needs mirrored-image "
            "features, but the store has none; extract with --flip or use --flip-fusion none"
        )


def read_fused(
    store: FeatureStore, rows: npt.NDArray[np.int64], flip_fusion: str
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Unit features of ``rows`` after flip fusion (float64), and the raw norms.

    Raises
    ------
    StoreError
        When a flip fusion is asked of a store without mirrored features.
    """
    _check_flip_fusion(store, flip_fusion)
    unit, norms = store.read_rows(rows)
    unit_flip = norms_flip = None
    if flip_fusion != "none":
        f_unit, f_norms = store.read_rows(rows, flip=True)
        unit_flip, norms_flip = f_unit.astype(np.float64), f_norms.astype(np.float64)
    norms64 = norms.astype(np.float64)
    fused = FLIP_FUSIONS[flip_fusion](unit.astype(np.float64), norms64, unit_flip, norms_flip)
    return fused, norms64


def read_features(
    store: FeatureStore,
    rows: npt.NDArray[np.int64],
    flip_fusion: str,
    *,
    flip: bool = False,
    block_rows: int | None = None,
) -> tuple[npt.NDArray[np.floating[Any]], npt.NDArray[np.float64]]:
    """:func:`read_fused` for many rows: the same values, in about half the memory.

    Rows are read ``block_rows`` at a time into one array, so beside the result only a
    block is held (one :meth:`FeatureStore.read_rows` call holds two copies of what it
    returns). With ``flip_fusion="none"`` the unit features stay the store's float32:
    their float64 values are exactly :func:`read_fused`'s, and consumers convert a block
    at a time (``facebench.pooling`` does). Any other fusion is applied per block in
    float64, exactly as :func:`read_fused` does (every fusion works row by row).

    Parameters
    ----------
    flip : bool
        Read the mirrored images' features and norms instead, unfused (``flip_fusion``
        must be ``"none"``); for pooling modes that combine raw flips themselves.
    block_rows : int, optional
        Rows per read; by default ``READ_BLOCK_BYTES`` of float32 features.

    Returns
    -------
    unit : ndarray, shape (len(rows), D) float32, or (len(rows), D') float64 when fused
    norms : ndarray of float64, shape (len(rows),)
        The raw norms (of the mirrored images with ``flip``).

    Raises
    ------
    StoreError
        When a flip fusion or ``flip`` is asked of a store without mirrored features.
    """
    _check_flip_fusion(store, flip_fusion)
    if flip and flip_fusion != "none":
        raise FacebenchError(f"Expected flip_fusion 'none' with flip=True, got {flip_fusion!r}")
    rows = np.asarray(rows, dtype=np.int64)
    n, dim = rows.size, store.info.dim
    if block_rows is None:
        block_rows = max(1, READ_BLOCK_BYTES // (4 * max(dim, 1)))
    norms = np.empty(n, dtype=np.float64)
    if flip_fusion == "none":
        unit: npt.NDArray[np.floating[Any]] = np.empty((n, dim), dtype=np.float32)
        for start in range(0, n, block_rows):
            stop = min(start + block_rows, n)
            unit[start:stop], norms[start:stop] = store.read_rows(rows[start:stop], flip=flip)
        if n == 0:
            store.read_rows(rows, flip=flip)  # the same checks as a read of no rows
        return unit, norms
    fused, norms[: min(block_rows, n)] = read_fused(store, rows[:block_rows], flip_fusion)
    unit = np.empty((n, fused.shape[1]), dtype=np.float64)  # the fusion sets the width
    unit[: fused.shape[0]] = fused
    for start in range(block_rows, n, block_rows):
        stop = min(start + block_rows, n)
        unit[start:stop], norms[start:stop] = read_fused(store, rows[start:stop], flip_fusion)
    return unit, norms


def _first_appearance(left: Sequence[str], right: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Distinct keys in order of first appearance (so errors name the first ones the file
    needs), and each pair side's position among them."""
    position: dict[str, int] = {}
    inverse = np.fromiter(
        (position.setdefault(k, len(position)) for k in (*left, *right)),
        dtype=np.int64,
        count=len(left) + len(right),
    )
    return list(position), inverse


def pair_scores(
    store: FeatureStore, left: tuple[str, ...], right: tuple[str, ...], flip_fusion: str
) -> npt.NDArray[np.float64]:
    """Cosine scores of item pairs (float64), features read once per distinct item.

    Raises
    ------
    MissingItemsError
        When the store lacks ids the pairs need (count and the first five).
    """
    keys, inverse = _first_appearance(left, right)
    fused, _ = read_fused(store, store.index_of(keys), flip_fusion)
    n = len(left)
    return np.einsum("ij,ij->i", fused[inverse[:n]], fused[inverse[n:]])


def video_frames(
    store: FeatureStore, videos: Sequence[str]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The store rows of each video's frames (ids under ``<video>/``).

    Returns
    -------
    rows, item_video, frame_numbers : ndarray of int64
        Row of every frame, the position of its video in ``videos``, and its frame number
        (YTF names frames ``aligned_detect_<vid>.<frame>.jpg``).

    Raises
    ------
    MissingItemsError
        Videos without any frame in the store (count and first five).
    """
    from protocols.ytf import frame_number

    wanted = {v: i for i, v in enumerate(videos)}
    rows: list[int] = []
    owner: list[int] = []
    frames: list[int] = []
    for row, item in enumerate(store.ids):
        folder, _, name = item.rpartition("/")
        index = wanted.get(folder)
        if index is not None:
            rows.append(row)
            owner.append(index)
            frames.append(frame_number(name))
    item_video = np.asarray(owner, dtype=np.int64)
    present = np.zeros(len(videos), dtype=bool)
    present[item_video] = True
    if not present.all():
        missing = [v for v, ok in zip(videos, present, strict=True) if not ok]
        raise MissingItemsError(
            f"{store.info.path}: Expected frames of every video, but {len(missing)} of"
            f" {len(videos)} videos have none in the store (first: {', '.join(missing[:5])});"
            " extract the video folders (facebench extract ROOT --protocol ytf)"
        )
    return np.asarray(rows, dtype=np.int64), item_video, np.asarray(frames, dtype=np.int64)


def video_pair_scores(
    store: FeatureStore,
    left: tuple[str, ...],
    right: tuple[str, ...],
    flip_fusion: str,
    video_pooling: str = "mean",
    n_frames: int | None = None,
) -> npt.NDArray[np.float64]:
    """Cosine scores of video pairs: frames fused, then pooled per video (or, for
    ``pair-mean``, the mean of all frame-pair cosines)."""
    from facebench.pooling import mean_pair_similarity, pool_videos

    if video_pooling not in VIDEO_POOLING:
        raise FacebenchError(
            f"Expected --video-pooling in {list(VIDEO_POOLING)}, but got {video_pooling!r}"
        )
    videos, inverse = _first_appearance(left, right)
    rows, item_video, frame_numbers = video_frames(store, videos)
    fused, _ = read_fused(store, rows, flip_fusion)
    n = len(left)
    if video_pooling == "pair-mean":
        return mean_pair_similarity(fused, item_video, inverse[:n], inverse[n:])
    pooled = pool_videos(
        fused,
        item_video,
        len(videos),
        mode=video_pooling,
        frame_numbers=frame_numbers,
        n_frames=n_frames,
    )
    return np.einsum("ij,ij->i", pooled[inverse[:n]], pooled[inverse[n:]])
