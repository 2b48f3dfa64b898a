"""Template and video pooling against slow loops written here (dicts of lists), a literal
re-implementation of insightface's template loop, and a hand-worked table."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from facebench import pooling
from facebench.errors import FacebenchError
from facebench.fusion import FLIP_FUSIONS
from facebench.pooling import (
    POOLING_MODES,
    PoolingError,
    first_frames,
    mean_pair_similarity,
    pool_templates,
    pool_videos,
)

# -- data ---------------------------------------------------------------------------------


def unit_rows(rng: np.random.Generator, n: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    raw = rng.standard_normal((n, d))
    norms = np.linalg.norm(raw, axis=1)
    return raw / norms[:, None], norms


def random_templates(seed: int, n_templates: int = 12, d: int = 6) -> dict:
    """Items shared by several templates, several media per template (some media ids
    reused across templates), single-row templates and single-row media."""
    rng = np.random.default_rng(seed)
    n_items = 40
    unit, norms = unit_rows(rng, n_items, d)
    unit_flip, norms_flip = unit_rows(rng, n_items, d)
    norms = norms * rng.uniform(0.5, 20, n_items)
    norms_flip = norms_flip * rng.uniform(0.5, 20, n_items)
    score = rng.uniform(0.1, 1.0, n_items)
    item_media = rng.integers(100, 110, n_items)  # an item's media is a property of the item
    rows_item, rows_template = [], []
    for t in range(n_templates):
        size = 1 if t % 5 == 0 else int(rng.integers(2, 12))
        items = rng.choice(n_items, size=size, replace=False)
        rows_item += items.tolist()
        rows_template += [t] * size
    rows = np.array(rows_item)
    perm = rng.permutation(rows.size)
    rows, item_template = rows[perm], np.array(rows_template)[perm]
    return {
        "unit": unit[rows].astype(np.float32).astype(np.float64),
        "norms": norms[rows],
        "item_template": item_template,
        "item_media": item_media[rows],
        "n_templates": n_templates,
        "unit_flip": unit_flip[rows],
        "norms_flip": norms_flip[rows],
        "item_score": score[rows],
    }


# -- references -----------------------------------------------------------------------------


def normalized(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def fused_item(case: dict, i: int, fusion: str) -> np.ndarray:
    u, n = case["unit"][i], case["norms"][i]
    uf, nf = case["unit_flip"][i], case["norms_flip"][i]
    if fusion == "none":
        return u
    if fusion == "sum-raw":
        return normalized(u * n + uf * nf)
    if fusion == "sum-unit":
        return normalized(u + uf)
    return np.concatenate((u, uf)) / math.sqrt(2.0)


def brute_pool(case: dict, mode: str, fusion: str = "none", scores: bool = True) -> np.ndarray:
    """Template by template, media by media, item by item."""
    by_template: dict[int, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    for i, (t, m) in enumerate(zip(case["item_template"], case["item_media"], strict=True)):
        by_template[int(t)][int(m)].append(i)
    out = []
    for t in range(case["n_templates"]):
        media = by_template[t]
        if mode == "mean":
            rows = [i for rows in media.values() for i in rows]
            vec = sum(fused_item(case, i, fusion) for i in rows) / len(rows)
        elif mode in ("media", "norm"):
            media_means = []
            for rows in media.values():
                total = 0.0
                for i in rows:
                    weight = 1.0
                    if mode == "norm":
                        n = case["norms"][i]
                        weight = n if fusion == "none" else (n + case["norms_flip"][i]) / 2
                    total = total + weight * fused_item(case, i, fusion)
                media_means.append(total / len(rows))
            vec = sum(media_means) / len(media_means)
        else:  # insightface
            vec = 0.0
            for rows in media.values():
                total = 0.0
                for i in rows:
                    raw = case["unit"][i] * case["norms"][i]
                    if fusion == "sum-raw":
                        raw = raw + case["unit_flip"][i] * case["norms_flip"][i]
                    total = total + raw * (case["item_score"][i] if scores else 1.0)
                vec = vec + total / len(rows)
        out.append(normalized(np.asarray(vec)))
    return np.array(out)


def insightface_loop(img_feats, templates, medias, faceness, flip: bool, det: bool):
    """insightface's image2template_feature and the steps before it, re-written here:
    flip by adding the halves of [raw | raw_flip], times the faceness score, then for each
    template (np.unique of the ids) and each of its media (np.unique), a media mean (or the
    single row), summed over media, and the template sums normalized."""
    half = img_feats.shape[1] // 2
    feats = img_feats[:, :half] + img_feats[:, half:] if flip else img_feats[:, :half]
    if det:
        feats = feats * faceness[:, np.newaxis]
    unique_templates = np.unique(templates)
    pooled = np.zeros((unique_templates.size, feats.shape[1]))
    for k, tid in enumerate(unique_templates):
        (in_t,) = np.where(templates == tid)
        t_feats, t_media = feats[in_t], medias[in_t]
        m_ids, m_counts = np.unique(t_media, return_counts=True)
        per_media = []
        for mid, count in zip(m_ids, m_counts, strict=True):
            (in_m,) = np.where(t_media == mid)
            per_media.append(t_feats[in_m] if count == 1 else t_feats[in_m].mean(0, keepdims=True))
        pooled[k] = np.sum(np.array(per_media), axis=0)
    return pooled / np.sqrt(np.sum(pooled**2, -1, keepdims=True)), unique_templates


def pool(case: dict, mode: str, fusion: str = "none", **kw) -> np.ndarray:
    return pool_templates(
        case["unit"],
        case["norms"],
        case["item_template"],
        case["item_media"],
        case["n_templates"],
        mode=mode,
        unit_flip=case["unit_flip"],
        norms_flip=case["norms_flip"],
        flip_fusion=fusion,
        item_score=kw.get("item_score", case["item_score"]),
    )


# -- templates vs brute force ------------------------------------------------------------------

FUSIONS_FOR = {
    "mean": list(FLIP_FUSIONS),
    "media": list(FLIP_FUSIONS),
    "norm": list(FLIP_FUSIONS),
    "insightface": list(pooling.INSIGHTFACE_FLIP_FUSIONS),
}
CASES = [(mode, fusion) for mode in POOLING_MODES for fusion in FUSIONS_FOR[mode]]


@pytest.mark.parametrize(("mode", "fusion"), CASES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_mode_matches_the_loops(mode: str, fusion: str, seed: int) -> None:
    case = random_templates(seed)
    got = pool(case, mode, fusion)
    np.testing.assert_allclose(got, brute_pool(case, mode, fusion), rtol=0, atol=1e-12)
    assert got.dtype == np.float64
    assert got.shape == (case["n_templates"], 12 if fusion == "concat" else 6)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=0, atol=1e-12)


def test_float32_inputs_give_float64_unit_rows() -> None:
    case = random_templates(3)
    case32 = {**case, "unit": case["unit"].astype(np.float32), "norms": case["norms"]}
    got = pool(case32, "media")
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, brute_pool(case, "media"), rtol=0, atol=1e-12)


@pytest.mark.parametrize("fusion", ["none", "sum-raw"])
@pytest.mark.parametrize("detector", [True, False])
def test_insightface_mode_equals_insightface_loop(fusion: str, detector: bool) -> None:
    rng = np.random.default_rng(11)
    case = random_templates(4, n_templates=30, d=8)
    raw = case["unit"] * case["norms"][:, None]
    raw_flip = case["unit_flip"] * case["norms_flip"][:, None]
    img_feats = np.concatenate((raw, raw_flip), axis=1)
    ids = np.sort(rng.choice(10**6, size=case["n_templates"], replace=False))
    expected, unique_templates = insightface_loop(
        img_feats,
        ids[case["item_template"]],
        case["item_media"],
        case["item_score"],
        flip=fusion == "sum-raw",
        det=detector,
    )
    np.testing.assert_array_equal(unique_templates, ids)
    got = pool(case, "insightface", fusion, item_score=case["item_score"] if detector else None)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_hand_worked_three_templates() -> None:
    # template 0: a=(1,0)|2, b=(0,1)|1 in media 1; c=(1,0)|1 in media 2
    # template 1: d=(0,1)|3 alone
    # template 2: e=(.6,.8)|1, f=(.6,-.8)|1 in media 5; g=(0,1)|2 in media 6
    unit = np.array([[1, 0], [0, 1], [1, 0], [0, 1], [0.6, 0.8], [0.6, -0.8], [0, 1]], float)
    norms = np.array([2, 1, 1, 3, 1, 1, 2], float)
    template = np.array([0, 0, 0, 1, 2, 2, 2])
    media = np.array([1, 1, 2, 7, 5, 5, 6])
    score = np.array([0.5, 1, 1, 1, 1, 1, 0.5])
    s5, s10, s17, s34, s61, s109 = (math.sqrt(x) for x in (5, 10, 17, 34, 61, 109))
    expected = {
        # (a + b + c) / 3 = (2/3, 1/3); (e + f + g) / 3 = (1.2, 1) / 3
        "mean": [[2 / s5, 1 / s5], [0, 1], [6 / s61, 5 / s61]],
        # mean of media means: ((.5,.5) + (1,0)) / 2 = (.75,.25); ((.6,0) + (0,1)) / 2
        "media": [[3 / s10, 1 / s10], [0, 1], [3 / s34, 5 / s34]],
        # raw: ((1,.5) + (1,0)) / 2 = (1,.25); ((.6,0) + (0,2)) / 2 = (.3,1)
        "norm": [[4 / s17, 1 / s17], [0, 1], [3 / s109, 10 / s109]],
        # raw x score: a -> (1,0); media 1 mean (.5,.5), + media 2 (1,0) = (1.5,.5);
        # media 5 (.6,0) + media 6 (0,2)x.5 = (.6,1)
        "insightface": [[3 / s10, 1 / s10], [0, 1], [3 / s34, 5 / s34]],
    }
    for mode, rows in expected.items():
        got = pool_templates(unit, norms, template, media, 3, mode=mode, item_score=score)
        np.testing.assert_allclose(got, np.array(rows), rtol=0, atol=1e-15, err_msg=mode)


def test_insightface_without_scores_points_where_norm_does() -> None:
    # A sum over media is (number of media) x their mean: the same direction.
    case = random_templates(5)
    got = pool(case, "insightface", item_score=None)
    np.testing.assert_allclose(got, pool(case, "norm"), rtol=0, atol=1e-12)


def test_blocks_and_long_templates(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tiny blocks: templates longer than a block are summed block by block.
    monkeypatch.setattr(pooling, "_BLOCK_ELEMENTS", 24)  # 4 rows of 6 dimensions
    case = random_templates(6)
    for mode in POOLING_MODES:
        np.testing.assert_allclose(pool(case, mode), brute_pool(case, mode), atol=1e-12)
    np.testing.assert_allclose(
        pool(case, "media", "concat"), brute_pool(case, "media", "concat"), atol=1e-12
    )


def test_sparse_media_ids() -> None:
    # Media ids too far apart to pack beside the template id take the np.unique path.
    case = random_templates(7)
    case["item_media"] = case["item_media"] * (2**58) - 2**61
    for mode in POOLING_MODES:
        np.testing.assert_allclose(pool(case, mode), brute_pool(case, mode), atol=1e-12)


# -- properties ---------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), mode=st.sampled_from(CASES))
@example(seed=0, mode=("insightface", "sum-raw"))
def test_row_order_changes_nothing(seed: int, mode: tuple[str, str]) -> None:
    case = random_templates(seed % 1000)
    perm = np.random.default_rng(seed).permutation(case["unit"].shape[0])
    shuffled = {k: (v[perm] if isinstance(v, np.ndarray) else v) for k, v in case.items()}
    a, b = pool(case, *mode), pool(shuffled, *mode)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, rtol=0, atol=1e-12)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), factor=st.floats(1.5, 50.0))
@example(seed=1, factor=3.0)
def test_raw_norms_weight_only_norm_and_insightface(seed: int, factor: float) -> None:
    rng = np.random.default_rng(seed)
    unit, norms = unit_rows(rng, 5, 4)
    norms = norms * rng.uniform(0.5, 5, 5)
    template = np.zeros(5, dtype=np.int64)
    media = np.array([1, 1, 2, 2, 3])
    scaled = norms.copy()
    scaled[media == 2] *= factor
    for mode in POOLING_MODES:
        a = pool_templates(unit, norms, template, media, 1, mode=mode)
        b = pool_templates(unit, scaled, template, media, 1, mode=mode)
        if mode in ("mean", "media"):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
        else:
            assert np.abs(a - b).max() > 1e-9, mode


# -- errors ---------------------------------------------------------------------------------------


def test_template_without_items_is_named() -> None:
    unit, norms = unit_rows(np.random.default_rng(0), 3, 4)
    with pytest.raises(PoolingError, match="template 123 with no items with features"):
        pool_templates(unit, norms, [0, 0, 2], [1, 1, 1], 3, template_ids=[7, 123, 9])
    with pytest.raises(FacebenchError, match="template at index 1"):
        pool_templates(unit, norms, [0, 0, 2], [1, 1, 1], 3)


def test_zero_pooled_vector_is_named() -> None:
    unit = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    norms = np.ones(3)
    with pytest.raises(PoolingError, match="template 55 pooled to a zero vector"):
        pool_templates(unit, norms, [0, 0, 1], [4, 4, 4], 2, template_ids=[55, 56])
    with pytest.raises(PoolingError, match="zero vector"):
        pool_templates(unit[2:], norms[2:], [0], [1], 1, mode="insightface", item_score=np.zeros(1))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"norms": np.ones(4)}, r"`norms` of shape \(3,\)"),
        ({"item_template": [0, 1]}, r"`item_template` of shape \(3,\)"),
        ({"item_template": [0, 1, 2]}, r"`item_template` in 0..1"),
        ({"item_media": [0.5, 1, 1]}, "integer `item_media`"),
        ({"unit": np.ones(3)}, "2-D float array"),
        ({"mode": "max"}, "pooling mode in"),
        ({"flip_fusion": "avg"}, "flip fusion in"),
        ({"flip_fusion": "sum-unit"}, "`unit_flip`"),
        ({"flip_fusion": "concat", "unit_flip": np.ones((3, 5))}, "shape of `unit`"),
        ({"flip_fusion": "sum-raw", "unit_flip": np.ones((3, 4))}, "`norms_flip`"),
        ({"mode": "insightface", "flip_fusion": "concat"}, "'none' or 'sum-raw'"),
        ({"mode": "insightface", "item_score": [1.0, np.nan, 1.0]}, "finite `item_score`"),
        ({"template_ids": [1, 2, 3]}, r"`template_ids` of shape \(2,\)"),
    ],
)
def test_bad_input_is_refused(kwargs: dict, message: str) -> None:
    unit, norms = unit_rows(np.random.default_rng(0), 3, 4)
    args = {"unit": unit, "norms": norms, "item_template": [0, 1, 1], "item_media": [1, 1, 2]}
    args.update({k: kwargs.pop(k) for k in list(kwargs) if k in args})
    with pytest.raises(PoolingError, match=message):
        pool_templates(**args, n_templates=2, **kwargs)


def test_pooling_modes_registry_describes_every_mode() -> None:
    assert list(POOLING_MODES) == ["mean", "media", "norm", "insightface"]
    assert all(isinstance(v, str) and v for v in POOLING_MODES.values())


# -- videos ---------------------------------------------------------------------------------------


def random_videos(seed: int, n_videos: int = 7, d: int = 5):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 15, n_videos)
    video = np.repeat(np.arange(n_videos), sizes)
    frames = np.concatenate([rng.choice(500, size=s, replace=False) for s in sizes])
    perm = rng.permutation(video.size)
    unit, _ = unit_rows(rng, video.size, d)
    return unit, video[perm], frames[perm]


def brute_videos(unit, video, frames, n_videos, n_frames=None):
    out = []
    for v in range(n_videos):
        rows = sorted(np.flatnonzero(video == v).tolist(), key=lambda i: int(frames[i]))
        if n_frames is not None:
            rows = rows[:n_frames]
        out.append(normalized(sum(unit[i] for i in rows) / len(rows)))
    return np.array(out)


@pytest.mark.parametrize("seed", [0, 1])
def test_video_modes_match_loops(seed: int) -> None:
    unit, video, frames = random_videos(seed)
    got = pool_videos(unit, video, 7)
    np.testing.assert_allclose(got, brute_videos(unit, video, frames, 7), rtol=0, atol=1e-12)
    for n in (1, 3, 100):
        got = pool_videos(unit, video, 7, mode="first", frame_numbers=frames, n_frames=n)
        expected = brute_videos(unit, video, frames, 7, n)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_first_frames_are_numeric() -> None:
    video = np.array([0, 0, 0, 1, 1])
    frames = np.array([100, 9, 20, 3, 1])  # as text, "100" < "20" < "9"
    np.testing.assert_array_equal(first_frames(video, frames, 2), [False, True, True, True, True])
    with pytest.raises(PoolingError, match="frame 9 twice"):
        first_frames(video, np.array([9, 9, 20, 3, 1]), 2)
    with pytest.raises(PoolingError, match="n_frames"):
        first_frames(video, frames, 0)


def test_video_option_errors() -> None:
    unit, video, _ = random_videos(0)
    with pytest.raises(PoolingError, match="`frame_numbers` and `n_frames`"):
        pool_videos(unit, video, 7, mode="first")
    with pytest.raises(PoolingError, match="only with video pooling mode 'first'"):
        pool_videos(unit, video, 7, n_frames=3)
    with pytest.raises(PoolingError, match="video at index 7 with no frames"):
        pool_videos(unit, video, 8)


def test_mean_pair_similarity_matches_the_cosine_matrices() -> None:
    unit, video, frames = random_videos(2, n_videos=9)
    rng = np.random.default_rng(3)
    left, right = rng.integers(0, 9, 40), rng.integers(0, 9, 40)
    expected = [
        np.mean(unit[video == a] @ unit[video == b].T) for a, b in zip(left, right, strict=True)
    ]
    for chunk in (1, 7, 65536):
        got = mean_pair_similarity(unit, video, left, right, chunk=chunk)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    # FaceNet's figure: the first N frames, then the mean pair similarity.
    keep = first_frames(video, frames, 3)
    got = mean_pair_similarity(unit[keep], video[keep], left, right)
    firsts = [np.flatnonzero(video == v)[np.argsort(frames[video == v])][:3] for v in range(9)]
    expected = [
        np.mean(unit[firsts[a]] @ unit[firsts[b]].T) for a, b in zip(left, right, strict=True)
    ]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    with pytest.raises(PoolingError, match="video index 9 with no frames"):
        mean_pair_similarity(unit, video, [0], [9])
