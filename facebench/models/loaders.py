"""Load a feature model safely: TorchScript, ONNX, or a registered architecture + state_dict.

:func:`load_model` is the one entry point; it returns a :class:`FeatureModel`, a callable
that maps a float32 N x 3 x H x W batch to the raw (un-normalized) float32 N x D feature.

Three kinds of model:

``torchscript``
    A file written by ``torch.jit.save`` (``--model r50.ts``). Its input size and feature
    size are unknown until it runs.
``state_dict``
    A registered architecture (:data:`facebench.models.registry.ARCHITECTURES`) plus
    a weights file (``--arch iresnet50 --weights backbone.pth``), read with
    ``torch.load(weights_only=True)``: facebench never unpickles code, so a file that needs
    any Python class or function to load is refused before anything in it runs; the
    refusal lists what the file would import and call (:func:`pickle_globals`, which reads
    the pickle's opcodes without executing them). With ``trust_checkpoint``
    (``--trust-checkpoint``) such a file is loaded with ``weights_only=False``, which runs
    that code, and a warning says so.
``onnx``
    An ``.onnx`` file run by onnxruntime (the ``onnx`` extra), on the CPU unless the
    onnxruntime-gpu build is installed and a CUDA device is requested.

This module imports torch and onnxruntime only inside the functions that need them.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import pickletools
import re
import sys
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard

from facebench.errors import FacebenchError
from facebench.fileio import file_sha256
from facebench.models.registry import ARCHITECTURES

if TYPE_CHECKING:
    import torch

KINDS = ("torchscript", "state_dict", "onnx")
RANDOM_WEIGHTS_WARNING = "random weights: features are meaningless"
RANDOM_INIT_SEED = 0
CHECKPOINT_ENTRIES = ("state_dict", "model", "backbone")
_LIST_LIMIT = 10

Log = Callable[[str], None]


class ModelError(FacebenchError):
    """A model file, architecture name, weights file or device cannot be used."""


def _stderr(message: str) -> None:
    print(f"facebench: {message}", file=sys.stderr)


def _first(items: list[str]) -> str:
    shown = ", ".join(items[:_LIST_LIMIT])
    return shown + (f", ... ({len(items) - _LIST_LIMIT} more)" if len(items) > _LIST_LIMIT else "")


def _known_architectures() -> str:
    return ", ".join(ARCHITECTURES)


class _Backend(Protocol):
    def to(self, device: str, tf32: bool = False) -> str: ...

    def run(self, batch: torch.Tensor) -> object: ...


@dataclass
class FeatureModel:
    """A loaded feature extractor.

    Attributes
    ----------
    name
        ``"<kind or arch>:<file name>"``: ``"torchscript:r50.ts"``, ``"iresnet50:backbone.pth"``,
        ``"onnx:model.onnx"``, or ``"<arch>:random-init"`` without weights.
    sha256
        Hex SHA-256 of the model file (TorchScript, ONNX) or of the weights file; ``""`` for
        an architecture with random weights. An ONNX model whose weights live in external
        data files gets the digest of a manifest of all its files (:func:`onnx_sha256`).
    input_size
        The (H, W) the model needs: the architecture's, or an ONNX model's static input
        shape; None when unknown (TorchScript, a dynamic ONNX input).
    feature_dim
        The feature length D when known (architectures, a static ONNX output), else None.
    preset
        The architecture's preprocessing preset name, None when unknown.
    kind
        ``"torchscript"``, ``"state_dict"`` or ``"onnx"``.
    device
        Where the model runs, as ``str(torch.device)`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
    """

    name: str
    sha256: str
    input_size: tuple[int, int] | None
    feature_dim: int | None
    preset: str | None
    kind: str
    device: str
    backend: _Backend = field(repr=False)

    def to(self, device: str | torch.device, *, tf32: bool = False) -> FeatureModel:
        """Move the model to ``device`` and return it.

        ONNX models run on the CPU, or on CUDA when onnxruntime-gpu is installed; any other
        request raises :class:`ModelError`. On CUDA an ONNX model computes float32 in IEEE
        float32 (onnxruntime's CUDA provider defaults to TF32), or in TF32 with ``tf32``.
        Torch models take ``tf32`` from the caller's :class:`facebench.precision.Float32Mode`.
        """
        self.device = self.backend.to(str(device), tf32)
        return self

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        """Return the raw features of ``batch``, without gradients, in eval mode.

        Parameters
        ----------
        batch
            float32 tensor, shape (N, 3, H, W), N >= 1, (H, W) = ``input_size`` when known.

        Returns
        -------
        torch.Tensor
            float32, shape (N, D): row i is the un-normalized feature of ``batch[i]``. On
            ``batch.device`` for torch models; a CPU tensor for ONNX models.
        """
        self._check_batch(batch)
        return self._check_output(self.backend.run(batch), batch.shape[0])

    def _check_batch(self, batch: torch.Tensor) -> None:
        import torch

        if not isinstance(batch, torch.Tensor):
            raise ModelError(f"Expected a torch.Tensor batch, but got {type(batch).__name__}")
        shape = tuple(batch.shape)
        if batch.ndim != 4 or shape[1] != 3 or shape[0] < 1 or not batch.is_floating_point():
            raise ModelError(
                f"{self.name}: expected a float batch of shape N x 3 x H x W with N >= 1, "
                f"but got {batch.dtype} {shape}"
            )
        if self.input_size is not None and shape[2:] != self.input_size:
            height, width = self.input_size
            fix = f"; use the preprocessing preset {self.preset!r}" if self.preset else ""
            raise ModelError(
                f"{self.name}: expected inputs of {height}x{width} (H x W), but got "
                f"{shape[2]}x{shape[3]}{fix}"
            )

    def _check_output(self, out: object, n_rows: int) -> torch.Tensor:
        import torch

        if not isinstance(out, torch.Tensor):
            raise ModelError(
                f"{self.name}: the model returned a {type(out).__name__}; facebench expects "
                "one N x D tensor of features (export the feature output only)"
            )
        dim = self.feature_dim
        if out.ndim != 2 or out.shape[0] != n_rows or (dim is not None and out.shape[1] != dim):
            expected = f"{n_rows} x {dim if dim is not None else 'D'}"
            raise ModelError(
                f"{self.name}: expected features of shape {expected}, but the model returned "
                f"{tuple(out.shape)}"
            )
        return out


def _torch_device(device: str) -> torch.device:
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ModelError(
            f"Expected a device such as cpu, cuda or cuda:1, but got {device!r}"
        ) from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {device!r}: CUDA is not available here; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ModelError(
            f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) are visible"
        )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ModelError(f"device {device!r}: MPS is not available here; use --device cpu")
    return dev


class _TorchBackend:
    def __init__(self, module: torch.nn.Module, device: str) -> None:
        self.module = module.eval()
        self.device = _torch_device(device)

    def to(self, device: str, tf32: bool = False) -> str:
        self.device = _torch_device(device)
        self.module.to(self.device)
        return str(self.device)

    def run(self, batch: torch.Tensor) -> object:
        import torch

        with torch.no_grad():
            out = self.module(batch.to(self.device))
        if not isinstance(out, torch.Tensor):
            return out  # FeatureModel rejects it, naming the model
        return out.float().to(batch.device)


class _OnnxBackend:
    def __init__(self, path: Path, device: str) -> None:
        self.path = path
        self.session, self.device = self._open(device)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(
                f"{path}: expected an ONNX model with one input (the image batch) and one "
                f"output (the features), but it has inputs {[i.name for i in inputs]} and "
                f"outputs {[o.name for o in outputs]}"
            )
        self.input_name: str = inputs[0].name
        shape = list(inputs[0].shape)
        if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != 3):
            raise ModelError(
                f"{path}: expected the ONNX input to be N x 3 x H x W, but it is {shape}"
            )
        if inputs[0].type not in ("tensor(float)", "tensor(float16)"):
            raise ModelError(
                f"{path}: expected a float or float16 ONNX input, but it is {inputs[0].type}"
            )
        self.half = inputs[0].type == "tensor(float16)"
        self.static_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        height, width = shape[2], shape[3]
        self.input_size = (
            (height, width) if isinstance(height, int) and isinstance(width, int) else None
        )
        out_shape = list(outputs[0].shape)
        self.feature_dim = (
            out_shape[1] if len(out_shape) == 2 and isinstance(out_shape[1], int) else None
        )

    def to(self, device: str, tf32: bool = False) -> str:
        self.session, self.device = self._open(device, tf32)
        return self.device

    def _open(self, device: str, tf32: bool = False) -> tuple[Any, str]:
        """Return an onnxruntime session on ``device`` and the device's name."""
        import onnxruntime
        import torch

        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError) as err:
            raise ModelError(f"Expected a device such as cpu or cuda, but got {device!r}") from err
        if dev.type == "cpu":
            providers: list[Any] = ["CPUExecutionProvider"]
        elif dev.type == "cuda":
            if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
                raise ModelError(
                    f"{self.path}: this onnxruntime runs ONNX models on the CPU only; for "
                    "CUDA install onnxruntime-gpu, or use --device cpu"
                )
            # onnxruntime's CUDA provider computes float32 products in TF32 unless told not to
            options = {"device_id": dev.index or 0, "use_tf32": int(tf32)}
            providers = [("CUDAExecutionProvider", options), "CPUExecutionProvider"]
        else:
            raise ModelError(
                f"{self.path}: ONNX models run on cpu or cuda, but {device!r} was requested"
            )
        try:
            session = onnxruntime.InferenceSession(str(self.path), providers=providers)
        except Exception as err:  # onnxruntime's errors share no base class but Exception
            raise ModelError(
                f"{self.path}: onnxruntime cannot load it as an ONNX model: {err}"
            ) from None
        if dev.type == "cuda" and "CUDAExecutionProvider" not in session.get_providers():
            raise ModelError(
                f"{self.path}: onnxruntime could not start its CUDA provider (check the CUDA "
                "and cuDNN libraries), so it would run on the CPU; use --device cpu"
            )
        return session, "cpu" if dev.type == "cpu" else f"cuda:{dev.index or 0}"

    def run(self, batch: torch.Tensor) -> object:
        import numpy as np
        import torch

        array = batch.detach().to("cpu", torch.float32).contiguous().numpy()
        if self.half:
            array = array.astype(np.float16)
        n_rows = array.shape[0]
        if self.static_batch is not None and self.static_batch not in (1, n_rows):
            raise ModelError(
                f"{self.path}: the ONNX model takes batches of exactly {self.static_batch}, but "
                f"got {n_rows}; export it with a dynamic batch axis or set the batch size to "
                f"{self.static_batch}"
            )
        chunks = [array] if self.static_batch != 1 else [array[i : i + 1] for i in range(n_rows)]
        try:
            outs = [self.session.run(None, {self.input_name: chunk})[0] for chunk in chunks]
        except Exception as err:  # onnxruntime's errors share no base class but Exception
            raise ModelError(
                f"{self.path}: onnxruntime failed on a batch {array.shape}: {err}"
            ) from None
        out = outs[0] if len(outs) == 1 else np.concatenate(outs)
        return torch.from_numpy(np.ascontiguousarray(out, dtype=np.float32))


def load_model(
    *,
    model: Path | None = None,
    arch: str | None = None,
    weights: Path | None = None,
    device: str = "cpu",
    log: Log | None = None,
    trust_checkpoint: bool = False,
) -> FeatureModel:
    """Load a feature model from exactly one of ``model`` and ``arch`` (+ ``weights``).

    Parameters
    ----------
    model
        A TorchScript archive (``torch.jit.save``; any suffix but ``.onnx``) or an ``.onnx``
        file.
    arch
        A key of :data:`~facebench.models.registry.ARCHITECTURES`.
    weights
        With ``arch``: a ``torch.save`` file holding a state_dict, or a checkpoint dict with
        a ``"state_dict"`` (or ``"model"``, ``"backbone"``) entry. A ``"module."`` prefix on
        every key (DataParallel/DDP) is stripped, and so is ``"backbone."`` where that makes
        a key fit. Without ``weights`` the architecture keeps a random initialization (seed 0)
        and a warning says so.
    device
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
    log
        Receives notes and warnings (prefixes stripped, keys ignored, random weights);
        default: stderr.
    trust_checkpoint
        Load ``weights`` that need Python code to unpickle (a pickled model, a checkpoint
        holding optimizer or config objects) with ``torch.load(weights_only=False)``, which
        runs that code; ``log`` gets a warning naming it. Only for files from a trusted
        source. Without it such a file is refused, naming what it would import and call.

    Returns
    -------
    FeatureModel
        In eval mode, on ``device``.

    Raises
    ------
    ModelError
        A wrong combination of arguments, a missing or unreadable file, a file that is not
        TorchScript, weights that would need code to unpickle, missing keys or wrong shapes,
        an unknown architecture, a device that is not available, or no onnxruntime.
    """
    emit = log if log is not None else _stderr
    if model is not None and (arch is not None or weights is not None):
        raise ModelError(
            "Expected either --model FILE (TorchScript or .onnx) or --arch NAME [--weights "
            "FILE], but got --model together with --arch/--weights"
        )
    if model is not None:
        path = _existing_file(Path(model), "model file")
        if path.suffix.lower() == ".onnx":
            return _load_onnx(path, device, emit)
        return _load_torchscript(path, device)
    if arch is None:
        raise ModelError(
            "Expected --model FILE (TorchScript or .onnx) or --arch NAME [--weights FILE]"
            + (", but got --weights without --arch" if weights is not None else "")
            + f"; known architectures: {_known_architectures()}"
        )
    return _load_architecture(arch, weights, device, emit, trust_checkpoint)


def _existing_file(path: Path, what: str) -> Path:
    if not path.exists():
        raise ModelError(f"{path}: {what} not found")
    if not path.is_file():
        raise ModelError(f"{path}: expected a {what}, but it is not a regular file")
    return path


def _load_torchscript(path: Path, device: str) -> FeatureModel:
    import torch

    _check_torchscript_archive(path)
    dev = _torch_device(device)
    try:
        module = torch.jit.load(str(path), map_location=dev)
    except Exception as err:  # a damaged archive can fail in many ways; all are the file's
        raise ModelError(f"{path}: cannot load this TorchScript archive: {err}") from None
    backend = _TorchBackend(module, device)
    return FeatureModel(
        name=f"torchscript:{path.name}",
        sha256=file_sha256(path),
        input_size=None,
        feature_dim=None,
        preset=None,
        kind="torchscript",
        device=str(backend.device),
        backend=backend,
    )


def _check_torchscript_archive(path: Path) -> None:
    """Raise unless ``path`` is a zip archive laid out as ``torch.jit.save`` writes it."""
    hint = (
        f"for a state_dict use --arch NAME --weights FILE ({_known_architectures()}); for a "
        "whole model, save it with torch.jit.save or export it to ONNX"
    )
    try:
        with open(path, "rb"):
            pass
    except OSError as err:
        raise ModelError(f"{path}: cannot read the model file ({err.strerror or err})") from None
    if not zipfile.is_zipfile(path):
        raise ModelError(
            f"{path}: this is not TorchScript (not a zip archive as torch.jit.save writes); {hint}"
        )
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    if not any(name.endswith("constants.pkl") for name in names):
        found = (
            "a torch.save file (state_dict or pickled object)"
            if any(name.endswith("data.pkl") for name in names)
            else "a zip archive"
        )
        raise ModelError(f"{path}: this is not TorchScript but {found}; {hint}")


def _load_onnx(path: Path, device: str, emit: Log) -> FeatureModel:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ModelError(
            f"{path}: running ONNX models needs onnxruntime; install the onnx extra: "
            "pip install 'facebench[onnx]'"
        ) from None
    backend = _OnnxBackend(path, device)
    return FeatureModel(
        name=f"onnx:{path.name}",
        sha256=onnx_sha256(path, emit),
        input_size=backend.input_size,
        feature_dim=backend.feature_dim,
        preset=None,
        kind="onnx",
        device=backend.device,
        backend=backend,
    )


def onnx_sha256(path: Path, log: Log | None = None) -> str:
    """SHA-256 of an ONNX model, covering its external data files when it has any.

    Exporters write the weights of large models beside the graph (``model.onnx.data``), so
    the ``.onnx`` file's digest alone would not change with the weights. Without external
    data this is the file's SHA-256. With them it is the SHA-256 of the UTF-8 manifest that
    ``sha256sum model.onnx <files...>`` prints (``"<hex>  <name>\\n"`` per file, the
    ``.onnx`` file first, then each external file by its location in sorted order), run
    in the model's folder. Finding the files needs the ``onnx`` package; without it the
    digest covers the ``.onnx`` file only, and ``log`` says so.
    """
    digest = file_sha256(path)
    try:
        files = _onnx_external_files(path)
    except ImportError:
        (log or _stderr)(
            f"{path}: the onnx package is not installed, so the model's sha256 covers the "
            ".onnx file only, not any external data files (pip install 'facebench[onnx]')"
        )
        return digest
    if not files:
        return digest
    manifest = f"{digest}  {path.name}\n" + "".join(
        f"{file_sha256(path.parent / name)}  {name}\n" for name in files
    )
    return hashlib.sha256(manifest.encode("utf-8")).hexdigest()


def _onnx_external_files(path: Path) -> list[str]:
    """The external data locations that the tensors of an ONNX model refer to, sorted."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf and onnx raise several types for a damaged file
        raise ModelError(f"{path}: the onnx package cannot parse it: {err}") from None
    locations: set[str] = set()

    def visit_tensor(tensor: Any) -> None:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            locations.update(e.value for e in tensor.external_data if e.key == "location")

    def visit_graph(graph: Any) -> None:
        for tensor in graph.initializer:
            visit_tensor(tensor)
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.HasField("t"):
                    visit_tensor(attribute.t)
                for tensor in attribute.tensors:
                    visit_tensor(tensor)
                if attribute.HasField("g"):
                    visit_graph(attribute.g)
                for subgraph in attribute.graphs:
                    visit_graph(subgraph)

    visit_graph(proto.graph)
    return sorted(locations)


def _load_architecture(
    arch: str, weights: Path | None, device: str, emit: Log, trust: bool = False
) -> FeatureModel:
    import torch

    spec = ARCHITECTURES.get(arch)
    if spec is None:
        raise ModelError(f"Expected --arch to be one of {_known_architectures()}, but got {arch!r}")
    dev = _torch_device(device)
    read: tuple[Path, dict[str, torch.Tensor]] | None = None
    if weights is None:
        emit(f"WARNING: --arch {arch} without --weights: {RANDOM_WEIGHTS_WARNING}")
    else:
        path = _existing_file(Path(weights), "weights file")
        read = (path, _read_state_dict(path, arch, emit, trust))  # fail before building
    with torch.random.fork_rng(devices=[]):  # reproducible, and the caller's RNG is untouched
        torch.manual_seed(RANDOM_INIT_SEED)
        module = spec.build()
    name, sha256 = f"{arch}:random-init", ""
    if read is not None:
        path, state = read
        _load_state_dict(module, state, path, arch, emit)
        name, sha256 = f"{arch}:{path.name}", file_sha256(path)
    backend = _TorchBackend(module.to(dev), str(dev))
    return FeatureModel(
        name=name,
        sha256=sha256,
        input_size=spec.input_size,
        feature_dim=spec.feature_dim,
        preset=spec.preset,
        kind="state_dict",
        device=str(dev),
        backend=backend,
    )


def _read_state_dict(
    path: Path, arch: str, emit: Log, trust: bool = False
) -> dict[str, torch.Tensor]:
    """Read ``path`` with ``torch.load(weights_only=True)`` and return its state_dict.

    A file that needs code is refused, or, with ``trust``, loaded with
    ``weights_only=False`` after a warning.
    """
    import torch

    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        names = _code_globals(path)  # torch names only the first; read them all
        needed = re.search(r"GLOBAL (\S+)", str(err))
        if not names and needed is not None:
            names = [needed.group(1)]
        if not names:
            detail = str(err).split("WeightsUnpickler error:")[-1].strip().splitlines()[0]
            raise ModelError(f"{path}: not a readable torch.save file ({detail})") from None
        if not trust:
            raise ModelError(
                f"{path}: loading it would need Python code: it imports and calls"
                f" {_first(names)}. facebench reads weights with torch.load(weights_only=True)"
                " and never unpickles code. Save the weights alone: torch.save("
                "model.state_dict(), FILE); or, only if you trust this file, pass"
                " --trust-checkpoint to run that code"
            ) from None
        emit(
            f"WARNING: --trust-checkpoint: loading {path} with torch.load(weights_only=False),"
            f" which imports and runs {_first(names)}"
        )
        loaded = _load_trusted(path)
    except Exception as err:  # a damaged file can fail anywhere in the unpickler (IndexError, ...)
        detail = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        raise ModelError(f"{path}: not a readable torch.save file ({detail})") from None
    if isinstance(loaded, torch.nn.Module):  # a pickled model: trusted above
        loaded = loaded.state_dict()
    if _is_tensor_dict(loaded):
        return dict(loaded)
    if isinstance(loaded, Mapping):
        for entry in CHECKPOINT_ENTRIES:
            value = loaded.get(entry)
            if isinstance(value, torch.nn.Module):
                value = value.state_dict()
            if _is_tensor_dict(value):
                saved_arch = loaded.get("arch")
                if isinstance(saved_arch, str) and saved_arch != arch:
                    raise ModelError(
                        f"{path}: the checkpoint is for arch {saved_arch!r}, but --arch {arch} "
                        f"was given; use --arch {saved_arch}"
                    )
                emit(f"{path}: using the checkpoint's {entry!r} entry")
                return dict(value)
        found = f"a dict with keys {_first([str(key) for key in loaded])}"
    else:
        found = f"a {type(loaded).__name__}"
    raise ModelError(
        f"{path}: expected a state_dict (a dict of tensors) or a checkpoint dict with a "
        f"{' / '.join(repr(e) for e in CHECKPOINT_ENTRIES)} entry holding one, but got {found}"
    )


def _load_trusted(path: Path) -> object:
    """``torch.load(weights_only=False)``: runs the file's code (the user trusts it)."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # the file's own code can raise anything
        detail = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        raise ModelError(
            f"{path}: torch.load(weights_only=False) failed ({detail}); the code it needs"
            " may not be importable here"
        ) from None


#: Opcodes that push a string (candidates for STACK_GLOBAL's module and name).
_STRING_OPS = frozenset(
    {
        "SHORT_BINUNICODE",
        "BINUNICODE",
        "BINUNICODE8",
        "UNICODE",
        "SHORT_BINSTRING",
        "BINSTRING",
        "STRING",
    }
)
#: Python 2 module names that pickle protocols <= 2 write and Python 3 imports by other names.
_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}
_MAX_PICKLES = 8  # the legacy torch.save format is a few pickles, then raw bytes


def _global_name(module: str, name: str) -> str:
    """``module.name`` as Python 3 imports it (protocol 2 writes ``__builtin__.set``)."""
    return f"{_PY2_MODULES.get(module, module)}.{name}"


def _scan_pickle(stream: io.BytesIO, found: dict[str, None]) -> None:
    """Add to ``found`` every ``module.name`` one pickle imports (GLOBAL, INST, STACK_GLOBAL).

    Reads opcodes with :func:`pickletools.genops`; nothing is imported or called. A
    STACK_GLOBAL takes its module and name from the two strings pushed (or fetched from
    the memo) just before it; when it cannot be told, ``<computed name>`` is recorded.
    """
    strings: list[str | None] = []  # what each recent opcode pushed, when a string
    memo: dict[int, str | None] = {}
    for opcode, arg, _ in pickletools.genops(stream):
        name = opcode.name
        pushed: str | None = None
        if name in ("GLOBAL", "INST"):
            module, _, attribute = str(arg).partition(" ")
            found[_global_name(module, attribute)] = None
        elif name == "STACK_GLOBAL":
            pair = strings[-2:]
            if len(pair) == 2 and pair[0] is not None and pair[1] is not None:
                found[_global_name(pair[0], pair[1])] = None
            else:
                found["<computed name>"] = None
        elif name in _STRING_OPS:
            pushed = arg.decode("latin-1") if isinstance(arg, bytes) else str(arg)
        elif name in ("BINGET", "LONG_BINGET", "GET"):
            pushed = memo.get(arg) if isinstance(arg, int) else None
        elif name in ("BINPUT", "LONG_BINPUT", "PUT", "MEMOIZE"):
            key = arg if isinstance(arg, int) and name != "MEMOIZE" else len(memo)
            memo[key] = strings[-1] if strings else None
            continue  # the stack is unchanged
        strings.append(pushed)
        del strings[:-2]


def pickle_globals(path: str | Path) -> list[str]:
    """Every Python object (``module.name``) that unpickling ``path`` would import.

    Reads a ``torch.save`` file (the zip format's ``data.pkl``, or the legacy format's
    pickles) or a plain pickle opcode by opcode, without executing anything; every import
    of a pickle (GLOBAL, INST, STACK_GLOBAL opcodes) is what it can then call (REDUCE,
    BUILD, NEWOBJ). Names in file order, each once; an unreadable tail ends the scan.
    """
    path = Path(path)
    found: dict[str, None] = {}
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                payloads = [
                    archive.read(info)
                    for info in archive.infolist()
                    if info.filename.endswith(".pkl") and info.file_size < (64 << 20)
                ]
        else:
            payloads = [path.read_bytes()]
    except (OSError, zipfile.BadZipFile, RuntimeError, NotImplementedError, ValueError):
        return []
    for payload in payloads:
        stream = io.BytesIO(payload)
        for _ in range(_MAX_PICKLES):
            start = stream.tell()
            try:
                _scan_pickle(stream, found)
            except Exception:  # past the last pickle (raw storage bytes) or a damaged one
                break
            if stream.tell() == start or stream.tell() >= len(payload):
                break
    return list(found)


def _code_globals(path: Path) -> list[str]:
    """:func:`pickle_globals` of ``path`` less what ``weights_only=True`` allows (tensors,
    storages, dtypes, OrderedDict, ...): the code the file needs."""
    allowed: set[str] = set()
    try:
        from torch import _weights_only_unpickler as unpickler

        allowed.update(unpickler._get_allowed_globals())
        allowed.update(unpickler._get_user_allowed_globals())
    except (ImportError, AttributeError):  # a torch without these helpers: list everything
        pass
    return [name for name in pickle_globals(path) if name not in allowed]


def _is_tensor_dict(value: object) -> TypeGuard[Mapping[str, torch.Tensor]]:
    import torch

    return (
        isinstance(value, Mapping)
        and len(value) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())
    )


def _strip_prefixes(
    state: dict[str, torch.Tensor], expected: Mapping[str, object], path: Path, emit: Log
) -> dict[str, torch.Tensor]:
    """Strip ``module.`` from every key when all have it, ``backbone.`` where that fits."""
    if all(key.startswith("module.") for key in state):
        state = {key.removeprefix("module."): value for key, value in state.items()}
        emit(
            f"{path}: stripped the 'module.' prefix (a DataParallel/DistributedDataParallel "
            f"checkpoint) from all {len(state)} keys"
        )
    fitted: dict[str, torch.Tensor] = {}
    n_stripped = 0
    for key, value in state.items():
        short = key.removeprefix("backbone.")
        if short != key and short in expected and short not in state:
            fitted[short] = value
            n_stripped += 1
        else:
            fitted[key] = value
    if n_stripped:
        emit(f"{path}: stripped the 'backbone.' prefix from {n_stripped} keys")
    return fitted


def _load_state_dict(
    module: torch.nn.Module,
    state: dict[str, torch.Tensor],
    path: Path,
    arch: str,
    emit: Log,
) -> None:
    """Copy ``state`` into ``module``; every parameter and buffer must be there, shapes equal.

    Keys the module does not have are reported through ``emit`` and ignored. A missing
    ``num_batches_tracked`` (checkpoints from before PyTorch 0.4.1) keeps the module's own
    value: it does not affect eval-mode outputs.
    """
    expected = module.state_dict()
    state = _strip_prefixes(state, expected, path, emit)
    missing = [k for k in expected if k not in state and not k.endswith(".num_batches_tracked")]
    wrong_shapes = [
        f"{key} expected {tuple(expected[key].shape)}, got {tuple(state[key].shape)}"
        for key in expected
        if key in state and state[key].shape != expected[key].shape
    ]
    if missing or wrong_shapes:
        problems = []
        if missing:
            problems.append(f"{len(missing)} missing keys ({_first(missing)})")
        if wrong_shapes:
            problems.append(f"{len(wrong_shapes)} keys of the wrong shape ({_first(wrong_shapes)})")
        raise ModelError(
            f"{path}: the weights do not fit --arch {arch}: {'; '.join(problems)}. Check --arch "
            f"(known: {_known_architectures()}) and that the file holds this model's weights"
        )
    unused = [key for key in state if key not in expected]
    if unused:
        emit(f"{path}: ignored {len(unused)} keys that {arch} does not use: {_first(unused)}")
    non_finite = [
        key
        for key, value in state.items()
        if key in expected and value.is_floating_point() and not bool(value.isfinite().all())
    ]
    if non_finite:
        raise ModelError(
            f"{path}: {len(non_finite)} tensors hold NaN or inf ({_first(non_finite)})"
        )
    converted = sorted(
        {
            str(value.dtype).removeprefix("torch.")
            for key, value in state.items()
            if key in expected and value.is_floating_point() and value.dtype != expected[key].dtype
        }
    )
    if converted:
        emit(f"{path}: converted {', '.join(converted)} weights to float32")
    used = {key: value for key, value in state.items() if key in expected}
    for key in expected:
        used.setdefault(key, expected[key])  # only num_batches_tracked can be absent here
    module.load_state_dict(used, strict=True)
