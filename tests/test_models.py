"""Tests of facebench.models: the architectures, the registry and the safe loaders.

The IResNet layout is checked against a second, independent description written in this file
from insightface's ``recognition/arcface_torch/backbones/iresnet.py`` (every key and shape in
order), plus literal entries and the key count worked out by hand.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from facebench.models import ARCHITECTURES, FeatureModel, ModelError, load_model
from facebench.models.face_resnet import FaceResNet, final_map_size
from facebench.models.iresnet import DEPTHS, IBasicBlock, IResNet
from facebench.models.loaders import RANDOM_WEIGHTS_WARNING
from facebench.models.small_cnn import SmallCNN

ROOT = Path(__file__).resolve().parents[1]
TOL = 1e-5
# TorchScript is deprecated in favour of torch.export, but it is what many released models are.
pytestmark = pytest.mark.filterwarnings(
    r"ignore:`torch\.jit\.\w+` is deprecated:DeprecationWarning"
)


class Log:
    """Collects what load_model reports."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def plain_features(module: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    module.eval()
    with torch.no_grad():
        return module(batch)


def realistic(module: nn.Module, seed: int) -> nn.Module:
    """Give a module non-trivial BatchNorm statistics and PReLU slopes, and activations of a
    sane size (random-init IResNet activations grow by orders of magnitude per stage)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, (nn.Conv2d, nn.Linear)):
                fan_in = layer.weight[0].numel()
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) / fan_in**0.5)
            elif isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
                n = layer.num_features
                layer.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
                layer.running_var.copy_(0.5 + torch.rand(n, generator=gen))
                layer.weight.copy_(0.5 + torch.rand(n, generator=gen))
                layer.bias.copy_(0.1 * torch.randn(n, generator=gen))
                layer.num_batches_tracked.fill_(1234)
            elif isinstance(layer, nn.PReLU):
                layer.weight.copy_(0.5 * torch.rand(layer.weight.shape, generator=gen))
    return module.eval()


def batch_for(name: str, n: int, seed: int = 0) -> torch.Tensor:
    height, width = ARCHITECTURES[name].input_size
    return torch.randn((n, 3, height, width), generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- architectures, registry


def test_importing_the_models_package_does_not_import_torch() -> None:
    code = (
        "import sys, facebench.models, facebench.models.registry, facebench.models.loaders; "
        "print(' '.join(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    heavy = {m for m in out.stdout.split() if m.split(".")[0] in ("torch", "onnxruntime")}
    assert not heavy


# iresnet200 (119M parameters) is only built, in the layout test below: too slow for here.
@pytest.mark.parametrize("name", [name for name in ARCHITECTURES if name != "iresnet200"])
def test_each_architecture_maps_a_batch_to_n_by_feature_dim_float32(name: str) -> None:
    spec = ARCHITECTURES[name]
    assert spec.name == name
    n = 1 if name == "iresnet100" else 2
    module = spec.build()
    out = plain_features(module, batch_for(name, n))
    assert out.shape == (n, spec.feature_dim)
    assert out.dtype == torch.float32
    assert bool(out.isfinite().all())


def test_registry_presets_and_sizes() -> None:
    for name in ("iresnet18", "iresnet34", "iresnet50", "iresnet100", "iresnet200"):
        spec = ARCHITECTURES[name]
        assert (spec.input_size, spec.feature_dim, spec.preset) == ((112, 112), 512, "arcface112")
    spec = ARCHITECTURES["face-resnet"]
    assert (spec.input_size, spec.feature_dim, spec.preset) == (
        (112, 96),
        512,
        "face-resnet-112x96",
    )
    spec = ARCHITECTURES["small-cnn"]
    assert (spec.input_size, spec.feature_dim, spec.preset) == ((32, 32), 64, "small32")


def test_face_resnet_has_27_convolutions_and_one_fc() -> None:
    module = FaceResNet()
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 27
    assert [m for m in module.modules() if isinstance(m, nn.Linear)] == [module.fc5]
    assert not [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
    # 32, 64 | 64 x2 | 128 | 128 x4 | 256 | 256 x10 | 512 | 512 x6
    widths = [c.out_channels for c in convs]
    assert (
        widths == [32, 64] + [64] * 2 + [128] + [128] * 4 + [256] + [256] * 10 + [512] + [512] * 6
    )
    assert final_map_size((112, 96)) == (5, 4)
    state = shapes(module)
    # 27 conv weights, 27 PReLU slopes, the biases of the 5 unpadded convs, fc5's two
    assert len(state) == 27 + 27 + 5 + 2
    entries = dict(state)
    assert entries["conv1a.0.weight"] == (32, 3, 3, 3)
    assert entries["conv1a.0.bias"] == (32,)
    assert entries["conv1a.1.weight"] == (32,)
    assert entries["res4.4.conv2.weight"] == (256, 256, 3, 3)
    assert "res4.4.conv2.bias" not in entries
    assert entries["fc5.weight"] == (512, 10240)
    assert module.fc5.in_features == 512 * 5 * 4
    assert module.fc5.out_features == 512


def test_face_resnet_feature_dim_argument() -> None:
    out = plain_features(FaceResNet(feature_dim=128), batch_for("face-resnet", 1))
    assert out.shape == (1, 128)


@pytest.mark.parametrize("size", [(16, 16), (28, 28), (32, 32), (64, 48)])
def test_small_cnn_takes_any_size_from_16(size: tuple[int, int]) -> None:
    out = plain_features(SmallCNN(), torch.randn(3, 3, *size))
    assert out.shape == (3, 64)


def test_small_cnn_feature_dim_argument() -> None:
    assert plain_features(SmallCNN(feature_dim=8), torch.randn(2, 3, 32, 32)).shape == (2, 8)
    with pytest.raises(ValueError, match="feature_dim"):
        SmallCNN(feature_dim=0)


# ---------------------------------------------------------------- IResNet == arcface_torch


def bn(prefix: str, n: int) -> list[tuple[str, tuple[int, ...]]]:
    return [
        (f"{prefix}.weight", (n,)),
        (f"{prefix}.bias", (n,)),
        (f"{prefix}.running_mean", (n,)),
        (f"{prefix}.running_var", (n,)),
        (f"{prefix}.num_batches_tracked", ()),
    ]


def arcface_torch_keys(layers: tuple[int, ...]) -> list[tuple[str, tuple[int, ...]]]:
    """The state_dict of arcface_torch's IResNet, in order, as read from its source:
    stem conv1/bn1/prelu; per unit bn1, conv1 (inplanes -> planes), bn2, prelu, conv2,
    bn3, then downsample.0/.1 on each stage's first unit (stride 2 everywhere); bn2, fc,
    features. Dropout has no state."""
    keys = [("conv1.weight", (64, 3, 3, 3)), *bn("bn1", 64), ("prelu.weight", (64,))]
    inplanes = 64
    for stage, (planes, units) in enumerate(zip((64, 128, 256, 512), layers, strict=True), start=1):
        for unit in range(units):
            p = f"layer{stage}.{unit}"
            keys += bn(f"{p}.bn1", inplanes)
            keys += [(f"{p}.conv1.weight", (planes, inplanes, 3, 3))]
            keys += bn(f"{p}.bn2", planes)
            keys += [
                (f"{p}.prelu.weight", (planes,)),
                (f"{p}.conv2.weight", (planes,) * 2 + (3, 3)),
            ]
            keys += bn(f"{p}.bn3", planes)
            if unit == 0:
                keys += [(f"{p}.downsample.0.weight", (planes, inplanes, 1, 1))]
                keys += bn(f"{p}.downsample.1", planes)
            inplanes = planes
    keys += bn("bn2", 512)
    keys += [("fc.weight", (512, 512 * 7 * 7)), ("fc.bias", (512,)), *bn("features", 512)]
    return keys


# Hand-worked from the source: stem 1 + 5 + 1 = 7; a unit 3 x 5 (BN) + 3 (conv1, prelu,
# conv2) = 18; a downsample 1 + 5 = 6; head 5 + 2 + 5 = 12. r50: 24 units, 4 downsamples.
IRESNET50_N_KEYS = 7 + 24 * 18 + 4 * 6 + 12
assert IRESNET50_N_KEYS == 475
IRESNET50_ENTRIES = [
    ("conv1.weight", (64, 3, 3, 3)),
    ("bn1.running_var", (64,)),
    ("bn1.num_batches_tracked", ()),
    ("prelu.weight", (64,)),
    ("layer1.0.bn1.weight", (64,)),
    ("layer1.0.conv1.weight", (64, 64, 3, 3)),
    ("layer1.0.prelu.weight", (64,)),
    ("layer1.0.conv2.weight", (64, 64, 3, 3)),
    ("layer1.0.downsample.0.weight", (64, 64, 1, 1)),
    ("layer1.0.downsample.1.running_mean", (64,)),
    ("layer2.0.bn1.weight", (64,)),
    ("layer2.0.conv1.weight", (128, 64, 3, 3)),
    ("layer2.0.downsample.0.weight", (128, 64, 1, 1)),
    ("layer2.3.bn3.bias", (128,)),
    ("layer3.0.downsample.0.weight", (256, 128, 1, 1)),
    ("layer3.13.conv2.weight", (256, 256, 3, 3)),
    ("layer4.0.conv1.weight", (512, 256, 3, 3)),
    ("layer4.2.prelu.weight", (512,)),
    ("bn2.weight", (512,)),
    ("fc.weight", (512, 25088)),
    ("fc.bias", (512,)),
    ("features.weight", (512,)),
    ("features.running_var", (512,)),
    ("features.num_batches_tracked", ()),
]
IRESNET50_ABSENT = ["layer1.1.downsample.0.weight", "layer3.14.bn1.weight", "layer4.3.bn1.weight"]


def shapes(module: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(key, tuple(value.shape)) for key, value in module.state_dict().items()]


@pytest.fixture(scope="module")
def r50() -> IResNet:
    return IResNet(DEPTHS["iresnet50"])


def test_iresnet50_state_dict_literal_entries_and_count(r50: IResNet) -> None:
    state = dict(shapes(r50))
    assert len(state) == IRESNET50_N_KEYS
    for key, shape in IRESNET50_ENTRIES:
        assert state[key] == shape, key
    for key in IRESNET50_ABSENT:
        assert key not in state


@pytest.mark.parametrize("name", list(DEPTHS))
def test_iresnet_state_dict_equals_arcface_torch_layout(name: str) -> None:
    assert shapes(ARCHITECTURES[name].build()) == arcface_torch_keys(DEPTHS[name])


def test_iresnet_initialization(r50: IResNet) -> None:
    # arcface_torch's default: conv weights ~ N(0, 0.1), BatchNorm2d weight 1
    assert abs(r50.layer3[0].conv1.weight.detach().std().item() - 0.1) < 0.005
    assert bool((r50.layer1[1].bn2.weight == 1).all())
    # the registry's build turns on arcface_torch's zero_init_residual (unit bn2 weight 0)
    built = ARCHITECTURES["iresnet18"].build()
    assert isinstance(built, IResNet)
    units = [m for m in built.modules() if isinstance(m, IBasicBlock)]
    assert len(units) == 8
    assert all(bool((unit.bn2.weight == 0).all()) for unit in units)


def test_iresnet_depths_are_arcface_torch_ones() -> None:
    assert DEPTHS["iresnet50"] == (3, 4, 14, 3)
    assert DEPTHS["iresnet100"] == (3, 13, 30, 3)
    assert len(arcface_torch_keys(DEPTHS["iresnet100"])) == 7 + 49 * 18 + 4 * 6 + 12


def test_iresnet_norm_layers_and_frozen_feature_scale(r50: IResNet) -> None:
    norms = [m for m in r50.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    assert {(m.eps, m.momentum, m.affine) for m in norms} == {(1e-05, 0.1, True)}
    assert r50.features.weight.requires_grad is False
    assert bool((r50.features.weight == 1).all())
    trainable = {n for n, p in r50.named_parameters() if not p.requires_grad}
    assert trainable == {"features.weight"}
    assert all(
        m.num_parameters == m.weight.numel() > 1 for m in r50.modules() if isinstance(m, nn.PReLU)
    )


# ---------------------------------------------------------------- state_dict loading


@pytest.fixture()
def log() -> Log:
    return Log()


@pytest.fixture()
def small() -> nn.Module:
    return realistic(SmallCNN(), seed=3)


def save(obj: object, path: Path) -> Path:
    torch.save(obj, path)
    return path


def test_iresnet50_weights_round_trip_equal_a_plain_forward(tmp_path: Path, log: Log) -> None:
    torch.manual_seed(0)
    module = realistic(IResNet(DEPTHS["iresnet50"]), seed=1)
    weights = save(module.state_dict(), tmp_path / "backbone.pth")  # as arcface_torch saves
    batch = batch_for("iresnet50", 2)
    expected = plain_features(module, batch)
    model = load_model(arch="iresnet50", weights=weights, log=log)
    got = model(batch)
    assert got.dtype == torch.float32 and got.shape == (2, 512)
    torch.testing.assert_close(got, expected, rtol=TOL, atol=TOL)
    assert expected.abs().max() > 0.1  # a meaningful comparison, not two zero tensors
    assert model.name == "iresnet50:backbone.pth"
    assert model.sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert (model.kind, model.input_size, model.feature_dim, model.preset, model.device) == (
        "state_dict",
        (112, 112),
        512,
        "arcface112",
        "cpu",
    )
    assert log.lines == []


def test_training_checkpoint_loads_and_reports_ignored_keys(
    tmp_path: Path, small: nn.Module, log: Log
) -> None:
    state = dict(small.state_dict())
    state["head.weight"] = torch.randn(10, 64)
    state["head.bias"] = torch.zeros(10)
    checkpoint = {
        "state_dict": state,
        "arch": "small-cnn",
        "head": {"kind": "l2-softmax", "alpha": 16.0},
        "preprocessing": {"preset": "small32", "mean": [0.5, 0.5, 0.5]},
        "history": [{"epoch": 1, "loss": 2.5}],
    }
    weights = save(checkpoint, tmp_path / "ckpt.pt")
    batch = batch_for("small-cnn", 3)
    model = load_model(arch="small-cnn", weights=weights, log=log)
    torch.testing.assert_close(model(batch), plain_features(small, batch), rtol=TOL, atol=TOL)
    assert "ignored 2 keys" in log.text
    assert "head.weight" in log.text and "head.bias" in log.text
    assert "'state_dict' entry" in log.text


@pytest.mark.parametrize("entry", ["model", "backbone"])
def test_other_checkpoint_entries(tmp_path: Path, small: nn.Module, log: Log, entry: str) -> None:
    weights = save({entry: small.state_dict(), "epoch": 3}, tmp_path / "ckpt.pt")
    batch = batch_for("small-cnn", 2)
    model = load_model(arch="small-cnn", weights=weights, log=log)
    torch.testing.assert_close(model(batch), plain_features(small, batch), rtol=TOL, atol=TOL)


def test_module_prefix_is_stripped_and_reported(tmp_path: Path, small: nn.Module, log: Log) -> None:
    state = {f"module.{key}": value for key, value in small.state_dict().items()}
    weights = save(state, tmp_path / "ddp.pth")
    batch = batch_for("small-cnn", 2)
    model = load_model(arch="small-cnn", weights=weights, log=log)
    torch.testing.assert_close(model(batch), plain_features(small, batch), rtol=TOL, atol=TOL)
    assert "'module.' prefix" in log.text


def test_backbone_prefix_is_stripped_where_it_fits(
    tmp_path: Path, small: nn.Module, log: Log
) -> None:
    state = {f"backbone.{key}": value for key, value in small.state_dict().items()}
    state["head.weight"] = torch.randn(5, 64)
    weights = save({"state_dict": state}, tmp_path / "ckpt.pt")
    batch = batch_for("small-cnn", 2)
    model = load_model(arch="small-cnn", weights=weights, log=log)
    torch.testing.assert_close(model(batch), plain_features(small, batch), rtol=TOL, atol=TOL)
    assert "'backbone.' prefix from 20 keys" in log.text
    assert "ignored 1 keys" in log.text and "head.weight" in log.text


def test_missing_keys_and_wrong_shapes_are_listed(tmp_path: Path, small: nn.Module) -> None:
    state = dict(small.state_dict())
    del state["block1.0.weight"], state["block2.1.running_var"]
    state["fc.weight"] = torch.zeros(10, 128)
    weights = save(state, tmp_path / "bad.pth")
    with pytest.raises(ModelError) as info:
        load_model(arch="small-cnn", weights=weights, log=Log())
    message = str(info.value)
    assert "2 missing keys (block1.0.weight, block2.1.running_var)" in message
    assert "1 keys of the wrong shape (fc.weight expected (64, 128), got (10, 128))" in message
    assert str(weights) in message


def test_a_long_list_of_missing_keys_shows_ten_and_the_count(tmp_path: Path) -> None:
    state = {"fc.bias": torch.zeros(64)}
    weights = save(state, tmp_path / "few.pth")
    with pytest.raises(ModelError) as info:
        load_model(arch="small-cnn", weights=weights, log=Log())
    # 20 keys, minus fc.bias and the 3 num_batches_tracked buffers that may be absent
    assert "16 missing keys (" in str(info.value)
    assert "... (6 more)" in str(info.value)


def test_the_weights_of_another_architecture_do_not_fit(tmp_path: Path) -> None:
    weights = save(SmallCNN().state_dict(), tmp_path / "small.pth")
    with pytest.raises(ModelError, match="do not fit --arch face-resnet"):
        load_model(arch="face-resnet", weights=weights, log=Log())


def test_checkpoint_of_another_arch_is_named(tmp_path: Path, small: nn.Module) -> None:
    weights = save({"state_dict": small.state_dict(), "arch": "iresnet50"}, tmp_path / "c.pt")
    with pytest.raises(ModelError, match=r"for arch 'iresnet50'.*--arch small-cnn"):
        load_model(arch="small-cnn", weights=weights, log=Log())


def test_absent_num_batches_tracked_is_accepted(tmp_path: Path, small: nn.Module) -> None:
    state = {k: v for k, v in small.state_dict().items() if "num_batches_tracked" not in k}
    weights = save(state, tmp_path / "old.pth")
    batch = batch_for("small-cnn", 2)
    model = load_model(arch="small-cnn", weights=weights, log=Log())
    torch.testing.assert_close(model(batch), plain_features(small, batch), rtol=TOL, atol=TOL)


def test_float16_weights_are_converted_and_reported(
    tmp_path: Path, small: nn.Module, log: Log
) -> None:
    state = {k: v.half() if v.is_floating_point() else v for k, v in small.state_dict().items()}
    weights = save(state, tmp_path / "half.pth")
    model = load_model(arch="small-cnn", weights=weights, log=log)
    assert "converted float16 weights to float32" in log.text
    assert model(batch_for("small-cnn", 1)).dtype == torch.float32


def test_non_finite_weights_are_refused(tmp_path: Path, small: nn.Module) -> None:
    state = dict(small.state_dict())
    state["fc.bias"] = torch.full((64,), float("nan"))
    weights = save(state, tmp_path / "nan.pth")
    with pytest.raises(ModelError, match=r"NaN or inf \(fc.bias\)"):
        load_model(arch="small-cnn", weights=weights, log=Log())


def test_unknown_arch_lists_the_known_ones() -> None:
    with pytest.raises(ModelError) as info:
        load_model(arch="resnet9000")
    assert "'resnet9000'" in str(info.value)
    for name in ARCHITECTURES:
        assert name in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({}, "Expected --model FILE"),
        ({"weights": Path("w.pth")}, "--weights without --arch"),
        ({"model": Path("m.ts"), "arch": "small-cnn"}, "--model together with --arch"),
        ({"model": Path("m.ts"), "weights": Path("w.pth")}, "--model together with"),
    ],
)
def test_argument_combinations(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(ModelError, match=fragment):
        load_model(**kwargs)  # type: ignore[arg-type]


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="weights file not found"):
        load_model(arch="small-cnn", weights=tmp_path / "nope.pth")
    with pytest.raises(ModelError, match="model file not found"):
        load_model(model=tmp_path / "nope.ts")
    with pytest.raises(ModelError, match="not a regular file"):
        load_model(model=tmp_path)


@pytest.mark.parametrize(
    "content", [b"", b"this is not a checkpoint", b"PK\x03\x04 broken zip"], ids=repr
)
def test_unreadable_weights(tmp_path: Path, content: bytes) -> None:
    weights = tmp_path / "w.pth"
    weights.write_bytes(content)
    with pytest.raises(ModelError, match=r"not a readable torch\.save file"):
        load_model(arch="small-cnn", weights=weights, log=Log())


@pytest.mark.parametrize("obj", [[1, 2, 3], {"epoch": 3, "lr": 0.1}, {}], ids=repr)
def test_files_without_a_state_dict(tmp_path: Path, obj: object) -> None:
    weights = save(obj, tmp_path / "w.pth")
    with pytest.raises(ModelError, match="expected a state_dict"):
        load_model(arch="small-cnn", weights=weights, log=Log())


def _touch(path: str) -> None:
    Path(path).write_text("the payload ran")


class Payload:
    """Unpickling this calls _touch(marker): what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (_touch, (str(self.marker),))


def test_a_pickle_that_needs_code_is_refused_before_it_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    weights = save(
        {"state_dict": {"fc.bias": torch.zeros(64)}, "x": Payload(marker)}, tmp_path / "evil.pth"
    )
    with pytest.raises(ModelError) as info:
        load_model(arch="small-cnn", weights=weights, log=Log())
    assert "never unpickles code" in str(info.value)
    assert "_touch" in str(info.value)
    assert not marker.exists()
    # The payload is live: an unrestricted load does run it.
    torch.load(weights, weights_only=False)
    assert marker.exists()


def test_a_pickled_module_is_refused(tmp_path: Path) -> None:
    weights = save(SmallCNN(), tmp_path / "whole.pth")
    with pytest.raises(ModelError, match=r"never unpickles code.*model\.state_dict"):
        load_model(arch="small-cnn", weights=weights, log=Log())


def test_random_weights_warn_loudly_and_are_reproducible(log: Log) -> None:
    rng_state = torch.get_rng_state()
    first = load_model(arch="small-cnn", log=log)
    second = load_model(arch="small-cnn", log=Log())
    assert torch.equal(torch.get_rng_state(), rng_state)  # global RNG untouched
    assert RANDOM_WEIGHTS_WARNING in log.text and "WARNING" in log.text
    assert (first.name, first.sha256, first.kind) == ("small-cnn:random-init", "", "state_dict")
    batch = batch_for("small-cnn", 2)
    assert torch.equal(first(batch), second(batch))


def test_default_log_is_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    load_model(arch="small-cnn")
    assert RANDOM_WEIGHTS_WARNING in capsys.readouterr().err


# ---------------------------------------------------------------- FeatureModel calls, devices


@pytest.fixture()
def small_model(tmp_path: Path, small: nn.Module) -> FeatureModel:
    return load_model(arch="small-cnn", weights=save(small.state_dict(), tmp_path / "s.pth"))


@pytest.mark.parametrize(
    ("batch", "fragment"),
    [
        (torch.zeros(2, 3, 28, 28), "expected inputs of 32x32.*preset 'small32'"),
        (torch.zeros(2, 1, 32, 32), "N x 3 x H x W"),
        (torch.zeros(3, 32, 32), "N x 3 x H x W"),
        (torch.zeros(0, 3, 32, 32), "N >= 1"),
        (torch.zeros(2, 3, 32, 32, dtype=torch.uint8), "float batch"),
    ],
)
def test_bad_batches_are_refused(
    small_model: FeatureModel, batch: torch.Tensor, fragment: str
) -> None:
    with pytest.raises(ModelError, match=fragment):
        small_model(batch)


def test_the_call_is_gradient_free_and_eval_mode(small_model: FeatureModel) -> None:
    batch = batch_for("small-cnn", 4).requires_grad_(True)
    out = small_model(batch)
    assert not out.requires_grad
    # eval mode: a row's feature does not depend on the rest of the batch (BN running stats)
    torch.testing.assert_close(small_model(batch[:1]), out[:1], rtol=TOL, atol=TOL)


def test_to_returns_the_model(small_model: FeatureModel) -> None:
    assert small_model.to("cpu") is small_model
    assert small_model.device == "cpu"


def test_unavailable_or_malformed_devices() -> None:
    with pytest.raises(ModelError, match="Expected a device"):
        load_model(arch="small-cnn", device="gpu0", log=Log())
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="CUDA is not available"):
            load_model(arch="small-cnn", device="cuda", log=Log())


# ---------------------------------------------------------------- TorchScript


@pytest.fixture(params=["script", "trace"])
def torchscript_file(
    request: pytest.FixtureRequest, tmp_path: Path, small: nn.Module
) -> Iterator[Path]:
    example = batch_for("small-cnn", 2)
    compiled = (
        torch.jit.script(small) if request.param == "script" else torch.jit.trace(small, example)
    )
    path = tmp_path / "small.ts"
    torch.jit.save(compiled, str(path))
    yield path


def test_torchscript_features_equal_the_module(torchscript_file: Path, small: nn.Module) -> None:
    model = load_model(model=torchscript_file)
    batch = batch_for("small-cnn", 3, seed=5)
    torch.testing.assert_close(model(batch), plain_features(small, batch), rtol=TOL, atol=TOL)
    assert model.name == "torchscript:small.ts"
    assert model.sha256 == hashlib.sha256(torchscript_file.read_bytes()).hexdigest()
    assert (model.kind, model.input_size, model.feature_dim, model.preset) == (
        "torchscript",
        None,
        None,
        None,
    )


@pytest.mark.parametrize("legacy", [False, True])
def test_a_state_dict_is_not_torchscript(tmp_path: Path, small: nn.Module, legacy: bool) -> None:
    path = tmp_path / "weights.pt"
    torch.save(small.state_dict(), path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(ModelError, match=r"not TorchScript.*--arch NAME --weights FILE"):
        load_model(model=path)


class TwoOutputs(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flat = x.flatten(1)
        return flat, flat


def test_a_torchscript_model_with_two_outputs_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "two.ts"
    torch.jit.save(torch.jit.script(TwoOutputs()), str(path))
    model = load_model(model=path)
    with pytest.raises(ModelError, match="returned a tuple"):
        model(torch.zeros(1, 3, 4, 4))


def test_onnx_without_onnxruntime_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(b"whatever")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import raises ImportError
    with pytest.raises(ModelError, match=r"pip install 'facebench\[onnx\]'"):
        load_model(model=path)
