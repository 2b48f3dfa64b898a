"""``facebench compare``: paired bootstrap intervals of differences between reports.

Reports are made by the real code path (protocol -> store -> evaluate -> write_report). The
vectorized bootstrap is checked against slow loops that resample with the documented draws
and call the library's metric functions on the resampled units; the CLI is checked for its
outputs, its refusals and ``--overwrite``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_helpers import assert_user_error as _assert_user_error
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st
from ijba_fixtures import write_ijba
from ijbc_fixtures import write_ijbc

import facebench.compare as compare_module
import facebench.compare.resample as compare_resample
from facebench.cli import cli
from facebench.compare import (
    FoldEngine,
    IdentificationEngine,
    bootstrap_folds,
    cmc_key,
    compare_reports,
    fold_strata,
    tar_key,
    tpir_key,
)
from facebench.demo import synthetic_features
from facebench.evaluate import VerifyOptions, evaluate_pairs
from facebench.evaluate_splits import SplitOptions, evaluate_templates
from facebench.metrics import (
    TAR_RULES,
    TPIR_RULES,
    SearchResult,
    auc,
    cmc,
    count_at_thresholds,
    equal_error_rate,
    kfold_accuracy,
    tar_at_far,
    tpir_at_fpir,
)
from facebench.report import write_report
from facebench.store import create_store, normalize_rows
from protocols import PROTOCOLS, lfw

LFW = lfw.load()
FAR = (1e-3, 1e-2)


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_user_error(result: Result, *phrases: str) -> None:
    _assert_user_error(result, *phrases, only_line=True)


def copy_report(src: Path, dst: Path) -> Path:
    """A report and its per-pair file under another name."""
    shutil.copyfile(src, dst)
    shutil.copyfile(src.with_suffix(".scores.npz"), dst.with_suffix(".scores.npz"))
    return dst


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def lfw_reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Reports of the shipped LFW protocol on two synthetic models, and variants."""
    root = tmp_path_factory.mktemp("lfw")
    ids = list(LFW.items)
    out: dict[str, Path] = {}
    for name, noise, seed in (("a", 1.4, 7), ("b", 1.7, 8)):
        unit, norms = normalize_rows(synthetic_features(ids, noise=noise, seed=seed))
        create_store(root / f"{name}.h5", ids, unit, norms, model=f"synthetic-{name}")
        out[f"{name}_store"] = root / f"{name}.h5"
        report, data = evaluate_pairs(LFW, root / f"{name}.h5", VerifyOptions(label=name))
        out[name] = write_report(report, root / f"{name}.json", data)[0]
    variants = {
        "a_nearest": VerifyOptions(tar_rule="nearest"),
        "a_compat": VerifyOptions(compat="insightface"),
        "a_far": VerifyOptions(far_targets=(1e-2, 1e-1)),
    }
    for name, options in variants.items():
        report, data = evaluate_pairs(LFW, out["a_store"], options)
        out[name] = write_report(report, root / f"{name}.json", data)[0]
    return out


def write_disjoint_pairs(path: Path, n_sets: int, per_set: int) -> list[tuple[str, str]]:
    """An LFW-format pairs file whose pairs share no image; returns the (left, right) keys."""
    lines = [f"{n_sets}\t{per_set}"]
    keys = []
    for s in range(n_sets):
        for i in range(per_set):
            lines.append(f"G{s:02d}x{i:03d}\t1\t2")
            keys.append(
                (lfw.image_key(f"G{s:02d}x{i:03d}", 1), lfw.image_key(f"G{s:02d}x{i:03d}", 2))
            )
        for i in range(per_set):
            lines.append(f"Ia{s:02d}x{i:03d}\t1\tIb{s:02d}x{i:03d}\t1")
            keys.append(
                (lfw.image_key(f"Ia{s:02d}x{i:03d}", 1), lfw.image_key(f"Ib{s:02d}x{i:03d}", 1))
            )
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    return keys


def store_with_scores(path: Path, keys: list[tuple[str, str]], target: np.ndarray) -> None:
    """A store in which pair i (disjoint images) scores about ``target[i]``."""
    rng = np.random.default_rng(0)
    ids, rows = [], []
    for (left, right), c in zip(keys, target, strict=True):
        u, v = np.linalg.qr(rng.standard_normal((16, 2)))[0].T
        ids += [left, right]
        rows += [u, c * u + np.sqrt(1 - c * c) * v]
    unit, norms = normalize_rows(np.asarray(rows))
    create_store(path, ids, unit, norms, model=path.stem)


@pytest.fixture(scope="module")
def controlled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Reports A, B (a known subset of A's pairs made perfectly separable) and C (one pair
    nudged) on a custom pairs file of 10 folds x (40 + 40) pairs with disjoint images."""
    root = tmp_path_factory.mktemp("controlled")
    pairs_file = root / "pairs.txt"
    keys = write_disjoint_pairs(pairs_file, 10, 40)
    protocol = lfw.load(pairs_file)
    y, folds = protocol.is_same, protocol.folds
    rng = np.random.default_rng(3)
    a = np.clip(np.where(y, 0.35, 0.05) + 0.2 * rng.standard_normal(y.size), -0.95, 0.95)
    b = a.copy()
    for k in range(1, 11):  # per fold, the 12 worst genuine and 12 worst impostor pairs
        gen = np.flatnonzero((folds == k) & y)
        imp = np.flatnonzero((folds == k) & ~y)
        b[gen[np.argsort(a[gen])[:12]]] = 0.97
        b[imp[np.argsort(-a[imp])[:12]]] = -0.9
    c = a.copy()
    middle = np.flatnonzero(y)[np.argsort(a[y])[y.sum() // 2]]
    c[middle] += 0.01
    out: dict[str, Any] = {"protocol": protocol}
    for name, target in (("A", a), ("B", b), ("C", c)):
        store_with_scores(root / f"{name}.h5", keys, target)
        report, data = evaluate_pairs(protocol, root / f"{name}.h5", VerifyOptions(label=name))
        out[name] = write_report(report, root / f"{name}.json", data)[0]
        out[f"{name}_scores"] = data["score"]
    return out


def ijb_world(root: Path, variant: str) -> dict[str, Path]:
    """IJB-A (3 splits) or IJB-C (2 galleries) reports of two synthetic models."""
    if variant == "ijba":
        record = write_ijba(root / "proto", n_splits=3, n_subjects=20, seed=5)
        key_subject = record["key_subject"]
        keys = record["keys"]
        options = SplitOptions(far_targets=(0.01, 0.1))
    else:
        record = write_ijbc(root / "proto", n_subjects=16, templates_per_subject=4, seed=2)
        keys = sorted(record["scores"])
        key_subject = {
            k: record["subjects"][t] for t, ks in record["templates"].items() for k in ks
        }
        options = SplitOptions(far_targets=(0.01, 0.1))
    protocol = PROTOCOLS[variant].load(root / "proto")
    out = {}
    for name, noise in (("a", 1.3), ("b", 1.0)):
        rng = np.random.default_rng(1 if name == "a" else 2)
        direction = {s: rng.standard_normal(16) for s in sorted(set(key_subject.values()))}
        raw = np.stack([direction[key_subject[k]] + noise * rng.standard_normal(16) for k in keys])
        unit, norms = normalize_rows(raw)
        create_store(root / f"{name}.h5", keys, unit, norms, model=name)
        report, data = evaluate_templates(protocol, root / f"{name}.h5", options)
        out[name] = write_report(report, root / f"{name}.json", data)[0]
    if variant == "ijba":
        report, data = evaluate_templates(
            protocol, root / "a.h5", SplitOptions(far_targets=(0.01, 0.1), splits=(1, 2))
        )
        out["a_two_splits"] = write_report(report, root / "a_two_splits.json", data)[0]
    return out


@pytest.fixture(scope="module", params=["ijba", "ijbc"])
def ijb(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict:
    return {
        "variant": request.param,
        **ijb_world(tmp_path_factory.mktemp(request.param), request.param),
    }


# ------------------------------------------------------------------------------ references


def reference_fold_bootstrap(
    scores: list[np.ndarray],
    is_same: np.ndarray,
    folds: np.ndarray,
    far_targets: tuple[float, ...],
    rule: str,
    n_resamples: int,
    seed: int,
) -> list[dict[str, list[float]]]:
    """The documented draws, then the library on each resample's pairs: plain loops."""
    rng = np.random.default_rng(seed)
    strata = [
        np.flatnonzero((folds == k) & (is_same == label))
        for k in np.unique(folds)
        for label in (False, True)
    ]
    out: list[dict[str, list[float]]] = [{} for _ in scores]
    for _ in range(n_resamples):
        idx = np.concatenate([u[rng.integers(0, u.size, size=u.size)] for u in strata])
        for e, s in enumerate(scores):
            counts = count_at_thresholds(s[idx], is_same[idx])
            values = {
                "accuracy": kfold_accuracy(s[idx], is_same[idx], folds[idx]).mean,
                "auc": auc(counts),
                "eer": equal_error_rate(counts).eer,
            }
            for p in tar_at_far(counts, far_targets, rule):
                values[tar_key(p.far_target)] = p.tar
            for key, value in values.items():
                out[e].setdefault(key, []).append(value)
    return out


def search_result(
    mated: np.ndarray, rank: np.ndarray, mate: np.ndarray, top: np.ndarray
) -> SearchResult:
    q = mated.size
    zeros = np.zeros(q, dtype=np.int64)
    return SearchResult(zeros, mated, rank, mate, top, zeros, 0)


def reference_split_bootstrap(
    datas: list[dict[str, np.ndarray]], far: tuple[float, ...], n_resamples: int, seed: int
) -> list[dict[str, list[float]]]:
    """The documented draws (splits ascending: templates, then probe strata), then the
    library per split and gallery on repeated units, averaged as the report does."""
    rng = np.random.default_rng(seed)
    d0 = datas[0]
    out: list[dict[str, list[float]]] = [{} for _ in datas]
    splits = np.unique(np.concatenate((d0["split"], d0["probe_split"])))
    for _ in range(n_resamples):
        draws = []
        for split in splits:
            rows = np.flatnonzero(d0["split"] == split)
            templates = sorted(set(d0["left"][rows].tolist()) | set(d0["right"][rows].tolist()))
            counts = np.bincount(
                rng.integers(0, len(templates), len(templates)), minlength=len(templates)
            )
            w_template = dict(zip(templates, counts.tolist(), strict=True))
            p_rows = np.flatnonzero(d0["probe_split"] == split)
            galleries = list(dict.fromkeys(d0["probe_gallery"][p_rows].tolist()))
            pattern: dict[int, list[int]] = {}
            for t in sorted(set(d0["probe_template"][p_rows].tolist())):
                pattern[t] = [0] * len(galleries)
            for row in p_rows:
                g = galleries.index(d0["probe_gallery"][row])
                pattern[int(d0["probe_template"][row])][g] = 2 if d0["probe_mated"][row] else 1
            w_probe: dict[int, int] = {}
            for kind in sorted({tuple(p) for p in pattern.values()}):
                members = [t for t, p in pattern.items() if tuple(p) == kind]
                idx = rng.integers(0, len(members), len(members))
                for i, t in enumerate(members):
                    w_probe[t] = int(np.count_nonzero(idx == i))
            draws.append((rows, w_template, p_rows, galleries, w_probe))
        for e, d in enumerate(datas):
            per_split_11, per_split_1n = [], []
            for rows, w_template, p_rows, galleries, w_probe in draws:
                rep = [
                    w_template[a] * w_template[b]
                    for a, b in zip(d["left"][rows], d["right"][rows], strict=True)
                ]
                counts = count_at_thresholds(
                    np.repeat(d["score"][rows], rep), np.repeat(d["is_same"][rows], rep)
                )
                v11 = {"auc": auc(counts)}
                v11.update({tar_key(p.far_target): p.tar for p in tar_at_far(counts, far)})
                per_split_11.append(v11)
                per_gallery = []
                for gallery in galleries:
                    g_rows = p_rows[d["probe_gallery"][p_rows] == gallery]
                    rep = [w_probe[int(t)] for t in d["probe_template"][g_rows]]
                    result = search_result(
                        *(
                            np.repeat(d[k][g_rows], rep)
                            for k in (
                                "probe_mated",
                                "probe_mate_rank",
                                "probe_mate_score",
                                "probe_top_score",
                            )
                        )
                    )
                    v = {cmc_key(r): x for r, x in cmc(result, (1, 5, 10)).items()}
                    v.update(
                        {tpir_key(p.fpir_target): p.tpir for p in tpir_at_fpir(result, (0.01, 0.1))}
                    )
                    per_gallery.append(v)
                per_split_1n.append(
                    per_gallery[0]
                    if len(per_gallery) == 1
                    else {k: float(np.mean([g[k] for g in per_gallery])) for k in per_gallery[0]}
                )
            for per_split in (per_split_11, per_split_1n):
                for key in per_split[0]:
                    out[e].setdefault(key, []).append(
                        float(np.asarray([s[key] for s in per_split]).mean())
                    )
    return out


def load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path.with_suffix(".scores.npz")) as handle:
        return {k: handle[k] for k in handle.files}


# ------------------------------------------------------------------------------ library


@pytest.mark.parametrize("rule", list(TAR_RULES))
def test_fold_bootstrap_equals_the_slow_reference_loop(lfw_reports: dict[str, Path], rule: str):
    a, b = load(lfw_reports["a"]), load(lfw_reports["b"])
    y, folds = a["is_same"], a["fold"]
    engines = [FoldEngine(d["score"], y, folds, FAR, rule) for d in (a, b)]
    fast = bootstrap_folds(engines, fold_strata(folds, y), 12, seed=4)
    slow = reference_fold_bootstrap([a["score"], b["score"]], y, folds, FAR, rule, 12, 4)
    for f, s in zip(fast, slow, strict=True):
        assert set(f) == set(s)
        for key in s:
            np.testing.assert_array_equal(f[key], s[key], err_msg=key)


def test_compare_intervals_are_the_quantiles_of_the_reference_differences(
    lfw_reports: dict[str, Path],
):
    a, b = load(lfw_reports["a"]), load(lfw_reports["b"])
    slow = reference_fold_bootstrap(
        [a["score"], b["score"]], a["is_same"], a["fold"], FAR, "exact", 40, 11
    )
    result = compare_reports([lfw_reports["a"], lfw_reports["b"]], n_resamples=40, seed=11)
    k_a = kfold_accuracy(a["score"], a["is_same"], a["fold"]).mean
    k_b = kfold_accuracy(b["score"], b["is_same"], b["fold"]).mean
    assert result.difference(1, "accuracy").estimate == k_b - k_a
    for key in ("accuracy", "auc", "eer", tar_key(1e-3), tar_key(1e-2)):
        diff = np.asarray(slow[1][key]) - np.asarray(slow[0][key])
        low, high = np.quantile(diff, [0.025, 0.975])
        d = result.difference(1, key)
        assert (d.low, d.high) == (low, high), key
        assert d.std_error == pytest.approx(np.std(diff, ddof=1), abs=0)


def test_split_bootstrap_equals_the_slow_reference_loop(ijb: dict):
    datas = [load(ijb["a"]), load(ijb["b"])]
    layouts = compare_module.split_layouts(datas[0])
    engines = [
        compare_module.split_engines(d, layouts, (0.01, 0.1), (0.01, 0.1), "exact", "exact")
        for d in datas
    ]
    fast = compare_module.bootstrap_splits(engines, layouts, 10, seed=2)
    slow = reference_split_bootstrap(datas, (0.01, 0.1), 10, 2)
    for f, s in zip(fast, slow, strict=True):
        assert set(f) == set(s)
        for key in s:
            np.testing.assert_array_equal(f[key], s[key], err_msg=key)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_weighted_engines_equal_the_library_on_repeated_units(data: st.DataObject):
    """Ties (few distinct scores), zero weights, every rule: weights = repeated units."""
    n_folds = data.draw(st.integers(2, 4), label="folds")
    per = data.draw(st.integers(1, 4), label="per stratum")
    folds = np.repeat(np.arange(1, n_folds + 1), 2 * per)
    y = np.tile(np.repeat([True, False], per), n_folds)
    levels = data.draw(st.integers(1, 5), label="levels")
    scores = (
        np.asarray(data.draw(st.lists(st.integers(0, levels), min_size=y.size, max_size=y.size)))
        / levels
    )
    w = np.asarray(data.draw(st.lists(st.integers(0, 3), min_size=y.size, max_size=y.size)))
    w[::per] = np.maximum(w[::per], 1)  # every (fold, label) stratum keeps a unit
    rule = data.draw(st.sampled_from(list(TAR_RULES)), label="rule")
    targets = (0.1, 0.5)
    got = FoldEngine(scores, y, folds, targets, rule).statistics(w[None, :])
    s, yy, ff = np.repeat(scores, w), np.repeat(y, w), np.repeat(folds, w)
    counts = count_at_thresholds(s, yy)
    assert got["accuracy"][0] == kfold_accuracy(s, yy, ff).mean
    assert got["auc"][0] == auc(counts)
    assert got["eer"][0] == equal_error_rate(counts).eer
    for p in tar_at_far(counts, targets, rule):
        assert got[tar_key(p.far_target)][0] == p.tar
    # 1:N on the same draw: mated probes with ranks, non-mated with top scores
    mated = y
    rank = np.where(
        mated,
        1 + np.asarray(data.draw(st.lists(st.integers(0, 1), min_size=y.size, max_size=y.size))),
        0,
    )
    mate = np.where(mated, scores, np.nan)
    top = scores
    tpir_rule = data.draw(st.sampled_from(list(TPIR_RULES)), label="tpir rule")
    engine = IdentificationEngine(mated, rank, mate, top, (1, 2), targets, tpir_rule)
    got = engine.statistics(w[None, :])
    result = search_result(*(np.repeat(x, w) for x in (mated, rank, mate, top)))
    for r, value in cmc(result, (1, 2)).items():
        assert got[cmc_key(r)][0] == value
    for p in tpir_at_fpir(result, targets, tpir_rule):
        assert got[tpir_key(p.fpir_target)][0] == p.tpir


def test_unit_weights_give_the_full_sample_numbers(lfw_reports: dict[str, Path]):
    a = load(lfw_reports["a"])
    engine = FoldEngine(a["score"], a["is_same"], a["fold"], FAR)
    once = engine.statistics(np.ones((1, a["score"].size), dtype=np.int64))
    assert {k: float(v[0]) for k, v in once.items()} == engine.point()
    report = json.loads(lfw_reports["a"].read_text())
    assert engine.point()["accuracy"] == report["accuracy"]["mean"]


def test_results_do_not_depend_on_batching(
    lfw_reports: dict[str, Path], monkeypatch: pytest.MonkeyPatch
):
    paths = [lfw_reports["a"], lfw_reports["b"]]
    default = compare_reports(paths, n_resamples=30, seed=5)
    monkeypatch.setattr(compare_resample, "CHUNK_ELEMENTS", 7 * 6000)  # batches of 7
    assert compare_reports(paths, n_resamples=30, seed=5).differences == default.differences


def test_the_seed_decides_the_intervals(lfw_reports: dict[str, Path]):
    paths = [lfw_reports["a"], lfw_reports["b"]]
    first = compare_reports(paths, n_resamples=30, seed=1)
    assert compare_reports(paths, n_resamples=30, seed=1).differences == first.differences
    other = compare_reports(paths, n_resamples=30, seed=2)
    assert other.differences != first.differences
    assert [d.estimate for d in other.differences] == [d.estimate for d in first.differences]


def test_identical_reports_give_exactly_zero(lfw_reports: dict[str, Path], tmp_path: Path):
    twin = copy_report(lfw_reports["a"], tmp_path / "twin.json")
    result = compare_reports([lfw_reports["a"], twin], n_resamples=200)
    assert [d.metric for d in result.differences] == [
        "accuracy", "auc", "eer", tar_key(1e-3), tar_key(1e-2)
    ]  # fmt: skip
    for d in result.differences:
        assert (d.estimate, d.low, d.high, d.std_error) == (0.0, 0.0, 0.0, 0.0)
        assert d.within_noise


def test_identical_split_reports_give_exactly_zero(ijb: dict, tmp_path: Path):
    twin = copy_report(ijb["a"], tmp_path / "twin.json")
    result = compare_reports([ijb["a"], twin], n_resamples=100)
    keys = {d.metric for d in result.differences}
    assert {"auc", tar_key(0.01), cmc_key(1), cmc_key(10), tpir_key(0.1)} <= keys
    for d in result.differences:
        assert (d.estimate, d.low, d.high) == (0.0, 0.0, 0.0)


def test_a_known_difference_is_estimated_exactly_and_covered(controlled: dict[str, Any]):
    protocol = controlled["protocol"]
    y, folds = protocol.is_same, protocol.folds
    result = compare_reports(
        [controlled["A"], controlled["B"], controlled["C"]], n_resamples=1000, seed=0
    )
    for name, index in (("B", 1), ("C", 2)):
        a, other = controlled["A_scores"], controlled[f"{name}_scores"]
        truth = {
            "accuracy": kfold_accuracy(other, y, folds).mean - kfold_accuracy(a, y, folds).mean,
            "auc": auc(count_at_thresholds(other, y)) - auc(count_at_thresholds(a, y)),
        }
        for key, value in truth.items():
            d = result.difference(index, key)
            assert d.estimate == value
            assert d.low <= value <= d.high
    big = result.difference(1, "accuracy")
    assert big.estimate > 0.05 and big.low > 0 and not big.within_noise
    assert result.difference(1, "auc").low > 0
    assert result.difference(1, "eer").high < 0
    for d in (x for x in result.differences if x.report == 2):  # one pair nudged
        assert d.within_noise, d
        assert abs(d.estimate) <= 1 / 400


def test_split_protocol_differences_reproduce_the_reports(ijb: dict):
    result = compare_reports([ijb["a"], ijb["b"]], n_resamples=200)
    ra, rb = (json.loads(ijb[k].read_text()) for k in ("a", "b"))
    d = result.difference(1, tar_key(0.1))
    expected = rb["summary"]["tar_at_far"][1]["mean"] - ra["summary"]["tar_at_far"][1]["mean"]
    assert d.estimate == pytest.approx(expected, abs=1e-15)
    assert d.low <= d.high
    rank1 = result.difference(1, cmc_key(1))
    assert rank1.estimate == pytest.approx(
        rb["summary"]["cmc"]["1"]["mean"] - ra["summary"]["cmc"]["1"]["mean"], abs=1e-15
    )
    assert result.reports[0].spread[tar_key(0.1)]["std"] == ra["summary"]["tar_at_far"][1]["std"]


# ------------------------------------------------------------------------------ CLI


def test_cli_writes_json_and_markdown(controlled: dict[str, Any], tmp_path: Path):
    out_json, out_md = tmp_path / "cmp.json", tmp_path / "cmp.md"
    result = run(
        "compare", controlled["A"], controlled["B"], controlled["C"],
        "--json", out_json, "--markdown", out_md, "--resamples", "300", "--seed", "3",
    )  # fmt: skip
    assert result.exit_code == 0, (result.output, result.exception)
    assert "differences to A" in result.stdout and "≈" in result.stdout
    doc = json.loads(out_json.read_text())
    assert doc["schema"] == "facebench-compare" and doc["kind"] == "fold"
    assert doc["settings"]["resamples"] == 300 and doc["settings"]["seed"] == 3
    assert doc["settings"]["confidence"] == 0.95 and doc["settings"]["unit"] == "pair"
    assert "within each (fold, is_same) stratum" in doc["settings"]["scheme"]
    assert [r["label"] for r in doc["reports"]] == ["A", "B", "C"]
    report_b = json.loads(controlled["B"].read_text())
    assert doc["reports"][1]["headline"]["accuracy"] == report_b["accuracy"]["mean"]
    assert doc["reports"][1]["spread"]["accuracy"]["stderr"] == report_b["accuracy"]["stderr"]
    keys = [m["key"] for m in doc["metrics"]]
    assert keys == ["accuracy", "auc", "eer", tar_key(1e-3), tar_key(1e-2)]
    assert len(doc["differences"]) == 2 * len(keys)
    library = compare_reports(
        [controlled["A"], controlled["B"], controlled["C"]], n_resamples=300, seed=3
    )
    for entry, d in zip(doc["differences"], library.differences, strict=True):
        assert entry["metric"] == d.metric and entry["report"] == d.report
        assert entry["interval"] == [d.low, d.high] and entry["estimate"] == d.estimate
        assert entry["within_noise"] == d.within_noise
    md = out_md.read_text()
    lines = md.splitlines()
    assert lines[0] == (
        "| model | accuracy (%) | AUC (%) | EER (%) | TAR@FAR=0.001 (%) | TAR@FAR=0.01 (%) |"
    )
    assert lines[1] == "|---|---:|---:|---:|---:|---:|"
    assert lines[2].startswith("| A (ref.) | ")
    assert lines[3].startswith("| B | ") and "<br>+" in lines[3]
    assert lines[4].count("≈") == 5  # C: one pair nudged, every difference within noise
    assert "≈: the interval contains 0" in md and "95% paired bootstrap" in md


def test_cli_one_report_shows_its_headline_only(lfw_reports: dict[str, Path], tmp_path: Path):
    alone = copy_report(lfw_reports["a"], tmp_path / "alone.json")
    alone.with_suffix(".scores.npz").unlink()  # not needed for one report
    out = tmp_path / "one.json"
    result = run("compare", alone, "--json", out)
    assert result.exit_code == 0, (result.output, result.exception)
    doc = json.loads(out.read_text())
    assert doc["differences"] == [] and doc["settings"]["resamples"] == 0
    assert len(doc["reports"]) == 1


def test_cli_compares_common_far_targets_only(lfw_reports: dict[str, Path], tmp_path: Path):
    out = tmp_path / "c.json"
    result = run(
        "compare", lfw_reports["a"], lfw_reports["a_far"], "--resamples", "20", "--json", out
    )
    assert result.exit_code == 0, (result.output, result.exception)
    doc = json.loads(out.read_text())
    assert [m["key"] for m in doc["metrics"]] == ["accuracy", "auc", "eer", tar_key(1e-2)]
    assert any("0.001" in n for n in doc["notes"]) and any("0.1" in n for n in doc["notes"])
    assert "note:" in result.stderr


def test_cli_overwrite(lfw_reports: dict[str, Path], tmp_path: Path):
    out = tmp_path / "cmp.md"
    args = ["compare", lfw_reports["a"], lfw_reports["b"], "--resamples", "20", "--markdown", out]
    assert run(*args, "--seed", "1").exit_code == 0
    first = out.read_text()
    assert_user_error(run(*args, "--seed", "2"), "--overwrite")
    assert out.read_text() == first
    assert run(*args, "--seed", "2", "--overwrite").exit_code == 0
    assert out.read_text() != first
    assert_user_error(run(*args[:-2], "--json", lfw_reports["b"], "--overwrite"), "replace")


@pytest.mark.parametrize(
    "case, phrases",
    [
        ("protocol", ("expected a report of protocol 'lfw'",)),
        ("protocol_sha256", ("protocol_sha256",)),
        ("order", ("same units in the same order", "`left`")),
        ("fewer", ("same units", "`split`")),
        ("missing", ("no per-pair scores", "facebench verify")),
        ("stale", ("stale",)),
        ("rule", ("tar rule", "'nearest'")),
        ("compat", ("--compat insightface",)),
    ],
)
def test_cli_refusals(
    case: str,
    phrases: tuple[str, ...],
    lfw_reports: dict[str, Path],
    controlled: dict[str, Any],
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
):
    reference = lfw_reports["a"]
    if case == "protocol":
        other = ijb_world(tmp_path_factory.mktemp("other"), "ijba")["a"]
    elif case == "protocol_sha256":
        other = controlled["A"]
    elif case == "order":  # the same pairs in another order: a paired bootstrap is impossible
        other = copy_report(lfw_reports["b"], tmp_path / "b.json")
        data = load(other)
        order = np.random.default_rng(0).permutation(data["score"].size)
        np.savez(other.with_suffix(".scores.npz"), **{k: v[order] for k, v in data.items()})
    elif case == "fewer":  # IJB-A: all splits against --split 1 --split 2 (same files)
        world = ijb_world(tmp_path_factory.mktemp("splits"), "ijba")
        reference, other = world["a"], world["a_two_splits"]
    elif case == "missing":
        other = copy_report(lfw_reports["b"], tmp_path / "b.json")
        other.with_suffix(".scores.npz").unlink()
    elif case == "stale":
        other = copy_report(lfw_reports["b"], tmp_path / "b.json")
        np.savez(other.with_suffix(".scores.npz"), **load(lfw_reports["a"]))
    elif case == "rule":
        other = lfw_reports["a_nearest"]
    else:
        other = lfw_reports["a_compat"]
    out_json, out_md = tmp_path / "x.json", tmp_path / "x.md"
    result = run(
        "compare", reference, other, "--resamples", "10", "--json", out_json, "--markdown", out_md
    )
    assert_user_error(result, *phrases)
    assert not out_json.exists() and not out_md.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".x.")]  # no temporaries


def test_split_reports_without_1n(tmp_path: Path):
    """IJB-A folders without IJB-A_1N_sets: 1:1 numbers only."""
    record = write_ijba(tmp_path / "proto", n_splits=2, n_subjects=12, with_1n=False, seed=9)
    protocol = PROTOCOLS["ijba"].load(tmp_path / "proto")
    paths = []
    for name, noise in (("a", 1.0), ("b", 2.0)):
        rng = np.random.default_rng(len(paths))
        subjects = sorted(set(record["key_subject"].values()))
        direction = {s: rng.standard_normal(8) for s in subjects}
        raw = np.stack(
            [
                direction[record["key_subject"][k]] + noise * rng.standard_normal(8)
                for k in record["keys"]
            ]
        )
        unit, norms = normalize_rows(raw)
        create_store(tmp_path / f"{name}.h5", record["keys"], unit, norms, model=name)
        report, data = evaluate_templates(protocol, tmp_path / f"{name}.h5")
        assert "probe_split" not in data
        paths.append(write_report(report, tmp_path / f"{name}.json", data)[0])
    result = compare_reports(paths, n_resamples=200)
    assert [m.key for m in result.metrics] == [tar_key(t) for t in (1e-4, 1e-3, 1e-2)] + ["auc"]
    assert result.settings["unit"].startswith("template")
    assert all(d.low <= d.high for d in result.differences)
