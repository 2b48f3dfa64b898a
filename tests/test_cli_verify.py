"""``facebench verify`` end to end: a generated store over LFW's 7,701 images -> the CLI ->
the JSON report, checked against an independent computation; and every bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
from cli_helpers import assert_user_error as _assert_user_error
from click.testing import CliRunner, Result
from sklearn.metrics import roc_auc_score, roc_curve

from facebench.cli import cli
from facebench.demo import synthetic_features
from facebench.metrics.compat import COMPAT_KFOLD
from facebench.store import create_store, normalize_rows
from protocols import lfw

PROTOCOL = lfw.load()
IDS = PROTOCOL.items


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_user_error(result: Result, *phrases: str) -> None:
    _assert_user_error(result, *phrases, only_line=True)


@pytest.fixture(scope="module")
def raw() -> np.ndarray:
    return synthetic_features(IDS, noise=1.4, seed=7)


@pytest.fixture(scope="module")
def raw_flip() -> np.ndarray:
    return synthetic_features(IDS, noise=1.4, seed=8)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, raw: np.ndarray, raw_flip: np.ndarray) -> Path:
    path = tmp_path_factory.mktemp("store") / "lfw.h5"
    unit, norms = normalize_rows(raw)
    unit_f, norms_f = normalize_rows(raw_flip)
    create_store(
        path, IDS, unit, norms, features_flip=unit_f, norms_flip=norms_f, model="synthetic"
    )
    return path


def independent_scores(store: Path, fusion: str = "none") -> np.ndarray:
    """Scores from the store's float32 rows read with h5py, fused and scored in float64."""
    with h5py.File(store, "r") as handle:
        ids = [i.decode() for i in handle["ids"][:]]
        x = handle["features"][:].astype(np.float64)
        if fusion == "sum-raw":  # add the raw features (unit x norm), then normalize
            x = x * handle["norms"][:][:, None] + (
                handle["features_flip"][:].astype(np.float64) * handle["norms_flip"][:][:, None]
            )
            x = x / np.sqrt((x * x).sum(axis=1, keepdims=True))
    row = {k: i for i, k in enumerate(ids)}
    a = x[[row[k] for k in PROTOCOL.left]]
    b = x[[row[k] for k in PROTOCOL.right]]
    return (a * b).sum(axis=1)


def independent_kfold(s: np.ndarray, y: np.ndarray, folds: np.ndarray) -> list[float]:
    """Every candidate threshold evaluated by broadcasting (PROTOCOLS.md's rule, literally)."""
    accs = []
    for k in range(1, 11):
        tr, te = folds != k, folds == k
        d = np.unique(s[tr])
        cand = np.concatenate(([-np.inf], (d[1:] + d[:-1]) / 2, [np.inf]))
        correct = ((s[tr][None, :] >= cand[:, None]) == y[tr][None, :]).sum(axis=1)
        tied = cand[correct == correct.max()]
        t = tied[(tied.size - 1) // 2]
        accs.append(float(np.mean((s[te] >= t) == y[te])))
    return accs


def independent_tar(s: np.ndarray, y: np.ndarray, target: float) -> tuple[float, int]:
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    ok = fpr <= target
    tar = tpr[ok].max()
    n_imp = int((~y).sum())
    return float(tar), round(fpr[ok][tpr[ok] == tar].min() * n_imp)


def check_report(report: dict, s: np.ndarray) -> None:
    y = PROTOCOL.is_same
    accs = independent_kfold(s, y, PROTOCOL.folds)
    assert report["accuracy"]["folds"] == pytest.approx(accs, abs=0)
    assert report["accuracy"]["mean"] == pytest.approx(np.mean(accs), abs=1e-15)
    assert report["accuracy"]["std"] == pytest.approx(np.std(accs, ddof=1), abs=1e-15)
    assert report["accuracy"]["stderr"] == pytest.approx(
        np.std(accs, ddof=1) / math.sqrt(10), abs=1e-15
    )
    assert report["auc"] == pytest.approx(roc_auc_score(y, s), abs=1e-14)
    assert [p["far_target"] for p in report["tar_at_far"]] == [1e-3, 1e-2]
    for point in report["tar_at_far"]:
        tar, n_fp = independent_tar(s, y, point["far_target"])
        assert point["tar"] == tar
        assert point["n_impostors_at_or_above"] == n_fp
        assert point["far_achieved"] == n_fp / 3000
        # the threshold reproduces the point
        t = point["threshold"]
        assert np.mean(s[y] >= t) == tar and np.sum(s[~y] >= t) == n_fp
    assert report["n_pairs"] == 6000 and report["n_genuine"] == 3000


def test_verify_lfw_end_to_end(tmp_path: Path, store: Path, raw: np.ndarray) -> None:
    out = tmp_path / "lfw.json"
    result = run("verify", "--protocol", "lfw", "--features", store, "--json", out)
    assert result.exit_code == 0, result.output
    assert "k-fold accuracy" in result.stdout and "TAR @ FAR=0.001" in result.stdout
    assert "wrote" in result.stderr
    report = json.loads(out.read_text())
    check_report(report, independent_scores(store))
    assert report["schema_version"] == 1 and report["protocol"] == "lfw"
    assert report["protocol_sha256"] == lfw.file_sha256(lfw.shipped_file())
    assert report["conventions"]["tar_rule"] == "exact"
    assert report["conventions"]["flip_fusion"] == "none"
    assert report["counts"]["n_items"] == 7701
    with h5py.File(store) as handle:
        assert report["store"]["content_sha256"] == handle.attrs["content_sha256"]
    assert report["store"]["attributes"]["model"] == "synthetic"
    # per-pair data beside the report
    pairs = np.load(tmp_path / "lfw.scores.npz")
    np.testing.assert_allclose(pairs["score"], independent_scores(store), rtol=0, atol=1e-15)
    np.testing.assert_array_equal(pairs["fold"], PROTOCOL.folds)
    assert pairs["left"][0] == PROTOCOL.left[0] and pairs["is_same"].sum() == 3000
    # the ROC for plotting holds true operating points only
    roc = report["roc"]
    assert roc["far"][0] == 0 and roc["far"][-1] == 1 and roc["threshold"][0] is None
    assert all(np.diff(roc["far"]) >= 0) and all(np.diff(roc["tar"]) >= 0)


def test_verify_flip_fusion_sum_raw(tmp_path: Path, store: Path, raw, raw_flip) -> None:
    out = tmp_path / "flip.json"
    result = run(
        "verify",
        "--protocol",
        "lfw",
        "--features",
        store,
        "--flip-fusion",
        "sum-raw",
        "--json",
        out,
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    # The fusion is recomputed here in another order of float operations, so scores agree
    # to 1e-15, not bitwise; a score lying exactly on a threshold could flip, so the
    # metrics are then checked on the report's own per-pair scores.
    scores = np.load(tmp_path / "flip.scores.npz")["score"]
    np.testing.assert_allclose(scores, independent_scores(store, "sum-raw"), rtol=0, atol=1e-15)
    check_report(report, scores)
    assert report["conventions"]["flip_fusion"] == "sum-raw"


@pytest.mark.parametrize("compat", sorted(COMPAT_KFOLD))
def test_verify_compat_modes_are_wired(tmp_path: Path, store: Path, raw, compat: str) -> None:
    out = tmp_path / "c.json"
    result = run(
        "verify", "--protocol", "lfw", "--features", store, "--compat", compat, "--json", out
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    expected = COMPAT_KFOLD[compat](independent_scores(store), PROTOCOL.is_same, n_folds=10)
    assert report["compat"]["rule"] == compat
    assert report["compat"]["mean"] == pytest.approx(expected.mean, abs=1e-12)
    assert report["accuracy"]["folds"] == pytest.approx(list(expected.fold_accuracies), abs=1e-12)
    assert report["compat"]["spread_kind"] == expected.std_kind


@pytest.mark.parametrize("rule", ["nearest", "interpolate", "count"])
def test_verify_tar_rules_are_wired(tmp_path: Path, store: Path, rule: str) -> None:
    out = tmp_path / "r.json"
    result = run(
        "verify",
        "--protocol",
        "lfw",
        "--features",
        store,
        "--tar-rule",
        rule,
        "--far",
        "1e-4,0.05",
        "--json",
        out,
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert [p["rule"] for p in report["tar_at_far"]] == [rule, rule]
    assert report["tar_at_far"][0]["resolution_limited"] is True  # 1e-4 * 3000 < 1


# -- bad inputs: a clear one-line message, exit 2, no output file ---------------------------


def test_missing_ids_named_with_count_and_first_five(tmp_path: Path, raw: np.ndarray) -> None:
    keep = [i for i, k in enumerate(IDS) if not k.startswith("A")]
    unit, norms = normalize_rows(raw[keep])
    path = tmp_path / "partial.h5"
    create_store(path, [IDS[i] for i in keep], unit, norms, model="m")
    n_missing = len(IDS) - len(keep)
    out = tmp_path / "r.json"
    result = run("verify", "--protocol", "lfw", "--features", path, "--json", out)
    assert_user_error(result, str(n_missing), "Abel_Pacheco/Abel_Pacheco_0001.jpg")
    assert not out.exists() and not (tmp_path / "r.scores.npz").exists()


def _write_raw_store(path: Path, ids: list[str], feats: np.ndarray, version: int = 1) -> None:
    """A store written by hand with h5py, bypassing create_store's validation."""
    unit, norms = normalize_rows(np.ones_like(feats))
    create_store(path, [f"tmp{i}" for i in range(len(ids))], unit, norms, model="m")
    with h5py.File(path, "r+") as handle:
        del handle["ids"], handle["features"]
        handle.create_dataset(
            "ids", data=np.array(ids, dtype=object), dtype=h5py.string_dtype("utf-8")
        )
        handle.create_dataset("features", data=feats.astype(np.float32))
        handle.attrs["schema_version"] = version


@pytest.mark.parametrize(
    ("defect", "phrases"),
    [
        ("nan", ["NaN", IDS[0]]),
        ("non-unit", ["unit", IDS[0]]),
        ("duplicate", ["duplicate", IDS[1]]),
        ("version", ["schema_version", "99"]),
    ],
)
def test_bad_stores(tmp_path: Path, raw: np.ndarray, defect: str, phrases: list[str]) -> None:
    unit, _ = normalize_rows(raw)
    ids = list(IDS)
    version = 1
    if defect == "nan":
        unit[0, 3] = np.nan
    elif defect == "non-unit":
        unit[0] *= 1.01
    elif defect == "duplicate":
        ids[2] = ids[1]
    else:
        version = 99
    path = tmp_path / "bad.h5"
    _write_raw_store(path, ids, unit, version)
    out = tmp_path / "r.json"
    result = run("verify", "--protocol", "lfw", "--features", path, "--json", out)
    assert_user_error(result, *phrases)
    assert not out.exists()


def test_malformed_pairs_file_names_file_and_line(tmp_path: Path, store: Path) -> None:
    lines = lfw.shipped_file().read_text().splitlines()
    lines[5] = "Someone\t1"
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("\n".join(lines) + "\n")
    result = run("verify", "--protocol", "lfw", "--features", store, "--pairs", pairs)
    assert_user_error(result, f"{pairs}:6:", "matched pair")


def test_existing_output_is_not_overwritten(tmp_path: Path, store: Path) -> None:
    out = tmp_path / "r.json"
    out.write_text("precious")
    result = run("verify", "--protocol", "lfw", "--features", store, "--json", out)
    assert_user_error(result, "--overwrite")
    assert out.read_text() == "precious"
    assert not (tmp_path / "r.scores.npz").exists()
    result = run("verify", "--protocol", "lfw", "--features", store, "--json", out, "--overwrite")
    assert result.exit_code == 0
    assert json.loads(out.read_text())["protocol"] == "lfw"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_flip_fusion_without_mirrored_features(tmp_path: Path, raw: np.ndarray) -> None:
    unit, norms = normalize_rows(raw)
    path = tmp_path / "noflip.h5"
    create_store(path, IDS, unit, norms, model="m")
    result = run("verify", "--protocol", "lfw", "--features", path, "--flip-fusion", "concat")
    assert_user_error(result, "--flip")


def test_missing_store_and_debug_traceback(tmp_path: Path) -> None:
    result = run("verify", "--protocol", "lfw", "--features", tmp_path / "none.h5")
    assert_user_error(result, "none.h5")
    result = run("--debug", "verify", "--protocol", "lfw", "--features", tmp_path / "none.h5")
    assert result.exit_code != 0 and result.exception is not None


def test_skipped_items_are_refused_unless_allowed(tmp_path: Path, raw: np.ndarray) -> None:
    lost = "Abel_Pacheco/Abel_Pacheco_0004.jpg"  # in the first pair of pairs.txt
    keep = [i for i, k in enumerate(IDS) if k != lost]
    unit, norms = normalize_rows(raw[keep])
    path = tmp_path / "skipped.h5"
    create_store(
        path,
        [IDS[i] for i in keep],
        unit,
        norms,
        model="m",
        skipped=[(lost, f"/data/lfw/{lost}: truncated JPEG")],
    )
    out = tmp_path / "r.json"
    result = run("verify", "--protocol", "lfw", "--features", path, "--json", out)
    assert_user_error(result, "1 of 6000 pairs", lost, "truncated JPEG", "--allow-skipped")
    assert not out.exists()
    result = run(
        "verify", "--protocol", "lfw", "--features", path, "--json", out, "--allow-skipped"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    n_lost = sum(lost in (a, b) for a, b in zip(PROTOCOL.left, PROTOCOL.right, strict=True))
    assert report["n_pairs"] == 6000 - n_lost
    assert report["counts"]["pairs_dropped_skipped"] == n_lost
    assert any("dropped" in w for w in report["warnings"])
    assert "warning:" in result.stderr and "warning:" not in result.stdout


def test_options_of_the_other_kind_of_protocol_are_refused(tmp_path: Path) -> None:
    """verify and scores load protocols through one function: a pairs file or a .bin with
    an IJB protocol, and an IJB folder or split with a pair protocol, are user errors."""
    store = tmp_path / "s.h5"
    create_store(store, ["a/a_0001.jpg"], *normalize_rows(np.ones((1, 4))), model="m")
    folder = tmp_path / "IJB-C"
    folder.mkdir()
    pairs = tmp_path / "p.txt"
    pairs.write_text("x\n", encoding="utf-8")
    for command in ("verify", "scores"):
        out = [] if command == "verify" else ["-o", str(tmp_path / f"{command}.csv")]
        result = run(
            command,
            "--protocol",
            "ijbc",
            "--protocol-dir",
            folder,
            "--features",
            store,
            "--pairs",
            pairs,
            *out,
        )
        _assert_user_error(result, "Expected --protocol-dir for --protocol ijbc, but got --pairs")
        result = run(
            command, "--protocol", "lfw", "--protocol-dir", folder, "--features", store, *out
        )
        _assert_user_error(result, "--protocol-dir is for IJB protocols, not --protocol lfw")
