"""The training loop: a registered backbone, a head, softmax cross-entropy; and its checkpoint.

The backbone comes from :data:`facebench.models.registry.ARCHITECTURES`, the head from
:data:`facebench.train.head.HEADS`; the loss is plain cross-entropy on the head's logits
(for L2-softmax that is the paper's loss, Ranjan et al. 2017). The checkpoint holds the
backbone's state_dict under its own key names plus the head's under ``head.``, so
``facebench extract --arch ARCH --weights model.pt`` loads it unchanged (the loader reports
the ``head.*`` keys as unused).

Reproducibility: the seed fixes the initial weights, the shuffling (the DataLoader's own
generator) and the flips; deterministic algorithms are asked for (``warn_only``, as some
CUDA kernels have none). The caller's random state is left as it was.
"""

from __future__ import annotations

import dataclasses
import io
import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from facebench import __version__
from facebench.errors import FacebenchError
from facebench.extract.preprocess import PRESETS, Preprocessing
from facebench.extract.runner import resolve_device
from facebench.fileio import atomic_path, check_writable
from facebench.models.registry import ARCHITECTURES
from facebench.train import OPTIMIZERS, SCHEDULES, alpha_low
from facebench.train.datasets import ImageDataset, TrainingData, load_training_data
from facebench.train.head import DEFAULT_P, HeadConfig, L2Softmax, build_head

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "OPTIMIZERS",
    "SCHEDULES",
    "TrainError",
    "TrainOptions",
    "TrainResult",
    "save_checkpoint",
    "train",
    "train_to_file",
]

CHECKPOINT_FORMAT = "facebench-checkpoint"
CHECKPOINT_VERSION = 1
SGD_MOMENTUM = 0.9

Log = Callable[[str], None]


class TrainError(FacebenchError):
    """Training cannot start or go on (bad options, a diverging loss)."""


def _stderr(message: str) -> None:
    print(f"facebench: {message}", file=sys.stderr)


@dataclass(frozen=True)
class TrainOptions:
    """How to train.

    Attributes
    ----------
    epochs, batch_size : int
        Passes over the training set; images per step.
    lr : float
        The initial learning rate.
    optimizer : str
        ``"sgd"`` (momentum 0.9) or ``"adam"``.
    schedule : str
        One of :data:`SCHEDULES`, applied per step.
    weight_decay : float
        L2 penalty on every parameter except a learned alpha (decay would pull it to 1).
    seed : int
        Fixes the initial weights, the shuffling and the flips.
    device : str
        ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
    workers : int
        DataLoader processes (0: load in the main process).
    flip : bool or None
        Random horizontal flips; None: the data set's default (image trees yes, built-in
        sets no).
    preset : str or None
        Preprocessing preset (:data:`facebench.extract.preprocess.PRESETS`); None: the
        architecture's.
    """

    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.1
    optimizer: str = "sgd"
    schedule: str = "cosine"
    weight_decay: float = 5e-4
    seed: int = 0
    device: str = "auto"
    workers: int = 0
    flip: bool | None = None
    preset: str | None = None

    def __post_init__(self) -> None:
        problems = []
        for key in ("epochs", "batch_size"):
            if getattr(self, key) < 1:
                problems.append(f"{key} >= 1, but got {getattr(self, key)}")
        if self.workers < 0:
            problems.append(f"workers >= 0, but got {self.workers}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            problems.append(f"lr > 0, but got {self.lr}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            problems.append(f"weight_decay >= 0, but got {self.weight_decay}")
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer in {list(OPTIMIZERS)}, but got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            problems.append(f"schedule in {list(SCHEDULES)}, but got {self.schedule!r}")
        if self.preset is not None and self.preset not in PRESETS:
            problems.append(f"preset in {list(PRESETS)}, but got {self.preset!r}")
        if problems:
            raise TrainError("Expected " + "; expected ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """The options in plain Python types."""
        return dataclasses.asdict(self)


@dataclass(eq=False)
class TrainResult:
    """A trained model and what the checkpoint records about it.

    Attributes
    ----------
    history : list of dict
        One dict per epoch: ``epoch`` (from 1), ``loss`` (mean cross-entropy over the
        epoch's images), ``accuracy`` (fraction of them classified right, in training mode,
        as the weights changed), ``feature_norm`` (mean L2 norm of the raw backbone feature,
        before the L2 layer), ``lr`` (at the epoch's first step), ``seconds``, and for
        L2-softmax ``alpha`` (its value at the end of the epoch).
    """

    arch: str
    head_config: HeadConfig
    preprocessing: Preprocessing
    backbone: nn.Module
    head: nn.Module
    classes: tuple[str, ...]
    holdout: tuple[str, ...]
    options: TrainOptions
    source: str
    max_per_class: int | None = None
    history: list[dict[str, float]] = field(default_factory=list)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The backbone's state (its own key names) and the head's (``head.``), on the CPU."""
        state = {key: value.detach().cpu() for key, value in self.backbone.state_dict().items()}
        for key, value in self.head.state_dict().items():
            state[f"head.{key}"] = value.detach().cpu()
        return state

    def checkpoint(self) -> dict[str, Any]:
        """The checkpoint: tensors and plain Python types only (``weights_only`` loads it).

        Keys: ``format`` (``"facebench-checkpoint"``), ``version`` (1), ``state_dict``,
        ``arch``, ``head`` (:meth:`HeadConfig.to_dict`), ``preprocessing``
        (:meth:`Preprocessing.to_dict`), ``classes`` (training class names, label order),
        ``holdout``, ``history``, ``seed``, ``data``, ``max_per_class``, ``options``,
        ``facebench_version``.
        """
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "state_dict": self.state_dict(),
            "arch": self.arch,
            "head": self.head_config.to_dict(),
            "preprocessing": self.preprocessing.to_dict(),
            "classes": list(self.classes),
            "holdout": list(self.holdout),
            "history": [dict(entry) for entry in self.history],
            "seed": self.options.seed,
            "data": self.source,
            "max_per_class": self.max_per_class,
            "options": self.options.to_dict(),
            "facebench_version": __version__,
        }


def _lr_factor(schedule: str, total_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
        if schedule == "step":
            return 0.1 ** ((step >= total_steps // 2) + (step >= (3 * total_steps) // 4))
        return 1.0

    return factor


def _optimizer(
    backbone: nn.Module, head: nn.Module, options: TrainOptions
) -> torch.optim.Optimizer:
    named = [*backbone.named_parameters(), *(("head." + n, p) for n, p in head.named_parameters())]
    decayed = [p for name, p in named if not name.endswith("log_alpha")]
    scale = [p for name, p in named if name.endswith("log_alpha")]
    groups: list[dict[str, Any]] = [{"params": decayed, "weight_decay": options.weight_decay}]
    if scale:
        groups.append({"params": scale, "weight_decay": 0.0})
    if options.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=options.lr, momentum=SGD_MOMENTUM)
    return torch.optim.Adam(groups, lr=options.lr)


@contextmanager
def _reproducible(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch, ask for deterministic algorithms; restore both afterwards."""
    devices = [device.index or 0] if device.type == "cuda" else []
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    was_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(was_deterministic, warn_only=was_warn_only)


def _progress(enabled: bool) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        console=Console(file=sys.stderr),
        disable=not enabled,
    )


def train(
    data: TrainingData,
    arch: str,
    head_config: HeadConfig,
    options: TrainOptions | None = None,
    *,
    progress: bool = False,
    log: Log | None = None,
) -> TrainResult:
    """Train ``arch`` with a head on ``data.train`` by softmax cross-entropy.

    Parameters
    ----------
    data : TrainingData
        From :func:`facebench.train.datasets.load_training_data`.
    arch : str
        A key of :data:`~facebench.models.registry.ARCHITECTURES`.
    head_config : HeadConfig
        ``n_classes`` and ``feature_dim`` may be None: they are set from the data and the
        architecture.
    options : TrainOptions, optional
    progress : bool
        Show a progress bar on stderr.
    log : callable, optional
        Receives notes (default: stderr).

    Returns
    -------
    TrainResult
        The backbone and head (in eval mode, on the training device) and the history.

    Raises
    ------
    TrainError
        An unknown architecture, a head that does not fit, or a loss that became NaN or
        infinite (lower the learning rate).
    """
    options = options or TrainOptions()
    emit = log if log is not None else _stderr
    spec = ARCHITECTURES.get(arch)
    if spec is None:
        raise TrainError(
            f"Expected --arch to be one of {', '.join(ARCHITECTURES)}, but got {arch!r}"
        )
    images = data.train
    shaped = head_config.with_shape(len(images.classes), spec.feature_dim)
    preprocessing = PRESETS[options.preset or spec.preset]
    if preprocessing.image_size is not None and preprocessing.image_size != spec.input_size:
        raise TrainError(
            f"Expected a preprocessing preset giving {arch}'s input size {spec.input_size}, but "
            f"{preprocessing.name!r} gives {preprocessing.image_size}; use --preset {spec.preset}"
        )
    _note_alpha(shaped, emit)
    device = resolve_device(options.device)
    flip = images.flip_default if options.flip is None else options.flip
    emit(
        f"training {arch} + {shaped.describe()} on {data.source}: {len(images)} images of "
        f"{len(images.classes)} classes"
        + (f" ({len(data.holdout)} held out)" if data.holdout else "")
        + f", preprocessing {preprocessing.name}, flips {'on' if flip else 'off'}, device {device}"
    )
    with _reproducible(options.seed, device):
        backbone = spec.build().to(device)
        head = build_head(shaped).to(device)
        loader = torch.utils.data.DataLoader(
            ImageDataset(images, preprocessing, flip=flip),
            batch_size=options.batch_size,
            shuffle=True,
            num_workers=options.workers,
            generator=torch.Generator().manual_seed(options.seed),
            # BatchNorm cannot normalize a batch of one image: drop only such a last batch.
            drop_last=len(images) % options.batch_size == 1,
            pin_memory=device.type == "cuda",
            persistent_workers=options.workers > 0,
        )
        optimizer = _optimizer(backbone, head, options)
        total_steps = options.epochs * len(loader)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, _lr_factor(options.schedule, total_steps)
        )
        history: list[dict[str, float]] = []
        with _progress(progress) as bar:
            task = bar.add_task("train", total=total_steps, status="")
            for epoch in range(1, options.epochs + 1):
                bar.update(task, description=f"epoch {epoch}/{options.epochs}")
                entry = _epoch(backbone, head, loader, optimizer, scheduler, device, epoch)
                history.append(entry)
                bar.update(task, advance=len(loader), status=_status(entry))
    return TrainResult(
        arch=arch,
        head_config=shaped,
        preprocessing=preprocessing,
        backbone=backbone.eval(),
        head=head.eval(),
        classes=images.classes,
        holdout=data.holdout,
        options=options,
        source=data.source,
        max_per_class=data.max_per_class,
        history=history,
    )


def _note_alpha(config: HeadConfig, emit: Log) -> None:
    value, n_classes = config.initial_alpha(), config.n_classes
    if value is None or n_classes is None or n_classes <= 2 or config.learned:
        return
    bound = alpha_low(n_classes, DEFAULT_P)
    if value < bound:
        emit(
            f"note: alpha {value:g} is below the paper's lower bound {bound:.2f} for "
            f"{n_classes} classes at p = {DEFAULT_P} (features of norm alpha cannot give the "
            f"right class probability {DEFAULT_P}); see `facebench alpha-bound`"
        )


def _status(entry: dict[str, float]) -> str:
    alpha = f" alpha {entry['alpha']:.3g}" if "alpha" in entry else ""
    return f"loss {entry['loss']:.4f} acc {entry['accuracy']:.3f}{alpha}"


def _epoch(
    backbone: nn.Module,
    head: nn.Module,
    loader: torch.utils.data.DataLoader[tuple[torch.Tensor, int]],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    device: torch.device,
    epoch: int,
) -> dict[str, float]:
    """One pass over ``loader``; returns the epoch's history entry (see :class:`TrainResult`)."""
    backbone.train()
    head.train()
    started = time.perf_counter()
    lr = float(optimizer.param_groups[0]["lr"])
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    norm_sum = torch.zeros((), dtype=torch.float64, device=device)
    n_correct = torch.zeros((), dtype=torch.int64, device=device)
    n_seen = 0
    for step, (inputs, labels) in enumerate(loader, start=1):
        inputs = inputs.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        features = backbone(inputs)
        logits = head(features)
        loss = F.cross_entropy(logits, labels)
        if not bool(torch.isfinite(loss)):
            raise TrainError(
                f"the loss became {float(loss)} at epoch {epoch}, step {step}; training "
                "diverged: lower the learning rate (--lr)"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        with torch.no_grad():
            n_batch = labels.shape[0]
            loss_sum += loss.double() * n_batch
            norm_sum += torch.linalg.vector_norm(features, dim=1).double().sum()
            n_correct += (logits.argmax(dim=1) == labels).sum()
            n_seen += n_batch
    entry = {
        "epoch": epoch,
        "loss": float(loss_sum) / n_seen,
        "accuracy": int(n_correct) / n_seen,
        "feature_norm": float(norm_sum) / n_seen,
        "lr": lr,
        "seconds": time.perf_counter() - started,
    }
    if isinstance(head, L2Softmax):
        entry["alpha"] = float(head.alpha.detach())
    return entry


def save_checkpoint(path: str | Path, result: TrainResult, *, overwrite: bool = False) -> Path:
    """Write ``result.checkpoint()`` with ``torch.save``, atomically.

    The checkpoint is serialized into memory first, then its bytes are written: torch's
    own file writer reports a full disk as a ``RuntimeError``, Python's file writes as an
    ``OSError`` that becomes one clear :class:`~facebench.fileio.OutputWriteError`. In
    memory the archive is also named the same for every output file (torch names it after
    the file), so equal checkpoints are equal byte for byte.

    Raises
    ------
    facebench.errors.OutputExistsError
        ``path`` exists and ``overwrite`` is false.
    facebench.fileio.OutputWriteError
        The file cannot be written (disk full, read-only, ...); a previous file stays.
    """
    with atomic_path(path, overwrite) as tmp:
        buffer = io.BytesIO()
        torch.save(result.checkpoint(), buffer)
        tmp.write_bytes(buffer.getbuffer())
    return Path(path)


def train_to_file(
    data: str | Path,
    output: str | Path,
    arch: str,
    head_config: HeadConfig,
    options: TrainOptions | None = None,
    *,
    holdout: tuple[str, ...] = (),
    data_dir: Path | None = None,
    max_per_class: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
    log: Log | None = None,
) -> TrainResult:
    """Load ``data``, :func:`train`, and :func:`save_checkpoint` to ``output``.

    ``output`` is checked before anything is loaded, so an existing file fails at once.
    See :func:`facebench.train.datasets.load_training_data` for ``holdout``, ``data_dir``
    and ``max_per_class``.
    """
    check_writable(output, overwrite)
    loaded = load_training_data(
        data, holdout=holdout, data_dir=data_dir, max_per_class=max_per_class
    )
    result = train(loaded, arch, head_config, options, progress=progress, log=log)
    save_checkpoint(output, result, overwrite=overwrite)
    return result
