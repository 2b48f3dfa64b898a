"""Tests of facebench.plotting and `facebench plot-roc`.

Most reports are built here from synthetic scores; their ROC and TAR@FAR entries are computed
by a direct numpy count, independent of facebench.metrics. The real split reports (IJB-A with
two splits, IJB-C with one split and two galleries) come from
facebench.evaluate_splits.evaluate_templates on generated protocol folders and stores, as
`facebench verify` writes them.
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
from ijba_fixtures import write_ijba
from ijbc_fixtures import write_ijbc
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from scipy.stats import norm

from facebench.cli import cli
from facebench.errors import ReportError
from facebench.evaluate_splits import evaluate_templates
from facebench.plotting import (
    FIGURE_FORMATS,
    PlotError,
    cmc_headline,
    figure_format,
    plot_cmc,
    plot_roc,
    report_headline,
)
from facebench.report import to_json
from facebench.store import create_store, normalize_rows
from protocols import ijba, ijbc

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


# -- CMC (--cmc) on synthetic reports ------------------------------------------------------


def cmc_report(
    curves: list[dict[str, list[float]]], rank_1_std: float | None = None
) -> dict[str, Any]:
    """A split report whose split i searches the galleries of ``curves[i]`` (name -> curve)."""
    report = split_report(n_splits=len(curves))
    for entry, searches in zip(report["splits"], curves, strict=True):
        entry["identification"] = [
            {"gallery": g, "n_probes": 10, "cmc": {"1": c[0]}, "cmc_curve": c, "tpir_at_fpir": []}
            for g, c in searches.items()
        ]
    # the headline search: "mean" when there are several galleries, else the only one
    rank_1 = float(np.mean([c.get("mean", next(iter(c.values())))[0] for c in curves]))
    report["summary"]["cmc"] = {"1": {"mean": rank_1, "std": rank_1_std}}
    return report


def test_cmc_hand_worked_splits() -> None:
    report = cmc_report(
        [{"gallery": [0.5, 0.75, 1.0]}, {"gallery": [0.25, 0.5, 0.75]}], rank_1_std=0.1768
    )
    figure = plot_cmc([report], sources=["x/ijba.json"])
    axes = figure.axes[0]
    thin_1, thin_2, main = curve_lines(figure)
    for line in (thin_1, thin_2, main):
        np.testing.assert_array_equal(np.asarray(line.get_xdata(), dtype=float), [1, 2, 3])
    np.testing.assert_allclose(np.asarray(main.get_ydata(), dtype=float), [0.375, 0.625, 0.875])
    np.testing.assert_allclose(np.asarray(thin_2.get_ydata(), dtype=float), [0.25, 0.5, 0.75])
    assert {thin_1.get_color(), thin_2.get_color(), main.get_color()} == {"C0"}
    assert thin_1.get_linewidth() < main.get_linewidth()
    (points,) = marker_lines(figure)
    np.testing.assert_allclose(np.asarray(points.get_xdata(), dtype=float), [1])
    np.testing.assert_allclose(np.asarray(points.get_ydata(), dtype=float), [0.375])
    assert legend_texts(figure) == ["r50, rank-1 0.375 ± 0.177"]
    assert axes.get_xscale() == "linear"
    assert list(axes.get_xticks()) == [1, 2, 3]
    assert axes.get_xlim() == pytest.approx((0.5, 3.5))
    assert axes.get_ylim() == pytest.approx((0.0, 1.0))
    assert (axes.get_xlabel(), axes.get_ylabel()) == ("Rank", "Identification rate (closed set)")


def test_cmc_galleries_and_mean() -> None:
    report = cmc_report([{"G1": [0.5, 1.0], "G2": [0.25, 0.5], "mean": [0.375, 0.75]}])
    figure = plot_cmc([report, cmc_report([{"gallery": [0.9, 1.0]}])])
    main, g1, g2, other = curve_lines(figure)
    np.testing.assert_allclose(np.asarray(main.get_ydata(), dtype=float), [0.375, 0.75])
    np.testing.assert_allclose(np.asarray(g2.get_ydata(), dtype=float), [0.25, 0.5])
    assert (main.get_linestyle(), g1.get_linestyle(), g2.get_linestyle()) == ("-", "--", ":")
    assert {main.get_color(), g1.get_color(), g2.get_color()} == {"C0"}
    assert other.get_color() == "C1"
    assert legend_texts(figure) == [
        "r50 [report 1] (mean of G1 & G2), rank-1 0.375",
        "r50 [report 1] G1, rank-1 0.500",
        "r50 [report 1] G2, rank-1 0.250",
        "r50 [report 2], rank-1 0.900",
    ]


def test_cmc_headline() -> None:
    assert cmc_headline(cmc_report([{"gallery": [0.8]}], rank_1_std=0.01)) == "rank-1 0.800 ± 0.010"
    assert cmc_headline(cmc_report([{"gallery": [0.8]}])) == "rank-1 0.800"
    assert cmc_headline(split_report()) is None
    assert cmc_headline(fold_report()) is None


def test_cmc_errors() -> None:
    for report in (fold_report(), split_report()):
        with pytest.raises(ReportError, match=r"^runs/r\.json: has no 1:N results.*--cmc needs"):
            plot_cmc([report], sources=["runs/r.json"])
    partial = cmc_report([{"gallery": [0.5]}, {"gallery": [0.5]}])
    del partial["splits"][1]["identification"]
    with pytest.raises(ReportError, match=r"splits\[1\]` has no `identification`"):
        plot_cmc([partial])
    old = cmc_report([{"gallery": [0.5]}])
    del old["splits"][0]["identification"][0]["cmc_curve"]
    with pytest.raises(ReportError, match=r"identification\[0\]\.cmc_curve.*re-run"):
        plot_cmc([old])
    with pytest.raises(ReportError, match="galleries of `splits\\[0\\]`"):
        plot_cmc([cmc_report([{"gallery": [0.5]}, {"G1": [0.5]}])])
    with pytest.raises(ReportError, match="same ranks"):
        plot_cmc([cmc_report([{"gallery": [0.5]}, {"gallery": [0.5, 0.6]}])])
    with pytest.raises(ReportError, match='`gallery: "mean"`'):
        plot_cmc([cmc_report([{"G1": [0.5], "G2": [0.5]}])])
    with pytest.raises(ReportError, match="number in \\[0, 1\\]"):
        plot_cmc([cmc_report([{"gallery": [0.5, 1.5]}])])
    with pytest.raises(PlotError, match="at least one"):
        plot_cmc([])


def test_cmc_command_on_a_fold_report_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "lfw.json", fold_report())
    out = tmp_path / "cmc.png"
    result = run(path, "-o", out, "--cmc")
    assert result.exit_code == 2
    assert f"{path}: has no 1:N results" in result.stderr
    assert "--cmc needs an IJB report with 1:N" in result.stderr
    assert not out.exists()


def test_det_and_cmc_together_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "ijba.json", cmc_report([{"gallery": [0.5]}]))
    out = tmp_path / "fig.png"
    for missing_report in (False, True):  # refused before any report is read
        source = tmp_path / "absent.json" if missing_report else path
        result = run(source, "-o", out, "--det", "--cmc")
        assert result.exit_code == 2
        assert "--det and --cmc" in result.stderr
        assert not out.exists()


# -- real split reports, as `facebench verify` writes them --------------------------------


def unit_features(vectors: list[np.ndarray], rng: np.random.Generator) -> tuple[Any, Any]:
    raw = np.stack(vectors) * rng.uniform(2, 9, size=(len(vectors), 1))
    return normalize_rows(raw)


@pytest.fixture(scope="module")
def real_reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """IJB-A (2 splits, one gallery each) and IJB-C (1 split: G1, G2 and their mean)."""
    root = tmp_path_factory.mktemp("real")
    rng = np.random.default_rng(7)
    dim = 16
    paths: dict[str, Path] = {}

    record = write_ijba(root / "IJB-A", n_splits=2, n_subjects=15, seed=3)
    direction = {s: rng.standard_normal(dim) for s in set(record["key_subject"].values())}
    keys = record["keys"]
    unit, norms = unit_features(
        [direction[record["key_subject"][k]] + 1.3 * rng.standard_normal(dim) for k in keys], rng
    )
    create_store(root / "ijba.h5", keys, unit, norms, model="synthetic")
    report, _ = evaluate_templates(ijba.load(root / "IJB-A"), root / "ijba.h5")
    paths["ijba"] = root / "ijba.json"
    paths["ijba"].write_text(to_json(report), encoding="utf-8")

    record = write_ijbc(root / "IJB-C", n_subjects=20, templates_per_subject=3, seed=2)
    subject = {k: record["subjects"][t] for t, ks in record["templates"].items() for k in ks}
    keys = sorted(subject)
    direction = {s: rng.standard_normal(dim) for s in set(subject.values())}
    unit, norms = unit_features(
        [direction[subject[k]] + 1.3 * rng.standard_normal(dim) for k in keys], rng
    )
    create_store(root / "ijbc.h5", keys, unit, norms, model="synthetic")
    report, _ = evaluate_templates(ijbc.load_ijbc(root / "IJB-C"), root / "ijbc.h5")
    paths["ijbc"] = root / "ijbc.json"
    paths["ijbc"].write_text(to_json(report), encoding="utf-8")
    return paths


def test_real_reports_hold_what_the_figures_need(real_reports: dict[str, Path]) -> None:
    """Guards the assumptions below: if the report shape moves, these fail first."""
    a = json.loads(real_reports["ijba"].read_text(encoding="utf-8"))
    assert len(a["splits"]) == 2
    assert [[s["gallery"] for s in e["identification"]] for e in a["splits"]] == [["gallery"]] * 2
    assert a["summary"]["cmc"]["1"]["std"] is not None
    c = json.loads(real_reports["ijbc"].read_text(encoding="utf-8"))
    (split,) = c["splits"]
    assert [s["gallery"] for s in split["identification"]] == ["G1", "G2", "mean"]
    assert c["summary"]["cmc"]["1"]["std"] is None
    assert min(r["far_target"] for r in split["tar_at_far"]) == 1e-6
    assert all(r["std"] is None for r in c["summary"]["tar_at_far"])


@pytest.mark.parametrize("protocol", ["ijba", "ijbc"])
@pytest.mark.parametrize("extra", [(), ("--det",), ("--cmc",)], ids=["roc", "det", "cmc"])
def test_real_split_report_command(
    tmp_path: Path, real_reports: dict[str, Path], protocol: str, extra: tuple[str, ...]
) -> None:
    out = tmp_path / "figure.png"
    result = run(real_reports[protocol], "-o", out, *extra)
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert ("CMC" if extra == ("--cmc",) else "DET" if extra else "ROC") in result.stderr


def test_real_split_reports_roc(real_reports: dict[str, Path]) -> None:
    a, c = (json.loads(real_reports[p].read_text(encoding="utf-8")) for p in ("ijba", "ijbc"))
    figure = plot_roc([a, c], sources=[str(real_reports["ijba"]), str(real_reports["ijbc"])])
    lines = curve_lines(figure)
    assert len(lines) == 3  # two IJB-A splits, one IJB-C split
    assert [line.get_color() for line in lines] == ["C0", "C0", "C1"]
    for line, split in zip(lines, [*a["splits"], *c["splits"]], strict=True):
        far, tar = np.asarray(split["roc"]["far"]), np.asarray(split["roc"]["tar"])
        np.testing.assert_array_equal(np.asarray(line.get_xdata(), dtype=float), far[far > 0])
        np.testing.assert_array_equal(np.asarray(line.get_ydata(), dtype=float), tar[far > 0])
    n_impostor = max(s["n_impostor"] for s in [*a["splits"], *c["splits"]])
    assert figure.axes[0].get_xlim()[0] == pytest.approx(1 / n_impostor)
    # TAR at the smallest FAR: IJB-A 1e-4 with its std; IJB-C 1e-6, one split: no std
    tar_a = next(r for r in a["summary"]["tar_at_far"] if r["far_target"] == 1e-4)
    tar_c = next(r for r in c["summary"]["tar_at_far"] if r["far_target"] == 1e-6)
    assert legend_texts(figure) == [
        f"synthetic [ijba], TAR@FAR=1e-4 {tar_a['mean']:.3f} ± {tar_a['std']:.3f}",
        f"synthetic [ijbc], TAR@FAR=1e-6 {tar_c['mean']:.3f}",
    ]
    # operating points: every row with a TAR and far_achieved > 0 (1e-6 of 100-odd: FAR 0)
    marked = [np.asarray(m.get_xdata(), dtype=float) for m in marker_lines(figure)]
    for drawn, split in zip(marked, [*a["splits"], *c["splits"]], strict=True):
        rows = [r for r in split["tar_at_far"] if r["tar"] is not None]
        expected = [r["far_achieved"] for r in rows if r["far_achieved"] > 0]
        np.testing.assert_allclose(drawn, expected)
    figure = plot_roc([c], det=True)
    for line in figure.axes[0].get_lines():
        assert np.all(np.isfinite(line.get_xdata())) and np.all(np.isfinite(line.get_ydata()))


def test_real_ijba_cmc(real_reports: dict[str, Path]) -> None:
    a = json.loads(real_reports["ijba"].read_text(encoding="utf-8"))
    figure = plot_cmc([a])
    *thin, main = curve_lines(figure)
    curves = np.asarray([e["identification"][0]["cmc_curve"] for e in a["splits"]])
    assert curves.shape == (2, 20)
    for line, curve in zip(thin, curves, strict=True):
        np.testing.assert_array_equal(np.asarray(line.get_ydata(), dtype=float), curve)
        assert line.get_linewidth() < main.get_linewidth()
    np.testing.assert_allclose(np.asarray(main.get_ydata(), dtype=float), curves.mean(axis=0))
    np.testing.assert_array_equal(np.asarray(main.get_xdata(), dtype=float), np.arange(1, 21))
    rank_1 = a["summary"]["cmc"]["1"]
    assert np.asarray(main.get_ydata(), dtype=float)[0] == pytest.approx(rank_1["mean"])
    assert legend_texts(figure) == [f"synthetic, rank-1 {rank_1['mean']:.3f} ± {rank_1['std']:.3f}"]
    (points,) = marker_lines(figure)
    np.testing.assert_array_equal(np.asarray(points.get_xdata(), dtype=float), [1, 5, 10])
    np.testing.assert_allclose(
        np.asarray(points.get_ydata(), dtype=float),
        [a["summary"]["cmc"][r]["mean"] for r in ("1", "5", "10")],
    )
    assert list(figure.axes[0].get_xticks()) == list(range(1, 21))


def test_real_ijbc_cmc(real_reports: dict[str, Path]) -> None:
    c = json.loads(real_reports["ijbc"].read_text(encoding="utf-8"))
    figure = plot_cmc([c])
    main, g1, g2 = curve_lines(figure)  # one split: no per-split lines
    searches = {s["gallery"]: s for s in c["splits"][0]["identification"]}
    for line, gallery in ((main, "mean"), (g1, "G1"), (g2, "G2")):
        expected = searches[gallery]["cmc_curve"]
        np.testing.assert_allclose(np.asarray(line.get_ydata(), dtype=float), expected)
    assert main.get_linewidth() > g1.get_linewidth()
    assert (g1.get_linestyle(), g2.get_linestyle()) == ("--", ":")
    assert legend_texts(figure) == [
        f"synthetic (mean of G1 & G2), rank-1 {searches['mean']['cmc']['1']:.3f}",
        f"synthetic G1, rank-1 {searches['G1']['cmc']['1']:.3f}",
        f"synthetic G2, rank-1 {searches['G2']['cmc']['1']:.3f}",
    ]
