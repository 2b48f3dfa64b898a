"""The CUDA paths on a GPU, each against the CPU: the 1:1 products (``verify --device cuda``)
within the float32 bound, so that TAR at every FAR is the float64 one; ``verify --device
cuda`` end to end; the search products (``search --device cuda``) and the whole search in
one process and, with two or more GPUs, sharded under torchrun with nccl; ``extract
--device cuda``.

Skipped where torch sees no CUDA device: CI has none. A session lent a GPU runs this
module and ``python -m benchmarks.gpu_check`` (the same comparisons at IJB-C and MegaFace
sizes) as one prepared command: docs/gpu.md.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cli_helpers import run
from ijbc_fixtures import write_ijbc, write_subject_store

from facebench.store import create_store, normalize_rows

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

ROOT = Path(__file__).resolve().parents[1]
FARS = "1e-4,1e-3,1e-2,1e-1"


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    rows = rng.standard_normal((n, d))
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.mark.parametrize("d", [64, 512])
def test_float32_products_on_the_gpu_lie_within_the_bound(d: int) -> None:
    """TF32 (10 mantissa bits) would break the bound by three orders of magnitude: the
    products must run in full float32 whatever the process's matmul settings."""
    from facebench.template_scores import float32_bound, numpy_products, torch_products

    rng = np.random.default_rng(d)
    left, right = _unit(rng, 700, d), _unit(rng, 900, d)
    exact = left @ right.T
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True  # a user's process may have turned it on
    try:
        on_gpu = torch_products("cuda")(right.T.astype(np.float32))(
            left.astype(np.float32), np.empty((700, 900), np.float32)
        )
        assert torch.backends.cuda.matmul.allow_tf32 is True  # the user's setting restored
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before
    on_cpu = numpy_products(right.T.astype(np.float32))(
        left.astype(np.float32), np.empty((700, 900), np.float32)
    )
    bound = float32_bound(d, 1.0)
    assert np.abs(on_gpu.astype(np.float64) - exact).max() <= bound
    assert np.abs(on_cpu.astype(np.float64) - exact).max() <= bound


@pytest.fixture(scope="module")
def ijbc_world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An IJB-C-format folder with 4,500 pairs and a 512-d store whose genuine pairs score
    higher than most impostors (subject directions plus noise)."""
    root = tmp_path_factory.mktemp("gpu-ijbc") / "IJB-C"
    record = write_ijbc(
        root,
        n_subjects=40,
        templates_per_subject=4,
        images_per_template=3,
        impostors_per_probe=40,
        seed=3,
    )
    store = write_subject_store(record, root.parent / "s.h5", dim=512, weight=0.15, seed=4)
    return {"root": root, "store": store}


def _verify(world: dict[str, Path], out: Path, *extra: str) -> tuple[dict[str, Any], Any]:
    result = run(
        "verify", "--protocol", "ijbc", "--protocol-dir", world["root"],
        "--features", world["store"], "--far", FARS, "--json", out, *extra,
    )  # fmt: skip
    assert result.exit_code == 0, (result.output, result.exception)
    report = json.loads(out.read_text(encoding="utf-8"))
    with np.load(out.with_name(out.stem + ".scores.npz")) as arrays:
        return report, {name: arrays[name] for name in arrays.files}


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_verify_on_cuda_gives_the_cpu_report(
    ijbc_world: dict[str, Path], tmp_path: Path, precision: str
) -> None:
    cpu, cpu_arrays = _verify(
        ijbc_world, tmp_path / "cpu.json", "--score-precision", precision, "--device", "cpu"
    )
    gpu, gpu_arrays = _verify(
        ijbc_world, tmp_path / "gpu.json", "--score-precision", precision, "--device", "cuda"
    )
    (c,), (g,) = cpu["splits"], gpu["splits"]
    assert g["score_precision"]["precision"] == precision
    # TAR, achieved FAR, impostor count: the same at every FAR; the threshold (a float64
    # score) too in float32, where it is a CPU re-score; in float64 the GPU's products sum
    # in another order
    for on_gpu, on_cpu in zip(g["tar_at_far"], c["tar_at_far"], strict=True):
        gpu_threshold, cpu_threshold = on_gpu.pop("threshold"), on_cpu.pop("threshold")
        assert on_gpu == on_cpu
        if precision == "float32" or cpu_threshold is None:
            assert gpu_threshold == cpu_threshold
        else:
            assert gpu_threshold == pytest.approx(cpu_threshold, abs=1e-12)
    assert [p["n_impostors_at_or_above"] for p in c["tar_at_far"]][-1] > 0  # not vacuous
    assert g["identification"] == c["identification"]  # 1:N runs on the CPU either way
    for name in ("split", "left", "right", "is_same"):
        np.testing.assert_array_equal(gpu_arrays[name], cpu_arrays[name], name)
    diff = np.abs(gpu_arrays["score"] - cpu_arrays["score"])
    if precision == "float32":
        # each side within one bound of the float64 score; genuine pairs re-scored on the CPU
        assert diff.max() <= 2 * c["score_precision"]["error_bound"]
        assert diff[cpu_arrays["is_same"]].max() == 0.0
    else:
        assert diff.max() <= 1e-12  # float64 products summed in another order
    assert g["auc"] == pytest.approx(c["auc"], abs=1e-6)


@pytest.fixture(scope="module")
def search_stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 3,000-item gallery and 200 probes, 128-d, subjects in the stores' metadata."""
    folder = tmp_path_factory.mktemp("gpu-search")
    rng = np.random.default_rng(9)
    centres = rng.standard_normal((120, 128))
    gs, ps = rng.integers(0, 100, 3000), rng.integers(0, 120, 200)
    stores = {}
    for name, subjects in (("gallery", gs), ("probes", ps)):
        noise = 1.1 * rng.standard_normal((subjects.size, 128))
        unit, norms = normalize_rows(centres[subjects] + noise)
        ids = [f"{name}/{i:05d}.jpg" for i in range(subjects.size)]
        path = folder / f"{name}.h5"
        create_store(path, ids, unit, norms, model="m", metadata={"subject": subjects})
        stores[name] = path
    return stores


def _outputs(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    report = json.loads(path.read_text(encoding="utf-8"))
    numbers = {k: v for k, v in report.items() if k not in ("created", "execution")}
    with np.load(path.with_name(path.stem + ".scores.npz")) as arrays:
        return numbers, {name: arrays[name] for name in arrays.files}


def _search_args(stores: dict[str, Path], out: Path) -> list[str]:
    return [
        "search", "--gallery", str(stores["gallery"]), "--probes", str(stores["probes"]),
        "--json", str(out), "--top-k", "5", "--chunk-size", "700",
    ]  # fmt: skip


def test_search_products_on_cuda_change_nothing(search_stores: dict[str, Path]) -> None:
    from facebench.metrics.identification import search
    from facebench.search import torch_scorer
    from facebench.store import FeatureStore

    loaded = {}
    for name in ("probes", "gallery"):
        with FeatureStore.open(search_stores[name]) as store:
            loaded[name] = (store.read_all()[0], store.read_metadata("subject"))
    (p, ps), (g, gs) = loaded["probes"], loaded["gallery"]
    args = (p, g, ps, gs)
    plain = search(*args, top_k=5, gallery_chunk=700)
    on_gpu = search(*args, top_k=5, gallery_chunk=700, scorer=torch_scorer("cuda"))
    for name in ("mate_rank", "mate_score", "top_score", "top_subject", "top_k_index"):
        np.testing.assert_array_equal(getattr(on_gpu, name), getattr(plain, name), name)


def test_search_on_cuda_gives_the_cpu_result(search_stores: dict[str, Path], tmp_path: Path):
    cpu, gpu = tmp_path / "cpu.json", tmp_path / "gpu.json"
    assert run(*_search_args(search_stores, cpu), "--device", "cpu").exit_code == 0
    result = run(*_search_args(search_stores, gpu), "--device", "cuda")
    assert result.exit_code == 0, (result.output, result.exception)
    (one, arrays_one), (two, arrays_two) = _outputs(cpu), _outputs(gpu)
    assert two == one
    for name, values in arrays_one.items():
        np.testing.assert_array_equal(arrays_two[name], values, name)


def test_torchrun_nccl_shards_give_the_single_result(
    search_stores: dict[str, Path], tmp_path: Path
) -> None:
    """One rank per GPU (nccl refuses two ranks on one device): needs two GPUs."""
    n_gpus = torch.cuda.device_count()
    if n_gpus < 2:
        pytest.skip(f"nccl sharding needs two GPUs; torch sees {n_gpus}")
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun not installed")
    single, sharded = tmp_path / "single.json", tmp_path / "sharded.json"
    assert run(*_search_args(search_stores, single), "--device", "cpu").exit_code == 0
    command = [torchrun, "--standalone", "--nproc-per-node", str(min(n_gpus, 4)), "-m"]
    command += ["facebench", *_search_args(search_stores, sharded), "--device", "cuda"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (one, arrays_one), (many, arrays_many) = _outputs(single), _outputs(sharded)
    assert json.loads(sharded.read_text(encoding="utf-8"))["execution"]["world_size"] > 1
    assert many == one
    for name, values in arrays_one.items():
        np.testing.assert_array_equal(arrays_many[name], values, name)


@pytest.mark.parametrize("precision", ["fp32", "tf32"])
def test_extract_on_cuda_matches_the_cpu(tmp_path: Path, precision: str) -> None:
    """The same images through the same weights: the same ids, and features equal up to
    float32 summation order. ``--precision fp32`` is IEEE float32 on the GPU too: cuDNN's
    default TF32 convolutions would move the unit features by about 1e-3, as ``tf32``
    (asked for, and recorded in the store) may."""
    import h5py
    from test_extract import make_images, read_store

    from facebench.models.registry import ARCHITECTURES

    images = tmp_path / "images"
    make_images(images, n=24)
    torch.manual_seed(0)
    weights = tmp_path / "small.pth"
    torch.save(ARCHITECTURES["small-cnn"].build().eval().state_dict(), weights)
    stores = {}
    for device, asked in (("cpu", "fp32"), ("cuda", precision)):
        out = tmp_path / f"{device}.h5"
        result = run(
            "extract", images, "--arch", "small-cnn", "--weights", weights, "-o", out,
            "--workers", "0", "--batch-size", "8", "--flip", "--no-progress",
            "--device", device, "--precision", asked,
        )  # fmt: skip
        assert result.exit_code == 0, (result.output, result.exception)
        stores[device] = read_store(out)
        with h5py.File(out, "r") as handle:
            assert json.loads(handle.attrs["preprocessing"])["precision"] == asked
    cpu, gpu = stores["cpu"], stores["cuda"]
    np.testing.assert_array_equal(gpu["ids"], cpu["ids"])
    limit = 1e-4 if precision == "fp32" else 3e-2
    for name in ("features", "features_flip"):
        moved = np.linalg.norm(gpu[name].astype(np.float64) - cpu[name], axis=1)
        assert moved.max() <= limit, (name, moved.max())
    np.testing.assert_allclose(gpu["norms"], cpu["norms"], rtol=limit)


def test_an_onnx_model_on_cuda_matches_the_cpu(tmp_path: Path) -> None:
    """onnxruntime's CUDA provider, opened with ``use_tf32`` 0: IEEE float32 as on the CPU."""
    onnxruntime = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has no CUDA provider (onnxruntime-gpu)")
    from test_models_onnx import export, trained_looking_cnn

    from facebench.models import load_model

    path = export(trained_looking_cnn(), tmp_path / "small.onnx", True)
    batch = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    on_cpu = load_model(model=path)(batch).double()
    on_gpu = load_model(model=path, device="cuda")(batch).double()
    scale = on_cpu.norm(dim=1, keepdim=True)
    assert ((on_gpu - on_cpu) / scale).norm(dim=1).max() <= 1e-4


def test_training_on_cuda_runs_and_its_checkpoint_loads_on_the_cpu(tmp_path: Path) -> None:
    """One epoch of L2-softmax with a learned alpha on the GPU: a finite loss, alpha moved,
    and a checkpoint whose weights are CPU tensors (it loads where no GPU is)."""
    out = tmp_path / "gpu.pt"
    result = run(
        "train", "digits", "--arch", "small-cnn", "--head", "l2softmax", "--alpha",
        "learned", "--epochs", "2", "--max-per-class", "20", "--batch-size", "32",
        "--seed", "7", "--device", "cuda", "--holdout", "5,6,7,8,9", "--no-progress",
        "-o", out,
    )  # fmt: skip
    assert result.exit_code == 0, (result.output, result.exception)
    checkpoint = torch.load(out, weights_only=True)  # no map_location: CPU tensors saved
    losses = [entry["loss"] for entry in checkpoint["history"]]
    assert len(losses) == 2 and all(np.isfinite(losses))
    state = checkpoint["state_dict"]
    assert state and all(value.device.type == "cpu" for value in state.values())
