"""``facebench verify --scores FILE``: scores computed elsewhere get the same metrics and
report as ``verify`` on features. The round trip: ``facebench scores`` exports LFW's scores
of a generated store, ``verify --scores`` re-reads them, and every number of the report
equals that of ``verify --protocol lfw`` on the store; the file's scores are also checked
against scikit-learn, read back by the csv module."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_helpers import assert_user_error, run
from sklearn.metrics import roc_auc_score

from facebench.demo import synthetic_features
from facebench.evaluate import VerifyOptions
from facebench.external_scores import GIVEN_SCORE, evaluate_scores
from facebench.store import create_store, normalize_rows
from protocols import lfw

PROTOCOL = lfw.load()

#: Every number of a fold report (``created`` and the provenance fields differ by design).
NUMBERS = (
    "accuracy",
    "auc",
    "eer",
    "eer_threshold",
    "tar_at_far",
    "roc",
    "n_pairs",
    "n_genuine",
    "n_impostor",
)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("store") / "lfw.h5"
    unit, norms = normalize_rows(synthetic_features(PROTOCOL.items, noise=1.4, seed=11))
    create_store(path, PROTOCOL.items, unit, norms, model="synthetic")
    return path


@pytest.fixture(scope="module")
def exported(store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("scores") / "lfw.scores.csv"
    result = run("scores", "--protocol", "lfw", "--features", store, "-o", out)
    assert result.exit_code == 0, result.output
    return out


def report(tmp_path: Path, name: str, *args: str | Path) -> dict[str, Any]:
    out = tmp_path / f"{name}.json"
    result = run("verify", *args, "--json", out)
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(out.read_text())


@pytest.mark.parametrize(
    "options",
    [
        (),
        ("--compat", "insightface"),
        ("--compat", "facexzoo", "--tar-rule", "nearest", "--far", "1e-4,0.05"),
    ],
)
def test_exported_scores_give_the_same_report(
    tmp_path: Path, store: Path, exported: Path, options: tuple[str, ...]
) -> None:
    on_features = report(tmp_path, "f", "--protocol", "lfw", "--features", store, *options)
    on_scores = report(tmp_path, "s", "--scores", exported, *options)
    for key in NUMBERS:
        assert on_scores[key] == on_features[key], key
    assert on_scores.get("compat") == on_features.get("compat")
    f_pairs, s_pairs = np.load(tmp_path / "f.scores.npz"), np.load(tmp_path / "s.scores.npz")
    for key in ("left", "right", "score", "is_same", "fold"):
        np.testing.assert_array_equal(s_pairs[key], f_pairs[key])
    # provenance: the scores file, not a store
    digest = hashlib.sha256(exported.read_bytes()).hexdigest()
    assert on_scores["store"] == {
        "kind": "scores file",
        "path": str(exported.resolve()),
        "sha256": digest,
        "attributes": {},
    }
    assert on_scores["protocol"] == "scores" and on_scores["protocol_sha256"] == digest
    assert on_scores["conventions"]["score"] == GIVEN_SCORE
    assert on_scores["conventions"]["flip_fusion"] is None
    assert on_scores["conventions"]["tar_rule"] == on_features["conventions"]["tar_rule"]


def test_file_scores_against_sklearn(exported: Path) -> None:
    with open(exported, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    scores = np.array([float(r["score"]) for r in rows])
    labels = np.array([r["label"] == "1" for r in rows])
    result, pair_data = evaluate_scores(exported, VerifyOptions())
    np.testing.assert_array_equal(pair_data["score"], scores)
    assert result.auc == pytest.approx(roc_auc_score(labels, scores), abs=1e-14)
    assert result.n_pairs == 6000 == len(rows) and result.n_genuine == int(labels.sum())


def test_without_fold_column_folds_are_ten_blocks(tmp_path: Path, exported: Path) -> None:
    # LFW's ten sets are ten contiguous blocks of 600 pairs: the same folds as KFold(10)
    with open(exported, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    plain = tmp_path / "plain.txt"
    plain.write_text("".join(f"{r['id1']} {r['id2']} {r['score']} {r['label']}\n" for r in rows))
    with_folds = report(tmp_path, "a", "--scores", exported)
    without = report(tmp_path, "b", "--scores", plain)
    for key in NUMBERS:
        assert without[key] == with_folds[key], key
    assert without["conventions"]["folds"].startswith("10 contiguous blocks")
    assert with_folds["conventions"]["folds"].startswith("the folds of the protocol file")


@pytest.mark.parametrize(
    ("args", "phrases"),
    [
        (("--protocol", "lfw"), ["--scores FILE alone", "--protocol"]),
        (("--features", "STORE"), ["--scores FILE alone", "--features"]),
        (("--flip-fusion", "sum-raw"), ["--flip-fusion"]),
        (("--allow-skipped",), ["--allow-skipped"]),
        (("--pairs", "x.txt", "--video-pooling", "first"), ["--pairs", "--video-pooling"]),
    ],
)
def test_scores_stands_alone(
    store: Path, exported: Path, args: tuple[str, ...], phrases: list[str]
) -> None:
    args = tuple(str(store) if a == "STORE" else a for a in args)
    assert_user_error(run("verify", "--scores", exported, *args), *phrases)


def test_bad_score_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("a b 0.5 1 1\nc d nan 0 2\n")
    assert_user_error(run("verify", "--scores", bad), f"{bad}:2:", "finite score")
    one_class = tmp_path / "one.txt"
    one_class.write_text("".join(f"a{i} b{i} 0.{i} 1\n" for i in range(12)))
    assert_user_error(run("verify", "--scores", one_class), "impostor")
    assert_user_error(run("verify", "--scores", tmp_path / "none.csv"), "no such score file")
    assert_user_error(run("verify"), "--protocol NAME and --features STORE")


def test_existing_report_is_not_overwritten(tmp_path: Path, exported: Path) -> None:
    out = tmp_path / "r.json"
    out.write_text("precious")
    assert_user_error(run("verify", "--scores", exported, "--json", out), "--overwrite")
    assert out.read_text() == "precious"


def test_compat_warns_when_the_files_folds_are_not_blocks(tmp_path: Path, exported: Path) -> None:
    with open(exported, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    interleaved = tmp_path / "interleaved.csv"
    interleaved.write_text(
        "".join(
            f"{r['id1']},{r['id2']},{r['score']},{r['label']},{i % 10 + 1}\n"
            for i, r in enumerate(rows)
        )
    )
    plain = report(tmp_path, "p", "--scores", interleaved)
    assert plain["warnings"] == []
    compat = report(tmp_path, "c", "--scores", interleaved, "--compat", "insightface")
    assert any("contiguous blocks" in w for w in compat["warnings"])
