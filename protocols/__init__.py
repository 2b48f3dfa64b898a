"""Benchmark protocols: one module per benchmark, parsing its official files.

The registry maps a protocol name to a loader; the CLI's ``--protocol`` choices come from it.

Kinds:
- ``pairs``: pairs of items (store ids) with folds (LFW; insightface ``.bin`` sets; generic
  pairs files). The loader takes the definition file: optional for LFW (``--pairs``
  replaces the shipped one), required for ``bin`` (``--bin FILE``) and ``pairs``
  (``--pairs FILE``).
- ``videos``: pairs of videos with folds (YTF); a video key is a folder and its frames are
  the store ids under it. Same loader signature.
- ``templates``: templates of items with 1:1 comparisons and 1:N searches in splits (IJB-A,
  IJB-B, IJB-C). The loader takes the user's protocol folder (``--protocol-dir``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from protocols import bin as insightface_bin
from protocols import ijba, ijbc, lfw, pairs, ytf
from protocols._types import (
    DeferredTemplateProtocol,
    Identification,
    PairsProtocol,
    Split,
    TemplateProtocol,
    Templates,
    Verification,
    file_sha256,
)


@dataclass(frozen=True)
class ProtocolSpec:
    """A registered benchmark: how to load it and what it expects."""

    name: str
    kind: str
    description: str
    load: Callable[..., Any]
    official: dict[str, int]
    detector_scores: bool = False
    """True when ``load`` takes ``detector_scores=`` (IJB-B/C: a landmarks file read only for
    the pooling that weighs by detector scores)."""
    defers_pairs: bool = False
    """True when ``load`` takes ``defer_pairs=`` (IJB-B/C: the pair file read in a thread,
    a :class:`DeferredTemplateProtocol` returned)."""


PROTOCOLS: dict[str, ProtocolSpec] = {
    "lfw": ProtocolSpec(
        name="lfw",
        kind="pairs",
        description="LFW View 2: 6,000 pairs in 10 folds (shipped pairs.txt)",
        load=lfw.load,
        official=lfw.OFFICIAL_VIEW2,
    ),
    "ytf": ProtocolSpec(
        name="ytf",
        kind="videos",
        description="YouTube Faces: 5,000 video pairs in 10 splits (shipped splits.txt)",
        load=ytf.load,
        official=ytf.OFFICIAL,
    ),
    "ijba": ProtocolSpec(
        name="ijba",
        kind="templates",
        description="IJB-A: 1:1 and 1:N over 10 splits (your IJB-A_11_sets/ and IJB-A_1N_sets/)",
        load=ijba.load,
        official={"n_splits": 10},
    ),
    "ijbb": ProtocolSpec(
        name="ijbb",
        kind="templates",
        description="IJB-B: 1:1 (8,010,270 pairs) and 1:N S1/S2 (your insightface-style meta/)",
        load=ijbc.load_ijbb,
        official={"n_templates": 12115, "n_pairs": 8010270},
        detector_scores=True,
        defers_pairs=True,
    ),
    "ijbc": ProtocolSpec(
        name="ijbc",
        kind="templates",
        description="IJB-C: 1:1 (15,658,489 pairs) and 1:N G1/G2 (your insightface-style meta/)",
        load=ijbc.load_ijbc,
        official={"n_templates": 23124, "n_pairs": 15658489},
        detector_scores=True,
        defers_pairs=True,
    ),
    "bin": ProtocolSpec(
        name="bin",
        kind="pairs",
        description="insightface .bin validation sets (lfw, cfp_fp, cfp_ff, agedb_30, calfw,"
        " cplfw): images + flags, 10 contiguous folds (your --bin FILE)",
        load=insightface_bin.load,
        official=insightface_bin.OFFICIAL_PAIRS,
    ),
    "pairs": ProtocolSpec(
        name="pairs",
        kind="pairs",
        description="Any benchmark as lines `id1 id2 label` plus an optional fold (your"
        " --pairs FILE); without folds, 10 contiguous folds",
        load=pairs.load,
        official={},
    ),
}

__all__ = [
    "PROTOCOLS",
    "DeferredTemplateProtocol",
    "Identification",
    "PairsProtocol",
    "ProtocolSpec",
    "Split",
    "TemplateProtocol",
    "Templates",
    "Verification",
    "file_sha256",
]
