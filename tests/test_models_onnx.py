"""ONNX models through facebench.models.load_model (skipped where onnxruntime is absent)."""

from __future__ import annotations

import hashlib
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from facebench.models import ModelError, load_model
from facebench.models.small_cnn import SmallCNN

onnxruntime = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

TOL = 1e-5


def trained_looking_cnn() -> nn.Module:
    torch.manual_seed(7)
    module = SmallCNN()
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, nn.BatchNorm2d):
                layer.running_mean.uniform_(-0.2, 0.2)
                layer.running_var.uniform_(0.5, 1.5)
    return module.eval()


def export(module: nn.Module, path: Path, dynamic_batch: bool) -> Path:
    """Export with the TorchScript-based exporter: offline, fast, no onnxscript needed."""
    axes = {"input": {0: "batch"}, "features": {0: "batch"}} if dynamic_batch else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(
            module,
            (torch.zeros(1, 3, 32, 32),),
            str(path),
            input_names=["input"],
            output_names=["features"],
            dynamic_axes=axes,
            dynamo=False,
        )
    return path


@pytest.fixture(scope="module")
def cnn() -> nn.Module:
    return trained_looking_cnn()


@pytest.mark.parametrize("dynamic_batch", [True, False])
def test_onnx_features_equal_the_torch_forward(
    tmp_path: Path, cnn: nn.Module, dynamic_batch: bool
) -> None:
    path = export(cnn, tmp_path / "small.onnx", dynamic_batch)
    model = load_model(model=path)
    batch = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = cnn(batch)
    got = model(batch)
    assert got.dtype == torch.float32 and got.device.type == "cpu"
    torch.testing.assert_close(got, expected, rtol=TOL, atol=TOL)
    assert (model.kind, model.input_size, model.feature_dim, model.preset) == (
        "onnx",
        (32, 32),
        64,
        None,
    )
    assert model.name == "onnx:small.onnx"
    assert model.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_onnx_refuses_a_wrong_input_size(tmp_path: Path, cnn: nn.Module) -> None:
    model = load_model(model=export(cnn, tmp_path / "small.onnx", True))
    with pytest.raises(ModelError, match="expected inputs of 32x32"):
        model(torch.zeros(1, 3, 28, 28))


@pytest.mark.parametrize("content", [b"", b"not a protobuf \x00\x01\x02"], ids=repr)
def test_a_corrupt_onnx_file_is_a_model_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelError, match="onnxruntime cannot load it"):
        load_model(model=path)


def test_onnx_on_cuda_needs_onnxruntime_gpu(tmp_path: Path, cnn: nn.Module) -> None:
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has a CUDA provider")
    path = export(cnn, tmp_path / "small.onnx", True)
    with pytest.raises(ModelError, match="onnxruntime-gpu"):
        load_model(model=path, device="cuda")
    model = load_model(model=path)
    with pytest.raises(ModelError, match="onnxruntime-gpu"):
        model.to("cuda")
    assert model.device == "cpu"


def with_external_data(source: Path, target: Path) -> Path:
    """Re-save an ONNX model with every weight in ``<target>.data``, as exporters do."""
    proto = onnx.load(str(source))
    onnx.save_model(
        proto,
        str(target),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=f"{target.name}.data",
        size_threshold=0,
    )
    return target


def test_the_sha256_covers_external_weights(tmp_path: Path, cnn: nn.Module) -> None:
    other = trained_looking_cnn()
    with torch.no_grad():
        other.fc.bias.add_(1.0)  # same graph, other weights
    paths = []
    for name, module in (("a", cnn), ("b", other)):
        folder = tmp_path / name
        folder.mkdir()
        exported = export(module, folder / "plain.onnx", dynamic_batch=True)
        paths.append(with_external_data(exported, folder / "model.onnx"))
    assert paths[0].read_bytes() == paths[1].read_bytes()  # the graph files are identical
    first, second = (load_model(model=path) for path in paths)
    assert first.sha256 != second.sha256
    data = paths[0].parent / "model.onnx.data"
    manifest = (
        f"{hashlib.sha256(paths[0].read_bytes()).hexdigest()}  model.onnx\n"
        f"{hashlib.sha256(data.read_bytes()).hexdigest()}  model.onnx.data\n"
    )
    assert first.sha256 == hashlib.sha256(manifest.encode()).hexdigest()
    batch = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = cnn(batch)
    torch.testing.assert_close(first(batch), expected, rtol=TOL, atol=TOL)


def test_without_the_onnx_package_the_digest_covers_the_graph_and_says_so(
    tmp_path: Path, cnn: nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = export(cnn, tmp_path / "small.onnx", dynamic_batch=True)
    monkeypatch.setitem(sys.modules, "onnx", None)  # import raises ImportError
    lines: list[str] = []
    model = load_model(model=path, log=lines.append)
    assert model.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert "covers the .onnx file only" in "\n".join(lines)


@pytest.mark.parametrize("tf32", [False, True])
def test_onnx_on_cuda_asks_for_ieee_float32_unless_tf32(
    tmp_path: Path, cnn: nn.Module, monkeypatch: pytest.MonkeyPatch, tf32: bool
) -> None:
    """onnxruntime's CUDA provider computes float32 in TF32 by default: the session is
    opened with ``use_tf32`` 0 (``extract --precision fp32``) or 1 (``tf32``). The provider
    options are checked as given to onnxruntime (no GPU needed)."""
    model = load_model(model=export(cnn, tmp_path / "small.onnx", True))
    opened: list[Any] = []

    class Session:
        def __init__(self, path: str, providers: list[Any]) -> None:
            opened.append(providers)

        def get_providers(self) -> list[str]:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]

    monkeypatch.setattr(onnxruntime, "InferenceSession", Session)
    monkeypatch.setattr(
        onnxruntime,
        "get_available_providers",
        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    assert model.to("cuda:1", tf32=tf32).device == "cuda:1"
    ((cuda, options), cpu) = opened[0]
    assert (cuda, cpu) == ("CUDAExecutionProvider", "CPUExecutionProvider")
    assert options == {"device_id": 1, "use_tf32": int(tf32)}


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_autocast_precisions_are_refused_for_onnx_models(
    tmp_path: Path, cnn: nn.Module, precision: str
) -> None:
    from cli_helpers import assert_user_error, run
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (32, 32), (10, 20, 30)).save(images / "a.png")
    path = export(cnn, tmp_path / "small.onnx", True)
    out = tmp_path / "out.h5"
    result = run(
        "extract", images, "--model", path, "--preset", "small32", "-o", out,
        "--workers", "0", "--device", "cpu", "--precision", precision, "--no-progress",
    )  # fmt: skip
    assert_user_error(result, f"--precision {precision} changes nothing for an ONNX model")
    assert not out.exists() and not (tmp_path / "out.h5.parts").exists()
