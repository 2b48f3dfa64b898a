"""Smoke test of ``python -m benchmarks.search_bench --quick``: wiring, checks and output,
never timings (``make bench`` measures them)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_quick_search_benchmark(tmp_path: Path) -> None:
    if shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("torchrun not installed")
    env = {**os.environ, "FACEBENCH_BENCH_CACHE": str(tmp_path / "cache")}  # not the user's
    out = tmp_path / "search.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.search_bench", "--quick", "--json", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    for row in ("facebench (1 process)", "facebench (torchrun 2 x gloo", "baseline (full"):
        assert row in proc.stdout
    assert "spot check (8 probes, every gallery score exact" in proc.stdout
    assert ": equal" in proc.stdout
    assert re.fullmatch(
        r"BENCH search-20k: ratio=[\d.]+ time_s=[\d.]+ peak_mib=\d+ baseline_time_s=[\d.]+"
        r" baseline_peak_mib=\d+",
        lines[-2],
    )
    assert lines[-1] == "sharded == single (search-20k, torchrun 2 x gloo): True"
    payload = json.loads(out.read_text(encoding="utf-8"))
    assert payload["size"] == "quick" and payload["sharded_equals_single"] is True
    assert payload["spot_check_equal"] is True
    assert payload["facebench"]["counts"]["n_probes"] == 200
    assert payload["bench_lines"] == lines[-2:]
    # The stores are cached where FACEBENCH_BENCH_CACHE says.
    cached = list((tmp_path / "cache").iterdir())
    assert [p.name for p in cached] == ["search-20000x200-seed20240623-v2"]
