"""The k-fold benchmark's baseline is insightface's ``evaluate``: it gives exactly the numbers
of :mod:`facebench.metrics.compat` (itself checked against literal copies of insightface's
loops in test_metrics_compat.py), and its folds are scikit-learn's ``KFold``. Wiring of the
benchmark's output (table, BENCH lines); never timings.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.model_selection import KFold

from facebench.metrics.compat import insightface_kfold, insightface_val_at_far

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # benchmarks/ is a top-level folder, not installed
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks import kfold_bench  # noqa: E402


@pytest.mark.parametrize(("n", "k"), [(20, 10), (23, 10), (7, 3), (6000, 10)])
def test_kfold_split_is_sklearn_kfold(n: int, k: int) -> None:
    ours = list(kfold_bench.kfold_split(n, k))
    theirs = list(KFold(n_splits=k, shuffle=False).split(np.arange(n)))
    assert len(ours) == len(theirs) == k
    for (train, test), (ref_train, ref_test) in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(train, ref_train)
        np.testing.assert_array_equal(test, ref_test)


def _case(kind: str) -> tuple[np.ndarray, np.ndarray]:
    if kind == "benchmark":
        s, y, _ = kfold_bench.make_pairs(2_000)
        return s, y
    rng = np.random.default_rng(5)
    y = rng.random(1_000) < 0.5
    if kind == "on-grid":  # distances exactly on the 0.01 grid: ties with thresholds
        s = 1.0 - rng.integers(0, 200, y.size) * 0.01 / 2
    else:  # "tied": a few distinct scores only
        s = rng.integers(-3, 4, y.size) / 4 + 0.5 * y
    return np.clip(s, -1.0, 1.0), y


@pytest.mark.parametrize("kind", ["benchmark", "on-grid", "tied"])
def test_baseline_equals_compat_insightface(kind: str) -> None:
    s, y = _case(kind)
    result = kfold_bench.baseline_evaluate(s, y)
    roc = insightface_kfold(s, y, n_folds=10)
    np.testing.assert_array_equal(result.accuracy, roc.fold_accuracies)
    np.testing.assert_array_equal(result.accuracy_thresholds, roc.fold_thresholds)
    assert roc.tpr_curve is not None and roc.fpr_curve is not None
    np.testing.assert_array_equal(result.tpr, roc.tpr_curve)
    np.testing.assert_array_equal(result.fpr, roc.fpr_curve)
    val = insightface_val_at_far(s, y, 1e-3, n_folds=10)
    np.testing.assert_array_equal(result.val_thresholds, val.fold_thresholds)
    assert (result.val, result.val_std, result.far) == (val.val_mean, val.val_std, val.far_mean)


def test_fold_layout_check() -> None:
    _, _, folds = kfold_bench.make_pairs(200)
    kfold_bench.check_kfold_layout(folds)
    with pytest.raises(ValueError, match="contiguous blocks"):
        kfold_bench.check_kfold_layout(folds[::-1].copy())
    with pytest.raises(ValueError, match="contiguous blocks"):
        kfold_bench.check_kfold_layout(np.arange(200) % 10)


def test_bench_lines_name_each_measurement() -> None:
    def worker(side: str, n: int, seconds: float, peak: float) -> kfold_bench.WorkerResult:
        return kfold_bench.WorkerResult(side, n, 0.0, seconds, [seconds], 0.0, peak, peak, None)

    load = worker("load", 0, 0.0, 0.0)
    base_6k, base_100k = (
        worker("baseline", 6_000, 1.0, 40.0),
        worker("baseline", 100_000, 8.0, 50.0),
    )
    rows = [
        kfold_bench.Row("engine 6k", worker("engine", 6_000, 0.002, 30.0), load, base_6k),
        kfold_bench.Row("baseline 6k", base_6k, load, None),
        kfold_bench.Row("engine 1M", worker("engine", 1_000_000, 0.2, 90.0), load, base_100k),
        kfold_bench.Row("baseline 100k", base_100k, load, None),
    ]
    assert kfold_bench.bench_lines(rows) == [
        "BENCH lfw-6k: ratio=500.0 time_s=0.002 peak_mib=30 baseline_time_s=1.000 "
        "baseline_peak_mib=40",
        # per pair: (8 s / 100k) / (0.2 s / 1M) = 400
        "BENCH lfw-1m: ratio=400.0 time_s=0.200 peak_mib=90 baseline_time_s=8.000 "
        "baseline_peak_mib=50",
    ]


def test_bad_size() -> None:
    with pytest.raises(ValueError, match="size"):
        kfold_bench.measure(size="huge")


def test_quick_run_ends_with_its_bench_line(tmp_path: Path) -> None:
    out = tmp_path / "kfold.json"
    command = [sys.executable, "-m", "benchmarks.kfold_bench", "--size", "quick"]
    proc = subprocess.run(
        [*command, "--repeat", "1", "--json", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[-1].startswith("BENCH lfw-6k: ratio=")
    assert "VAL@FAR=1e-3" in proc.stdout and "TAR@FAR=1e-3 pooled" in proc.stdout
    payload = json.loads(out.read_text(encoding="utf-8"))
    assert [row["label"] for row in payload["rows"]] == ["engine 6k", "baseline 6k"]
    assert payload["bench"] == [lines[-1]]
    for row in payload["rows"]:
        assert 0.5 < row["figures"]["accuracy_mean"] <= 1.0
        assert 0.0 < row["figures"]["val"] <= 1.0
