"""Running a model over items: batches, worker processes, devices, precision, progress.

The loop is organized by chunks (:mod:`facebench.extract.journal`): batches never cross a
chunk boundary, so a chunk's batches are the same whatever was done before (resume) and
whichever rank computes it (torchrun). With ``flip`` the mirrored images travel in the same
batch as the originals.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from facebench.errors import FacebenchError
from facebench.extract import journal
from facebench.extract.preprocess import ImageError, Preprocessing, load_item
from facebench.extract.sources import Item
from facebench.models.loaders import FeatureModel
from facebench.precision import Float32Mode
from facebench.store import StoreInfo

#: ``--precision``: float32 arithmetic (IEEE; TF32 on an NVIDIA GPU) or autocast to a dtype.
PRECISIONS: dict[str, str | torch.dtype] = {
    "fp32": "ieee",
    "tf32": "tf32",
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}
DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class ExtractOptions:
    """How to run an extraction (none of these change a feature, except ``precision``).

    Attributes
    ----------
    batch_size : int
        Images per forward pass (doubled on the device with ``flip``).
    workers : int
        DataLoader worker processes decoding and preprocessing images (0: in the main
        process).
    device : str
        ``auto`` (cuda, then mps, then cpu), ``cpu``, ``cuda`` or ``mps``.
    precision : str
        ``fp32`` (IEEE float32 on every device); ``tf32`` (float32 with TF32 products
        and convolutions, NVIDIA GPUs only); or ``fp16``/``bf16`` autocast on a GPU
        (``bf16`` also on the CPU).
    flip : bool
        Also extract the horizontally mirrored image.
    chunk_size : int
        Items per chunk file (the unit of resumption).
    skip_bad : bool
        Record unreadable images as skipped instead of stopping the run.
    compression : str or None
        Store compression (None, "lzf", "gzip").
    overwrite : bool
        Replace an existing store (and discard another run's unfinished work folder).
    progress : bool
        Show a progress bar on stderr.
    max_image_pixels : int or None
        The largest image (width x height) decoded; a larger one is a bad image (the
        decompression-bomb guard). None: Pillow's default, ``PIL.Image.MAX_IMAGE_PIXELS``.
    """

    batch_size: int = 64
    workers: int = 2
    device: str = "auto"
    precision: str = "fp32"
    flip: bool = False
    chunk_size: int = 1024
    skip_bad: bool = False
    compression: str | None = None
    overwrite: bool = False
    progress: bool = True
    max_image_pixels: int | None = None


@dataclass
class Ranks:
    """The process group an extraction runs in (a single process by default)."""

    rank: int = 0
    world_size: int = 1
    barrier: Callable[[], None] = field(default=lambda: None)


def resolve_device(name: str) -> torch.device:
    """The torch device for ``--device`` (``auto``: cuda, then mps, then cpu)."""
    if name not in DEVICES and not name.startswith("cuda:"):
        raise FacebenchError(f"Expected --device in {list(DEVICES)}, but got {name!r}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FacebenchError("--device cuda was asked for, but torch sees no CUDA device")
    if name == "mps" and not torch.backends.mps.is_available():
        raise FacebenchError("--device mps was asked for, but torch sees no MPS device")
    return torch.device(name)


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    if precision not in PRECISIONS:
        raise FacebenchError(f"Expected --precision in {list(PRECISIONS)}, but got {precision!r}")
    dtype = PRECISIONS[precision]
    if precision == "tf32" and device.type != "cuda":
        raise FacebenchError(
            f"--precision tf32 needs an NVIDIA GPU (Ampere or later), but the device is"
            f" {device.type}; use fp32 (or bf16)"
        )
    if isinstance(dtype, str):  # fp32: IEEE, though cuDNN's convolutions default to TF32
        return Float32Mode(device.type, dtype)
    if device.type == "cpu" and dtype is torch.float16:
        raise FacebenchError("--precision fp16 needs a GPU; on the CPU use fp32 or bf16")
    return torch.autocast(device_type=device.type, dtype=dtype)


class _Images(Dataset[tuple[int, npt.NDArray[np.float32] | None, str]]):
    """Item i -> (i, preprocessed (3, H, W) float32 array, "") or (i, None, reason)."""

    def __init__(
        self, items: Sequence[Item], config: Preprocessing, max_pixels: int | None = None
    ) -> None:
        self.items = items
        self.config = config
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[int, npt.NDArray[np.float32] | None, str]:
        try:
            return index, load_item(self.items[index], self.config, self.max_pixels), ""
        except FacebenchError as err:  # ImageError and friends: reported by the main process
            return index, None, str(err)


def _collate(
    batch: list[tuple[int, npt.NDArray[np.float32] | None, str]],
) -> tuple[list[int], torch.Tensor | None, list[tuple[int, str]]]:
    good = [(i, x) for i, x, _ in batch if x is not None]
    errors = [(i, e) for i, x, e in batch if x is None]
    tensor = torch.from_numpy(np.stack([x for _, x in good])) if good else None
    return [i for i, _ in good], tensor, errors


class _ChunkBatches(Sampler[list[int]]):
    """Batches of item positions that never cross a chunk boundary."""

    def __init__(self, job: journal.Job, chunks: Sequence[int], batch_size: int) -> None:
        self.job, self.chunks, self.batch_size = job, list(chunks), batch_size

    def __iter__(self) -> Iterator[list[int]]:
        for chunk in self.chunks:
            span = self.job.chunk_slice(chunk)
            for start in range(span.start, span.stop, self.batch_size):
                yield list(range(start, min(start + self.batch_size, span.stop)))

    def __len__(self) -> int:
        spans = [self.job.chunk_slice(c) for c in self.chunks]
        return sum(-(-(s.stop - s.start) // self.batch_size) for s in spans)


def _progress(enabled: bool, total: int) -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    class Rate(TextColumn):
        def __init__(self) -> None:
            super().__init__("")

        def render(self, task: Any) -> Any:
            from rich.text import Text

            speed = task.finished_speed or task.speed
            return Text(f"{speed:,.0f} img/s" if speed else "… img/s")

    return Progress(
        TextColumn("extract"),
        BarColumn(),
        MofNCompleteColumn(),
        Rate(),
        TimeRemainingColumn(),
        console=Console(file=sys.stderr),
        disable=not enabled or total == 0,
        transient=False,
    )


def run_extraction(
    items: Sequence[Item],
    model: FeatureModel,
    config: Preprocessing,
    output: str | Path,
    options: ExtractOptions,
    *,
    ranks: Ranks | None = None,
    log: Callable[[str], None] = lambda message: print(message, file=sys.stderr),
) -> StoreInfo | None:
    """Extract features of ``items`` into the store ``output`` (resumable).

    Returns
    -------
    StoreInfo or None
        The written store on rank 0; None on the other ranks.

    Raises
    ------
    ImageError
        A bad image without ``skip_bad``: the run stops naming it; finished chunks stay in
        the work folder and the same command resumes.
    """
    ranks = ranks or Ranks()
    output = Path(output)
    device = resolve_device(options.device)
    if model.kind == "onnx" and options.precision in ("fp16", "bf16"):
        raise FacebenchError(
            f"--precision {options.precision} changes nothing for an ONNX model: onnxruntime"
            " computes in the model's own types (an fp16 model runs in fp16 as exported);"
            " use --precision fp32 (or tf32 on an NVIDIA GPU)"
        )
    autocast = _autocast(device, options.precision)
    job = journal.Job(
        ids=tuple(item.id for item in items),
        chunk_size=options.chunk_size,
        model=model.name,
        model_sha256=model.sha256,
        preprocessing={**config.to_dict(), "precision": options.precision},
        flip=options.flip,
    )
    parts = journal.parts_dir_for(output)
    if ranks.rank == 0:
        done = journal.prepare_parts(parts, job, discard_other=options.overwrite)
    ranks.barrier()
    if ranks.rank != 0:
        done = journal.prepare_parts(parts, job, discard_other=False)
    mine = [c for c in range(job.n_chunks) if c % ranks.world_size == ranks.rank]
    pending = [c for c in mine if c not in done]
    if ranks.rank == 0 and len(pending) < len(mine):
        log(f"resuming {parts}: {len(mine) - len(pending)} of {len(mine)} chunks already done")
    model = model.to(device, tf32=options.precision == "tf32")
    loader = DataLoader(
        _Images(items, config, options.max_image_pixels),
        batch_sampler=_ChunkBatches(job, pending, options.batch_size),
        num_workers=options.workers,
        collate_fn=_collate,
        pin_memory=device.type == "cuda",
    )
    chunk_of = {c: job.chunk_slice(c) for c in pending}
    total = sum(s.stop - s.start for s in chunk_of.values())
    current: dict[str, Any] | None = None
    with _progress(options.progress and ranks.rank == 0, total) as bar:
        task = bar.add_task("extract", total=total)
        for indices, tensor, errors in loader:
            if errors and not options.skip_bad:
                index, reason = errors[0]
                raise ImageError(
                    f"{reason} (item {items[index].id}); fix or remove the image, or pass"
                    " --skip-bad to record it as skipped; finished chunks are kept and the same"
                    " command resumes"
                )
            first = (indices or [i for i, _ in errors])[0]
            chunk = first // job.chunk_size
            if current is None or current["chunk"] != chunk:
                current = {"chunk": chunk, "rows": {}, "flip": {}, "skipped": {}}
            for index, reason in errors:
                current["skipped"][index] = reason
            if tensor is not None:
                feats, flips = _forward(model, tensor, device, autocast, options.flip)
                for row, index in enumerate(indices):
                    current["rows"][index] = feats[row]
                    if flips is not None:
                        current["flip"][index] = flips[row]
            bar.advance(task, len(indices) + len(errors))
            span = chunk_of[chunk]
            if len(current["rows"]) + len(current["skipped"]) == span.stop - span.start:
                _write(parts, job, current, options.flip)
                current = None
    ranks.barrier()
    if ranks.rank != 0:
        return None
    return journal.assemble(
        parts, output, compression=options.compression, overwrite=options.overwrite, log=log
    )


def _forward(
    model: FeatureModel,
    batch: torch.Tensor,
    device: torch.device,
    autocast: contextlib.AbstractContextManager[Any],
    flip: bool,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32] | None]:
    x = batch.to(device, non_blocking=True)
    if flip:
        x = torch.cat((x, torch.flip(x, dims=(3,))))
    with torch.inference_mode(), autocast:
        out = model(x)
    feats = out.float().cpu().numpy()
    if not flip:
        return feats, None
    n = batch.shape[0]
    return feats[:n], feats[n:]


def _write(parts: Path, job: journal.Job, current: dict[str, Any], flip: bool) -> None:
    span = job.chunk_slice(current["chunk"])
    rows = sorted(current["rows"])
    journal.write_chunk(
        parts,
        current["chunk"],
        list(job.ids[span]),
        [job.ids[i] for i in rows],
        np.stack([current["rows"][i] for i in rows]) if rows else np.zeros((0, 0), np.float32),
        np.stack([current["flip"][i] for i in rows]) if flip and rows else None,
        [(job.ids[i], current["skipped"][i]) for i in sorted(current["skipped"])],
    )
