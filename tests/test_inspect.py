"""``facebench inspect``: stores, reports and scores files summarized, checked against the
arrays written and the reports' own JSON; the content checksum recomputed on demand and a
changed store caught; every unreadable input a one-line error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from cli_helpers import assert_user_error, run
from ijbc_fixtures import write_ijbc

import facebench.inspect as inspect_module
import facebench.store as store_module
from facebench.demo import synthetic_features
from facebench.inspect import detect_kind, inspect_path, inspect_store
from facebench.store import FeatureStore, create_store, normalize_rows
from protocols import lfw

SKIPPED = [(f"zz/{i}.jpg", f"zz/{i}.jpg: truncated JPEG") for i in (7, 3, 9, 1, 5, 8, 2)]


def make_store(path: Path, n: int = 40, dim: int = 6, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    raw = rng.standard_normal((n, dim)) * rng.uniform(0.5, 9, size=(n, 1))
    raw_flip = raw + 0.2 * rng.standard_normal(raw.shape)
    unit, norms = normalize_rows(raw)
    unit_f, norms_f = normalize_rows(raw_flip)
    ids = [f"p{i // 4}/{i}.jpg" for i in range(n)]
    create_store(
        path,
        ids,
        unit,
        norms,
        features_flip=unit_f,
        norms_flip=norms_f,
        metadata={"score": rng.uniform(size=n), "media": np.arange(n)},
        model="r50",
        model_sha256="ab" * 32,
        preprocessing={"preset": "arcface112", "size": [112, 112]},
        skipped=SKIPPED,
    )
    return {"ids": ids, "norms": norms, "norms_flip": norms_f}


def expected_norms(norms: np.ndarray) -> dict[str, Any]:
    values = norms.astype(np.float64)
    return {
        "n": values.size,
        "min": values.min(),
        "median": float(np.median(values)),
        "mean": values.mean(),
        "max": values.max(),
    }


@pytest.mark.parametrize("read_bytes", [1 << 26, 4 * 6 * 3])  # one read; reads of 3 rows
def test_store_summary_matches_what_was_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, read_bytes: int
) -> None:
    monkeypatch.setattr(inspect_module, "READ_BYTES", read_bytes)
    written = make_store(tmp_path / "s.h5")
    result = run("inspect", tmp_path / "s.h5", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    with FeatureStore.open(tmp_path / "s.h5") as store:
        recorded = store.info.content_sha256
    assert data["kind"] == "store"
    assert (data["n_items"], data["dim"], data["has_flip"]) == (40, 6, True)
    assert (data["model"], data["model_sha256"]) == ("r50", "ab" * 32)
    assert data["preprocessing"] == {"preset": "arcface112", "size": [112, 112]}
    assert data["metadata_keys"] == ["media", "score"]
    assert data["content_sha256"] == recorded and data["check"] is None
    for key in ("norms", "norms_flip"):
        assert data[key] == pytest.approx(expected_norms(written[key]), rel=1e-12)
    assert data["n_skipped"] == 7
    assert data["skipped"] == [list(pair) for pair in sorted(SKIPPED)[:5]]


def test_store_table_names_the_essentials(tmp_path: Path) -> None:
    make_store(tmp_path / "s.h5")
    result = run("inspect", tmp_path / "s.h5")
    assert result.exit_code == 0, result.output
    for phrase in ("feature store", "r50", "arcface112", "media, score", "zz/1.jpg", "2 more"):
        assert phrase in result.stdout


def test_check_recomputes_the_checksum_across_blocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "BLOCK_ROWS", 7)  # 40 rows: 6 blocks, the last short
    path = tmp_path / "s.h5"
    make_store(path)
    summary = inspect_store(path, check=True)
    assert summary.check is not None
    assert summary.check.ok and summary.check.n_blocks == 6 and summary.check.n_rows == 40
    assert summary.check.computed == summary.content_sha256
    result = run("inspect", path, "--check")
    assert result.exit_code == 0, result.output
    assert "OK" in result.stdout and "6 blocks" in result.stdout


def test_check_catches_a_store_changed_after_writing(tmp_path: Path) -> None:
    path = tmp_path / "s.h5"
    make_store(path)
    with h5py.File(path, "r+") as handle:  # swap two unit rows: still a valid-looking store
        rows = handle["features"][[3, 4]]
        handle["features"][3], handle["features"][4] = rows[1], rows[0]
    assert run("inspect", path).exit_code == 0  # no re-hash unless asked
    result = run("inspect", path, "--check")
    assert_user_error(result, "content checksum", "re-create it")
    assert "MISMATCH" in result.stdout


@pytest.fixture(scope="module")
def lfw_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lfw")
    ids = lfw.load().items
    unit, norms = normalize_rows(synthetic_features(ids, noise=1.4, seed=7))
    create_store(root / "lfw.h5", ids, unit, norms, model="m")
    report = root / "lfw.json"
    result = run(
        "verify", "--protocol", "lfw", "--features", root / "lfw.h5", "--json", report,
        "--label", "mine",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return report


def test_fold_report_summary_repeats_the_report(lfw_report: Path) -> None:
    report = json.loads(lfw_report.read_text())
    result = run("inspect", lfw_report, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert (data["kind"], data["report_kind"], data["protocol"]) == ("report", "fold", "lfw")
    assert data["label"] == "mine"
    for key in ("protocol_sha256", "conventions", "counts", "warnings", "created"):
        assert data[key] == report[key]
    assert data["store"]["content_sha256"] == report["store"]["content_sha256"]
    assert data["headline"]["accuracy"] == {
        k: report["accuracy"][k] for k in ("mean", "std", "stderr")
    }
    assert (data["headline"]["auc"], data["headline"]["eer"]) == (report["auc"], report["eer"])
    assert [p["tar"] for p in data["headline"]["tar_at_far"]] == [
        p["tar"] for p in report["tar_at_far"]
    ]
    table = run("inspect", lfw_report)
    assert table.exit_code == 0
    accuracy = f"{100 * report['accuracy']['mean']:.2f}%"
    for phrase in ("headline numbers", accuracy, "TAR @ FAR=0.001", "conventions", "mine"):
        assert phrase in table.stdout


def test_scores_file_summary(lfw_report: Path) -> None:
    npz = lfw_report.with_name("lfw.scores.npz")
    assert detect_kind(npz) == "scores"
    summary = inspect_path(npz).to_dict()
    with np.load(npz) as arrays:
        score = arrays["score"]
    assert (summary["n_pairs"], summary["n_genuine"], summary["n_impostor"]) == (6000, 3000, 3000)
    assert (summary["score_min"], summary["score_max"]) == (score.min(), score.max())
    assert summary["groups"] == {"fold": list(range(1, 11))}
    assert summary["arrays"]["score"] == {"dtype": "float64", "shape": [6000]}


def test_split_report_headline_is_its_summary(tmp_path: Path) -> None:
    record = write_ijbc(tmp_path, n_subjects=8, templates_per_subject=3, seed=4)
    keys = sorted(record["scores"])
    unit, norms = normalize_rows(np.random.default_rng(0).standard_normal((len(keys), 8)))
    create_store(tmp_path / "s.h5", keys, unit, norms, model="m")
    report = tmp_path / "r.json"
    result = run(
        "verify", "--protocol", "ijbc", "--protocol-dir", tmp_path, "--features",
        tmp_path / "s.h5", "--json", report,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    data = inspect_path(report).to_dict()
    assert data["report_kind"] == "split"
    assert data["headline"] == json.loads(report.read_text())["summary"]
    table = run("inspect", report)
    assert table.exit_code == 0
    for phrase in ("CMC rank 1", "TPIR @ FPIR=0.01", "TAR @ FAR=1e-06", "splits"):
        assert phrase in table.stdout


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("name", "content", "phrases"),
    [
        ("notes.txt", b"id1,id2\n", ["Expected a feature store (HDF5), a report (JSON)"]),
        ("empty.bin", b"", ["Expected a feature store (HDF5), a report (JSON)"]),
        ("r.json", b'{"a": 1}', ["not a facebench report"]),
        ("r2.json", b'{"schema_version": 99, "protocol": "lfw"}', ["schema_version 99"]),
        ("broken.json", b"{not json", ["not valid JSON"]),
        ("s.h5", b"\x89HDF\r\n\x1a\n" + b"\x00" * 64, ["s.h5"]),
        ("x.npz", b"PK\x03\x04garbage", ["x.npz", "Expected a scores file"]),
    ],
)
def test_unreadable_inputs_are_one_line_errors(
    tmp_path: Path, name: str, content: bytes, phrases: list[str]
) -> None:
    result = run("inspect", write_bytes(tmp_path / name, content))
    assert_user_error(result, *phrases, only_line=True)


def test_hdf5_that_is_not_a_store_and_npz_without_scores(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "other.h5", "w") as handle:
        handle["x"] = np.zeros(3)
    assert_user_error(run("inspect", tmp_path / "other.h5"), "schema_version", only_line=True)
    np.savez(tmp_path / "a.npz", x=np.zeros(3))
    assert_user_error(run("inspect", tmp_path / "a.npz"), "`score`", only_line=True)
    assert_user_error(run("inspect", tmp_path / "missing.h5"), "no such file", only_line=True)
    assert_user_error(run("inspect", tmp_path), "folder", only_line=True)
