"""Atomic output files: written under a temporary name beside the target, renamed into place.

A crash or an error never leaves a half-written file under the final name, and an existing
file is only replaced when the caller says so (``--overwrite``). The temporary file is
flushed to disk (``fsync``) before the rename, and the folder after it, so that a renamed
output holds all its bytes even after a power loss.

An operating-system error while writing (disk full, read-only file system, no permission,
quota exceeded) becomes an :class:`OutputWriteError`: one line that names the output, says
what the error means and what to do. The temporary file is removed and the target is left
as it was, so every file written before stays intact.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from facebench.errors import FacebenchError, OutputExistsError

__all__ = [
    "OutputWriteError",
    "atomic_path",
    "check_free_space",
    "check_writable",
    "file_sha256",
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
    path: str | os.PathLike[str], overwrite: bool = False, *, durable: bool = True
) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``path`` on success.

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
    """
    target = check_writable(path, overwrite)
    folder = target.parent if str(target.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
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
