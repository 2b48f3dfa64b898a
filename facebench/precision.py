"""How torch computes float32 matrix products and convolutions: IEEE float32 (or TF32 when
asked for), whatever the process's own settings.

torch runs float32 convolutions on NVIDIA GPUs from Ampere on in TF32 by default (10
mantissa bits: cuDNN's ``fp32_precision`` is ``"tf32"`` out of the box), and a process may
turn TF32 (or bf16) on for matrix products too, on the GPU or through oneDNN on the CPU. In
facebench, float32 means IEEE float32: ``extract --precision fp32`` (the default) computes
features in it, and ``verify --device cuda``'s float32 products must stay within
:func:`facebench.template_scores.float32_bound` for TAR at a FAR to be the float64 one.

:class:`Float32Mode` sets the device's matmul and convolution backends to ``"ieee"`` (or,
for ``extract --precision tf32`` on an NVIDIA GPU, ``"tf32"``: 10 mantissa bits, faster,
recorded in the store) through torch's per-backend ``fp32_precision`` (torch >= 2.9) and
restores them on exit. torch's
getters raise in a process that set both the legacy flags (``allow_tf32``,
``set_float32_matmul_precision``) and the new ones, so nothing else is read or written:
setting and restoring the per-backend value leaves every setting the user made, through
either API, reading as before (tests/test_template_scores.py). An older torch: the legacy
``allow_tf32`` flags, on CUDA only.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

#: One holder at a time changes torch's process-wide settings (re-entrant: a product inside
#: an extraction's forward pass).
_LOCK = threading.RLock()


#: (object, attribute, value): one setting to change.
Setting = tuple[Any, str, Any]


#: The float32 modes: torch's ``fp32_precision`` values.
MODES = ("ieee", "tf32")


def _settings(device_type: str, mode: str) -> list[Setting]:
    """The torch settings that make float32 on ``device_type`` run in ``mode``."""
    import torch

    backends = torch.backends
    if device_type == "cuda":
        cudnn = getattr(backends, "cudnn", None)
        new = [backends.cuda.matmul, getattr(cudnn, "conv", None)]
        if all(hasattr(backend, "fp32_precision") for backend in new):
            return [(backend, "fp32_precision", mode) for backend in new]
        allow = mode == "tf32"
        return [(backends.cuda.matmul, "allow_tf32", allow), (cudnn, "allow_tf32", allow)]
    if device_type == "cpu" and mode == "ieee":  # oneDNN may run float32 in TF32 or bf16
        mkldnn = getattr(backends, "mkldnn", None)
        new = [getattr(mkldnn, name, None) for name in ("matmul", "conv")]
        return [(b, "fp32_precision", "ieee") for b in new if hasattr(b, "fp32_precision")]
    return []  # mps and others: float32 as the device computes it


class Float32Mode:
    """A re-usable context: float32 products and convolutions on ``device_type``
    (``"cuda"``, ``"cpu"``, ...) in ``mode`` (``"ieee"``; ``"tf32"``, which only CUDA
    has) inside, the process's settings restored after."""

    def __init__(self, device_type: str, mode: str = "ieee") -> None:
        if mode not in MODES or (mode == "tf32" and device_type != "cuda"):
            raise ValueError(f"float32 mode {mode!r} on {device_type!r}")
        self.device_type = device_type
        self.mode = mode
        self._saved: list[list[Setting]] = []  # a stack: the context may be re-entered

    def __enter__(self) -> Float32Mode:
        _LOCK.acquire()
        saved: list[Setting] = []
        try:
            for owner, name, value in _settings(self.device_type, self.mode):
                saved.append((owner, name, getattr(owner, name)))
                setattr(owner, name, value)
        except BaseException:
            _restore(saved)
            _LOCK.release()
            raise
        self._saved.append(saved)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        try:
            _restore(self._saved.pop())
        finally:
            _LOCK.release()


def _restore(saved: list[Setting]) -> None:
    for owner, name, value in reversed(saved):
        setattr(owner, name, value)
