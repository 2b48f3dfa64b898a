"""The work folder of an extraction: finished chunks in their own files, assembled at the end.

An HDF5 file killed in the middle of a write can be left unreadable, so extraction never
writes the store incrementally. Items are cut into chunks of ``chunk_size`` consecutive
items (chunk ``c`` holds items ``c * chunk_size`` to ``(c + 1) * chunk_size - 1``, a fixed
partition). Each finished chunk is written to ``<output>.parts/chunk-<c>.npz`` under a
temporary name and renamed into place, so a chunk file is either complete or absent. The
folder also holds ``job.json``, the manifest of the run (items checksum, model, its
checksum, preprocessing, flip, chunk size); a run that finds a folder with the same
manifest resumes it, skipping the finished chunks, and because chunk boundaries and the
batches inside a chunk do not depend on what was done before, the result is identical to
an uninterrupted run's. When every chunk is there, the chunks are assembled into the store
(written atomically, validated) and the folder is removed.

Killed at any point (kill -9), a run leaves only complete files under final names: the
finished chunks, ``job.json``, and the store once it was renamed into place. Temporary
files of killed writers are removed by the next run
(:func:`facebench.fileio.remove_stale_temporaries`), and the folder is removed by renaming
it to a hidden ``.<name>.<host>-<pid>.removing`` first, so that a kill while deleting never
leaves a half-emptied work folder under its name (the next run deletes such a leftover).

Under torchrun every rank writes its chunks (``c % world_size == rank``) into the same
folder; on a shared file system rank 0 assembles them. Without one, copy the chunk files
of every rank into one folder and run ``facebench merge <folder> -o <store>``.

Chunk files are plain ``.npz`` archives (no pickle): ``item_ids`` (every item of the chunk,
in order), ``ids`` (those extracted), ``features``
(float32 raw model outputs), optionally ``features_flip``, and ``skipped_ids`` /
``skipped_reasons`` (unicode).
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from facebench.errors import FacebenchError, StoreError
from facebench.fileio import (
    OutputWriteError,
    atomic_path,
    check_free_space,
    check_writable,
    process_tag,
    remove_stale_temporaries,
    tag_is_stale,
    write_error,
    write_text_atomic,
)
from facebench.store import StoreInfo, create_store, normalize_rows

JOB_VERSION = 1
_CHUNK_NAME = re.compile(r"chunk-(\d{6,})\.npz")


class JournalError(FacebenchError):
    """A work folder cannot be used (another run's, incomplete, damaged)."""


def parts_dir_for(output: str | Path) -> Path:
    """``x/lfw.h5`` -> ``x/lfw.h5.parts``."""
    output = Path(output)
    return output.with_name(output.name + ".parts")


@dataclass(frozen=True)
class Job:
    """What an extraction computes; two runs with equal manifests produce equal chunks."""

    ids: tuple[str, ...]
    chunk_size: int
    model: str
    model_sha256: str
    preprocessing: dict[str, Any]
    flip: bool

    @property
    def n_chunks(self) -> int:
        """Number of chunks (the last may be shorter)."""
        return -(-len(self.ids) // self.chunk_size)

    def chunk_slice(self, chunk: int) -> slice:
        """The item positions of ``chunk``."""
        return slice(chunk * self.chunk_size, min((chunk + 1) * self.chunk_size, len(self.ids)))

    def manifest(self) -> dict[str, Any]:
        """The JSON manifest written to ``job.json``."""
        digest = hashlib.sha256("\n".join(self.ids).encode("utf-8")).hexdigest()
        return {
            "job_version": JOB_VERSION,
            "n_items": len(self.ids),
            "items_sha256": digest,
            "chunk_size": self.chunk_size,
            "model": self.model,
            "model_sha256": self.model_sha256,
            "preprocessing": self.preprocessing,
            "flip": self.flip,
        }


def prepare_parts(parts: Path, job: Job, *, discard_other: bool) -> set[int]:
    """Create or reopen the work folder; return the finished chunk numbers.

    Raises
    ------
    JournalError
        When the folder belongs to a run with other inputs or options and ``discard_other``
        is false.
    OutputWriteError
        When the folder or its manifest cannot be written (read-only, disk full, ...).
    """
    manifest = job.manifest()
    path = parts / "job.json"
    if path.exists():
        try:
            found = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            found = {}
        if not isinstance(found, dict):
            found = {}
        differing = sorted(k for k in manifest if found.get(k) != manifest[k])
        if differing:
            if not discard_other:
                raise JournalError(
                    f"{parts}: an unfinished extraction with other {', '.join(differing)} is"
                    " there; run the same command to resume it, or pass --overwrite to"
                    " discard it"
                )
            _remove_folder(parts, "discard the other run's work folder")
    _remove_stale_trash(parts)
    try:
        parts.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputWriteError(
            write_error(parts, err, "the extraction's work folder"), err.errno, parts
        ) from err
    # Temporary files of killed runs (a chunk or job.json being written); those of a live
    # process, another rank's, are kept.
    remove_stale_temporaries(parts)
    if not path.exists():
        write_text_atomic(path, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return finished_chunks(parts, job.n_chunks)


def _trash_name(folder: Path) -> Path:
    """Where ``folder`` goes before it is deleted: ``.<name>.<host>-<pid>.removing``."""
    return folder.with_name(f".{folder.name}.{process_tag()}.removing")


def _remove_stale_trash(folder: Path) -> None:
    """Delete what killed runs left of ``folder`` while removing it (see :func:`_discard`)."""
    pattern = re.compile(rf"\.{re.escape(folder.name)}\.(?P<tag>[A-Za-z0-9-]+-\d+)\.removing")
    try:
        entries = list(folder.parent.iterdir())
    except OSError:
        return
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match and tag_is_stale(match["tag"]):
            shutil.rmtree(entry, ignore_errors=True)


def _discard(folder: Path) -> Path:
    """Remove ``folder`` whole: rename it away (one atomic step), then delete it.

    A kill while deleting thus never leaves a half-emptied folder under its name, only a
    hidden ``.<name>.<host>-<pid>.removing`` folder that the next run deletes. Returns the
    folder to delete by hand when the deletion fails (OSError).
    """
    trash = _trash_name(folder)
    try:
        os.replace(folder, trash)
    except OSError:
        trash = folder  # cannot rename: delete in place
    try:
        shutil.rmtree(trash)
    except OSError as err:
        err.filename = str(trash)
        raise
    return trash


def _remove_folder(folder: Path, what: str) -> None:
    try:
        _discard(folder)
    except OSError as err:
        raise OutputWriteError(
            f"{folder}: cannot {what}: {os.strerror(err.errno) if err.errno else err}; delete"
            f" {err.filename or folder} by hand",
            err.errno,
            folder,
        ) from err


def finished_chunks(parts: Path, n_chunks: int) -> set[int]:
    """Chunk numbers whose files exist in ``parts`` (a file is complete or absent)."""
    found = set()
    for entry in parts.iterdir():
        match = _CHUNK_NAME.fullmatch(entry.name)
        if match and int(match.group(1)) < n_chunks:
            found.add(int(match.group(1)))
    return found


def chunk_path(parts: Path, chunk: int) -> Path:
    """The file of chunk number ``chunk``."""
    return parts / f"chunk-{chunk:06d}.npz"


def write_chunk(
    parts: Path,
    chunk: int,
    item_ids: list[str],
    ids: list[str],
    features: npt.NDArray[np.float32],
    features_flip: npt.NDArray[np.float32] | None,
    skipped: list[tuple[str, str]],
) -> None:
    """Write one finished chunk atomically, after checking that every row normalizes.

    ``item_ids`` are all the chunk's items in order; ``ids`` those with features (the
    others are in ``skipped`` with their reasons).
    """
    for name, values in (("features", features), ("features_flip", features_flip)):
        if values is None or not len(values):
            continue
        try:
            normalize_rows(values, source=name)
        except StoreError:
            norms = np.linalg.norm(values.astype(np.float64), axis=1)
            row = int(np.flatnonzero(~np.isfinite(norms) | (norms == 0))[0])
            raise StoreError(
                f"{ids[row]}: the model gave a feature with a zero or non-finite norm"
                f" ({name}); check the image and the model"
            ) from None
    arrays: dict[str, npt.NDArray[Any]] = {
        "item_ids": np.asarray(item_ids, dtype=str),
        "ids": np.asarray(ids, dtype=str),
        "features": features,
        "skipped_ids": np.asarray([i for i, _ in skipped], dtype=str),
        "skipped_reasons": np.asarray([r for _, r in skipped], dtype=str),
    }
    if features_flip is not None:
        arrays["features_flip"] = features_flip
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    try:
        # prepare_parts cleaned the folder of killed writers' files once for the run
        with atomic_path(chunk_path(parts, chunk), overwrite=True, clean_stale=False) as tmp:
            tmp.write_bytes(buffer.getbuffer())
    except OutputWriteError as err:
        raise OutputWriteError(
            f"{err}; the chunks finished before are kept in {parts} and the same command"
            " resumes from them",
            err.errno,
            err.filename,
        ) from err


_MANIFEST_TYPES: dict[str, type | tuple[type, ...]] = {
    "n_items": int,
    "chunk_size": int,
    "items_sha256": str,
    "model": str,
    "model_sha256": str,
    "preprocessing": dict,
    "flip": bool,
}


def read_manifest(parts: Path) -> dict[str, Any]:
    """The ``job.json`` of a work folder, checked for the entries :func:`assemble` uses.

    Raises
    ------
    JournalError
        No readable manifest, not JSON, or an entry missing or of the wrong type.
    """
    path = parts / "job.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise JournalError(
            f"{parts}: Expected an extraction work folder with job.json, but it has none;"
            " give the OUT.h5.parts folder of an extraction (job.json and chunk-*.npz)"
        ) from None
    except OSError as err:
        raise JournalError(
            f"{path}: cannot read the manifest ({err.strerror or err}); check its permissions"
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise JournalError(
            f"{path}: Expected the JSON manifest of an extraction, but got {err}; the work"
            " folder is damaged: delete it and extract again"
        ) from None
    problems = [] if isinstance(manifest, dict) else [f"a {type(manifest).__name__}"]
    for key, kind in _MANIFEST_TYPES.items() if not problems else ():
        value = manifest.get(key)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            problems.append(f"{key}={value!r}")
    if not problems and (manifest["n_items"] < 0 or manifest["chunk_size"] < 1):
        problems.append(f"n_items={manifest['n_items']}, chunk_size={manifest['chunk_size']}")
    if problems:
        raise JournalError(
            f"{path}: Expected the manifest of an extraction (n_items, chunk_size, model, ...),"
            f" but got {', '.join(problems)}; the work folder is damaged: delete it and extract"
            " again"
        )
    return manifest


@dataclass(frozen=True)
class _Chunk:
    item_ids: list[str]
    ids: list[str]
    features: npt.NDArray[Any]
    features_flip: npt.NDArray[Any] | None
    skipped: list[tuple[str, str]]


def _read_chunk(path: Path, flip: bool) -> _Chunk:
    """One chunk file, its arrays checked against each other (JournalError if damaged)."""

    def damaged(reason: object) -> JournalError:
        text = " ".join(str(reason).split())  # one line, whatever the library said
        text = text if len(text) <= 200 else text[:200] + "..."
        return JournalError(
            f"{path}: damaged chunk ({text}); delete it and run the extraction again to"
            " recompute it"
        )

    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except OSError as err:
        if err.errno is None:  # numpy's own OSError: not an array file
            raise damaged(f"{type(err).__name__}: {err}") from None
        raise JournalError(
            f"{path}: cannot read the chunk ({err.strerror or err}); check its permissions"
        ) from None
    except Exception as err:  # zipfile, zlib, tokenize, numpy, MemoryError (a huge shape): all
        # are a damaged file's, and the same remedy holds
        raise damaged(f"{type(err).__name__}: {err}") from None
    names = ["item_ids", "ids", "features", "skipped_ids", "skipped_reasons"]
    missing = [name for name in names if name not in arrays]
    if missing:
        raise damaged(f"no {', '.join(missing)}")
    texts = {n: arrays[n] for n in ("item_ids", "ids", "skipped_ids", "skipped_reasons")}
    if any(a.ndim != 1 or (a.size and a.dtype.kind != "U") for a in texts.values()):
        raise damaged("the id lists are not 1-D text arrays")
    ids = arrays["ids"].tolist()
    features = arrays["features"]
    flips = arrays.get("features_flip")
    n_rows = len(ids)
    if features.dtype.kind != "f" or features.ndim != 2 or features.shape[0] != n_rows:
        raise damaged(f"features {features.dtype} {features.shape} for {n_rows} ids")
    if (
        flip
        and n_rows
        and (flips is None or flips.dtype.kind != "f" or flips.shape != features.shape)
    ):
        raise damaged("features_flip missing or not of the features' shape")
    if texts["skipped_ids"].shape != texts["skipped_reasons"].shape:
        raise damaged("skipped_ids and skipped_reasons differ in length")
    reasons = texts["skipped_reasons"].tolist()
    skipped = list(zip(texts["skipped_ids"].tolist(), reasons, strict=True))
    return _Chunk(arrays["item_ids"].tolist(), ids, features, flips, skipped)


def assemble(
    parts: str | Path,
    output: str | Path,
    *,
    compression: str | None = None,
    overwrite: bool = False,
    remove_parts: bool = True,
    log: Callable[[str], None] = lambda message: print(message, file=sys.stderr),
) -> StoreInfo:
    """Join the chunks of a work folder into one store, in item order.

    The work folder is removed once the store is written (unless ``remove_parts`` is
    false); when it cannot be removed, ``log`` says so and the store stands.

    Raises
    ------
    JournalError
        A missing or damaged manifest or chunk (naming the first missing chunk numbers), or
        a chunk that does not match the manifest.
    OutputWriteError
        The store cannot be written (disk full, read-only, ...); the chunks are kept.
    """
    parts, output = Path(parts), Path(output)
    check_writable(output, overwrite)
    _remove_stale_trash(parts)
    manifest = read_manifest(parts)
    n_chunks = -(-manifest["n_items"] // manifest["chunk_size"])
    finished = finished_chunks(parts, n_chunks)
    if len(finished) < n_chunks:  # the first missing ones, without listing 10**18 numbers
        missing = itertools.islice((c for c in range(n_chunks) if c not in finished), 5)
        raise JournalError(
            f"{parts}: {n_chunks - len(finished)} of {n_chunks} chunks are not finished (first:"
            f" {', '.join(map(str, missing))}); run the extraction again to finish them"
            " (with torchrun and no shared file system, copy every rank's chunk files here)"
        )
    item_ids: list[str] = []
    ids: list[str] = []
    feats: list[npt.NDArray[Any]] = []
    flips: list[npt.NDArray[Any]] = []
    skipped: list[tuple[str, str]] = []
    for number in range(n_chunks):
        chunk = _read_chunk(chunk_path(parts, number), manifest["flip"])
        item_ids.extend(chunk.item_ids)
        ids.extend(chunk.ids)
        skipped.extend(chunk.skipped)
        if chunk.ids:
            feats.append(chunk.features)
            if chunk.features_flip is not None and manifest["flip"]:
                flips.append(chunk.features_flip)
    digest = hashlib.sha256("\n".join(item_ids).encode("utf-8")).hexdigest()
    if digest != manifest["items_sha256"]:
        raise JournalError(
            f"{parts}: the chunks do not hold the items of job.json (another run's chunks are"
            " mixed in); delete the folder and extract again"
        )
    if not ids:
        raise JournalError(f"{parts}: every item was skipped; nothing to write")
    dims = sorted({int(f.shape[1]) for f in feats})
    if len(dims) != 1:
        raise JournalError(
            f"{parts}: Expected one feature length in every chunk, but got {dims}; another"
            " model's chunks are mixed in: delete the folder and extract again"
        )
    unit, norms = normalize_rows(np.concatenate(feats), source=str(parts))
    unit_flip = norms_flip = None
    if manifest["flip"]:
        unit_flip, norms_flip = normalize_rows(np.concatenate(flips), source=str(parts))
    try:
        # HDF5 cannot always recover from a write the disk refuses: check the space first
        arrays = (unit, norms, unit_flip, norms_flip)
        n_bytes = sum(a.nbytes for a in arrays if a is not None) + sum(len(i) + 16 for i in ids)
        check_free_space(output, n_bytes + (1 << 20))
        info = create_store(
            output,
            ids,
            unit,
            norms,
            features_flip=unit_flip,
            norms_flip=norms_flip,
            model=manifest["model"],
            model_sha256=manifest["model_sha256"],
            preprocessing={**manifest["preprocessing"], "flip": manifest["flip"]},
            compression=compression,
            overwrite=overwrite,
            skipped=skipped,
        )
    except OutputWriteError as err:
        raise OutputWriteError(
            f"{err}; every chunk is kept in {parts}: run the same command again (or"
            f" `facebench merge {parts} -o {output}`) to write the store",
            err.errno,
            err.filename,
        ) from err
    if remove_parts:
        try:
            _discard(parts)
        except OSError as err:
            where = parts if err.filename in (None, str(parts)) else f"{parts} (now {err.filename})"
            log(
                f"facebench: wrote {output}, but could not remove the work folder {where}"
                f" ({os.strerror(err.errno) if err.errno else err}); delete it by hand"
            )
    return info
