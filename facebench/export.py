"""A trained checkpoint -> a TorchScript or ONNX file that other runtimes load.

The checkpoint is loaded exactly as ``facebench extract --arch ARCH --weights FILE`` loads
it (:func:`facebench.models.load_model`: ``torch.load(weights_only=True)``, the registered
architecture, every parameter checked), in eval mode on the CPU. The exported model maps a
float32 ``N x 3 x H x W`` batch (``N`` free: a dynamic batch axis) to the raw,
un-normalized ``N x D`` feature, like the checkpoint.

``torchscript``
    ``torch.jit.trace`` on a random batch of two images of the input size, saved with
    ``torch.jit.save``; load it with ``torch.jit.load`` or ``facebench extract --model``.
``onnx``
    ``torch.onnx.export`` with the TorchScript-based exporter (``dynamo=False``: offline,
    no onnxscript needed), one input ``input`` (N x 3 x H x W) and one output ``features``
    (N x D), axis 0 of both named ``batch`` and dynamic; run it with onnxruntime or
    ``facebench extract --model model.onnx``.

Every export is checked before it is put in place: the written file is loaded back with
facebench's loaders and run on a random batch of three images (a batch size the trace never
saw), and its features must equal the checkpoint's: the largest absolute difference at
most ``EXPORT_TOLERANCE x max(1, largest |feature|)`` (:func:`allowed_difference`; absolute
for features of magnitude up to 1, relative beyond, as float32 rounding grows with the
values); otherwise nothing is written. An ONNX file is checked when
onnxruntime is installed (the ``onnx`` extra), and the result says when it was not.

This module imports torch only inside its functions.
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from facebench.errors import FacebenchError
from facebench.fileio import atomic_path, check_writable, file_sha256
from facebench.models.registry import ARCHITECTURES

if TYPE_CHECKING:
    import torch

__all__ = [
    "EXPORT_FORMATS",
    "EXPORT_TOLERANCE",
    "ExportError",
    "ExportedFile",
    "allowed_difference",
    "export_checkpoint",
]

EXPORT_FORMATS: dict[str, str] = {
    "torchscript": "torch.jit.trace + torch.jit.save (torch.jit.load, facebench extract --model)",
    "onnx": "torch.onnx.export, dynamic batch axis (onnxruntime, facebench extract --model)",
}
"""Export formats: name -> one-line definition."""

EXPORT_TOLERANCE = 1e-5
"""The difference allowed between exported and checkpoint features (see
:func:`allowed_difference`)."""

TRACE_BATCH = 2
CHECK_BATCH = 3
SEED = 0
INPUT_NAME = "input"
OUTPUT_NAME = "features"

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(f"facebench: {message}", file=sys.stderr)


class ExportError(FacebenchError):
    """A checkpoint cannot be exported, or the export does not reproduce its features."""


@dataclass(frozen=True)
class ExportedFile:
    """One written export.

    Attributes
    ----------
    format : str
        ``"torchscript"`` or ``"onnx"``.
    path : Path
        The file written.
    sha256 : str
        Hex SHA-256 of the file.
    input_size : tuple of int
        (H, W) of the traced input.
    feature_dim : int
        D, the length of the feature.
    max_abs_diff : float or None
        Largest absolute difference between the exported model's features and the
        checkpoint's on a random batch; None when it could not be run (no onnxruntime).
    """

    format: str
    path: Path
    sha256: str
    input_size: tuple[int, int]
    feature_dim: int
    max_abs_diff: float | None


def _checkpoint_module(
    checkpoint: Path, arch: str, log: Log | None, trust_checkpoint: bool
) -> torch.nn.Module:
    """The architecture with the checkpoint's weights, in eval mode on the CPU."""
    import torch

    from facebench.models import load_model

    model = load_model(
        arch=arch, weights=checkpoint, device="cpu", log=log, trust_checkpoint=trust_checkpoint
    )
    module = getattr(model.backend, "module", None)
    if not isinstance(module, torch.nn.Module):  # load_model builds architectures in torch
        raise ExportError(f"{checkpoint}: --arch {arch} did not load as a torch module")
    return module.eval()


def _random_batch(n_images: int, input_size: tuple[int, int], seed: int) -> torch.Tensor:
    import torch

    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n_images, 3, *input_size, generator=generator)


def _write_torchscript(module: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    import torch

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(module, (example,))
    torch.jit.save(traced, str(path))


def _write_onnx(module: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
    import torch

    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notice
        torch.onnx.export(
            module,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes=axes,
            dynamo=False,
        )


_WRITERS: dict[str, Callable[[Any, Any, Path], None]] = {
    "torchscript": _write_torchscript,
    "onnx": _write_onnx,
}


def _onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def allowed_difference(expected: torch.Tensor) -> float:
    """The largest absolute difference an export may show on features ``expected``.

    ``EXPORT_TOLERANCE * max(1, max |expected|)``: 1e-5 absolute for features of magnitude
    up to 1, 1e-5 relative to the largest feature value beyond.
    """
    return EXPORT_TOLERANCE * max(1.0, float(expected.abs().max()))


def _max_abs_diff(path: Path, expected: torch.Tensor, batch: torch.Tensor) -> float:
    """Load ``path`` with facebench's loaders, run ``batch``, compare with ``expected``."""
    from facebench.models import load_model

    got = load_model(model=path, device="cpu")(batch)
    if tuple(got.shape) != tuple(expected.shape):
        raise ExportError(
            f"{path.name}: Expected exported features of shape {tuple(expected.shape)}, but"
            f" got {tuple(got.shape)}"
        )
    return float((got.double() - expected.double()).abs().max())


def _export_one(
    fmt: str,
    target: Path,
    module: torch.nn.Module,
    input_size: tuple[int, int],
    overwrite: bool,
    log: Log,
) -> ExportedFile:
    """Write one export beside ``target``, check it, and rename it into place."""
    import torch

    example = _random_batch(TRACE_BATCH, input_size, SEED)
    batch = _random_batch(CHECK_BATCH, input_size, SEED + 1)
    with torch.no_grad():
        expected = module(batch)
    with atomic_path(target, overwrite) as tmp:
        # Written under the final name in a private folder (the loaders pick the format by
        # suffix), checked there, then moved onto atomic_path's temporary file.
        with tempfile.TemporaryDirectory(prefix=f".{target.name}.", dir=tmp.parent) as scratch:
            staged = Path(scratch) / target.name
            try:
                _WRITERS[fmt](module, example, staged)
            except FacebenchError:
                raise
            except Exception as err:  # tracing and exporting fail in many ways
                raise ExportError(
                    f"{target}: cannot export to {fmt} ({type(err).__name__}: {err}); check"
                    " --input-size and that the architecture traces"
                ) from None
            diff: float | None = None
            if fmt == "torchscript" or _onnxruntime_available():
                diff = _max_abs_diff(staged, expected, batch)
                allowed = allowed_difference(expected)
                if not diff <= allowed:
                    raise ExportError(
                        f"{target}: Expected the {fmt} export to reproduce the checkpoint's"
                        f" features within {allowed:.3g}, but the largest difference is"
                        f" {diff:.3g}; nothing was written"
                    )
            else:
                log(
                    f"{target}: onnxruntime is not installed, so the ONNX export was not run"
                    " to check its features (pip install 'facebench[onnx]')"
                )
            os.replace(staged, tmp)
    return ExportedFile(
        format=fmt,
        path=target,
        sha256=file_sha256(target),
        input_size=input_size,
        feature_dim=int(expected.shape[1]),
        max_abs_diff=diff,
    )


def export_checkpoint(
    checkpoint: str | Path,
    arch: str,
    *,
    onnx: str | Path | None = None,
    torchscript: str | Path | None = None,
    input_size: tuple[int, int] | None = None,
    overwrite: bool = False,
    trust_checkpoint: bool = False,
    log: Log | None = None,
) -> list[ExportedFile]:
    """Export a checkpoint to ONNX and/or TorchScript; the one call behind ``facebench export``.

    Parameters
    ----------
    checkpoint : path
        A state_dict or checkpoint file for ``arch`` (``facebench train`` writes one).
    arch : str
        A key of :data:`facebench.models.registry.ARCHITECTURES`.
    onnx, torchscript : path, optional
        Where to write each export (at least one).
    input_size : (H, W), optional
        The traced input size; default the architecture's.
    overwrite : bool
        Replace existing outputs; both are checked before the checkpoint is read.
    trust_checkpoint : bool
        Passed to :func:`facebench.models.load_model` (runs the file's code: trusted files
        only).
    log : callable, optional
        Receives the loader's notes; default stderr.

    Returns
    -------
    list of ExportedFile
        TorchScript first, then ONNX, as requested.

    Raises
    ------
    ExportError
        No output given, an unknown architecture, a bad input size, a failed trace or
        export, or an export whose features differ from the checkpoint's.
    facebench.models.ModelError
        The checkpoint cannot be loaded for ``arch``.
    facebench.errors.OutputExistsError
        An output exists and ``overwrite`` is false.
    """
    targets = {
        fmt: Path(path)
        for fmt, path in (("torchscript", torchscript), ("onnx", onnx))
        if path is not None
    }
    if not targets:
        raise ExportError(
            "Expected --onnx FILE and/or --torchscript FILE, but got neither; name the"
            " file(s) to write"
        )
    if len({p.resolve() for p in targets.values()}) < len(targets):
        raise ExportError("Expected different files for --onnx and --torchscript, but got one")
    for path in targets.values():
        check_writable(path, overwrite)
    spec = ARCHITECTURES.get(arch)
    if spec is None:
        raise ExportError(f"Expected --arch in {list(ARCHITECTURES)}, but got {arch!r}")
    size = input_size or spec.input_size
    if len(size) != 2 or min(size) < 1:
        raise ExportError(f"Expected --input-size H W of two positive integers, but got {size}")
    import torch

    emit = log if log is not None else _stderr
    module = _checkpoint_module(Path(checkpoint), arch, log, trust_checkpoint)
    try:
        with torch.no_grad():
            module(_random_batch(1, size, SEED))
    except Exception as err:  # a size the architecture cannot take
        raise ExportError(
            f"Expected an input size that --arch {arch} takes (its own: {spec.input_size[0]}"
            f" {spec.input_size[1]}), but {size[0]} x {size[1]} fails"
            f" ({type(err).__name__}); fix --input-size"
        ) from None
    return [
        _export_one(fmt, target, module, (int(size[0]), int(size[1])), overwrite, emit)
        for fmt, target in targets.items()
    ]
