"""``facebench search``: 1:N open-set search of a probe store against a gallery store."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from facebench.metrics.identification import TPIR_RULES


def _fpir_list(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        targets = tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, got {value!r}") from None
    if not all(0.0 < t <= 1.0 for t in targets):
        raise click.BadParameter(f"every FPIR must lie in (0, 1], got {value!r}")
    return targets


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}"


def _threshold(value: float | None) -> str:
    if value is None or math.isinf(value):
        return "+inf"
    return f"{value:.6f}"


def render_search_report(report: dict[str, Any], console: Console) -> None:
    """Print the search's counts, CMC at ranks 1/5/10 and TPIR at each FPIR."""
    counts = report["counts"]
    model = report["gallery"].get("attributes", {}).get("model", "?")
    console.print(
        f"[bold]1:N search[/bold]  {counts['n_probes']:,} probes ({counts['n_mated']:,} mated,"
        f" {counts['n_nonmated']:,} non-mated) against {counts['n_gallery']:,} gallery items"
        f" ({counts['n_gallery_subjects']:,} subjects)  model: {model}"
    )
    table = Table(title="1:N open-set identification (%)", title_justify="left")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("threshold", justify="right")
    table.add_column("FPIR achieved", justify="right")
    for rank, rate in report["cmc"].items():
        table.add_row(f"CMC rank {rank}", _pct(rate), "", "")
    for point in report["tpir_at_fpir"]:
        mark = "*" if point["resolution_limited"] else ""
        table.add_row(
            f"TPIR @ FPIR {point['fpir_target']:g}{mark}",
            _pct(point["tpir"]),
            _threshold(point["threshold"]),
            _pct(point["fpir_achieved"]),
        )
    console.print(table)
    if any(p["resolution_limited"] for p in report["tpir_at_fpir"]):
        console.print("* resolution-limited: no non-mated probe fits the FPIR budget", style="dim")
    for warning in report["warnings"]:
        console.print(f"warning: {warning}", style="yellow", highlight=False)


@click.command("search")
@click.option(
    "--gallery",
    "gallery",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The gallery feature store (HDF5), e.g. distractors plus the probes' mates.",
)
@click.option(
    "--probes",
    "probes",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The probe feature store (HDF5); no id may also be in the gallery.",
)
@click.option(
    "--gallery-labels",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Lines `<id> <subject>` for every gallery item [default: the store's meta/subject].",
)
@click.option(
    "--probe-labels",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Lines `<id> <subject>` for every probe [default: the store's meta/subject].",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the JSON report here, and per-probe ranks, scores and top-k to"
    " PATH.scores.npz beside it.",
)
@click.option(
    "--top-k",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Gallery items listed per probe in the per-probe file.",
)
@click.option(
    "--chunk-size",
    type=click.IntRange(min=1),
    default=None,
    help="Gallery rows read and scored at a time (memory); changes no result [default: 4096].",
)
@click.option(
    "--fpir",
    "fpir_targets",
    callback=_fpir_list,
    default=None,
    help="Comma-separated FPIR targets for TPIR [default: 0.01,0.1].",
)
@click.option(
    "--tpir-rule",
    type=click.Choice(list(TPIR_RULES)),
    default="exact",
    show_default=True,
    help="How the threshold at an FPIR is read (PROTOCOLS.md).",
)
@click.option(
    "--device",
    type=click.Choice(["cpu", "cuda"]),
    default="cpu",
    show_default=True,
    help="Where matrix products run; they only screen pairs, so results do not change.",
)
@click.option("--label", default=None, help="A name for this report.")
@click.option("--overwrite", is_flag=True, help="Replace existing output files.")
def search_command(
    gallery: Path,
    probes: Path,
    gallery_labels: Path | None,
    probe_labels: Path | None,
    json_path: Path | None,
    top_k: int,
    chunk_size: int | None,
    fpir_targets: tuple[float, ...] | None,
    tpir_rule: str,
    device: str,
    label: str | None,
    overwrite: bool,
) -> None:
    """Search every probe against a gallery (1:N, open set): CMC and TPIR at FPIR.

    Subjects come from the labels files or the stores' meta/subject. Under torchrun each
    process searches a shard of the gallery (gloo on the CPU, nccl with --device cuda)
    and rank 0 writes the same report as a single process.

    \b
    Example:
      facebench search --gallery megaface.h5 --probes facescrub.h5 \\
          --gallery-labels megaface.txt --probe-labels facescrub.txt --json search.json
      torchrun --nproc-per-node 2 -m facebench search --gallery g.h5 --probes p.h5 \\
          --json search.json
    """
    from facebench.report import check_report_writable
    from facebench.search import SearchOptions, run_search, write_search

    if json_path is not None:  # fail before any work, never after
        check_report_writable(json_path, overwrite)
    options = SearchOptions(
        top_k=top_k,
        chunk_size=chunk_size,
        fpir_targets=fpir_targets or (0.01, 0.1),
        tpir_rule=tpir_rule,
        device=device,
        label=label,
    )
    run = run_search(gallery, probes, gallery_labels, probe_labels, options)
    if run.rank != 0:
        return
    render_search_report(run.report.to_dict(), Console(file=sys.stdout, width=110))
    if json_path is not None:
        written, npz = write_search(run, json_path, overwrite=overwrite)
        click.echo(f"wrote {written} and {npz}", err=True)
