"""``facebench export``: a checkpoint saved by the training code -> TorchScript and ONNX files
whose features equal the checkpoint's (1e-5), loaded by facebench's loaders, by torch.jit and
by onnxruntime directly, and usable by ``facebench extract --model``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import assert_user_error, run
from PIL import Image
from torch import nn

from facebench.export import EXPORT_TOLERANCE, ExportError, export_checkpoint
from facebench.extract.preprocess import PRESETS
from facebench.models import load_model
from facebench.models.registry import ARCHITECTURES
from facebench.store import FeatureStore
from facebench.train.head import HeadConfig, build_head
from facebench.train.loop import TrainOptions, TrainResult, save_checkpoint

onnxruntime = pytest.importorskip("onnxruntime")

ARCH = "digits-cnn"
TOL = 1e-5


def trained_looking(arch: str) -> nn.Module:
    """Random weights with non-trivial BatchNorm statistics (a fresh BN is the identity)."""
    torch.manual_seed(3)
    module = ARCHITECTURES[arch].build()
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, nn.BatchNorm2d):
                assert layer.running_mean is not None and layer.running_var is not None
                layer.running_mean.uniform_(-0.2, 0.2)
                layer.running_var.uniform_(0.5, 1.5)
    return module.eval()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, nn.Module]:
    """A checkpoint in the format ``facebench train`` writes (backbone + head.* keys)."""
    backbone = trained_looking(ARCH)
    config = HeadConfig("l2softmax", alpha=16.0, n_classes=5, feature_dim=32)
    result = TrainResult(
        arch=ARCH,
        head_config=config,
        preprocessing=PRESETS[ARCHITECTURES[ARCH].preset],
        backbone=backbone,
        head=build_head(config).eval(),
        classes=tuple("01234"),
        holdout=(),
        options=TrainOptions(),
        source="synthetic",
    )
    path = save_checkpoint(tmp_path_factory.mktemp("ckpt") / "m.pt", result)
    return path, backbone


@pytest.fixture(scope="module")
def exported(
    tmp_path_factory: pytest.TempPathFactory, checkpoint: tuple[Path, nn.Module]
) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("export")
    onnx_path, ts_path = folder / "m.onnx", folder / "m.ts"
    result = run(
        "export", checkpoint[0], "--arch", ARCH, "--onnx", onnx_path, "--torchscript", ts_path
    )
    assert result.exit_code == 0, result.output
    assert f"onnx: {onnx_path}" in result.stdout and f"torchscript: {ts_path}" in result.stdout
    assert "--preset small16" in result.stderr
    return {"onnx": onnx_path, "torchscript": ts_path}


def random_batch(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
@pytest.mark.parametrize("n_images", [1, 5])
def test_exports_reproduce_the_checkpoint_features(
    checkpoint: tuple[Path, nn.Module], exported: dict[str, Path], fmt: str, n_images: int
) -> None:
    batch = random_batch(n_images, seed=10 + n_images)
    with torch.no_grad():
        expected = checkpoint[1](batch)
    model = load_model(model=exported[fmt])
    assert model.kind == fmt
    got = model(batch)
    assert got.shape == (n_images, 32)
    assert float((got - expected).abs().max()) <= TOL
    also = load_model(arch=ARCH, weights=checkpoint[0], log=lambda _: None)(batch)
    assert float((also - expected).abs().max()) == 0.0  # the reference is the checkpoint


def test_files_load_in_their_own_runtimes(
    checkpoint: tuple[Path, nn.Module], exported: dict[str, Path]
) -> None:
    batch = random_batch(4, seed=99)
    with torch.no_grad():
        expected = checkpoint[1](batch).numpy()
    scripted = torch.jit.load(str(exported["torchscript"]))
    with torch.no_grad():
        np.testing.assert_allclose(scripted(batch).numpy(), expected, atol=TOL, rtol=0)
    session = onnxruntime.InferenceSession(
        str(exported["onnx"]), providers=["CPUExecutionProvider"]
    )
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, out.name) == ("input", "features")
    assert isinstance(inp.shape[0], str) and inp.shape[1:] == [3, 16, 16]  # dynamic batch
    (features,) = session.run(None, {"input": batch.numpy()})
    np.testing.assert_allclose(features, expected, atol=TOL, rtol=0)


def test_extract_with_the_exports_equals_extract_with_the_checkpoint(
    tmp_path: Path, checkpoint: tuple[Path, nn.Module], exported: dict[str, Path]
) -> None:
    images = tmp_path / "images" / "person"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(4):
        pixels = rng.integers(0, 256, size=(20, 18, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"{i}.png")
    common = ["--workers", "0", "--no-progress", "--device", "cpu"]
    stores = {}
    sources: tuple[tuple[str, list[str | Path]], ...] = (
        ("checkpoint", ["--arch", ARCH, "--weights", checkpoint[0]]),
        ("onnx", ["--model", exported["onnx"], "--preset", "small16"]),
        ("torchscript", ["--model", exported["torchscript"], "--preset", "small16"]),
    )
    for name, source in sources:
        stores[name] = tmp_path / f"{name}.h5"
        result = run("extract", tmp_path / "images", *source, "-o", stores[name], *common)
        assert result.exit_code == 0, result.output
    with FeatureStore.open(stores["checkpoint"]) as store:
        reference, reference_norms = store.read_all()
    for name in ("onnx", "torchscript"):
        with FeatureStore.open(stores[name]) as store:
            features, norms = store.read_all()
        np.testing.assert_allclose(features, reference, atol=TOL, rtol=0)
        np.testing.assert_allclose(norms, reference_norms, rtol=TOL)


def test_library_reports_the_check_and_keeps_outputs(
    tmp_path: Path, checkpoint: tuple[Path, nn.Module]
) -> None:
    target = tmp_path / "m.ts"
    (item,) = export_checkpoint(checkpoint[0], ARCH, torchscript=target, log=lambda _: None)
    assert item.format == "torchscript" and item.path == target
    assert item.input_size == (16, 16) and item.feature_dim == 32
    assert item.max_abs_diff is not None and item.max_abs_diff <= EXPORT_TOLERANCE
    before = target.read_bytes()
    result = run("export", checkpoint[0], "--arch", ARCH, "--torchscript", target)
    assert_user_error(result, "m.ts", "--overwrite")
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.ts"]  # no temporary left


def test_input_size_is_traced_and_checked(
    tmp_path: Path, checkpoint: tuple[Path, nn.Module]
) -> None:
    target = tmp_path / "m.onnx"
    result = run(
        "export", checkpoint[0], "--arch", ARCH, "--onnx", target, "--input-size", "24", "20"
    )
    assert result.exit_code == 0, result.output
    model = load_model(model=target)
    assert model.input_size == (24, 20)
    batch = torch.randn(2, 3, 24, 20, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = checkpoint[1](batch)
    assert float((model(batch) - expected).abs().max()) <= TOL


@pytest.mark.parametrize(
    ("args", "phrases"),
    [
        ([], ["--onnx", "--torchscript", "neither"]),
        (["--onnx", "same.x", "--torchscript", "same.x"], ["different files"]),
        (["--onnx", "m.onnx", "--input-size", "2", "2"], ["input size", "--input-size"]),
    ],
)
def test_bad_requests_are_one_line_errors(
    tmp_path: Path, checkpoint: tuple[Path, nn.Module], args: list[str], phrases: list[str]
) -> None:
    full = [str(tmp_path / a) if a.endswith((".x", ".onnx")) else a for a in args]
    result = run("export", checkpoint[0], "--arch", ARCH, *full)
    # A bad input size is found after loading, which notes the checkpoint's unused head keys.
    assert_user_error(result, *phrases, only_line="--input-size" not in args)
    assert not list(tmp_path.iterdir())


def test_a_checkpoint_of_another_architecture_is_refused(
    tmp_path: Path, checkpoint: tuple[Path, nn.Module]
) -> None:
    result = run("export", checkpoint[0], "--arch", "small-cnn", "--onnx", tmp_path / "m.onnx")
    assert_user_error(result, "digits-cnn", "--arch")
    assert not (tmp_path / "m.onnx").exists()


def test_an_export_that_differs_is_not_written(
    tmp_path: Path, checkpoint: tuple[Path, nn.Module], monkeypatch: pytest.MonkeyPatch
) -> None:
    import facebench.export as export

    monkeypatch.setattr(export, "EXPORT_TOLERANCE", -1.0)  # no export can pass
    with pytest.raises(ExportError, match="nothing was written"):
        export_checkpoint(checkpoint[0], ARCH, onnx=tmp_path / "m.onnx", log=lambda _: None)
    assert not list(tmp_path.iterdir())
