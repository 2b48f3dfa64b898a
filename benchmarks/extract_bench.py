"""Feature extraction: ``facebench extract``'s images/s next to a bare ``model(batch)`` loop.

Run from the repository root::

    python -m benchmarks extract            # iresnet-50 and the small CNN (a few minutes)
    python -m benchmarks extract --quick    # the small CNN only, few images (seconds)
    python -m benchmarks extract --json bench-out/extract.json

What is compared
----------------
bare
    The model alone: every image is decoded and preprocessed beforehand (not timed) into one
    float32 tensor, and the timed loop is ``for batch in tensor.split(64): module(batch)``
    under :func:`torch.inference_mode`, on the architecture's own ``nn.Module`` loaded with
    the same weights. This is the most images/s the model gives on this machine.
extract
    :func:`facebench.extract.api.extract`, the one library call behind ``facebench extract
    ROOT --arch A --weights W -o OUT --batch-size 64 --workers K --device cpu
    --no-progress``: listing the folder, loading the weights, DataLoader workers decoding
    and preprocessing, the forward passes, the chunk files and the assembled store.

The ratio ``extract / bare`` (steady-state images/s) says how well the pipeline feeds the
model: 1.0 means the model never waits for images.

How it is measured
------------------
Synthetic images (a seeded :class:`numpy.random.Generator`; smooth colour fields plus
noise, so that they compress like photographs rather than like white noise) are written
once to a temporary folder: 112x112 JPEGs (aligned face crops, no resize for iresnet-50),
250x250 JPEGs (LFW's size: decoded, then resized to 112x112) and 32x32 PNGs for the small
CNN. Random weights are drawn once per architecture with a fixed seed and saved as a
state_dict that both sides load. Each run is its own subprocess
(``python -m benchmarks.extract_bench --worker SIDE ...``) with torch's default threads.

Both sides are timed the same way: global forward hooks record when each top-level forward
pass starts and ends. The first batch is the warm-up (oneDNN primitive creation; for
extract also the workers' start); **steady-state images/s** counts the images of the other
batches over the time from the end of the first forward pass to the end of the last, so it
includes every wait for data. **End-to-end images/s** (extract only) is all images over
the whole call, from before the folder is listed to the written store; **setup** is the
time before the first forward pass starts (listing, weights, workers, first batch), and
**finish** the time after the last one ends (last chunk file, assembly of the store,
shutting the workers down).

Peak RSS is the subprocess's ``VmHWM`` (:func:`benchmarks.kfold_bench.peak_rss_mib`, which
explains why ``ru_maxrss`` is wrong after ``exec``); the DataLoader workers are separate
processes, and the largest ``VmHWM`` among them (:func:`children_peak_mib`; it counts the
pages shared with the parent after ``fork``) is reported apart. The small CNN is also run
on four times the images: the runner keeps one chunk of features, never the decoded
images, so its peak should not grow with the number of images.

Two diagnostics come with each run: the page faults of its process per batch (an
allocator that gives memory back and maps it again each batch slows the forward pass),
and **other CPU**, the cores that other processes kept busy during the run (the machine's
busy time in ``/proc/stat`` minus the run's own): with torch's threads on every core, a
competing process slows a run by much more than its share, so a run above
:data:`BUSY_CPU` is flagged. Speed and memory are ratios within one run,
never assertions in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmarks._common import bench_line, peak_rss_mib, write_json

if TYPE_CHECKING:
    from torch import nn

REPO_ROOT = Path(__file__).resolve().parent.parent
SEED = 20_240_611
BATCH_SIZE = 64
WORKERS = 2
JPEG_QUALITY = 90
SIDES = ("bare", "extract")
BUSY_CPU = 0.10  # other processes' cores above which a run is flagged


# --- the plan -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageSet:
    """A folder of synthetic images (written by :func:`write_images`)."""

    name: str
    size: int  # square images, pixels per side
    suffix: str  # ".jpg" or ".png"
    n_images: int


@dataclass(frozen=True)
class Run:
    """One subprocess: a side, an architecture, an image folder and a worker count."""

    label: str
    side: str
    arch: str
    images: ImageSet
    workers: int = 0
    reference: str | None = None  # label of the bare run this one is compared with


def plan(quick: bool) -> list[Run]:
    """The runs of ``make bench`` (``quick``: the small CNN on few images only)."""
    n_small = 256 if quick else 4096
    small = ImageSet("png32", 32, ".png", n_small)
    small_4x = ImageSet("png32x4", 32, ".png", 4 * n_small)
    runs: list[Run] = []
    if not quick:
        n_face = 4 * BATCH_SIZE
        faces = ImageSet("jpeg112", 112, ".jpg", n_face)
        lfw = ImageSet("jpeg250", 250, ".jpg", n_face)
        ref = "iresnet50 bare"
        runs += [
            Run(ref, "bare", "iresnet50", faces),
            Run("iresnet50 extract w=2", "extract", "iresnet50", faces, WORKERS, ref),
            Run("iresnet50 extract w=0", "extract", "iresnet50", faces, 0, ref),
            Run("iresnet50 extract w=2 250px", "extract", "iresnet50", lfw, WORKERS, ref),
        ]
    ref = "small-cnn bare"
    runs += [
        Run(ref, "bare", "small-cnn", small),
        Run("small-cnn extract w=2", "extract", "small-cnn", small, WORKERS, ref),
        Run("small-cnn extract w=0", "extract", "small-cnn", small, 0, ref),
        Run("small-cnn extract w=2 4x", "extract", "small-cnn", small_4x, WORKERS, ref),
    ]
    if quick:
        runs = [run for run in runs if not run.label.endswith("w=0")]
    return runs


# --- data -----------------------------------------------------------------------------------


def synthetic_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """A (size, size, 3) uint8 image: a smooth random colour field plus pixel noise.

    An 8x8 grid of random colours is enlarged bilinearly to ``size`` and noise of standard
    deviation 6 is added, so the image compresses and decodes like a photograph (white
    noise would make JPEG files several times larger and slower to decode).
    """
    from PIL import Image

    coarse = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    smooth = np.asarray(
        Image.fromarray(coarse).resize((size, size), Image.Resampling.BILINEAR), dtype=np.int16
    )
    noise = np.rint(rng.normal(0.0, 6.0, size=smooth.shape)).astype(np.int16)
    return np.clip(smooth + noise, 0, 255).astype(np.uint8)


def write_images(directory: Path, images: ImageSet) -> Path:
    """Write ``images.n_images`` files ``img_000000.<suffix>`` ... to ``directory/name``."""
    from PIL import Image

    folder = directory / images.name
    folder.mkdir(parents=True)
    rng = np.random.default_rng([SEED, images.size, images.n_images])
    for i in range(images.n_images):
        image = Image.fromarray(synthetic_image(rng, images.size))
        path = folder / f"img_{i:06d}{images.suffix}"
        if images.suffix == ".jpg":
            image.save(path, quality=JPEG_QUALITY)
        else:
            image.save(path)
    return folder


def write_weights(directory: Path, arch: str) -> Path:
    """Random weights of ``arch`` (fixed seed) as a state_dict file both sides load."""
    import torch

    from facebench.models.registry import ARCHITECTURES

    torch.manual_seed(SEED)
    module = ARCHITECTURES[arch].build()
    path = directory / f"{arch}.pth"
    torch.save(module.state_dict(), path)
    return path


# --- the worker (one run, one subprocess) ---------------------------------------------------


@dataclass
class ForwardTimes:
    """When each top-level forward pass started and ended, and its batch size."""

    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    page_faults: list[int] = field(default_factory=list)  # this process's, at each end
    children_peak_mib: float = 0.0  # largest VmHWM of a child process (DataLoader worker)

    def steady_images_per_s(self) -> float | None:
        """Images of batches 2.. over the time from the end of batch 1 to the last end."""
        if len(self.ends) < 2:
            return None
        return sum(self.sizes[1:]) / (self.ends[-1] - self.ends[0])

    def page_faults_per_batch(self) -> float | None:
        """Page faults of this process per batch, over batches 2.. (memory the allocator
        gave back to the system and had to map again)."""
        if len(self.page_faults) < 2:
            return None
        return (self.page_faults[-1] - self.page_faults[0]) / (len(self.page_faults) - 1)

    def forward_images_per_s(self) -> float | None:
        """Images of batches 2.. over the time spent inside those forward passes only."""
        if len(self.ends) < 2:
            return None
        busy = sum(end - start for start, end in zip(self.starts[1:], self.ends[1:], strict=True))
        return sum(self.sizes[1:]) / busy


@contextmanager
def forward_times() -> Iterator[ForwardTimes]:
    """Record every outermost ``nn.Module`` call while the context is open.

    Global hooks (``torch.nn.modules.module.register_module_forward_*hook``) see every
    module call; a depth counter keeps the outermost one, the model itself, whoever calls
    it. Both sides of the benchmark pay the same (small) cost of the hooks.
    """
    from torch.nn.modules.module import (
        register_module_forward_hook,
        register_module_forward_pre_hook,
    )

    times = ForwardTimes()
    depth = 0

    def before(module: nn.Module, args: tuple[Any, ...]) -> None:
        nonlocal depth
        if depth == 0:
            times.sizes.append(int(args[0].shape[0]))
            times.starts.append(time.perf_counter())
        depth += 1

    def after(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        nonlocal depth
        depth -= 1
        if depth == 0:
            times.ends.append(time.perf_counter())
            usage = resource.getrusage(resource.RUSAGE_SELF)
            times.page_faults.append(usage.ru_minflt + usage.ru_majflt)
            times.children_peak_mib = max(times.children_peak_mib, children_peak_mib())

    handles = [register_module_forward_pre_hook(before), register_module_forward_hook(after)]
    try:
        yield times
    finally:
        for handle in handles:
            handle.remove()


def children_peak_mib() -> float:
    """Largest ``VmHWM`` among the live child processes of this process, in MiB (0 if none).

    Read after every forward pass, while the DataLoader workers are alive (a high-water
    mark, so the last reading is the peak). ``RUSAGE_CHILDREN`` cannot be used: it also
    counts any short-lived subprocess (``platform`` runs ``uname -p`` at import), whose
    ``ru_maxrss`` is this process's own peak at the time of the fork.
    """
    peak = 0.0
    try:
        with open(f"/proc/self/task/{os.getpid()}/children", encoding="ascii") as children:
            pids = children.read().split()
    except OSError:
        return peak
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status", encoding="ascii") as status:
                for line in status:
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]) / 1024.0)  # kB
                        break
        except OSError:  # the child has just exited
            continue
    return peak


def run_bare(arch: str, weights: Path, images: Path, batch_size: int) -> dict[str, Any]:
    """Decode every image first, then time ``module(batch)`` over the batches."""
    import torch

    from facebench.extract.preprocess import PRESETS, load_item
    from facebench.extract.sources import folder_items
    from facebench.models.registry import ARCHITECTURES

    spec = ARCHITECTURES[arch]
    start = time.perf_counter()
    items = folder_items(images)
    config = PRESETS[spec.preset]
    tensor = torch.from_numpy(np.stack([load_item(item, config) for item in items]))
    module = spec.build()
    module.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    module.eval()
    setup_s = time.perf_counter() - start
    with forward_times() as times, torch.inference_mode():
        for batch in tensor.split(batch_size):
            module(batch)
    return {
        "n_images": len(items),
        "setup_s": setup_s,
        "total_s": times.ends[-1] - start,
        "times": times,
    }


def run_extract(
    arch: str, weights: Path, images: Path, batch_size: int, workers: int, output: Path
) -> dict[str, Any]:
    """Time :func:`facebench.extract.api.extract` from the folder to the written store."""
    # What extract imports inside is imported here, before the clock starts.
    import facebench.extract.distributed
    import facebench.models.loaders  # noqa: F401
    from facebench.extract.api import ExtractRequest, extract
    from facebench.extract.runner import ExtractOptions

    request = ExtractRequest(root=images, output=output, arch=arch, weights=weights)
    options = ExtractOptions(batch_size=batch_size, workers=workers, device="cpu", progress=False)
    messages: list[str] = []
    start = time.perf_counter()
    with forward_times() as times:
        info = extract(request, options, log=messages.append)
    total_s = time.perf_counter() - start
    if info is None or info.n_items != sum(times.sizes):
        raise RuntimeError(f"extract wrote {info} after {sum(times.sizes)} images: {messages}")
    return {
        "n_images": info.n_items,
        "setup_s": times.starts[0] - start,
        "finish_s": start + total_s - times.ends[-1],
        "total_s": total_s,
        "times": times,
    }


def run_worker(args: argparse.Namespace) -> dict[str, Any]:
    """One run: import what it needs (not timed), run, and return the measurements."""
    import torch

    if args.worker == "bare":
        result = run_bare(args.arch, args.weights, args.images, args.batch_size)
    else:
        result = run_extract(
            args.arch, args.weights, args.images, args.batch_size, args.workers, args.output
        )
    times: ForwardTimes = result.pop("times")
    return {
        **result,
        "n_batches": len(times.sizes),
        "steady_images_per_s": times.steady_images_per_s(),
        "forward_images_per_s": times.forward_images_per_s(),
        "page_faults_per_batch": times.page_faults_per_batch(),
        "end_to_end_images_per_s": result["n_images"] / result["total_s"],
        "peak_rss_mib": peak_rss_mib(),
        "workers_peak_rss_mib": times.children_peak_mib or None,
        "torch_threads": torch.get_num_threads(),
    }


# --- the driver -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    """What one worker measured (see :func:`run_worker`)."""

    n_images: int
    n_batches: int
    setup_s: float
    total_s: float
    steady_images_per_s: float | None
    forward_images_per_s: float | None
    page_faults_per_batch: float | None
    end_to_end_images_per_s: float
    peak_rss_mib: float
    workers_peak_rss_mib: float | None
    torch_threads: int
    finish_s: float | None = None

    @property
    def model_busy(self) -> float | None:
        """Fraction of the steady-state window spent inside forward passes (1: never idle).

        Both rates count the images of batches 2.., so their quotient is the time inside
        the forward passes over the window's length.
        """
        if self.steady_images_per_s is None or not self.forward_images_per_s:
            return None
        return self.steady_images_per_s / self.forward_images_per_s


@dataclass(frozen=True)
class Row:
    """One line of the table: a run, what it measured, and its bare reference (if any)."""

    run: Run
    result: Measurement
    reference: Measurement | None
    other_cpu: float  # cores kept busy by other processes during the run (spawn_worker)

    @property
    def ratio(self) -> float | None:
        """Steady-state images/s over the bare loop's (None for a bare row)."""
        return _ratio(self.result.steady_images_per_s, self.reference)

    @property
    def end_to_end_ratio(self) -> float | None:
        """End-to-end images/s over the bare loop's steady-state images/s."""
        if self.reference is None:
            return None
        return _ratio(self.result.end_to_end_images_per_s, self.reference)


def _ratio(value: float | None, reference: Measurement | None) -> float | None:
    base = None if reference is None else reference.steady_images_per_s
    return None if value is None or not base else value / base


def busy_cpu_s() -> float:
    """CPU seconds the whole machine has been busy since boot (``/proc/stat``; 0 elsewhere).

    user + nice + system + irq + softirq + steal (steal: time a hypervisor gave to others).
    """
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(v) for v in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def children_cpu_s() -> float:
    """CPU seconds used by this process's finished children and their descendants."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def spawn_worker(run: Run, folder: Path, weights: Path, output: Path) -> tuple[Measurement, float]:
    """Run :func:`run_worker` for ``run`` in a fresh interpreter and parse its JSON line.

    Returns
    -------
    Measurement
    float
        CPU cores that other processes kept busy on average during the run: the machine's
        busy CPU time minus the run's own (the worker and its DataLoader workers), over the
        wall time. Near 0 on a quiet machine.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", "benchmarks.extract_bench", "--worker", run.side]
    command += ["--arch", run.arch, "--weights", str(weights), "--images", str(folder)]
    command += ["--workers", str(run.workers), "--batch-size", str(BATCH_SIZE)]
    command += ["--output", str(output)]
    busy, own, start = busy_cpu_s(), children_cpu_s(), time.perf_counter()
    proc = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    other = (busy_cpu_s() - busy - (children_cpu_s() - own)) / wall
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"benchmark worker {run.label!r} failed with exit code {proc.returncode}:\n"
            f"{proc.stderr.strip() or proc.stdout.strip()}"
        )
    return Measurement(**json.loads(lines[-1])), max(0.0, other)


def _progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def measure(quick: bool) -> list[Row]:
    """Write the images and weights, run every worker, and pair each with its reference."""
    runs = plan(quick)
    results: dict[str, tuple[Measurement, float]] = {}
    with tempfile.TemporaryDirectory(prefix="facebench-bench-") as tmp:
        directory = Path(tmp)
        folders: dict[str, Path] = {}
        for images in dict.fromkeys(run.images for run in runs):
            _progress(f"writing {images.n_images:,} {images.size}x{images.size} {images.suffix}")
            folders[images.name] = write_images(directory, images)
        archs = dict.fromkeys(run.arch for run in runs)
        weights = {arch: write_weights(directory, arch) for arch in archs}
        output = directory / "features.h5"
        for run in runs:
            _progress(f"{run.label}, {run.images.n_images:,} images")
            results[run.label] = spawn_worker(
                run, folders[run.images.name], weights[run.arch], output
            )
            output.unlink(missing_ok=True)
    rows = []
    for run in runs:
        result, other_cpu = results[run.label]
        reference = None if run.reference is None else results[run.reference][0]
        rows.append(Row(run, result, reference, other_cpu))
    return rows


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def machine() -> dict[str, Any]:
    """The machine and library versions the numbers were measured on."""
    import torch

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in info if line.startswith("model name")),
                cpu,
            )
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
    }


def render(rows: Sequence[Row], elapsed_s: float) -> None:
    """Print the table and the notes that say what the numbers mean."""
    from rich.console import Console
    from rich.table import Table

    console = Console() if sys.stdout.isatty() else Console(width=160)
    table = Table(title=f"Feature extraction on the CPU, batch {BATCH_SIZE}: extract vs bare loop")
    table.add_column("run", no_wrap=True)
    headers = ("images", "img/s", "ratio", "model busy", "e2e img/s", "e2e ratio", "setup s")
    for header in (*headers, "finish s", "peak RSS MiB", "workers MiB", "other CPU"):
        table.add_column(header, justify="right", no_wrap=True)
    for row in rows:
        r = row.result
        table.add_row(
            row.run.label,
            f"{r.n_images:,}",
            _fmt(r.steady_images_per_s, ",.1f"),
            "1 (ref)" if row.reference is None else _fmt(row.ratio, ".3f"),
            "–" if r.model_busy is None else f"{100 * r.model_busy:.0f} %",
            "–" if row.reference is None else _fmt(r.end_to_end_images_per_s, ",.1f"),
            _fmt(row.end_to_end_ratio, ".3f"),
            f"{r.setup_s:.2f}",
            _fmt(r.finish_s, ".2f"),
            f"{r.peak_rss_mib:.1f}",
            _fmt(r.workers_peak_rss_mib, ".1f"),
            f"{row.other_cpu:.2f}",
        )
    console.print(table)
    info = machine()
    notes = [
        "img/s: steady state, the images of batches 2.. over the time from the end of the "
        "first forward pass to the end of the last (every wait for data included); "
        "ratio = extract img/s / bare img/s; model busy: the share of that time spent inside "
        "forward passes (100 %: the model never waits for images)",
        "e2e: all images over the whole extract call (listing, weights, workers, forward, "
        "chunk files, store); e2e ratio = e2e img/s / bare img/s; setup s: before the first "
        "forward pass (bare: decoding every image beforehand); finish s: after the last",
        f"bare: `for batch in x.split({BATCH_SIZE}): module(batch)` under inference_mode on "
        "pre-decoded images; extract: facebench.extract.api.extract (facebench extract "
        f"--device cpu --batch-size {BATCH_SIZE} --workers w --no-progress), same weights",
        "images: iresnet50 112x112 JPEGs (aligned crops, no resize), 250px: 250x250 JPEGs "
        "resized to 112x112; small-cnn 32x32 PNGs, 4x: four times the images",
        "peak RSS: VmHWM of the run's process; workers MiB: the largest VmHWM of a DataLoader "
        "worker (it counts the pages shared with the parent after fork)",
        "other CPU: cores kept busy by other processes during the run (/proc/stat minus the "
        "run's own CPU time); the numbers of a run with more than 0.10 are depressed",
        "forward-only img/s (time inside the forward passes, batches 2..) and page faults "
        "per batch of the run's process: "
        + ", ".join(
            f"{row.run.label} {_fmt(row.result.forward_images_per_s, ',.1f')}"
            f" / {_fmt(row.result.page_faults_per_batch, ',.0f')}"
            for row in rows
        ),
        f"machine: {info['cpus']} CPUs ({info['cpu']}), torch {info['torch']} with "
        f"{info['torch_threads']} threads, Python {info['python']}, numpy {info['numpy']}, "
        f"{info['platform']}; the extract benchmark took {elapsed_s:.0f} s",
    ]
    busy = [row.run.label for row in rows if row.other_cpu > BUSY_CPU]
    if busy:
        notes.append(
            f"WARNING: other processes used more than {BUSY_CPU} cores during: "
            f"{', '.join(busy)}; rerun on a quiet machine for numbers that can be compared"
        )
    for note in notes:
        # soft_wrap: a log keeps each note on one line.
        console.print(note, soft_wrap=True, highlight=False)


def summary(rows: Sequence[Row], elapsed_s: float) -> dict[str, Any]:
    """The numbers as a JSON-ready dict."""
    return {
        "benchmark": "extract",
        "batch_size": BATCH_SIZE,
        "data": {"seed": SEED, "jpeg_quality": JPEG_QUALITY},
        "machine": machine(),
        "elapsed_s": elapsed_s,
        "rows": [
            {
                "label": row.run.label,
                "side": row.run.side,
                "arch": row.run.arch,
                "images": asdict(row.run.images),
                "workers": row.run.workers if row.run.side == "extract" else None,
                **asdict(row.result),
                "reference": row.run.reference,
                "ratio": row.ratio,
                "end_to_end_ratio": row.end_to_end_ratio,
                "model_busy": row.result.model_busy,
                "other_cpu": row.other_cpu,
            }
            for row in rows
        ],
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.extract_bench",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--quick", action="store_true", help="the small CNN only, few images")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the numbers here")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json")
    parser.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--arch", help=argparse.SUPPRESS)
    parser.add_argument("--weights", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--images", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None and None in (args.arch, args.weights, args.images, args.output):
        parser.error("--worker needs --arch, --weights, --images and --output")
    if args.json is not None and args.json.exists() and not args.overwrite:
        parser.error(f"{args.json} exists; pass --overwrite to replace it")
    return args


#: Rows that get a ``BENCH`` line: (row label, bench name).
BENCH_ROWS = (
    ("iresnet50 extract w=2", "extract-iresnet50"),
    ("small-cnn extract w=2", "extract-small-cnn"),
)


def bench_lines(rows: Sequence[Row]) -> list[str]:
    """``BENCH extract-*``: ratio = steady-state images/s of ``facebench extract`` over the
    bare model loop's (1 = no overhead); times are seconds per 1,000 images in the steady
    state; peaks are each side's own process."""
    lines = []
    for label, name in BENCH_ROWS:
        row = next((r for r in rows if r.run.label == label), None)
        if row is None or row.reference is None or not row.result.steady_images_per_s:
            continue
        base = row.reference.steady_images_per_s
        lines.append(
            bench_line(
                name,
                ratio=row.ratio,
                time_s=1000.0 / row.result.steady_images_per_s,
                peak_mib=row.result.peak_rss_mib,
                baseline_time_s=None if not base else 1000.0 / base,
                baseline_peak_mib=row.reference.peak_rss_mib,
            )
        )
    return lines


def run(quick: bool) -> tuple[list[Row], float]:
    """Measure and print (the table, then the ``BENCH`` lines); return the rows and the
    seconds it took."""
    start = time.perf_counter()
    rows = measure(quick)
    elapsed_s = time.perf_counter() - start
    render(rows, elapsed_s)
    for line in bench_lines(rows):
        print(line, flush=True)
    return rows, elapsed_s


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m benchmarks.extract_bench`` and of its worker subprocesses."""
    args = parse_args(argv)
    if args.worker is not None:
        print(json.dumps(run_worker(args)), flush=True)
        return 0
    rows, elapsed_s = run(args.quick)
    if args.json is not None:
        write_json(args.json, summary(rows, elapsed_s))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
