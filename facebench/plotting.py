"""ROC, DET and CMC figures over facebench reports (PROTOCOLS.md, "Reports").

The figures are drawn from what a report holds: the downsampled ``roc`` curve (fold
protocols) or every split's ``roc`` (split protocols), and the exact ``tar_at_far``
operating points; for CMC, each 1:N search's ``cmc_curve`` (split protocols with 1:N) and
the summary's ``cmc``. Nothing is recomputed and no point is invented; the only arithmetic
is the mean of the splits' curves that a multi-split CMC figure draws as its main line.

matplotlib (and scipy, for the DET axes) are imported inside the functions that draw, so
``import facebench.plotting`` stays cheap. Figures are built with
:class:`matplotlib.figure.Figure` directly rather than through ``pyplot``: they need no
display and no GUI backend, are not kept alive by pyplot's registry of open figures, and the
caller's backend choice (a notebook's, say) is left alone. matplotlib recommends this for
code that renders files without a display ("Embedding in a web application server").
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from facebench.errors import FacebenchError, ReportError
from facebench.fileio import atomic_path, check_writable
from facebench.report import load_report

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: The figure formats, by output suffix: the keyword arguments given to ``Figure.savefig``.
#: The format is always explicit because the temporary file's suffix is ``.tmp``; PDF and
#: SVG carry no creation date, so the same reports give the same bytes.
FIGURE_FORMATS: dict[str, dict[str, Any]] = {
    ".png": {"format": "png", "dpi": 150},
    ".pdf": {"format": "pdf", "metadata": {"CreationDate": None}},
    ".svg": {"format": "svg", "metadata": {"Date": None}},
}

#: DET tick positions, in percent; those inside the axis limits are shown.
DET_TICKS_PERCENT = (1e-5, 1e-4, 1e-3, 0.01, 0.1, 1, 2, 5, 10, 20, 40, 60, 80, 90, 95, 98, 99)

ROC_XLABEL = "False accept rate (FAR)"
ROC_YLABEL = "True accept rate (TAR)"
DET_YLABEL = "False reject rate (FRR)"
CMC_XLABEL = "Rank"
CMC_YLABEL = "Identification rate (closed set)"

#: The ``gallery`` of the averaged 1:N entry (IJB-B/C: the mean over the two galleries).
MEAN_GALLERY = "mean"
#: Line styles of the individual galleries in a CMC figure (G1, G2 / S1, S2, then more).
GALLERY_LINESTYLES = ("--", ":", "-.")


class PlotError(FacebenchError):
    """A plotting request cannot be met (an unknown output format, a wrong number of labels)."""


@dataclass(frozen=True)
class RocCurve:
    """One ROC curve as stored in a report, with its exact operating points.

    Attributes
    ----------
    far, tar : numpy.ndarray, shape (n_points,)
        The report's downsampled curve: element i is the false / true accept rate of the
        i-th stored threshold, FAR ascending; the first point (threshold ``null``) accepts
        nothing.
    point_far, point_tar : numpy.ndarray, shape (n_operating_points,)
        ``far_achieved`` and ``tar`` of each ``tar_at_far`` entry whose ``tar`` is not null.
    n_genuine, n_impostor : int
        The numbers of genuine and impostor pairs behind the rates.
    """

    far: np.ndarray
    tar: np.ndarray
    point_far: np.ndarray
    point_tar: np.ndarray
    n_genuine: int
    n_impostor: int


@dataclass(frozen=True)
class CmcCurves:
    """What one split report contributes to a CMC figure.

    Every curve is an identification rate per rank: element ``r - 1`` is the rate at rank
    ``r`` (the fraction of mated probes whose mate is within rank ``r``), ``r = 1..n_ranks``.

    Attributes
    ----------
    name : str
        The legend name before disambiguation (see :func:`plot_roc`).
    headline : str or None
        The summary's rank-1 rate (see :func:`cmc_headline`).
    mean : numpy.ndarray, shape (n_ranks,)
        The main line: the mean over the splits of each split's headline search (the
        ``gallery: "mean"`` entry when there are several galleries, else the only one).
    splits : numpy.ndarray, shape (n_splits, n_ranks)
        Each split's headline search.
    galleries : tuple of (str, numpy.ndarray of shape (n_ranks,))
        With several galleries (IJB-B/C: G1, G2 or S1, S2), each gallery's curve averaged
        over the splits, in report order; empty with one gallery (IJB-A).
    point_rank, point_rate : numpy.ndarray, shape (n_points,)
        The summary's ``cmc`` ranks (``"1"``, ``"5"``, ``"10"``) within ``1..n_ranks`` and
        their mean rates over the splits.
    """

    name: str
    headline: str | None
    mean: np.ndarray
    splits: np.ndarray
    galleries: tuple[tuple[str, np.ndarray], ...]
    point_rank: np.ndarray
    point_rate: np.ndarray


@dataclass(frozen=True)
class ReportCurves:
    """What one report contributes to a figure.

    Attributes
    ----------
    name : str
        The legend name before disambiguation (see :func:`plot_roc`).
    headline : str or None
        The headline figure shown after the name (see :func:`report_headline`).
    curves : tuple of RocCurve
        One curve for a fold protocol, one per split for a split protocol.
    is_split : bool
        Whether the report is a split protocol's (``splits``).
    """

    name: str
    headline: str | None
    curves: tuple[RocCurve, ...]
    is_split: bool


def figure_format(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Return the ``savefig`` keyword arguments for the output ``path``, chosen by its suffix.

    Raises
    ------
    PlotError
        When the suffix (case-insensitive) is not one of :data:`FIGURE_FORMATS`.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in FIGURE_FORMATS:
        raise PlotError(
            f"{path}: expected an output suffix in {', '.join(FIGURE_FORMATS)}, but got"
            f" {suffix or 'none'!r}; choose a file name ending in one of them"
        )
    return dict(FIGURE_FORMATS[suffix])


def report_headline(report: Mapping[str, Any]) -> str | None:
    """Return the headline figure of a report, as shown in a legend.

    Fold protocols: ``"acc 99.12% ± 0.13 (s.e.)"``, the mean accuracy over the folds and its
    standard error, in percent. Split protocols: the summary TAR at the smallest
    ``far_target``, ``"TAR@FAR=1e-4 0.909 ± 0.010"`` (mean ± std over the splits; the
    ``± std`` part is left out when std is null, as with a single split).

    Returns
    -------
    str or None
        None when the report does not hold the figure (no ``accuracy`` / ``summary``).
    """
    if "splits" in report:
        summary = report.get("summary")
        rows = summary.get("tar_at_far") if isinstance(summary, Mapping) else None
        if not isinstance(rows, list):
            return None
        rows = [
            r for r in rows if isinstance(r, Mapping) and _number(r.get("far_target")) is not None
        ]
        if not rows:
            return None
        row = min(rows, key=lambda r: float(r["far_target"]))
        mean, std = _number(row.get("mean")), _number(row.get("std"))
        if mean is None:
            return None
        text = f"TAR@FAR={_format_far(float(row['far_target']))} {mean:.3f}"
        return text if std is None else f"{text} ± {std:.3f}"
    accuracy = report.get("accuracy")
    if not isinstance(accuracy, Mapping):
        return None
    mean, stderr = _number(accuracy.get("mean")), _number(accuracy.get("stderr"))
    if mean is None:
        return None
    text = f"acc {100 * mean:.2f}%"
    return text if stderr is None else f"{text} ± {100 * stderr:.2f} (s.e.)"


def cmc_headline(report: Mapping[str, Any]) -> str | None:
    """Return the 1:N headline of a split report, as shown in a CMC legend.

    ``"rank-1 0.825 ± 0.035"``: the summary's rank-1 identification rate, mean ± std over
    the splits (the ``± std`` part is left out when std is null, as with a single split).

    Returns
    -------
    str or None
        None when the report holds no ``summary.cmc["1"]`` mean.
    """
    summary = report.get("summary")
    cmc = summary.get("cmc") if isinstance(summary, Mapping) else None
    rank_1 = cmc.get("1") if isinstance(cmc, Mapping) else None
    if not isinstance(rank_1, Mapping):
        return None
    mean, std = _number(rank_1.get("mean")), _number(rank_1.get("std"))
    if mean is None:
        return None
    text = f"rank-1 {mean:.3f}"
    return text if std is None else f"{text} ± {std:.3f}"


def plot_roc(
    reports: Sequence[Mapping[str, Any]],
    *,
    sources: Sequence[str | os.PathLike[str]] | None = None,
    labels: Sequence[str] | None = None,
    det: bool = False,
    title: str | None = None,
) -> Figure:
    """Draw the ROC (or DET) curves of several reports into one figure.

    Each report gets one colour: a fold report one line, a split report one thin line per
    split (one legend entry). Each ``tar_at_far`` operating point is marked at
    (``far_achieved``, ``tar``), the exact point on the curve, not read off the downsampled
    curve.

    ROC (default): TAR against FAR, FAR on a log axis from the smallest measurable FAR,
    1 / (largest ``n_impostor`` among the plotted reports and splits), to 1. A point with
    FAR = 0 cannot be drawn on a log axis: each curve starts at its first point with FAR > 0,
    and operating points with ``far_achieved`` = 0 are not marked.

    DET (``det=True``): FRR = 1 - TAR against FAR, both on a normal-deviate (probit) axis
    (``scipy.stats.norm.ppf``), ticks labelled in percent. Rates of 0 and 1 have no probit,
    so for drawing only, FAR is clipped to [1/(2 n_impostor), 1 - 1/(2 n_impostor)] and FRR
    to [1/(2 n_genuine), 1 - 1/(2 n_genuine)] (the counts of that report or split); a curve
    point at such a bound stands for a measured rate of 0 or 1.

    Parameters
    ----------
    reports : sequence of mapping
        Reports as returned by :func:`facebench.report.load_report`.
    sources : sequence of path-like, optional
        Where each report came from: named in errors and, by its stem, in the legend.
        Defaults to ``"report 1"``, ``"report 2"``, ...
    labels : sequence of str, optional
        Legend names, one per report, overriding the default: the report's ``label``, else
        ``store.attributes.model``, else the source's stem. Names that occur twice get the
        source's stem appended (then the whole source, then a number).
    det : bool
        Draw a DET plot instead of a ROC.
    title : str, optional
        The axes title.

    Returns
    -------
    matplotlib.figure.Figure
        The figure, one axes, not registered with pyplot.

    Raises
    ------
    PlotError
        When there is no report, or ``sources`` / ``labels`` do not have one entry per report.
    facebench.errors.ReportError
        When a report has no ``roc`` (nor ``roc`` in every split) or malformed curve data.
    """
    from matplotlib.figure import Figure

    names_of_sources = _sources(reports, sources, labels)
    entries = [
        _read_report(report, source, None if labels is None else labels[i])
        for i, (report, source) in enumerate(zip(reports, names_of_sources, strict=True))
    ]
    names = _distinct_names([e.name for e in entries], names_of_sources)
    legend = [
        n if e.headline is None else f"{n}, {e.headline}"
        for n, e in zip(names, entries, strict=True)
    ]

    figure = Figure(figsize=(7.0, 5.6), layout="constrained")
    axes = figure.add_subplot()
    if det:
        _draw_det(axes, entries, legend)
    else:
        _draw_roc(axes, entries, legend)
    axes.grid(True, which="major", alpha=0.5)
    axes.legend(loc="upper right" if det else "lower right", fontsize="small")
    if title:
        axes.set_title(title)
    return figure


def plot_cmc(
    reports: Sequence[Mapping[str, Any]],
    *,
    sources: Sequence[str | os.PathLike[str]] | None = None,
    labels: Sequence[str] | None = None,
    title: str | None = None,
) -> Figure:
    """Draw the CMC curves (identification rate against rank) of several split reports.

    Each report gets one colour and one bold main line: the mean over its splits of each
    split's headline search (``cmc_curve`` of the ``gallery: "mean"`` entry when a split
    searches several galleries, else of its only search). With several splits (IJB-A) each
    split's curve is drawn thin in the same colour; with several galleries (IJB-B/C) each
    gallery's curve is drawn in the same colour, dashed (first gallery), dotted (second),
    with its own legend entry and rank-1 rate, and the main line's entry says what it
    averages (``"name (mean of G1 & G2), ..."``). The summary's ``cmc`` ranks (1, 5, 10) are
    marked on the main line. The main line's legend entry gives the summary's rank-1 rate,
    mean ± std over the splits (see :func:`cmc_headline`).

    Axes: rank from 1 to the longest ``cmc_curve`` on a linear axis with a tick at every
    integer rank; rate from 0 to 1.

    Parameters
    ----------
    reports, sources, labels, title
        As for :func:`plot_roc`.

    Returns
    -------
    matplotlib.figure.Figure
        The figure, one axes, not registered with pyplot.

    Raises
    ------
    PlotError
        When there is no report, or ``sources`` / ``labels`` do not have one entry per report.
    facebench.errors.ReportError
        When a report has no 1:N results (a fold report such as LFW or YTF, or a split
        report verified without the 1:N files), or malformed ones (a missing or bad
        ``cmc_curve``, splits with different galleries or curve lengths).
    """
    from matplotlib.figure import Figure

    names_of_sources = _sources(reports, sources, labels)
    entries = [
        _read_cmc_report(report, source, None if labels is None else labels[i])
        for i, (report, source) in enumerate(zip(reports, names_of_sources, strict=True))
    ]
    names = _distinct_names([e.name for e in entries], names_of_sources)

    figure = Figure(figsize=(7.0, 5.6), layout="constrained")
    axes = figure.add_subplot()
    for i, (entry, name) in enumerate(zip(entries, names, strict=True)):
        _draw_cmc(axes, f"C{i}", entry, name)
    n_ranks = max(e.mean.size for e in entries)
    axes.set_xlim(1 - 0.5, n_ranks + 0.5)
    axes.set_xticks(range(1, n_ranks + 1))
    axes.set_ylim(0.0, 1.0)
    axes.set_xlabel(CMC_XLABEL)
    axes.set_ylabel(CMC_YLABEL)
    axes.grid(True, which="major", alpha=0.5)
    axes.legend(loc="lower right", fontsize="small")
    if title:
        axes.set_title(title)
    return figure


def save_figure(figure: Figure, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Save ``figure`` to ``path`` atomically, in the format its suffix names.

    PNG is written at 150 dpi. The figure is rendered into a temporary file beside ``path``
    which is then renamed onto it.

    Raises
    ------
    PlotError
        When the suffix is not one of :data:`FIGURE_FORMATS`.
    facebench.errors.OutputExistsError
        When ``path`` exists and ``overwrite`` is false.
    """
    options = figure_format(path)
    with atomic_path(path, overwrite) as tmp:
        figure.savefig(tmp, **options)
    return Path(path)


def plot_roc_files(
    report_paths: Sequence[str | os.PathLike[str]],
    output: str | os.PathLike[str],
    *,
    labels: Sequence[str] | None = None,
    det: bool = False,
    cmc: bool = False,
    title: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Read report files, draw their ROC, DET or CMC curves, and save the figure to ``output``.

    The choice of figure, the output's format and its writability are checked before any
    report is read or anything is drawn. See :func:`plot_roc` (ROC, and DET with
    ``det=True``) and :func:`plot_cmc` (``cmc=True``) for the figure and :func:`save_figure`
    for the file.

    Returns
    -------
    pathlib.Path
        ``output``.

    Raises
    ------
    PlotError
        Both ``det`` and ``cmc``, an unknown output suffix, or not one label per report.
    facebench.errors.OutputExistsError
        ``output`` exists and ``overwrite`` is false.
    facebench.errors.ReportError
        A report cannot be read, is not a report, or holds no ROC curve (no 1:N results
        for ``cmc=True``).
    """
    if det and cmc:
        raise PlotError(
            "expected one kind of figure, but got both --det and --cmc; a DET plot shows"
            " 1:1 verification and a CMC 1:N identification, so draw them into two files"
        )
    figure_format(output)
    check_writable(output, overwrite)
    if labels is not None:
        _check_count("labels", labels, len(report_paths))
    reports = [load_report(Path(path)) for path in report_paths]
    if cmc:
        figure = plot_cmc(reports, sources=report_paths, labels=labels, title=title)
    else:
        figure = plot_roc(reports, sources=report_paths, labels=labels, det=det, title=title)
    return save_figure(figure, output, overwrite=overwrite)


# -- reading reports ----------------------------------------------------------------------


def _sources(
    reports: Sequence[Mapping[str, Any]],
    sources: Sequence[str | os.PathLike[str]] | None,
    labels: Sequence[str] | None,
) -> list[str]:
    """Check the counts of reports, sources and labels; the source names, defaulted."""
    if not reports:
        raise PlotError("expected at least one report to plot, but got none")
    names_of_sources = (
        [str(s) for s in sources]
        if sources is not None
        else [f"report {i + 1}" for i in range(len(reports))]
    )
    _check_count("sources", names_of_sources, len(reports))
    if labels is not None:
        _check_count("labels", labels, len(reports))
    return names_of_sources


def _read_report(report: Mapping[str, Any], source: str, label: str | None) -> ReportCurves:
    """Extract and check what :func:`plot_roc` draws from one report."""
    if "roc" in report:
        curves: tuple[RocCurve, ...] = (_read_curve(report, source, ""),)
        is_split = False
    elif isinstance(report.get("splits"), list) and report["splits"]:
        splits = report["splits"]
        for i, entry in enumerate(splits):
            if not isinstance(entry, Mapping) or "roc" not in entry:
                raise ReportError(
                    f"{source}: expected a `roc` curve in every split, but `splits[{i}]` has"
                    " none; re-run `facebench verify` to write a complete report"
                )
        curves = tuple(_read_curve(e, source, f"splits[{i}].") for i, e in enumerate(splits))
        is_split = True
    else:
        raise ReportError(
            f"{source}: the report holds no ROC curve (expected `roc`, or `splits` with a"
            " `roc` each); re-run `facebench verify` with this facebench to write one"
        )
    return ReportCurves(
        _default_name(report, source, label), report_headline(report), curves, is_split
    )


def _read_curve(entry: Mapping[str, Any], source: str, where: str) -> RocCurve:
    """Read ``roc``, ``tar_at_far`` and the pair counts of a report or of one split."""
    roc = entry["roc"]
    if not isinstance(roc, Mapping):
        raise ReportError(f"{source}: expected `{where}roc` to be an object, but got {roc!r:.60}")
    far = _rates(roc.get("far"), source, f"{where}roc.far")
    tar = _rates(roc.get("tar"), source, f"{where}roc.tar")
    if far.shape != tar.shape:
        raise ReportError(
            f"{source}: expected `{where}roc.far` and `{where}roc.tar` of one length, but got"
            f" {far.size} and {tar.size}"
        )
    n_genuine = _count(entry, "n_genuine", source, where)
    if "n_impostor" in entry:
        n_impostor = _count(entry, "n_impostor", source, where)
    else:  # older split entries record only n_pairs and n_genuine
        n_impostor = _count(entry, "n_pairs", source, where) - n_genuine
    if n_impostor < 1 or n_genuine < 1:
        raise ReportError(
            f"{source}: expected genuine and impostor pairs, but got `{where}n_genuine` ="
            f" {n_genuine} and {n_impostor} impostor pairs; a ROC needs both"
        )
    rows = entry.get("tar_at_far")
    if not isinstance(rows, list):
        raise ReportError(f"{source}: expected `{where}tar_at_far` to be a list, but got {rows!r}")
    points = []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping) or "far_achieved" not in row or "tar" not in row:
            raise ReportError(
                f"{source}: expected `{where}tar_at_far[{i}]` to hold `far_achieved` and `tar`"
            )
        if row["tar"] is not None:  # null: no threshold meets the target
            points.append((row["far_achieved"], row["tar"]))
    point_far = _rates([p[0] for p in points], source, f"{where}tar_at_far[].far_achieved", True)
    point_tar = _rates([p[1] for p in points], source, f"{where}tar_at_far[].tar", True)
    return RocCurve(far, tar, point_far, point_tar, n_genuine, n_impostor)


def _read_cmc_report(report: Mapping[str, Any], source: str, label: str | None) -> CmcCurves:
    """Extract and check what :func:`plot_cmc` draws from one report."""
    splits = report.get("splits")
    if not isinstance(splits, list):
        splits = []
    searched = [
        i for i, e in enumerate(splits) if isinstance(e, Mapping) and e.get("identification")
    ]
    if not searched:
        protocol = report.get("protocol")
        kind = f"a {protocol} report" if isinstance(protocol, str) else "the report"
        raise ReportError(
            f"{source}: has no 1:N results ({kind} with no `identification` in any split);"
            " --cmc needs an IJB report with 1:N: run `facebench verify --protocol"
            " ijba|ijbb|ijbc` with the 1:N protocol files present"
        )
    if len(searched) != len(splits):
        missing = next(i for i in range(len(splits)) if i not in searched)
        raise ReportError(
            f"{source}: expected 1:N results in every split, but `splits[{missing}]` has no"
            " `identification`; re-run `facebench verify` to write a complete report"
        )
    per_split = [
        _read_searches(entry["identification"], source, f"splits[{i}].identification")
        for i, entry in enumerate(splits)
    ]
    galleries = list(per_split[0])
    for i, curves in enumerate(per_split):
        if list(curves) != galleries:
            raise ReportError(
                f"{source}: expected every split to search the galleries of `splits[0]`"
                f" ({', '.join(galleries)}), but `splits[{i}]` searches"
                f" {', '.join(curves)}; re-run `facebench verify` to write a consistent report"
            )
    lengths = {c.size for curves in per_split for c in curves.values()}
    if len(lengths) != 1:
        raise ReportError(
            f"{source}: expected every `cmc_curve` to cover the same ranks, but got lengths"
            f" {sorted(lengths)}; re-run `facebench verify` to write a consistent report"
        )
    named = [g for g in galleries if g != MEAN_GALLERY]
    headline = MEAN_GALLERY if MEAN_GALLERY in galleries else named[0]
    if headline != MEAN_GALLERY and len(named) > 1:
        raise ReportError(
            f'{source}: expected a `gallery: "{MEAN_GALLERY}"` search beside the galleries'
            f" {', '.join(named)} (the average that the headline reports), but found none;"
            " re-run `facebench verify` to write a complete report"
        )
    split_curves = np.stack([curves[headline] for curves in per_split])
    mean = split_curves.mean(axis=0)
    by_gallery = (
        tuple((g, np.mean([curves[g] for curves in per_split], axis=0)) for g in named)
        if len(named) > 1
        else ()
    )
    point_rank, point_rate = _cmc_points(report, mean.size)
    return CmcCurves(
        name=_default_name(report, source, label),
        headline=cmc_headline(report),
        mean=mean,
        splits=split_curves,
        galleries=by_gallery,
        point_rank=point_rank,
        point_rate=point_rate,
    )


def _read_searches(searches: object, source: str, where: str) -> dict[str, np.ndarray]:
    """``gallery`` -> ``cmc_curve`` of one split's 1:N searches, in report order."""
    if not isinstance(searches, list):
        raise ReportError(f"{source}: expected `{where}` to be a list, but got {searches!r:.60}")
    curves: dict[str, np.ndarray] = {}
    for k, search in enumerate(searches):
        if not isinstance(search, Mapping):
            raise ReportError(f"{source}: expected `{where}[{k}]` to be an object")
        gallery = search.get("gallery")
        if not isinstance(gallery, str) or not gallery:
            raise ReportError(f"{source}: expected `{where}[{k}].gallery` to name a gallery")
        if gallery in curves:
            raise ReportError(
                f"{source}: expected each gallery once in `{where}`, but {gallery!r} repeats"
            )
        if "cmc_curve" not in search:
            raise ReportError(
                f"{source}: expected `{where}[{k}].cmc_curve` (the rate at ranks 1..20), but"
                " found none; re-run `facebench verify` with this facebench to write one"
            )
        curves[gallery] = _rates(search["cmc_curve"], source, f"{where}[{k}].cmc_curve")
    return curves


def _cmc_points(report: Mapping[str, Any], n_ranks: int) -> tuple[np.ndarray, np.ndarray]:
    """The summary's ``cmc`` ranks within ``1..n_ranks`` and their mean rates."""
    summary = report.get("summary")
    cmc = summary.get("cmc") if isinstance(summary, Mapping) else None
    points = []
    for rank, value in cmc.items() if isinstance(cmc, Mapping) else ():
        mean = _number(value.get("mean")) if isinstance(value, Mapping) else None
        if isinstance(rank, str) and rank.isdigit() and 1 <= int(rank) <= n_ranks:
            if mean is not None and 0.0 <= mean <= 1.0:
                points.append((int(rank), mean))
    points.sort()
    return (
        np.asarray([p[0] for p in points], dtype=float),
        np.asarray([p[1] for p in points], dtype=float),
    )


def _rates(values: object, source: str, key: str, allow_empty: bool = False) -> np.ndarray:
    """``values`` as a float array of rates in [0, 1], or a :class:`ReportError`."""
    try:
        rates = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        rates = np.full(1, np.nan)
    if rates.ndim != 1 or (rates.size == 0 and not allow_empty):
        raise ReportError(f"{source}: expected `{key}` to be a non-empty list of rates")
    if not np.all(np.isfinite(rates)) or np.any(rates < 0) or np.any(rates > 1):
        raise ReportError(f"{source}: expected every `{key}` value to be a number in [0, 1]")
    return rates


def _count(entry: Mapping[str, Any], key: str, source: str, where: str) -> int:
    value = entry.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ReportError(
            f"{source}: expected `{where}{key}` to be a count (an integer >= 0), but got {value!r}"
        )
    return value


def _number(value: object) -> float | None:
    """A finite float, or None for null / NaN / a non-number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _format_far(far: float) -> str:
    """``1e-4`` style: mantissa without trailing zeros, exponent without padding."""
    mantissa, exponent = f"{far:e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def _check_count(what: str, values: Sequence[object], n_reports: int) -> None:
    if len(values) != n_reports:
        raise PlotError(
            f"expected one of {what} per report ({n_reports}), but got {len(values)}; give"
            f" {'--label' if what == 'labels' else what} once for each report, in order"
        )


# -- legend names --------------------------------------------------------------------------


def _default_name(report: Mapping[str, Any], source: str, label: str | None) -> str:
    if label:
        return label
    if isinstance(report.get("label"), str) and report["label"]:
        return str(report["label"])
    store = report.get("store")
    attributes = store.get("attributes") if isinstance(store, Mapping) else None
    model = attributes.get("model") if isinstance(attributes, Mapping) else None
    if isinstance(model, str) and model:
        return model
    return Path(source).stem


def _distinct_names(names: Sequence[str], sources: Sequence[str]) -> list[str]:
    """Append ``[stem]`` to names that repeat, then ``[source]``, then a number."""
    result = list(names)
    for tag in (lambda i: Path(sources[i]).stem, lambda i: sources[i]):
        repeated = {n for n in result if result.count(n) > 1}
        result = [f"{n} [{tag(i)}]" if n in repeated else n for i, n in enumerate(result)]
    repeated = {n for n in result if result.count(n) > 1}  # one report given twice
    seen: dict[str, int] = {}
    for i, name in enumerate(result):
        if name in repeated:
            seen[name] = seen.get(name, 0) + 1
            result[i] = f"{name} #{seen[name]}"
    return result


# -- drawing -------------------------------------------------------------------------------


def _draw_roc(axes: Axes, entries: Sequence[ReportCurves], legend: Sequence[str]) -> None:
    n_max = max(c.n_impostor for e in entries for c in e.curves)
    for i, (entry, text) in enumerate(zip(entries, legend, strict=True)):
        for k, curve in enumerate(entry.curves):
            shown = curve.far > 0
            points = curve.point_far > 0
            _draw_curve(
                axes,
                f"C{i}",
                entry.is_split,
                text if k == 0 else None,
                (curve.far[shown], curve.tar[shown]),
                (curve.point_far[points], curve.point_tar[points]),
            )
    axes.set_xscale("log")
    axes.set_xlim(1.0 / n_max, 1.0)
    axes.set_ylim(0.0, 1.0)
    axes.set_xlabel(ROC_XLABEL)
    axes.set_ylabel(ROC_YLABEL)


def _draw_det(axes: Axes, entries: Sequence[ReportCurves], legend: Sequence[str]) -> None:
    from scipy.stats import norm

    def probit(rates: np.ndarray, n: int) -> np.ndarray:
        bound = 1.0 / (2 * n)
        return np.asarray(norm.ppf(np.clip(rates, bound, 1.0 - bound)), dtype=float)

    frr_top = 0.5
    for i, (entry, text) in enumerate(zip(entries, legend, strict=True)):
        for k, curve in enumerate(entry.curves):
            far_x = probit(curve.far, curve.n_impostor)
            frr_y = probit(1.0 - curve.tar, curve.n_genuine)
            _draw_curve(
                axes,
                f"C{i}",
                entry.is_split,
                text if k == 0 else None,
                (far_x, frr_y),
                (
                    probit(curve.point_far, curve.n_impostor),
                    probit(1.0 - curve.point_tar, curve.n_genuine),
                ),
            )
            measured = np.flatnonzero(curve.far > 0)
            if measured.size:  # keep the curve's start at the smallest measured FAR in view
                frr_top = max(frr_top, float(norm.cdf(frr_y[measured[0]])))
    n_impostor = max(c.n_impostor for e in entries for c in e.curves)
    n_genuine = max(c.n_genuine for e in entries for c in e.curves)
    x_low, x_high = norm.ppf(1.0 / (2 * n_impostor)), norm.ppf(0.5)
    y_low, y_high = norm.ppf(1.0 / (2 * n_genuine)), norm.ppf(frr_top)
    margin = 0.05
    axes.set_xlim(x_low - margin, x_high + margin)
    axes.set_ylim(y_low - margin, y_high + margin)
    for set_ticks, low, high in (
        (axes.set_xticks, x_low, x_high),
        (axes.set_yticks, y_low, y_high),
    ):
        percents = [p for p in DET_TICKS_PERCENT if low - 1e-9 <= norm.ppf(p / 100) <= high + 1e-9]
        set_ticks(
            [float(norm.ppf(p / 100)) for p in percents], [_format_percent(p) for p in percents]
        )
    axes.set_xlabel(ROC_XLABEL)
    axes.set_ylabel(DET_YLABEL)


def _draw_curve(
    axes: Axes,
    colour: str,
    thin: bool,
    label: str | None,
    line: tuple[np.ndarray, np.ndarray],
    points: tuple[np.ndarray, np.ndarray],
) -> None:
    axes.plot(
        *line,
        color=colour,
        linewidth=0.8 if thin else 1.6,
        alpha=0.85 if thin else 1.0,
        label="_nolegend_" if label is None else label,
    )
    axes.plot(
        *points,
        linestyle="none",
        marker="o",
        markersize=5,
        markerfacecolor="none",
        color=colour,
        label="_nolegend_",
    )


def _draw_cmc(axes: Axes, colour: str, entry: CmcCurves, name: str) -> None:
    """One report's CMC lines: the main line, thin splits, styled galleries, rank marks."""
    ranks = np.arange(1, entry.mean.size + 1)
    # A rate of 1 lies on the top spine: draw above it, unclipped (all points are in range).
    style: dict[str, Any] = {"color": colour, "clip_on": False, "zorder": 3}
    if entry.splits.shape[0] > 1:
        for curve in entry.splits:
            axes.plot(ranks, curve, linewidth=0.8, alpha=0.6, label="_nolegend_", **style)
    if entry.galleries:  # say that the main line averages the galleries drawn beside it
        name_of_mean = f"{name} (mean of {' & '.join(g for g, _ in entry.galleries)})"
    else:
        name_of_mean = name
    axes.plot(
        ranks,
        entry.mean,
        linewidth=2.0,
        label=name_of_mean if entry.headline is None else f"{name_of_mean}, {entry.headline}",
        **style,
    )
    for k, (gallery, curve) in enumerate(entry.galleries):
        axes.plot(
            ranks,
            curve,
            linewidth=1.2,
            linestyle=GALLERY_LINESTYLES[k % len(GALLERY_LINESTYLES)],
            label=f"{name} {gallery}, rank-1 {curve[0]:.3f}",
            **style,
        )
    axes.plot(
        entry.point_rank,
        entry.point_rate,
        linestyle="none",
        marker="o",
        markersize=5,
        markerfacecolor="none",
        label="_nolegend_",
        **style,
    )


def _format_percent(percent: float) -> str:
    return f"{np.format_float_positional(percent, trim='-')}%"
