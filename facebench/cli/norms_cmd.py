"""``facebench norms``: verification per group of the raw feature norm -> figure, table, JSON."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.table import Table

from protocols import PROTOCOLS

if TYPE_CHECKING:
    from facebench.norms import NormReport


def _threshold(value: float) -> str:
    if value == float("inf"):
        return "+inf"
    if value == float("-inf"):
        return "-inf"
    return f"{value:.6f}"


def render_norm_report(report: NormReport, console: Console) -> None:
    """Print the groups of a norm report as a table, with the rules behind the numbers."""
    from facebench.norms import group_label

    console.print(
        f"[bold]{report.protocol}[/bold]  {report.n_pairs} pairs ({report.n_genuine} genuine,"
        f" {report.n_impostor} impostor)  model: {report.store.get('model') or '?'}"
    )
    table = Table(
        title=f"verification by the pair's lower raw norm ({report.n_groups} quantile groups)",
        title_justify="left",
    )
    for name in ("group", "pair norm range", "pairs", "genuine", "accuracy", "AUC"):
        table.add_column(name, justify="left" if name == "pair norm range" else "right")
    table.add_column(f"TAR @ FAR={report.far_target:g}", justify="right")
    table.add_column("FAR achieved", justify="right")
    table.add_column("genuine mean", justify="right")
    table.add_column("impostor mean", justify="right")
    for g in report.groups:
        point = g.tar_at_far
        table.add_row(
            f"G{g.group}",
            group_label(report, g),
            str(g.n_pairs),
            str(g.n_genuine),
            f"{100 * g.accuracy:.2f}%",
            f"{g.auc:.6f}",
            f"{100 * point.tar:.2f}%"
            + (" (resolution-limited)" if point.resolution_limited else ""),
            f"{point.far_achieved:.2e}",
            f"{g.mean_score_genuine:.4f}",
            f"{g.mean_score_impostor:.4f}",
        )
    table.add_section()
    table.add_row(
        "all",
        f"[{report.boundaries[0]:.4g}, {report.boundaries[-1]:.4g}]",
        str(report.n_pairs),
        str(report.n_genuine),
        f"{100 * report.kfold['mean']:.2f}%",
        "",
        "",
        "",
        "",
        "",
    )
    console.print(table)
    console.print("boundaries: " + ", ".join(f"{b:.6g}" for b in report.boundaries), style="dim")
    console.print(
        "fold thresholds: " + ", ".join(_threshold(t) for t in report.kfold["thresholds"]),
        style="dim",
    )
    console.print("all: accuracy is the mean of the folds' accuracies", style="dim")
    for key in ("pair_norm", "grouping", "accuracy"):
        console.print(f"{key}: {report.conventions[key]}", style="dim", soft_wrap=True)


@click.command("norms")
@click.argument("store", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--protocol",
    "protocol_name",
    required=True,
    type=click.Choice(sorted(PROTOCOLS)),
    help="The benchmark protocol (pair protocols only: lfw).",
)
@click.option(
    "--pairs",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Another pairs file in the protocol's format instead of the shipped official one.",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The figure: PNG, PDF or SVG by suffix.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the JSON report here.",
)
@click.option(
    "--groups",
    "n_groups",
    type=int,
    default=3,
    show_default=True,
    help="Quantile groups of the pairs' lower raw norm (>= 2).",
)
@click.option(
    "--far",
    "far_target",
    type=float,
    default=1e-2,
    show_default=True,
    help="The FAR at which each group's TAR is read (exact rule, within the group).",
)
@click.option("--overwrite", is_flag=True, help="Replace existing output files.")
def norms_command(
    store: Path,
    protocol_name: str,
    pairs: Path | None,
    output: Path,
    json_path: Path | None,
    n_groups: int,
    far_target: float,
    overwrite: bool,
) -> None:
    """Verification of STORE's pairs grouped by raw feature norm (face quality).

    Each pair gets the lower raw norm of its two images; the pairs are split into --groups
    quantile groups of that norm. Per group: accuracy with the fold thresholds of the full
    protocol's k-fold rule, AUC and TAR at --far within the group, mean genuine and impostor
    scores. Draws the norm histogram with the group boundaries and the rates per group.

    \b
    Example:
      facebench norms lfw.h5 --protocol lfw -o norms.png --json norms.json
      facebench norms lfw.h5 --protocol lfw --pairs my_pairs.txt -o norms.pdf --groups 4
    """
    from facebench.norms import norms_files

    report = norms_files(
        store,
        protocol_name,
        output,
        pairs=pairs,
        json_path=json_path,
        n_groups=n_groups,
        far_target=far_target,
        overwrite=overwrite,
    )
    render_norm_report(report, Console(file=sys.stdout, width=140))
    written = f"{output} and {json_path}" if json_path is not None else str(output)
    click.echo(f"wrote {written}", err=True)
