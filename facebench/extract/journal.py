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
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from facebench.errors import FacebenchError, StoreError
from facebench.fileio import atomic_path, check_writable, write_text_atomic
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
    """
    manifest = job.manifest()
    path = parts / "job.json"
    if path.exists():
        try:
            found = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            found = {}
        differing = sorted(k for k in manifest if found.get(k) != manifest[k])
        if differing:
            if not discard_other:
                raise JournalError(
                    f"{parts}: an unfinished extraction with other {', '.join(differing)} is"
                    " there; run the same command to resume it, or pass --overwrite to"
                    " discard it"
                )
            shutil.rmtree(parts)
    parts.mkdir(parents=True, exist_ok=True)
    for stale in parts.glob(".chunk-*.tmp"):  # a temporary file of a killed run
        stale.unlink(missing_ok=True)
    if not path.exists():
        write_text_atomic(path, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return finished_chunks(parts, job.n_chunks)


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
    with atomic_path(chunk_path(parts, chunk), overwrite=True) as tmp:
        tmp.write_bytes(buffer.getvalue())


def assemble(
    parts: str | Path,
    output: str | Path,
    *,
    compression: str | None = None,
    overwrite: bool = False,
    remove_parts: bool = True,
) -> StoreInfo:
    """Join the chunks of a work folder into one store, in item order.

    Raises
    ------
    JournalError
        A missing manifest or chunk (naming the first missing chunk numbers), or a chunk
        that does not match the manifest.
    """
    parts, output = Path(parts), Path(output)
    check_writable(output, overwrite)
    try:
        manifest = json.loads((parts / "job.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise JournalError(
            f"{parts}: Expected an extraction work folder with job.json, but got {err}"
        ) from None
    n_chunks = -(-int(manifest["n_items"]) // int(manifest["chunk_size"]))
    missing = sorted(set(range(n_chunks)) - finished_chunks(parts, n_chunks))
    if missing:
        raise JournalError(
            f"{parts}: {len(missing)} of {n_chunks} chunks are not finished (first:"
            f" {', '.join(map(str, missing[:5]))}); run the extraction again to finish them"
            " (with torchrun and no shared file system, copy every rank's chunk files here)"
        )
    item_ids: list[str] = []
    ids: list[str] = []
    feats: list[npt.NDArray[np.float32]] = []
    flips: list[npt.NDArray[np.float32]] = []
    skipped: list[tuple[str, str]] = []
    for chunk in range(n_chunks):
        try:
            with np.load(chunk_path(parts, chunk), allow_pickle=False) as data:
                item_ids.extend(data["item_ids"].tolist())
                ids.extend(data["ids"].tolist())
                feats.append(data["features"])
                if manifest["flip"] and data["ids"].size:
                    flips.append(data["features_flip"])
                skipped.extend(
                    zip(data["skipped_ids"].tolist(), data["skipped_reasons"].tolist(), strict=True)
                )
        except (OSError, KeyError, ValueError) as err:
            raise JournalError(
                f"{chunk_path(parts, chunk)}: damaged chunk ({err}); delete it and run the"
                " extraction again to recompute it"
            ) from None
    digest = hashlib.sha256("\n".join(item_ids).encode("utf-8")).hexdigest()
    if digest != manifest["items_sha256"]:
        raise JournalError(
            f"{parts}: the chunks do not hold the items of job.json (another run's chunks are"
            " mixed in); delete the folder and extract again"
        )
    if not ids:
        raise JournalError(f"{parts}: every item was skipped; nothing to write")
    dim = max(int(f.shape[1]) for f in feats if f.ndim == 2)
    features = np.concatenate([f.reshape(-1, dim) for f in feats])
    unit, norms = normalize_rows(features)
    unit_flip = norms_flip = None
    if manifest["flip"]:
        unit_flip, norms_flip = normalize_rows(np.concatenate([f.reshape(-1, dim) for f in flips]))
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
    if remove_parts:
        shutil.rmtree(parts)
    return info
