"""``python -m benchmarks.gpu_check``: facebench's CUDA paths against the CPU at full size,
as one prepared run for a session lent a GPU (docs/performance.md, "On a GPU").

Each side is a ``python -m facebench`` process, as a user runs it, timed by wall clock
(interpreter and imports included), its stores read into the file cache first (untimed):

- ``verify-ijbc-float32``, ``verify-ijbc-float64``: IJB-C 1:1 and 1:N at release size (the
  data of ``python -m benchmarks ijbc``), ``verify --device cpu`` against ``--device
  cuda``: every TAR@FAR entry (TAR, achieved FAR, impostor count; threshold too in
  float32, within 1e-12 in float64, whose products the GPU sums in another order) and the
  1:N results equal; the per-pair file's pairs equal, every score within twice the float32
  bound (float64: 1e-12), genuine scores equal. (A first, untimed CPU run fills the
  protocol cache.)
- ``search-1m``: 1,000 probes in a 1,000,000-item gallery (``python -m benchmarks
  search``'s default stores), ``search --device cpu`` against ``--device cuda``: the
  report's numbers and every per-probe array equal.
- ``search-nccl``: the same search sharded under ``torchrun``, one rank per GPU with nccl
  (nccl refuses two ranks on one device: skipped with fewer than two GPUs).

Each check prints ``GPU <name>: equal=<True|False> cpu_s=<t> device_s=<t> ...``; the exit
status is 1 when a check is unequal or a run fails. ``--device cpu`` runs every comparison
with the CPU on both sides and gloo for the shards: the script's own dry run, no GPU
needed (a test runs it with ``--quick``). Generated data are cached as for ``make bench``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks._common import write_json

REPO_ROOT = Path(__file__).resolve().parent.parent
#: Report fields that may differ between two equal runs.
VOLATILE = ("created", "execution")


def _progress(message: str) -> None:
    print(f"[gpu-check] {message}", file=sys.stderr, flush=True)


def facebench(args: Sequence[str | Path], launcher: Sequence[str] = ()) -> float:
    """Run ``python -m facebench args`` (under ``launcher``, e.g. torchrun); its wall time.

    Raises ``RuntimeError`` with the end of its output when it fails."""
    command = [*launcher] if launcher else [sys.executable]
    command += ["-m", "facebench", *map(str, args)]
    paths = [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        tail = proc.stderr[-3000:]
        raise RuntimeError(f"{' '.join(command)} failed ({proc.returncode}):\n{tail}")
    return elapsed


def read_outputs(report: Path) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
    """A report without its volatile fields, and its per-pair (or per-probe) arrays."""
    payload = json.loads(report.read_text(encoding="utf-8"))
    numbers = {k: v for k, v in payload.items() if k not in VOLATILE}
    with np.load(report.with_name(report.stem + ".scores.npz")) as arrays:
        return numbers, {name: arrays[name] for name in arrays.files}


def same(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> bool:
    """Equal shapes and values, NaN equal to NaN (a non-mated probe's mate score)."""
    floats = a.dtype.kind in "fc" and b.dtype.kind in "fc"
    return bool(np.array_equal(a, b, equal_nan=floats))


def same_tar_entries(
    ones: list[dict[str, Any]], others: list[dict[str, Any]], threshold_tolerance: float
) -> bool:
    """Every TAR@FAR entry's fields equal, its threshold within ``threshold_tolerance``."""
    if len(ones) != len(others):
        return False
    for one, other in zip(ones, others, strict=True):
        if {k: v for k, v in one.items() if k != "threshold"} != {
            k: v for k, v in other.items() if k != "threshold"
        }:
            return False
        a, b = one.get("threshold"), other.get("threshold")
        if (a is None) != (b is None) or (a is not None and abs(a - b) > threshold_tolerance):
            return False
    return True


def compare_verify(cpu: Path, device: Path, precision: str) -> dict[str, Any]:
    """The verify comparison (module docstring); ``equal`` and what it rests on."""
    (c_report, c_arrays), (d_report, d_arrays) = read_outputs(cpu), read_outputs(device)
    c_splits, d_splits = c_report["splits"], d_report["splits"]
    found: dict[str, Any] = {"problems": []}
    problems: list[str] = found["problems"]
    if len(c_splits) != len(d_splits):
        problems.append(f"{len(c_splits)} splits on the CPU, {len(d_splits)} on the device")
    for c, d in zip(c_splits, d_splits, strict=False):
        for key in ("identification", "n_pairs", "n_genuine"):
            if c.get(key) != d.get(key):
                problems.append(f"split {c['split']}: {key} differs")
        # float32: thresholds are float64 re-scores made on the CPU, the same bits; float64:
        # scores summed in another order on the device, a threshold may move in its last bits
        moved = 0.0 if precision == "float32" else 1e-12
        if not same_tar_entries(c["tar_at_far"], d["tar_at_far"], moved):
            problems.append(f"split {c['split']}: tar_at_far differs")
        if d["score_precision"]["precision"] != precision:
            problems.append(f"split {d['split']}: scored in {d['score_precision']['precision']}")
    for name in ("split", "left", "right", "is_same"):
        if not same(c_arrays[name], d_arrays[name]):
            problems.append(f"per-pair {name} differs")
    if c_arrays["score"].shape != d_arrays["score"].shape:
        problems.append(
            f"per-pair score: {c_arrays['score'].size} pairs on the CPU,"
            f" {d_arrays['score'].size} on the device"
        )
        found["equal"] = False
        return found
    diff = np.abs(c_arrays["score"] - d_arrays["score"])
    genuine = c_arrays["is_same"].astype(bool)
    bound = max(s["score_precision"].get("error_bound") or 0.0 for s in c_splits)
    tolerance = 2 * bound if precision == "float32" else 1e-12
    found.update(
        score_max_abs_diff=float(diff.max()) if diff.size else 0.0,
        genuine_max_abs_diff=float(diff[genuine].max()) if genuine.any() else 0.0,
        score_tolerance=tolerance,
        tar_at_far=[(p["far_target"], p["tar"]) for p in d_splits[0]["tar_at_far"]],
    )
    if found["score_max_abs_diff"] > tolerance:
        problems.append(f"a score moved {found['score_max_abs_diff']:.3g} > {tolerance:.3g}")
    if precision == "float32" and found["genuine_max_abs_diff"] != 0.0:
        problems.append("a genuine pair's float64 re-score differs")
    found["equal"] = not problems
    return found


def compare_search(one: Path, other: Path) -> dict[str, Any]:
    """Report numbers and every per-probe array equal."""
    (a_report, a_arrays), (b_report, b_arrays) = read_outputs(one), read_outputs(other)
    problems = [f"report field {k} differs" for k in a_report if a_report[k] != b_report.get(k)]
    for name, values in a_arrays.items():
        if name not in b_arrays or not same(values, b_arrays[name]):
            problems.append(f"per-probe {name} differs")
    return {"equal": not problems, "problems": problems, "cmc": a_report.get("cmc")}


def _line(name: str, found: dict[str, Any]) -> str:
    fields = [f"equal={found['equal']}"]
    for key in ("cpu_s", "device_s", "score_max_abs_diff", "score_tolerance", "ranks"):
        if key in found:
            value = found[key]
            fields.append(f"{key}={value:.3f}" if key.endswith("_s") else f"{key}={value:.3g}")
    return f"GPU {name}: " + " ".join(fields)


def check_verify(device: str, quick: bool, work: Path) -> dict[str, dict[str, Any]]:
    from benchmarks import ijbc_bench, search_bench

    dataset = ijbc_bench.cached_dataset(quick)
    base: list[str | Path] = ["verify", "--protocol", "ijbc", "--protocol-dir"]
    base += [dataset.protocol_dir]
    base += ["--features", dataset.store, "--pooling", "media", "--overwrite"]
    _progress("verify: a first CPU run fills the protocol cache")
    facebench([*base, "--json", work / "warm.json"])
    results = {}
    for precision in ("float32", "float64"):
        times, reports = {}, {}
        for side, name in (("cpu", "cpu"), (device, "device")):
            reports[name] = work / f"verify-{precision}-{name}.json"
            extra = ["--score-precision", precision, "--device", side, "--json", reports[name]]
            search_bench.warm_file_cache([dataset.store])
            _progress(f"verify --score-precision {precision} --device {side}")
            times[name] = facebench([*base, *extra])
        found = compare_verify(reports["cpu"], reports["device"], precision)
        found.update(cpu_s=times["cpu"], device_s=times["device"])
        results[f"verify-ijbc-{precision}"] = found
    return results


def check_search(device: str, quick: bool, work: Path) -> dict[str, dict[str, Any]]:
    from benchmarks import search_bench

    dataset = search_bench.cached_dataset("quick" if quick else "default")
    base: list[str | Path] = ["search", "--gallery", dataset.gallery, "--probes"]
    base += [dataset.probes]
    base += ["--top-k", "10", "--overwrite"]
    times, reports = {}, {}
    for side, name in (("cpu", "cpu"), (device, "device")):
        reports[name] = work / f"search-{name}.json"
        search_bench.warm_file_cache([dataset.gallery, dataset.probes])  # as make bench
        _progress(f"search --device {side}")
        times[name] = facebench([*base, "--device", side, "--json", reports[name]])
    found = compare_search(reports["cpu"], reports["device"])
    found.update(cpu_s=times["cpu"], device_s=times["device"])
    results = {f"search-{dataset.n_gallery}x{dataset.n_probes}": found}
    ranks = 2 if device == "cpu" else _gpus()
    sharded_name = "search-nccl" if device == "cuda" else "search-gloo"
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if ranks < 2 or torchrun is None:
        why = "no torchrun" if torchrun is None else f"one rank per GPU; {ranks} GPU(s)"
        _progress(f"search-nccl skipped: {why}")
        results[sharded_name] = {"equal": None, "skipped": why}
        return results
    sharded = work / "search-sharded.json"
    launcher = [torchrun, "--standalone", "--nproc-per-node", str(ranks)]
    search_bench.warm_file_cache([dataset.gallery, dataset.probes])
    _progress(f"search --device {device} under torchrun, {ranks} ranks")
    elapsed = facebench([*base, "--device", device, "--json", sharded], launcher=launcher)
    found = compare_search(reports["cpu"], sharded)
    found.update(cpu_s=times["cpu"], device_s=elapsed, ranks=ranks)
    results[sharded_name] = found
    return results


def _gpus() -> int:
    import torch

    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0


def run(device: str, quick: bool, work: Path) -> dict[str, Any]:
    """Every check; the numbers by check name, plus the machine's description."""
    if device == "cuda" and _gpus() == 0:
        raise SystemExit("error: torch sees no CUDA device; --device cpu runs the dry run")
    results: dict[str, Any] = {}
    results.update(check_verify(device, quick, work))
    results.update(check_search(device, quick, work))
    return results


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu_check", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--quick", action="store_true", help="small data (seconds)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the numbers here")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="facebench-gpu-check-") as tmp:
        results = run(args.device, args.quick, Path(tmp))
    if args.device == "cuda":
        import torch

        results["device_name"] = torch.cuda.get_device_name(0)
        results["torch"] = torch.__version__
    for name, found in results.items():
        if isinstance(found, dict):
            if found.get("equal") is None:
                print(f"GPU {name}: skipped ({found['skipped']})")
            else:
                print(_line(name, found))
                for problem in found.get("problems", []):
                    print(f"  {problem}")
    if args.json is not None:
        write_json(args.json, {"benchmark": "gpu-check", "device": args.device, **results})
    failed = [n for n, f in results.items() if isinstance(f, dict) and f.get("equal") is False]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
