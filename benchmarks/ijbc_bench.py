"""IJB-C-sized 1:1 evaluation from a feature store: stage times, peak memory, exactness.

Run from the repository root::

    python -m benchmarks.ijbc_bench                # release size (1-2 min, 1.5 GB temp disk)
    python -m benchmarks.ijbc_bench --quick        # a small IJB-C-shaped folder (seconds)
    python -m benchmarks.ijbc_bench --json bench-out/ijbc.json [--overwrite]
    python -m benchmarks.ijbc_bench --repeat 3     # three evaluation runs, the fastest shown

What is measured
----------------
The path of ``facebench verify --protocol ijbc --json``, in a fresh interpreter of its own
(``python -m benchmarks.ijbc_bench --worker ...``) so that its peak RSS is its own:
:func:`protocols.ijbc.load_ijbc` with ``defer_pairs=True`` as verify loads it (the image
list parsed; the pair file hashed and its positions loaded in a thread), then
:func:`facebench.evaluate_splits.evaluate_templates` with ``pooling="media"`` (which pools
the store while the pairs load, then waits for them: the ``pairs`` stage, counted in the
parse row), then
:func:`facebench.report.write_report` (report JSON and ``.scores.npz``). Each stage is
timed with :func:`time.perf_counter` through the ``timer`` hook of ``evaluate_templates``,
so the numbers are those of the real code path. Peak RSS is ``VmHWM`` of the worker (see
:func:`benchmarks.kfold_bench.peak_rss_mib`), compared with the budget of the scale issue:
the store's float32 features plus 0.5 GiB (and 3 s end to end).

The data (made once per run in a temporary folder, seeded, not timed with the run):
``tests/ijbc_fixtures.write_ijbc_full_size`` writes meta files of IJB-C's release size
(469,375 images, 23,124 templates, 15,658,489 pairs of which 19,557 genuine; 1:1 only), and
a store holds one 512-d unit feature per loose crop: each template has a random direction
(a probe's genuine partner's direction mixed with its own, so genuine pairs score higher)
and each item is its template's direction plus Gaussian noise.

Checks (after the peak is read, outside the timed run)
-------------------------------------------------------
- TAR check: every TAR at FAR 1e-6 .. 1e-1 in the report equals a brute-force count
  (impostors sorted in descending order; with ``k = floor(target x n_impostor)`` false
  accepts allowed, TAR is the fraction of genuine scores above the (k+1)-th highest impostor
  score) on float64 scores of every pair computed apart from the timed path (templates
  pooled in memory by ``facebench.pooling.pool_templates``, float64 matrix products), and
  on the written scores.
- Score check: against those float64 scores, the genuine pairs' written scores within
  1e-12, every pair's within the report's error bound (float32 scoring; ``verify
  --score-precision``) or 1e-12 (float64 scoring).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks._common import CACHE_DIR, bench_line, peak_rss_mib, write_json

REPO_ROOT = Path(__file__).resolve().parent.parent
SEED = 20_240_611
DIM = 512
POOLING = "media"
FAR_TARGETS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
ITEM_NOISE = 1.2  # per-item noise, relative to the unit template direction
GENUINE_MIX = 0.6  # largest weight of the genuine partner's direction in a probe's
SCORE_TOLERANCE = 1e-12
TARGET_SECONDS = 3.0
BUDGET_OVER_FEATURES_MIB = 512.0
GIB = 1024.0**3
MIB = 1024.0**2

# (label, stages of evaluate_templates' timer it covers)
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("protocol parse + sha256", ("parse", "pairs")),
    ("store open + read rows", ("read",)),
    ("pooling (media)", ("pool",)),
    ("pair scoring", ("score",)),
    ("counts core", ("counts",)),
    ("TAR@FAR, ROC, AUC, EER", ("metrics",)),
    ("1:N and report assembly", ("identification", "assemble")),
    ("report write (JSON + npz)", ("write",)),
)


# --- data -----------------------------------------------------------------------------------


def _fixtures() -> ModuleType:
    """``tests/ijbc_fixtures.py`` (the protocol-folder writer the tests use)."""
    path = REPO_ROOT / "tests" / "ijbc_fixtures.py"
    spec = importlib.util.spec_from_file_location("ijbc_fixtures", path)
    if spec is None or spec.loader is None or not path.is_file():
        raise RuntimeError(f"{path}: the IJB-C fixture writer is missing; run from a checkout")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def template_directions(
    n_templates: int,
    left: npt.NDArray[np.int64],
    right: npt.NDArray[np.int64],
    is_same: npt.NDArray[np.bool_],
    rng: np.random.Generator,
) -> npt.NDArray[np.float64]:
    """A unit direction per template; a genuine pair's right template leans to its left one
    by a random weight in [0, GENUINE_MIX), so genuine scores spread from about 0 to 0.8.

    Returns
    -------
    ndarray of float64, shape (n_templates, DIM), unit rows
    """
    own = rng.standard_normal((n_templates, DIM))
    own /= np.linalg.norm(own, axis=1, keepdims=True)
    mixed = own.copy()
    genuine_left, genuine_right = left[is_same], right[is_same]
    weight = rng.uniform(0.0, GENUINE_MIX, (genuine_right.size, 1))
    mixed[genuine_right] = weight * own[genuine_left] + (1 - weight) * own[genuine_right]
    mixed /= np.linalg.norm(mixed, axis=1, keepdims=True)
    return mixed


def item_features(
    directions: npt.NDArray[np.float64], item_template: npt.NDArray[np.int64], seed: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Unit float32 features (template direction + noise) and raw norms, made in blocks."""
    rng = np.random.default_rng([seed, 1])
    n = item_template.size
    unit = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 1 << 16):
        rows = item_template[start : start + (1 << 16)]
        raw = directions[rows] + rng.standard_normal((rows.size, DIM)) * (ITEM_NOISE / DIM**0.5)
        raw /= np.linalg.norm(raw, axis=1, keepdims=True)
        unit[start : start + rows.size] = raw
    norms = rng.uniform(10.0, 30.0, n).astype(np.float32)
    return unit, norms


@dataclass(frozen=True)
class Dataset:
    """A generated protocol folder and its store."""

    protocol_dir: Path
    store: Path
    n_items: int
    dim: int
    features_bytes: int
    protocol_s: float
    store_s: float


def make_dataset(directory: Path, quick: bool, seed: int = SEED) -> Dataset:
    """Write the protocol folder (release size, or small with ``quick``) and its store."""
    from facebench.store import create_store
    from protocols.ijbc import load_ijbc

    fixtures = _fixtures()
    root = directory / "IJB-C"
    start = time.perf_counter()
    if quick:
        fixtures.write_ijbc(
            root,
            n_subjects=40,
            templates_per_subject=5,
            images_per_template=6,
            impostors_per_probe=39,
            seed=seed,
            with_1n=False,
        )
    else:
        fixtures.write_ijbc_full_size(root, variant="ijbc", seed=seed, with_1n=False)
    protocol_s = time.perf_counter() - start
    start = time.perf_counter()
    protocol = load_ijbc(root, identification=False)
    ver = protocol.splits[0].verification
    assert ver is not None  # an IJB-C folder always has 1:1 pairs
    templates = ver.templates
    # Every item of the folder (each loose crop is in exactly one template here).
    keys, first = np.unique(np.asarray(templates.item_keys), return_index=True)
    order = np.argsort(first)  # store rows in file order
    ids = keys[order].tolist()
    item_template = templates.item_template[first[order]]
    rng = np.random.default_rng([seed, 0])
    directions = template_directions(templates.n_templates, ver.left, ver.right, ver.is_same, rng)
    unit, norms = item_features(directions, item_template, seed)
    del directions, protocol, ver, templates
    store = directory / "ijbc.h5"
    create_store(store, ids, unit, norms, model="synthetic-ijbc-bench")
    store_s = time.perf_counter() - start
    return Dataset(root, store, len(ids), DIM, unit.nbytes, protocol_s, store_s)


# --- the worker -----------------------------------------------------------------------------


def _vm_rss_mib() -> float:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def brute_force_tar(
    scores: npt.NDArray[np.float64], is_same: npt.NDArray[np.bool_], far_target: float
) -> float:
    """TAR of the ``exact`` rule by direct counting (independent of the counts core).

    With ``k = floor(target x n_impostor)`` false accepts allowed, the lowest usable
    threshold lies just above the (k+1)-th highest impostor score; TAR is the fraction of
    genuine scores above it (all genuine scores when ``k >= n_impostor``).
    """
    genuine = scores[is_same]
    impostor = np.sort(scores[~is_same])[::-1]
    allowed = int(Fraction(repr(float(far_target))) * impostor.size)
    if allowed >= impostor.size:
        return 1.0
    return float(np.count_nonzero(genuine > impostor[allowed]) / genuine.size)


def reference_scores(protocol: Any, store_path: Path) -> npt.NDArray[np.float64]:
    """Every pair's float64 score, computed apart from the timed path: templates pooled in
    memory by :func:`facebench.pooling.pool_templates` (not the streamed pooling), then
    float64 matrix products (:func:`facebench.template_scores.chunked_scores` of float64
    rows)."""
    from facebench.pooling import pool_templates
    from facebench.store import FeatureStore
    from facebench.template_scores import chunked_scores

    ver = protocol.splits[0].verification
    templates = ver.templates
    with FeatureStore.open(store_path) as store:
        rows = store.index_of(list(templates.item_keys))
        unit, norms = store.read_rows(rows)
    pooled = pool_templates(
        unit.astype(np.float64),
        norms.astype(np.float64),
        templates.item_template,
        templates.item_media,
        templates.n_templates,
        mode=POOLING,
    )
    del unit
    return np.asarray(chunked_scores(pooled, ver.left, ver.right), dtype=np.float64)


def score_check(
    reference: npt.NDArray[np.float64],
    scores: npt.NDArray[np.float64],
    is_same: npt.NDArray[np.bool_],
) -> tuple[float, float]:
    """Max |score - reference| over the genuine pairs and over all pairs."""
    error = np.abs(scores - reference)
    return float(error[is_same].max()), float(error.max())


class _Stages:
    """Wall and kernel seconds per stage, and the peak RSS when each stage ended."""

    def __init__(self) -> None:
        self.stages: dict[str, float] = {}
        self.kernel: dict[str, float] = {}
        self.peaks: dict[str, float] = {}
        self.start = time.perf_counter()
        self.clock = [self.start]
        self.system = [os.times().system]

    def __call__(self, stage: str) -> None:
        now, now_system = time.perf_counter(), os.times().system
        self.stages[stage] = self.stages.get(stage, 0.0) + now - self.clock[0]
        self.kernel[stage] = self.kernel.get(stage, 0.0) + now_system - self.system[0]
        self.peaks[stage] = peak_rss_mib()  # VmHWM never falls: the peak so far
        self.clock[0], self.system[0] = time.perf_counter(), os.times().system

    def as_dict(self) -> dict[str, Any]:
        self.stages.pop("imports", None)  # made before the timed run, as a script's are
        self.kernel.pop("imports", None)
        return {
            "stages_s": self.stages,
            "stages_kernel_s": self.kernel,
            "peak_after_stage_mib": self.peaks,
            "total_s": sum(self.stages.values()),
            "wall_s": self.clock[0] - self.start,
            "peak_rss_mib": peak_rss_mib(),
        }


def run_worker(protocol_dir: Path, store: Path, out: Path, seed: int) -> dict[str, Any]:
    """Parse, evaluate and write a report as ``facebench verify --protocol ijbc --pooling
    media --json`` does, timing each stage; then check the numbers (not timed)."""
    from facebench.evaluate_splits import SplitOptions, evaluate_templates
    from facebench.report import ReportWriter, to_json
    from facebench.store import StoreOpening
    from protocols.ijbc import load_ijbc

    rss_imports = _vm_rss_mib()
    timer = _Stages()
    # As verify: the store opened in a thread while the protocol is parsed; the landmarks
    # file (detector scores) read only for insightface pooling; the report written by a
    # ReportWriter.
    with StoreOpening(store) as opening:
        deferred = load_ijbc(
            protocol_dir, detector_scores=POOLING == "insightface", defer_pairs=True
        )
        timer("parse")
        report_path = out / "report.json"
        with ReportWriter(report_path, overwrite=True) as writer:
            report, pair_data = evaluate_templates(
                deferred,
                opening,
                SplitOptions(pooling=POOLING, far_targets=FAR_TARGETS),
                timer=timer,
                pair_sink=writer.begin,
            )
            writer.finish(to_json(report), pair_data)
    timer("write")
    protocol = deferred.result()
    measured = timer.as_dict()

    (entry,) = report.splits
    scores, is_same = np.asarray(pair_data["score"]), np.asarray(pair_data["is_same"])
    tar = [(p["far_target"], p["tar"]) for p in entry["tar_at_far"]]
    on_written = [brute_force_tar(scores, is_same, t) for t, _ in tar]
    reference = reference_scores(protocol, store)
    expected = [brute_force_tar(reference, is_same, t) for t, _ in tar]
    genuine_error, worst = score_check(reference, scores, is_same)
    precision = entry["score_precision"]
    tolerance = precision.get("error_bound") or SCORE_TOLERANCE
    return {
        **measured,
        "rss_after_imports_mib": rss_imports,
        "n_pairs": int(entry["n_pairs"]),
        "n_genuine": int(entry["n_genuine"]),
        "n_templates": int(entry["n_templates"]),
        "auc": float(entry["auc"]),
        "eer": float(entry["eer"]),
        "score_precision": precision,
        "tar_at_far": [{"far_target": t, "tar": v} for t, v in tar],
        "tar_brute_force": expected,
        "tar_brute_force_written_scores": on_written,
        "tar_equal": [v for _, v in tar] == expected == on_written,
        "genuine_max_abs_error": genuine_error,
        "score_max_abs_error": worst,
        "score_tolerance": tolerance,
        "scores_within_tolerance": genuine_error <= SCORE_TOLERANCE and worst <= tolerance,
        "npz_bytes": (out / "report.scores.npz").stat().st_size,
    }


def run_baseline_worker(protocol_dir: Path, store: Path, out: Path) -> dict[str, Any]:
    """The common script's algorithm (:mod:`benchmarks.ijbc_baseline`), timed by stage."""
    from benchmarks import ijbc_baseline

    rss_imports = _vm_rss_mib()
    timer = _Stages()
    found = ijbc_baseline.run(protocol_dir / "meta", store, out, timer)
    return {**timer.as_dict(), "rss_after_imports_mib": rss_imports, **found}


# --- the driver -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """One benchmark run: the data made and what the worker measured (best of repeats)."""

    quick: bool
    dataset: Dataset
    worker: dict[str, Any]  # the fastest warm run (the protocol cache filled)
    runs_total_s: list[float] = field(default_factory=list)
    cold: dict[str, Any] | None = None  # the first run, with an empty protocol cache
    baseline: dict[str, Any] | None = None
    baseline_scores_max_abs_diff: float | None = None

    @property
    def budget_mib(self) -> float:
        """The scale issue's memory budget: float32 features + 0.5 GiB."""
        return self.dataset.features_bytes / MIB + BUDGET_OVER_FEATURES_MIB

    def stage_seconds(self, kind: str = "stages_s") -> list[tuple[str, float]]:
        """(label, seconds) per row of :data:`STAGES`: wall time, or with ``kind=
        "stages_kernel_s"`` the CPU time spent in the kernel (page faults, file reads)."""
        measured = self.worker[kind]
        return [(label, sum(measured.get(k, 0.0) for k in keys)) for label, keys in STAGES]

    def stage_peaks(self) -> list[float | None]:
        """Peak RSS (MiB) at the end of each row of :data:`STAGES` (None: did not run)."""
        peaks = self.worker["peak_after_stage_mib"]
        found = [[peaks[k] for k in keys if k in peaks] for _, keys in STAGES]
        return [max(p) if p else None for p in found]


def spawn_worker(
    dataset: Dataset, out: Path, side: str = "facebench", cache: Path | None = None
) -> dict[str, Any]:
    """Run one side (:func:`run_worker` or :func:`run_baseline_worker`) in a fresh
    interpreter and parse its JSON line; ``cache`` is facebench's protocol cache folder."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    if cache is not None:
        env["FACEBENCH_CACHE_DIR"] = str(cache)
    command = [sys.executable, "-m", "benchmarks.ijbc_bench", "--worker", side]
    command += ["--protocol-dir", str(dataset.protocol_dir), "--store", str(dataset.store)]
    command += ["--out", str(out)]
    proc = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"IJB-C benchmark worker failed with exit code {proc.returncode}:\n"
            f"{proc.stderr.strip() or proc.stdout.strip()}"
        )
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


DATA_VERSION = 1
"""Bumped whenever :func:`make_dataset` changes what it writes (old caches are ignored)."""


def cached_dataset(quick: bool) -> Dataset:
    """The generated folder and store, made once and kept in ``_common.CACHE_DIR``.

    The data depend only on the seed, the size and :data:`DATA_VERSION`; a half-written
    cache (an interrupted run) is never used: the data are written to a temporary folder
    that is renamed into place, with a ``dataset.json`` that records what was made.
    """
    name = f"ijbc-{'quick' if quick else 'release'}-seed{SEED}-v{DATA_VERSION}"
    final = CACHE_DIR / name
    record = final / "dataset.json"
    if record.is_file():
        fields = json.loads(record.read_text(encoding="utf-8"))
        fields.update(protocol_dir=final / "IJB-C", store=final / "ijbc.h5")
        return Dataset(**fields)
    _progress(
        f"writing the {'small' if quick else 'release-size'} IJB-C folder and store to {final}"
    )
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=CACHE_DIR))
    made = make_dataset(work, quick)
    fields = asdict(made)
    fields.update(protocol_dir=None, store=None)
    (work / "dataset.json").write_text(json.dumps(fields, indent=2) + "\n", encoding="utf-8")
    if final.exists():  # a stale partial or older copy under the final name
        shutil.rmtree(final)
    os.replace(work, final)
    return cached_dataset(quick)


def measure(quick: bool, repeat: int = 1, baseline: bool = True) -> Result:
    """Make (or reuse) the data; run facebench once with an empty protocol cache (cold),
    then ``repeat`` times with it filled (warm; the fastest is kept), then the baseline."""
    dataset = cached_dataset(quick)
    with tempfile.TemporaryDirectory(prefix="facebench-ijbc-bench-") as tmp:
        work = Path(tmp)
        cache = work / "protocol-cache"

        def out_dir(name: str) -> Path:
            path = work / name
            path.mkdir()
            return path

        _progress("facebench, cold (an empty protocol cache: the pair file is parsed)")
        cold = spawn_worker(dataset, out_dir("cold"), cache=cache)
        runs: list[dict[str, Any]] = []
        for i in range(repeat):
            _progress(f"facebench, warm (the parsed pair file cached), run {i + 1} of {repeat}")
            runs.append(spawn_worker(dataset, out_dir(f"warm{i}"), cache=cache))
        found = None
        worst = None
        if baseline:
            _progress("baseline (the common script's algorithm; about 1.5 minutes at full size)")
            found = spawn_worker(dataset, out_dir("baseline"), side="baseline")
            with np.load(work / "cold" / "report.scores.npz") as ours:
                theirs = np.load(work / "baseline" / "baseline_scores.npy")
                worst = float(np.max(np.abs(ours["score"] - theirs)))
    best = min(runs, key=lambda r: float(r["total_s"]))
    return Result(quick, dataset, best, [float(r["total_s"]) for r in runs], cold, found, worst)


def _median_note(result: Result) -> str:
    """The median warm run, and its ratio: the fastest run is the BENCH line's."""
    if not result.runs_total_s:
        return ""
    median = float(np.median(result.runs_total_s))
    ratio = ""
    if result.baseline is not None:
        ratio = f", ratio {float(result.baseline['total_s']) / median:.1f}"
    return f"; median warm run {median:.3f} s{ratio}"


def bench_lines(result: Result) -> list[str]:
    """The ``BENCH ijbc-1v1`` lines: warm (the steady state: every evaluation after the
    first of a protocol folder) and cold (the very first)."""
    base = result.baseline
    lines = []
    size = "-quick" if result.quick else ""
    for name, run in (("ijbc-1v1", result.worker), ("ijbc-1v1-cold", result.cold)):
        if run is None:
            continue
        t = float(run["total_s"])
        lines.append(
            bench_line(
                name + size,
                ratio=None if base is None else float(base["total_s"]) / t,
                time_s=t,
                peak_mib=float(run["peak_rss_mib"]),
                baseline_time_s=None if base is None else float(base["total_s"]),
                baseline_peak_mib=None if base is None else float(base["peak_rss_mib"]),
            )
        )
    return lines


def render(result: Result) -> None:
    """Print the stage table and the notes."""
    from rich.console import Console
    from rich.table import Table

    console = Console() if sys.stdout.isatty() else Console(width=120)
    w = result.worker
    size = "small IJB-C-shaped (--quick)" if result.quick else "IJB-C release size"
    table = Table(
        title=f"IJB-C 1:1 from a store, {size}: {result.dataset.n_items:,} items x "
        f"{result.dataset.dim}, {w['n_templates']:,} templates, {w['n_pairs']:,} pairs"
    )
    table.add_column("stage", no_wrap=True)
    table.add_column("warm s", justify="right", no_wrap=True)
    table.add_column("share", justify="right", no_wrap=True)
    table.add_column("kernel s", justify="right", no_wrap=True)
    table.add_column("peak RSS MiB so far", justify="right", no_wrap=True)
    table.add_column("cold s", justify="right", no_wrap=True)
    table.add_column("baseline s", justify="right", no_wrap=True)
    table.add_column("baseline peak MiB", justify="right", no_wrap=True)
    total = float(w["total_s"])
    kernel = result.stage_seconds("stages_kernel_s")

    def column(run: dict[str, Any] | None) -> list[str]:
        if run is None:
            return ["" for _ in STAGES]
        measured = run["stages_s"]
        return [
            f"{sum(measured[k] for k in keys if k in measured):.3f}"
            if any(k in measured for k in keys)
            else ""
            for _, keys in STAGES
        ]

    def peaks(run: dict[str, Any] | None) -> list[str]:
        if run is None:
            return ["" for _ in STAGES]
        found = [
            [run["peak_after_stage_mib"][k] for k in keys if k in run["peak_after_stage_mib"]]
            for _, keys in STAGES
        ]
        return [f"{max(p):,.0f}" if p else "" for p in found]

    for (label, seconds), (_, in_kernel), peak_so_far, cold_s, base_s, base_peak in zip(
        result.stage_seconds(),
        kernel,
        result.stage_peaks(),
        column(result.cold),
        column(result.baseline),
        peaks(result.baseline),
        strict=True,
    ):
        table.add_row(
            label,
            f"{seconds:.3f}",
            f"{seconds / total:.1%}" if total else "n/a",
            f"{in_kernel:.2f}",
            "" if peak_so_far is None else f"{peak_so_far:,.1f}",
            cold_s,
            base_s,
            base_peak,
        )

    def total_of(run: dict[str, Any] | None, key: str, fmt: str) -> str:
        return "" if run is None else format(float(run[key]), fmt)

    table.add_row(
        "total",
        f"{total:.3f}",
        "100.0%",
        f"{sum(s for _, s in kernel):.2f}",
        f"{w['peak_rss_mib']:,.1f}",
        total_of(result.cold, "total_s", ".3f"),
        total_of(result.baseline, "total_s", ".3f"),
        total_of(result.baseline, "peak_rss_mib", ",.0f"),
        style="bold",
    )
    console.print(table)
    features_mib = result.dataset.features_bytes / MIB
    peak = float(w["peak_rss_mib"])
    score_s = float(w["stages_s"].get("score", 0.0))
    rate = f"{w['n_pairs'] / score_s:,.0f} pairs/s" if score_s > 0 else "n/a"
    tar_line = "equal" if w["tar_equal"] else "DIFFERENT"
    score_line = "within" if w["scores_within_tolerance"] else "OUTSIDE"
    notes = [
        f"peak RSS (VmHWM of the worker): {peak:,.1f} MiB; interpreter + imports "
        f"{w['rss_after_imports_mib']:,.1f} MiB",
        f"store float32 features {features_mib:,.1f} MiB; budget features + 0.5 GiB = "
        f"{result.budget_mib:,.1f} MiB; peak - budget = {peak - result.budget_mib:+,.1f} MiB",
        f"end to end {total:.3f} s (target < {TARGET_SECONDS:g} s: "
        f"{total - TARGET_SECONDS:+.3f} s)",
        f"pair scoring throughput: {rate}",
        f"TAR check: {tar_line} (report vs brute-force counts on float64 scores of every pair"
        " and on the written scores, at FAR " + ", ".join(f"{t:g}" for t in FAR_TARGETS) + ")",
        f"scores: {w['score_precision']['precision']}"
        + (
            f" ({w['score_precision']['n_rescored']:,} pairs re-scored in float64, error bound"
            f" {w['score_precision']['error_bound']:.3g})"
            if w["score_precision"]["precision"] == "float32"
            else ""
        ),
        f"score check: {score_line} (vs float64 dots of templates pooled in memory: genuine"
        f" max |error| {w['genuine_max_abs_error']:.3g} <= {SCORE_TOLERANCE:g}; all pairs max"
        f" |error| {w['score_max_abs_error']:.3g} <= {w['score_tolerance']:.3g})",
        "TAR at FAR: "
        + ", ".join(f"{p['far_target']:g}: {p['tar']:.4f}" for p in w["tar_at_far"])
        + f"; AUC {w['auc']:.5f}, EER {w['eer']:.5f}",
        f"data generation (not timed above): protocol folder {result.dataset.protocol_s:.2f} s,"
        f" store {result.dataset.store_s:.2f} s; per-pair file {w['npz_bytes'] / MIB:,.1f} MiB",
        f"runs (total s): {', '.join(f'{t:.3f}' for t in result.runs_total_s)}; the fastest "
        "is shown; kernel s = system CPU time (page faults of fresh memory, file reads)"
        + _median_note(result),
        f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"numpy {np.__version__}, {platform.platform()}",
    ]
    if result.baseline is not None:
        base = result.baseline
        notes.append(
            "baseline (insightface eval_ijbc.py's algorithm, benchmarks/ijbc_baseline.py): "
            f"{float(base['total_s']):.1f} s, peak {float(base['peak_rss_mib']):,.0f} MiB; its "
            f"scores vs facebench's: max |difference| {result.baseline_scores_max_abs_diff:.3g}"
            "; its TAR (nearest-FPR rule) at FAR "
            + ", ".join(f"{r['far_target']:g}: {r['tar']:.4f}" for r in base["tar_at_far"])
        )
    for note in notes:
        console.print(note, soft_wrap=True, highlight=False)
    for line in bench_lines(result):
        print(line, flush=True)


def summary(result: Result) -> dict[str, Any]:
    """The numbers as a JSON-ready dict."""
    dataset = asdict(result.dataset)
    dataset.update(protocol_dir=None, store=None)  # temporary paths, gone after the run
    return {
        "benchmark": "ijbc_1to1",
        "quick": result.quick,
        "pooling": POOLING,
        "far_targets": list(FAR_TARGETS),
        "seed": SEED,
        "dataset": dataset,
        "stages": [
            {"stage": label, "seconds": s, "kernel_s": k, "peak_rss_so_far_mib": p}
            for (label, s), (_, k), p in zip(
                result.stage_seconds(),
                result.stage_seconds("stages_kernel_s"),
                result.stage_peaks(),
                strict=True,
            )
        ],
        "worker": result.worker,
        "cold": result.cold,
        "baseline": result.baseline,
        "baseline_scores_max_abs_diff": result.baseline_scores_max_abs_diff,
        "bench_lines": bench_lines(result),
        "runs_total_s": result.runs_total_s,
        "budget_mib": result.budget_mib,
        "target_seconds": TARGET_SECONDS,
        "pairs_per_s": result.worker["n_pairs"] / result.worker["stages_s"]["score"]
        if result.worker["stages_s"].get("score")
        else None,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "platform": platform.platform(),
        },
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.ijbc_bench",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--quick", action="store_true", help="a small IJB-C-shaped run")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the numbers here")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json")
    parser.add_argument("--repeat", type=int, default=1, help="worker runs; the fastest is kept")
    parser.add_argument(
        "--no-baseline", action="store_true", help="facebench only (seconds, not minutes)"
    )
    parser.add_argument("--worker", choices=("facebench", "baseline"), help=argparse.SUPPRESS)
    parser.add_argument("--protocol-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"expected --repeat >= 1, but got {args.repeat}")
    if args.worker and None in (args.protocol_dir, args.store, args.out):
        parser.error("--worker needs --protocol-dir, --store and --out")
    if args.json is not None and args.json.exists() and not args.overwrite:
        parser.error(f"{args.json} exists; pass --overwrite to replace it")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m benchmarks.ijbc_bench`` and of its worker subprocess."""
    args = parse_args(argv)
    if args.worker == "facebench":
        measured = run_worker(args.protocol_dir, args.store, args.out, SEED)
        print(json.dumps(measured), flush=True)
        return 0
    if args.worker == "baseline":
        print(json.dumps(run_baseline_worker(args.protocol_dir, args.store, args.out)), flush=True)
        return 0
    result = measure(args.quick, args.repeat, baseline=not args.no_baseline)
    render(result)
    if args.json is not None:
        write_json(args.json, summary(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
