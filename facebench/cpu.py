"""numpy's sort on AMD Zen 4: the AVX2 one, six times faster there than the AVX-512 one.

numpy sorts with x86-simd-sort, its AVX-512 version on every CPU that has AVX-512. That
version stores each partition step with ``vpcompressd`` to memory, an instruction AMD's Zen 4
cores run in microcode (AMD's Zen 4 software optimization guide, section 2.11.2: "avoid the
memory destination form of COMPRESS instructions"; numpy/x86-simd-sort issue 6). On such a
core (this project's 2-core machine, an EPYC of family 25) ``np.sort`` of 15.6 M float32
scores takes 0.65 s with AVX-512 and 0.10 s with the AVX2 version, which numpy uses when
its AVX-512 targets are turned off by ``NPY_DISABLE_CPU_FEATURES`` (read once, when numpy
is first imported). Zen 5 (family 26) runs the instruction at full speed; Intel's AVX-512
cores are what the AVX-512 version was written for.

:func:`avoid_slow_numpy_sort` sets that variable for facebench's command line (and the
processes it starts) on a Zen 4 core with AVX-512, before numpy is imported, unless the
user has set it, or has set ``FACEBENCH_NUMPY_AVX512=1``. Sorting is exact either way, and
numpy's element-wise arithmetic is IEEE-exact on both targets: no score, count or
rate changes (numpy's own kernels with a vector-width-dependent summation order, such as
``einsum``, can differ in the last bit, as they do between any two CPUs). Standard library
only: this runs before numpy exists in the process.

:func:`short_blas_spin` sets ``OPENBLAS_THREAD_TIMEOUT`` (unless set) so that OpenBLAS's
worker threads wait for the next product only briefly (2**16 cycles, tens of
microseconds) before they sleep, instead of OpenBLAS's default 2**28 cycles (about 0.1 s):
between the 1:1 matrix products of IJB-C the scores are read off in two threads, and a
spinning BLAS thread takes a core from them (7.7 % of the run's CPU time). BLAS results
do not depend on it. :func:`before_numpy` applies both.
"""

from __future__ import annotations

import importlib.metadata
import os
import sys
from collections.abc import Mapping, MutableMapping
from pathlib import Path

NUMPY_FLAG = "NPY_DISABLE_CPU_FEATURES"
OPT_OUT = "FACEBENCH_NUMPY_AVX512"
"""``FACEBENCH_NUMPY_AVX512=1`` keeps numpy's AVX-512 targets on a Zen 4 core."""
AVX512_TARGETS = "X86_V4 AVX512_ICL AVX512_SPR"
"""numpy >= 2.4's AVX-512 dispatch targets (older releases name them otherwise: they are
left alone)."""
ZEN4_FAMILY = 25
CPUINFO = Path("/proc/cpuinfo")
BLAS_SPIN = "OPENBLAS_THREAD_TIMEOUT"
BLAS_SPIN_EXPONENT = "16"
"""OpenBLAS's threads spin 2**16 cycles after a product before they sleep."""


def zen4_with_avx512(cpuinfo: str) -> bool:
    """Whether the first processor of a ``/proc/cpuinfo`` text is an AMD family-25 (Zen 3
    or Zen 4) core with AVX-512 (only Zen 4 has it)."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor's block only
            continue
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return (
        fields.get("vendor_id") == "AuthenticAMD"
        and fields.get("cpu family") == str(ZEN4_FAMILY)
        and "avx512f" in fields.get("flags", "").split()
    )


def _numpy_release(version: str) -> tuple[int, int]:
    """``(major, minor)`` of a version string (``(0, 0)`` when it does not parse)."""
    parts = version.split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return (0, 0)


def avoid_slow_numpy_sort(
    environ: MutableMapping[str, str] | None = None,
    modules: Mapping[str, object] | None = None,
    cpuinfo: str | None = None,
    numpy_version: str | None = None,
) -> str | None:
    """Turn numpy's AVX-512 targets off on a Zen 4 core (module docstring).

    Returns the value given to ``NPY_DISABLE_CPU_FEATURES``, or None when nothing was set:
    numpy already imported (too late to matter), the variable or ``FACEBENCH_NUMPY_AVX512=1``
    already set, numpy older than 2.4, or not a Zen 4 core with AVX-512 (or no
    ``/proc/cpuinfo``). The arguments stand in for the process's own, for tests.
    """
    env = os.environ if environ is None else environ
    loaded = sys.modules if modules is None else modules
    if "numpy" in loaded or NUMPY_FLAG in env or env.get(OPT_OUT) == "1":
        return None
    if numpy_version is None:
        try:
            numpy_version = importlib.metadata.version("numpy")
        except importlib.metadata.PackageNotFoundError:
            return None
    if _numpy_release(numpy_version) < (2, 4):
        return None
    if cpuinfo is None:
        try:
            cpuinfo = CPUINFO.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
    if not zen4_with_avx512(cpuinfo):
        return None
    env[NUMPY_FLAG] = AVX512_TARGETS
    return AVX512_TARGETS


def short_blas_spin(
    environ: MutableMapping[str, str] | None = None, modules: Mapping[str, object] | None = None
) -> str | None:
    """Set ``OPENBLAS_THREAD_TIMEOUT`` (module docstring) unless it is set or numpy (which
    loads OpenBLAS, which reads it once) is already imported; returns the value set."""
    env = os.environ if environ is None else environ
    loaded = sys.modules if modules is None else modules
    if "numpy" in loaded or BLAS_SPIN in env:
        return None
    env[BLAS_SPIN] = BLAS_SPIN_EXPONENT
    return BLAS_SPIN_EXPONENT


def before_numpy() -> None:
    """What the command line sets before numpy is imported: :func:`avoid_slow_numpy_sort`
    and :func:`short_blas_spin`."""
    avoid_slow_numpy_sort()
    short_blas_spin()
