"""``facebench inspect``: what a store, a report or a scores file holds -> table or JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from facebench.inspect import (
        NormSummary,
        ReportSummary,
        ScoresSummary,
        StoreSummary,
    )


def _number(value: float | None, digits: int = 6) -> str:
    return "—" if value is None else f"{value:.{digits}g}"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}%"


def _norms(summary: NormSummary | None) -> str:
    if summary is None or summary.n == 0:
        return "—"
    return (
        f"min {_number(summary.min)}  median {_number(summary.median)}  mean"
        f" {_number(summary.mean)}  max {_number(summary.max)}"
    )


def _fields_table(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for name, value in rows:
        table.add_row(name, value)
    return table


def render_store(summary: StoreSummary, console: Console) -> None:
    """Print a store summary."""
    rows = [
        ("path", summary.path),
        ("items", f"{summary.n_items:,}"),
        ("dim", str(summary.dim)),
        ("flips", "yes" if summary.has_flip else "no"),
        ("model", summary.model or "—"),
        ("model sha256", summary.model_sha256 or "—"),
        ("preprocessing", json.dumps(summary.preprocessing, sort_keys=True)),
        ("metadata", ", ".join(summary.metadata_keys) or "—"),
        ("content sha256", summary.content_sha256),
        ("raw norms", _norms(summary.norms)),
    ]
    if summary.has_flip:
        rows.append(("raw norms (flip)", _norms(summary.norms_flip)))
    rows.append(("skipped items", str(summary.n_skipped)))
    rows += [(f"  {item}", reason) for item, reason in summary.skipped]
    if summary.n_skipped > len(summary.skipped):
        rows.append(("", f"... {summary.n_skipped - len(summary.skipped)} more"))
    rows += [
        ("created", summary.created),
        ("facebench", summary.facebench_version),
        ("schema version", str(summary.schema_version)),
    ]
    if summary.check is not None:
        check = summary.check
        verdict = (
            "[green]OK[/green]: the rows are those written"
            if check.ok
            else f"[red]MISMATCH[/red]: recomputed {check.computed}"
        )
        rows.append(
            (
                "checksum check",
                f"{verdict} ({check.n_rows:,} rows, {check.n_blocks} block"
                + ("s)" if check.n_blocks != 1 else ")"),
            )
        )
    console.print(_fields_table("feature store", rows))


def _operating_rows(headline: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    for point in headline.get("tar_at_far") or []:
        note = " (resolution-limited)" if point.get("resolution_limited") else ""
        rows.append(
            (
                f"TAR @ FAR={point['far_target']:g}",
                f"{_percent(point.get('tar'))}{note}  (FAR achieved"
                f" {_number(point.get('far_achieved'), 3)}, threshold"
                f" {_number(point.get('threshold'))})",
            )
        )
    return rows


def _mean_std(entry: dict[str, Any]) -> str:
    std = entry.get("std")
    spread = "" if std is None else f" ± {100 * std:.2f}"
    return f"{_percent(entry.get('mean'))}{spread}"


def _split_rows(headline: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [("splits", str(headline.get("n_splits", "—")))]
    if "auc" in headline:
        rows.append(("AUC", _mean_std(headline["auc"])))
    for point in headline.get("tar_at_far") or []:
        rows.append((f"TAR @ FAR={point['far_target']:g}", _mean_std(point)))
    for rank, entry in (headline.get("cmc") or {}).items():
        rows.append((f"CMC rank {rank}", _mean_std(entry)))
    for point in headline.get("tpir_at_fpir") or []:
        rows.append((f"TPIR @ FPIR={point['fpir_target']:g}", _mean_std(point)))
    return rows


def render_report(summary: ReportSummary, console: Console) -> None:
    """Print a report summary: identity, headline numbers, conventions, warnings."""
    store = summary.store
    rows = [
        ("path", summary.path),
        ("protocol", summary.protocol + (f"  ({summary.label})" if summary.label else "")),
        ("protocol file", summary.protocol_file),
        ("protocol sha256", summary.protocol_sha256),
        ("store", str(store.get("path"))),
        ("store sha256", str(store.get("content_sha256"))),
        ("model", str(store.get("model") or "—")),
        ("pairs", f"{summary.n_pairs:,} ({summary.n_genuine:,} genuine)"),
        ("created", summary.created),
        ("facebench", summary.facebench_version),
    ]
    console.print(_fields_table("report", rows))
    headline = summary.headline
    if summary.report_kind == "fold":
        accuracy = headline["accuracy"]
        numbers = [
            (
                "accuracy",
                f"{_percent(accuracy.get('mean'))} ± {_percent(accuracy.get('std'))} (std),"
                f" stderr {_percent(accuracy.get('stderr'))}",
            ),
            ("AUC", _number(headline.get("auc"))),
            ("EER", _percent(headline.get("eer"))),
            *_operating_rows(headline),
        ]
    else:
        numbers = _split_rows(headline)
    console.print(_fields_table("headline numbers", numbers))
    conventions = [
        (k, json.dumps(v) if not isinstance(v, str) else v) for k, v in summary.conventions.items()
    ]
    console.print(_fields_table("conventions", conventions))
    counts = [(k, json.dumps(v)) for k, v in summary.counts.items()]
    if counts:
        console.print(_fields_table("counts", counts))
    for warning in summary.warnings:
        console.print(f"warning: {warning}", style="yellow", soft_wrap=True)


def render_scores(summary: ScoresSummary, console: Console) -> None:
    """Print a scores-file summary."""
    rows = [
        ("path", summary.path),
        (
            "pairs",
            f"{summary.n_pairs:,} ({summary.n_genuine:,} genuine, {summary.n_impostor:,} impostor)",
        ),
        ("score range", f"[{_number(summary.score_min)}, {_number(summary.score_max)}]"),
        *[(name, ", ".join(map(str, values))) for name, values in summary.groups.items()],
        *[
            (f"array {name}", f"{spec['dtype']} {tuple(spec['shape'])}")
            for name, spec in summary.arrays.items()
        ],
    ]
    console.print(_fields_table("per-pair scores", rows))


@click.command("inspect")
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--check",
    is_flag=True,
    help="Stores: read every row again and verify the recorded content checksum.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def inspect_command(path: Path, check: bool, as_json: bool) -> None:
    """Show what PATH holds: a feature store, a report or a report's scores file.

    The kind is told by content. A store: items, dimension, model, preprocessing, flips,
    metadata, the recorded content checksum, raw-norm summary and skipped items; --check
    re-reads every row and recomputes the checksum (exit code 2 on a mismatch). A report:
    protocol, checksums, conventions, counts, warnings and headline numbers. A scores file:
    pairs, score range, arrays.

    \b
    Example:
      facebench inspect lfw.h5
      facebench inspect lfw.h5 --check
      facebench inspect lfw.json
      facebench inspect lfw.scores.npz --json
    """
    from facebench.errors import StoreError
    from facebench.inspect import ReportSummary, StoreSummary, inspect_path, to_json

    summary = inspect_path(path, check=check)
    if as_json:
        click.echo(to_json(summary), nl=False)
    else:
        console = Console(file=sys.stdout, width=120)
        if isinstance(summary, StoreSummary):
            render_store(summary, console)
        elif isinstance(summary, ReportSummary):
            render_report(summary, console)
        else:
            render_scores(summary, console)
    if isinstance(summary, StoreSummary) and summary.check is not None and not summary.check.ok:
        raise StoreError(
            f"{path}: Expected the content checksum recorded when the store was written"
            f" ({summary.check.recorded}), but its rows give {summary.check.computed}; the"
            " store changed after it was written or is damaged: re-create it"
        )
