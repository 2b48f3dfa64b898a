"""Shared test support: the fuzz tests' hypothesis profiles, file mutations and oracle.

Profiles. ``make test`` runs the fuzz tests (``tests/test_fuzz_*.py``) with ``fuzz-bounded``:
a fixed, derandomized set of examples per target, so that the suite is repeatable and
fast. ``FACEBENCH_FUZZ=long`` selects ``fuzz-long`` (random examples, many more) for
``make fuzz``; ``FACEBENCH_FUZZ_EXAMPLES=N`` overrides the number of examples per target of
either. Only the fuzz tests use them (they decorate themselves with :data:`FUZZ`); other
hypothesis tests keep their own settings.

Mutations. :func:`mutated` starts from a valid file in its official format and changes it
the ways real files go wrong: CRLF line ends, a byte-order mark, truncation, deleted,
inserted or flipped bytes, duplicated, dropped or swapped lines, blank lines, fields
replaced by hostile tokens (huge numbers, NaN/inf, non-ASCII digits, NUL, non-UTF-8 bytes,
paths that leave the dataset root) or swapped, an empty file.

Oracle. :func:`parse_or_error` runs a parser under a per-example :func:`deadline`: the
parser must return or raise :class:`facebench.errors.FacebenchError` with a one-line
message; any other exception, or no answer within the deadline, fails the test.

Code that the HDF5 or image C libraries read runs in a forked child (:func:`in_child`), so
that a crash of the library fails one test instead of killing the test process.

Import these from a test module as ``from conftest import FUZZ, mutated, parse_or_error``
(pytest puts ``tests/`` on ``sys.path``).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import signal
import threading
import traceback
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from facebench.errors import FacebenchError

_SLOW_IS_FINE = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

settings.register_profile(
    "fuzz-bounded",
    max_examples=100,
    deadline=None,  # hangs are caught by `deadline` below, not by timing noise
    derandomize=True,
    suppress_health_check=_SLOW_IS_FINE,
)
settings.register_profile(
    "fuzz-long",
    max_examples=3000,
    deadline=None,
    suppress_health_check=_SLOW_IS_FINE,
)

_LONG = os.environ.get("FACEBENCH_FUZZ") == "long"
_EXAMPLES = os.environ.get("FACEBENCH_FUZZ_EXAMPLES")

#: The settings every fuzz test uses (a decorator).
FUZZ = settings(
    settings.get_profile("fuzz-long" if _LONG else "fuzz-bounded"),
    **({"max_examples": int(_EXAMPLES)} if _EXAMPLES else {}),
)

#: The fuzz settings of the targets that fork a child per example (about 50 ms each).
FUZZ_FORKED = settings(FUZZ, max_examples=max(10, FUZZ.max_examples * 2 // 5))

#: Seconds one example may take before it counts as a hang (a loaded 2-core machine).
DEADLINE_S = 20.0 if _LONG else 10.0

#: Longest error message accepted: a message quotes a bad line, not a whole file.
MAX_MESSAGE = 2000

T = TypeVar("T")


class Hang(BaseException):  # a BaseException, so that `except Exception` cannot eat it
    """The code under test gave no answer within the deadline."""


@contextlib.contextmanager
def deadline(seconds: float = DEADLINE_S) -> Iterator[None]:
    """Raise :class:`Hang` in the block after ``seconds`` (SIGALRM; main thread only)."""
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def on_alarm(signum: int, frame: object) -> None:
        raise Hang(f"no answer after {seconds} s: the parser hangs")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def parse_or_error(function: Callable[..., T], *args: Any, **kwargs: Any) -> T | FacebenchError:
    """``function(*args, **kwargs)``, or the :class:`FacebenchError` it raised.

    Any other exception propagates (the test fails with it); so does :class:`Hang`. A
    FacebenchError must carry a non-empty, one-line message of at most
    :data:`MAX_MESSAGE` characters (the CLI prints it as one ``error:`` line).
    """
    with deadline():
        try:
            return function(*args, **kwargs)
        except FacebenchError as err:
            message = str(err)
            assert message.strip(), f"{type(err).__name__} without a message"
            assert "\n" not in message and "\r" not in message, f"multi-line: {message!r}"
            assert len(message) <= MAX_MESSAGE, f"{len(message)} chars: {message[:300]!r}..."
            return err


def in_child(function: Callable[[], object], known: tuple[type[BaseException], ...] = ()) -> str:
    """Run ``function`` in a forked child; return "ok", "error" (a FacebenchError) or "known".

    The child reports over a pipe. An exception of a ``known`` type (a bug with a strict
    xfail reproducer elsewhere) gives "known"; any other exception but FacebenchError, a
    hang or a crash of the child (a signal, e.g. SIGSEGV inside the HDF5 library) is raised
    here as an AssertionError saying what happened.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        os.close(read_end)
        try:
            signal.alarm(int(DEADLINE_S))
            try:
                function()
                outcome: tuple[str, str] = ("ok", "")
            except FacebenchError as err:
                outcome = ("error", str(err))
            except known as err:
                outcome = ("known", repr(err))
            except BaseException:
                outcome = ("crash", traceback.format_exc())
            with os.fdopen(write_end, "wb") as pipe:
                pickle.dump(outcome, pipe)
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        raise AssertionError(f"the process died of {name} (a hang if SIGALRM)")
    kind, detail = pickle.loads(data)
    if kind == "crash":
        raise AssertionError(f"not a FacebenchError:\n{detail}")
    if kind == "error":
        assert detail.strip() and "\n" not in detail, f"not one line: {detail!r}"
    return str(kind)


# --- mutations ------------------------------------------------------------------------------

#: Field values that break parsers: numbers out of range or in odd spellings, NaN/inf,
#: non-ASCII digits, control and non-UTF-8 bytes, quoting, paths that leave the root.
NASTY_TOKENS: tuple[bytes, ...] = (
    b"",
    b" ",
    b"-1",
    b"0",
    b"00",
    b"+7",
    b"-0",
    b"1.0",
    b"1e3",
    b"1e309",
    b"-1e309",
    b"nan",
    b"NaN",
    b"inf",
    b"-inf",
    b"Infinity",
    b"\xd9\xa3",  # ARABIC-INDIC DIGIT THREE: str.isdigit() is True, int() accepts it
    b"\xc2\xb2",  # SUPERSCRIPT TWO: str.isdigit() is True, int() refuses it
    b"\xef\xbc\x95",  # FULLWIDTH DIGIT FIVE
    b"1_000",
    b"0x1f",
    b"9" * 19,
    b"9" * 30,
    b"9" * 5000,
    b"1" * 400 + b".5",
    b"\x00",
    b"\xff\xfe",
    b"\xff",
    b"..",
    b"../../etc/passwd",
    b"/abs/x.jpg",
    b"C:/x.jpg",
    b"a\\b.jpg",
    b"\t",
    b"\r",
    b'"',
    b'"a,b"',
    b'"a\nb"',
    b"#",
    b",",
    b"\xe2\x80\xa8",  # LINE SEPARATOR: str.splitlines() splits on it
    b"\x0b",
    b"\x0c",
    b"\x1c",  # FILE SEPARATOR: str.splitlines() splits on it too
    b"\xc2\x85",  # NEXT LINE (NEL)
    b"TEMPLATE_ID",
    b"true",
)

_FIELD_SPLIT = re.compile(rb"([,\t ]+)")


def _token(draw: st.DrawFn) -> bytes:
    return draw(st.one_of(st.sampled_from(NASTY_TOKENS), st.binary(min_size=0, max_size=8)))


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def _mutate_once(draw: st.DrawFn, data: bytes) -> bytes:
    kind = draw(
        st.sampled_from(
            (
                "truncate",
                "delete",
                "insert",
                "flip",
                "dup_line",
                "drop_line",
                "swap_lines",
                "blank_line",
                "replace_field",
                "swap_fields",
                "empty",
            )
        )
    )
    size = len(data)
    if kind == "empty":
        return b""
    if kind == "truncate":
        return data[: draw(st.integers(0, size))]
    if kind == "delete":
        start = draw(st.integers(0, size))
        return data[:start] + data[start + draw(st.integers(1, 64)) :]
    if kind == "insert":
        at = draw(st.integers(0, size))
        return data[:at] + _token(draw) + data[at:]
    if kind == "flip" and size:
        at = draw(st.integers(0, size - 1))
        return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
    lines = _lines(data)
    i = draw(st.integers(0, len(lines) - 1))
    if kind == "dup_line":
        lines.insert(draw(st.integers(0, len(lines))), lines[i])
    elif kind == "drop_line":
        del lines[i]
    elif kind == "swap_lines":
        j = draw(st.integers(0, len(lines) - 1))
        lines[i], lines[j] = lines[j], lines[i]
    elif kind == "blank_line":
        lines.insert(i, draw(st.sampled_from((b"", b"\r", b" ", b"\t", b",,"))))
    elif kind in ("replace_field", "swap_fields"):
        parts = _FIELD_SPLIT.split(lines[i])
        fields = list(range(0, len(parts), 2))  # separators sit at the odd positions
        # half the time one of the first fields: ids and numbers usually lead a line
        a = draw(st.one_of(st.sampled_from(fields[:3]), st.sampled_from(fields)))
        if kind == "replace_field":
            parts[a] = _token(draw)
        else:
            b = draw(st.sampled_from(fields))
            parts[a], parts[b] = parts[b], parts[a]
        lines[i] = b"".join(parts)
    return b"\n".join(lines)


@st.composite
def mutated(draw: st.DrawFn, base: bytes, max_mutations: int = 4) -> bytes:
    """``base`` (a valid file) in a drawn format variant with 0..``max_mutations`` damages.

    Format variants first (as real copies differ): CRLF line ends, a UTF-8 byte-order mark.
    Then damages (see the module docstring). With 0 damages the file must parse.
    """
    data = base
    if draw(st.booleans()):
        data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if draw(st.booleans()):
        data = b"\xef\xbb\xbf" + data
    for _ in range(draw(st.integers(0, max_mutations))):
        data = _mutate_once(draw, data)
    return data


# --- isolation -------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _private_protocol_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every test parses into a cache of the test session's own, never the user's."""
    monkeypatch.setenv("FACEBENCH_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


def fill_disk_at(monkeypatch: pytest.MonkeyPatch, member: str) -> list[str]:
    """Make the per-pair file's write fail with "No space left on device" at ``member``;
    returns the list of "<member> <thread name>" of every member write tried."""
    import errno
    import threading

    import facebench.report as report_module

    real = report_module._write_member
    tried: list[str] = []

    def full_disk(zf: Any, name: str, value: Any) -> None:
        tried.append(f"{name} {threading.current_thread().name.split('_')[0]}")
        if name == member:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(zf, name, value)

    monkeypatch.setattr(report_module, "_write_member", full_disk)
    return tried
