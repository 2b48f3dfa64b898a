"""Smoke test of ``python -m benchmarks --quick``: wiring and output, never timings.

Speed and memory are measured by ``make bench`` and reported as ratios; nothing here
asserts a time or a size.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(tempfile.gettempdir()) / f"facebench-bench-smoke-{os.getuid()}"
BENCH_LINE = re.compile(
    r"^BENCH (?P<name>[a-z0-9-]+): ratio=[0-9.]+ time_s=[0-9.]+ peak_mib=[0-9.]+ "
    r"baseline_time_s=[0-9.]+ baseline_peak_mib=[0-9.]+$",
    re.MULTILINE,
)
EXTRACT_QUICK_ROWS = ["small-cnn bare", "small-cnn extract w=2", "small-cnn extract w=2 4x"]


def _bench(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.setdefault("FACEBENCH_BENCH_CACHE", str(CACHE))  # generated data: not the user's
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_quick_benchmark_prints_its_rows_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = _bench("--quick", "--repeat", "1", "--json", str(out), timeout=300)
    assert proc.returncode == 0, proc.stderr
    for text in ("engine 6k", "baseline 6k", "one sort, masked per fold; no grid"):
        assert text in proc.stdout
    assert "engine 1M" not in proc.stdout
    for text in (*EXTRACT_QUICK_ROWS, "extract vs bare loop", "steady state"):
        assert text in proc.stdout
    payload = json.loads(out.read_text(encoding="utf-8"))
    assert payload["benchmark"] == "all"
    assert set(payload) == {"benchmark", "kfold", "extract", "ijbc", "search"}
    # every benchmark ends with its BENCH lines (docs/performance.md)
    names = {m["name"] for m in BENCH_LINE.finditer(proc.stdout)}
    for name in ("lfw-6k", "extract-small-cnn", "ijbc-1v1-quick", "ijbc-1v1-cold-quick"):
        assert name in names, proc.stdout[-3000:]
    assert any(name.startswith("search-") for name in names), names
    assert "sharded == single" in proc.stdout

    kfold = payload["kfold"]
    assert [row["label"] for row in kfold["rows"]] == ["engine 6k", "baseline 6k"]
    assert all(row["n_pairs"] == 6000 for row in kfold["rows"])
    assert all(0.5 < row["accuracy_mean"] <= 1.0 for row in kfold["rows"])

    extract = payload["extract"]
    rows = {row["label"]: row for row in extract["rows"]}
    assert list(rows) == EXTRACT_QUICK_ROWS
    assert rows["small-cnn bare"]["ratio"] is None
    assert rows["small-cnn extract w=2"]["reference"] == "small-cnn bare"
    assert rows["small-cnn extract w=2 4x"]["n_images"] == 4 * rows["small-cnn bare"]["n_images"]
    for row in rows.values():
        assert row["n_images"] == row["images"]["n_images"]
        # One forward pass per batch: the hooks kept the outermost module call only.
        assert row["n_batches"] == -(-row["n_images"] // extract["batch_size"])
        assert row["steady_images_per_s"] > 0 and row["peak_rss_mib"] > 0
        assert 0 < row["model_busy"] <= 1  # forward passes lie inside the timed window
    for label in EXTRACT_QUICK_ROWS[1:]:
        assert rows[label]["ratio"] > 0 and rows[label]["end_to_end_ratio"] > 0
        assert rows[label]["workers_peak_rss_mib"] > 0  # the DataLoader workers were seen


def test_one_benchmark_writes_its_own_json(tmp_path: Path) -> None:
    out = tmp_path / "kfold.json"
    proc = _bench("kfold", "--quick", "--repeat", "1", "--json", str(out), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "extract vs bare loop" not in proc.stdout
    payload = json.loads(out.read_text(encoding="utf-8"))
    assert payload["benchmark"] == "kfold_accuracy"
    assert [row["label"] for row in payload["rows"]] == ["engine 6k", "baseline 6k"]


@pytest.mark.parametrize("which", ["all", "extract"])
def test_existing_json_is_not_overwritten(tmp_path: Path, which: str) -> None:
    out = tmp_path / "bench.json"
    out.write_text("keep\n", encoding="utf-8")
    proc = _bench(which, "--quick", "--json", str(out), timeout=60)
    assert proc.returncode == 2
    assert "--overwrite" in proc.stderr
    assert out.read_text(encoding="utf-8") == "keep\n"


def test_gpu_check_dry_run_compares_every_output(tmp_path: Path) -> None:
    """``benchmarks.gpu_check --device cpu``: the GPU check's comparisons with the CPU on
    both sides (and gloo for the shards) find everything equal."""
    out = tmp_path / "gpu.json"
    env = dict(os.environ)
    env.setdefault("FACEBENCH_BENCH_CACHE", str(CACHE))
    command = [sys.executable, "-m", "benchmarks.gpu_check", "--device", "cpu", "--quick"]
    proc = subprocess.run(
        [*command, "--json", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("GPU ")]
    names = [line.split(":")[0][4:] for line in lines]
    assert names[:3] == ["verify-ijbc-float32", "verify-ijbc-float64", "search-20000x200"]
    assert all("equal=True" in line for line in lines[:3]), lines
    payload = json.loads(out.read_text(encoding="utf-8"))
    assert payload["benchmark"] == "gpu-check" and payload["device"] == "cpu"
    assert payload["verify-ijbc-float32"]["score_tolerance"] > 0
    assert payload["search-20000x200"]["equal"] is True
