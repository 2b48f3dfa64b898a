"""``python -m benchmarks``: run the benchmarks (see :mod:`benchmarks.kfold_bench`)."""

from __future__ import annotations

from benchmarks.kfold_bench import main

if __name__ == "__main__":
    raise SystemExit(main())
