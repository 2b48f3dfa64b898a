"""IJB-B/C end to end: a generated meta/ folder and store -> verify (insightface pooling with
detector scores and flips) -> the report equals brute-force loops; extract aligns the loose
crops with their landmarks."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result
from ijbc_fixtures import write_ijbc
from PIL import Image

from facebench.cli import cli
from facebench.store import FeatureStore, create_store, normalize_rows


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture(scope="module", params=["ijbc", "ijbb"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    variant = request.param
    root = tmp_path_factory.mktemp(variant)
    record = write_ijbc(
        root, variant=variant, n_subjects=12, templates_per_subject=3, images_per_template=3, seed=2
    )
    keys = sorted(record["scores"])
    subject_of_key = {k: record["subjects"][t] for t, ks in record["templates"].items() for k in ks}
    rng = np.random.default_rng(1)
    direction = {s: rng.standard_normal(8) for s in set(record["subjects"].values())}
    raw = np.stack([direction[subject_of_key[k]] + rng.standard_normal(8) for k in keys])
    raw_flip = raw + 0.3 * rng.standard_normal(raw.shape)
    raw *= rng.uniform(1, 5, size=(len(keys), 1))
    unit, norms = normalize_rows(raw)
    unit_f, norms_f = normalize_rows(raw_flip)
    store = root / "s.h5"
    create_store(store, keys, unit, norms, features_flip=unit_f, norms_flip=norms_f, model="m")
    record.update(store=store, keys=keys)
    with FeatureStore.open(store) as s:
        u, n = s.read_all()
        uf, nf = s.read_all(flip=True)
    record["raw"] = {k: u[i].astype(np.float64) * n[i] for i, k in enumerate(keys)}
    record["raw_flip"] = {k: uf[i].astype(np.float64) * nf[i] for i, k in enumerate(keys)}
    return record


def insightface_pool(world: dict[str, Any], tid: int) -> np.ndarray:
    """insightface's eval_ijbc, as loops: (raw + raw flip) x detector score, mean per media,
    sum over media, normalize."""
    keys = world["templates"][tid]
    media = world["media"][tid]
    groups: dict[int, list[np.ndarray]] = {}
    for key, m in zip(keys, media, strict=True):
        f = (world["raw"][key] + world["raw_flip"][key]) * world["scores"][key]
        groups.setdefault(m, []).append(f)
    pooled = np.sum([np.mean(v, axis=0) for v in groups.values()], axis=0)
    return pooled / np.linalg.norm(pooled)


def test_verify_insightface_pooling_equals_brute_force(tmp_path: Path, world: dict[str, Any]):
    out = tmp_path / "r.json"
    result = run(
        "verify",
        "--protocol",
        world["variant"],
        "--protocol-dir",
        world["root"],
        "--features",
        world["store"],
        "--pooling",
        "insightface",
        "--flip-fusion",
        "sum-raw",
        "--far",
        "0.01,0.1",
        "--json",
        out,
    )
    assert result.exit_code == 0, (result.output, result.exception)
    report = json.loads(out.read_text())
    (entry,) = report["splits"]
    pooled = {t: insightface_pool(world, t) for t in world["templates"]}
    scores = np.array([pooled[a] @ pooled[b] for a, b, _ in world["pairs"]])
    same = np.array([bool(lab) for _, _, lab in world["pairs"]])
    data = np.load(tmp_path / "r.scores.npz")
    np.testing.assert_allclose(data["score"], scores, atol=1e-12)
    n_imp = int((~same).sum())
    for point in entry["tar_at_far"]:
        budget = math.floor(point["far_target"] * n_imp + 1e-9)
        best = max(
            np.mean(scores[same] >= t)
            for t in [*np.unique(scores), np.inf]
            if np.sum(scores[~same] >= t) <= budget
        )
        assert point["tar"] == best
    galleries = [s["gallery"] for s in entry["identification"]]
    assert galleries[-1] == "mean" and len(galleries) == 3
    for search in entry["identification"][:2]:
        gallery = world["galleries"][search["gallery"]]
        ranks, top_nonmated = [], []
        for probe, subject in world["probes"].items():
            s = {g: pooled[probe] @ pooled[g] for g in gallery}
            mates = [v for g, v in s.items() if gallery[g] == subject]
            if mates:
                ranks.append(
                    1 + sum(v >= max(mates) for g, v in s.items() if gallery[g] != subject)
                )
            else:
                top_nonmated.append(max(s.values()))
        assert search["cmc"]["1"] == pytest.approx(np.mean(np.array(ranks) <= 1))
        assert search["n_mated"] == len(ranks)
    mean = entry["identification"][-1]
    assert mean["cmc"]["1"] == pytest.approx(
        np.mean([s["cmc"]["1"] for s in entry["identification"][:2]])
    )
    assert report["conventions"]["pooling"] == "insightface"


def test_extract_aligns_loose_crops(tmp_path: Path, world: dict[str, Any]):
    if world["variant"] != "ijbc":
        pytest.skip("one variant is enough")
    import torch

    from facebench.models.registry import ARCHITECTURES

    rng = np.random.default_rng(0)
    for key in world["keys"]:
        path = world["root"] / key
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (150, 130, 3), dtype=np.uint8)).save(path)
    torch.manual_seed(0)
    weights = tmp_path / "w.pth"
    torch.save(ARCHITECTURES["small-cnn"].build().state_dict(), weights)
    out = tmp_path / "ijbc.h5"
    result = run(
        "extract",
        world["root"],
        "--protocol",
        "ijbc",
        "--arch",
        "small-cnn",
        "--weights",
        weights,
        "--preset",
        "arcface112",
        "--image-size",
        "32",
        "32",
        "-o",
        out,
        "--workers",
        "0",
        "--no-progress",
    )
    # aligned to the 112 x 112 template by the 5 points, then resized to the model's 32 x 32
    assert result.exit_code == 0, (result.output, result.exception)
    with FeatureStore.open(out) as s:
        assert s.ids == world["keys"]
        assert s.info.attributes["preprocessing"]["align_template"] == "arcface112"
