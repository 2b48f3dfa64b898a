"""``python -m benchmarks``: run facebench's benchmarks (``make bench``, ``make bench-full``).

Run from the repository root::

    python -m benchmarks                  # every benchmark, default sizes (make bench)
    python -m benchmarks --size full      # IJB-C and MegaFace sizes (make bench-full)
    python -m benchmarks kfold            # one: kfold | extract | ijbc | search
    python -m benchmarks --quick          # every benchmark, small sizes (seconds)
    python -m benchmarks --json bench-out/bench.json

Sizes. ``quick``: small data, wiring only. ``default`` (``make bench``, under 10 minutes on
2 cores once the generated data are cached): LFW-style 10-fold on 6,000 and 1,000,000
pairs; extraction with iresnet-50 and a small CNN; IJB-C 1:1 at release size with its
baseline; 1:N search of 1,000 probes in a 1,000,000-item gallery (and the same sharded).
``full`` (``make bench-full``): the same, with the k-fold baseline on 1,000,000 pairs and the
1:N search of 10,000 probes in the 1,000,000-item gallery (MegaFace size). Generated data
are cached in ``~/.cache/facebench-bench`` (``$FACEBENCH_BENCH_CACHE``).

Every benchmark runs each side in its own process and ends with ``BENCH <name>: ratio=...``
lines (docs/performance.md). ``--json`` writes one benchmark's numbers as its module does,
or, for several, ``{"benchmark": "all", "<name>": {...}, ...}``; an existing file is kept
unless ``--overwrite`` is given.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks._common import write_json

SIZES = ("quick", "default", "full")

#: A benchmark: measure and print at a size (k-fold: with ``repeat``), return its numbers.
Benchmark = Callable[[str, int | None], dict[str, Any]]


def _kfold(size: str, repeat: int | None) -> dict[str, Any]:
    from benchmarks import kfold_bench

    return kfold_bench.run(size, repeat)


def _extract(size: str, repeat: int | None) -> dict[str, Any]:
    from benchmarks import extract_bench

    rows, elapsed_s = extract_bench.run(size == "quick")
    return extract_bench.summary(rows, elapsed_s)


def _ijbc(size: str, repeat: int | None) -> dict[str, Any]:
    from benchmarks import ijbc_bench

    result = ijbc_bench.measure(size == "quick", repeat or 3)  # warm runs: the fastest kept
    ijbc_bench.render(result)
    return ijbc_bench.summary(result)


def _search(size: str, repeat: int | None) -> dict[str, Any]:
    search_bench = importlib.import_module("benchmarks.search_bench")
    found: dict[str, Any] = search_bench.run(size)
    return found


#: The benchmarks ``all`` runs, in this order.
BENCHMARKS: dict[str, Benchmark] = {
    "kfold": _kfold,
    "extract": _extract,
    "ijbc": _ijbc,
    "search": _search,
}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument(
        "which",
        nargs="?",
        choices=(*BENCHMARKS, "all"),
        default="all",
        help="the benchmark to run (default: all)",
    )
    parser.add_argument("--size", choices=SIZES, default=None, help="default: default")
    parser.add_argument("--quick", action="store_true", help="the same as --size quick")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the numbers here")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json")
    parser.add_argument(
        "--repeat", type=int, default=None, help="timed runs per worker (k-fold, IJB-C)"
    )
    args = parser.parse_args(argv)
    if args.quick and args.size not in (None, "quick"):
        parser.error(f"--quick contradicts --size {args.size}")
    args.size = "quick" if args.quick else (args.size or "default")
    if args.repeat is not None and args.repeat < 1:
        parser.error(f"expected --repeat >= 1, but got {args.repeat}")
    if args.json is not None and args.json.exists() and not args.overwrite:
        parser.error(f"{args.json} exists; pass --overwrite to replace it")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen benchmarks one after the other, print them, and write ``--json``."""
    args = parse_args(argv)
    chosen = list(BENCHMARKS) if args.which == "all" else [args.which]
    payload = {name: BENCHMARKS[name](args.size, args.repeat) for name in chosen}
    if args.json is not None:
        single = len(chosen) == 1
        write_json(args.json, payload[chosen[0]] if single else {"benchmark": "all", **payload})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
