"""``facebench norms`` and facebench.norms: verification per group of the raw feature norm.

The store is generated over LFW's 7,701 images so that quality follows the norm, as Ranjan
et al. (2017) observe on real features: each image's raw norm is drawn uniformly and its
direction gets more noise the lower that norm. The numbers are checked against a second
computation written here (h5py reads, numpy quantiles, scikit-learn's AUC and ROC) and on a
hand-worked table of eight pairs.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import h5py
import matplotlib.pyplot as plt
import numpy as np
import pytest
from cli_helpers import assert_user_error as _assert_user_error
from click.testing import CliRunner, Result
from matplotlib.figure import Figure
from matplotlib.patches import StepPatch
from sklearn.metrics import roc_auc_score, roc_curve

from facebench.cli import cli
from facebench.errors import FacebenchError
from facebench.metrics import kfold_accuracy
from facebench.norms import (
    CONVENTIONS,
    HISTOGRAM_BINS,
    analyze_norms,
    group_pairs_by_norm,
    load_pair_protocol,
    norms_files,
    plot_norms,
)
from facebench.store import create_store, normalize_rows
from protocols import lfw

PROTOCOL = lfw.load()
IDS = PROTOCOL.items
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_user_error(result: Result, *phrases: str) -> None:
    _assert_user_error(result, *phrases, only_line=True)


def quality_features(ids: list[str], dim: int = 64, seed: int = 3) -> np.ndarray:
    """Raw features whose norm tracks quality: norm ~ U(5, 30), noise falling with the norm.

    The direction is a person's random centre plus Gaussian noise of scale 0.6 (norm 30) to
    2.6 (norm 5), normalized, then scaled to the drawn norm, so the raw norm is exactly the
    drawn one and low-norm images are the noisy ones.
    """
    rng = np.random.default_rng(seed)
    people = sorted({i.split("/", 1)[0] for i in ids})
    person = {p: k for k, p in enumerate(people)}
    centre = rng.standard_normal((len(people), dim))
    centre /= np.linalg.norm(centre, axis=1, keepdims=True)
    norm = rng.uniform(5.0, 30.0, size=len(ids))
    noise = 0.6 + 2.0 * (30.0 - norm) / 25.0
    rows = [person[i.split("/", 1)[0]] for i in ids]
    direction = centre[rows] + noise[:, None] * rng.standard_normal((len(ids), dim)) / np.sqrt(dim)
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    return (direction * norm[:, None]).astype(np.float32)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("norms") / "quality.h5"
    unit, norms = normalize_rows(quality_features(IDS))
    create_store(path, IDS, unit, norms, model="synthetic-quality")
    return path


@pytest.fixture(scope="module")
def report(store: Path) -> Any:
    return analyze_norms(PROTOCOL, store, n_groups=3)


# -- an independent computation -------------------------------------------------------------


def independent_groups(store: Path, n_groups: int, far_target: float = 1e-2) -> dict[str, Any]:
    """Every number of the norm groups, from the raw store and the definitions, literally."""
    with h5py.File(store, "r") as handle:
        ids = [i.decode() for i in handle["ids"][:]]
        x = handle["features"][:].astype(np.float64)
        raw_norm = handle["norms"][:].astype(np.float64)
    row = {k: i for i, k in enumerate(ids)}
    a = np.array([row[k] for k in PROTOCOL.left])
    b = np.array([row[k] for k in PROTOCOL.right])
    s = (x[a] * x[b]).sum(axis=1)
    y = PROTOCOL.is_same
    pair_norm = np.minimum(raw_norm[a], raw_norm[b])
    bounds = np.quantile(pair_norm, np.linspace(0.0, 1.0, n_groups + 1))
    k = kfold_accuracy(s, y, PROTOCOL.folds)
    t = {int(f): float(th) for f, th in zip(k.fold_ids, k.thresholds, strict=True)}
    correct = np.array(
        [(si >= t[int(f)]) == yi for si, f, yi in zip(s, PROTOCOL.folds, y, strict=True)]
    )
    groups = []
    for g in range(1, n_groups + 1):
        lo, hi = bounds[g - 1], bounds[g]
        member = (pair_norm >= lo) & ((pair_norm < hi) if g < n_groups else (pair_norm <= hi))
        sg, yg = s[member], y[member]
        fpr, tpr, _ = roc_curve(yg, sg, drop_intermediate=False)
        ok = fpr <= far_target
        tar = float(tpr[ok].max())
        groups.append(
            {
                "member": member,
                "n_pairs": int(member.sum()),
                "n_genuine": int(yg.sum()),
                "accuracy": float(correct[member].mean()),
                "auc": float(roc_auc_score(yg, sg)),
                "tar": tar,
                "n_fp": round(fpr[ok][tpr[ok] == tar].min() * int((~yg).sum())),
                "mean_genuine": float(sg[yg].mean()),
                "mean_impostor": float(sg[~yg].mean()),
            }
        )
    return {"bounds": bounds, "groups": groups, "kfold": k, "item_norms": raw_norm}


def test_groups_equal_an_independent_computation(store: Path, report: Any) -> None:
    expected = independent_groups(store, 3)
    np.testing.assert_array_equal(report.boundaries, expected["bounds"])
    assert report.n_groups == 3 and len(report.groups) == 3
    # scores summed in another order differ in the last bit, and so may thresholds
    assert report.kfold["thresholds"] == pytest.approx(
        list(expected["kfold"].thresholds), abs=1e-15
    )
    for got, want in zip(report.groups, expected["groups"], strict=True):
        assert got.n_pairs == want["n_pairs"] and got.n_genuine == want["n_genuine"]
        assert got.n_impostor == want["n_pairs"] - want["n_genuine"]
        assert got.accuracy == pytest.approx(want["accuracy"], abs=1e-15)
        assert got.auc == pytest.approx(want["auc"], abs=1e-14)
        assert got.tar_at_far.tar == want["tar"]
        assert got.tar_at_far.n_impostors_at_or_above == want["n_fp"]
        assert got.tar_at_far.rule == "exact" and got.tar_at_far.far_target == 1e-2
        assert got.tar_at_far.resolution_limited is False  # 1e-2 x ~1000 impostors >= 1
        assert got.mean_score_genuine == pytest.approx(want["mean_genuine"], abs=1e-14)
        assert got.mean_score_impostor == pytest.approx(want["mean_impostor"], abs=1e-14)
    assert sum(g.n_pairs for g in report.groups) == 6000
    # the groups' correct pairs are exactly the full protocol's
    assert sum(g.n_correct for g in report.groups) == int(expected["kfold"].n_correct.sum())
    assert report.kfold["mean"] == pytest.approx(expected["kfold"].mean, abs=1e-15)


def test_low_norm_pairs_verify_worse(report: Any) -> None:
    low, middle, high = report.groups
    assert low.accuracy < middle.accuracy < high.accuracy
    assert low.auc < middle.auc < high.auc
    assert low.tar_at_far.tar < high.tar_at_far.tar
    assert low.mean_score_genuine < high.mean_score_genuine
    assert high.accuracy - low.accuracy > 0.05  # a clear effect, not noise


def test_histogram_of_item_norms(store: Path, report: Any) -> None:
    with h5py.File(store, "r") as handle:
        item_norms = handle["norms"][:].astype(np.float64)
    counts, edges = np.histogram(item_norms, bins=HISTOGRAM_BINS)
    h = report.item_norms
    assert h.counts == counts.tolist() and h.edges == edges.tolist()
    assert h.n_items == 7701 and sum(h.pair_counts) == 6000
    assert h.min == item_norms.min() and h.max == item_norms.max()
    assert h.median == np.median(item_norms)


def test_more_groups_match_too(store: Path) -> None:
    five = analyze_norms(PROTOCOL, store, n_groups=5, far_target=0.05)
    expected = independent_groups(store, 5, far_target=0.05)
    np.testing.assert_array_equal(five.boundaries, expected["bounds"])
    assert [g.n_pairs for g in five.groups] == [g["n_pairs"] for g in expected["groups"]]
    assert [g.tar_at_far.tar for g in five.groups] == [g["tar"] for g in expected["groups"]]
    accuracy = [g.accuracy for g in five.groups]
    assert accuracy[0] < accuracy[-1]


# -- the pure function on a hand-worked table ----------------------------------------------

# Eight pairs, two folds, two groups. Scores are sixteenths so every midpoint is exact.
# Fold 1 = pairs 0, 2, 4, 6; its threshold comes from fold 2 (0.1875 T, 0.3125 F, 0.5 F,
# 0.6875 T): 0.59375 gets 3 of 4 right. Fold 2's comes from fold 1 (0.0625 F, 0.625 F,
# 0.8125 T, 0.875 T): 0.71875 gets all 4. Judged with those: pair 2 (0.625 F >= 0.59375)
# and pairs 1, 5 (genuine 0.1875, 0.6875 < 0.71875) are wrong.
HAND_SCORES = [0.875, 0.1875, 0.625, 0.5, 0.8125, 0.6875, 0.0625, 0.3125]
HAND_SAME = [True, True, False, False, True, True, False, False]
HAND_FOLDS = [1, 2, 1, 2, 1, 2, 1, 2]
HAND_NORMS = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]


def test_hand_worked_table() -> None:
    result = group_pairs_by_norm(
        HAND_SCORES, HAND_SAME, HAND_FOLDS, HAND_NORMS, n_groups=2, far_target=0.5
    )
    assert result.boundaries.tolist() == [1.0, 4.5, 8.0]
    assert result.group_of_pair.tolist() == [1, 1, 1, 1, 2, 2, 2, 2]
    assert result.fold_thresholds.tolist() == [0.59375, 0.71875]
    assert result.fold_accuracies.tolist() == [0.75, 0.5]
    low, high = result.groups
    assert (low.n_correct, low.accuracy, high.n_correct, high.accuracy) == (2, 0.5, 3, 0.75)
    assert (low.auc, high.auc) == (0.5, 1.0)
    # FAR 0.5 of 2 impostors: one false accept allowed; the fewest among equal TARs wins
    assert (low.tar_at_far.tar, low.tar_at_far.threshold) == (0.5, 0.875)
    assert low.tar_at_far.n_impostors_at_or_above == 0
    assert (high.tar_at_far.tar, high.tar_at_far.threshold) == (1.0, 0.6875)
    assert (low.mean_score_genuine, low.mean_score_impostor) == (0.53125, 0.5625)
    assert (high.mean_score_genuine, high.mean_score_impostor) == (0.75, 0.1875)
    assert (low.norm_low, low.norm_high, high.norm_low, high.norm_high) == (1.0, 4.5, 4.5, 8.0)
    assert (low.pair_norm_min, low.pair_norm_max) == (1.0, 4.0)
    default = group_pairs_by_norm(HAND_SCORES, HAND_SAME, HAND_FOLDS, HAND_NORMS, n_groups=2)
    assert default.groups[0].tar_at_far.resolution_limited is True  # 1e-2 x 2 < 1


def test_a_pair_at_an_inner_boundary_belongs_to_the_upper_group() -> None:
    # The median of these norms is 2.0 and four pairs lie on it: all go up, leaving the
    # lower group two pairs, too few, which is said rather than reported as NaN.
    norms = [1.0, 2.0, 2.0, 1.0, 2.0, 2.0, 3.0, 3.0]
    with pytest.raises(FacebenchError, match=r"group 1 of 2 .* 1 genuine and 1 impostor"):
        group_pairs_by_norm(HAND_SCORES, HAND_SAME, HAND_FOLDS, norms, n_groups=2)


def test_permuting_pairs_changes_nothing() -> None:
    rng = np.random.default_rng(5)
    n = 400
    scores = rng.normal(size=n)
    same = np.arange(n) % 2 == 0
    scores[same] += 1.5
    folds = rng.integers(1, 6, size=n)
    norms = rng.uniform(1, 10, size=n)
    base = group_pairs_by_norm(scores, same, folds, norms, n_groups=4)
    order = rng.permutation(n)
    permuted = group_pairs_by_norm(scores[order], same[order], folds[order], norms[order], 4)
    for got, want in zip(permuted.groups, base.groups, strict=True):
        # means are summed in another order: equal to the last bits, everything else exactly
        assert got.mean_score_genuine == pytest.approx(want.mean_score_genuine, abs=1e-15)
        assert got.mean_score_impostor == pytest.approx(want.mean_score_impostor, abs=1e-15)
        assert dataclasses.replace(
            got, mean_score_genuine=0.0, mean_score_impostor=0.0
        ) == dataclasses.replace(want, mean_score_genuine=0.0, mean_score_impostor=0.0)
    np.testing.assert_array_equal(permuted.group_of_pair, base.group_of_pair[order])


@pytest.mark.parametrize(
    ("kwargs", "phrase"),
    [
        ({"n_groups": 1}, "--groups to be an integer >= 2"),
        ({"n_groups": True}, "--groups"),
        ({"far_target": 0.0}, "--far"),
        ({"pair_norms": [1.0] * 7}, "pair_norms"),
        ({"pair_norms": [-1.0] * 8}, ">= 0"),
        ({"folds": [1] * 8}, "2 folds"),
    ],
)
def test_pure_function_bad_inputs(kwargs: dict[str, Any], phrase: str) -> None:
    arguments: dict[str, Any] = {
        "scores": HAND_SCORES,
        "is_same": HAND_SAME,
        "folds": HAND_FOLDS,
        "pair_norms": HAND_NORMS,
        "n_groups": 2,
        **kwargs,
    }
    with pytest.raises(FacebenchError, match=phrase):
        group_pairs_by_norm(**arguments)


# -- the figure ----------------------------------------------------------------------------


def test_figure_panels(report: Any) -> None:
    figure = plot_norms(report)
    assert isinstance(figure, Figure)
    assert plt.get_fignums() == []  # not registered with pyplot
    hist_axes, group_axes = figure.axes
    steps = [p for p in hist_axes.patches if isinstance(p, StepPatch)]
    assert [np.asarray(s.get_data()[0]).tolist() for s in steps] == [
        report.item_norms.counts,
        report.item_norms.pair_counts,
    ]
    vertical = [float(np.asarray(line.get_xdata())[0]) for line in hist_axes.lines]
    assert vertical == report.boundaries[1:-1]
    accuracy_line, tar_line = group_axes.lines[:2]
    assert np.asarray(accuracy_line.get_ydata()).tolist() == [g.accuracy for g in report.groups]
    assert np.asarray(tar_line.get_ydata()).tolist() == [g.tar_at_far.tar for g in report.groups]
    labels = [t.get_text() for t in group_axes.get_xticklabels()]
    b = report.boundaries
    assert labels[0].startswith(f"G1\n[{b[0]:.4g}, {b[1]:.4g})")
    assert labels[-1].startswith(f"G3\n[{b[2]:.4g}, {b[3]:.4g}]")
    assert f"{report.groups[0].n_pairs} pairs" in labels[0]
    legend = group_axes.get_legend()
    assert legend is not None
    assert "TAR @ FAR=0.01" in [t.get_text() for t in legend.get_texts()][1]


@pytest.mark.parametrize(("suffix", "magic"), [(".pdf", b"%PDF"), (".svg", b"<?xml")])
def test_other_figure_formats(tmp_path: Path, store: Path, suffix: str, magic: bytes) -> None:
    out = tmp_path / f"norms{suffix}"
    norms_files(store, "lfw", out)
    assert out.read_bytes().startswith(magic)


# -- the command line ----------------------------------------------------------------------


def strict_json(text: str) -> Any:
    def refuse(constant: str) -> None:
        raise AssertionError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def test_cli_end_to_end(tmp_path: Path, store: Path, report: Any) -> None:
    out, js = tmp_path / "norms.png", tmp_path / "norms.json"
    result = run("norms", store, "--protocol", "lfw", "-o", out, "--json", js)
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(PNG_MAGIC)
    assert "G1" in result.stdout and "G3" in result.stdout and "boundaries" in result.stdout
    assert f"{100 * report.groups[0].accuracy:.2f}%" in result.stdout
    assert "wrote" in result.stderr
    data = strict_json(js.read_text())
    assert data["schema_version"] == 1 and data["kind"] == "norms"
    assert data["protocol"] == "lfw"
    assert data["protocol_sha256"] == lfw.file_sha256(lfw.shipped_file())
    with h5py.File(store) as handle:
        assert data["store"]["content_sha256"] == handle.attrs["content_sha256"]
    assert data["store"]["path"] == str(store.resolve())
    assert data["store"]["model"] == "synthetic-quality"
    assert data["conventions"] == CONVENTIONS
    assert data["n_groups"] == 3 and data["far_target"] == 0.01
    assert (data["n_pairs"], data["n_genuine"], data["n_impostor"]) == (6000, 3000, 3000)
    expected = independent_groups(store, 3)
    assert data["boundaries"] == expected["bounds"].tolist()
    for got, want in zip(data["groups"], expected["groups"], strict=True):
        assert got["n_pairs"] == want["n_pairs"] and got["n_genuine"] == want["n_genuine"]
        assert got["accuracy"] == pytest.approx(want["accuracy"], abs=1e-15)
        assert got["auc"] == pytest.approx(want["auc"], abs=1e-14)
        assert got["tar_at_far"]["tar"] == want["tar"]
        assert set(got["tar_at_far"]) >= {"threshold", "far_achieved", "resolution_limited"}
    assert data["kfold"]["fold_ids"] == list(range(1, 11))
    assert len(data["item_norms"]["counts"]) == HISTOGRAM_BINS
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_cli_groups_and_pairs_file(tmp_path: Path, store: Path) -> None:
    lines = lfw.shipped_file().read_text().splitlines()
    pairs = tmp_path / "four_sets.txt"  # the first four sets of pairs.txt, LFW format
    pairs.write_text("\n".join(["4\t300", *lines[1 : 1 + 4 * 600]]) + "\n")
    js = tmp_path / "n.json"
    result = run(
        "norms",
        store,
        "--protocol",
        "lfw",
        "--pairs",
        pairs,
        "-o",
        tmp_path / "n.png",
        "--json",
        js,
        "--groups",
        "2",
        "--far",
        "0.05",
    )
    assert result.exit_code == 0, result.output
    data = strict_json(js.read_text())
    assert data["n_pairs"] == 2400 and data["protocol_file"] == str(pairs)
    assert len(data["groups"]) == 2 and len(data["boundaries"]) == 3
    assert data["groups"][0]["tar_at_far"]["far_target"] == 0.05


def test_existing_output_needs_overwrite(tmp_path: Path, store: Path) -> None:
    out, js = tmp_path / "n.png", tmp_path / "n.json"
    js.write_text("precious")
    result = run("norms", store, "--protocol", "lfw", "-o", out, "--json", js)
    assert_user_error(result, "--overwrite")
    assert js.read_text() == "precious" and not out.exists()
    result = run("norms", store, "--protocol", "lfw", "-o", out, "--json", js, "--overwrite")
    assert result.exit_code == 0, result.output
    assert strict_json(js.read_text())["kind"] == "norms"


def test_missing_items_named_with_count_and_first_five(tmp_path: Path) -> None:
    keep = [i for i, k in enumerate(IDS) if not k.startswith("A")]
    unit, norms = normalize_rows(quality_features(IDS)[keep])
    path = tmp_path / "partial.h5"
    create_store(path, [IDS[i] for i in keep], unit, norms, model="m")
    out = tmp_path / "n.png"
    result = run("norms", path, "--protocol", "lfw", "-o", out)
    assert_user_error(result, str(len(IDS) - len(keep)), "Abel_Pacheco/Abel_Pacheco_0001.jpg")
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "phrases"),
    [
        (["--groups", "1"], ["--groups", ">= 2"]),
        (["--groups", "3000"], ["genuine", "impostor", "fewer --groups"]),
        (["--far", "0"], ["--far", "(0, 1]"]),
        (["--protocol", "ytf"], ["lfw", "protocol of videos", "not supported yet"]),
        (["--protocol", "ijba"], ["lfw", "protocol of templates", "not supported yet"]),
    ],
)
def test_bad_inputs(tmp_path: Path, store: Path, args: list[str], phrases: list[str]) -> None:
    out = tmp_path / "n.png"
    protocol = [] if "--protocol" in args else ["--protocol", "lfw"]
    result = run("norms", store, *protocol, *args, "-o", out)
    assert_user_error(result, *phrases)
    assert not out.exists()


def test_bad_paths(tmp_path: Path, store: Path) -> None:
    result = run("norms", store, "--protocol", "lfw", "-o", tmp_path / "n.txt")
    assert_user_error(result, ".png")
    result = run("norms", tmp_path / "none.h5", "--protocol", "lfw", "-o", tmp_path / "n.png")
    assert_user_error(result, "none.h5")
    one_set = tmp_path / "one.txt"
    one_set.write_text("\n".join(lfw.shipped_file().read_text().splitlines()[1:601]))
    one_set.write_text("300\n" + one_set.read_text() + "\n")
    result = run("norms", store, "--protocol", "lfw", "--pairs", one_set, "-o", tmp_path / "n.png")
    assert_user_error(result, "2 folds")
    assert not (tmp_path / "n.png").exists()


def test_load_pair_protocol_names_the_supported_ones() -> None:
    assert load_pair_protocol("lfw").n_pairs == 6000
    with pytest.raises(FacebenchError, match=r"lfw.*ytf is a protocol of videos"):
        load_pair_protocol("ytf")
