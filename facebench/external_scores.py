"""Scores computed by another tool -> the same metrics and report as ``facebench verify``.

The one library call behind ``facebench verify --scores FILE``. The file lists one pair per
line, ``id1 id2 score label [fold]`` (the format of :mod:`protocols.pairs`, with a score
column: a finite similarity, higher meaning "same"); the CSV that ``facebench scores``
writes is such a file. The metrics, folds and report are exactly those of
:func:`facebench.evaluate.evaluate_pairs`, through the same
:func:`facebench.evaluate.report_scores`; only the scores' origin differs, and the report
says so: its ``store`` section names the score file and its sha256, and its conventions say
the scores were given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from facebench.evaluate import VerifyOptions, report_scores
from facebench.report import FoldReport
from protocols.pairs import parse_scored_pairs

__all__ = ["GIVEN_SCORE", "evaluate_scores"]

#: The report's ``conventions.score`` for scores read from a file.
GIVEN_SCORE = (
    "given: the score column of the scores file (a similarity, higher = same), read as"
    " float64; not computed by facebench"
)


def evaluate_scores(
    path: str | Path, options: VerifyOptions | None = None
) -> tuple[FoldReport, dict[str, npt.NDArray[Any]]]:
    """Evaluate the pairs and scores of a score file.

    Parameters
    ----------
    path : str or Path
        The score file (:func:`protocols.pairs.parse_scored_pairs`).
    options : VerifyOptions, optional
        The metric choices: ``far_targets``, ``tar_rule``, ``compat``, ``label``. The
        scoring options (flip fusion, video pooling, skipped items) do not apply.

    Returns
    -------
    report : FoldReport
        ``protocol`` is ``"scores"``; ``protocol_file`` and ``protocol_sha256`` name the
        score file, as does ``store`` (``kind: "scores file"``, ``path``, ``sha256``).
        Accuracy by the file's folds (10 contiguous folds of pair order when it has no fold
        column); AUC, EER and TAR at each FAR over all pairs pooled.
    pair_data : dict of ndarray
        ``left``, ``right``, ``score``, ``is_same``, ``fold`` for ``report.scores.npz``.

    Raises
    ------
    InputFormatError
        A malformed score file (naming the file and line).
    MetricInputError
        Labels of one class only.
    """
    options = options or VerifyOptions()
    scored = parse_scored_pairs(path, name="scores")
    protocol = scored.protocol
    source = {
        "kind": "scores file",
        "path": str(Path(path).resolve()),
        "sha256": protocol.sha256,
        "attributes": {},
    }
    scoring = {"score": GIVEN_SCORE, "flip_fusion": None}
    return report_scores(
        protocol, np.asarray(scored.scores, dtype=np.float64), source, options, scoring
    )
