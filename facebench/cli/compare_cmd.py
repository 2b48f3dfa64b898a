"""``facebench compare``: reports of one protocol in one table, with paired bootstrap
intervals of every difference to the first report."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from facebench.compare import (
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    NOISE_MARK,
    Comparison,
    compare_reports,
    format_cells,
    legend,
    write_outputs,
)
from facebench.errors import FacebenchError
from facebench.fileio import check_writable
from facebench.report import scores_path_for


def render_comparison(comparison: Comparison, console: Console) -> None:
    """Print the comparison table (one row per report) and its legend."""
    n = len(comparison.reports)
    title = f"{comparison.protocol}: {n} report{'s' if n > 1 else ''}"
    if n > 1:
        title += f", differences to {comparison.reports[0].label}"
    table = Table(title=title, title_justify="left")
    table.add_column("report")
    for metric in comparison.metrics:
        table.add_column(f"{metric.label} (%)", justify="right")
    for i, (headline, cells) in enumerate(
        zip(comparison.reports, format_cells(comparison), strict=True)
    ):
        name = Text(headline.label + (" (ref.)" if i == 0 and n > 1 else ""))
        row: list[Text] = [name]
        for cell in cells:
            text = Text(cell.value)
            if cell.estimate:
                # the difference below the number, its interval below that
                mark = f" {NOISE_MARK}" if cell.within_noise else ""
                style = "dim" if cell.within_noise else "bold"
                text.append(f"\n{cell.estimate}{mark}\n{cell.interval}", style=style)
            row.append(text)
        table.add_row(*row)
    console.print(table)
    for line in legend(comparison):
        console.print(line, style="dim", soft_wrap=True)


@click.command("compare")
@click.argument(
    "reports",
    nargs=-1,
    required=True,
    metavar="REPORT...",
    type=click.Path(dir_okay=False, path_type=Path),
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the comparison as JSON: every headline, difference, interval and setting.",
)
@click.option(
    "--markdown",
    "markdown_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the table as Markdown (for papers and READMEs).",
)
@click.option(
    "--resamples",
    type=click.IntRange(min=1),
    default=DEFAULT_RESAMPLES,
    show_default=True,
    help="Bootstrap resamples.",
)
@click.option(
    "--seed",
    type=click.IntRange(min=0),
    default=DEFAULT_SEED,
    show_default=True,
    help="Seed of the resampling; the same seed gives the same intervals.",
)
@click.option(
    "--confidence",
    type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
    default=DEFAULT_CONFIDENCE,
    show_default=True,
    help="Coverage of the bootstrap intervals.",
)
@click.option("--overwrite", is_flag=True, help="Replace existing output files.")
def compare_command(
    reports: tuple[Path, ...],
    json_path: Path | None,
    markdown_path: Path | None,
    resamples: int,
    seed: int,
    confidence: float,
    overwrite: bool,
) -> None:
    """Compare reports of one protocol (JSON written by `facebench verify --json`).

    The first REPORT is the reference. Every headline number of the others (LFW/YTF:
    accuracy, AUC, EER, TAR@FAR; IJB: TAR@FAR, AUC, CMC rank 1/5/10, TPIR@FPIR, means over
    splits) gets its difference to the reference with a paired bootstrap interval, from the
    `.scores.npz` beside each report: the same resampled pairs (LFW/YTF: within each fold,
    thresholds refit) or templates and probes (IJB: within each split) for every report.
    A difference marked ≈ is within resampling noise (its interval contains 0). Only the
    FAR/FPIR targets common to all reports are compared. With one REPORT, its headline only.

    \b
    Example:
      facebench compare arcface.json cosface.json l2softmax.json --markdown table.md
      facebench compare ijba_a.json ijba_b.json --resamples 2000 --json cmp.json
    """
    inputs = {p.resolve() for r in reports for p in (r, scores_path_for(r))}
    outputs = [p for p in (json_path, markdown_path) if p is not None]
    if len(outputs) == 2 and outputs[0].resolve() == outputs[1].resolve():
        raise FacebenchError(f"{outputs[0]}: --json and --markdown name the same file")
    for path in outputs:  # fail before any work, never after
        if path.resolve() in inputs:
            raise FacebenchError(f"{path}: an output would replace one of the reports read")
        check_writable(path, overwrite)
    comparison = compare_reports(reports, n_resamples=resamples, seed=seed, confidence=confidence)
    width = None if sys.stdout.isatty() else 160
    render_comparison(comparison, Console(file=sys.stdout, width=width))
    err = Console(file=sys.stderr, highlight=False)
    for note in comparison.notes:
        err.print(f"note: {note}", style="yellow", soft_wrap=True)
    for path in write_outputs(comparison, json_path, markdown_path, overwrite):
        click.echo(f"wrote {path}", err=True)
