"""Tests of facebench.plotting and `facebench plot-roc`.

Reports are built here from synthetic scores; their ROC and TAR@FAR entries are computed by a
direct numpy count, independent of facebench.metrics.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pytest
from click.testing import CliRunner, Result
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from scipy.stats import norm

from facebench.cli import cli
from facebench.errors import ReportError
from facebench.plotting import (
    FIGURE_FORMATS,
    PlotError,
    figure_format,
    plot_roc,
    report_headline,
)

FAR_TARGETS = (1e-3, 1e-2, 1e-1)


# -- synthetic reports ---------------------------------------------------------------------


def roc_from_scores(genuine: np.ndarray, impostor: np.ndarray) -> dict[str, list[Any]]:
    """Element i: rates of the pairs with score >= threshold[i]; first point accepts nothing."""
    thresholds = np.unique(np.concatenate([genuine, impostor]))[::-1]
    far = [float(np.mean(impostor >= t)) for t in thresholds]
    tar = [float(np.mean(genuine >= t)) for t in thresholds]
    return {
        "far": [0.0, *far],
        "tar": [0.0, *tar],
        "threshold": [None, *(float(t) for t in thresholds)],
    }


def tar_at_far_rows(roc: dict[str, list[Any]], n_impostor: int) -> list[dict[str, Any]]:
    """The largest TAR whose FAR is at most the target, from the full (not downsampled) ROC."""
    far = np.asarray(roc["far"])
    rows = []
    for target in FAR_TARGETS:
        i = int(np.flatnonzero(far <= target)[-1])
        rows.append(
            {
                "far_target": target,
                "tar": roc["tar"][i],
                "threshold": roc["threshold"][i],
                "far_achieved": float(far[i]),
                "n_impostors_at_or_above": round(far[i] * n_impostor),
                "resolution_limited": target < 1 / n_impostor,
            }
        )
    return rows


def scores(seed: int, n_genuine: int, n_impostor: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(2.5, 1.0, n_genuine), rng.normal(0.0, 1.0, n_impostor)


def fold_report(
    seed: int = 0,
    n_genuine: int = 300,
    n_impostor: int = 300,
    model: str | None = "imported:feats.npy",
    label: str | None = None,
) -> dict[str, Any]:
    genuine, impostor = scores(seed, n_genuine, n_impostor)
    roc = roc_from_scores(genuine, impostor)
    report: dict[str, Any] = {
        "schema_version": 1,
        "protocol": "lfw",
        "protocol_sha256": "0" * 64,
        "store": {"path": "feats.h5", "content_sha256": "1" * 64, "attributes": {}},
        "conventions": {},
        "counts": {},
        "warnings": [],
        "n_pairs": n_genuine + n_impostor,
        "n_genuine": n_genuine,
        "n_impostor": n_impostor,
        "accuracy": {"mean": 0.9912, "std": 0.004, "stderr": 0.0013, "folds": [], "thresholds": []},
        "auc": 0.99,
        "eer": 0.05,
        "eer_threshold": 1.2,
        "tar_at_far": tar_at_far_rows(roc, n_impostor),
        "roc": roc,
    }
    if model is not None:
        report["store"]["attributes"]["model"] = model
    if label is not None:
        report["label"] = label
    return report


def split_report(n_splits: int = 3, n_genuine: int = 200, n_impostor: int = 2000) -> dict[str, Any]:
    splits = []
    for split in range(1, n_splits + 1):
        genuine, impostor = scores(100 + split, n_genuine, n_impostor)
        roc = roc_from_scores(genuine, impostor)
        splits.append(
            {
                "split": split,
                "n_templates": 50,
                "n_pairs": n_genuine + n_impostor,
                "n_genuine": n_genuine,
                "n_impostor": n_impostor,
                "tar_at_far": tar_at_far_rows(roc, n_impostor),
                "roc": roc,
                "cmc": {"1": 0.9, "5": 0.95, "10": 0.97},
            }
        )
    return {
        "schema_version": 1,
        "protocol": "ijba",
        "protocol_sha256": "0" * 64,
        "store": {"path": "ijba.h5", "content_sha256": "1" * 64, "attributes": {"model": "r50"}},
        "conventions": {},
        "counts": {},
        "warnings": [],
        "n_pairs": n_splits * (n_genuine + n_impostor),
        "n_genuine": n_splits * n_genuine,
        "splits": splits,
        "summary": {
            "auc": {"mean": 0.99, "std": 0.002},
            "tar_at_far": [
                {"far_target": 1e-2, "mean": 0.95, "std": 0.004},
                {"far_target": 1e-4, "mean": 0.9091, "std": 0.0101},
                {"far_target": 1e-3, "mean": 0.93, "std": 0.006},
            ],
        },
    }


def write(path: Path, report: dict[str, Any]) -> Path:
    path.write_text(json.dumps(report), encoding="utf-8")
    return path


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, ["plot-roc", *map(str, args)])


def curve_lines(figure: Figure) -> list[Line2D]:
    return [line for line in figure.axes[0].get_lines() if line.get_marker() in ("None", "")]


def marker_lines(figure: Figure) -> list[Line2D]:
    return [line for line in figure.axes[0].get_lines() if line.get_marker() == "o"]


def legend_texts(figure: Figure) -> list[str]:
    legend = figure.axes[0].get_legend()
    assert legend is not None
    return [text.get_text() for text in legend.get_texts()]


# -- the command ---------------------------------------------------------------------------

MAGIC = {".png": (b"\x89PNG",), ".pdf": (b"%PDF",), ".svg": (b"<?xml", b"<svg")}


@pytest.mark.parametrize("suffix", list(FIGURE_FORMATS))
def test_writes_each_format(tmp_path: Path, suffix: str) -> None:
    report = write(tmp_path / "lfw.json", fold_report())
    out = tmp_path / f"roc{suffix}"
    result = run(report, "-o", out)
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(MAGIC[suffix])
    assert str(out) in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lfw.json", out.name]  # no temp left


def test_det_and_title(tmp_path: Path) -> None:
    report = write(tmp_path / "lfw.json", fold_report())
    out = tmp_path / "det.pdf"
    result = run(report, "-o", out, "--det", "--title", "LFW")
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"%PDF")
    assert "DET" in result.stderr


def test_labels_override_and_must_match_count(tmp_path: Path) -> None:
    a = write(tmp_path / "a.json", fold_report(0))
    b = write(tmp_path / "b.json", fold_report(1))
    out = tmp_path / "roc.svg"
    result = run(a, b, "-o", out, "--label", "ArcFace")
    assert result.exit_code == 2
    assert "--label" in result.stderr
    assert not out.exists()
    result = run(a, b, "-o", out, "--label", "ArcFace", "--label", "CosFace")
    assert result.exit_code == 0, result.output
    svg = out.read_text(encoding="utf-8")
    assert "ArcFace" in svg and "CosFace" in svg


def test_bad_suffix_is_a_usage_error(tmp_path: Path) -> None:
    report = write(tmp_path / "lfw.json", fold_report())
    out = tmp_path / "roc.jpg"
    result = run(report, "-o", out)
    assert result.exit_code == 2
    assert ".png, .pdf, .svg" in result.stderr
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["lfw.json"]


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    report = write(tmp_path / "lfw.json", fold_report())
    out = tmp_path / "roc.png"
    out.write_bytes(b"keep me")
    result = run(report, "-o", out)
    assert result.exit_code == 2
    assert "--overwrite" in result.stderr
    assert out.read_bytes() == b"keep me"
    result = run(report, "-o", out, "--overwrite")
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"\x89PNG")


def test_invalid_report_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text('{"schema_version": 1,', encoding="utf-8")
    out = tmp_path / "roc.png"
    result = run(bad, "-o", out)
    assert result.exit_code == 2
    assert str(bad) in result.stderr
    assert not out.exists()


def test_report_without_roc_names_the_file(tmp_path: Path) -> None:
    report = fold_report()
    del report["roc"]
    path = write(tmp_path / "noroc.json", report)
    result = run(path, "-o", tmp_path / "roc.png")
    assert result.exit_code == 2
    assert str(path) in result.stderr and "ROC" in result.stderr
    assert not (tmp_path / "roc.png").exists()


def test_split_report_command(tmp_path: Path) -> None:
    path = write(tmp_path / "ijba.json", split_report())
    for extra in ((), ("--det",)):
        out = tmp_path / f"ijba{len(extra)}.png"
        result = run(path, "-o", out, *extra)
        assert result.exit_code == 0, result.output
        assert out.read_bytes().startswith(b"\x89PNG")


# -- the library ---------------------------------------------------------------------------


def test_two_reports_legend_and_log_axis() -> None:
    small, large = fold_report(0, n_impostor=300), fold_report(1, n_impostor=1200)
    figure = plot_roc([small, large], sources=["runs/a.json", "runs/b.json"])
    axes = figure.axes[0]
    assert axes.get_xscale() == "log"
    assert axes.get_xlim()[0] == pytest.approx(1 / 1200)
    assert axes.get_xlim()[1] == pytest.approx(1.0)
    assert axes.get_ylim() == pytest.approx((0.0, 1.0))
    assert axes.get_xlabel() == "False accept rate (FAR)"
    assert axes.get_ylabel() == "True accept rate (TAR)"
    # same model name in both: the file stem tells them apart
    assert legend_texts(figure) == [
        "imported:feats.npy [a], acc 99.12% ± 0.13 (s.e.)",
        "imported:feats.npy [b], acc 99.12% ± 0.13 (s.e.)",
    ]
    assert len(curve_lines(figure)) == 2


def test_legend_name_precedence() -> None:
    reports = [
        fold_report(0, label="mine", model="m1"),
        fold_report(1, model="m2"),
        fold_report(2, model=None),
    ]
    sources = ["x/one.json", "x/two.json", "x/three.json"]
    figure = plot_roc(reports, sources=sources)
    assert [t.split(",")[0] for t in legend_texts(figure)] == ["mine", "m2", "three"]
    figure = plot_roc(reports, sources=sources, labels=["A", "B", "A"])
    assert [t.split(",")[0] for t in legend_texts(figure)] == ["A [one]", "B", "A [three]"]
    figure = plot_roc([reports[1], reports[1]], sources=[sources[1]] * 2)
    assert [t.split(",")[0] for t in legend_texts(figure)] == [
        "m2 [two] [x/two.json] #1",
        "m2 [two] [x/two.json] #2",
    ]


def test_curves_start_at_first_positive_far() -> None:
    report = fold_report(3)
    figure = plot_roc([report, split_report()])
    for line in figure.axes[0].get_lines():
        assert np.all(np.asarray(line.get_xdata()) > 0)
    far, tar = np.asarray(report["roc"]["far"]), np.asarray(report["roc"]["tar"])
    first = curve_lines(figure)[0]
    np.testing.assert_array_equal(np.asarray(first.get_xdata(), dtype=float), far[far > 0])
    np.testing.assert_array_equal(np.asarray(first.get_ydata(), dtype=float), tar[far > 0])


def test_operating_points_come_from_tar_at_far() -> None:
    report = fold_report(4, n_impostor=5000)
    report["tar_at_far"][0]["far_achieved"] = 0.0  # FAR 0 cannot sit on a log axis
    figure = plot_roc([report])
    (points,) = marker_lines(figure)
    rows = report["tar_at_far"][1:]
    np.testing.assert_allclose(
        np.asarray(points.get_xdata(), dtype=float), [r["far_achieved"] for r in rows]
    )
    np.testing.assert_allclose(
        np.asarray(points.get_ydata(), dtype=float), [r["tar"] for r in rows]
    )


def test_split_report_one_colour_one_legend_entry() -> None:
    figure = plot_roc([split_report(n_splits=3), fold_report(n_impostor=300)])
    lines = curve_lines(figure)
    assert len(lines) == 4
    assert len({line.get_color() for line in lines[:3]}) == 1
    assert lines[3].get_color() != lines[0].get_color()
    assert lines[0].get_linewidth() < lines[3].get_linewidth()
    assert legend_texts(figure) == [
        "r50, TAR@FAR=1e-4 0.909 ± 0.010",
        "imported:feats.npy, acc 99.12% ± 0.13 (s.e.)",
    ]
    assert figure.axes[0].get_xlim()[0] == pytest.approx(1 / 2000)


def test_split_without_n_impostor_uses_pairs_minus_genuine() -> None:
    report = split_report(n_splits=1, n_genuine=100, n_impostor=400)
    del report["splits"][0]["n_impostor"]
    figure = plot_roc([report])
    assert figure.axes[0].get_xlim()[0] == pytest.approx(1 / 400)


def test_det_axes_are_probit_with_percent_ticks() -> None:
    report = fold_report(5, n_genuine=400, n_impostor=1000)
    figure = plot_roc([report, split_report()], det=True)
    axes = figure.axes[0]
    assert axes.get_ylabel() == "False reject rate (FRR)"
    x_ticks = [t.get_text() for t in axes.get_xticklabels()]
    assert {"0.1%", "1%", "5%", "20%", "40%"} <= set(x_ticks)
    assert all(t.endswith("%") for t in x_ticks)
    x_low = norm.ppf(1 / (2 * 2000))  # the split report has the most impostors
    assert min(axes.get_xticks()) >= x_low - 1e-9
    line = curve_lines(figure)[0]
    expected_x = norm.ppf(np.clip(report["roc"]["far"], 1 / 2000, 1 - 1 / 2000))
    expected_y = norm.ppf(np.clip(1 - np.asarray(report["roc"]["tar"]), 1 / 800, 1 - 1 / 800))
    np.testing.assert_allclose(np.asarray(line.get_xdata(), dtype=float), expected_x)
    np.testing.assert_allclose(np.asarray(line.get_ydata(), dtype=float), expected_y)
    for drawn in axes.get_lines():
        assert np.all(np.isfinite(drawn.get_xdata())) and np.all(np.isfinite(drawn.get_ydata()))


def test_headline() -> None:
    assert report_headline(fold_report()) == "acc 99.12% ± 0.13 (s.e.)"
    single = split_report(n_splits=1)
    single["summary"]["tar_at_far"] = [{"far_target": 1e-5, "mean": 0.8, "std": None}]
    assert report_headline(single) == "TAR@FAR=1e-5 0.800"
    assert report_headline({"schema_version": 1, "protocol": "lfw"}) is None


def test_errors() -> None:
    with pytest.raises(PlotError, match=r"got '\.jpeg'"):
        figure_format("x.jpeg")
    assert figure_format("X.PNG")["format"] == "png"
    with pytest.raises(PlotError, match="at least one"):
        plot_roc([])
    with pytest.raises(PlotError, match="labels"):
        plot_roc([fold_report()], labels=["a", "b"])
    bad = fold_report()
    bad["roc"]["tar"] = bad["roc"]["tar"][:-1]
    with pytest.raises(ReportError, match=r"bad\.json: .*one length"):
        plot_roc([bad], sources=["bad.json"])
    bad = fold_report()
    bad["roc"]["far"][1] = None
    with pytest.raises(ReportError, match=r"roc\.far"):
        plot_roc([bad])
    split = split_report(n_splits=2)
    del split["splits"][1]["roc"]
    with pytest.raises(ReportError, match=r"splits\[1\]"):
        plot_roc([split])


def test_import_loads_neither_matplotlib_nor_scipy() -> None:
    code = (
        "import sys, facebench.plotting; print(sorted({'matplotlib', 'scipy'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_figures_are_not_kept_by_pyplot() -> None:
    """plot_roc builds a bare Figure: no GUI backend, nothing for pyplot to leak or close."""
    figure = plot_roc([fold_report()])
    assert isinstance(figure, Figure)
    assert plt.get_fignums() == []
