"""Smoke test of ``python -m benchmarks.ijbc_bench --quick``: wiring and output, never timings.

The release-size run is ``make bench``'s job; here a small IJB-C-shaped folder goes through
the same worker subprocess, and only the presence of the stage rows, the checks and the
JSON fields is asserted.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
STAGE_ROWS = [
    "protocol parse + sha256",
    "store open + read rows",
    "pooling (media)",
    "pair scoring",
    "counts core",
    "TAR@FAR, ROC, AUC, EER",
    "1:N and report assembly",
    "report write (JSON + npz)",
]


def _bench(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FACEBENCH_BENCH_CACHE": str(cache)}  # not the user's cache
    return subprocess.run(
        [sys.executable, "-m", "benchmarks.ijbc_bench", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_quick_run_prints_the_stages_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "ijbc.json"
    proc = _bench("--quick", "--json", str(out), cache=tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr
    for row in [*STAGE_ROWS, "total"]:
        assert row in proc.stdout
    for text in ("peak RSS", "pairs/s", "TAR check: equal", "score check: within", "<= 1e-12"):
        assert text in proc.stdout
    payload = json.loads(out.read_text(encoding="utf-8"))
    assert payload["benchmark"] == "ijbc_1to1" and payload["quick"] is True
    assert [s["stage"] for s in payload["stages"]] == STAGE_ROWS
    worker = payload["worker"]
    assert worker["n_pairs"] > worker["n_genuine"] > 0
    assert worker["tar_equal"] is True and worker["scores_within_tolerance"] is True
    assert [p["far_target"] for p in worker["tar_at_far"]] == payload["far_targets"]
    assert worker["peak_rss_mib"] > 0 and payload["budget_mib"] > 0
    # cold and warm facebench runs and the baseline, each with its BENCH line
    assert payload["cold"]["tar_equal"] is True
    assert payload["baseline"]["n_pairs"] == worker["n_pairs"]
    assert payload["baseline_scores_max_abs_diff"] < 1e-6  # float32 media means (its script)
    number = r"[0-9.]+"
    for name in ("ijbc-1v1-quick", "ijbc-1v1-cold-quick"):
        pattern = (
            rf"^BENCH {name}: ratio={number} time_s={number} peak_mib={number} "
            rf"baseline_time_s={number} baseline_peak_mib={number}$"
        )
        assert re.search(pattern, proc.stdout, re.MULTILINE), proc.stdout[-2000:]
    # the generated data are cached for the next run
    assert any((tmp_path / "cache").glob("ijbc-quick-*/dataset.json"))


def test_existing_json_is_kept_without_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "ijbc.json"
    out.write_text("keep\n", encoding="utf-8")
    proc = _bench("--quick", "--json", str(out), cache=tmp_path / "cache")
    assert proc.returncode == 2
    assert "--overwrite" in proc.stderr
    assert out.read_text(encoding="utf-8") == "keep\n"
