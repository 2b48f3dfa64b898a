"""Benchmark protocols: one module per benchmark, parsing its official files.

The registry maps a protocol name to a loader; the CLI's ``--protocol`` choices come from it.
A loader takes the optional path of a replacement definition file (``--pairs``) and returns
a canonical structure from :mod:`protocols._types`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from protocols import lfw
from protocols._types import PairsProtocol, file_sha256


@dataclass(frozen=True)
class ProtocolSpec:
    """A registered benchmark: how to load it and what it expects."""

    name: str
    description: str
    load: Callable[[str | Path | None], PairsProtocol]
    official: dict[str, int]


PROTOCOLS: dict[str, ProtocolSpec] = {
    "lfw": ProtocolSpec(
        name="lfw",
        description="LFW View 2: 6,000 pairs in 10 folds (shipped pairs.txt)",
        load=lfw.load,
        official=lfw.OFFICIAL_VIEW2,
    ),
}

__all__ = ["PROTOCOLS", "PairsProtocol", "ProtocolSpec", "file_sha256"]
