"""LFW-style 10-fold accuracy: facebench's engine against the common scripts' grid scan.

Run from the repository root::

    python -m benchmarks                # 6,000 and 1,000,000 pairs (seconds)
    python -m benchmarks --quick        # 6,000 pairs only (a few seconds)
    python -m benchmarks --json bench-out/kfold.json

What is compared
----------------
engine
    :func:`facebench.metrics.kfold_accuracy`: the scores are sorted once; each fold's
    training set is the sorted array with that fold masked out, and the threshold is the
    exact best midpoint between distinct training scores (accept when ``score >= t``).
baseline
    :func:`baseline_kfold_accuracy`, written here after the algorithm of insightface's
    ``verification.py`` (``calculate_roc``): distance ``2 - 2 * score`` (squared L2 of unit
    vectors), a grid ``np.arange(0, 4, 0.01)`` scanned in a Python loop, training accuracy at
    every grid point with ``np.less(dist, t)`` and ``np.sum`` over boolean arrays, the first
    maximum (``np.argmax``), then the test accuracy at that threshold.

The two use different decision rules, so their accuracies are reported but are not expected
to be equal. The baseline's cost is linear in pairs (400 grid points times a pass over the
training pairs per fold), so it is timed on 100,000 pairs and its per-pair cost is compared
with the engine's on 1,000,000 pairs; the output says so.

How it is measured
------------------
Synthetic scores (genuine ~ N(0.6, 0.15), impostor ~ N(0.1, 0.15), clipped to [-1, 1],
float64, from a seeded :class:`numpy.random.Generator`) are laid out like LFW's pairs.txt
(10 contiguous folds, each half genuine then half impostor) and saved once to a temporary
``.npz`` that every worker loads. Each side runs in its own subprocess
(``python -m benchmarks.kfold_bench --worker SIDE --data PATH``), which imports what it
needs, loads the data (timed separately), runs one small warm-up call, then times the
computation alone with :func:`time.perf_counter` (best of ``--repeat`` runs) and prints one
JSON line with the times and its peak RSS (``VmHWM`` on Linux, see :func:`peak_rss_mib`;
``ru_maxrss`` is recorded too). A third kind of worker only imports numpy and loads the
data: its peak RSS is the floor that the others are measured against. Speed and memory are
ratios within one run, never assertions in tests.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks._common import peak_rss_mib, ru_maxrss_mib, write_json

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

REPO_ROOT = Path(__file__).resolve().parent.parent
SEED = 20_240_601
N_FOLDS = 10
GENUINE_MEAN = 0.6
IMPOSTOR_MEAN = 0.1
SCORE_SD = 0.15
SMALL, MEDIUM, LARGE = 6_000, 100_000, 1_000_000
SIDES = ("engine", "baseline", "load")
ENGINE_METHOD = (
    "one sort, masked per fold; no grid (exact midpoints between distinct training "
    "scores, accept score >= t, median of tied optima)"
)
BASELINE_METHOD = (
    "distance 2 - 2*score; grid np.arange(0, 4, 0.01) scanned in a Python loop with "
    "np.less(dist, t) and np.sum; first maximum (np.argmax)"
)


# --- data -----------------------------------------------------------------------------------


def make_pairs(n_pairs: int, seed: int = SEED) -> tuple[FloatArray, BoolArray, IntArray]:
    """Synthetic LFW-format pairs: ``N_FOLDS`` contiguous folds, each half genuine first.

    Parameters
    ----------
    n_pairs : int
        A multiple of ``2 * N_FOLDS``.
    seed : int
        Combined with ``n_pairs``, so every size has its own fixed stream.

    Returns
    -------
    scores : ndarray of float64, shape (n_pairs,)
        Genuine ~ N(0.6, 0.15), impostor ~ N(0.1, 0.15), clipped to [-1, 1].
    is_same : ndarray of bool, shape (n_pairs,)
    folds : ndarray of int64, shape (n_pairs,)
        1 to ``N_FOLDS``, in contiguous blocks (like the 10 sets of LFW's pairs.txt).
    """
    if n_pairs <= 0 or n_pairs % (2 * N_FOLDS) != 0:
        raise ValueError(
            f"Expected `n_pairs` to be a positive multiple of {2 * N_FOLDS}, but got {n_pairs}"
        )
    per_fold = n_pairs // N_FOLDS
    rng = np.random.default_rng([seed, n_pairs])
    is_same = np.tile(np.repeat(np.array([True, False]), per_fold // 2), N_FOLDS)
    means = np.where(is_same, GENUINE_MEAN, IMPOSTOR_MEAN)
    scores = np.clip(rng.normal(means, SCORE_SD), -1.0, 1.0).astype(np.float64)
    folds = np.repeat(np.arange(1, N_FOLDS + 1, dtype=np.int64), per_fold)
    return scores, is_same, folds


def save_pairs(directory: Path, n_pairs: int) -> Path:
    """Write :func:`make_pairs` ``(n_pairs)`` to ``directory/pairs_<n>.npz`` and return it."""
    scores, is_same, folds = make_pairs(n_pairs)
    path = directory / f"pairs_{n_pairs}.npz"
    np.savez(path, scores=scores, is_same=is_same, folds=folds)
    return path


def load_pairs(path: Path) -> tuple[FloatArray, BoolArray, IntArray]:
    """Read the arrays written by :func:`save_pairs`."""
    with np.load(path) as data:
        return data["scores"], data["is_same"], data["folds"]


# --- the baseline ---------------------------------------------------------------------------


def grid_accuracy(threshold: float, dist: FloatArray, is_same: BoolArray) -> float:
    """Accuracy when a pair is called "same" at ``dist < threshold`` (boolean sums)."""
    predicted_same = np.less(dist, threshold)
    true_accepts = np.sum(np.logical_and(predicted_same, is_same))
    true_rejects = np.sum(np.logical_and(np.logical_not(predicted_same), np.logical_not(is_same)))
    return float(true_accepts + true_rejects) / dist.size


def baseline_kfold_accuracy(
    scores: FloatArray, is_same: BoolArray, folds: IntArray
) -> tuple[FloatArray, FloatArray]:
    """k-fold accuracy by the threshold-grid scan of the common evaluation scripts.

    The algorithm of insightface's ``verification.py`` (``calculate_roc``), restricted to
    accuracy (the per-threshold test-fold TPR/FPR it also computes for its ROC are left
    out, and each fold's training arrays are indexed once rather than at every threshold,
    which only makes the baseline faster). A benchmark baseline, not library code.

    Parameters
    ----------
    scores : ndarray of float64, shape (n,)
        Cosine similarities; the distance is ``2 - 2 * score``.
    is_same : ndarray of bool, shape (n,)
    folds : ndarray of int, shape (n,)

    Returns
    -------
    accuracies : ndarray of float64, shape (k,)
        Test accuracy of each fold, folds in ascending order.
    thresholds : ndarray of float64, shape (k,)
        The distance threshold chosen on the other folds (first grid point of maximal
        training accuracy).
    """
    dist = 2.0 - 2.0 * scores
    grid = np.arange(0, 4, 0.01)
    accuracies: list[float] = []
    chosen: list[float] = []
    for fold in np.unique(folds):
        test = folds == fold
        train = np.logical_not(test)
        train_dist, train_same = dist[train], is_same[train]
        train_accuracy = np.zeros(grid.size)
        for i, threshold in enumerate(grid):
            train_accuracy[i] = grid_accuracy(float(threshold), train_dist, train_same)
        best = float(grid[np.argmax(train_accuracy)])
        accuracies.append(grid_accuracy(best, dist[test], is_same[test]))
        chosen.append(best)
    return np.asarray(accuracies, dtype=np.float64), np.asarray(chosen, dtype=np.float64)


# --- the worker (one side, one subprocess) --------------------------------------------------


Accuracy = Callable[[FloatArray, BoolArray, IntArray], tuple[float, float]]


def _engine() -> Accuracy:
    from facebench.metrics import kfold_accuracy

    def run(scores: FloatArray, is_same: BoolArray, folds: IntArray) -> tuple[float, float]:
        result = kfold_accuracy(scores, is_same, folds)
        return result.mean, result.std

    return run


def _baseline(scores: FloatArray, is_same: BoolArray, folds: IntArray) -> tuple[float, float]:
    accuracies, _ = baseline_kfold_accuracy(scores, is_same, folds)
    # insightface reports np.std with ddof=0.
    return float(accuracies.mean()), float(accuracies.std())


def run_worker(side: str, data: Path, repeat: int) -> dict[str, Any]:
    """Load the pairs, time one side's computation, and return the measurements.

    ``side`` is ``engine``, ``baseline`` or ``load`` (import numpy and load only).
    """
    compute: Accuracy | None = None
    if side == "engine":
        compute = _engine()  # the warm-up import, before anything is timed
    elif side == "baseline":
        compute = _baseline
    start = time.perf_counter()
    scores, is_same, folds = load_pairs(data)
    load_s = time.perf_counter() - start
    rss_before = peak_rss_mib()
    runs: list[float] = []
    mean = std = math.nan
    if compute is not None:
        warm = np.arange(0, scores.size, max(1, scores.size // 200))
        compute(scores[warm], is_same[warm], folds[warm])
        for _ in range(repeat):
            start = time.perf_counter()
            mean, std = compute(scores, is_same, folds)
            runs.append(time.perf_counter() - start)
    return {
        "side": side,
        "n_pairs": int(scores.size),
        "load_s": load_s,
        "compute_s": min(runs) if runs else 0.0,
        "compute_runs_s": runs,
        "rss_before_compute_mib": rss_before,
        "peak_rss_mib": peak_rss_mib(),
        "ru_maxrss_mib": ru_maxrss_mib(),
        "accuracy_mean": None if math.isnan(mean) else mean,
        "accuracy_std": None if math.isnan(std) else std,
    }


# --- the driver -----------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerResult:
    """What one worker measured (see :func:`run_worker`)."""

    side: str
    n_pairs: int
    load_s: float
    compute_s: float
    compute_runs_s: list[float]
    rss_before_compute_mib: float
    peak_rss_mib: float
    ru_maxrss_mib: float
    accuracy_mean: float | None
    accuracy_std: float | None

    @property
    def us_per_pair(self) -> float:
        """Best compute time per pair, in microseconds."""
        return self.compute_s / self.n_pairs * 1e6


@dataclass(frozen=True)
class Row:
    """One line of the table: a worker's result and the baseline it is compared with."""

    label: str
    result: WorkerResult
    load_only: WorkerResult
    reference: WorkerResult | None

    @property
    def speedup_per_pair(self) -> float | None:
        """Baseline µs per pair divided by this row's (None for a baseline row)."""
        if self.reference is None:
            return None
        return self.reference.us_per_pair / self.result.us_per_pair


def spawn_worker(side: str, data: Path, repeat: int) -> WorkerResult:
    """Run :func:`run_worker` in a fresh interpreter and parse its JSON line."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", "benchmarks.kfold_bench", "--worker", side]
    command += ["--data", str(data), "--repeat", str(repeat)]
    proc = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"benchmark worker {side!r} on {data.name} failed with exit code "
            f"{proc.returncode}:\n{proc.stderr.strip() or proc.stdout.strip()}"
        )
    return WorkerResult(**json.loads(lines[-1]))


def _progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _label(n_pairs: int) -> str:
    return f"{n_pairs // 1_000_000}M" if n_pairs % 1_000_000 == 0 else f"{n_pairs // 1000}k"


def measure(quick: bool, repeat: int | None) -> tuple[list[Row], dict[int, WorkerResult]]:
    """Write the data, run every worker, and pair each result with its baseline."""
    plan: list[tuple[str, int, int]] = [("engine", SMALL, 5), ("baseline", SMALL, 5)]
    if not quick:
        plan += [("engine", LARGE, 3), ("baseline", MEDIUM, 3)]
    sizes = sorted({n for _, n, _ in plan})
    results: dict[tuple[str, int], WorkerResult] = {}
    load_only: dict[int, WorkerResult] = {}
    with tempfile.TemporaryDirectory(prefix="facebench-bench-") as tmp:
        paths = {n: save_pairs(Path(tmp), n) for n in sizes}
        for n in sizes:
            _progress(f"load-only worker, {n:,} pairs")
            load_only[n] = spawn_worker("load", paths[n], 1)
        for side, n, default_repeat in plan:
            runs = default_repeat if repeat is None else repeat
            _progress(f"{side}, {n:,} pairs, best of {runs}")
            results[side, n] = spawn_worker(side, paths[n], runs)
    rows: list[Row] = []
    for side, n, _ in plan:
        reference = None
        if side == "engine":
            # The grid scan is linear in pairs: 1M is compared per pair with 100k.
            reference = results["baseline", SMALL if n == SMALL else MEDIUM]
        rows.append(Row(f"{side} {_label(n)}", results[side, n], load_only[n], reference))
    return rows, load_only


def _fmt_speedup(value: float | None) -> str:
    if value is None:
        return "1× (ref)"
    return f"{value:,.0f}×" if value >= 100 else f"{value:.1f}×"


def _fmt_accuracy(result: WorkerResult) -> str:
    if result.accuracy_mean is None or result.accuracy_std is None:
        return "n/a"
    return f"{result.accuracy_mean:.4f} ± {result.accuracy_std:.4f}"


def render(rows: Sequence[Row], load_only: dict[int, WorkerResult]) -> None:
    """Print the table and the notes that say what the numbers mean."""
    from rich.console import Console
    from rich.table import Table

    console = Console() if sys.stdout.isatty() else Console(width=120)
    table = Table(title="10-fold accuracy (LFW format): facebench engine vs grid-scan baseline")
    table.add_column("run", no_wrap=True)
    headers = ("pairs", "compute s", "µs/pair", "load s", "peak RSS MiB", "Δ RSS MiB")
    for header in (*headers, "speed-up/pair"):
        table.add_column(header, justify="right", no_wrap=True)
    for row in rows:
        r = row.result
        table.add_row(
            row.label,
            f"{r.n_pairs:,}",
            f"{r.compute_s:.4f}",
            f"{r.us_per_pair:#.3g}",
            f"{r.load_s:.4f}",
            f"{r.peak_rss_mib:.1f}",
            f"{r.peak_rss_mib - row.load_only.peak_rss_mib:+.1f}",
            _fmt_speedup(row.speedup_per_pair),
        )
    console.print(table)
    notes = [
        f"engine method: {ENGINE_METHOD}",
        f"baseline method (insightface calculate_roc): {BASELINE_METHOD}",
    ]
    if any(row.result.n_pairs == LARGE for row in rows):
        notes.append(
            f"engine 1M vs baseline: baseline timed on {MEDIUM:,} pairs; per-pair ratio "
            "(the grid scan's cost is linear in pairs)"
        )
    floors = ", ".join(f"{_label(n)} {r.peak_rss_mib:.1f} MiB" for n, r in load_only.items())
    notes += [
        "peak RSS (VmHWM of each worker) includes the interpreter + numpy; Δ RSS = peak RSS "
        f"minus the load-only worker's (numpy + data, same size): {floors}",
        "compute s: best of the repeated runs after a warm-up call; load time reported apart",
        "accuracy mean ± std (different rules — not expected to be equal; std ddof=1 for "
        "the engine, ddof=0 for the baseline as insightface reports):",
        *(f"  {row.label:<14} {_fmt_accuracy(row.result)}" for row in rows),
        f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"numpy {np.__version__}, {platform.platform()}",
    ]
    for note in notes:
        # soft_wrap: a log keeps each note on one line.
        console.print(note, soft_wrap=True, highlight=False)


def summary(rows: Sequence[Row], load_only: dict[int, WorkerResult]) -> dict[str, Any]:
    """The numbers as a JSON-ready dict."""
    return {
        "benchmark": "kfold_accuracy",
        "engine_method": ENGINE_METHOD,
        "baseline_method": BASELINE_METHOD,
        "data": {
            "seed": SEED,
            "n_folds": N_FOLDS,
            "genuine": {"mean": GENUINE_MEAN, "sd": SCORE_SD},
            "impostor": {"mean": IMPOSTOR_MEAN, "sd": SCORE_SD},
        },
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "platform": platform.platform(),
        },
        "rows": [
            {
                "label": row.label,
                **asdict(row.result),
                "us_per_pair": row.result.us_per_pair,
                "rss_over_load_only_mib": row.result.peak_rss_mib - row.load_only.peak_rss_mib,
                "reference": None if row.reference is None else row.reference.n_pairs,
                "speedup_per_pair": row.speedup_per_pair,
            }
            for row in rows
        ],
        "load_only": [asdict(r) for r in load_only.values()],
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument("--quick", action="store_true", help="6,000 pairs only")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the numbers here")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json")
    parser.add_argument(
        "--repeat", type=int, default=None, help="timed runs per worker (default 5 / 3)"
    )
    parser.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeat is not None and args.repeat < 1:
        parser.error(f"expected --repeat >= 1, but got {args.repeat}")
    if args.worker is not None and args.data is None:
        parser.error("--worker needs --data")
    if args.json is not None and args.json.exists() and not args.overwrite:
        parser.error(f"{args.json} exists; pass --overwrite to replace it")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m benchmarks`` and of the worker subprocesses."""
    args = parse_args(argv)
    if args.worker is not None:
        print(json.dumps(run_worker(args.worker, args.data, args.repeat or 1)), flush=True)
        return 0
    rows, load_only = measure(args.quick, args.repeat)
    render(rows, load_only)
    if args.json is not None:
        write_json(args.json, summary(rows, load_only))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
