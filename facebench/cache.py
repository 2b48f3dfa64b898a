"""The on-disk cache: large parsed protocol tables (IJB-B/C's pair files) by content, and
file digests by stat signature (protocol files, a store's ids).

It lives in the engine's lowest layer beside :mod:`facebench.fileio` and imports nothing
else of facebench, so that both ``protocols/`` and :mod:`facebench.store` can use it.

Parsing IJB-C's 15.7 M-line pair file takes about 2 s; loading the parsed columns takes
0.1 s. A table is stored under the sha256 of the file's bytes (which the protocol checksum
needs anyway) and the parser's version, so a changed file can never be answered from the
cache: a different file has a different name. Every value read from the cache is checked
again exactly as a parsed one is (labels, template ids), and a damaged or unreadable cache
file is ignored (parsed again) with a warning. Writes are atomic (a temporary file renamed
into place); a cache folder that cannot be written costs the speed-up only, with a warning.

The sha256 of a large protocol file (IJB-C's pair file: 233 MB, 0.15-0.3 s to hash) is
kept too, by :func:`file_sha256`, under the file's path with its stat signature (device,
inode, size, modification and status-change times in nanoseconds): it is answered only
while the file is the one hashed, unchanged. Any write to a file moves its status-change
time (which no user call can set back), so a changed file is hashed again; a digest is
kept only for a file unchanged while it was hashed and last changed more than
``RACY_SECONDS`` before (a change within the same timestamp tick cannot go unseen).

:func:`kept_digest` and :func:`keep_digest` keep any other sha256 of a file the same way
(``facebench.store``: the digest of a store's ids, so that an unchanged store's 469,375 ids
need not be read again).

Location: ``$FACEBENCH_CACHE_DIR`` if set (the value ``off`` disables the cache), else
``$XDG_CACHE_HOME/facebench`` or ``~/.cache/facebench``; tables go to its ``protocols/``.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

CACHE_ENV = "FACEBENCH_CACHE_DIR"
DIGEST_VERSION = 1
RACY_SECONDS = 2.0
"""A file changed less than this long before it was hashed gets no cached digest."""


def cache_dir() -> Path | None:
    """The folder of cached protocol tables, or None when the cache is off."""
    chosen = os.environ.get(CACHE_ENV)
    if chosen is not None:
        return None if chosen.strip().lower() in ("", "off") else Path(chosen) / "protocols"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "facebench" / "protocols"


def _path(kind: str, version: int, digest: str, suffix: str = ".npy") -> Path | None:
    folder = cache_dir()
    return None if folder is None else folder / f"{kind}-v{version}-{digest}{suffix}"


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def load_table(
    kind: str, version: int, digest: str, n_columns: int
) -> npt.NDArray[np.integer[Any]] | None:
    """The cached integer table (shape ``(n, n_columns)``) of a file with this sha256, read
    into memory, or None (not cached, cache off, or a damaged entry, which is then removed
    with a warning, so that the parse stores a good one)."""
    return _load(kind, version, digest, n_columns, mapped=False)


def load_columns(
    kind: str, version: int, digest: str, n_columns: int
) -> npt.NDArray[np.integer[Any]] | None:
    """The cached integer columns (shape ``(n_columns, n)``) of a file with this sha256 as a
    read-only memory map of the cache file (its pages are the page cache's: nothing is
    copied or allocated; entries are only ever replaced by a rename, never written in
    place, so the mapped bytes stay those checked), or None as :func:`load_table`."""
    return _load(kind, version, digest, n_columns, mapped=True)


def _load(
    kind: str, version: int, digest: str, n_columns: int, *, mapped: bool
) -> npt.NDArray[np.integer[Any]] | None:
    path = _path(kind, version, digest)
    if path is None or not path.is_file():
        return None
    try:
        table = np.load(path, mmap_mode="r" if mapped else None, allow_pickle=False)
    except (OSError, ValueError) as err:
        _warn(f"{path}: ignoring an unreadable protocol cache entry ({err}); parsing the file")
        _remove(path)
        return None
    columns = table.shape[0 if mapped else 1] if table.ndim == 2 else None
    if columns != n_columns or table.dtype.kind not in "iu":
        _warn(f"{path}: ignoring a protocol cache entry of shape {table.shape}; parsing the file")
        del table  # (a map of it) before the file goes
        _remove(path)
        return None
    result: npt.NDArray[np.integer[Any]] = table
    return result


def save_table(kind: str, version: int, digest: str, table: npt.NDArray[Any]) -> None:
    """Store ``table`` for the file with this sha256 (atomically; failures only warn)."""
    path = _path(kind, version, digest)
    if path is None or path.is_file():
        return
    _save_at(path, lambda handle: np.save(handle, table, allow_pickle=False))


def load_text(kind: str, version: int, digest: str) -> str | None:
    """The cached UTF-8 text stored with :func:`save_text`, or None (as :func:`load_table`)."""
    path = _path(kind, version, digest, ".txt")
    if path is None or not path.is_file():
        return None
    try:
        return path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as err:
        _warn(f"{path}: ignoring an unreadable protocol cache entry ({err}); parsing the file")
        return None


def save_text(kind: str, version: int, digest: str, text: str) -> None:
    """Store ``text`` for the file with this sha256 (atomically; failures only warn)."""
    path = _path(kind, version, digest, ".txt")
    if path is None or path.is_file():
        return
    _save_text_at(path, text)


def discard(kind: str, version: int, digest: str) -> None:
    """Remove an entry that failed its checks, so that the next parse stores it afresh."""
    for suffix in (".npy", ".txt"):
        path = _path(kind, version, digest, suffix)
        if path is not None:
            _remove(path)


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as err:
        _warn(f"{path}: cannot remove a damaged protocol cache entry ({err})")


def _signature(status: os.stat_result) -> str:
    return (
        f"{status.st_dev} {status.st_ino} {status.st_size} {status.st_mtime_ns}"
        f" {status.st_ctime_ns}"
    )


def file_sha256(path: Path, compute: Callable[[Path], str]) -> str:
    """The sha256 of the file at ``path``: kept from an earlier ``compute(path)`` while the
    file's stat signature is unchanged (module docstring), else computed (and kept when
    the file did not change while it was hashed and is not racy). With the cache off,
    always computed. ``compute`` raises the file's own read errors."""
    try:
        before = os.stat(path)
    except OSError:
        return compute(path)
    digest = kept_digest("sha256", path, before)
    if digest is not None:
        return digest
    digest = compute(path)
    try:
        after = os.stat(path)
    except OSError:
        return digest
    keep_digest("sha256", path, before, after, digest)
    return digest


def _digest_entry(kind: str, path: Path) -> Path | None:
    folder = cache_dir()
    if folder is None:
        return None
    name = hashlib.sha256(os.fsencode(os.path.realpath(path))).hexdigest()
    return folder / f"{kind}-v{DIGEST_VERSION}-{name}.txt"


def kept_digest(kind: str, path: Path, status: os.stat_result) -> str | None:
    """The sha256 kept under ``kind`` for the file at ``path`` (:func:`keep_digest`) while
    the file's stat signature is ``status``'s; None when none is kept for that signature,
    the entry is damaged, or the cache is off."""
    entry = _digest_entry(kind, path)
    if entry is None:
        return None
    try:
        signature, digest = entry.read_text(encoding="utf-8").split("\n")[:2]
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return digest if signature == _signature(status) and _is_sha256(digest) else None


def keep_digest(
    kind: str, path: Path, before: os.stat_result, after: os.stat_result, digest: str
) -> None:
    """Keep ``digest`` (a sha256 of something of the file at ``path``, computed between the
    stats ``before`` and ``after``) under ``kind``, unless the file changed meanwhile or
    less than ``RACY_SECONDS`` before (module docstring); failures only warn."""
    entry = _digest_entry(kind, path)
    racy = time.time_ns() - after.st_ctime_ns < RACY_SECONDS * 1e9
    if entry is not None and _signature(after) == _signature(before) and not racy:
        _save_text_at(entry, f"{_signature(after)}\n{digest}\n")


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def _save_text_at(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (replacing it); failures only warn."""
    _save_at(path, lambda handle: handle.write(text.encode("utf-8")))


def _save_at(path: Path, write: Callable[[Any], Any]) -> None:
    """``write(handle)`` into a temporary file renamed to ``path``; failures only warn."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                write(handle)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as err:
        _warn(
            f"{path.parent}: cannot write the protocol cache ({err.strerror or err}); set "
            f"{CACHE_ENV} to a writable folder, or to 'off'"
        )
