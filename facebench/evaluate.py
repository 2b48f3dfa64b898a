"""Store + protocol -> scores -> metrics -> report.

The one library call behind ``facebench verify`` for fold protocols. Scores are cosine
similarities computed in float64 from the store's float32 unit features (after the chosen
flip fusion); metrics come from :mod:`facebench.metrics`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from facebench import __version__
from facebench.errors import FacebenchError, MissingItemsError
from facebench.metrics import (
    auc,
    count_at_thresholds,
    equal_error_rate,
    kfold_accuracy,
    tar_at_far,
)
from facebench.metrics.compat import COMPAT_KFOLD, COMPAT_VAL_AT_FAR, contiguous_fold_bounds
from facebench.metrics.counts import ThresholdCounts
from facebench.report import Accuracy, FoldReport, json_float
from facebench.scoring import pair_scores, video_pair_scores
from facebench.store import FeatureStore
from protocols import PairsProtocol

DEFAULT_FAR_TARGETS = (1e-3, 1e-2)
ROC_POINTS = 1000


@dataclass(frozen=True)
class VerifyOptions:
    """Every choice that changes a number, recorded in the report's ``conventions``.

    Attributes
    ----------
    far_targets : tuple of float
        FARs at which TAR is reported.
    tar_rule : str
        A key of :data:`facebench.metrics.TAR_RULES` (default ``exact``).
    compat : str or None
        None for facebench's k-fold rule, else a key of
        :data:`facebench.metrics.compat.COMPAT_KFOLD` that reproduces that tool's accuracy.
    flip_fusion : str
        A key of :data:`facebench.fusion.FLIP_FUSIONS` (default ``none``).
    video_pooling, n_frames
        Video protocols (YTF): how a video's frame features are pooled (``mean``, ``first``
        with ``n_frames``, ``pair-mean``).
    allow_skipped : bool
        Evaluate without the pairs that need an item extraction skipped (``--skip-bad``),
        recording them in the report; by default such pairs are an error.
    label : str or None
        A name for the report (plots use it in the legend).
    """

    far_targets: tuple[float, ...] = DEFAULT_FAR_TARGETS
    tar_rule: str = "exact"
    compat: str | None = None
    flip_fusion: str = "none"
    video_pooling: str = "mean"
    n_frames: int | None = None
    allow_skipped: bool = False
    label: str | None = None


def load_protocol(
    protocol_name: str,
    *,
    protocol_dir: str | Path | None = None,
    pairs: str | Path | None = None,
    bin_file: str | Path | None = None,
    pooling: str = "media",
    splits: Sequence[int] = (),
    defer_pairs: bool = False,
) -> Any:
    """Load a registered protocol from the files the user named (``verify``, ``scores``).

    Template protocols (IJB) read ``protocol_dir`` (the landmarks file of IJB-B/C only for
    ``insightface`` pooling, the one mode that uses detector scores); pair protocols read
    ``--pairs`` or ``--bin`` (:func:`definition_file`), or their shipped file.

    ``defer_pairs``: IJB-B/C come back as a :class:`protocols.DeferredTemplateProtocol`, their
    pair file still being read (for :func:`facebench.evaluate_splits.evaluate_templates`).

    Returns
    -------
    PairsProtocol or TemplateProtocol (or DeferredTemplateProtocol)

    Raises
    ------
    FacebenchError
        An unknown protocol, an IJB protocol without ``protocol_dir``, or an option of the
        other kind of protocol (``--pairs``/``--bin`` with IJB, ``--protocol-dir``/``--split``
        with a pair protocol).
    """
    from protocols import PROTOCOLS

    spec = PROTOCOLS.get(protocol_name)
    if spec is None:
        raise FacebenchError(
            f"Expected --protocol in {sorted(PROTOCOLS)}, but got {protocol_name!r}"
        )
    if spec.kind == "templates":
        if protocol_dir is None:
            raise FacebenchError(
                f"--protocol {protocol_name} needs --protocol-dir: the folder of your copy of"
                " the protocol files (they are licensed and not shipped)"
            )
        for definition, flag in ((pairs, "--pairs"), (bin_file, "--bin")):
            if definition is not None:
                raise FacebenchError(
                    f"Expected --protocol-dir for --protocol {protocol_name}, but got {flag};"
                    f" {flag} gives the definition file of a pair protocol (lfw, ytf, bin,"
                    " pairs)"
                )
        extra = {"detector_scores": pooling == "insightface"} if spec.detector_scores else {}
        if defer_pairs and spec.defers_pairs:
            extra["defer_pairs"] = True
        return spec.load(protocol_dir, **extra)
    for given, name in ((protocol_dir, "--protocol-dir"), (splits, "--split")):
        if given:
            raise FacebenchError(f"{name} is for IJB protocols, not --protocol {protocol_name}")
    return spec.load(definition_file(protocol_name, pairs, bin_file))


def definition_file(
    protocol_name: str, pairs: str | Path | None, bin_file: str | Path | None
) -> Path | None:
    """The file that defines a protocol's pairs, from ``--pairs`` and ``--bin``.

    ``bin`` takes ``--bin FILE`` (a .bin holds its own pairs); every other protocol takes
    ``--pairs`` (None: the protocol's shipped file, where it has one).

    Raises
    ------
    FacebenchError
        ``--pairs`` with ``bin``, or ``--bin`` with another protocol.
    """
    if protocol_name == "bin":
        if pairs is not None:
            raise FacebenchError(
                "Expected --bin FILE with --protocol bin, but got --pairs; a .bin holds its"
                " own pairs"
            )
        return None if bin_file is None else Path(bin_file)
    if bin_file is not None:
        raise FacebenchError(
            f"Expected --bin only with --protocol bin, but got --protocol {protocol_name};"
            " use --protocol bin --bin FILE"
        )
    return None if pairs is None else Path(pairs)


def drop_skipped_pairs(store: FeatureStore, protocol: PairsProtocol, allow: bool) -> PairsProtocol:
    """The protocol without the pairs that need an item the store recorded as skipped.

    Raises
    ------
    MissingItemsError
        When such pairs exist and ``allow`` is false: never drop a pair silently.
    """
    skipped = store.skipped()
    if not skipped:
        return protocol
    lost = np.fromiter(
        (a in skipped or b in skipped for a, b in zip(protocol.left, protocol.right, strict=True)),
        dtype=bool,
        count=protocol.n_pairs,
    )
    if not lost.any():
        return protocol
    needed = sorted(
        {
            k
            for a, b in zip(protocol.left, protocol.right, strict=True)
            for k in (a, b)
            if k in skipped
        }
    )
    first = "; ".join(f"{k} ({skipped[k]})" for k in needed[:3])
    if not allow:
        raise MissingItemsError(
            f"{store.info.path}: {int(lost.sum())} of {protocol.n_pairs} pairs need"
            f" {len(needed)} items that extraction skipped (first: {first}); fix those images"
            " and extract again, or pass --allow-skipped to evaluate the remaining pairs (the"
            " report records what was dropped)"
        )
    keep = ~lost
    return dataclasses.replace(
        protocol,
        left=tuple(k for k, ok in zip(protocol.left, keep, strict=True) if ok),
        right=tuple(k for k, ok in zip(protocol.right, keep, strict=True) if ok),
        is_same=protocol.is_same[keep],
        folds=protocol.folds[keep],
        counts={
            **protocol.counts,
            "pairs_dropped_skipped": int(lost.sum()),
            "items_skipped_needed": len(needed),
        },
        warnings=(
            *protocol.warnings,
            f"{int(lost.sum())} pairs were dropped because extraction skipped {len(needed)} of"
            f" their images (--allow-skipped; first: {first}): numbers are not comparable with"
            " results on the full protocol",
        ),
    )


def note_skipped_frames(store: FeatureStore, protocol: PairsProtocol) -> PairsProtocol:
    """Video protocols: frames skipped at extraction shrink a video; say so in the report."""
    needed = set(protocol.left) | set(protocol.right)
    lost = [k for k in store.skipped() if k.rpartition("/")[0] in needed]
    if not lost:
        return protocol
    return dataclasses.replace(
        protocol,
        counts={**protocol.counts, "frames_skipped": len(lost)},
        warnings=(
            *protocol.warnings,
            f"{len(lost)} frames of the protocol's videos were skipped at extraction (first:"
            f" {lost[0]}); those videos are pooled from their remaining frames",
        ),
    )


def downsample_roc(counts: ThresholdCounts, n_points: int = ROC_POINTS) -> dict[str, list[Any]]:
    """At most about ``n_points`` true operating points for plotting.

    For FARs spaced evenly on a log scale from 1/n_impostor to 1 (and evenly on a linear
    scale), the operating point with the largest TAR at or below each FAR is kept, plus the
    first and last points. No point is interpolated.
    """
    imp, gen = counts.impostor_sorted, counts.genuine_sorted
    n_imp = counts.n_impostor
    half = max(n_points // 2, 2)
    budgets = np.concatenate((np.geomspace(1.0, n_imp, half), np.linspace(0.0, n_imp, half)))
    allowed = np.floor(budgets + 1e-9)
    # The last operating point with at most `allowed` impostors accepted: the lowest score
    # above the (allowed + 1)-th highest impostor score (+inf when none is above it); every
    # score when everything is allowed. Then the first and the last point, in order.
    within = allowed < imp.size
    v = imp[imp.size - 1 - allowed[within].astype(np.int64)]
    next_imp = np.searchsorted(imp, v, side="right")
    next_gen = np.searchsorted(gen, v, side="right")
    lowest = min(imp[0], gen[0]) if gen.size else imp[0]
    thresholds = np.concatenate(
        (
            [np.inf, lowest],
            np.minimum(
                np.append(imp, np.inf)[next_imp],
                np.append(gen, np.inf)[next_gen],
            ),
            np.full(int((~within).sum()), lowest),
        )
    )
    thresholds = np.unique(thresholds)[::-1]  # distinct, from +inf down
    fp = imp.size - np.searchsorted(imp, thresholds, side="left")
    tp = gen.size - np.searchsorted(gen, thresholds, side="left")
    return {
        "far": [float(x) for x in fp / n_imp],
        "tar": [float(x) for x in tp / counts.n_genuine],
        "threshold": [json_float(x) for x in thresholds],
    }


def _accuracy(
    scores: npt.NDArray[np.float64], protocol: PairsProtocol, compat: str | None
) -> tuple[Accuracy, dict[str, Any] | None]:
    """The report's accuracy, and the peer's own figures when ``compat`` is set."""
    if compat is None:
        k = kfold_accuracy(scores, protocol.is_same, protocol.folds)
        return (
            Accuracy(
                mean=k.mean,
                std=k.std,
                stderr=k.stderr,
                folds=[float(a) for a in k.accuracies],
                thresholds=[float(t) for t in k.thresholds],
                rule="facebench: midpoint candidates, median of ties, accept score >= t",
                std_kind="std ddof=1; stderr = std / sqrt(k)",
            ),
            None,
        )
    if compat not in COMPAT_KFOLD:
        raise FacebenchError(f"Expected --compat in {sorted(COMPAT_KFOLD)}, but got {compat!r}")
    n_folds = int(np.unique(protocol.folds).size)
    result = COMPAT_KFOLD[compat](scores, protocol.is_same, n_folds=n_folds)
    std = float(np.std(result.fold_accuracies, ddof=1))
    accuracy = Accuracy(
        mean=float(result.mean),
        std=std,
        stderr=std / math.sqrt(n_folds),
        folds=[float(a) for a in result.fold_accuracies],
        thresholds=[float(t) for t in result.fold_thresholds],
        rule=f"{compat} compatibility: {result.decision_rule}",
        std_kind="std ddof=1; stderr = std / sqrt(k); the peer's own spread is in `compat`",
    )
    peer: dict[str, Any] = {
        "rule": compat,
        "decision_rule": result.decision_rule,
        "folds": f"{n_folds} contiguous blocks of pair order (the peer's KFold)",
        "mean": float(result.mean),
        "spread": float(result.spread),
        "spread_kind": result.std_kind,
    }
    if compat in COMPAT_VAL_AT_FAR:
        val = COMPAT_VAL_AT_FAR[compat](scores, protocol.is_same, n_folds=n_folds)
        peer["val_at_far"] = {
            "far_target": float(val.far_target),
            "val_mean": float(val.val_mean),
            "val_std": float(val.val_std),
            "far_mean": float(val.far_mean),
            "fold_thresholds": [json_float(t) for t in val.fold_thresholds],
        }
    return accuracy, peer


def store_summary(store: FeatureStore) -> dict[str, Any]:
    """The store's identity for a report: path, content checksum, attributes."""
    info = store.info
    return {
        "path": str(Path(info.path).resolve()),
        "content_sha256": info.content_sha256,
        "n_items": info.n_items,
        "dim": info.dim,
        "has_flip": info.has_flip,
        "attributes": dict(info.attributes),
    }


def _folds_convention(protocol: PairsProtocol) -> str:
    if protocol.counts.get("folds_from_order"):
        return (
            f"{int(np.unique(protocol.folds).size)} contiguous blocks of pair order, as"
            " KFold(n_splits=k, shuffle=False) (insightface): the first n % k one pair longer"
        )
    return "the folds of the protocol file, never re-split"


def _compat_fold_warning(protocol: PairsProtocol, compat: str | None) -> list[str]:
    """The peers split pairs into contiguous blocks of pair order; say so when the
    protocol's own folds differ (the compat figures then use other folds than the file's)."""
    if compat is None:
        return []
    n_folds = int(np.unique(protocol.folds).size)
    blocks = np.repeat(
        np.arange(n_folds), np.diff(contiguous_fold_bounds(protocol.n_pairs, n_folds))
    )
    own = np.unique(protocol.folds, return_inverse=True)[1].reshape(-1)
    if np.array_equal(own, blocks):
        return []
    return [
        f"--compat {compat} splits the pairs into {n_folds} contiguous blocks of pair order, as"
        f" the peer does; {protocol.source} defines other folds, so the accuracy follows the"
        " peer's blocks, not the file's folds"
    ]


def report_scores(
    protocol: PairsProtocol,
    scores: npt.NDArray[np.float64],
    source: dict[str, Any],
    options: VerifyOptions,
    scoring: dict[str, Any],
) -> tuple[FoldReport, dict[str, npt.NDArray[Any]]]:
    """The metrics and report of scored fold-protocol pairs.

    The one place where a fold report is computed: :func:`evaluate_pairs` (scores from a
    feature store) and :func:`facebench.external_scores.evaluate_scores` (scores from a
    file) both end here.

    Parameters
    ----------
    protocol : PairsProtocol
        The pairs, labels and folds (n_pairs of each).
    scores : ndarray of float64, shape (n_pairs,)
        The score of each pair; accept when ``score >= threshold``.
    source : dict
        The report's ``store`` section: where the scores come from.
    options : VerifyOptions
        The metric choices (``far_targets``, ``tar_rule``, ``compat``, ``label``).
    scoring : dict
        The conventions of how the scores were made (``score``, ``flip_fusion``, ...),
        placed in the report's ``conventions``.

    Returns
    -------
    report : FoldReport
        Accuracy by folds; AUC, EER and TAR at each FAR over all pairs pooled.
    pair_data : dict of ndarray
        Per-pair arrays for ``report.scores.npz``: ``left``, ``right`` (ids), ``score``,
        ``is_same``, ``fold``.
    """
    counts = count_at_thresholds(scores, protocol.is_same)
    accuracy, peer = _accuracy(scores, protocol, options.compat)
    eer = equal_error_rate(counts)
    points = tar_at_far(counts, options.far_targets, options.tar_rule)
    extra: dict[str, Any] = {} if peer is None else {"compat": peer}
    conventions = {
        "score": scoring["score"],
        "decision": "accept when score >= threshold",
        "accuracy": accuracy.rule,
        "folds": _folds_convention(protocol),
        "pooled": "AUC, EER and TAR@FAR over all pairs pooled; accuracy by folds",
        "tar_rule": options.tar_rule,
        "eer": "FAR = FRR on the piecewise-linear ROC; threshold = first point with FAR >= FRR",
        **{key: value for key, value in scoring.items() if key != "score"},
        "compat": options.compat,
        "threshold_inf": "null thresholds: +inf (accepts nothing) or -inf (accepts everything)",
    }
    n_genuine = int(protocol.is_same.sum())
    report = FoldReport(
        protocol=protocol.name,
        protocol_file=protocol.source,
        protocol_sha256=protocol.sha256,
        store=source,
        conventions=conventions,
        counts=dict(protocol.counts),
        warnings=[*protocol.warnings, *_compat_fold_warning(protocol, options.compat)],
        n_pairs=protocol.n_pairs,
        n_genuine=n_genuine,
        n_impostor=protocol.n_pairs - n_genuine,
        accuracy=accuracy,
        auc=auc(counts),
        eer=eer.eer,
        eer_threshold=eer.threshold,
        tar_at_far=points,
        roc=downsample_roc(counts),
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        facebench_version=__version__,
        label=options.label,
        extra=extra,
    )
    pair_data = {
        "left": np.asarray(protocol.left, dtype=str),
        "right": np.asarray(protocol.right, dtype=str),
        "score": scores,
        "is_same": protocol.is_same,
        "fold": protocol.folds,
    }
    return report, pair_data


def evaluate_pairs(
    protocol: PairsProtocol, store_path: str | Path, options: VerifyOptions | None = None
) -> tuple[FoldReport, dict[str, npt.NDArray[Any]]]:
    """Evaluate a fold protocol on a feature store.

    Scores every pair from the store (cosine similarity after the flip fusion; videos
    pooled as ``options`` say), then :func:`report_scores`.

    Returns
    -------
    report : FoldReport
        Accuracy by folds; AUC, EER and TAR at each FAR over all pairs pooled.
    pair_data : dict of ndarray
        Per-pair arrays for ``report.scores.npz``: ``left``, ``right`` (ids), ``score``,
        ``is_same``, ``fold``.
    """
    options = options or VerifyOptions()
    with FeatureStore.open(store_path) as store:
        if protocol.unit == "video":
            protocol = note_skipped_frames(store, protocol)
        else:
            protocol = drop_skipped_pairs(store, protocol, options.allow_skipped)
        if protocol.unit == "video":
            scores = video_pair_scores(
                store,
                protocol.left,
                protocol.right,
                options.flip_fusion,
                options.video_pooling,
                options.n_frames,
            )
        else:
            scores = pair_scores(store, protocol.left, protocol.right, options.flip_fusion)
        store_info = store_summary(store)
    scoring: dict[str, Any] = {
        "score": "cosine similarity, float64 from float32 unit features",
        "flip_fusion": options.flip_fusion,
    }
    if protocol.unit == "video":
        scoring.update(video_pooling=options.video_pooling, n_frames=options.n_frames)
    return report_scores(protocol, scores, store_info, options, scoring)
