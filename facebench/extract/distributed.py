"""torchrun support: one process per device, the item list split by chunks across ranks.

Under ``torchrun`` (the environment has ``WORLD_SIZE`` > 1), the default process group is
initialized with ``gloo`` on the CPU and ``nccl`` on CUDA; every rank extracts the chunks
``c`` with ``c % world_size == rank`` into the shared work folder, and rank 0 assembles the
store after a barrier (see :mod:`facebench.extract.journal`).
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from facebench.extract.runner import Ranks


def ranks_from_env(device: str) -> tuple[Ranks, str]:
    """The process group torchrun set up, and the device this rank should use.

    Returns the single-process :class:`Ranks` and ``device`` unchanged outside torchrun.
    With ``device`` ``auto``/``cuda`` and CUDA present, each rank takes ``cuda:LOCAL_RANK``.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Ranks(), device
    use_cuda = device in ("auto", "cuda") and torch.cuda.is_available()
    if use_cuda:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(torch.device(device))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    if device == "auto":
        device = "cpu"
    return Ranks(
        rank=dist.get_rank(), world_size=dist.get_world_size(), barrier=dist.barrier
    ), device


def shutdown() -> None:
    """Leave the process group, if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
