"""``python -m benchmarks``: run facebench's benchmarks (``make bench``).

Run from the repository root::

    python -m benchmarks                  # every benchmark (a few minutes)
    python -m benchmarks kfold            # 10-fold accuracy only (benchmarks.kfold_bench)
    python -m benchmarks extract          # feature extraction only (benchmarks.extract_bench)
    python -m benchmarks ijbc             # IJB-C-sized 1:1 evaluation (benchmarks.ijbc_bench)
    python -m benchmarks --quick          # every benchmark, small sizes (seconds)
    python -m benchmarks --json bench-out/bench.json

``--quick`` and ``--json`` apply to every benchmark that runs; ``--repeat`` to the k-fold
one. With one benchmark, ``--json`` writes that benchmark's numbers as its module does;
with ``all`` (the default) it writes ``{"benchmark": "all", "kfold": {...},
"extract": {...}}``. An existing ``--json`` file is kept unless ``--overwrite`` is given.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks import extract_bench, ijbc_bench, kfold_bench

#: A benchmark: measure and print (``quick``, k-fold ``repeat``), return the JSON numbers.
Benchmark = Callable[[bool, int | None], dict[str, Any]]


def _kfold(quick: bool, repeat: int | None) -> dict[str, Any]:
    rows, load_only = kfold_bench.measure(quick, repeat)
    kfold_bench.render(rows, load_only)
    return kfold_bench.summary(rows, load_only)


def _extract(quick: bool, repeat: int | None) -> dict[str, Any]:
    rows, elapsed_s = extract_bench.run(quick)
    return extract_bench.summary(rows, elapsed_s)


def _ijbc(quick: bool, repeat: int | None) -> dict[str, Any]:
    result = ijbc_bench.measure(quick, repeat or 1)
    ijbc_bench.render(result)
    return ijbc_bench.summary(result)


#: The benchmarks ``all`` runs, in this order.
BENCHMARKS: dict[str, Benchmark] = {"kfold": _kfold, "extract": _extract, "ijbc": _ijbc}


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
    parser.add_argument("--quick", action="store_true", help="small sizes only (seconds)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the numbers here")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json")
    parser.add_argument(
        "--repeat", type=int, default=None, help="k-fold: timed runs per worker (default 5 / 3)"
    )
    args = parser.parse_args(argv)
    if args.repeat is not None and args.repeat < 1:
        parser.error(f"expected --repeat >= 1, but got {args.repeat}")
    if args.json is not None and args.json.exists() and not args.overwrite:
        parser.error(f"{args.json} exists; pass --overwrite to replace it")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen benchmarks one after the other, print them, and write ``--json``."""
    args = parse_args(argv)
    chosen = list(BENCHMARKS) if args.which == "all" else [args.which]
    payload = {name: BENCHMARKS[name](args.quick, args.repeat) for name in chosen}
    if args.json is not None:
        single = len(chosen) == 1
        kfold_bench.write_json(
            args.json, payload[chosen[0]] if single else {"benchmark": "all", **payload}
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
