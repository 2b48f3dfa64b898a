"""Pooling streamed from the store equals in-memory pooling, for every mode and flip fusion,
and does not depend on how many rows are read at a time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import facebench.pool_store as pool_store
from facebench.errors import MissingItemsError
from facebench.fusion import FLIP_FUSIONS
from facebench.pool_store import TemplateSet, pool_from_store
from facebench.pooling import INSIGHTFACE_FLIP_FUSIONS, POOLING_MODES, pool_templates
from facebench.store import FeatureStore, create_store, normalize_rows
from protocols import Templates


def _world(tmp_path: Path, seed: int = 0) -> tuple[Path, list[Templates], np.ndarray]:
    """A store of 300 items (some unused) and two template sets sharing items."""
    rng = np.random.default_rng(seed)
    n, d = 300, 6
    unit, norms = normalize_rows(rng.standard_normal((n, d)) * rng.uniform(0.5, 3, (n, 1)))
    unit_f, norms_f = normalize_rows(rng.standard_normal((n, d)))
    ids = [f"img/{i:04d}.jpg" for i in range(n)]
    path = tmp_path / "s.h5"
    create_store(path, ids, unit, norms, features_flip=unit_f, norms_flip=norms_f, model="m")
    sets = []
    for n_templates, m in ((17, 140), (9, 60)):
        rows = rng.choice(n - 20, m)  # repeats: an item in several templates
        template = np.concatenate(
            (np.arange(n_templates), rng.integers(0, n_templates, m - n_templates))
        )
        sets.append(
            Templates(
                ids=np.arange(100, 100 + n_templates),
                subjects=np.full(n_templates, -1),
                item_keys=tuple(ids[r] for r in rows),
                item_template=template,
                item_media=rng.integers(0, 5, m),
                item_score=rng.uniform(0.2, 1.0, m),
            )
        )
    return path, sets, np.arange(n)


def _reference(store: FeatureStore, templates: Templates, mode: str, fusion: str) -> np.ndarray:
    """facebench.pooling.pool_templates on the rows read whole (its own tests hold it to
    brute-force loops)."""
    rows = store.index_of(list(templates.item_keys))
    unit, norms = store.read_rows(rows)
    unit_f, norms_f = store.read_rows(rows, flip=True) if fusion != "none" else (None, None)
    return pool_templates(
        unit,
        norms,
        templates.item_template,
        templates.item_media,
        templates.n_templates,
        mode=mode,
        unit_flip=unit_f,
        norms_flip=norms_f,
        flip_fusion=fusion,
        item_score=templates.item_score,
    )


CASES = [
    (mode, fusion)
    for mode in POOLING_MODES
    for fusion in (INSIGHTFACE_FLIP_FUSIONS if mode == "insightface" else tuple(FLIP_FUSIONS))
]


@pytest.mark.parametrize(("mode", "fusion"), CASES)
def test_streamed_pooling_equals_in_memory_pooling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, fusion: str
) -> None:
    monkeypatch.setattr(pool_store, "UNIT_ROWS", 32)  # many units on a small store
    path, sets, _ = _world(tmp_path)
    with FeatureStore.open(path) as store:
        located = [TemplateSet(t, None, store.index_of(list(t.item_keys))) for t in sets]
        got = pool_from_store(store, located, mode=mode, flip_fusion=fusion)
        for templates, pooled in zip(sets, got, strict=True):
            expected = _reference(store, templates, mode, fusion)
            assert pooled.shape == expected.shape
            np.testing.assert_allclose(pooled, expected, rtol=0, atol=1e-12)
            np.testing.assert_allclose(np.linalg.norm(pooled, axis=1), 1.0, atol=1e-12)


@pytest.mark.parametrize(("mode", "fusion"), CASES)
@pytest.mark.parametrize("units_per_read", [2, 3, 100])
def test_reads_of_any_size_give_bitwise_identical_features(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, units_per_read: int, mode: str, fusion: str
) -> None:
    """Several units per read (the norm factors and flips are then looked up at an offset
    into the read) give the features of one unit per read, bit for bit, and those equal
    in-memory pooling."""
    monkeypatch.setattr(pool_store, "UNIT_ROWS", 16)
    path, sets, _ = _world(tmp_path, seed=3)
    with FeatureStore.open(path) as store:
        located = [TemplateSet(t, None, store.index_of(list(t.item_keys))) for t in sets]
        one = pool_from_store(store, located, mode=mode, flip_fusion=fusion, units_per_read=1)
        other = pool_from_store(
            store, located, mode=mode, flip_fusion=fusion, units_per_read=units_per_read
        )
        for templates, a, b in zip(sets, one, other, strict=True):
            assert np.array_equal(a, b)
            np.testing.assert_allclose(
                b, _reference(store, templates, mode, fusion), rtol=0, atol=1e-12
            )


def test_kept_rows_pool_only_what_is_kept_and_an_emptied_template_is_an_error(
    tmp_path: Path,
) -> None:
    path, sets, _ = _world(tmp_path, seed=5)
    templates = sets[1]
    keep = np.ones(len(templates.item_keys), dtype=bool)
    keep[::3] = False
    with FeatureStore.open(path) as store:
        rows = store.index_of([k for k, ok in zip(templates.item_keys, keep, strict=True) if ok])
        (got,) = pool_from_store(store, [TemplateSet(templates, keep, rows)], mode="mean")
        unit, _ = store.read_rows(rows)
    t = templates.item_template[keep]
    expected = np.stack(
        [unit[t == k].astype(np.float64).mean(axis=0) for k in range(templates.n_templates)]
    )
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(got, expected, atol=1e-12)

    gone = templates.item_template != 0  # template 0 loses every row
    with FeatureStore.open(path) as store:
        rows = store.index_of([k for k, ok in zip(templates.item_keys, gone, strict=True) if ok])
        with pytest.raises(MissingItemsError, match=r"templates have none \(first: 100"):
            pool_from_store(store, [TemplateSet(templates, gone, rows)])
