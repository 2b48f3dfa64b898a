"""``facebench scores``: every pair's score written as CSV, bob 4-column and pyeer files, read
back by independent readers (numpy, the csv module, bob's and pyeer's parsing rules written
out here) and checked against ``verify``'s per-pair file and scikit-learn's ROC and AUC."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_helpers import assert_user_error, run
from ijbc_fixtures import write_ijbc
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sk_roc_curve

from facebench.demo import synthetic_features
from facebench.metrics import count_at_thresholds, roc_curve
from facebench.score_files import (
    SCORE_FORMATS,
    PairScores,
    ScoreFileError,
    score_paths,
    write_scores,
)
from facebench.store import create_store, normalize_rows
from protocols import lfw

PROTOCOL = lfw.load()


# ----------------------------------------------------------------------------- readers


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    """The header and rows, by the csv module (RFC 4180 quoting)."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    return rows[0], rows[1:]


def bob_split_four_column(path: Path) -> tuple[np.ndarray, np.ndarray, list[tuple[str, ...]]]:
    """bob.measure.load.split_four_column's rule, written out: skip blank and ``#`` lines,
    split on whitespace, positive when claimed_id == real_id. Returns negatives, positives
    and the raw fields."""
    negatives: list[float] = []
    positives: list[float] = []
    fields: list[tuple[str, ...]] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        parts = stripped.split()
        assert len(parts) == 4, line
        claimed, real, _, score = parts
        (positives if claimed == real else negatives).append(float(score))
        fields.append(tuple(parts))
    return np.array(negatives), np.array(positives), fields


def pyeer_read(path: Path) -> np.ndarray:
    """pyeer's plain score file: one score per line, the score in the last column."""
    return np.array([float(line.split()[-1]) for line in path.read_text().splitlines() if line])


def assert_same_roc(score: np.ndarray, label: np.ndarray, reference_score: np.ndarray) -> None:
    """sklearn's ROC of the re-read file equals facebench's ROC of verify's own scores."""
    ours = roc_curve(count_at_thresholds(reference_score, label))
    fpr, tpr, thresholds = sk_roc_curve(label, score, drop_intermediate=False)
    np.testing.assert_array_equal(ours.far, fpr)
    np.testing.assert_array_equal(ours.tar, tpr)
    np.testing.assert_array_equal(ours.thresholds, thresholds)


# ----------------------------------------------------------------------------- LFW


@pytest.fixture(scope="module")
def lfw_world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("lfw")
    ids = PROTOCOL.items
    unit, norms = normalize_rows(synthetic_features(ids, noise=1.4, seed=7))
    unit_f, norms_f = normalize_rows(synthetic_features(ids, noise=1.4, seed=8))
    store = root / "lfw.h5"
    create_store(store, ids, unit, norms, features_flip=unit_f, norms_flip=norms_f, model="m")
    out: dict[str, Any] = {"root": root, "store": store}
    for fusion in ("none", "sum-raw"):
        report = root / f"verify-{fusion}.json"
        result = run(
            "verify", "--protocol", "lfw", "--features", store, "--json", report,
            "--flip-fusion", fusion,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        with np.load(root / f"verify-{fusion}.scores.npz") as npz:
            out[fusion] = {"report": json.loads(report.read_text()), **dict(npz)}
    return out


@pytest.mark.parametrize("fusion", ["none", "sum-raw"])
def test_csv_rereads_to_verify_scores_and_sklearn_roc(
    tmp_path: Path, lfw_world: dict[str, Any], fusion: str
) -> None:
    verified = lfw_world[fusion]
    out = tmp_path / "lfw.csv"
    result = run(
        "scores", "--protocol", "lfw", "--features", lfw_world["store"], "-o", out,
        "--flip-fusion", fusion,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "6000 pairs (3000 genuine, 3000 impostor)" in result.stderr
    header, rows = read_csv(out)
    assert header == ["id1", "id2", "score", "label", "fold"]
    assert [r[0] for r in rows] == list(PROTOCOL.left)
    assert [r[1] for r in rows] == list(PROTOCOL.right)
    numbers = np.loadtxt(out, delimiter=",", skiprows=1, usecols=(2, 3, 4))
    score, label, fold = numbers[:, 0], numbers[:, 1].astype(bool), numbers[:, 2]
    np.testing.assert_array_equal(score, verified["score"])  # every bit survives the text
    np.testing.assert_array_equal(label, PROTOCOL.is_same)
    np.testing.assert_array_equal(fold, PROTOCOL.folds)
    assert_same_roc(score, label, verified["score"])
    assert roc_auc_score(label, score) == pytest.approx(verified["report"]["auc"], abs=1e-15)


def test_bob_four_column_splits_into_verify_scores(
    tmp_path: Path, lfw_world: dict[str, Any]
) -> None:
    verified = lfw_world["none"]
    out = tmp_path / "lfw.bob.txt"
    result = run(
        "scores", "--protocol", "lfw", "--features", lfw_world["store"], "-o", out,
        "--format", "bob",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    negatives, positives, fields = bob_split_four_column(out)
    same = verified["is_same"]
    np.testing.assert_array_equal(positives, verified["score"][same])
    np.testing.assert_array_equal(negatives, verified["score"][~same])
    assert [f[0] for f in fields] == list(PROTOCOL.left)  # claimed: the first item
    assert [f[2] for f in fields] == list(PROTOCOL.right)  # test label: the second
    label = np.array([f[0] == f[1] for f in fields])
    score = np.array([float(f[3]) for f in fields])
    assert_same_roc(score, label, verified["score"])


def test_pyeer_files_hold_genuine_and_impostor_scores(
    tmp_path: Path, lfw_world: dict[str, Any]
) -> None:
    verified = lfw_world["none"]
    out = tmp_path / "sub" / "lfw.txt"
    result = run(
        "scores", "--protocol", "lfw", "--features", lfw_world["store"], "-o", out,
        "--format", "pyeer",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    genuine_path, impostor_path = (
        tmp_path / "sub" / "lfw.genuine.txt",
        tmp_path / "sub" / "lfw.impostor.txt",
    )
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == [
        "lfw.genuine.txt",
        "lfw.impostor.txt",
    ]
    genuine, impostor = pyeer_read(genuine_path), pyeer_read(impostor_path)
    same = verified["is_same"]
    np.testing.assert_array_equal(genuine, verified["score"][same])
    np.testing.assert_array_equal(impostor, verified["score"][~same])
    score = np.concatenate((genuine, impostor))
    label = np.concatenate((np.ones(genuine.size, bool), np.zeros(impostor.size, bool)))
    assert roc_auc_score(label, score) == pytest.approx(verified["report"]["auc"], abs=1e-15)


def test_existing_outputs_are_kept_without_overwrite(
    tmp_path: Path, lfw_world: dict[str, Any]
) -> None:
    base = tmp_path / "s.txt"
    genuine = tmp_path / "s.genuine.txt"
    genuine.write_text("keep\n")
    args = ["scores", "--protocol", "lfw", "--features", lfw_world["store"], "-o", base]
    assert_user_error(run(*args, "--format", "pyeer"), "s.genuine.txt", "--overwrite")
    assert genuine.read_text() == "keep\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.genuine.txt"]  # nothing else
    assert run(*args, "--format", "pyeer", "--overwrite").exit_code == 0
    assert pyeer_read(genuine).size == 3000
    csv_path = tmp_path / "s.csv"
    csv_path.write_text("old")
    assert_user_error(run(*args[:-1], csv_path), "s.csv", "--overwrite")
    assert csv_path.read_text() == "old"


@pytest.mark.parametrize(
    ("extra", "phrases"),
    [
        (["--protocol", "ijbc"], ["--protocol ijbc needs --protocol-dir"]),
        (["--protocol", "lfw", "--split", "2"], ["--split is for IJB protocols"]),
    ],
)
def test_options_of_the_other_protocol_kind_are_refused(
    tmp_path: Path, lfw_world: dict[str, Any], extra: list[str], phrases: list[str]
) -> None:
    result = run("scores", *extra, "--features", lfw_world["store"], "-o", tmp_path / "s.csv")
    assert_user_error(result, *phrases, only_line=True)
    assert not (tmp_path / "s.csv").exists()


def test_a_missing_store_is_a_one_line_error(tmp_path: Path) -> None:
    out = tmp_path / "s.csv"
    result = run("scores", "--protocol", "lfw", "--features", tmp_path / "no.h5", "-o", out)
    assert_user_error(result, "no.h5", "no such feature store", only_line=True)
    assert not out.exists()


# ----------------------------------------------------------------------------- library


def tiny_scores(left: list[Any], right: list[Any], same: list[bool]) -> PairScores:
    n = len(left)
    return PairScores(
        protocol="lfw",
        left=np.asarray(left),
        right=np.asarray(right),
        score=np.linspace(-0.5, 0.5, n),
        is_same=np.asarray(same),
        group=np.ones(n, dtype=np.int64),
        group_name="fold",
    )


def test_csv_quotes_ids_with_commas_and_keeps_float64(tmp_path: Path) -> None:
    scores = tiny_scores(['a,"b"', "c"], ["d", "e f"], [True, False])
    scores.score[:] = [1 / 3, -2 / 7]
    (path,) = write_scores(scores, tmp_path / "s.csv", "csv")
    _, rows = read_csv(path)
    assert rows == [['a,"b"', "d", repr(1 / 3), "1", "1"], ["c", "e f", repr(-2 / 7), "0", "1"]]
    assert float(rows[0][2]) == 1 / 3


@pytest.mark.parametrize(
    ("left", "right", "same", "phrase"),
    [
        (["a b", "c"], ["d", "e"], [True, False], "'a b'"),
        (["a", "c"], ["#d", "e"], [True, False], "'#d'"),
        (["a", "c"], ["d", "c"], [True, False], "compares 'c' with itself"),
    ],
)
def test_bob_refuses_ids_it_would_misread(
    tmp_path: Path, left: list[str], right: list[str], same: list[bool], phrase: str
) -> None:
    with pytest.raises(ScoreFileError, match="bob") as caught:
        write_scores(tiny_scores(left, right, same), tmp_path / "s.txt", "bob")
    assert phrase in str(caught.value)
    assert not list(tmp_path.iterdir())


def test_score_paths_name_every_file() -> None:
    assert set(SCORE_FORMATS) == {"csv", "bob", "pyeer"}
    assert score_paths("x/s.csv", "csv") == (Path("x/s.csv"),)
    assert score_paths("x/s.txt", "bob") == (Path("x/s.txt"),)
    assert score_paths("x/s.txt", "pyeer") == (Path("x/s.genuine.txt"), Path("x/s.impostor.txt"))
    assert score_paths("x/s", "pyeer") == (Path("x/s.genuine.txt"), Path("x/s.impostor.txt"))
    with pytest.raises(ScoreFileError, match="Expected a format"):
        score_paths("s", "matlab")


# ----------------------------------------------------------------------------- IJB-C


@pytest.fixture(scope="module")
def ijbc_world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("ijbc")
    record = write_ijbc(root, n_subjects=12, templates_per_subject=3, seed=2)
    keys = sorted(record["scores"])
    subject = {k: record["subjects"][t] for t, ks in record["templates"].items() for k in ks}
    rng = np.random.default_rng(1)
    direction = {s: rng.standard_normal(8) for s in set(subject.values())}
    raw = np.stack([direction[subject[k]] + rng.standard_normal(8) for k in keys])
    unit, norms = normalize_rows(raw)
    store = root / "s.h5"
    create_store(store, keys, unit, norms, model="m")
    report = root / "r.json"
    result = run(
        "verify", "--protocol", "ijbc", "--protocol-dir", root, "--features", store,
        "--json", report,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with np.load(root / "r.scores.npz") as npz:
        verified = dict(npz)
    return {"root": root, "store": store, "report": json.loads(report.read_text()), **verified}


def test_ijbc_csv_gives_template_ids_and_the_report_roc(
    tmp_path: Path, ijbc_world: dict[str, Any]
) -> None:
    out = tmp_path / "ijbc.csv"
    result = run(
        "scores", "--protocol", "ijbc", "--protocol-dir", ijbc_world["root"], "--features",
        ijbc_world["store"], "-o", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    header, _ = read_csv(out)
    assert header == ["id1", "id2", "score", "label", "split"]
    numbers = np.loadtxt(out, delimiter=",", skiprows=1, dtype=np.float64)
    left, right, score = numbers[:, 0], numbers[:, 1], numbers[:, 2]
    label, split = numbers[:, 3].astype(bool), numbers[:, 4]
    np.testing.assert_array_equal(left, ijbc_world["left"])
    np.testing.assert_array_equal(right, ijbc_world["right"])
    np.testing.assert_array_equal(score, ijbc_world["score"])
    np.testing.assert_array_equal(label, ijbc_world["is_same"])
    assert set(split) == {1}
    expected_pairs = {(a, b): bool(y) for a, b, y in read_pairs(ijbc_world["root"])}
    written = zip(left.tolist(), right.tolist(), label.tolist(), strict=True)
    assert {(int(a), int(b)): y for a, b, y in written} == expected_pairs
    assert_same_roc(score, label, ijbc_world["score"])
    (entry,) = ijbc_world["report"]["splits"]
    assert roc_auc_score(label, score) == pytest.approx(entry["auc"], abs=1e-15)


def read_pairs(root: Path) -> list[tuple[int, int, int]]:
    """The fixture's pair file, read directly: (template 1, template 2, label)."""
    lines = (root / "meta" / "ijbc_template_pair_label.txt").read_text().split("\n")
    triples = [[int(v) for v in line.split()] for line in lines if line.strip()]
    return [(a, b, y) for a, b, y in triples]


@pytest.mark.parametrize("fmt", ["bob", "pyeer"])
def test_ijbc_bob_and_pyeer_parse_back(
    tmp_path: Path, ijbc_world: dict[str, Any], fmt: str
) -> None:
    out = tmp_path / "ijbc.txt"
    result = run(
        "scores", "--protocol", "ijbc", "--protocol-dir", ijbc_world["root"], "--features",
        ijbc_world["store"], "-o", out, "--format", fmt,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    same = ijbc_world["is_same"]
    if fmt == "bob":
        negatives, positives, fields = bob_split_four_column(out)
        assert [int(f[0]) for f in fields] == ijbc_world["left"].tolist()
        assert [int(f[2]) for f in fields] == ijbc_world["right"].tolist()
    else:
        positives = pyeer_read(tmp_path / "ijbc.genuine.txt")
        negatives = pyeer_read(tmp_path / "ijbc.impostor.txt")
    np.testing.assert_array_equal(positives, ijbc_world["score"][same])
    np.testing.assert_array_equal(negatives, ijbc_world["score"][~same])


def test_pairs_file_is_refused_for_template_protocols(
    tmp_path: Path, ijbc_world: dict[str, Any]
) -> None:
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("10\t300\n")
    result = run(
        "scores", "--protocol", "ijbc", "--protocol-dir", ijbc_world["root"], "--pairs", pairs,
        "--features", ijbc_world["store"], "-o", tmp_path / "s.csv",
    )  # fmt: skip
    assert_user_error(result, "--pairs", "--protocol-dir", only_line=True)


def test_ijbc_scores_are_float64_even_where_verify_scores_in_float32(
    tmp_path: Path, ijbc_world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`verify` scores IJB-B/C in float32 from 2**20 pairs (here: from 1 pair), with float64
    re-scores where TAR needs them; `scores` exports a float64 score for every pair."""
    import facebench.template_scores as template_scores

    monkeypatch.setattr(template_scores, "FLOAT32_MIN_PAIRS", 1)
    report = tmp_path / "r32.json"
    result = run(
        "verify", "--protocol", "ijbc", "--protocol-dir", ijbc_world["root"], "--features",
        ijbc_world["store"], "--json", report,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (entry,) = json.loads(report.read_text())["splits"]
    assert entry["score_precision"]["precision"] == "float32"
    with np.load(tmp_path / "r32.scores.npz") as npz:
        float32_scores = npz["score"]
    out = tmp_path / "ijbc.csv"
    result = run(
        "scores", "--protocol", "ijbc", "--protocol-dir", ijbc_world["root"], "--features",
        ijbc_world["store"], "-o", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    exported = np.loadtxt(out, delimiter=",", skiprows=1, dtype=np.float64)[:, 2]
    np.testing.assert_array_equal(exported, ijbc_world["score"])  # verify's float64 scores
    assert not np.array_equal(exported, float32_scores)  # float32 where not re-scored
    assert np.abs(exported - float32_scores).max() <= entry["score_precision"]["error_bound"]
