"""``facebench search``: stores and labels in, the library's exact result out (JSON report and
per-probe .scores.npz); the same result for any chunk size and under torchrun with two
gloo processes; every user error is one ``error:`` line naming the file and line or id."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_user_error, run

from facebench.metrics.identification import cmc, search, tpir_at_fpir
from facebench.store import create_store, normalize_rows

N_GALLERY, N_PROBES, DIM = 400, 60, 16


def _data(seed: int = 0) -> dict[str, np.ndarray]:
    """Unit float32 features around subject centres; subjects 0-29 own gallery items,
    probes come from subjects 0-39 (some non-mated)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, DIM))
    gs = rng.integers(0, 30, N_GALLERY)
    ps = rng.integers(0, 40, N_PROBES)
    ps[:2] = [gs[0], 35]
    g, g_norms = normalize_rows(centres[gs] + 1.2 * rng.standard_normal((N_GALLERY, DIM)))
    p, p_norms = normalize_rows(centres[ps] + 1.2 * rng.standard_normal((N_PROBES, DIM)))
    return {"g": g, "gn": g_norms, "gs": gs, "p": p, "pn": p_norms, "ps": ps}


def _ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}/person {i % 7}/img_{i:04d}.jpg" for i in range(n)]  # spaces in ids


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    return _data()


@pytest.fixture
def stores(tmp_path: Path, data: dict[str, np.ndarray]) -> dict[str, Path]:
    """Gallery with meta/subject (integers), probes without, and labels files for both
    (the probes' in random order with a BOM, CRLF line ends and blank lines)."""
    gallery, probes = tmp_path / "gallery.h5", tmp_path / "probes.h5"
    g_ids, p_ids = _ids("g", N_GALLERY), _ids("p", N_PROBES)
    meta = {"subject": data["gs"]}
    create_store(gallery, g_ids, data["g"], data["gn"], model="m", metadata=meta)
    create_store(probes, p_ids, data["p"], data["pn"], model="m")
    g_labels, p_labels = tmp_path / "gallery.txt", tmp_path / "probes.txt"
    g_labels.write_text("".join(f"{i} s{s}\n" for i, s in zip(g_ids, data["gs"], strict=True)))
    order = np.random.default_rng(1).permutation(N_PROBES)
    lines = [f"{p_ids[i]}  s{data['ps'][i]}\r\n" for i in order]
    lines.insert(5, "\r\n")
    p_labels.write_text("\ufeff" + "".join(lines), encoding="utf-8", newline="")
    return {"gallery": gallery, "probes": probes, "g_labels": g_labels, "p_labels": p_labels}


def _search(stores: dict[str, Path], out: Path, *extra: str | Path):
    return run(
        "search",
        "--gallery",
        stores["gallery"],
        "--probes",
        stores["probes"],
        "--gallery-labels",
        stores["g_labels"],
        "--probe-labels",
        stores["p_labels"],
        "--json",
        out,
        *extra,
    )


def _outputs(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    report = json.loads(path.read_text(encoding="utf-8"))
    with np.load(path.with_name(path.stem + ".scores.npz")) as arrays:
        return report, {name: arrays[name] for name in arrays.files}


def _numbers(report: dict) -> dict:
    """The report without what may differ between equal runs (time, execution settings)."""
    return {k: v for k, v in report.items() if k not in ("created", "execution")}


def test_report_and_arrays_equal_the_library(
    tmp_path: Path, stores: dict[str, Path], data: dict[str, np.ndarray]
) -> None:
    out = tmp_path / "search.json"
    result = _search(stores, out, "--top-k", "5", "--fpir", "0.05,0.2")
    assert result.exit_code == 0, result.output
    assert "1:N open-set identification" in result.stdout and "CMC rank 1" in result.stdout
    report, arrays = _outputs(out)
    expected = search(data["p"], data["g"], data["ps"], data["gs"], top_k=5)
    for name in ("mated", "mate_rank", "mate_score", "top_score", "top_k_index", "top_k_score"):
        np.testing.assert_array_equal(arrays[name], getattr(expected, name), name)
    np.testing.assert_array_equal(arrays["probe_subject"], [f"s{s}" for s in data["ps"]])
    np.testing.assert_array_equal(arrays["top_subject"], [f"s{s}" for s in expected.top_subject])
    np.testing.assert_array_equal(
        arrays["top_k_id"], np.array(_ids("g", N_GALLERY))[expected.top_k_index]
    )
    assert report["protocol"] == "search" and report["top_k"] == 5
    assert report["counts"] == {
        "n_gallery": N_GALLERY,
        "n_gallery_subjects": len(set(data["gs"])),
        "n_probes": N_PROBES,
        "n_mated": expected.n_mated,
        "n_nonmated": expected.n_nonmated,
    }
    curve = cmc(expected, ranks=tuple(report["cmc_curve"]["rank"]))
    assert report["cmc_curve"]["rate"] == [curve[r] for r in report["cmc_curve"]["rank"]]
    assert report["cmc"] == {str(r): v for r, v in cmc(expected).items()}
    points = tpir_at_fpir(expected, (0.05, 0.2))
    assert [p["tpir"] for p in report["tpir_at_fpir"]] == [p.tpir for p in points]
    assert [p["threshold"] for p in report["tpir_at_fpir"]] == [p.threshold for p in points]
    assert report["subjects"]["probes"]["source"] == "labels file"
    assert "tie_rule" in report["conventions"] and "screening" in report["conventions"]


def test_store_subjects_and_chunk_sizes_change_nothing(
    tmp_path: Path, stores: dict[str, Path], data: dict[str, np.ndarray]
) -> None:
    # Gallery subjects from meta/subject (integers), probe labels as integers too.
    p_labels = tmp_path / "probe_ints.txt"
    p_labels.write_text(
        "".join(f"{i} {s}\n" for i, s in zip(_ids("p", N_PROBES), data["ps"], strict=True))
    )
    outputs = []
    for chunk in ("1", "7", "400", "5000"):
        out = tmp_path / f"chunk{chunk}.json"
        result = run(
            "search",
            "--gallery",
            stores["gallery"],
            "--probes",
            stores["probes"],
            "--probe-labels",
            p_labels,
            "--json",
            out,
            "--chunk-size",
            chunk,
        )
        assert result.exit_code == 0, result.output
        outputs.append(_outputs(out))
    report, arrays = outputs[0]
    assert report["subjects"]["gallery"] == {"source": "store meta/subject"}
    np.testing.assert_array_equal(arrays["probe_subject"], data["ps"].astype(str))
    for other_report, other_arrays in outputs[1:]:
        assert _numbers(other_report) == _numbers(report)
        for name, values in arrays.items():
            np.testing.assert_array_equal(other_arrays[name], values, name)


def test_torchrun_two_gloo_processes_equal_one(tmp_path: Path, stores: dict[str, Path]) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun not installed")
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_gloo_available()):
        pytest.skip("torch.distributed with gloo is not available")
    single = tmp_path / "single.json"
    assert _search(stores, single, "--top-k", "4").exit_code == 0
    sharded = tmp_path / "sharded.json"
    command = [torchrun, "--standalone", "--nproc-per-node", "2", "-m", "facebench", "search"]
    for option in ("gallery", "probes"):
        command += [f"--{option}", str(stores[option])]
    command += ["--gallery-labels", str(stores["g_labels"]), "--probe-labels"]
    command += [str(stores["p_labels"]), "--json", str(sharded), "--top-k", "4"]
    command += ["--chunk-size", "33"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("CMC rank 5") == 1  # rank 0 alone prints and writes
    one, arrays_one = _outputs(single)
    two, arrays_two = _outputs(sharded)
    assert two["execution"]["world_size"] == 2 and one["execution"]["world_size"] == 1
    assert _numbers(one) == _numbers(two)
    for name, values in arrays_one.items():
        np.testing.assert_array_equal(arrays_two[name], values, name)


def test_closed_set_reports_cmc_and_warns(tmp_path: Path, stores: dict[str, Path]) -> None:
    labels = tmp_path / "closed.txt"
    labels.write_text("".join(f"{i} s{k % 30}\n" for k, i in enumerate(_ids("p", N_PROBES))))
    out = tmp_path / "closed.json"
    result = run(
        "search",
        "--gallery",
        stores["gallery"],
        "--probes",
        stores["probes"],
        "--gallery-labels",
        stores["g_labels"],
        "--probe-labels",
        labels,
        "--json",
        out,
    )
    assert result.exit_code == 0, result.output
    report, _ = _outputs(out)
    assert report["tpir_at_fpir"] == [] and report["counts"]["n_nonmated"] == 0
    assert "non-mated" in report["warnings"][0] and "warning:" in result.stdout


# -- user errors ------------------------------------------------------------------------------


def _with_probe_labels(stores: dict[str, Path], tmp_path: Path, text: str, *extra: str):
    labels = tmp_path / "bad.txt"
    labels.write_text(text, encoding="utf-8")
    return run(
        "search",
        "--gallery",
        stores["gallery"],
        "--probes",
        stores["probes"],
        "--probe-labels",
        labels,
        *extra,
    )


def _probe_lines(data: dict[str, np.ndarray]) -> list[str]:
    return [f"{i} {s}\n" for i, s in zip(_ids("p", N_PROBES), data["ps"], strict=True)]


def test_malformed_line(tmp_path: Path, stores: dict[str, Path], data) -> None:
    lines = _probe_lines(data)
    lines[2] = "lonely-field\n"
    result = _with_probe_labels(stores, tmp_path, "".join(lines))
    assert_user_error(result, "bad.txt:3:", "<id> <subject>", "lonely-field", only_line=True)


def test_unknown_id(tmp_path: Path, stores: dict[str, Path], data) -> None:
    lines = [*_probe_lines(data), "\n", "p/nobody.jpg 3\n"]
    result = _with_probe_labels(stores, tmp_path, "".join(lines))
    assert_user_error(result, f"bad.txt:{N_PROBES + 2}:", "'p/nobody.jpg'", "probes.h5")


def test_duplicate_id(tmp_path: Path, stores: dict[str, Path], data) -> None:
    lines = _probe_lines(data)
    lines.insert(10, lines[4])
    result = _with_probe_labels(stores, tmp_path, "".join(lines))
    assert_user_error(result, "bad.txt:11:", "also labelled on line 5", repr(_ids("p", 5)[4]))


def test_unlabelled_items(tmp_path: Path, stores: dict[str, Path], data) -> None:
    lines = _probe_lines(data)
    del lines[7]
    result = _with_probe_labels(stores, tmp_path, "".join(lines))
    assert_user_error(result, "bad.txt", "1 of 60 have none", repr(_ids("p", 8)[7]))


def test_store_without_subjects(stores: dict[str, Path]) -> None:
    result = run("search", "--gallery", stores["gallery"], "--probes", stores["probes"])
    assert_user_error(result, "probes.h5", "no subjects", "--probe-labels", only_line=True)


def test_same_store_twice(stores: dict[str, Path]) -> None:
    gallery = stores["gallery"]
    result = run("search", "--gallery", gallery, "--probes", gallery)
    assert_user_error(result, "two different stores", "leave-one-out")


def test_shared_ids(tmp_path: Path, stores: dict[str, Path], data) -> None:
    probes = tmp_path / "overlap.h5"
    ids = _ids("p", N_PROBES)
    ids[3] = _ids("g", N_GALLERY)[9]
    create_store(probes, ids, data["p"], data["pn"], model="m", metadata={"subject": data["ps"]})
    result = run("search", "--gallery", stores["gallery"], "--probes", probes)
    assert_user_error(result, "1 are also in", repr(ids[3]))


def test_no_mated_probe(tmp_path: Path, stores: dict[str, Path]) -> None:
    text = "".join(f"{i} stranger{k}\n" for k, i in enumerate(_ids("p", N_PROBES)))
    result = _with_probe_labels(stores, tmp_path, text)
    assert_user_error(result, "at least one probe whose subject has gallery items")


def test_existing_output_is_kept(tmp_path: Path, stores: dict[str, Path]) -> None:
    out = tmp_path / "kept.json"
    out.write_text("{}")
    assert_user_error(_search(stores, out), "kept.json", "--overwrite", only_line=True)
    assert out.read_text() == "{}"
    assert _search(stores, out, "--overwrite").exit_code == 0
    assert json.loads(out.read_text())["protocol"] == "search"


def test_missing_files(tmp_path: Path, stores: dict[str, Path]) -> None:
    result = run("search", "--gallery", tmp_path / "none.h5", "--probes", stores["probes"])
    assert_user_error(result, "none.h5", "no such feature store", "--gallery")
    result = run(
        "search",
        "--gallery",
        stores["gallery"],
        "--probes",
        stores["probes"],
        "--probe-labels",
        tmp_path / "none.txt",
    )
    assert_user_error(result, "none.txt", "no such labels file")


def test_dimension_mismatch(tmp_path: Path, stores: dict[str, Path]) -> None:
    probes = tmp_path / "narrow.h5"
    features, norms = normalize_rows(np.random.default_rng(0).standard_normal((3, DIM - 1)))
    create_store(probes, ["x/1.jpg", "x/2.jpg", "x/3.jpg"], features, norms, model="m")
    result = run("search", "--gallery", stores["gallery"], "--probes", probes)
    assert_user_error(result, "narrow.h5", f"dimension {DIM}", f"got {DIM - 1}")


def test_bad_options(stores: dict[str, Path]) -> None:
    base = ("search", "--gallery", stores["gallery"], "--probes", stores["probes"])
    assert_user_error(run(*base, "--top-k", "0"), "--top-k")
    assert_user_error(run(*base, "--fpir", "0.1,2"), "FPIR")
    assert_user_error(run(*base, "--device", "tpu"), "--device")


def test_torch_products_change_nothing(data: dict[str, np.ndarray]) -> None:
    """The --device cuda path's products (torch, float64), run here on the CPU."""
    from facebench.search import torch_scorer

    args = (data["p"], data["g"], data["ps"], data["gs"])
    numpy_result = search(*args, top_k=3, gallery_chunk=64)
    torch_result = search(*args, top_k=3, gallery_chunk=64, scorer=torch_scorer("cpu"))
    for name in ("mate_rank", "mate_score", "top_score", "top_subject", "top_k_index"):
        np.testing.assert_array_equal(getattr(torch_result, name), getattr(numpy_result, name))


def test_cuda_without_a_gpu(stores: dict[str, Path]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    base = ("search", "--gallery", stores["gallery"], "--probes", stores["probes"])
    assert_user_error(run(*base, "--device", "cuda"), "no CUDA device", only_line=True)
