"""The GPU check's comparisons (benchmarks/gpu_check.py) catch what they are for: a moved
score, a changed TAR entry, a re-scored genuine pair, a changed per-probe array."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # benchmarks/ is a top-level folder, not installed
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks.gpu_check import (  # noqa: E402
    compare_search,
    compare_verify,
    same,
    same_tar_entries,
)


def _write(path: Path, report: dict[str, Any], arrays: dict[str, np.ndarray]) -> Path:
    path.write_text(json.dumps({**report, "created": str(path)}), encoding="utf-8")
    np.savez(path.with_name(path.stem + ".scores.npz"), **arrays)
    return path


def _verify_outputs(bound: float = 1e-6) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    split = {
        "split": 1,
        "n_pairs": 4,
        "n_genuine": 2,
        "tar_at_far": [{"far_target": 0.5, "tar": 1.0, "threshold": 0.3}],
        "identification": [{"gallery": "G1", "cmc": {"1": 0.5}}],
        "score_precision": {"precision": "float32", "error_bound": bound},
    }
    arrays = {
        "split": np.ones(4, np.int16),
        "left": np.arange(4, dtype=np.int32),
        "right": np.arange(4, 8, dtype=np.int32),
        "is_same": np.array([True, True, False, False]),
        "score": np.array([0.9, 0.8, 0.3, 0.1]),
    }
    return {"protocol": "ijbc", "splits": [split]}, arrays


def test_equal_outputs_are_equal(tmp_path: Path) -> None:
    report, arrays = _verify_outputs()
    moved = dict(arrays, score=arrays["score"] + np.array([0, 0, 1.5e-6, -1.9e-6]))
    found = compare_verify(
        _write(tmp_path / "a.json", report, arrays),
        _write(tmp_path / "b.json", report, moved),
        "float32",
    )
    assert found["equal"], found["problems"]
    assert found["score_max_abs_diff"] == pytest.approx(1.9e-6)
    assert found["score_tolerance"] == 2e-6


@pytest.mark.parametrize(
    "change, problem",
    [
        (lambda r, a: a.update(score=a["score"] + [0, 0, 0, 3e-6]), "a score moved"),
        (lambda r, a: a.update(score=a["score"] + [1e-9, 0, 0, 0]), "genuine"),
        (lambda r, a: r["splits"][0]["tar_at_far"][0].update(tar=0.5), "tar_at_far differs"),
        (lambda r, a: r["splits"][0]["identification"][0].update(cmc={}), "identification"),
        (lambda r, a: a.update(right=a["right"][::-1].copy()), "per-pair right differs"),
        (
            lambda r, a: r["splits"][0]["score_precision"].update(precision="float64"),
            "scored in float64",
        ),
    ],
)
def test_each_difference_is_named(tmp_path: Path, change: Any, problem: str) -> None:
    report, arrays = _verify_outputs()
    other_report, other_arrays = _verify_outputs()
    change(other_report, other_arrays)
    found = compare_verify(
        _write(tmp_path / "a.json", report, arrays),
        _write(tmp_path / "b.json", other_report, other_arrays),
        "float32",
    )
    assert not found["equal"]
    assert any(problem in text for text in found["problems"]), found["problems"]


def test_search_outputs(tmp_path: Path) -> None:
    report = {"cmc": {"1": 0.5}, "counts": {"n_probes": 3}}
    arrays = {"mate_score": np.array([0.5, np.nan, 0.2]), "top_k_index": np.arange(6).reshape(3, 2)}
    a = _write(tmp_path / "a.json", report, arrays)
    assert compare_search(a, _write(tmp_path / "b.json", report, arrays))["equal"]  # NaN == NaN
    swapped = dict(arrays, top_k_index=arrays["top_k_index"][:, ::-1].copy())
    found = compare_search(a, _write(tmp_path / "c.json", report, swapped))
    assert found["problems"] == ["per-probe top_k_index differs"]
    found = compare_search(a, _write(tmp_path / "d.json", {**report, "cmc": {"1": 0.6}}, arrays))
    assert found["problems"] == ["report field cmc differs"]
    assert not same(np.array([1.0, np.nan]), np.array([1.0, 2.0]))
    assert same(np.array(["a", "b"]), np.array(["a", "b"]))


def test_thresholds_within_the_tolerance() -> None:
    entry = {"far_target": 0.1, "tar": 0.5, "threshold": 0.25, "n_impostors_at_or_above": 3}
    nearby = dict(entry, threshold=0.25 + 1e-14)
    assert same_tar_entries([entry], [entry], 0.0)
    assert not same_tar_entries([entry], [nearby], 0.0)
    assert same_tar_entries([entry], [nearby], 1e-12)
    assert not same_tar_entries([entry], [dict(entry, threshold=None)], 1.0)
    assert not same_tar_entries([entry], [dict(nearby, tar=0.4)], 1e-12)
    assert not same_tar_entries([entry], [], 1e-12)


def test_a_different_number_of_pairs_is_named_not_a_crash(tmp_path: Path) -> None:
    report, arrays = _verify_outputs()
    fewer = {name: values[:3] for name, values in arrays.items()}
    found = compare_verify(
        _write(tmp_path / "a.json", report, arrays),
        _write(tmp_path / "b.json", report, fewer),
        "float32",
    )
    assert not found["equal"]
    assert "per-pair score: 4 pairs on the CPU, 3 on the device" in found["problems"]
