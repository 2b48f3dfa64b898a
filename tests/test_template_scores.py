"""Template pair scores in float32 with float64 re-scores (facebench.template_scores): the
error bound holds, the re-score is its definition, and a whole IJB-C-shaped evaluation in
float32 gives the float64 TAR at every FAR, at any memory budget and from the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from ijbc_fixtures import write_ijbc, write_subject_store

import facebench.evaluate_splits as evaluate_splits
import facebench.pool_store as pool_store
import facebench.template_scores as template_scores
from facebench.cli import cli
from facebench.columns import Patched
from facebench.errors import FacebenchError
from facebench.evaluate_splits import SplitOptions, evaluate_templates
from facebench.metrics import count_at_thresholds, tar_at_far
from facebench.pooling import pool_templates
from facebench.store import FeatureStore
from facebench.template_scores import (
    FLOAT32_MIN_PAIRS,
    chunked_scores,
    float32_bound,
    rescore,
    resolve_precision,
)
from protocols.ijbc import load_ijbc

FARS = (1e-3, 1e-2, 0.05, 0.1, 0.3, 1.0)


def unit_rows(rng: np.random.Generator, n: int, d: int, kind: str) -> np.ndarray:
    if kind == "gaussian":
        x = rng.standard_normal((n, d))
    elif kind == "spiky":  # one large coordinate: products of very different sizes
        x = rng.standard_normal((n, d)) * 1e-3
        x[np.arange(n), rng.integers(0, d, n)] = 1.0
    else:  # "aligned": all rows near one direction, scores near 1
        x = rng.standard_normal((n, d)) * 1e-2 + 1.0
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("kind", ["gaussian", "spiky", "aligned"])
@pytest.mark.parametrize("d", [3, 64, 512])
def test_float32_products_lie_within_the_bound(kind: str, d: int) -> None:
    rng = np.random.default_rng(d)
    pooled = unit_rows(rng, 300, d, kind)
    left = rng.integers(0, 60, 20_000)
    right = rng.integers(60, 300, 20_000)
    approx = chunked_scores(pooled.astype(np.float32), left, right)
    exact = rescore(pooled, left, right)
    max_norm = float(np.sqrt(np.max(np.einsum("ij,ij->i", pooled, pooled))))
    bound = float32_bound(d, max_norm)
    error = np.abs(approx.astype(np.float64) - exact)
    assert error.max() <= bound
    assert error.max() > 0  # float32 really differs: the test measures something
    # the bound is about (D + 2) float32 roundoffs
    assert bound == pytest.approx((d + 2) * 2.0**-24, rel=0.01)


def test_rescore_is_the_sum_of_products_in_feature_order() -> None:
    rng = np.random.default_rng(0)
    pooled = unit_rows(rng, 50, 37, "gaussian")
    left, right = rng.integers(0, 50, 300), rng.integers(0, 50, 300)
    got = rescore(pooled, left, right)
    for i in range(left.size):
        a, b = pooled[left[i]].tolist(), pooled[right[i]].tolist()
        total = a[0] * b[0]
        for k in range(1, len(a)):
            total = total + a[k] * b[k]  # Python floats: one rounding per operation
        assert got[i] == total
        assert abs(total - math.fsum(x * y for x, y in zip(a, b, strict=True))) < 1e-15
    # the same number for the same rows, whatever the batch
    order = rng.permutation(left.size)
    np.testing.assert_array_equal(rescore(pooled, left[order], right[order]), got[order])


def test_resolve_precision() -> None:
    assert resolve_precision("auto", FLOAT32_MIN_PAIRS - 1, "exact") == "float64"
    assert resolve_precision("auto", FLOAT32_MIN_PAIRS, "exact") == "float32"
    assert resolve_precision("auto", FLOAT32_MIN_PAIRS, "nearest") == "float64"
    assert resolve_precision("float32", 10, "exact") == "float32"
    assert resolve_precision("float64", 10**9, "exact") == "float64"
    with pytest.raises(FacebenchError, match="exact TAR rule only"):
        resolve_precision("float32", 10, "nearest")
    with pytest.raises(FacebenchError, match="--score-precision in"):
        resolve_precision("half", 10, "exact")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("f32") / "IJB-C"
    record = write_ijbc(
        root,
        n_subjects=30,
        templates_per_subject=4,
        images_per_template=3,
        seed=5,
        impostors_per_probe=40,
    )
    store = write_subject_store(record, root.parent / "s.h5", dim=24, weight=0.3, seed=7)
    return {"root": root, "store": store}


def evaluate(world: dict[str, Any], precision: str, memory_mib: int | None = None) -> Any:
    protocol = load_ijbc(world["root"], detector_scores=False)
    return evaluate_templates(
        protocol,
        world["store"],
        SplitOptions(pooling="media", far_targets=FARS, score_precision=precision),
        memory_mib=memory_mib,
    )


def brute_force(world: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Every pair's float64 score from templates pooled here, and the labels."""
    protocol = load_ijbc(world["root"], detector_scores=False)
    (split,) = protocol.splits
    ver = split.verification
    templates = ver.templates
    with FeatureStore.open(world["store"]) as store:
        unit, norms = store.read_rows(store.index_of(list(templates.item_keys)))
    pooled = pool_templates(
        unit.astype(np.float64),
        norms.astype(np.float64),
        templates.item_template,
        templates.item_media,
        templates.n_templates,
        mode="media",
    )
    scores = np.einsum("ij,ij->i", pooled[ver.left], pooled[ver.right])
    return scores, ver.is_same


def test_float32_scoring_gives_the_float64_tar_at_every_far(world: dict[str, Any]) -> None:
    r64, d64 = evaluate(world, "float64")
    r32, d32 = evaluate(world, "float32")
    (e64,) = r64.splits
    (e32,) = r32.splits
    assert e64["score_precision"]["precision"] == "float64"
    info = e32["score_precision"]
    assert info["precision"] == "float32"
    assert info["n_rescored"] >= e32["n_genuine"]
    assert r32.conventions["score_precision"] == "float32"
    tars = [p["tar"] for p in e32["tar_at_far"]]
    assert 0 < tars[0] < tars[-2] < 1  # genuine pairs score higher, not perfectly
    truth, is_same = brute_force(world)
    expected = tar_at_far(count_at_thresholds(truth, is_same), FARS, "exact")
    for got, want, other in zip(e32["tar_at_far"], expected, e64["tar_at_far"], strict=True):
        assert got["tar"] == want.tar == other["tar"]
        assert got["n_impostors_at_or_above"] == want.n_impostors_at_or_above
        assert got["far_achieved"] == want.far_achieved
        # float64 scores computed three ways differ in the last place at most
        assert got["threshold"] == pytest.approx(want.threshold, abs=1e-12)
    # per pair: genuine pairs exact, the others within the bound
    score32 = np.asarray(d32["score"])  # a lazy column (facebench.columns.Patched)
    assert isinstance(d32["score"], Patched) and score32.dtype == np.float64
    np.testing.assert_allclose(score32[is_same], truth[is_same], rtol=0, atol=1e-12)
    assert np.abs(score32 - d64["score"]).max() <= info["error_bound"]
    assert abs(e32["auc"] - e64["auc"]) < 1e-6
    for key in ("split", "left", "right", "is_same"):
        np.testing.assert_array_equal(np.asarray(d32[key]), np.asarray(d64[key]))


def test_float32_reports_do_not_depend_on_the_memory_budget(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    generous, generous_data = evaluate(world, "float32", 4096)
    products: list[int] = []
    real_matmul = np.matmul
    monkeypatch.setattr(
        template_scores.np,
        "matmul",
        lambda a, b, **k: products.append(a.shape[0]) or real_matmul(a, b, **k),
    )
    monkeypatch.setattr(pool_store, "UNIT_ROWS", pool_store.UNIT_ROWS)
    monkeypatch.setattr(evaluate_splits, "_MIB", 64)  # 16 "MiB" = 1 KiB of working memory
    tiny, tiny_data = evaluate(world, "float32", 16)
    monkeypatch.undo()
    assert max(products) == 2 and len(products) > 4
    a, b = generous.to_dict(), tiny.to_dict()
    a.pop("created")
    b.pop("created")
    assert a == b
    for key in generous_data:
        np.testing.assert_array_equal(np.asarray(tiny_data[key]), np.asarray(generous_data[key]))


def run_verify(world: dict[str, Any], out: Path, *extra: str) -> Any:
    return CliRunner().invoke(
        cli,
        [
            "verify",
            "--protocol",
            "ijbc",
            "--protocol-dir",
            str(world["root"]),
            "--features",
            str(world["store"]),
            "--far",
            "1e-2,1e-1",
            "--json",
            str(out),
            *extra,
        ],
    )


def test_the_cli_option(world: dict[str, Any], tmp_path: Path) -> None:
    reports = {}
    for precision in ("float64", "float32", "auto"):
        out = tmp_path / f"{precision}.json"
        result = run_verify(world, out, "--score-precision", precision)
        assert result.exit_code == 0, result.output
        reports[precision] = json.loads(out.read_text(encoding="utf-8"))
    (auto,) = reports["auto"]["splits"]
    assert auto["score_precision"]["precision"] == "float64"  # a small protocol
    (f32,) = reports["float32"]["splits"]
    assert [p["tar"] for p in f32["tar_at_far"]] == [p["tar"] for p in auto["tar_at_far"]]
    result = run_verify(
        world, tmp_path / "n.json", "--score-precision", "float32", "--tar-rule", "nearest"
    )
    assert result.exit_code != 0
    assert "exact TAR rule only" in result.output
    assert not (tmp_path / "n.json").exists()


def test_torch_products_on_the_cpu_give_the_same_tar(world: dict[str, Any]) -> None:
    """The products behind ``--device cuda``, run by torch on the CPU: float32 scores within
    the bound of numpy's, and (the bands) exactly the same TAR at every FAR."""
    pytest.importorskip("torch")
    from facebench.template_scores import score_pairs, torch_products

    protocol = load_ijbc(world["root"], detector_scores=False)
    ver = protocol.splits[0].verification
    rng = np.random.default_rng(11)
    pooled = unit_rows(rng, ver.templates.n_templates, 24, "gaussian")
    for precision in ("float32", "float64"):
        ours = score_pairs(pooled, ver.left, ver.right, ver.is_same, FARS, precision=precision)
        via_torch = score_pairs(
            pooled,
            ver.left,
            ver.right,
            ver.is_same,
            FARS,
            precision=precision,
            products=torch_products("cpu"),
        )
        tolerance = 1e-12 if precision == "float64" else float(ours.bound or 0.0)
        assert np.abs(np.asarray(ours.scores) - np.asarray(via_torch.scores)).max() <= tolerance
        assert tar_at_far(ours.counts, FARS) == tar_at_far(via_torch.counts, FARS) or (
            precision == "float64"  # float64 products may differ in the last bits
            and [p.tar for p in tar_at_far(ours.counts, FARS)]
            == [p.tar for p in tar_at_far(via_torch.counts, FARS)]
        )


_PRECISION_CHECK = """
import sys, numpy as np, torch
from facebench.precision import Float32Mode
from facebench.template_scores import torch_products
b = torch.backends
m = b.cuda.matmul
scenario = sys.argv[1]
if scenario == "legacy-tf32":
    m.allow_tf32 = True
elif scenario == "generic-high":
    torch.set_float32_matmul_precision("high")
elif scenario == "new-tf32":
    m.fp32_precision = "tf32"
elif scenario == "mixed":  # the legacy getters raise in such a process
    torch.set_float32_matmul_precision("high")
    m.allow_tf32 = False
elif scenario == "cudnn-legacy":
    b.cudnn.allow_tf32 = False
elif scenario == "conv-new":
    b.cudnn.conv.fp32_precision = "tf32"
    b.mkldnn.conv.fp32_precision = "bf16"
def settings():
    out = []
    for read in (lambda: m.allow_tf32, lambda: m.fp32_precision,
                 torch.get_float32_matmul_precision, lambda: b.cudnn.allow_tf32,
                 lambda: b.cudnn.conv.fp32_precision, lambda: b.mkldnn.matmul.fp32_precision,
                 lambda: b.mkldnn.conv.fp32_precision):
        try:
            out.append(repr(read()))
        except RuntimeError:
            out.append("raises")
    return out
before = settings()
context = Float32Mode("cuda")
for _ in range(2):  # re-usable, and re-entrant
    with context:
        with context:
            assert m.fp32_precision == b.cudnn.conv.fp32_precision == "ieee"
        assert m.fp32_precision == b.cudnn.conv.fp32_precision == "ieee"
with Float32Mode("cpu"):
    assert b.mkldnn.matmul.fp32_precision == b.mkldnn.conv.fp32_precision == "ieee"
with Float32Mode("cuda", "tf32"):  # extract --precision tf32
    assert m.fp32_precision == b.cudnn.conv.fp32_precision == "tf32"
for device, mode in (("cpu", "tf32"), ("cuda", "bf16")):
    try:
        Float32Mode(device, mode)
    except ValueError:
        pass
    else:
        raise AssertionError((device, mode))
rows = np.arange(12, dtype=np.float32).reshape(3, 4)
out = torch_products("cpu")(rows.T.copy())(rows, np.empty((3, 3), np.float32))
assert np.array_equal(out, rows @ rows.T), out
assert settings() == before, (before, settings())
print("kept", before)
"""


@pytest.mark.parametrize(
    "scenario",
    ["untouched", "legacy-tf32", "generic-high", "new-tf32", "mixed", "cudnn-legacy", "conv-new"],
)
def test_ieee_float32_keeps_the_users_torch_settings(scenario: str) -> None:
    """Inside, float32 matmul and convolutions are IEEE on cuda (checked as torch's
    settings: no GPU needed) and on the CPU; after, every setting reads as before, whichever
    API the user's process used to set it (torch's getters raise in a process that mixed
    the legacy and new APIs: the products must work there too, and read none of them)."""
    torch = pytest.importorskip("torch")
    if not hasattr(torch.backends.cuda.matmul, "fp32_precision"):
        pytest.skip("torch < 2.9: only the legacy allow_tf32 flags")
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", _PRECISION_CHECK, scenario],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("kept")
    if scenario in ("new-tf32", "conv-new"):
        assert "'tf32'" in proc.stdout
    if scenario == "conv-new":
        assert "'bf16'" in proc.stdout


def test_device_cuda_without_a_gpu_is_refused(world: dict[str, Any], tmp_path: Path) -> None:
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    out = tmp_path / "c.json"
    result = run_verify(world, out, "--device", "cuda")
    assert result.exit_code != 0
    assert "--device cuda was asked for, but torch sees no CUDA device" in result.output
    assert not out.exists()


@pytest.mark.parametrize("block_bytes", [1 << 12, 1 << 16, 1 << 30])  # many, few, one block
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_scores_read_in_two_threads_equal_one_thread(
    block_bytes: int, dtype: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above ``_PARALLEL_MIN`` pairs the per-pair block numbers and the reads off the
    products run in two halves in two threads: the same scores, bit for bit, as one call,
    in every read-off path (one block, a pass per block, pairs sorted by block)."""
    rng = np.random.default_rng(block_bytes)
    pooled = unit_rows(rng, 400, 16, "gaussian").astype(dtype)
    n = 3 * template_scores._PARALLEL_MIN + 7
    left, right = rng.integers(0, 100, n), rng.integers(100, 400, n)
    threaded = chunked_scores(pooled, left, right, block_bytes=block_bytes)
    monkeypatch.setattr(template_scores, "_PARALLEL_MIN", 1 << 62)
    single = chunked_scores(pooled, left, right, block_bytes=block_bytes)
    np.testing.assert_array_equal(threaded, single)
    expected = np.einsum(
        "ij,ij->i", pooled[left].astype(np.float64), pooled[right].astype(np.float64)
    )
    tolerance = 1e-12 if dtype == np.float64 else float32_bound(16, 1.0 + 1e-6)
    assert np.abs(threaded - expected).max() <= tolerance
