"""Tests of ``facebench import``: formats, ids files, errors and exit codes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import h5py
import numpy as np
import pytest
from cli_helpers import assert_user_error
from click.testing import CliRunner, Result

from facebench.cli import cli
from facebench.store import FeatureStore


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, ["import", *map(str, args)])


def raw_features(n: int = 9, dim: int = 5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, dim)) * rng.uniform(1.0, 40.0, size=(n, 1))


def ids_file(folder: Path, n: int = 9, *, text: str | None = None) -> Path:
    path = folder / "ids.txt"
    path.write_text(text if text is not None else "".join(f"p{i}/img_{i}.jpg\n" for i in range(n)))
    return path


def test_import_npy_normalizes_and_records_norms(tmp_path: Path) -> None:
    raw = raw_features()
    np.save(tmp_path / "feats.npy", raw)
    result = run(tmp_path / "feats.npy", "--ids", ids_file(tmp_path), "-o", tmp_path / "s.h5")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert "s.h5: 9 items x 5 dims, flip no, content sha256 " in result.stderr
    expected_norms = np.linalg.norm(raw, axis=1)
    with FeatureStore.open(tmp_path / "s.h5") as store:
        features, norms = store.read_all()
        attributes = store.info.attributes
        assert store.ids == [f"p{i}/img_{i}.jpg" for i in range(9)]
        assert not store.info.has_flip
        assert store.info.content_sha256[:12] in result.stderr
    np.testing.assert_allclose(norms, expected_norms, rtol=1e-6)
    np.testing.assert_allclose(features, raw / expected_norms[:, None], rtol=1e-6, atol=1e-7)
    file_hash = hashlib.sha256((tmp_path / "feats.npy").read_bytes()).hexdigest()
    assert attributes["model"] == "imported:feats.npy"
    assert attributes["model_sha256"] == file_hash
    assert attributes["preprocessing"] == {"name": "imported", "source": "feats.npy"}


def test_import_npz_with_one_array_needs_no_key(tmp_path: Path) -> None:
    raw = raw_features().astype(np.float16)
    np.savez(tmp_path / "feats.npz", embeddings=raw)
    result = run(tmp_path / "feats.npz", "--ids", ids_file(tmp_path), "-o", tmp_path / "s.h5")
    assert result.exit_code == 0, result.output
    with FeatureStore.open(tmp_path / "s.h5") as store:
        norms = store.read_all()[1]
    np.testing.assert_allclose(norms, np.linalg.norm(raw.astype(np.float64), axis=1), rtol=1e-6)


def test_import_npz_with_several_arrays_needs_key(tmp_path: Path) -> None:
    raw = raw_features()
    np.savez(tmp_path / "feats.npz", emb=raw, labels=np.arange(9))
    ids = ids_file(tmp_path)
    result = run(tmp_path / "feats.npz", "--ids", ids, "-o", tmp_path / "s.h5")
    assert_user_error(result, "feats.npz", "'emb'", "'labels'", "--key")
    assert not (tmp_path / "s.h5").exists()
    result = run(tmp_path / "feats.npz", "--key", "missing", "--ids", ids, "-o", tmp_path / "s.h5")
    assert_user_error(result, "'missing'", "'emb'")
    result = run(tmp_path / "feats.npz", "--key", "emb", "--ids", ids, "-o", tmp_path / "s.h5")
    assert result.exit_code == 0, result.output


def test_import_hdf5_dataset_by_key(tmp_path: Path) -> None:
    raw = raw_features(dim=7)
    with h5py.File(tmp_path / "feats.h5", "w") as handle:
        handle.create_dataset("model/embeddings", data=raw.astype(np.float32))
        handle.create_dataset("labels", data=np.arange(9))
    ids = ids_file(tmp_path)
    result = run(tmp_path / "feats.h5", "--ids", ids, "-o", tmp_path / "s.h5")
    assert_user_error(result, "--key", "'model/embeddings'", "'labels'")
    result = run(tmp_path / "feats.h5", "--key", "model", "--ids", ids, "-o", tmp_path / "s.h5")
    assert_user_error(result, "'model'", "'model/embeddings'")
    result = run(
        tmp_path / "feats.h5", "--key", "model/embeddings", "--ids", ids, "-o", tmp_path / "s.h5"
    )
    assert result.exit_code == 0, result.output
    with FeatureStore.open(tmp_path / "s.h5") as store:
        assert store.info.dim == 7
        np.testing.assert_allclose(store.read_all()[1], np.linalg.norm(raw, axis=1), rtol=1e-6)


def test_ids_file_with_crlf_and_bom(tmp_path: Path) -> None:
    np.save(tmp_path / "feats.npy", raw_features(3))
    ids = tmp_path / "ids.txt"
    ids.write_bytes("\ufeffa/1.jpg\r\nb/ü.jpg\r\nframe/2.png#7\r\n".encode())
    result = run(tmp_path / "feats.npy", "--ids", ids, "-o", tmp_path / "s.h5")
    assert result.exit_code == 0, result.output
    with FeatureStore.open(tmp_path / "s.h5") as store:
        assert store.ids == ["a/1.jpg", "b/ü.jpg", "frame/2.png#7"]


def test_ids_file_without_final_newline(tmp_path: Path) -> None:
    np.save(tmp_path / "feats.npy", raw_features(2))
    ids = ids_file(tmp_path, text="a\nb")
    assert run(tmp_path / "feats.npy", "--ids", ids, "-o", tmp_path / "s.h5").exit_code == 0


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("a\nb\na\n", "ids.txt:3: Expected unique ids, but 'a' is also on line 1"),
        ("a\n\nb\n", "ids.txt:2: Expected a non-empty id"),
        ("a\nb\\c.jpg\nd\n", "ids.txt:2: Expected '/' separators"),
        ("a\nb\n/c\n", "ids.txt:3: Expected a relative id"),
    ],
)
def test_bad_ids_file_names_the_line(tmp_path: Path, text: str, phrase: str) -> None:
    np.save(tmp_path / "feats.npy", raw_features(3))
    result = run(
        tmp_path / "feats.npy", "--ids", ids_file(tmp_path, text=text), "-o", tmp_path / "s.h5"
    )
    assert_user_error(result, phrase)
    assert not (tmp_path / "s.h5").exists()


def test_not_utf8_ids_file(tmp_path: Path) -> None:
    np.save(tmp_path / "feats.npy", raw_features(2))
    (tmp_path / "ids.txt").write_bytes(b"a\nb\xff\n")
    result = run(tmp_path / "feats.npy", "--ids", tmp_path / "ids.txt", "-o", tmp_path / "s.h5")
    assert_user_error(result, "ids.txt:2: Expected UTF-8")


def test_count_mismatch_names_both_files_and_counts(tmp_path: Path) -> None:
    np.save(tmp_path / "feats.npy", raw_features(9))
    result = run(tmp_path / "feats.npy", "--ids", ids_file(tmp_path, 8), "-o", tmp_path / "s.h5")
    assert_user_error(result, "ids.txt has 8 ids", "feats.npy has 9 rows")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feats.npy", "ids.txt"]


def test_nan_row_is_an_error(tmp_path: Path) -> None:
    raw = raw_features()
    raw[4, 1] = np.nan
    np.save(tmp_path / "feats.npy", raw)
    result = run(tmp_path / "feats.npy", "--ids", ids_file(tmp_path), "-o", tmp_path / "s.h5")
    assert_user_error(result, "feats.npy, row 4", "NaN")
    assert not (tmp_path / "s.h5").exists()


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    np.save(tmp_path / "feats.npy", raw_features())
    ids = ids_file(tmp_path)
    output = tmp_path / "s.h5"
    output.write_bytes(b"keep me")
    result = run(tmp_path / "feats.npy", "--ids", ids, "-o", output)
    assert_user_error(result, "s.h5", "--overwrite")
    assert output.read_bytes() == b"keep me"
    result = run(tmp_path / "feats.npy", "--ids", ids, "-o", output, "--overwrite")
    assert result.exit_code == 0, result.output
    with FeatureStore.open(output) as store:
        assert store.info.n_items == 9


def test_existing_output_is_checked_before_reading_inputs(tmp_path: Path) -> None:
    (tmp_path / "feats.npy").write_bytes(b"not an array")
    output = tmp_path / "s.h5"
    output.write_bytes(b"keep me")
    result = run(tmp_path / "feats.npy", "--ids", ids_file(tmp_path), "-o", output)
    assert_user_error(result, "--overwrite")


def test_flip_features(tmp_path: Path) -> None:
    raw, raw_flip = raw_features(seed=1), raw_features(seed=2)
    np.save(tmp_path / "feats.npy", raw)
    np.save(tmp_path / "flip.npy", raw_flip)
    result = run(
        tmp_path / "feats.npy",
        "--flip-features",
        tmp_path / "flip.npy",
        "--ids",
        ids_file(tmp_path),
        "-o",
        tmp_path / "s.h5",
        "--compression",
        "gzip",
    )
    assert result.exit_code == 0, result.output
    assert "flip yes" in result.stderr
    flip_norms = np.linalg.norm(raw_flip, axis=1)
    with FeatureStore.open(tmp_path / "s.h5") as store:
        features_flip, norms_flip = store.read_all(flip=True)
    np.testing.assert_allclose(norms_flip, flip_norms, rtol=1e-6)
    np.testing.assert_allclose(features_flip, raw_flip / flip_norms[:, None], rtol=1e-6, atol=1e-7)
    with h5py.File(tmp_path / "s.h5", "r") as handle:
        assert handle["features_flip"].compression == "gzip"


def test_flip_features_of_another_shape(tmp_path: Path) -> None:
    np.save(tmp_path / "feats.npy", raw_features())
    np.save(tmp_path / "flip.npy", raw_features(dim=4))
    result = run(
        tmp_path / "feats.npy",
        "--flip-features",
        tmp_path / "flip.npy",
        "--ids",
        ids_file(tmp_path),
        "-o",
        tmp_path / "s.h5",
    )
    assert_user_error(result, "flip.npy has shape (9, 4)", "feats.npy has (9, 5)")


def test_unknown_suffix_and_bad_shape(tmp_path: Path) -> None:
    ids = ids_file(tmp_path)
    (tmp_path / "feats.csv").write_text("1,2\n")
    result = run(tmp_path / "feats.csv", "--ids", ids, "-o", tmp_path / "s.h5")
    assert_user_error(result, "Expected a .npy, .npz, .h5 or .hdf5 file")
    np.save(tmp_path / "feats.npy", np.ones(9))
    result = run(tmp_path / "feats.npy", "--ids", ids, "-o", tmp_path / "s.h5")
    assert_user_error(result, "Expected a 2-D array", "(9,)")


def test_help_shows_an_example() -> None:
    result = CliRunner().invoke(cli, ["import", "--help"])
    assert result.exit_code == 0
    assert "Example:" in result.output
    assert "facebench import feats.npy --ids ids.txt -o lfw.h5" in result.output
    assert "--compression [none|lzf|gzip]" in result.output
