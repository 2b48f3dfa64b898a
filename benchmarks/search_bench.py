"""1:N search at MegaFace scale: time and peak memory from stores to report, exactness checks.

Run from the repository root::

    python -m benchmarks.search_bench              # 1,000,000 gallery x 1,000 probes x 512
    python -m benchmarks.search_bench --quick      # 20,000 x 200 x 512 (seconds)
    python -m benchmarks.search_bench --full       # 1,000,000 x 10,000 x 512 (MegaFace size)
    python -m benchmarks.search_bench --json bench-out/search.json [--overwrite]

What is measured
----------------
facebench
    ``facebench search``'s code path, :func:`facebench.search.run_search` then
    :func:`facebench.search.write_search`: open both stores, read subjects from their
    ``meta/subject``, each probe's exact best mate score, one pass over the gallery read
    block by block from the store (float64 products screen pairs, the few that matter are
    scored exactly), CMC and TPIR at FPIR, the JSON report and the per-probe ``.scores.npz``.
    Each stage is timed through ``run_search``'s ``timer`` hook.
baseline
    The algorithm of the common evaluation scripts (insightface's ``ijb_1n.py``, the
    MegaFace devkit's identification step): load every feature into memory with h5py, one
    float32 product ``probes @ gallery.T`` for the whole score matrix, ``np.argsort(-scores,
    axis=1)``, then per probe the position of its first mate (rank) and the first k
    columns (top k). When the full score matrix would not fit (``--full``: 10,000 x
    1,000,000 float32 is 40 GB, its argsort 80 GB) the baseline searches only the first
    ``BASELINE_PROBES`` probes against the whole gallery and the ratio compares time per
    probe x gallery pair (its load time, which does not grow with probes, left out of that
    ratio; the output says so).
sharded
    The same search under ``torchrun --standalone --nproc-per-node 2`` (gloo, one BLAS
    thread per process): each rank scores half the gallery, the shares are merged. Its
    JSON numbers and per-probe arrays must equal the single process's exactly.

Each side runs in a subprocess of its own (``python -m benchmarks.search_bench --worker
SIDE ...``), so its peak RSS (``VmHWM``, :func:`benchmarks._common.peak_rss_mib`) is its own.
Before each side the two store files are read once, untimed (:func:`warm_file_cache`), so
that every side starts with them in the operating system's file cache: otherwise the first
side would pay the disk reads (this VM reclaims file pages left idle for minutes; a single
run once took 78 s instead of 15 s, 7 s of it reading the stores and the scan slowed by
the gallery's reads).

The data (seeded, made once and cached in ``benchmarks._common.CACHE_DIR``): a probe store
and a gallery store of unit float32 features with ``meta/subject``. Probe subjects are
``n_probes / 10`` identities with 10 probe images each, 90% of them with 5 gallery images
(mates), 10% without (the open set); the rest of the gallery are distractors, each its own
identity. A feature is its identity's random direction plus Gaussian noise of a per-image
strength, so mates score about 0.2-0.7 and distractors about 0 +- 0.05, and some mates fall
behind distractors.

Checks (after the timed runs, in the driver)
--------------------------------------------
- sharded == single: the two reports' numbers and every per-probe array are identical.
- spot check: for a seeded sample of probes every gallery score is recomputed exactly
  (:func:`facebench.metrics.identification.exact_scores`) and the mate rank, mate score,
  top score and top k are derived by direct counting and sorting; they must equal
  facebench's.
- baseline agreement: the share of the baseline's probes with the same mate rank and the
  same top-k list (float32 scores and an unstable sort may order near-ties differently).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks._common import CACHE_DIR, bench_line, peak_rss_mib, write_json

REPO_ROOT = Path(__file__).resolve().parent.parent
SEED = 20_240_623
DIM = 512
TOP_K = 10
PROBES_PER_SUBJECT = 10
MATES_PER_SUBJECT = 5
OPEN_SET_SHARE = 0.1
BLOCK_ROWS = 1 << 17  # rows generated and written at a time
SPOT_PROBES = {"quick": 8, "default": 12, "full": 4}
#: (gallery items, probes) per size.
SIZES: dict[str, tuple[int, int]] = {
    "quick": (20_000, 200),
    "default": (1_000_000, 1_000),  # make bench: a million-item gallery in minutes
    "full": (1_000_000, 10_000),
}
#: Probes the baseline searches at each size (its score matrix and argsort must fit).
BASELINE_PROBES: dict[str, int] = {"quick": 200, "default": 100, "full": 100}
BENCH_NAMES = {"quick": "search-20k", "default": "search-1m-1k", "full": "search-1m"}
DATA_VERSION = 2
"""Bumped whenever :func:`make_dataset` changes what it writes (old caches are ignored)."""
MIB = 1024.0**2


# --- data -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    """The generated stores."""

    gallery: Path
    probes: Path
    n_gallery: int
    n_probes: int
    n_mates: int
    dim: int
    features_bytes: int
    make_s: float


def _unit_rows(
    directions: npt.NDArray[np.float32], noise: npt.NDArray[np.float32], rng: np.random.Generator
) -> npt.NDArray[np.float32]:
    raw = directions + noise[:, None] * rng.standard_normal(directions.shape, dtype=np.float32)
    raw /= np.linalg.norm(raw, axis=1, keepdims=True)
    return raw


def make_dataset(directory: Path, size: str, seed: int = SEED) -> Dataset:
    """Write ``gallery.h5`` and ``probes.h5`` of ``size`` into ``directory``."""
    from facebench.store import create_store

    start = time.perf_counter()
    n_gallery, n_probes = SIZES[size]
    rng = np.random.default_rng([seed, 0])
    n_subjects = n_probes // PROBES_PER_SUBJECT
    n_mated_subjects = round(n_subjects * (1 - OPEN_SET_SHARE))
    centres = rng.standard_normal((n_subjects, DIM), dtype=np.float32) / np.float32(DIM**0.5)
    # Probes: identity direction + noise of a per-image strength (some images are hard).
    probe_subject = np.repeat(np.arange(n_subjects), PROBES_PER_SUBJECT)
    probe_noise = rng.uniform(0.6, 3.2, n_probes).astype(np.float32) / np.float32(DIM**0.5)
    probes = _unit_rows(centres[probe_subject], probe_noise, rng)
    norms = rng.uniform(10, 30, n_probes).astype(np.float32)
    create_store(
        directory / "probes.h5",
        [f"probes/{s:05d}/{i:07d}.jpg" for i, s in enumerate(probe_subject)],
        probes,
        norms,
        model="synthetic-search-bench",
        metadata={"subject": probe_subject},
    )
    # Gallery: the mated identities' images first, then distractors (own identities).
    mate_subject = np.repeat(np.arange(n_mated_subjects), MATES_PER_SUBJECT)
    n_mates = mate_subject.size
    gallery_subject = np.concatenate(
        (mate_subject, n_subjects + np.arange(n_gallery - n_mates))
    ).astype(np.int64)
    gallery = directory / "gallery.h5"
    # Made in blocks (bounded temporaries), written with one create_store call: appends
    # copy the whole store each time (they are copy-on-write, see docs/store.md).
    rows = np.empty((n_gallery, DIM), dtype=np.float32)
    norms = np.empty(n_gallery, dtype=np.float32)
    for first in range(0, n_gallery, BLOCK_ROWS):
        subjects = gallery_subject[first : first + BLOCK_ROWS]
        mated = subjects < n_subjects
        directions = np.empty((subjects.size, DIM), dtype=np.float32)
        directions[mated] = centres[subjects[mated]]
        directions[~mated] = rng.standard_normal(
            (int((~mated).sum()), DIM), dtype=np.float32
        ) / np.float32(DIM**0.5)
        noise = rng.uniform(0.6, 1.6, subjects.size).astype(np.float32) / np.float32(DIM**0.5)
        rows[first : first + subjects.size] = _unit_rows(directions, noise, rng)
        norms[first : first + subjects.size] = rng.uniform(10, 30, subjects.size)
    ids = [f"gallery/{i:07d}.jpg" for i in range(n_gallery)]
    create_store(
        gallery,
        ids,
        rows,
        norms,
        model="synthetic-search-bench",
        metadata={"subject": gallery_subject},
    )
    del rows
    return Dataset(
        gallery=gallery,
        probes=directory / "probes.h5",
        n_gallery=n_gallery,
        n_probes=n_probes,
        n_mates=n_mates,
        dim=DIM,
        features_bytes=(n_gallery + n_probes) * DIM * 4,
        make_s=time.perf_counter() - start,
    )


def cached_dataset(size: str) -> Dataset:
    """The stores of ``size``, made once and kept in ``_common.CACHE_DIR`` (written to a
    temporary folder renamed into place, so an interrupted run leaves no half cache)."""
    n_gallery, n_probes = SIZES[size]
    name = f"search-{n_gallery}x{n_probes}-seed{SEED}-v{DATA_VERSION}"
    final = CACHE_DIR / name
    record = final / "dataset.json"
    if record.is_file():
        fields = json.loads(record.read_text(encoding="utf-8"))
        fields.update(gallery=final / "gallery.h5", probes=final / "probes.h5")
        return Dataset(**fields)
    gib = (n_gallery + n_probes) * DIM * 4 / 1024**3
    _progress(f"writing the {size} stores ({gib:.2f} GiB of features) to {final}")
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(CACHE_DIR).free / 1024**3
    if free < 2 * gib + 1:
        raise RuntimeError(f"{CACHE_DIR}: {free:.1f} GiB free, the {size} data need {gib:.1f}")
    work = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=CACHE_DIR))
    made = make_dataset(work, size)
    fields = asdict(made)
    fields.update(gallery=None, probes=None)
    (work / "dataset.json").write_text(json.dumps(fields, indent=2) + "\n", encoding="utf-8")
    if final.exists():
        shutil.rmtree(final)
    os.replace(work, final)
    return cached_dataset(size)


# --- the workers ----------------------------------------------------------------------------


def run_facebench(dataset_dir: Path, out: Path) -> dict[str, Any]:
    """``facebench search`` from the stores to the written report, stage by stage."""
    from facebench.search import SearchOptions, run_search, write_search

    stages: dict[str, float] = {}
    clock = [time.perf_counter()]

    def timer(stage: str) -> None:
        now = time.perf_counter()
        stages[stage] = stages.get(stage, 0.0) + now - clock[0]
        clock[0] = now

    start = clock[0]
    run = run_search(
        dataset_dir / "gallery.h5",
        dataset_dir / "probes.h5",
        options=SearchOptions(top_k=TOP_K),
        timer=timer,
    )
    write_search(run, out / "search.json", overwrite=True)
    timer("write")
    report = run.report
    return {
        "total_s": time.perf_counter() - start,
        "stages_s": stages,
        "peak_rss_mib": peak_rss_mib(),
        "cmc": report.cmc,
        "tpir_at_fpir": [(p["fpir_target"], p["tpir"]) for p in report.tpir_at_fpir],
        "counts": report.counts,
    }


def run_baseline(dataset_dir: Path, out: Path, n_probes: int) -> dict[str, Any]:
    """The common scripts' search: full float32 score matrix, argsort of every row."""
    import h5py

    start = time.perf_counter()
    with h5py.File(dataset_dir / "gallery.h5", "r") as handle:
        gallery = handle["features"][...]
        gallery_subject = handle["meta/subject"][...]
    with h5py.File(dataset_dir / "probes.h5", "r") as handle:
        probes = handle["features"][:n_probes]
        probe_subject = handle["meta/subject"][:n_probes]
    loaded = time.perf_counter()
    similarity = np.dot(probes, gallery.T)
    order = np.argsort(-similarity, axis=1)
    ranks = np.zeros(n_probes, dtype=np.int64)
    top = order[:, :TOP_K].copy()
    for q in range(n_probes):
        hits = np.flatnonzero(gallery_subject[order[q]] == probe_subject[q])
        ranks[q] = hits[0] + 1 if hits.size else 0
    mated = ranks > 0
    rank1 = float(np.mean(ranks[mated] == 1))
    np.savez(out / "baseline.npz", mate_rank=ranks, top_k_index=top)
    done = time.perf_counter()
    return {
        "total_s": done - start,
        "load_s": loaded - start,
        "compute_s": done - loaded,
        "n_probes": n_probes,
        "peak_rss_mib": peak_rss_mib(),
        "rank1": rank1,
    }


def warm_file_cache(paths: list[Path], block: int = 1 << 24) -> None:
    """Read each file once, discarding the bytes: its pages are then in the file cache."""
    for path in paths:
        with open(path, "rb", buffering=0) as handle:
            while handle.read(block):
                pass


def spawn(side: str, dataset: Dataset, out: Path, n_probes: int = 0) -> dict[str, Any]:
    """Run one side in a fresh interpreter (``sharded``: under torchrun), the stores read
    into the file cache first (not timed), and parse its JSON line."""
    warm_file_cache([dataset.gallery, dataset.probes])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    data = dataset.gallery.parent
    worker = ["--worker", side, "--data", str(data), "--out", str(out)]
    worker += ["--baseline-probes", str(n_probes)]
    if side == "sharded":
        torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
        if torchrun is None:
            raise RuntimeError("torchrun is not installed next to this Python")
        env["OMP_NUM_THREADS"] = "1"
        command = [torchrun, "--standalone", "--nproc-per-node", "2"]
        command += ["-m", "benchmarks.search_bench", *worker]
    else:
        command = [sys.executable, "-m", "benchmarks.search_bench", *worker]
    proc = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"search benchmark worker {side} failed with exit code {proc.returncode}:\n"
            f"{proc.stderr.strip()[-4000:] or proc.stdout.strip()[-4000:]}"
        )
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _run_sharded_worker(dataset_dir: Path, out: Path) -> dict[str, Any] | None:
    """One torchrun rank: the search; rank 0 writes and reports its peak, the others
    report theirs on stderr."""
    measured = run_facebench(dataset_dir, out)
    rank = int(os.environ.get("RANK", "0"))
    return measured if rank == 0 else None


# --- checks ---------------------------------------------------------------------------------


def _arrays(path: Path) -> dict[str, npt.NDArray[Any]]:
    with np.load(path) as data:
        return {name: data[name] for name in data.files}


def sharded_equals_single(single: Path, sharded: Path) -> bool:
    """Same report numbers (all but time and execution settings) and per-probe arrays."""
    ignore = ("created", "execution")
    a = json.loads((single / "search.json").read_text(encoding="utf-8"))
    b = json.loads((sharded / "search.json").read_text(encoding="utf-8"))
    if {k: v for k, v in a.items() if k not in ignore} != {
        k: v for k, v in b.items() if k not in ignore
    }:
        return False
    x, y = _arrays(single / "search.scores.npz"), _arrays(sharded / "search.scores.npz")
    return x.keys() == y.keys() and all(
        np.array_equal(x[k], y[k], equal_nan=x[k].dtype.kind == "f") for k in x
    )


def spot_check(dataset: Dataset, out: Path, n_probes: int, seed: int = SEED) -> bool:
    """Recompute every gallery score of a sample of probes exactly; derive rank, mate
    score, top score and top k by counting and sorting; compare with facebench's."""
    from facebench.metrics.identification import exact_scores
    from facebench.store import FeatureStore

    found = _arrays(out / "search.scores.npz")
    rng = np.random.default_rng([seed, 9])
    sample = np.sort(rng.choice(dataset.n_probes, n_probes, replace=False))
    with FeatureStore.open(dataset.probes) as probes:
        p = probes.read_rows(sample)[0]
        ps = probes.read_metadata("subject")[sample]
    scores = np.empty((sample.size, dataset.n_gallery))
    with FeatureStore.open(dataset.gallery) as gallery:
        gs = gallery.read_metadata("subject")
        step = 1024
        for start in range(0, dataset.n_gallery, step):
            g = gallery.read_rows(np.arange(start, min(start + step, dataset.n_gallery)))[0]
            left = np.repeat(p, g.shape[0], axis=0)
            right = np.tile(g, (p.shape[0], 1))
            scores[:, start : start + g.shape[0]] = exact_scores(left, right).reshape(
                p.shape[0], g.shape[0]
            )
    for i, q in enumerate(sample):
        row = scores[i]
        mates = gs == ps[i]
        order = np.lexsort((np.arange(row.size), -row))[:TOP_K]
        expected_rank = 0
        if mates.any():
            best = row[mates].max()
            expected_rank = 1 + int(np.count_nonzero(row[~mates] >= best))
            if found["mate_score"][q] != best:
                return False
        if (
            found["mate_rank"][q] != expected_rank
            or found["top_score"][q] != row.max()
            or not np.array_equal(found["top_k_index"][q], order)
            or not np.array_equal(found["top_k_score"][q], row[order])
        ):
            return False
    return True


def baseline_agreement(single: Path, baseline: Path) -> tuple[float, float]:
    """Shares of the baseline's probes with facebench's mate rank and top-k list."""
    ours, theirs = _arrays(single / "search.scores.npz"), _arrays(baseline / "baseline.npz")
    n = theirs["mate_rank"].size
    same_rank = float(np.mean(ours["mate_rank"][:n] == theirs["mate_rank"]))
    same_top = float(np.mean(np.all(ours["top_k_index"][:n] == theirs["top_k_index"], axis=1)))
    return same_rank, same_top


# --- the driver -----------------------------------------------------------------------------


def _progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def measure(size: str) -> dict[str, Any]:
    """Make (or reuse) the data, run the three sides, check them; the numbers as a dict."""
    dataset = cached_dataset(size)
    n_baseline = BASELINE_PROBES[size]
    with tempfile.TemporaryDirectory(prefix="facebench-search-bench-") as tmp:
        work = Path(tmp)
        outs = {name: work / name for name in ("single", "sharded", "baseline")}
        for path in outs.values():
            path.mkdir()
        _progress(f"facebench search, {dataset.n_probes:,} x {dataset.n_gallery:,}")
        single = spawn("facebench", dataset, outs["single"])
        _progress("facebench search under torchrun, 2 gloo processes")
        sharded = spawn("sharded", dataset, outs["sharded"])
        _progress(f"baseline, {n_baseline:,} probes x {dataset.n_gallery:,}")
        baseline = spawn("baseline", dataset, outs["baseline"], n_baseline)
        _progress("checks: sharded == single, exact spot check, baseline agreement")
        equal = sharded_equals_single(outs["single"], outs["sharded"])
        spot = spot_check(dataset, outs["single"], SPOT_PROBES[size])
        same_rank, same_top = baseline_agreement(outs["single"], outs["baseline"])
    pairs = dataset.n_probes * dataset.n_gallery
    baseline_pairs = n_baseline * dataset.n_gallery
    same_size = baseline_pairs == pairs
    ours_per_pair = single["total_s"] / pairs
    theirs_per_pair = (baseline["total_s"] if same_size else baseline["compute_s"]) / (
        baseline_pairs
    )
    return {
        "benchmark": "search_1n",
        "size": size,
        "seed": SEED,
        "top_k": TOP_K,
        "dataset": {k: v for k, v in asdict(dataset).items() if k not in ("gallery", "probes")},
        "facebench": single,
        "sharded": sharded,
        "baseline": baseline,
        "baseline_same_size": same_size,
        "ratio_per_pair": theirs_per_pair / ours_per_pair,
        "sharded_equals_single": equal,
        "spot_check_probes": SPOT_PROBES[size],
        "spot_check_equal": spot,
        "baseline_same_rank": same_rank,
        "baseline_same_top_k": same_top,
        "full_estimate_s": ours_per_pair * SIZES["full"][0] * SIZES["full"][1],
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "platform": platform.platform(),
        },
    }


def bench_lines(result: dict[str, Any]) -> list[str]:
    """The ``BENCH search-*`` line and the sharded == single line (the output's last two)."""
    ours, theirs = result["facebench"], result["baseline"]
    return [
        bench_line(
            BENCH_NAMES[result["size"]],
            ratio=result["ratio_per_pair"],
            time_s=ours["total_s"],
            peak_mib=ours["peak_rss_mib"],
            baseline_time_s=theirs["total_s"],
            baseline_peak_mib=theirs["peak_rss_mib"],
        ),
        f"sharded == single ({BENCH_NAMES[result['size']]}, torchrun 2 x gloo): "
        f"{result['sharded_equals_single']}",
    ]


def render(result: dict[str, Any]) -> None:
    """Print the table, the notes, and end with :func:`bench_lines`."""
    from rich.console import Console
    from rich.table import Table

    console = Console() if sys.stdout.isatty() else Console(width=120)
    data = result["dataset"]
    ours, sharded, theirs = result["facebench"], result["sharded"], result["baseline"]
    pairs = data["n_probes"] * data["n_gallery"]
    table = Table(
        title=f"1:N search ({result['size']}): {data['n_probes']:,} probes x "
        f"{data['n_gallery']:,} gallery x {data['dim']}, top {result['top_k']}"
    )
    for name in ("side", "probes", "seconds", "ns / pair", "peak RSS MiB", "rank 1 (its probes)"):
        table.add_column(name, justify="left" if name == "side" else "right", no_wrap=True)
    rank1 = f"{100 * ours['cmc']['1']:.2f}%"
    table.add_row(
        "facebench (1 process)",
        f"{data['n_probes']:,}",
        f"{ours['total_s']:.2f}",
        f"{1e9 * ours['total_s'] / pairs:.2f}",
        f"{ours['peak_rss_mib']:,.0f}",
        rank1,
    )
    table.add_row(
        "facebench (torchrun 2 x gloo, rank 0)",
        f"{data['n_probes']:,}",
        f"{sharded['total_s']:.2f}",
        f"{1e9 * sharded['total_s'] / pairs:.2f}",
        f"{sharded['peak_rss_mib']:,.0f}",
        f"{100 * sharded['cmc']['1']:.2f}%",
    )
    base_pairs = theirs["n_probes"] * data["n_gallery"]
    table.add_row(
        "baseline (full matrix + argsort)",
        f"{theirs['n_probes']:,}",
        f"{theirs['total_s']:.2f}",
        f"{1e9 * theirs['total_s'] / base_pairs:.2f}",
        f"{theirs['peak_rss_mib']:,.0f}",
        f"{100 * theirs['rank1']:.2f}%",
    )
    console.print(table)
    stages = ", ".join(f"{k} {v:.2f} s" for k, v in ours["stages_s"].items())
    notes = [
        f"facebench stages: {stages}",
        f"stores: {data['features_bytes'] / MIB:,.0f} MiB of float32 features; the gallery is"
        " read block by block, never whole",
        f"baseline: load {theirs['load_s']:.2f} s + product and argsort"
        f" {theirs['compute_s']:.2f} s for {theirs['n_probes']:,} probes"
        + (
            ""
            if result["baseline_same_size"]
            else f" (the full {data['n_probes']:,}-probe matrix would need"
            f" {data['n_probes'] * data['n_gallery'] * 12 / 1024**3:,.0f} GiB: ratio per"
            " probe x gallery pair, baseline load time left out)"
        ),
        f"ratio (baseline time / facebench time per pair): {result['ratio_per_pair']:.1f}",
        "baseline agreement on its probes: same mate rank"
        f" {100 * result['baseline_same_rank']:.1f}%, same top-{result['top_k']}"
        f" {100 * result['baseline_same_top_k']:.1f}%"
        " (float32 scores, unstable sort)",
        f"spot check ({result['spot_check_probes']} probes, every gallery score exact,"
        f" counted and sorted directly): {'equal' if result['spot_check_equal'] else 'DIFFERENT'}",
        f"data generation (cached, not timed above): {data['make_s']:.1f} s",
        f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, numpy"
        f" {np.__version__}",
    ]
    if result["size"] != "full":
        notes.append(
            "estimated facebench time at the full size (1,000,000 x 10,000) on this machine:"
            f" {result['full_estimate_s'] / 60:.1f} min (the per-pair time above x 1e10;"
            " `python -m benchmarks.search_bench --full` writes 2 GiB of stores first)"
        )
    for note in notes:
        console.print(note, soft_wrap=True, highlight=False)
    for line in bench_lines(result):
        print(line, flush=True)


def run(size: str = "default") -> dict[str, Any]:
    """Measure at ``size`` ("quick", "default" or "full"), print, return the numbers."""
    if size not in SIZES:
        raise ValueError(f"Expected a size in {list(SIZES)}, but got {size!r}")
    result = measure(size)
    render(result)
    result["bench_lines"] = bench_lines(result)
    return result


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.search_bench",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="20,000 x 200 (seconds)")
    group.add_argument("--full", action="store_true", help="1,000,000 x 10,000 (MegaFace size)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the numbers here")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json")
    parser.add_argument(
        "--worker", choices=("facebench", "sharded", "baseline"), help=argparse.SUPPRESS
    )
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--baseline-probes", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker and (args.data is None or args.out is None):
        parser.error("--worker needs --data and --out")
    if args.json is not None and args.json.exists() and not args.overwrite:
        parser.error(f"{args.json} exists; pass --overwrite to replace it")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m benchmarks.search_bench`` and of its workers."""
    args = parse_args(argv)
    if args.worker == "facebench":
        print(json.dumps(run_facebench(args.data, args.out)), flush=True)
        return 0
    if args.worker == "sharded":
        measured = _run_sharded_worker(args.data, args.out)
        if measured is not None:
            print(json.dumps(measured), flush=True)
        return 0
    if args.worker == "baseline":
        print(json.dumps(run_baseline(args.data, args.out, args.baseline_probes)), flush=True)
        return 0
    result = run("quick" if args.quick else "full" if args.full else "default")
    if args.json is not None:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
