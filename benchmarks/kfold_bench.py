"""LFW-style 10-fold evaluation: facebench's engine against insightface's ``evaluate``.

Run from the repository root::

    python -m benchmarks kfold              # 6,000 and 1,000,000 pairs (about 25 s)
    python -m benchmarks kfold --quick      # 6,000 pairs only (seconds)
    python -m benchmarks.kfold_bench --size full   # + the baseline on 1,000,000 pairs
    python -m benchmarks kfold --json bench-out/kfold.json

From Python, :func:`run` (``size`` ``"quick"``, ``"default"`` or ``"full"``) prints the table
and the ``BENCH`` lines and returns the numbers.

What is compared
----------------
Both sides start from the same saved cosine scores, labels and folds, and compute the
figures an LFW-style evaluation reports: the 10-fold accuracy, a verification rate at
FAR = 1e-3 and the ROC.

engine
    What ``facebench verify --protocol lfw`` computes from the scores
    (:func:`facebench.evaluate.evaluate_pairs`, report assembly left out):
    :func:`facebench.metrics.kfold_accuracy` (exact per-fold thresholds: midpoints between
    distinct training scores, accept ``score >= t``, median of tied optima),
    :func:`facebench.metrics.count_at_thresholds` (the exact ROC at every distinct score),
    :func:`facebench.metrics.tar_at_far` at FAR = 1e-3 (rule ``exact``),
    :func:`facebench.metrics.auc` and :func:`facebench.metrics.equal_error_rate`.
baseline
    :func:`baseline_evaluate`, insightface's ``recognition/arcface_torch/eval/verification.py``
    ``evaluate`` (PROTOCOLS.md, "Compatibility modes, exactly"), in its own per-threshold
    Python loops: distance ``2 - 2 * score`` (the squared L2 of unit vectors);
    ``calculate_roc``: ``KFold(10, shuffle=False)`` folds, the grid ``np.arange(0, 4,
    0.01)``, per fold the training accuracy at every grid point (``calculate_accuracy``:
    ``np.less`` and four ``np.sum`` of boolean products), the first maximum, the held-out
    TPR/FPR at every grid point (the ROC) and the held-out accuracy;
    ``calculate_val``: the grid ``np.arange(0, 4, 0.001)``, per fold the training FAR at
    every grid point (``calculate_val_far``), the threshold for FAR = 1e-3 by
    ``interp1d(far, thresholds, kind='slinear')`` as SciPy 1.8 computes it
    (:func:`facebench.metrics.compat.slinear_scipy18`: SciPy >= 1.9 refuses the repeated FAR
    values that ``interp1d`` is given here), 0.0 when the training FAR never reaches 1e-3,
    then VAL and FAR on the held-out fold.

Like for like: both sides produce an accuracy by 10-fold cross-validation, a verification
rate at FAR = 1e-3 and an ROC, from scores. They differ in rules, not in work: the engine's
thresholds are exact where the baseline's come from fixed grids, its TAR at FAR = 1e-3 is
pooled over all pairs (as ``verify`` reports it) where insightface's VAL is a mean over
folds of a threshold interpolated on the training folds, and its ROC has a point at every
distinct score instead of 400 grid points; it also computes AUC and EER, which the baseline
does not. The numbers are therefore printed side by side but are not expected to be equal;
:mod:`facebench.metrics.compat` reproduces insightface's own numbers bit for bit (tested in
``tests/test_kfold_bench_baseline.py`` against this baseline).

One departure from insightface's code, in the baseline's favour: ``dist[train_set]`` and
``actual_issame[train_set]`` are indexed once per fold instead of at every threshold. Done
as insightface does, the baseline is about twice as slow.

The baseline's cost is 4,400 passes over the training pairs of each fold, linear in pairs,
so by default it is timed on 100,000 pairs and compared per pair with the engine on
1,000,000 (``--size full`` also times it on 1,000,000 and compares directly); the output
says which.

How it is measured
------------------
Synthetic scores (genuine ~ N(0.6, 0.15), impostor ~ N(0.1, 0.15), clipped to [-1, 1],
float64, from a seeded :class:`numpy.random.Generator`) are laid out like LFW's pairs.txt
(10 contiguous folds, each half genuine then half impostor: the same folds as insightface's
``KFold``) and saved once to a temporary ``.npz`` that every worker loads. Each side runs in
its own subprocess (``python -m benchmarks.kfold_bench --worker SIDE --data PATH``), which
imports what it needs, loads the data (timed separately), runs one small warm-up call, then
times the computation alone with :func:`time.perf_counter` (best of ``--repeat`` runs) and
prints one JSON line with the times, the figures and its peak RSS (``VmHWM`` on Linux, see
:func:`benchmarks._common.peak_rss_mib`). A third kind of worker only imports numpy and loads
the data: its peak RSS is the floor that the others are measured against. Speed and memory
are ratios within one run, never assertions in tests. The output ends with one ``BENCH``
line per measurement (:func:`benchmarks._common.bench_line`): ``lfw-6k`` and ``lfw-1m``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks._common import bench_line, peak_rss_mib, ru_maxrss_mib, write_json

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

REPO_ROOT = Path(__file__).resolve().parent.parent
SEED = 20_240_601
N_FOLDS = 10
FAR_TARGET = 1e-3
GENUINE_MEAN = 0.6
IMPOSTOR_MEAN = 0.1
SCORE_SD = 0.15
SMALL, MEDIUM, LARGE = 6_000, 100_000, 1_000_000
SIDES = ("engine", "baseline", "load")
SIZES = ("quick", "default", "full")
ENGINE_METHOD = (
    "facebench verify's metrics from scores: kfold_accuracy (one sort, masked per fold; no "
    "grid: each fold's training counts are the global counts minus the fold's own, exact "
    "midpoints, accept score >= t, median of tied optima) + count_at_thresholds (exact ROC) "
    "+ tar_at_far(1e-3, exact, pooled) + auc + equal_error_rate"
)
BASELINE_METHOD = (
    "insightface verification.evaluate: calculate_roc (grid np.arange(0, 4, 0.01), per fold "
    "training accuracy at every grid point in a Python loop, first maximum, held-out "
    "TPR/FPR at every grid point) + calculate_val (grid np.arange(0, 4, 0.001), training "
    "FAR at every grid point, SciPy-1.8 slinear interpolation at FAR 1e-3, VAL/FAR on the "
    "held-out fold); distance 2 - 2*score; fold arrays indexed once per fold"
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


# --- the baseline: insightface's verification.py --------------------------------------------


def kfold_split(n_pairs: int, n_folds: int) -> Iterator[tuple[IntArray, IntArray]]:
    """``sklearn.model_selection.KFold(n_folds, shuffle=False).split(range(n_pairs))``.

    Yields ``(train_set, test_set)`` index arrays (int64, ascending): contiguous test blocks,
    the first ``n_pairs % n_folds`` of them one pair longer. Written out so that the baseline
    worker does not pay for importing scikit-learn (tests check it against ``KFold``).
    """
    from facebench.metrics.compat import contiguous_fold_bounds

    indices = np.arange(n_pairs)
    bounds = contiguous_fold_bounds(n_pairs, n_folds).tolist()
    for start, stop in itertools.pairwise(bounds):
        test_mask = np.zeros(n_pairs, dtype=bool)
        test_mask[start:stop] = True
        yield indices[np.logical_not(test_mask)], indices[test_mask]


def calculate_accuracy(
    threshold: float, dist: FloatArray, actual_issame: BoolArray
) -> tuple[float, float, float]:
    """insightface's ``calculate_accuracy``: TPR, FPR and accuracy of ``dist < threshold``."""
    predict_issame = np.less(dist, threshold)
    tp = np.sum(np.logical_and(predict_issame, actual_issame))
    fp = np.sum(np.logical_and(predict_issame, np.logical_not(actual_issame)))
    tn = np.sum(np.logical_and(np.logical_not(predict_issame), np.logical_not(actual_issame)))
    fn = np.sum(np.logical_and(np.logical_not(predict_issame), actual_issame))
    tpr = 0.0 if (tp + fn == 0) else float(tp) / float(tp + fn)
    fpr = 0.0 if (fp + tn == 0) else float(fp) / float(fp + tn)
    acc = float(tp + tn) / dist.size
    return tpr, fpr, acc


def calculate_roc(
    thresholds: FloatArray, dist: FloatArray, actual_issame: BoolArray, nrof_folds: int = 10
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """insightface's ``calculate_roc`` (``pca=0``), from distances.

    Returns
    -------
    tpr, fpr : ndarray of float64, shape (m,)
        Held-out TPR and FPR at every threshold, averaged over folds (insightface's ROC).
    accuracy : ndarray of float64, shape (nrof_folds,)
        Held-out accuracy of each fold at its training threshold.
    best_thresholds : ndarray of float64, shape (nrof_folds,)
        Those thresholds (the first grid point of maximal training accuracy), which
        insightface keeps internal.
    """
    nrof_thresholds = len(thresholds)
    tprs = np.zeros((nrof_folds, nrof_thresholds))
    fprs = np.zeros((nrof_folds, nrof_thresholds))
    accuracy = np.zeros(nrof_folds)
    best_thresholds = np.zeros(nrof_folds)
    for fold_idx, (train_set, test_set) in enumerate(kfold_split(dist.size, nrof_folds)):
        # insightface indexes dist[train_set] at every threshold; once is faster.
        train_dist, train_same = dist[train_set], actual_issame[train_set]
        test_dist, test_same = dist[test_set], actual_issame[test_set]
        acc_train = np.zeros(nrof_thresholds)
        for threshold_idx, threshold in enumerate(thresholds):
            _, _, acc_train[threshold_idx] = calculate_accuracy(threshold, train_dist, train_same)
        best_threshold_index = np.argmax(acc_train)
        for threshold_idx, threshold in enumerate(thresholds):
            tprs[fold_idx, threshold_idx], fprs[fold_idx, threshold_idx], _ = calculate_accuracy(
                threshold, test_dist, test_same
            )
        _, _, accuracy[fold_idx] = calculate_accuracy(
            thresholds[best_threshold_index], test_dist, test_same
        )
        best_thresholds[fold_idx] = thresholds[best_threshold_index]
    return np.mean(tprs, 0), np.mean(fprs, 0), accuracy, best_thresholds


def calculate_val_far(
    threshold: float, dist: FloatArray, actual_issame: BoolArray
) -> tuple[float, float]:
    """insightface's ``calculate_val_far``: VAL and FAR of ``dist < threshold`` (unguarded)."""
    predict_issame = np.less(dist, threshold)
    true_accept = np.sum(np.logical_and(predict_issame, actual_issame))
    false_accept = np.sum(np.logical_and(predict_issame, np.logical_not(actual_issame)))
    n_same = np.sum(actual_issame)
    n_diff = np.sum(np.logical_not(actual_issame))
    val = float(true_accept) / float(n_same)
    far = float(false_accept) / float(n_diff)
    return val, far


def calculate_val(
    thresholds: FloatArray,
    dist: FloatArray,
    actual_issame: BoolArray,
    far_target: float,
    nrof_folds: int = 10,
) -> tuple[float, float, float, FloatArray]:
    """insightface's ``calculate_val``, from distances.

    Returns
    -------
    val_mean, val_std, far_mean : float
        ``np.mean(val)``, ``np.std(val)`` (ddof=0) and ``np.mean(far)`` over folds.
    fold_thresholds : ndarray of float64, shape (nrof_folds,)
        The interpolated distance threshold of each fold (0.0 where the training FAR never
        reached ``far_target``), which insightface keeps internal.
    """
    from facebench.metrics.compat import slinear_scipy18

    nrof_thresholds = len(thresholds)
    val = np.zeros(nrof_folds)
    far = np.zeros(nrof_folds)
    fold_thresholds = np.zeros(nrof_folds)
    for fold_idx, (train_set, test_set) in enumerate(kfold_split(dist.size, nrof_folds)):
        train_dist, train_same = dist[train_set], actual_issame[train_set]
        far_train = np.zeros(nrof_thresholds)
        for threshold_idx, threshold in enumerate(thresholds):
            _, far_train[threshold_idx] = calculate_val_far(threshold, train_dist, train_same)
        if np.max(far_train) >= far_target:
            # interpolate.interp1d(far_train, thresholds, kind='slinear')(far_target), SciPy 1.8
            threshold = slinear_scipy18(far_train, thresholds, far_target)
        else:
            threshold = 0.0
        val[fold_idx], far[fold_idx] = calculate_val_far(
            threshold, dist[test_set], actual_issame[test_set]
        )
        fold_thresholds[fold_idx] = threshold
    return float(np.mean(val)), float(np.std(val)), float(np.mean(far)), fold_thresholds


@dataclass(frozen=True)
class BaselineResult:
    """What :func:`baseline_evaluate` returns (insightface's ``evaluate``, plus thresholds).

    Attributes
    ----------
    tpr, fpr : ndarray of float64, shape (400,)
        insightface's ROC: mean held-out TPR and FPR at ``np.arange(0, 4, 0.01)``.
    accuracy : ndarray of float64, shape (k,)
        Held-out accuracy of each fold.
    accuracy_thresholds : ndarray of float64, shape (k,)
        The distance threshold of each fold's accuracy.
    val, val_std, far : float
        Mean VAL, its std (ddof=0) and mean FAR at FAR target 1e-3.
    val_thresholds : ndarray of float64, shape (k,)
        The distance threshold of each fold's VAL.
    """

    tpr: FloatArray
    fpr: FloatArray
    accuracy: FloatArray
    accuracy_thresholds: FloatArray
    val: float
    val_std: float
    far: float
    val_thresholds: FloatArray


def baseline_evaluate(
    scores: FloatArray, is_same: BoolArray, nrof_folds: int = N_FOLDS
) -> BaselineResult:
    """insightface's ``verification.evaluate`` from cosine scores (module docstring).

    Parameters
    ----------
    scores : ndarray of float64, shape (n,)
        Cosine similarities of unit features, in pair order; the distance is
        ``2 - 2 * score``, the squared L2 that insightface computes from the embeddings.
    is_same : ndarray of bool, shape (n,)
    nrof_folds : int
        Folds are ``KFold(nrof_folds, shuffle=False)`` over pair order.
    """
    dist = 2.0 - 2.0 * scores
    tpr, fpr, accuracy, accuracy_thresholds = calculate_roc(
        np.arange(0, 4, 0.01), dist, is_same, nrof_folds
    )
    val, val_std, far, val_thresholds = calculate_val(
        np.arange(0, 4, 0.001), dist, is_same, FAR_TARGET, nrof_folds
    )
    return BaselineResult(
        tpr, fpr, accuracy, accuracy_thresholds, val, val_std, far, val_thresholds
    )


# --- the worker (one side, one subprocess) --------------------------------------------------


@dataclass(frozen=True)
class Figures:
    """What a side reports beside its time (printed side by side, not expected equal).

    Attributes
    ----------
    accuracy_mean, accuracy_std : float
        Mean 10-fold accuracy and its std (ddof=1 for the engine, ddof=0 for the baseline,
        as each reports it).
    val : float
        Engine: TAR at FAR 1e-3 over all pairs; baseline: insightface's mean VAL.
    val_std : float or None
        Baseline only: std of VAL over folds (ddof=0).
    far : float
        Engine: the FAR achieved at that threshold; baseline: insightface's mean FAR.
    """

    accuracy_mean: float
    accuracy_std: float
    val: float
    val_std: float | None
    far: float


Compute = Callable[[FloatArray, BoolArray, IntArray], Figures]


def _engine() -> Compute:
    from facebench.metrics import (
        auc,
        count_at_thresholds,
        equal_error_rate,
        kfold_accuracy,
        tar_at_far,
    )

    def run(scores: FloatArray, is_same: BoolArray, folds: IntArray) -> Figures:
        accuracy = kfold_accuracy(scores, is_same, folds)
        counts = count_at_thresholds(scores, is_same)
        auc(counts)
        equal_error_rate(counts)
        (point,) = tar_at_far(counts, [FAR_TARGET], "exact")
        return Figures(accuracy.mean, accuracy.std, point.tar, None, point.far_achieved)

    return run


def _baseline() -> Compute:
    # facebench.metrics.compat (fold bounds, the SciPy 1.8 interpolation) is imported by
    # the warm-up call, before anything is timed.
    def run(scores: FloatArray, is_same: BoolArray, folds: IntArray) -> Figures:
        result = baseline_evaluate(scores, is_same)
        # insightface reports np.std with ddof=0.
        acc = result.accuracy
        return Figures(float(acc.mean()), float(acc.std()), result.val, result.val_std, result.far)

    return run


def check_kfold_layout(folds: IntArray) -> None:
    """Raise unless ``folds`` are ``KFold(N_FOLDS, shuffle=False)``'s test blocks in order.

    The baseline splits by pair order as insightface does; the engine reads the folds.
    """
    fold_ids = np.unique(folds)
    blocks = kfold_split(folds.size, N_FOLDS)
    for f, (fold, (_, test_set)) in enumerate(zip(fold_ids, blocks, strict=False)):
        if fold_ids.size != N_FOLDS or not np.array_equal(np.flatnonzero(folds == fold), test_set):
            raise ValueError(
                f"Expected folds in {N_FOLDS} contiguous blocks of pair order (insightface's "
                f"KFold), but fold {f + 1} differs"
            )


def run_worker(side: str, data: Path, repeat: int) -> dict[str, Any]:
    """Load the pairs, time one side's computation, and return the measurements.

    ``side`` is ``engine``, ``baseline`` or ``load`` (import numpy and load only).
    """
    compute: Compute | None = None
    if side == "engine":
        compute = _engine()  # the imports, before anything is timed
    elif side == "baseline":
        compute = _baseline()
    start = time.perf_counter()
    scores, is_same, folds = load_pairs(data)
    load_s = time.perf_counter() - start
    if side == "baseline":
        check_kfold_layout(folds)
    rss_before = peak_rss_mib()
    runs: list[float] = []
    figures: Figures | None = None
    if compute is not None:
        warm = np.arange(0, scores.size, max(1, scores.size // 200))
        compute(scores[warm], is_same[warm], folds[warm])
        for _ in range(repeat):
            start = time.perf_counter()
            figures = compute(scores, is_same, folds)
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
        "figures": None if figures is None else asdict(figures),
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
    figures: dict[str, float | None] | None

    @property
    def us_per_pair(self) -> float:
        """Best compute time per pair, in microseconds."""
        return self.compute_s / self.n_pairs * 1e6

    @property
    def accuracy_mean(self) -> float | None:
        """Mean fold accuracy (None for the load-only worker)."""
        return None if self.figures is None else self.figures["accuracy_mean"]

    @property
    def accuracy_std(self) -> float | None:
        """Std of the fold accuracies (None for the load-only worker)."""
        return None if self.figures is None else self.figures["accuracy_std"]


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


def _plan(size: str) -> list[tuple[str, int, int]]:
    """(side, pairs, default repeats) in the order they run, for one ``size``."""
    plan = [("engine", SMALL, 5), ("baseline", SMALL, 5)]
    if size in ("default", "full"):
        plan += [("engine", LARGE, 3), ("baseline", MEDIUM, 2)]
    if size == "full":
        plan += [("baseline", LARGE, 1)]
    return plan


def _reference_size(n_pairs: int, sizes: set[int]) -> int:
    """The baseline an engine row is compared with: same size if timed, else 100k."""
    return n_pairs if n_pairs in sizes else MEDIUM


def measure(
    quick: bool = False, repeat: int | None = None, *, size: str | None = None
) -> tuple[list[Row], dict[int, WorkerResult]]:
    """Write the data, run every worker, and pair each engine result with its baseline.

    ``size`` is one of :data:`SIZES`; when None, ``"quick"`` if ``quick`` else
    ``"default"``. ``repeat`` overrides every worker's number of timed runs.
    """
    size = size if size is not None else ("quick" if quick else "default")
    if size not in SIZES:
        raise ValueError(f"Expected `size` in {SIZES}, but got {size!r}")
    plan = _plan(size)
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
    baseline_sizes = {n for side, n, _ in plan if side == "baseline"}
    rows: list[Row] = []
    for side, n, _ in plan:
        reference = None
        if side == "engine":
            # The grid scans are linear in pairs: 1M is compared per pair with 100k unless
            # the baseline was also timed on 1M.
            reference = results["baseline", _reference_size(n, baseline_sizes)]
        rows.append(Row(f"{side} {_label(n)}", results[side, n], load_only[n], reference))
    return rows, load_only


def _fmt_speedup(value: float | None) -> str:
    if value is None:
        return "1× (ref)"
    return f"{value:,.0f}×" if value >= 100 else f"{value:.1f}×"


def _fmt_figures(result: WorkerResult) -> str:
    fig = result.figures
    if fig is None:
        return "n/a"
    acc = f"accuracy {fig['accuracy_mean']:.4f} ± {fig['accuracy_std']:.4f}"
    if result.side == "engine":
        return f"{acc}; TAR@FAR=1e-3 pooled {fig['val']:.4f} (FAR achieved {fig['far']:.2e})"
    return (
        f"{acc}; VAL@FAR=1e-3 {fig['val']:.4f} ± {fig['val_std']:.4f} (mean FAR {fig['far']:.2e})"
    )


def bench_lines(rows: Sequence[Row]) -> list[str]:
    """The ``BENCH`` lines: ``lfw-6k`` and, when measured, ``lfw-1m`` (ratio per pair)."""
    lines = []
    for row in rows:
        if row.reference is None or row.result.n_pairs not in (SMALL, LARGE):
            continue
        name = "lfw-6k" if row.result.n_pairs == SMALL else "lfw-1m"
        lines.append(
            bench_line(
                name,
                ratio=row.speedup_per_pair,
                time_s=row.result.compute_s,
                peak_mib=row.result.peak_rss_mib,
                baseline_time_s=row.reference.compute_s,
                baseline_peak_mib=row.reference.peak_rss_mib,
            )
        )
    return lines


def render(rows: Sequence[Row], load_only: dict[int, WorkerResult]) -> None:
    """Print the table, the notes that say what the numbers mean, and the BENCH lines."""
    from rich.console import Console
    from rich.table import Table

    console = Console() if sys.stdout.isatty() else Console(width=120)
    table = Table(title="LFW-style 10-fold evaluation: facebench engine vs insightface evaluate")
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
        f"baseline method: {BASELINE_METHOD}",
        "like for like: both give 10-fold accuracy, a verification rate at FAR 1e-3 and an "
        "ROC from the same scores; rules differ (exact vs grid thresholds; pooled TAR vs "
        "insightface's per-fold VAL), so the figures below are not expected to be equal",
    ]
    for row in rows:
        if row.reference is not None and row.reference.n_pairs != row.result.n_pairs:
            notes.append(
                f"{row.label} vs baseline: baseline timed on {row.reference.n_pairs:,} pairs; "
                "per-pair ratio (the grid scans' cost is linear in pairs); its BENCH line's "
                f"baseline_time_s is that {_label(row.reference.n_pairs)} time"
            )
    floors = ", ".join(f"{_label(n)} {r.peak_rss_mib:.1f} MiB" for n, r in load_only.items())
    notes += [
        "peak RSS (VmHWM of each worker) includes the interpreter + numpy; Δ RSS = peak RSS "
        f"minus the load-only worker's (numpy + data, same size): {floors}",
        "compute s: best of the repeated runs after a warm-up call; load time reported apart",
        "figures (std ddof=1 for the engine, ddof=0 for the baseline as insightface reports):",
        *(f"  {row.label:<14} {_fmt_figures(row.result)}" for row in rows),
        f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"numpy {np.__version__}, {platform.platform()}",
    ]
    for note in notes:
        # soft_wrap: a log keeps each note on one line.
        console.print(note, soft_wrap=True, highlight=False)
    for line in bench_lines(rows):
        print(line, flush=True)


def summary(rows: Sequence[Row], load_only: dict[int, WorkerResult]) -> dict[str, Any]:
    """The numbers as a JSON-ready dict."""
    return {
        "benchmark": "kfold_accuracy",
        "engine_method": ENGINE_METHOD,
        "baseline_method": BASELINE_METHOD,
        "far_target": FAR_TARGET,
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
                "accuracy_mean": row.result.accuracy_mean,
                "accuracy_std": row.result.accuracy_std,
                "us_per_pair": row.result.us_per_pair,
                "rss_over_load_only_mib": row.result.peak_rss_mib - row.load_only.peak_rss_mib,
                "reference": None if row.reference is None else row.reference.n_pairs,
                "speedup_per_pair": row.speedup_per_pair,
            }
            for row in rows
        ],
        "load_only": [asdict(r) for r in load_only.values()],
        "bench": bench_lines(rows),
    }


def run(size: str = "default", repeat: int | None = None) -> dict[str, Any]:
    """Measure, print the table and the ``BENCH`` lines, and return :func:`summary`.

    Parameters
    ----------
    size : {"quick", "default", "full"}
        ``quick``: 6,000 pairs (BENCH ``lfw-6k``); ``default``: also the engine on
        1,000,000 pairs against the baseline on 100,000, per pair (BENCH ``lfw-1m``);
        ``full``: also the baseline on 1,000,000 pairs (one run, about two minutes), against
        which ``lfw-1m`` is then compared directly.
    repeat : int, optional
        Timed runs per worker (default 5 at 6k, 3 for the engine at 1M, 2 for the baseline
        at 100k, 1 for the baseline at 1M).
    """
    rows, load_only = measure(repeat=repeat, size=size)
    render(rows, load_only)
    return summary(rows, load_only)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.kfold_bench",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--quick", action="store_true", help="6,000 pairs only (--size quick)")
    parser.add_argument("--size", choices=SIZES, default=None, help="default: default")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the numbers here")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json")
    parser.add_argument(
        "--repeat", type=int, default=None, help="timed runs per worker (default 5 / 3 / 2 / 1)"
    )
    parser.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeat is not None and args.repeat < 1:
        parser.error(f"expected --repeat >= 1, but got {args.repeat}")
    if args.quick and args.size not in (None, "quick"):
        parser.error(f"--quick contradicts --size {args.size}")
    if args.worker is not None and args.data is None:
        parser.error("--worker needs --data")
    if args.json is not None and args.json.exists() and not args.overwrite:
        parser.error(f"{args.json} exists; pass --overwrite to replace it")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m benchmarks.kfold_bench`` and of the worker subprocesses."""
    args = parse_args(argv)
    if args.worker is not None:
        print(json.dumps(run_worker(args.worker, args.data, args.repeat or 1)), flush=True)
        return 0
    size = args.size or ("quick" if args.quick else "default")
    payload = run(size, args.repeat)
    if args.json is not None:
        write_json(args.json, payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
