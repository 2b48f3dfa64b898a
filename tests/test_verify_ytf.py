"""``facebench verify --protocol ytf``: frames in the store, videos pooled at evaluation,
10-split accuracy; checked against an independent computation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from facebench.cli import cli
from facebench.store import create_store, normalize_rows
from protocols import ytf

PROTOCOL = ytf.load()


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    """3-5 frames per video of the shipped splits, named as aligned_images_DB names them."""
    rng = np.random.default_rng(0)
    people = sorted({v.split("/")[0] for v in PROTOCOL.items})
    centre = {p: rng.standard_normal(24) for p in people}
    ids, raw = [], []
    for video in PROTOCOL.items:
        vid = video.split("/")[1]
        for frame in rng.choice(300, size=int(rng.integers(3, 6)), replace=False):
            ids.append(f"{video}/aligned_detect_{vid}.{frame}.jpg")
            raw.append(centre[video.split("/")[0]] + 1.6 * rng.standard_normal(24))
    order = np.argsort(ids)
    ids = [ids[i] for i in order]
    unit, norms = normalize_rows(np.asarray(raw)[order])
    path = tmp_path_factory.mktemp("ytf") / "ytf.h5"
    create_store(path, ids, unit, norms, model="synthetic")
    by_video: dict[str, list[tuple[int, np.ndarray]]] = {}
    for key, u in zip(ids, unit.astype(np.float64), strict=True):
        video, _, name = key.rpartition("/")
        by_video.setdefault(video, []).append((ytf.frame_number(name), u))
    return path, {
        v: np.stack([u for _, u in sorted(f, key=lambda x: x[0])]) for v, f in by_video.items()
    }


def kfold(s: np.ndarray, y: np.ndarray, folds: np.ndarray) -> list[float]:
    accs = []
    for k in range(1, 11):
        tr, te = folds != k, folds == k
        d = np.unique(s[tr])
        cand = np.concatenate(([-np.inf], (d[1:] + d[:-1]) / 2, [np.inf]))
        correct = ((s[tr][None, :] >= cand[:, None]) == y[tr][None, :]).sum(axis=1)
        tied = cand[correct == correct.max()]
        accs.append(float(np.mean((s[te] >= tied[(tied.size - 1) // 2]) == y[te])))
    return accs


@pytest.mark.parametrize("pooling", ["mean", "first", "pair-mean"])
def test_ytf_equals_independent(tmp_path: Path, frames, pooling: str) -> None:
    store, video_frames = frames
    out = tmp_path / "ytf.json"
    extra = ["--n-frames", "2"] if pooling == "first" else []
    result = run(
        "verify",
        "--protocol",
        "ytf",
        "--features",
        store,
        "--video-pooling",
        pooling,
        *extra,
        "--json",
        out,
    )
    assert result.exit_code == 0, (result.output, result.exception)
    report = json.loads(out.read_text())

    def video(v: str) -> np.ndarray:
        f = video_frames[v][:2] if pooling == "first" else video_frames[v]
        m = f.mean(axis=0)
        return m / np.linalg.norm(m)

    if pooling == "pair-mean":
        s = np.array(
            [
                np.mean(video_frames[a] @ video_frames[b].T)
                for a, b in zip(PROTOCOL.left, PROTOCOL.right, strict=True)
            ]
        )
    else:
        s = np.array(
            [video(a) @ video(b) for a, b in zip(PROTOCOL.left, PROTOCOL.right, strict=True)]
        )
    got = np.load(tmp_path / "ytf.scores.npz")["score"]
    np.testing.assert_allclose(got, s, atol=1e-12)
    accs = kfold(got, PROTOCOL.is_same, PROTOCOL.folds)
    assert report["accuracy"]["folds"] == accs
    assert report["n_pairs"] == 5000 and report["protocol"] == "ytf"
    assert report["conventions"]["video_pooling"] == pooling


def test_missing_videos_named(tmp_path: Path, frames) -> None:
    store, _ = frames
    lost = PROTOCOL.left[0]
    from facebench.store import FeatureStore

    with FeatureStore.open(store) as fs:
        keep = [i for i, k in enumerate(fs.ids) if not k.startswith(lost + "/")]
        unit, norms = fs.read_rows(np.asarray(keep))
        ids = [fs.ids[i] for i in keep]
    partial = tmp_path / "partial.h5"
    create_store(partial, ids, unit, norms, model="m")
    result = run("verify", "--protocol", "ytf", "--features", partial)
    assert result.exit_code == 2 and "1 of 3226 videos" in result.stderr and lost in result.stderr


def test_extract_lists_every_frame_of_each_video(tmp_path: Path) -> None:
    from PIL import Image

    from facebench.errors import FacebenchError
    from facebench.extract.api import video_items

    videos = ["Ann_A/0", "Ann_A/2", "Bob_B/1"]
    for v in videos:
        (tmp_path / v).mkdir(parents=True)
        for frame in (10, 9, 100):
            Image.new("RGB", (4, 4)).save(tmp_path / v / f"aligned_detect_{v[-1]}.{frame}.jpg")
    items = video_items(tmp_path, videos)
    assert len(items) == 9
    assert items[0].id == "Ann_A/0/aligned_detect_0.10.jpg"
    assert all(i.path == tmp_path / i.id for i in items)
    with pytest.raises(FacebenchError, match=r"1 of 4 are missing .*Cy_C/3"):
        video_items(tmp_path, [*videos, "Cy_C/3"])
