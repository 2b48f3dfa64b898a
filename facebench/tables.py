"""Rich tables of reports for the terminal (stdout). Nothing here computes a number."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from facebench.report import FoldReport, SplitReport


def _model_of(store: dict[str, Any]) -> str:
    """The model behind a report's scores: the store's, or the scores file's name."""
    if store.get("kind") == "scores file":
        return f"(scores given: {Path(str(store.get('path', '?'))).name})"
    return str(store.get("attributes", {}).get("model", "?"))


def _fmt_threshold(value: float | None) -> str:
    if value is None:
        return "—"
    if math.isinf(value):
        return "+inf" if value > 0 else "-inf"
    return f"{value:.6f}"


def render_fold_report(report: FoldReport, console: Console) -> None:
    """Print a fold report: accuracy per fold and summary, AUC, EER, TAR at each FAR."""
    acc = report.accuracy
    model = _model_of(report.store)
    console.print(
        f"[bold]{report.protocol}[/bold]  {report.n_pairs} pairs "
        f"({report.n_genuine} genuine, {report.n_impostor} impostor)  model: {model}"
    )
    folds = Table(title="k-fold accuracy", title_justify="left")
    folds.add_column("fold", justify="right")
    folds.add_column("accuracy", justify="right")
    folds.add_column("threshold", justify="right")
    for i, (a, t) in enumerate(zip(acc.folds, acc.thresholds, strict=True), start=1):
        folds.add_row(str(i), f"{100 * a:.2f}%", _fmt_threshold(t))
    folds.add_section()
    folds.add_row("mean", f"{100 * acc.mean:.2f}%", "")
    folds.add_row("std (ddof=1)", f"{100 * acc.std:.2f}", "")
    folds.add_row("std. error", f"{100 * acc.stderr:.2f}", "")
    console.print(folds)
    console.print(f"rule: {acc.rule}", style="dim")
    peer = report.extra.get("compat")
    if peer:
        line = (
            f"{peer['rule']} prints: {100 * peer['mean']:.2f}% ± {100 * peer['spread']:.2f}"
            f" ({peer['spread_kind']})"
        )
        val = peer.get("val_at_far")
        if val:
            line += (
                f"; VAL@FAR={val['far_target']:g}: {100 * val['val_mean']:.2f}%"
                f" ± {100 * val['val_std']:.2f} (FAR {val['far_mean']:.2e})"
            )
        console.print(line)
    summary = Table(title="pooled over all pairs", title_justify="left")
    summary.add_column("metric")
    summary.add_column("value", justify="right")
    summary.add_column("threshold", justify="right")
    summary.add_column("FAR achieved", justify="right")
    summary.add_column("impostors ≥ t", justify="right")
    summary.add_row("AUC", f"{report.auc:.6f}", "", "", "")
    summary.add_row("EER", f"{100 * report.eer:.3f}%", _fmt_threshold(report.eer_threshold), "", "")
    for p in report.tar_at_far:
        flag = " (resolution-limited)" if p.resolution_limited else ""
        summary.add_row(
            f"TAR @ FAR={p.far_target:g}{flag}",
            f"{100 * p.tar:.2f}%",
            _fmt_threshold(p.threshold),
            f"{p.far_achieved:.2e}",
            "—" if p.n_impostors_at_or_above is None else str(p.n_impostors_at_or_above),
        )
    console.print(summary)
    console.print(
        f"TAR rule: {report.tar_at_far[0].rule if report.tar_at_far else '-'}; "
        f"flip fusion: {report.conventions.get('flip_fusion')}",
        style="dim",
    )
    print_warnings(report.warnings)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}"


def render_split_report(report: SplitReport, console: Console) -> None:
    """Print a split report: 1:1 TAR at each FAR and 1:N CMC/TPIR per split, and the summary."""
    model = _model_of(report.store)
    console.print(
        f"[bold]{report.protocol}[/bold]  {len(report.splits)} split(s), {report.n_pairs} pairs"
        f" ({report.n_genuine} genuine)  model: {model}  pooling:"
        f" {report.conventions.get('pooling')}"
    )
    far_targets = report.conventions.get("far_targets", [])
    has_11 = any("tar_at_far" in e for e in report.splits)
    has_1n = any("identification" in e for e in report.splits)
    if has_11:
        table = Table(title="1:1 verification, TAR (%) at FAR", title_justify="left")
        for name in ("split", "templates", "pairs", "genuine"):
            table.add_column(name, justify="right")
        for target in far_targets:
            table.add_column(f"{target:g}", justify="right")
        table.add_column("AUC", justify="right")
        any_mark = False
        float32_notes = []
        for e in report.splits:
            if "tar_at_far" not in e:
                continue
            marks = ["*" if p["resolution_limited"] else "" for p in e["tar_at_far"]]
            any_mark = any_mark or any(marks)
            precision = e.get("score_precision") or {}
            if precision.get("precision") == "float32":
                float32_notes.append(
                    f"split {e['split']}: float32 scores, {precision['n_rescored']:,} pairs"
                    " re-scored in float64 (every genuine pair and those near each TAR@FAR"
                    " threshold): TAR@FAR is the float64 one; other scores within"
                    f" {precision['error_bound']:.2g}"
                )
            table.add_row(
                str(e["split"]),
                str(e["n_templates"]),
                str(e["n_pairs"]),
                str(e["n_genuine"]),
                *[f"{_pct(p['tar'])}{m}" for p, m in zip(e["tar_at_far"], marks, strict=True)],
                f"{e['auc']:.5f}",
            )
        summary = report.summary
        if len(report.splits) > 1 and "tar_at_far" in summary:
            table.add_section()
            table.add_row(
                "mean ± std",
                "",
                "",
                "",
                *[f"{_pct(t['mean'])} ± {_pct(t['std'])}" for t in summary["tar_at_far"]],
                f"{summary['auc']['mean']:.5f}",
            )
        console.print(table)
        if any_mark:
            console.print(
                "* resolution-limited: fewer than one impostor fits the FAR budget", style="dim"
            )
        for note in float32_notes:
            console.print(note, style="dim")
    if has_1n:
        table = Table(title="1:N open-set identification (%)", title_justify="left")
        for name in ("split", "gallery", "probes", "mated", "rank 1", "rank 5", "rank 10"):
            table.add_column(name, justify="right")
        fpirs = []
        for e in report.splits:
            for s in e.get("identification", []):
                fpirs = [p["fpir_target"] for p in s["tpir_at_fpir"]]
        for target in fpirs:
            table.add_column(f"TPIR@{target:g}", justify="right")
        for e in report.splits:
            for s in e.get("identification", []):
                table.add_row(
                    str(e["split"]),
                    s["gallery"],
                    str(s.get("n_probes", "")),
                    str(s.get("n_mated", "")),
                    *[_pct(s["cmc"].get(r)) for r in ("1", "5", "10")],
                    *[_pct(p["tpir"]) for p in s["tpir_at_fpir"]],
                )
        summary = report.summary
        if len(report.splits) > 1 and "cmc" in summary:
            table.add_section()
            table.add_row(
                "mean ± std",
                "",
                "",
                "",
                *[
                    f"{_pct(summary['cmc'][r]['mean'])} ± {_pct(summary['cmc'][r]['std'])}"
                    if r in summary["cmc"]
                    else "—"
                    for r in ("1", "5", "10")
                ],
                *[f"{_pct(t['mean'])} ± {_pct(t['std'])}" for t in summary["tpir_at_fpir"]],
            )
        console.print(table)
    print_warnings(report.warnings)


def print_warnings(warnings: list[str]) -> None:
    """Warnings go to stderr (results to stdout), one line each."""
    err = Console(file=sys.stderr, highlight=False)
    for warning in warnings:
        err.print(f"warning: {warning}", style="yellow", soft_wrap=True)
