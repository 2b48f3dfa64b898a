"""Store + protocol -> scores: features read once per needed item, fused, pooled, compared.

Scores are cosine similarities in float64 from the store's float32 unit features. Pair
protocols compare items; video protocols (YTF) pool each video's frames first; template
protocols (IJB) pool each template's items (``facebench.pooling``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from facebench.errors import FacebenchError, MissingItemsError, StoreError
from facebench.fusion import FLIP_FUSIONS
from facebench.store import FeatureStore

VIDEO_POOLING = ("mean", "first", "pair-mean")


def read_fused(
    store: FeatureStore, rows: npt.NDArray[np.int64], flip_fusion: str
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Unit features of ``rows`` after flip fusion (float64), and the raw norms.

    Raises
    ------
    StoreError
        When a flip fusion is asked of a store without mirrored features.
    """
    if flip_fusion not in FLIP_FUSIONS:
        raise FacebenchError(
            f"Expected --flip-fusion in {sorted(FLIP_FUSIONS)}, but got {flip_fusion!r}"
        )
    unit, norms = store.read_rows(rows)
    unit_flip = norms_flip = None
    if flip_fusion != "none":
        if not store.info.has_flip:
            raise StoreError(
                f"{store.info.path}: --flip-fusion {flip_fusion} needs mirrored-image "
                "features, but the store has none; extract with --flip or use --flip-fusion none"
            )
        f_unit, f_norms = store.read_rows(rows, flip=True)
        unit_flip, norms_flip = f_unit.astype(np.float64), f_norms.astype(np.float64)
    norms64 = norms.astype(np.float64)
    fused = FLIP_FUSIONS[flip_fusion](unit.astype(np.float64), norms64, unit_flip, norms_flip)
    return fused, norms64


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
