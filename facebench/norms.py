"""Verification by face quality: pairs grouped by the raw feature norm.

Ranjan, Castillo and Chellappa (2017, *L2-constrained Softmax Loss for Discriminative Face
Verification*) observe that the L2 norm of a feature, before it is normalized, tracks the
quality of the face: blurred, dark, occluded or extreme-pose faces get small norms. This
module measures that on a benchmark: it splits the pairs of a pair protocol into groups by
the raw norm of their worse image and reports verification in each group.

Definitions (recorded in the report's ``conventions``):

Item norm
    The store's ``norms`` value of an item: the raw L2 norm of the image's own feature
    before normalization (mirrored features are not used).
Pair norm
    The *lower* of the two item norms of a pair: a pair is as hard as its worse image.
Groups
    With ``G`` groups, the boundaries are ``b_k = numpy.quantile(pair_norms, k / G)`` for
    ``k = 0..G`` (numpy's default ``"linear"`` method). Group ``g`` (counting from 1) holds
    the pairs with ``b_{g-1} <= pair_norm < b_g``; the last group also holds
    ``pair_norm == b_G``. A pair exactly at an inner boundary belongs to the upper group, so
    with ties the groups need not be of equal size.
Accuracy in a group
    ``kfold_accuracy`` is run once on *all* pairs of the protocol (facebench's k-fold rule:
    per fold, a threshold chosen on the other folds). Every pair is judged with the
    threshold of its own fold, ``correct = (score >= t_fold) == is_same``, and a group's
    accuracy is its correct pairs over its pairs, pooled over the folds. No threshold is
    fit within a group: the operating point is the one the benchmark's accuracy uses, so
    the groups show where that accuracy's errors fall. The groups' correct counts sum to
    the full protocol's.
AUC and TAR at a FAR in a group
    Computed on the group's pairs alone (its own ROC). TAR uses the ``exact`` rule: the
    largest TAR whose FAR within the group is at most the target, flagged
    ``resolution_limited`` when ``target x group impostors < 1``.

Every group needs at least ``MIN_PAIRS_PER_CLASS`` genuine and as many impostor pairs;
fewer is an error, never a silently empty or NaN row.

The figure (:func:`plot_norms`) is drawn from the report alone: the histogram of the item
norms with the group boundaries, and accuracy and TAR per group.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from facebench import __version__
from facebench.errors import FacebenchError
from facebench.metrics import (
    OperatingPoint,
    auc,
    check_scores,
    count_at_thresholds,
    kfold_accuracy,
    tar_at_far,
)
from protocols import PROTOCOLS, PairsProtocol

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

DEFAULT_GROUPS = 3
DEFAULT_FAR_TARGET = 1e-2
#: The fewest genuine, and the fewest impostor, pairs a group may hold.
MIN_PAIRS_PER_CLASS = 2
#: Equal-width bins of the item-norm histogram, over [min, max] of the item norms.
HISTOGRAM_BINS = 50
#: The protocol kinds (``ProtocolSpec.kind``) whose pairs compare single items.
SUPPORTED_KINDS = ("pairs",)
NORMS_SCHEMA_VERSION = 1

CONVENTIONS: dict[str, str] = {
    "score": "cosine similarity, float64 from float32 unit features; no flip fusion",
    "decision": "accept when score >= threshold",
    "item_norm": "the store's raw L2 norm of the image's own feature, before normalization",
    "pair_norm": "the lower of the two item norms of the pair",
    "grouping": "boundaries b_k = numpy.quantile(pair norms, k / G), k = 0..G (method"
    " 'linear'); group g holds b_(g-1) <= pair norm < b_g, the last group also pair norm ="
    " b_G; a pair at an inner boundary belongs to the upper group",
    "accuracy": "facebench k-fold rule (midpoint candidates, median of ties) run once on all"
    " pairs of the protocol gives one threshold per fold, chosen on the other folds; each"
    " pair is judged with its own fold's threshold (no threshold is fit within a group);"
    " group accuracy = correct pairs / pairs of the group, pooled over the folds",
    "auc": "within the group alone (Mann-Whitney, ties count one half)",
    "tar_rule": "exact, within the group alone: the largest TAR whose FAR <= target;"
    " resolution_limited when target x group impostors < 1",
    "histogram": f"{HISTOGRAM_BINS} equal-width bins over [min, max] of the raw norms of the"
    " protocol's distinct items",
    "threshold_inf": "null thresholds: +inf (accepts nothing) or -inf (accepts everything)",
}


@dataclass(frozen=True)
class NormGroup:
    """Verification within one group of pairs of similar pair norm.

    Attributes
    ----------
    group : int
        The group's number, 1 (lowest norms) to G.
    norm_low, norm_high : float
        The group's boundaries ``b_(group-1)`` and ``b_group``: it holds the pairs with
        ``norm_low <= pair_norm < norm_high`` (``<=`` for the last group).
    pair_norm_min, pair_norm_max : float
        The smallest and largest pair norm actually in the group.
    n_pairs, n_genuine, n_impostor : int
        The group's pairs, by label.
    n_correct : int
        Pairs judged right with their fold's threshold from the full protocol.
    accuracy : float
        ``n_correct / n_pairs``.
    auc : float
        Area under the group's own ROC.
    tar_at_far : OperatingPoint
        TAR at the FAR target on the group's own ROC, ``exact`` rule.
    mean_score_genuine, mean_score_impostor : float
        Mean score of the group's genuine and impostor pairs.
    """

    group: int
    norm_low: float
    norm_high: float
    pair_norm_min: float
    pair_norm_max: float
    n_pairs: int
    n_genuine: int
    n_impostor: int
    n_correct: int
    accuracy: float
    auc: float
    tar_at_far: OperatingPoint
    mean_score_genuine: float
    mean_score_impostor: float


@dataclass(frozen=True, eq=False)
class NormGrouping:
    """Pairs grouped by pair norm, with verification per group.

    Attributes
    ----------
    boundaries : ndarray of float64, shape (G + 1,)
        ``b_0 .. b_G``: the quantiles ``k / G`` of the pair norms (``b_0`` = min, ``b_G`` = max).
    group_of_pair : ndarray of int64, shape (n_pairs,)
        The group (1..G) of each pair, in input order.
    fold_ids : ndarray of int64, shape (k,)
        The protocol's folds, ascending.
    fold_thresholds : ndarray of float64, shape (k,)
        The threshold of each fold from ``kfold_accuracy`` on all pairs (may be +-inf).
    fold_accuracies : ndarray of float64, shape (k,)
        Each fold's held-out accuracy on all its pairs.
    groups : tuple of NormGroup
        One per group, lowest norms first.
    """

    boundaries: FloatArray
    group_of_pair: IntArray
    fold_ids: IntArray
    fold_thresholds: FloatArray
    fold_accuracies: FloatArray
    groups: tuple[NormGroup, ...]


def check_n_groups(n_groups: object) -> int:
    """Return ``n_groups`` as an int, or raise :class:`FacebenchError` unless it is >= 2."""
    if isinstance(n_groups, bool) or not isinstance(n_groups, int | np.integer) or n_groups < 2:
        raise FacebenchError(
            f"Expected --groups to be an integer >= 2 (a comparison needs two groups), but got"
            f" {n_groups!r}"
        )
    return int(n_groups)


def check_far_target(far_target: object) -> float:
    """Return ``far_target`` as a float, or raise :class:`FacebenchError` unless in (0, 1]."""
    if isinstance(far_target, bool) or not isinstance(far_target, int | float | np.number):
        raise FacebenchError(f"Expected --far to be a number in (0, 1], but got {far_target!r}")
    value = float(far_target)
    if not 0.0 < value <= 1.0:
        raise FacebenchError(f"Expected --far to be a number in (0, 1], but got {far_target!r}")
    return value


def group_pairs_by_norm(
    scores: npt.ArrayLike,
    is_same: npt.ArrayLike,
    folds: npt.ArrayLike,
    pair_norms: npt.ArrayLike,
    n_groups: int = DEFAULT_GROUPS,
    far_target: float = DEFAULT_FAR_TARGET,
) -> NormGrouping:
    """Group pairs into quantile groups of their pair norm and verify within each group.

    Pure numpy; the rules are those of the module docstring.

    Parameters
    ----------
    scores : array-like of float, shape (n_pairs,)
        Similarity of each pair; accept when ``score >= threshold``.
    is_same : array-like of bool, shape (n_pairs,)
        True for genuine pairs.
    folds : array-like of int, shape (n_pairs,)
        The protocol's fold of each pair (at least two folds).
    pair_norms : array-like of float, shape (n_pairs,)
        The lower raw norm of each pair's two items (finite, >= 0).
    n_groups : int
        G >= 2, the number of quantile groups.
    far_target : float
        The FAR in (0, 1] at which each group's TAR is read.

    Returns
    -------
    NormGrouping

    Raises
    ------
    FacebenchError
        ``n_groups`` < 2, ``far_target`` outside (0, 1], bad scores, labels, folds or norms,
        or a group with fewer than ``MIN_PAIRS_PER_CLASS`` genuine or impostor pairs.
    """
    n_groups = check_n_groups(n_groups)
    far_target = check_far_target(far_target)
    s, y = check_scores(scores, is_same)
    norms = np.asarray(pair_norms)
    if norms.shape != s.shape or norms.dtype.kind not in "iuf":
        raise FacebenchError(
            f"Expected real `pair_norms` of shape {s.shape}, but got dtype {norms.dtype} and"
            f" shape {norms.shape}"
        )
    norms = norms.astype(np.float64)
    if not (np.isfinite(norms).all() and (norms >= 0).all()):
        raise FacebenchError("Expected finite `pair_norms` >= 0, but got NaN, inf or negatives")
    k = kfold_accuracy(s, y, folds)
    fold_of_pair = np.searchsorted(k.fold_ids, np.asarray(folds))
    correct = (s >= k.thresholds[fold_of_pair]) == y

    boundaries = np.quantile(norms, np.arange(n_groups + 1) / n_groups)
    group_of_pair = np.searchsorted(boundaries[1:-1], norms, side="right").astype(np.int64) + 1
    groups = []
    for g in range(1, n_groups + 1):
        member = group_of_pair == g
        n_genuine = int(np.count_nonzero(member & y))
        n_impostor = int(np.count_nonzero(member & ~y))
        closing = "]" if g == n_groups else ")"
        where = f"[{boundaries[g - 1]:.6g}, {boundaries[g]:.6g}{closing}"
        if min(n_genuine, n_impostor) < MIN_PAIRS_PER_CLASS:
            raise FacebenchError(
                f"Expected at least {MIN_PAIRS_PER_CLASS} genuine and {MIN_PAIRS_PER_CLASS}"
                f" impostor pairs in every norm group, but group {g} of {n_groups} (pair"
                f" norm in {where}) has {n_genuine} genuine and {n_impostor} impostor pairs;"
                " use fewer --groups or a protocol with more pairs"
            )
        counts = count_at_thresholds(s[member], y[member])
        groups.append(
            NormGroup(
                group=g,
                norm_low=float(boundaries[g - 1]),
                norm_high=float(boundaries[g]),
                pair_norm_min=float(norms[member].min()),
                pair_norm_max=float(norms[member].max()),
                n_pairs=n_genuine + n_impostor,
                n_genuine=n_genuine,
                n_impostor=n_impostor,
                n_correct=int(np.count_nonzero(correct[member])),
                accuracy=float(np.count_nonzero(correct[member]) / (n_genuine + n_impostor)),
                auc=auc(counts),
                tar_at_far=tar_at_far(counts, [far_target], "exact")[0],
                mean_score_genuine=float(s[member & y].mean()),
                mean_score_impostor=float(s[member & ~y].mean()),
            )
        )
    return NormGrouping(
        boundaries=boundaries,
        group_of_pair=group_of_pair,
        fold_ids=k.fold_ids,
        fold_thresholds=k.thresholds,
        fold_accuracies=k.accuracies,
        groups=tuple(groups),
    )


@dataclass(frozen=True)
class NormHistogram:
    """The raw norms of the protocol's distinct items, summarized.

    Attributes
    ----------
    edges : list of float, length HISTOGRAM_BINS + 1
        Bin edges, equal width over [min, max] (numpy's ``histogram``: the last bin is
        closed; when min == max the range is widened by 0.5 on each side).
    counts : list of int, length HISTOGRAM_BINS
        Items per bin.
    pair_counts : list of int, length HISTOGRAM_BINS
        Pairs per bin by their pair norm (the lower item norm), on the same edges: the
        distribution whose quantiles are the group boundaries.
    n_items : int
    min, max, mean, median : float
        Of the item norms.
    """

    edges: list[float]
    counts: list[int]
    pair_counts: list[int]
    n_items: int
    min: float
    max: float
    mean: float
    median: float


def norm_histogram(item_norms: npt.ArrayLike, pair_norms: npt.ArrayLike) -> NormHistogram:
    """The histogram and summary of ``item_norms`` (shape (n_items,), n_items >= 1), and
    ``pair_norms`` (each one of the item norms) binned on the same edges."""
    values = np.asarray(item_norms, dtype=np.float64)
    counts, edges = np.histogram(values, bins=HISTOGRAM_BINS)
    pair_counts, _ = np.histogram(np.asarray(pair_norms, dtype=np.float64), bins=edges)
    return NormHistogram(
        edges=[float(e) for e in edges],
        counts=[int(c) for c in counts],
        pair_counts=[int(c) for c in pair_counts],
        n_items=int(values.size),
        min=float(values.min()),
        max=float(values.max()),
        mean=float(values.mean()),
        median=float(np.median(values)),
    )


@dataclass(frozen=True)
class NormReport:
    """Verification per norm group on one store and protocol (JSON: :meth:`to_dict`).

    Attributes
    ----------
    protocol, protocol_file, protocol_sha256 : str
        The protocol's name, the pairs file read and its SHA-256.
    store : dict
        The store's identity: ``path`` (resolved), ``content_sha256``, ``model``,
        ``model_sha256``, ``n_items``, ``dim``.
    conventions : dict of str
        :data:`CONVENTIONS`: every rule behind the numbers.
    counts : dict
        What the protocol parser read.
    n_pairs, n_genuine, n_impostor : int
        All pairs of the protocol.
    n_groups : int
    far_target : float
    boundaries : list of float, length n_groups + 1
        ``b_0 .. b_G`` (see :class:`NormGrouping`).
    kfold : dict
        The full protocol's k-fold result behind the group accuracies: ``fold_ids``,
        ``thresholds`` (null = +-inf), ``accuracies``, ``mean`` (mean of the folds'
        accuracies) and ``n_correct`` (all pairs).
    groups : list of NormGroup
    item_norms : NormHistogram
    created, facebench_version : str
    """

    protocol: str
    protocol_file: str
    protocol_sha256: str
    store: dict[str, Any]
    conventions: dict[str, str]
    counts: dict[str, Any]
    n_pairs: int
    n_genuine: int
    n_impostor: int
    n_groups: int
    far_target: float
    boundaries: list[float]
    kfold: dict[str, Any]
    groups: list[NormGroup]
    item_norms: NormHistogram
    created: str
    facebench_version: str
    kind: str = "norms"
    schema_version: int = NORMS_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        """The JSON object: plain types, non-finite floats as ``null``."""
        from facebench.report import jsonable

        data = jsonable(dataclasses.asdict(self))
        ordered = {"schema_version": data.pop("schema_version"), "kind": data.pop("kind")}
        ordered.update(data)
        return ordered

    def to_json(self) -> str:
        """Indented strict JSON (no NaN or Infinity literals)."""
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"


def load_pair_protocol(name: str, pairs: str | os.PathLike[str] | None = None) -> PairsProtocol:
    """Load a registered protocol whose pairs compare single items.

    Raises
    ------
    FacebenchError
        An unknown name, or a protocol of another kind (video or template protocols are not
        supported yet); the message names the supported ones.
    """
    supported = sorted(n for n, spec in PROTOCOLS.items() if spec.kind in SUPPORTED_KINDS)
    spec = PROTOCOLS.get(name)
    if spec is None or spec.kind not in SUPPORTED_KINDS:
        what = "an unknown protocol" if spec is None else f"a protocol of {spec.kind}"
        raise FacebenchError(
            f"Expected a pair protocol for norm groups ({', '.join(supported)}; any LFW-format"
            f" file through --pairs), but --protocol {name} is {what}, not supported yet"
        )
    protocol: PairsProtocol = spec.load(None if pairs is None else Path(pairs))
    return protocol


def analyze_norms(
    protocol: PairsProtocol,
    store_path: str | os.PathLike[str],
    n_groups: int = DEFAULT_GROUPS,
    far_target: float = DEFAULT_FAR_TARGET,
) -> NormReport:
    """Read a store's norms and scores for a pair protocol and verify per norm group.

    Parameters
    ----------
    protocol : PairsProtocol
        Pairs of items (``unit == "item"``) with folds.
    store_path : path-like
        The feature store.
    n_groups, far_target
        As for :func:`group_pairs_by_norm`.

    Raises
    ------
    FacebenchError
        A video protocol, bad ``n_groups`` / ``far_target`` (checked before the store is
        read), a group too small (see :func:`group_pairs_by_norm`).
    facebench.errors.StoreError, facebench.errors.MissingItemsError
        The store cannot be read, lacks items the pairs need (count and first five), or
        skipped them at extraction.
    """
    from facebench.evaluate import drop_skipped_pairs
    from facebench.scoring import pair_scores
    from facebench.store import FeatureStore

    if protocol.unit != "item":
        raise FacebenchError(
            f"Expected a protocol of item pairs, but {protocol.name} pairs {protocol.unit}s;"
            " norm groups support item-pair protocols (lfw) only, for now"
        )
    n_groups = check_n_groups(n_groups)
    far_target = check_far_target(far_target)
    n_folds = int(np.unique(protocol.folds).size)
    if n_folds < 2:
        raise FacebenchError(
            f"{protocol.source}: Expected a pairs file of at least 2 folds (sets), since the"
            f" accuracy's thresholds are chosen on the other folds, but got {n_folds}; use"
            " View 2's pairs.txt or a file of that format"
        )
    with FeatureStore.open(Path(store_path)) as store:
        protocol = drop_skipped_pairs(store, protocol, allow=False)
        scores = pair_scores(store, protocol.left, protocol.right, "none")
        items = protocol.items
        _, norms = store.read_ids(items)
        info = store.info
    position = {item: i for i, item in enumerate(items)}
    n = protocol.n_pairs
    left = np.fromiter((position[k] for k in protocol.left), dtype=np.int64, count=n)
    right = np.fromiter((position[k] for k in protocol.right), dtype=np.int64, count=n)
    item_norms = norms.astype(np.float64)
    pair_norms = np.minimum(item_norms[left], item_norms[right])
    grouping = group_pairs_by_norm(
        scores, protocol.is_same, protocol.folds, pair_norms, n_groups, far_target
    )
    n_genuine = int(protocol.is_same.sum())
    return NormReport(
        protocol=protocol.name,
        protocol_file=protocol.source,
        protocol_sha256=protocol.sha256,
        store={
            "path": str(Path(info.path).resolve()),
            "content_sha256": info.content_sha256,
            "model": info.attributes.get("model", ""),
            "model_sha256": info.attributes.get("model_sha256", ""),
            "n_items": info.n_items,
            "dim": info.dim,
        },
        conventions=dict(CONVENTIONS),
        counts=dict(protocol.counts),
        n_pairs=protocol.n_pairs,
        n_genuine=n_genuine,
        n_impostor=protocol.n_pairs - n_genuine,
        n_groups=n_groups,
        far_target=far_target,
        boundaries=[float(b) for b in grouping.boundaries],
        kfold={
            "fold_ids": [int(f) for f in grouping.fold_ids],
            "thresholds": [float(t) for t in grouping.fold_thresholds],
            "accuracies": [float(a) for a in grouping.fold_accuracies],
            "mean": float(grouping.fold_accuracies.mean()),
            "n_correct": sum(g.n_correct for g in grouping.groups),
        },
        groups=list(grouping.groups),
        item_norms=norm_histogram(item_norms, pair_norms),
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        facebench_version=__version__,
    )


def group_label(report: NormReport, group: NormGroup) -> str:
    """``"[12.3, 17.8)"``: the group's norm range, closed on the right for the last group."""
    closing = "]" if group.group == report.n_groups else ")"
    return f"[{group.norm_low:.4g}, {group.norm_high:.4g}{closing}"


def plot_norms(report: NormReport, title: str | None = None) -> Figure:
    """Draw a norm report: two panels side by side.

    Left: the histogram of the item norms (``report.item_norms``, filled), the pairs' lower
    norms on the same bins (outline), and the inner group boundaries ``b_1 .. b_(G-1)`` as
    dashed vertical lines. Right: each group's accuracy
    (fold thresholds of the full protocol) and TAR at ``far_target`` (within the group) as
    points joined by lines, x = group number, ticks labelled with the group's norm range and
    pair count; a resolution-limited TAR is drawn hollow.

    Returns
    -------
    matplotlib.figure.Figure
        Not registered with pyplot.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11.0, 4.6), layout="constrained")
    hist_axes, group_axes = figure.subplots(1, 2)
    h = report.item_norms
    hist_axes.stairs(h.counts, h.edges, fill=True, color="C0", alpha=0.5, label="items")
    hist_axes.stairs(
        h.pair_counts, h.edges, color="C2", linewidth=1.4, label="pairs, by their lower norm"
    )
    for k, boundary in enumerate(report.boundaries[1:-1], start=1):
        hist_axes.axvline(
            boundary,
            color="C3",
            linestyle="--",
            linewidth=1.2,
            label="group boundaries" if k == 1 else "_nolegend_",
        )
    hist_axes.set_xlabel("raw feature norm (before L2 normalization)")
    hist_axes.set_ylabel("count")
    hist_axes.set_title(
        f"{report.protocol}: raw norms of {h.n_items} items, {report.n_pairs} pairs",
        fontsize="medium",
    )
    hist_axes.legend(loc="upper right", fontsize="small")

    x = np.arange(1, report.n_groups + 1)
    accuracy = [g.accuracy for g in report.groups]
    tar = [g.tar_at_far.tar for g in report.groups]
    group_axes.plot(x, accuracy, marker="o", color="C0", label="accuracy (fold thresholds)")
    group_axes.plot(
        x, tar, marker="s", color="C1", label=f"TAR @ FAR={report.far_target:g} (within group)"
    )
    limited = np.array([g.tar_at_far.resolution_limited for g in report.groups])
    if limited.any():  # hollow: the group has too few impostors to measure that FAR
        group_axes.plot(
            x[limited],
            np.asarray(tar)[limited],
            linestyle="none",
            marker="s",
            color="C1",
            markerfacecolor="white",
            label="resolution-limited TAR",
        )
    for xi, acc, rate in zip(x, accuracy, tar, strict=True):
        # the higher of the two values is labelled above its point, the lower one below
        for value, above in ((acc, acc >= rate), (rate, rate > acc)):
            group_axes.annotate(
                f"{value:.3f}",
                (float(xi), value),
                textcoords="offset points",
                xytext=(0, 7 if above else -13),
                ha="center",
                fontsize="small",
            )
    group_axes.set_xticks(
        x, [f"G{g.group}\n{group_label(report, g)}\n{g.n_pairs} pairs" for g in report.groups]
    )
    group_axes.set_xlim(0.5, report.n_groups + 0.5)
    low = min(min(accuracy), min(tar))
    bottom = max(0.0, low - 0.08 * (1.0 - low) - 0.02)
    group_axes.set_ylim(bottom, 1.0 + 0.07 * (1.0 - bottom))
    group_axes.set_xlabel("group by the pair's lower raw norm")
    group_axes.set_ylabel("rate")
    group_axes.set_title("verification per norm group", fontsize="medium")
    group_axes.grid(True, alpha=0.5)
    group_axes.legend(loc="lower right", fontsize="small")
    if title:
        figure.suptitle(title)
    return figure


def norms_files(
    store_path: str | os.PathLike[str],
    protocol_name: str,
    output: str | os.PathLike[str],
    *,
    pairs: str | os.PathLike[str] | None = None,
    json_path: str | os.PathLike[str] | None = None,
    n_groups: int = DEFAULT_GROUPS,
    far_target: float = DEFAULT_FAR_TARGET,
    overwrite: bool = False,
) -> NormReport:
    """Analyze a store by norm groups, save the figure and (optionally) the JSON report.

    Everything that can be checked before reading the store is checked first: the
    protocol's kind, ``n_groups``, ``far_target``, the figure's suffix (PNG, PDF or SVG,
    :data:`facebench.plotting.FIGURE_FORMATS`) and that no output exists unless
    ``overwrite``. Both outputs are written atomically.

    Returns
    -------
    NormReport
        What was drawn and written.
    """
    from facebench.fileio import check_writable, write_text_atomic
    from facebench.plotting import figure_format, save_figure

    spec = PROTOCOLS.get(protocol_name)
    if spec is None or spec.kind not in SUPPORTED_KINDS:
        load_pair_protocol(protocol_name)  # raises, naming the supported protocols
    n_groups = check_n_groups(n_groups)
    far_target = check_far_target(far_target)
    figure_format(output)
    check_writable(output, overwrite)
    if json_path is not None:
        if Path(json_path).resolve() == Path(output).resolve():
            raise FacebenchError(f"{output}: the figure and --json must be two different files")
        check_writable(json_path, overwrite)
    protocol = load_pair_protocol(protocol_name, pairs)
    report = analyze_norms(protocol, store_path, n_groups, far_target)
    text = report.to_json()
    save_figure(plot_norms(report), output, overwrite=overwrite)
    if json_path is not None:
        write_text_atomic(json_path, text, overwrite)
    return report
