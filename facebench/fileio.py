"""Atomic output files: written under a temporary name beside the target, renamed into place.

A crash or an error never leaves a half-written file under the final name, and an existing
file is only replaced when the caller says so (``--overwrite``). The temporary file is
flushed to disk (``fsync``) before the rename, and the folder after it, so that a renamed
output holds all its bytes even after a power loss.

An operating-system error while writing (disk full, read-only file system, no permission,
quota exceeded) becomes an :class:`OutputWriteError`: one line that names the output, says
what the error means and what to do. The temporary file is removed and the target is left
as it was, so every file written before stays intact.

A process killed with SIGKILL (or a power loss) cannot remove its temporary file. Each
temporary file's name therefore ends with the host and process id of its writer
(``.lfw.h5.k3x9_a2b.myhost-4711.tmp``), and the next write of the same output removes the
temporary files of that output whose writer, on this host, is no longer running
(:func:`remove_stale_temporaries`). Files of other hosts (a shared file system) and of live
processes are left alone.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from facebench.errors import FacebenchError, InputFormatError, OutputExistsError, located

__all__ = [
    "OutputWriteError",
    "atomic_path",
    "atomic_paths",
    "check_free_space",
    "check_writable",
    "file_sha256",
    "output_errors",
    "process_tag",
    "remove_stale_temporaries",
    "tag_is_stale",
    "write_error",
    "write_text_atomic",
]

#: What to do about an errno, for the messages of :func:`write_error`.
_REMEDIES: dict[int, str] = {
    errno.ENOSPC: "free space on that disk or write the output to another disk",
    getattr(errno, "EDQUOT", -2): "free space in your disk quota or write the output to"
    " another disk",
    errno.EFBIG: "the file system or a resource limit (ulimit -f) caps the file size; write"
    " to another file system or raise the limit",
    errno.EROFS: "that file system is mounted read-only; write the output to a writable folder",
    errno.EACCES: "you may not write in that folder; fix its permissions or write the output"
    " to another folder",
    errno.EPERM: "the operation is not permitted there; fix the folder's permissions or write"
    " the output to another folder",
    errno.ENOTDIR: "a component of the output's folder is a file, not a folder; choose another"
    " output path",
    errno.EISDIR: "the output path is a folder; give a file name",
    errno.EIO: "the disk reported an I/O error; check the disk and write the output elsewhere",
}


class OutputWriteError(FacebenchError, OSError):
    """An output could not be written (disk full, read-only, no permission, ...).

    Both a :class:`~facebench.errors.FacebenchError` (the CLI prints it on one line and exits
    with code 2) and an :class:`OSError` whose ``errno`` and ``filename`` are the failed
    write's errno and the output's path.
    """

    def __init__(self, message: str, code: int | None = None, path: object = None) -> None:
        super().__init__(message)
        self.errno = code
        self.filename = None if path is None else str(path)

    def __str__(self) -> str:
        return str(self.args[0])


def write_error(path: str | os.PathLike[str], err: OSError, what: str = "the output") -> str:
    """The one-line message for an OS error ``err`` met while writing ``path``.

    ``"<path>: cannot write <what>: No space left on device (ENOSPC); free space on that
    disk or write the output to another disk"``.
    """
    code = err.errno
    name = errno.errorcode.get(code, "") if code is not None else ""
    meaning = os.strerror(code) if code is not None else (err.strerror or str(err))
    remedy = _REMEDIES.get(code or -1, "check the folder and the disk, then run again")
    label = f"{meaning} ({name})" if name else meaning
    return f"{path}: cannot write {what}: {label}; {remedy}"


def check_writable(path: str | os.PathLike[str], overwrite: bool) -> Path:
    """Raise :class:`OutputExistsError` if ``path`` exists and ``overwrite`` is false."""
    target = Path(path)
    if target.exists() and not overwrite:
        raise OutputExistsError(
            f"{target}: the output exists; pass --overwrite to replace it or choose another path"
        )
    return target


def check_free_space(path: str | os.PathLike[str], n_bytes: int) -> None:
    """Raise :class:`OutputWriteError` (ENOSPC) when the disk of ``path`` lacks ``n_bytes``.

    A cheap check before a large write (HDF5 cannot always recover from a failed write);
    the write itself still reports any error it meets. ``path`` may not exist yet: its
    nearest existing folder is checked.
    """
    folder = Path(path).absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # cannot tell; the write will say
    if free < n_bytes:
        err = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        raise OutputWriteError(
            write_error(path, err)
            + f" (about {n_bytes / 1e6:,.1f} MB needed, {free / 1e6:,.1f} MB free)",
            errno.ENOSPC,
            path,
        )


def process_tag() -> str:
    """``<host>-<pid>`` of this process: names its temporary files (``[A-Za-z0-9-]`` only)."""
    host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}"


def tag_is_stale(tag: str) -> bool:
    """Whether the writer named by ``tag`` (:func:`process_tag`) is gone: this host, pid dead.

    A tag of another host is never stale (its process cannot be checked from here); an
    unparsable tag is not either.
    """
    host, _, pid = tag.rpartition("-")
    if not pid.isascii() or not pid.isdigit() or host != process_tag().rpartition("-")[0]:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (OSError, OverflowError):  # EPERM: alive, another user's; or not a valid pid
        return False
    return False


#: A temporary file of :func:`atomic_path`: ``.<name>.<random>.<host>-<pid>.tmp``.
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.[A-Za-z0-9_]+\.(?P<tag>[A-Za-z0-9-]+-\d+)\.tmp")


def remove_stale_temporaries(folder: str | os.PathLike[str], name: str | None = None) -> list[Path]:
    """Remove temporary files that killed writers left in ``folder``; return them.

    Only files named as :func:`atomic_path` names them, for the output ``name`` (every
    output when None), whose writer ran on this host and is no longer running. Errors are
    ignored: a leftover that cannot be removed stays, as harmless as before.
    """
    removed: list[Path] = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _TEMPORARY.fullmatch(entry.name)
        if match is None or (name is not None and match["name"] != name):
            continue
        if tag_is_stale(match["tag"]):
            with contextlib.suppress(OSError):
                entry.unlink()
                removed.append(entry)
    return removed


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_path(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (the rename); file systems that cannot are skipped."""
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike[str],
    overwrite: bool = False,
    *,
    durable: bool = True,
    clean_stale: bool = True,
) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``path`` on success.

    The temporary file is named ``.<name>.<random>.<host>-<pid>.tmp``; temporary files of
    the same output left by killed writers are removed first (:func:`remove_stale_temporaries`).
    On any exception the temporary file is removed and the target is left untouched. An
    :class:`OSError` raised while creating the folder or the temporary file, inside the
    ``with`` body, or while flushing and renaming becomes an :class:`OutputWriteError`
    naming ``path`` (other exceptions pass unchanged).

    Parameters
    ----------
    path : path
        The output.
    overwrite : bool
        Replace an existing ``path``; otherwise :class:`OutputExistsError`.
    durable : bool
        ``fsync`` the file before the rename and its folder after it (default).
    clean_stale : bool
        Remove the temporary files that killed writers left for ``path`` first (default).
        A caller writing many files into one folder cleans it once instead.
    """
    target = check_writable(path, overwrite)
    folder = target.parent if str(target.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if clean_stale:
            remove_stale_temporaries(folder, target.name)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=f".{process_tag()}.tmp", dir=folder
        )
    except OSError as err:
        raise OutputWriteError(write_error(target, err), err.errno, target) from err
    tmp = Path(tmp_name)
    try:
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600; outputs follow umask
        yield tmp
        if target.exists() and not overwrite:  # appeared while we were writing
            raise OutputExistsError(
                f"{target}: the output appeared while writing; pass --overwrite to replace it"
            )
        if durable:
            _fsync_path(tmp)
        os.replace(tmp, target)
        if durable:
            _fsync_folder(folder)
    except FacebenchError:
        raise
    except OSError as err:
        raise OutputWriteError(write_error(target, err), err.errno, target) from err
    finally:
        with contextlib.suppress(OSError):  # gone already, or the folder went read-only
            tmp.unlink()


@contextlib.contextmanager
def output_errors(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn an :class:`OSError` raised in the block into an :class:`OutputWriteError` on ``path``.

    :class:`~facebench.errors.FacebenchError` and other exceptions pass unchanged.
    """
    try:
        yield
    except FacebenchError:
        raise
    except OSError as err:
        raise OutputWriteError(write_error(path, err), err.errno, path) from err


@contextlib.contextmanager
def atomic_paths(
    paths: Sequence[str | os.PathLike[str]],
    overwrite: bool | Sequence[bool] = False,
    *,
    durable: bool = True,
) -> Iterator[list[Path]]:
    """Yield temporary paths for outputs that belong together; rename them in order.

    The last output is the set's commit record (a report that refers to the files before
    it). When the block succeeds, every temporary file is flushed; an existing last output
    is removed; then the outputs are renamed into place in the order given, the last one
    last. So an existing last output always goes with the outputs beside it, and a kill
    between two renames leaves outputs without their commit record, which readers and
    re-runs treat as an interrupted write's leftovers. On an error before the renames
    every temporary file is removed and every target is left as it was.

    Parameters
    ----------
    paths : sequence of path
        The outputs; the temporary files are created in this order.
    overwrite : bool or sequence of bool
        Whether each output may replace an existing file (one value for all, or one each).
    durable : bool
        ``fsync`` the files before the renames and their folders after them (default).

    Raises
    ------
    OutputExistsError
        An output exists and may not be replaced (checked first).
    OutputWriteError
        An OSError while creating the temporary files, flushing or renaming (naming the
        output at hand), or inside the block (naming the first output; wrap each output's
        writes in :func:`output_errors` to name it).
    """
    targets = [Path(p) for p in paths]
    allowed = [overwrite] * len(targets) if isinstance(overwrite, bool) else list(overwrite)
    if len(allowed) != len(targets):
        raise ValueError(f"Expected {len(targets)} overwrite flags, but got {len(allowed)}")
    for target, ok in zip(targets, allowed, strict=True):
        check_writable(target, ok)
    temporaries: list[Path] = []
    try:
        for target in targets:
            with output_errors(target):
                folder = target.parent if str(target.parent) else Path(".")
                folder.mkdir(parents=True, exist_ok=True)
                remove_stale_temporaries(folder, target.name)
                fd, name = tempfile.mkstemp(
                    prefix=f".{target.name}.", suffix=f".{process_tag()}.tmp", dir=folder
                )
                temporaries.append(Path(name))
                os.close(fd)
                os.chmod(name, 0o666 & ~_current_umask())
        with output_errors(targets[0]):
            yield list(temporaries)
        for target, tmp, ok in zip(targets, temporaries, allowed, strict=True):
            if target.exists() and not ok:  # appeared while we were writing
                raise OutputExistsError(
                    f"{target}: the output appeared while writing; pass --overwrite to replace it"
                )
            if durable:
                with output_errors(target):
                    _fsync_path(tmp)
        with output_errors(targets[-1]):
            targets[-1].unlink(missing_ok=True)
        for target, tmp in zip(targets, temporaries, strict=True):
            with output_errors(target):
                os.replace(tmp, target)
        if durable:
            for folder in dict.fromkeys(t.parent if str(t.parent) else Path(".") for t in targets):
                _fsync_folder(folder)
    finally:
        for tmp in temporaries:
            with contextlib.suppress(OSError):
                tmp.unlink()


def write_text_atomic(path: str | os.PathLike[str], text: str, overwrite: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically and durably (see :func:`atomic_path`)."""
    with atomic_path(path, overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of a file's bytes, streamed in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_text_lines(
    path: str | os.PathLike[str],
    what: str,
    error: type[FacebenchError] = InputFormatError,
) -> list[str]:
    """The lines of a UTF-8 text file, as every facebench parser reads its text inputs.

    A UTF-8 byte-order mark is dropped; lines end at LF only (a CR before it is dropped, so
    CRLF files read as LF files; other characters that ``str.splitlines`` would split at
    stay in the line); a final newline ends the last line rather than starting an empty one.

    Raises
    ------
    FacebenchError
        Of type ``error``: no such file, a folder, an unreadable file (naming the errno's
        meaning), or bytes that are not UTF-8 (naming the line, the byte and its offset).
    """
    target = Path(path)
    try:
        raw = target.read_bytes()
    except FileNotFoundError:
        raise error(f"{target}: no such {what}") from None
    except IsADirectoryError:
        raise error(f"{target}: expected a {what}, but got a folder") from None
    except OSError as err:
        raise error(f"{target}: cannot read the {what} ({err.strerror})") from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise error(
            located(
                target,
                line,
                f"expected UTF-8 text, but got the byte 0x{raw[err.start]:02x} (offset"
                f" {err.start}); is this a {what}? Save it as UTF-8",
            )
        ) from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline
    return [line[:-1] if line.endswith("\r") else line for line in lines]
