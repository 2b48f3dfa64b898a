"""Atomic output files: written under a temporary name beside the target, renamed into place.

A crash or an error never leaves a half-written file under the final name, and an existing
file is only replaced when the caller says so (``--overwrite``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from facebench.errors import OutputExistsError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_writable(path: str | os.PathLike[str], overwrite: bool) -> Path:
    """Raise :class:`OutputExistsError` if ``path`` exists and ``overwrite`` is false."""
    target = Path(path)
    if target.exists() and not overwrite:
        raise OutputExistsError(
            f"{target}: the output exists; pass --overwrite to replace it or choose another path"
        )
    return target


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto ``path`` on success.

    On any exception the temporary file is removed and the target is left untouched.
    """
    target = check_writable(path, overwrite)
    folder = target.parent if str(target.parent) else Path(".")
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    os.close(fd)
    os.chmod(tmp_name, 0o666 & ~_current_umask())  # mkstemp makes 0600; outputs follow umask
    tmp = Path(tmp_name)
    try:
        yield tmp
        if target.exists() and not overwrite:  # appeared while we were writing
            raise OutputExistsError(
                f"{target}: the output appeared while writing; pass --overwrite to replace it"
            )
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike[str], text: str, overwrite: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path, overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
    return Path(path)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of a file's bytes, streamed in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
