"""A comparison as text: table cells, the legend, Markdown, and the JSON/Markdown files.

The console table of ``facebench compare`` is drawn from these cells by
:mod:`facebench.cli.compare_cmd`; the comparison itself is :mod:`facebench.compare.reports`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from facebench.compare.comparison import Comparison
from facebench.fileio import check_writable, write_text_atomic


def _pct(value: float | None, decimals: int) -> str:
    return "—" if value is None else f"{100 * value:.{decimals}f}"


def _signed(value: float, decimals: int) -> str:
    text = f"{100 * value:+.{decimals}f}"
    return text.replace("-0." + "0" * decimals, "+0." + "0" * decimals) if decimals else text


NOISE_MARK = "≈"


@dataclass(frozen=True)
class Cell:
    """One table cell: a report's number and, for the other reports, its difference.

    ``value`` is a percentage, with ``± std`` (split protocols, over splits) or ``± stderr``
    (fold accuracy, over folds) where known; ``estimate`` and ``interval`` are the
    difference to the reference in percentage points (``+d`` and ``[low, high]``), empty
    for the reference; ``within_noise``: the interval contains 0.
    """

    value: str
    estimate: str = ""
    interval: str = ""
    within_noise: bool = False


def format_cells(comparison: Comparison) -> list[list[Cell]]:
    """The table's cells: per report, per metric."""
    rows = []
    for i, h in enumerate(comparison.reports):
        cells = []
        for m in comparison.metrics:
            value = _pct(h.values.get(m.key), m.decimals)
            spread = h.spread.get(m.key, {})
            extra = spread.get("stderr") if comparison.kind == "fold" else spread.get("std")
            if extra is not None:
                value += f" ± {_pct(extra, m.decimals)}"
            if i == 0 or not comparison.differences:
                cells.append(Cell(value))
                continue
            d = comparison.difference(i, m.key)
            interval = f"[{_signed(d.low, m.decimals)}, {_signed(d.high, m.decimals)}]"
            cells.append(Cell(value, _signed(d.estimate, m.decimals), interval, d.within_noise))
        rows.append(cells)
    return rows


def legend(comparison: Comparison) -> list[str]:
    """The lines that explain the table."""
    s = comparison.settings
    spread = (
        "± is the standard error over the folds (std ddof=1 / sqrt(k)) for accuracy"
        if comparison.kind == "fold"
        else "± is the std (ddof=1) over the splits"
    )
    lines = [f"Numbers in %; {spread}."]
    if comparison.differences:
        lines.append(
            f"Below each number: its difference to {comparison.reports[0].label} (the first"
            f" row) in percentage points, with the {100 * s['confidence']:g}% paired bootstrap"
            f" interval ({s['resamples']} resamples, seed {s['seed']}; {s['scheme']})."
        )
        lower = " EER: lower is better." if any(m.key == "eer" for m in comparison.metrics) else ""
        lines.append(
            f"{NOISE_MARK}: the interval contains 0, so the difference is within resampling"
            f" noise.{lower}"
        )
    return lines


def to_markdown(comparison: Comparison) -> str:
    """A Markdown table (one row per report) with its legend below."""
    header = ["model", *[m.label + " (%)" for m in comparison.metrics]]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * len(comparison.metrics)) + "|",
    ]
    several = len(comparison.reports) > 1
    for i, (h, cells) in enumerate(zip(comparison.reports, format_cells(comparison), strict=True)):
        name = h.label.replace("|", "\\|") + (" (ref.)" if i == 0 and several else "")
        texts = [
            c.value
            if not c.estimate
            else f"{c.value}<br>{c.estimate} {c.interval}"
            + (f" {NOISE_MARK}" if c.within_noise else "")
            for c in cells
        ]
        lines.append("| " + " | ".join([name, *texts]) + " |")
    lines.append("")
    lines += [f"{line}  " for line in legend(comparison)]
    lines += [f"Note: {note}  " for note in comparison.notes]
    return "\n".join(lines).rstrip() + "\n"


def write_outputs(
    comparison: Comparison,
    json_path: str | Path | None,
    markdown_path: str | Path | None,
    overwrite: bool = False,
) -> list[Path]:
    """Write the JSON and/or Markdown atomically; both are checked before either is written."""
    targets = [(p, f) for p, f in ((json_path, "json"), (markdown_path, "md")) if p is not None]
    for path, _ in targets:
        check_writable(path, overwrite)
    written = []
    for path, what in targets:
        text = comparison.to_json() if what == "json" else to_markdown(comparison)
        written.append(write_text_atomic(path, text, overwrite))
    return written
