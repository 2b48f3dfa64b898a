"""Tests of facebench.train: the L2-softmax head, data sets, loop, checkpoint and commands."""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import assert_user_error
from click.testing import CliRunner, Result
from PIL import Image

from facebench.cli import cli
from facebench.errors import FacebenchError, OutputExistsError
from facebench.extract.preprocess import PRESETS, decode_image, preprocess
from facebench.models.loaders import load_model
from facebench.train import HEAD_NAMES, alpha_low
from facebench.train.datasets import (
    FASHION_MNIST_CLASSES,
    DatasetError,
    ImageDataset,
    export_images,
    load_fashion_mnist,
    load_images,
    load_training_data,
    parse_holdout,
    read_idx,
)
from facebench.train.head import (
    HEADS,
    HeadConfig,
    HeadError,
    L2Constraint,
    L2Softmax,
    SoftmaxHead,
    build_head,
    l2_scale,
)
from facebench.train.loop import (
    CHECKPOINT_FORMAT,
    TrainOptions,
    TrainResult,
    save_checkpoint,
    train,
)

HISTORY_KEYS = {"epoch", "loss", "accuracy", "feature_norm", "lr", "seconds"}
QUICK = TrainOptions(epochs=1, batch_size=20, lr=0.1, device="cpu", seed=3)


def quiet(message: str) -> None:
    """A log that drops the notes."""


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(arg) for arg in args])


# --- the bound and the head -------------------------------------------------------------


@pytest.mark.parametrize(("n_classes", "expected"), [(10, 4.28), (10_575, 11.46), (58_207, 13.17)])
def test_alpha_low_matches_the_paper(n_classes: int, expected: float) -> None:
    assert round(alpha_low(n_classes, 0.9), 2) == expected
    assert alpha_low(n_classes) == pytest.approx(math.log(0.9 * (n_classes - 2) / 0.1))


@pytest.mark.parametrize(("n_classes", "p"), [(2, 0.9), (1, 0.9), (10, 0.0), (10, 1.0), (10, -1)])
def test_alpha_low_refuses_undefined_cases(n_classes: int, p: float) -> None:
    with pytest.raises(FacebenchError, match="Expected argument"):
        alpha_low(n_classes, p)


def test_alpha_bound_command_prints_two_decimals() -> None:
    result = run("alpha-bound", "--classes", "10575", "--p", "0.9")
    assert result.exit_code == 0, result.output
    assert result.stdout == "11.46\n"
    result = run("alpha-bound", "--classes", "10", "--json")
    assert result.exit_code == 0, result.output
    assert '"alpha_low": 4.2766' in result.stdout
    assert_user_error(run("alpha-bound", "--classes", "2"), "n_classes", "> 2")


def test_l2_layer_gradient_matches_finite_differences_fixed_alpha() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(4, 5, dtype=torch.float64, generator=generator, requires_grad=True)
    layer = L2Constraint(3.5).double()
    assert torch.autograd.gradcheck(layer, (x,))
    alpha = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(l2_scale, (x, alpha))


def test_l2_layer_gradient_matches_finite_differences_learned_alpha() -> None:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(3, 6, dtype=torch.float64, generator=generator, requires_grad=True)
    layer = L2Constraint(5.0, learned=True).double()
    log_alpha = layer.log_alpha.detach().clone().requires_grad_(True)

    def forward(inputs: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = torch.func.functional_call(layer, {"log_alpha": log_scale}, (inputs,))
        return out

    assert torch.autograd.gradcheck(forward, (x, log_alpha))
    head = L2Softmax(6, 4, alpha=5.0, learned=True).double()
    assert torch.autograd.gradcheck(head, (x,))


def test_l2softmax_scales_to_alpha_then_plain_linear_with_bias() -> None:
    torch.manual_seed(0)
    head = L2Softmax(8, 5, alpha=7.0)
    x = torch.randn(6, 8) * 30
    scaled = head.l2(x)
    torch.testing.assert_close(scaled.norm(dim=1), torch.full((6,), 7.0))
    assert isinstance(head.fc, torch.nn.Linear) and head.fc.bias is not None
    expected = (7.0 * x / x.norm(dim=1, keepdim=True)) @ head.fc.weight.T + head.fc.bias
    torch.testing.assert_close(head(x), expected)
    assert not head.l2.alpha.requires_grad  # fixed: a buffer, not a parameter
    assert [name for name, _ in head.named_parameters()] == ["fc.weight", "fc.bias"]
    assert l2_scale(torch.zeros(2, 3), 4.0).eq(0).all()  # eps-safe: no NaN


def test_default_alpha_is_the_bound_and_heads_registry() -> None:
    head = build_head(HeadConfig("l2softmax", n_classes=10, feature_dim=4))
    assert isinstance(head, L2Softmax)
    assert float(head.alpha) == pytest.approx(alpha_low(10, 0.9))
    assert isinstance(build_head(HeadConfig("softmax", n_classes=3, feature_dim=4)), SoftmaxHead)
    assert tuple(HEADS) == HEAD_NAMES


@pytest.mark.parametrize(
    "config",
    [
        HeadConfig("l2softmax", alpha=12.5, n_classes=9, feature_dim=64),
        HeadConfig("l2softmax", alpha="learned", alpha_init=3.0, n_classes=9, feature_dim=64),
        HeadConfig("l2softmax"),
        HeadConfig("softmax", n_classes=2, feature_dim=8),
    ],
)
def test_head_config_round_trips_in_plain_types(config: HeadConfig) -> None:
    data = config.to_dict()
    assert all(isinstance(v, (str, int, float, type(None))) for v in data.values())
    assert HeadConfig.from_dict(data) == config


@pytest.mark.parametrize(
    ("kwargs", "phrase"),
    [
        ({"alpha": 0.0}, "> 0"),
        ({"alpha": -1.0}, "> 0"),
        ({"alpha": float("nan")}, "finite"),
        ({"alpha": "learned", "alpha_init": 0.0}, "> 0"),
        ({"alpha_init": 3.0}, "learned"),
        ({"name": "softmax", "alpha": 3.0}, "no alpha"),
        ({"name": "arcface"}, "l2softmax"),
    ],
)
def test_head_config_refuses_bad_alpha(kwargs: dict[str, object], phrase: str) -> None:
    with pytest.raises(HeadError, match=phrase):
        HeadConfig(**kwargs)  # type: ignore[arg-type]


# --- data sets --------------------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray, code: int, *, compress: bool = False) -> None:
    dtype = {0x08: ">u1", 0x0B: ">i2", 0x0D: ">f4"}[code]
    raw = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    raw += np.ascontiguousarray(array, dtype=dtype).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize(
    ("code", "dtype"), [(0x08, np.uint8), (0x0B, np.int16), (0x0D, np.float32)]
)
def test_read_idx_plain_and_gzip(tmp_path: Path, compress: bool, code: int, dtype: type) -> None:
    array = (np.arange(2 * 3 * 4).reshape(2, 3, 4) * 7 % 251).astype(dtype)
    write_idx(tmp_path / "a.idx", array, code, compress=compress)
    read = read_idx(tmp_path / "a.idx")
    assert read.dtype == np.dtype(dtype) and read.dtype.isnative
    np.testing.assert_array_equal(read, array)


def test_read_idx_refuses_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "bad"
    write_idx(path, np.zeros((3, 2, 2), np.uint8), 0x08)
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(DatasetError, match="truncated or damaged"):
        read_idx(path)
    write_idx(path, np.zeros((3,), np.uint8), 0x08)
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(DatasetError, match=r"shape \(3,\)"):
        read_idx(path)
    path.write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(DatasetError, match="expected an idx file"):
        read_idx(path)


def write_fashion(folder: Path, n_images: int = 12, compress: bool = True) -> np.ndarray:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n_images, 28, 28), dtype=np.uint8)
    labels = (np.arange(n_images) % 10).astype(np.uint8)
    suffix = ".gz" if compress else ""
    write_idx(folder / f"train-images-idx3-ubyte{suffix}", images, 0x08, compress=compress)
    write_idx(folder / f"train-labels-idx1-ubyte{suffix}", labels, 0x08, compress=compress)
    return images


def test_fashion_mnist_reads_idx_files_from_data_dir(tmp_path: Path) -> None:
    images = write_fashion(tmp_path / "fm")
    loaded = load_images("fashion-mnist", tmp_path / "fm")
    assert loaded.classes == FASHION_MNIST_CLASSES
    assert loaded.labels.tolist() == [k % 10 for k in range(12)]
    np.testing.assert_array_equal(loaded.image(3), np.repeat(images[3][:, :, None], 3, axis=2))
    with pytest.raises(DatasetError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path / "empty")


def test_digits_become_uint8_rgb_and_32x32_inputs() -> None:
    digits = load_images("digits")
    assert len(digits) == 1797 and digits.classes == tuple("0123456789")
    image = digits.image(0)
    assert image.shape == (8, 8, 3) and image.dtype == np.uint8
    from sklearn.datasets import load_digits

    grey = np.rint(load_digits().images[0] * 255 / 16)  # 0..16 -> 0..255
    np.testing.assert_array_equal(image, np.repeat(grey[:, :, None], 3, axis=2))
    dataset = ImageDataset(digits, PRESETS["small32"])
    tensor, label = dataset[0]
    assert tensor.shape == (3, 32, 32) and tensor.dtype == torch.float32 and label == 0
    np.testing.assert_array_equal(tensor.numpy(), preprocess(image, PRESETS["small32"]))
    assert not digits.flip_default


def test_training_uses_the_preprocessing_of_extraction(tmp_path: Path) -> None:
    digits = load_images("digits")
    written = export_images(digits, ["3"], tmp_path, per_class=2, prefix="digit")
    assert written == ["digit3/digit3_0001.png", "digit3/digit3_0002.png"]
    three = digits.select_classes([3])
    from_file = preprocess(decode_image(tmp_path / written[1]), PRESETS["small32"])
    np.testing.assert_array_equal(ImageDataset(three, PRESETS["small32"])[1][0].numpy(), from_file)
    with pytest.raises(OutputExistsError):
        export_images(digits, ["3"], tmp_path, per_class=1, prefix="digit")


def test_holdout_splits_classes_and_names_unknown_ones() -> None:
    data = load_training_data("digits", holdout=parse_holdout("5, 6,7,8,9"), max_per_class=4)
    assert data.train.classes == ("0", "1", "2", "3", "4") and len(data.train) == 20
    assert data.holdout == ("5", "6", "7", "8", "9")
    assert data.held_out is not None and set(data.held_out.labels.tolist()) == set(range(5))
    with pytest.raises(DatasetError, match=r"unknown \['12', 'cat'\]"):
        load_training_data("digits", holdout=("12", "cat"))
    with pytest.raises(DatasetError, match="at least 2"):
        load_training_data("digits", holdout=tuple("012345678"))
    with pytest.raises(DatasetError, match="comma-separated"):
        parse_holdout("5,,6")


def write_tree(root: Path, counts: dict[str, int]) -> None:
    for name, count in counts.items():
        (root / name).mkdir(parents=True)
        for k in range(count):
            pixels = np.full((10, 12, 3), 20 * k, dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{k}.png")


def test_image_tree_classes_sorted_with_flips_by_default(tmp_path: Path) -> None:
    write_tree(tmp_path, {"bob": 2, "alice": 3})
    (tmp_path / "alice" / "notes.txt").write_text("not an image")
    images = load_images(tmp_path)
    assert images.classes == ("alice", "bob") and images.counts().tolist() == [3, 2]
    assert images.flip_default and images.image(4).shape == (10, 12, 3)


@pytest.mark.parametrize(
    ("counts", "phrase"),
    [({"alice": 0, "bob": 0}, "alice: expected at least 2"), ({}, "found no folder")],
)
def test_image_tree_errors(tmp_path: Path, counts: dict[str, int], phrase: str) -> None:
    write_tree(tmp_path, counts)
    with pytest.raises(DatasetError, match=phrase):
        load_images(tmp_path)
    write_tree(tmp_path / "more", {"x": 2})
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "loose.jpg")
    with pytest.raises(DatasetError, match=r"1 image file\(s\) directly in the root \(loose.jpg\)"):
        load_images(tmp_path)


# --- training, checkpoint ---------------------------------------------------------------


@pytest.fixture(scope="module")
def trained() -> TrainResult:
    data = load_training_data("digits", holdout=("5", "6", "7", "8", "9"), max_per_class=8)
    head = HeadConfig("l2softmax", alpha="learned", alpha_init=6.0)
    return train(data, "small-cnn", head, QUICK, log=quiet)


def test_learned_alpha_moves_and_stays_positive(trained: TrainResult) -> None:
    assert isinstance(trained.head, L2Softmax)
    alpha = float(trained.head.alpha.detach())
    assert alpha > 0 and alpha != pytest.approx(6.0, abs=1e-4)
    assert trained.history[-1]["alpha"] == pytest.approx(alpha)


def test_history_has_the_per_epoch_keys(trained: TrainResult) -> None:
    (entry,) = trained.history
    assert set(entry) == HISTORY_KEYS | {"alpha"} and entry["epoch"] == 1
    assert all(type(value) in (int, float) for value in entry.values())
    assert entry["feature_norm"] > 0 and 0 <= entry["accuracy"] <= 1 and entry["lr"] == 0.1


def test_training_is_reproducible_with_the_seed() -> None:
    data = load_training_data("digits", holdout=tuple("23456789"), max_per_class=6)
    runs = [train(data, "small-cnn", HeadConfig("softmax"), QUICK, log=quiet) for _ in range(2)]
    first, second = (run_.state_dict() for run_ in runs)
    assert first.keys() == second.keys()
    for key in first:
        torch.testing.assert_close(first[key], second[key], rtol=0, atol=0)
    assert runs[0].history[0]["loss"] == runs[1].history[0]["loss"]


def test_checkpoint_round_trip_and_load_model(trained: TrainResult, tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "model.pt", trained)
    with pytest.raises(OutputExistsError):
        save_checkpoint(path, trained)
    checkpoint = torch.load(path, weights_only=True)
    assert checkpoint["format"] == CHECKPOINT_FORMAT and checkpoint["version"] == 1
    assert checkpoint["arch"] == "small-cnn" and checkpoint["seed"] == 3
    assert checkpoint["classes"] == ["0", "1", "2", "3", "4"]
    assert checkpoint["holdout"] == ["5", "6", "7", "8", "9"]
    assert HeadConfig.from_dict(checkpoint["head"]) == trained.head_config
    assert checkpoint["preprocessing"] == PRESETS["small32"].to_dict()
    assert set(checkpoint["history"][0]) == HISTORY_KEYS | {"alpha"}
    head_keys = sorted(k for k in checkpoint["state_dict"] if k.startswith("head."))
    assert head_keys == ["head.fc.bias", "head.fc.weight", "head.l2.log_alpha"]
    notes: list[str] = []
    model = load_model(arch="small-cnn", weights=path, device="cpu", log=notes.append)
    assert any("ignored 3 keys" in note and "head.l2.log_alpha" in note for note in notes)
    batch = ImageDataset(load_images("digits"), PRESETS["small32"])[7][0][None]
    with torch.no_grad():
        expected = trained.backbone(batch)
    torch.testing.assert_close(model(batch), expected)


# --- the command line -------------------------------------------------------------------


def write_pairs(path: Path, classes: list[str], per_class: int) -> None:
    """An LFW View 2 format pairs file: 2 folds of 4 matched + 4 mismatched pairs."""
    lines = ["2\t4"]
    for fold in range(2):
        for k in range(4):
            name = classes[(fold * 4 + k) % len(classes)]
            lines.append(f"{name}\t{1 + k % per_class}\t{1 + (k + 1 + fold) % per_class}")
        for k in range(4):
            a, b = classes[k % len(classes)], classes[(k + 1 + fold) % len(classes)]
            lines.append(f"{a}\t{1 + (k + fold) % per_class}\t{b}\t{1 + k % per_class}")
    path.write_text("\n".join(lines) + "\n")


def test_train_extract_verify_on_held_out_digits(tmp_path: Path) -> None:
    model = tmp_path / "model.pt"
    common = ["--holdout", "5,6,7,8,9", "--epochs", "1", "--max-per-class", "20", "--device", "cpu"]
    result = run("train", "digits", *common, "--batch-size", "32", "--no-progress", "-o", model)
    assert result.exit_code == 0, result.output
    assert "training history" in result.stdout and "alpha" in result.stdout
    assert f"wrote {model}" in result.stderr
    assert_user_error(run("train", "digits", *common, "-o", model), "--overwrite")

    held_out = load_training_data("digits", holdout=("5", "6", "7", "8", "9")).held_out
    assert held_out is not None
    images = tmp_path / "images"
    written = export_images(
        held_out, held_out.classes, images, per_class=4, prefix="digit", image_format="jpg"
    )
    assert written[0] == "digit5/digit5_0001.jpg" and len(written) == 20
    store = tmp_path / "held_out.h5"
    result = run(
        "extract", images, "--arch", "small-cnn", "--weights", model, "-o", store,
        "--workers", "0", "--device", "cpu", "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "head.l2.alpha_value" in result.stderr  # the loader names the unused head keys
    pairs = tmp_path / "pairs.txt"
    write_pairs(pairs, [f"digit{k}" for k in range(5, 10)], per_class=4)
    result = run("verify", "--protocol", "lfw", "--pairs", pairs, "--features", store)
    assert result.exit_code == 0, result.output
    assert "ccuracy" in result.stdout


@pytest.mark.parametrize(
    ("counts", "phrase"),
    [({"alice": 2, "bob": 0}, "bob: expected at least 2 images"), ({"alice": 3, "bob": 1}, "bob")],
)
def test_train_refuses_bad_class_folders(
    tmp_path: Path, counts: dict[str, int], phrase: str
) -> None:
    write_tree(tmp_path / "faces", counts)
    result = run("train", tmp_path / "faces", "-o", tmp_path / "m.pt", "--device", "cpu")
    assert_user_error(result, phrase, "class folder")
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize(
    ("args", "phrases"),
    [
        (["mnist"], ["built-in data set (digits, fashion-mnist)", "mnist"]),
        (["digits", "--holdout", "5,x"], ["unknown ['x']", "0, 1, 2"]),
        (["digits", "--alpha", "0"], ["alpha", "> 0"]),
        (["digits", "--alpha", "-1"], ["alpha", "> 0"]),
        (["digits", "--alpha", "two"], ["'learned'"]),
        (["digits", "--head", "softmax", "--alpha", "16"], ["no alpha", "l2softmax"]),
        (["digits", "--alpha-init", "4"], ["--alpha learned"]),
    ],
)
def test_train_refuses_bad_inputs(tmp_path: Path, args: list[str], phrases: list[str]) -> None:
    result = run("train", *args, "-o", tmp_path / "m.pt", "--device", "cpu", "--epochs", "1")
    assert_user_error(result, *phrases)
    assert not (tmp_path / "m.pt").exists()
