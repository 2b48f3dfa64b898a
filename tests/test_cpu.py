"""numpy's AVX-512 targets turned off on AMD Zen 4 (its AVX-512 sort is six times slower
there than the AVX2 one) and OpenBLAS's idle threads told to sleep soon, only before numpy
is imported and only when the user has not chosen."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from facebench import cpu

ROOT = Path(__file__).resolve().parents[1]


def cpuinfo(vendor: str, family: int, flags: str, processors: int = 2) -> str:
    block = (
        f"processor\t: {{n}}\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: 17\n"
        f"model name\t: a cpu\nflags\t\t: {flags}\n"
    )
    return "\n".join(block.format(n=n) for n in range(processors))


ZEN4 = cpuinfo("AuthenticAMD", 25, "fpu sse2 avx2 avx512f avx512dq avx512bw")
ZEN3 = cpuinfo("AuthenticAMD", 25, "fpu sse2 avx2")
ZEN5 = cpuinfo("AuthenticAMD", 26, "fpu sse2 avx2 avx512f avx512dq")
ICELAKE = cpuinfo("GenuineIntel", 6, "fpu sse2 avx2 avx512f avx512dq")


@pytest.mark.parametrize(
    ("text", "expected"),
    [(ZEN4, True), (ZEN3, False), (ZEN5, False), (ICELAKE, False), ("", False)],
)
def test_zen4_with_avx512_is_read_from_the_first_processor(text: str, expected: bool) -> None:
    assert cpu.zen4_with_avx512(text) is expected


def test_only_the_first_processor_block_is_read() -> None:
    first_intel = ICELAKE.split("\n\n")[0] + "\n\n" + ZEN4
    assert cpu.zen4_with_avx512(first_intel) is False


def test_zen4_gets_numpys_avx512_targets_turned_off() -> None:
    env: dict[str, str] = {}
    assert cpu.avoid_slow_numpy_sort(env, {}, ZEN4, "2.4.6") == cpu.AVX512_TARGETS
    assert env == {cpu.NUMPY_FLAG: "X86_V4 AVX512_ICL AVX512_SPR"}


@pytest.mark.parametrize(
    ("env", "modules", "text", "version"),
    [
        ({}, {"numpy": object()}, ZEN4, "2.4.6"),  # numpy already imported: too late
        ({cpu.NUMPY_FLAG: "AVX512_SPR"}, {}, ZEN4, "2.4.6"),  # the user's own choice
        ({cpu.NUMPY_FLAG: ""}, {}, ZEN4, "2.4.6"),
        ({cpu.OPT_OUT: "1"}, {}, ZEN4, "2.4.6"),  # asked to keep AVX-512
        ({}, {}, ZEN4, "2.3.5"),  # older numpy names its targets otherwise
        ({}, {}, ZEN4, "not-a-version"),
        ({}, {}, ZEN3, "2.4.6"),
        ({}, {}, ZEN5, "2.4.6"),
        ({}, {}, ICELAKE, "2.4.6"),
    ],
)
def test_nothing_is_set_otherwise(
    env: dict[str, str], modules: dict[str, object], text: str, version: str
) -> None:
    before = dict(env)
    assert cpu.avoid_slow_numpy_sort(env, modules, text, version) is None
    assert env == before


def test_blas_threads_are_told_to_sleep_soon_unless_the_user_chose() -> None:
    env: dict[str, str] = {}
    assert cpu.short_blas_spin(env, {}) == "16"
    assert env == {"OPENBLAS_THREAD_TIMEOUT": "16"}
    for env, modules in (({cpu.BLAS_SPIN: "28"}, {}), ({}, {"numpy": object()})):
        before = dict(env)
        assert cpu.short_blas_spin(env, modules) is None
        assert env == before


def run_cli_probe(extra_env: dict[str, str]) -> list[str]:
    """Import the command line in a fresh interpreter; report the variables and whether
    numpy dispatches to its AVX-512 targets there."""
    code = (
        "import os, facebench.cli, numpy._core._multiarray_umath as m;"
        f" print(os.environ.get({cpu.NUMPY_FLAG!r}, '-'));"
        " print(m.__cpu_features__.get('X86_V4'));"
        f" print(os.environ.get({cpu.BLAS_SPIN!r}, '-'))"
    )
    unset = (cpu.NUMPY_FLAG, cpu.OPT_OUT, cpu.BLAS_SPIN)
    env = {k: v for k, v in os.environ.items() if k not in unset}
    env.update(extra_env)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT, env=env
    )
    assert out.stderr == ""  # numpy accepts the names: no warning
    return out.stdout.splitlines()


def test_the_command_line_sets_it_before_numpy_on_this_machine() -> None:
    expected = cpu.avoid_slow_numpy_sort({}, {})  # what this machine's CPU and numpy call for
    value, avx512, spin = run_cli_probe({})
    assert spin == "16"
    if expected is None:
        assert value == "-"
    else:
        assert value == expected
        assert avx512 == "False"  # numpy took it: its AVX-512 targets are off


def test_the_users_choice_and_the_opt_out_are_kept() -> None:
    assert run_cli_probe({cpu.NUMPY_FLAG: "AVX512_SPR"})[0] == "AVX512_SPR"
    assert run_cli_probe({cpu.OPT_OUT: "1"})[0] == "-"
    assert run_cli_probe({cpu.BLAS_SPIN: "20"})[2] == "20"
