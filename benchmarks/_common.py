"""What every benchmark shares: peak memory of a worker, the ``BENCH`` line, JSON output.

Each benchmark runs each side (facebench and its baseline) in a subprocess of its own so
that the peak memory it reports is that side's alone, and ends with one line per
measurement in the format that ``make bench`` documents (docs/performance.md)::

    BENCH <name>: ratio=<r> time_s=<t> peak_mib=<m> baseline_time_s=<t> baseline_peak_mib=<m>

``ratio`` is the baseline's time over facebench's (per pair where the sizes differ; the
benchmark says which), so larger is better.
"""

from __future__ import annotations

import json
import os
import resource
import sys
from pathlib import Path
from typing import Any

#: Where generated benchmark data is cached between runs (``make bench`` and ``bench-full``).
CACHE_DIR = Path(
    os.environ.get("FACEBENCH_BENCH_CACHE", Path.home() / ".cache" / "facebench-bench")
)


def ru_maxrss_mib() -> float:
    """``getrusage(RUSAGE_SELF).ru_maxrss`` in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def peak_rss_mib() -> float:
    """Peak resident set size of this process image so far, in MiB.

    On Linux this is ``VmHWM`` from ``/proc/self/status``. ``ru_maxrss`` is not used there
    because it survives ``execve``: a worker that subprocess starts (by vfork + exec)
    inherits the driver's own peak, e.g. the 1M-pair arrays it generated, and every worker
    would then report at least that. Elsewhere, ``ru_maxrss``.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return ru_maxrss_mib()


def bench_line(
    name: str,
    *,
    ratio: float | None,
    time_s: float,
    peak_mib: float | None,
    baseline_time_s: float | None,
    baseline_peak_mib: float | None,
) -> str:
    """The one summary line a benchmark ends with (``None`` prints as ``na``)."""

    def fmt(value: float | None, digits: int) -> str:
        return "na" if value is None else f"{value:.{digits}f}"

    return (
        f"BENCH {name}: ratio={fmt(ratio, 1)} time_s={fmt(time_s, 3)} "
        f"peak_mib={fmt(peak_mib, 0)} baseline_time_s={fmt(baseline_time_s, 3)} "
        f"baseline_peak_mib={fmt(baseline_peak_mib, 0)}"
    )


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to a temporary name beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
