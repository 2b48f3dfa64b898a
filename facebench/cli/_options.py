"""Options that ``verify`` and ``scores`` share: how a protocol's pairs are found and scored.

One definition each, so that the two commands accept the same choices (from the library's
own registries) with the same meaning.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from facebench.fusion import FLIP_FUSIONS
from facebench.pooling import POOLING_MODES
from facebench.scoring import VIDEO_POOLING

F = TypeVar("F", bound=Callable[..., Any])

_SCORING_OPTIONS = (
    click.option(
        "--pairs",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Another pairs file in the protocol's format instead of the shipped official"
        " one; --protocol pairs: the generic pairs file (id1 id2 label [fold]).",
    ),
    click.option(
        "--bin",
        "bin_file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="--protocol bin: an insightface validation set (lfw.bin, cfp_fp.bin,"
        " agedb_30.bin, ...), as extracted with `facebench extract FILE.bin`.",
    ),
    click.option(
        "--protocol-dir",
        type=click.Path(exists=True, file_okay=False, path_type=Path),
        default=None,
        help="IJB-A/B/C: the folder of the user's protocol files (never shipped).",
    ),
    click.option(
        "--split",
        "split_numbers",
        type=click.IntRange(min=1),
        multiple=True,
        help="IJB-A: only this split (repeatable).",
    ),
    click.option(
        "--pooling",
        type=click.Choice(list(POOLING_MODES)),
        default="media",
        show_default=True,
        help="Template pooling for IJB protocols (PROTOCOLS.md).",
    ),
    click.option(
        "--flip-fusion",
        type=click.Choice(list(FLIP_FUSIONS)),
        default="none",
        show_default=True,
        help="How an image's and its mirror's features combine.",
    ),
    click.option(
        "--video-pooling",
        type=click.Choice(list(VIDEO_POOLING)),
        default="mean",
        show_default=True,
        help="YTF: a video's feature is the mean of its frames, of its first --n-frames, or"
        " the score is the mean of all frame-pair similarities.",
    ),
    click.option(
        "--n-frames",
        type=click.IntRange(min=1),
        default=None,
        help="YTF with --video-pooling first: frames per video (by frame number).",
    ),
    click.option(
        "--allow-skipped",
        is_flag=True,
        help="Drop the pairs whose images extraction skipped (--skip-bad), and record them.",
    ),
    click.option(
        "--memory-budget",
        "memory_mib",
        type=click.IntRange(min=16),
        default=None,
        metavar="MIB",
        help="IJB protocols: working memory of the streamed store reads and score blocks"
        " (default 256 MiB). Never changes a number; the store is never held whole.",
    ),
)


def scoring_options(command: F) -> F:
    """Add the shared options (``--pairs`` ... ``--memory-budget``) to ``command``."""
    for option in reversed(_SCORING_OPTIONS):
        command = option(command)
    return command
