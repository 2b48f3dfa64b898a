"""Smoke test of ``python -m benchmarks --quick``: wiring and output, never timings.

Speed and memory are measured by ``make bench`` and reported as ratios; nothing here
asserts a time or a size.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_quick_benchmark_prints_its_rows_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--repeat", "1", "--json", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    for text in ("engine 6k", "baseline 6k", "one sort, masked per fold; no grid"):
        assert text in proc.stdout
    assert "engine 1M" not in proc.stdout
    payload = json.loads(out.read_text(encoding="utf-8"))
    assert [row["label"] for row in payload["rows"]] == ["engine 6k", "baseline 6k"]
    assert all(row["n_pairs"] == 6000 for row in payload["rows"])
    assert all(0.5 < row["accuracy_mean"] <= 1.0 for row in payload["rows"])


def test_existing_json_is_not_overwritten(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    out.write_text("keep\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--json", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "--overwrite" in proc.stderr
    assert out.read_text(encoding="utf-8") == "keep\n"
