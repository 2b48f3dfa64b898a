"""``facebench plot-roc``: ROC / DET / CMC figures over one or many reports."""

from __future__ import annotations

from pathlib import Path

import click

from facebench.plotting import FIGURE_FORMATS, plot_roc_files


@click.command("plot-roc")
@click.argument(
    "reports",
    nargs=-1,
    required=True,
    metavar="REPORT...",
    type=click.Path(dir_okay=False, path_type=Path),
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"The figure to write; its suffix picks the format ({', '.join(FIGURE_FORMATS)}).",
)
@click.option(
    "--det", is_flag=True, help="Draw a DET plot (FRR vs FAR, probit axes) instead of a ROC."
)
@click.option(
    "--cmc",
    is_flag=True,
    help="Draw the 1:N CMC curves (identification rate vs rank) of IJB reports instead.",
)
@click.option(
    "--label",
    "labels",
    multiple=True,
    metavar="TEXT",
    help="Legend name of a report; repeat once per report, in order.",
)
@click.option("--title", default=None, help="Figure title.")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
def plot_roc_command(
    reports: tuple[Path, ...],
    output: Path,
    det: bool,
    cmc: bool,
    labels: tuple[str, ...],
    title: str | None,
    overwrite: bool,
) -> None:
    """Plot the ROC (or DET, or CMC) curves of REPORT... (JSON written by `facebench verify`).

    One curve per report (one thin line per split for IJB-style reports), FAR on a log axis,
    with the report's TAR@FAR operating points marked.

    --cmc draws 1:N identification instead (IJB reports verified with the 1:N files): rate
    against rank 1..20, the mean over splits bold with each split thin (IJB-A), or the mean
    over galleries bold with G1/G2 (S1/S2) dashed and dotted (IJB-B/C).

    \b
    Example:
      facebench plot-roc a.json b.json -o roc.png --label ArcFace --label CosFace
      facebench plot-roc ijbc.json -o cmc.png --cmc
    """
    path = plot_roc_files(
        reports,
        output,
        labels=labels or None,
        det=det,
        cmc=cmc,
        title=title,
        overwrite=overwrite,
    )
    kind = "CMC" if cmc else "DET" if det else "ROC"
    click.echo(f"wrote {kind} figure of {len(reports)} report(s) to {path}", err=True)
