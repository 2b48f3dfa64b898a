"""Every pair's score, written in the formats other evaluation tools read.

The scores are computed by the library call behind ``facebench verify``
(:func:`facebench.evaluate.evaluate_pairs` for pair and video protocols,
:func:`facebench.evaluate_splits.evaluate_templates` for IJB), never by a second
implementation; the files hold exactly the pairs that the report counts, in protocol order.
Scores are written with ``repr`` of the float64 value (the shortest text that reads back to
the same float), so a tool that re-reads them sees the same numbers facebench used.

Formats (:data:`SCORE_FORMATS`):

``csv``
    One file with a header ``id1,id2,score,label,fold`` (pair and video protocols: the two
    store ids, or video keys, of the pair; ``fold`` counts from 1) or
    ``id1,id2,score,label,split`` (template protocols: the two template ids; ``split``
    counts from 1). ``label`` is 1 for a genuine (same identity) pair, 0 for an impostor
    pair. Quoted as RFC 4180 when an id holds a comma or a quote.
``bob``
    bob.measure's 4-column score file (``bob.measure.load.four_column``): one line
    ``claimed_id real_id test_label score`` per pair, fields separated by one space.
    bob counts a line as genuine when ``claimed_id == real_id``: facebench writes
    ``id1 id1 id2 score`` for a genuine pair and ``id1 id2 id2 score`` for an impostor
    pair, so ``bob.measure.load.split_four_column`` returns the impostor (negative) and
    genuine (positive) scores. Ids holding whitespace cannot be written (bob splits on
    it), nor an impostor pair of one id with itself.
``pyeer``
    Two files of one score per line, as pyeer's ``geteerinf -g GENUINE -i IMPOSTOR``
    reads them: for ``-o PATH`` they are ``BASE.genuine.txt`` and ``BASE.impostor.txt``,
    where ``BASE`` is ``PATH`` without its suffix (``-o lfw.txt`` -> ``lfw.genuine.txt``,
    ``lfw.impostor.txt``). The scores are similarities (pyeer's default: higher means more
    alike).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import numpy.typing as npt

from facebench.errors import FacebenchError
from facebench.fileio import atomic_path, check_writable
from facebench.report import FoldReport, SplitReport
from protocols import PROTOCOLS

__all__ = [
    "SCORE_FORMATS",
    "PairScores",
    "ScoreFileError",
    "ScoreOptions",
    "compute_scores",
    "export_scores",
    "load_protocol",
    "score_paths",
    "write_scores",
]

SCORE_FORMATS: dict[str, str] = {
    "csv": "one CSV: id1,id2,score,label,fold|split (label 1 = genuine)",
    "bob": "bob.measure 4-column: claimed_id real_id test_label score (claimed == real: genuine)",
    "pyeer": "pyeer: BASE.genuine.txt and BASE.impostor.txt, one score per line",
}
"""Score file formats: name -> one-line definition (the CLI's ``--format`` choices)."""

_ROWS_PER_WRITE = 1 << 16  # rows formatted at once: bounded memory at IJB-C size
_WHITESPACE = re.compile(r"\s")


class ScoreFileError(FacebenchError):
    """The scores cannot be written in the requested format."""


@dataclass(frozen=True)
class ScoreOptions:
    """The choices of ``facebench verify`` that change which pairs exist or their scores.

    Attributes
    ----------
    pairs : Path or None
        Pair and video protocols: another definition file in the protocol's format
        (``pairs``: the generic pairs file, required).
    bin_file : Path or None
        ``bin``: the insightface ``.bin`` file (required).
    protocol_dir : Path or None
        Template protocols: the user's folder of protocol files.
    splits : tuple of int or None
        IJB-A: only these splits (1-based); None: every split.
    pooling : str
        Template pooling, a key of :data:`facebench.pooling.POOLING_MODES`.
    flip_fusion : str
        A key of :data:`facebench.fusion.FLIP_FUSIONS`.
    video_pooling, n_frames
        Video protocols (YTF): see :class:`facebench.evaluate.VerifyOptions`.
    allow_skipped : bool
        Leave out the pairs that lost an item at extraction (the report records them).
    memory_mib : int or None
        Template protocols: working memory of the streamed stages.
    """

    pairs: Path | None = None
    bin_file: Path | None = None
    protocol_dir: Path | None = None
    splits: tuple[int, ...] | None = None
    pooling: str = "media"
    flip_fusion: str = "none"
    video_pooling: str = "mean"
    n_frames: int | None = None
    allow_skipped: bool = False
    memory_mib: int | None = None


@dataclass(frozen=True)
class PairScores:
    """Every evaluated pair of a protocol, in protocol order.

    Attributes
    ----------
    protocol : str
        The registry name of the protocol.
    left, right : ndarray, shape (n_pairs,)
        Pair protocols: store ids (str); video protocols: video keys (str); template
        protocols: template ids (integers).
    score : ndarray of float64, shape (n_pairs,)
        Cosine similarity; accept when ``score >= threshold``.
    is_same : ndarray of bool, shape (n_pairs,)
        True for a genuine pair.
    group : ndarray of int, shape (n_pairs,)
        The pair's fold (pair and video protocols) or split (template protocols), from 1.
    group_name : str
        ``"fold"`` or ``"split"``.
    report : FoldReport or SplitReport or None
        The report ``facebench verify`` would print for the same options (None for
        scores that did not come from :func:`compute_scores`).
    """

    protocol: str
    left: npt.NDArray[Any]
    right: npt.NDArray[Any]
    score: npt.NDArray[np.float64]
    is_same: npt.NDArray[np.bool_]
    group: npt.NDArray[np.integer[Any]]
    group_name: str
    report: FoldReport | SplitReport | None = None

    @property
    def n_pairs(self) -> int:
        """Number of pairs."""
        return int(self.score.size)

    @property
    def n_genuine(self) -> int:
        """Number of genuine pairs."""
        return int(self.is_same.sum())


def load_protocol(protocol_name: str, options: ScoreOptions) -> Any:
    """Load a registered protocol with the files ``options`` name, as ``verify`` does
    (:func:`facebench.evaluate.load_protocol`)."""
    from facebench.evaluate import load_protocol as load

    return load(
        protocol_name,
        protocol_dir=options.protocol_dir,
        pairs=options.pairs,
        bin_file=options.bin_file,
        pooling=options.pooling,
        splits=options.splits or (),
    )


def compute_scores(
    protocol_name: str, features: str | Path, options: ScoreOptions | None = None
) -> PairScores:
    """Score every pair of a protocol on a feature store, exactly as ``verify`` does.

    Parameters
    ----------
    protocol_name : str
        A key of :data:`protocols.PROTOCOLS`.
    features : path
        The feature store.
    options : ScoreOptions, optional
        The protocol files and the scoring choices (default: verify's defaults).

    Returns
    -------
    PairScores
        The per-pair arrays of ``evaluate_pairs`` / ``evaluate_templates`` and the report.
    """
    options = options or ScoreOptions()
    protocol = load_protocol(protocol_name, options)
    if PROTOCOLS[protocol_name].kind == "templates":
        from facebench.evaluate_splits import SplitOptions, evaluate_templates

        split_options = SplitOptions(
            pooling=options.pooling,
            flip_fusion=options.flip_fusion,
            splits=options.splits or None,
            allow_skipped=options.allow_skipped,
            score_precision="float64",  # every exported score a float64 one, at any size
        )
        report: FoldReport | SplitReport
        report, data = evaluate_templates(
            protocol, features, split_options, memory_mib=options.memory_mib
        )
        if "score" not in data:
            raise ScoreFileError(
                f"Expected 1:1 pairs in --protocol {protocol_name}, but the splits evaluated"
                " have none (1:N only); `facebench verify` reports their searches"
            )
        group, group_name = np.asarray(data["split"]), "split"
    else:
        from facebench.evaluate import VerifyOptions, evaluate_pairs

        verify_options = VerifyOptions(
            flip_fusion=options.flip_fusion,
            video_pooling=options.video_pooling,
            n_frames=options.n_frames,
            allow_skipped=options.allow_skipped,
        )
        report, data = evaluate_pairs(protocol, features, verify_options)
        group, group_name = data["fold"], "fold"
    return PairScores(
        protocol=protocol_name,
        left=np.asarray(data["left"]),
        right=np.asarray(data["right"]),
        score=np.asarray(data["score"], dtype=np.float64),
        is_same=np.asarray(data["is_same"], dtype=bool),
        group=group,
        group_name=group_name,
        report=report,
    )


def score_paths(output: str | Path, fmt: str) -> tuple[Path, ...]:
    """The files that ``fmt`` writes for ``-o output``.

    ``csv`` and ``bob``: ``output`` itself. ``pyeer``: ``BASE.genuine.txt`` and
    ``BASE.impostor.txt``, ``BASE`` being ``output`` without its suffix.
    """
    if fmt not in SCORE_FORMATS:
        raise ScoreFileError(f"Expected a format in {list(SCORE_FORMATS)}, but got {fmt!r}")
    path = Path(output)
    if fmt != "pyeer":
        return (path,)
    base = path.with_suffix("") if path.suffix else path
    return (
        base.with_name(base.name + ".genuine.txt"),
        base.with_name(base.name + ".impostor.txt"),
    )


def _blocks(n_rows: int) -> Iterator[slice]:
    for start in range(0, n_rows, _ROWS_PER_WRITE):
        yield slice(start, min(start + _ROWS_PER_WRITE, n_rows))


def _write_csv(scores: PairScores, handle: TextIO) -> None:
    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow(["id1", "id2", "score", "label", scores.group_name])
    label = scores.is_same.astype(np.int8)
    for block in _blocks(scores.n_pairs):
        # tolist(): Python floats, which csv writes with repr (every bit of the float64).
        writer.writerows(
            zip(
                scores.left[block].tolist(),
                scores.right[block].tolist(),
                scores.score[block].tolist(),
                label[block].tolist(),
                scores.group[block].tolist(),
                strict=True,
            )
        )


def _check_bob_ids(scores: PairScores) -> None:
    """bob splits lines on whitespace and skips lines that start with ``#``."""
    if scores.left.dtype.kind in "US":
        for item in np.unique(np.concatenate((scores.left, scores.right))).tolist():
            if _WHITESPACE.search(item) or item.startswith("#"):
                raise ScoreFileError(
                    f"Expected ids without whitespace and not starting with '#' for the bob"
                    f" format (bob splits its lines on whitespace), but got {item!r}; write"
                    " --format csv instead"
                )
    same_item = ~scores.is_same & (scores.left == scores.right)
    if same_item.any():
        row = int(np.flatnonzero(same_item)[0])
        raise ScoreFileError(
            f"Expected impostor pairs of two different ids for the bob format (bob reads"
            f" claimed_id == real_id as genuine), but pair {row + 1} compares"
            f" {scores.left[row].item()!r} with itself; write --format csv instead"
        )


def _write_bob(scores: PairScores, handle: TextIO) -> None:
    for block in _blocks(scores.n_pairs):
        left = scores.left[block].tolist()
        right = scores.right[block].tolist()
        handle.writelines(
            f"{a} {a if same else b} {b} {s!r}\n"
            for a, b, same, s in zip(
                left,
                right,
                scores.is_same[block].tolist(),
                scores.score[block].tolist(),
                strict=True,
            )
        )


def _write_lines(values: npt.NDArray[np.float64], handle: TextIO) -> None:
    for block in _blocks(values.size):
        handle.writelines(f"{s!r}\n" for s in values[block].tolist())


def write_scores(
    scores: PairScores, output: str | Path, fmt: str = "csv", *, overwrite: bool = False
) -> tuple[Path, ...]:
    """Write ``scores`` in format ``fmt`` (a key of :data:`SCORE_FORMATS`), atomically.

    Every target (see :func:`score_paths`) is checked before anything is written.

    Returns
    -------
    tuple of Path
        The files written.

    Raises
    ------
    OutputExistsError
        A target exists and ``overwrite`` is false.
    ScoreFileError
        An unknown format, or ids that the bob format cannot hold.
    """
    paths = score_paths(output, fmt)
    for path in paths:
        check_writable(path, overwrite)
    if fmt == "bob":
        _check_bob_ids(scores)
    if fmt == "pyeer":
        parts = (scores.score[scores.is_same], scores.score[~scores.is_same])
        for path, values in zip(paths, parts, strict=True):
            with atomic_path(path, overwrite) as tmp, open(tmp, "w", encoding="utf-8") as handle:
                _write_lines(values, handle)
        return paths
    writer = _write_csv if fmt == "csv" else _write_bob
    with (
        atomic_path(paths[0], overwrite) as tmp,
        open(tmp, "w", encoding="utf-8", newline="") as handle,
    ):
        writer(scores, handle)
    return paths


def export_scores(
    protocol_name: str,
    features: str | Path,
    output: str | Path,
    fmt: str = "csv",
    options: ScoreOptions | None = None,
    *,
    overwrite: bool = False,
) -> tuple[PairScores, tuple[Path, ...]]:
    """:func:`compute_scores`, then :func:`write_scores`; the outputs are checked first.

    The one library call behind ``facebench scores``.
    """
    for path in score_paths(output, fmt):  # fail before any work, never after
        check_writable(path, overwrite)
    if not Path(features).exists():
        raise FacebenchError(
            f"{features}: no such feature store; write one with `facebench import` or"
            " `facebench extract`"
        )
    scores = compute_scores(protocol_name, features, options)
    return scores, write_scores(scores, output, fmt, overwrite=overwrite)
