"""``facebench extract`` end to end: stored features equal a plain forward of the same
preprocessed tensors; resume after kill -9; torchrun; every bad input."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from cli_helpers import assert_user_error
from click.testing import CliRunner, Result
from PIL import Image

from facebench.cli import cli
from facebench.extract.preprocess import PRESETS, flip_horizontal, load_item
from facebench.extract.sources import folder_items
from facebench.models.registry import ARCHITECTURES

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def make_images(root: Path, n: int = 40, seed: int = 0) -> list[str]:
    """n small RGB images in nested folders, mixed JPEG and PNG, varied sizes."""
    rng = np.random.default_rng(seed)
    ids = []
    for i in range(n):
        person = f"person_{i % 7}"
        suffix = ".png" if i % 3 else ".jpg"
        rel = f"{person}/img_{i:04d}{suffix}"
        size = (int(rng.integers(30, 50)), int(rng.integers(30, 50)))
        pixels = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
        (root / person).mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(root / rel)
        ids.append(rel)
    return sorted(ids)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("images")
    make_images(root)
    return root


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    module = ARCHITECTURES["small-cnn"].build().eval()
    path = tmp_path_factory.mktemp("w") / "small.pth"
    torch.save(module.state_dict(), path)
    return path


def reference(root: Path, weights: Path, flip: bool = False) -> tuple[list[str], np.ndarray]:
    """A plain torch forward of the same preprocessed tensors, outside facebench's runner."""
    module = ARCHITECTURES["small-cnn"].build().eval()
    module.load_state_dict(torch.load(weights, weights_only=True))
    config = PRESETS[ARCHITECTURES["small-cnn"].preset]
    items = folder_items(root)
    arrays = [load_item(item, config) for item in items]
    if flip:
        arrays = [flip_horizontal(a) for a in arrays]
    with torch.no_grad():
        out = module(torch.from_numpy(np.stack(arrays))).numpy()
    return [i.id for i in items], out


def read_store(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as handle:
        return {
            name: handle[name][...] for name in handle if isinstance(handle[name], h5py.Dataset)
        }


@pytest.mark.parametrize("workers", ["0", "2"])
def test_features_equal_a_plain_forward(tmp_path: Path, data: Path, weights: Path, workers: str):
    out = tmp_path / "s.h5"
    result = run(
        "extract",
        data,
        "--arch",
        "small-cnn",
        "--weights",
        weights,
        "-o",
        out,
        "--workers",
        workers,
        "--batch-size",
        "8",
        "--chunk-size",
        "16",
        "--flip",
        "--no-progress",
    )
    assert result.exit_code == 0, (result.output, result.exception)
    stored = read_store(out)
    ids, raw = reference(data, weights)
    assert [i.decode() for i in stored["ids"]] == ids
    norms = np.linalg.norm(raw.astype(np.float64), axis=1)
    np.testing.assert_allclose(stored["norms"], norms, rtol=1e-5)
    np.testing.assert_allclose(stored["features"], raw / norms[:, None], atol=1e-5)
    _, raw_flip = reference(data, weights, flip=True)
    norms_flip = np.linalg.norm(raw_flip.astype(np.float64), axis=1)
    np.testing.assert_allclose(stored["features_flip"], raw_flip / norms_flip[:, None], atol=1e-5)
    assert not (tmp_path / "s.h5.parts").exists()
    with h5py.File(out) as handle:
        assert handle.attrs["model"].startswith("small-cnn")


def test_torchscript_model(tmp_path: Path, data: Path, weights: Path) -> None:
    module = ARCHITECTURES["small-cnn"].build().eval()
    module.load_state_dict(torch.load(weights, weights_only=True))
    scripted = torch.jit.trace(module, torch.zeros(1, 3, 32, 32))
    model_path = tmp_path / "m.ts"
    torch.jit.save(scripted, model_path)
    out = tmp_path / "s.h5"
    result = run(
        "extract",
        data,
        "--model",
        model_path,
        "--preset",
        ARCHITECTURES["small-cnn"].preset,
        "-o",
        out,
        "--workers",
        "0",
        "--no-progress",
    )
    assert result.exit_code == 0, (result.output, result.exception)
    _ids, raw = reference(data, weights)
    norms = np.linalg.norm(raw.astype(np.float64), axis=1)
    np.testing.assert_allclose(read_store(out)["features"], raw / norms[:, None], atol=1e-5)


def test_onnx_model(tmp_path: Path, data: Path, weights: Path) -> None:
    pytest.importorskip("onnxruntime")
    module = ARCHITECTURES["small-cnn"].build().eval()
    module.load_state_dict(torch.load(weights, weights_only=True))
    model_path = tmp_path / "m.onnx"
    torch.onnx.export(
        module,
        (torch.zeros(1, 3, 32, 32),),
        model_path,
        input_names=["x"],
        dynamic_axes={"x": {0: "n"}},
        dynamo=False,
    )
    out = tmp_path / "s.h5"
    result = run(
        "extract",
        data,
        "--model",
        model_path,
        "-o",
        out,
        "--workers",
        "0",
        "--no-progress",
        "--preset",
        ARCHITECTURES["small-cnn"].preset,
    )
    assert result.exit_code == 0, (result.output, result.exception)
    _, raw = reference(data, weights)
    norms = np.linalg.norm(raw.astype(np.float64), axis=1)
    np.testing.assert_allclose(read_store(out)["features"], raw / norms[:, None], atol=1e-5)


def _command(data: Path, weights: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "facebench",
        "extract",
        str(data),
        "--arch",
        "small-cnn",
        "--weights",
        str(weights),
        "-o",
        str(out),
        "--workers",
        "0",
        "--batch-size",
        "2",
        "--chunk-size",
        "2",
        "--no-progress",
        *extra,
    ]


def test_kill_9_then_resume_equals_uninterrupted(tmp_path: Path, weights: Path) -> None:
    data = tmp_path / "images"
    make_images(data, n=150, seed=3)
    reference_out = tmp_path / "ref.h5"
    subprocess.run(_command(data, weights, reference_out), check=True, capture_output=True)
    out = tmp_path / "s.h5"
    parts = tmp_path / "s.h5.parts"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    killed_at = []
    for wanted in (3, 30):  # kill twice, at different points
        proc = subprocess.Popen(
            _command(data, weights, out),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if parts.exists() and len(list(parts.glob("chunk-*.npz"))) >= wanted:
                break
            time.sleep(0.005)
        if proc.poll() is not None:
            pytest.skip("the run finished before it could be killed")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed_at.append(len(list(parts.glob("chunk-*.npz"))))
        assert not out.exists()
        for chunk in parts.glob("chunk-*.npz"):  # every chunk under its final name is whole
            with np.load(chunk) as arrays:
                assert arrays["features"].shape[0] == 2
    assert killed_at[0] < killed_at[1] < 75
    result = subprocess.run(_command(data, weights, out), env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "resuming" in result.stderr
    got, want = read_store(out), read_store(reference_out)
    np.testing.assert_array_equal(got["ids"], want["ids"])
    np.testing.assert_array_equal(got["features"], want["features"])
    np.testing.assert_array_equal(got["norms"], want["norms"])
    assert not parts.exists()


def test_torchrun_two_processes_equal_one(tmp_path: Path, data: Path, weights: Path) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun not installed")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = tmp_path / "one.h5"
    subprocess.run(_command(data, weights, one, "--flip"), check=True, env=env, capture_output=True)
    two = tmp_path / "two.h5"
    cmd = _command(data, weights, two, "--flip")
    result = subprocess.run(
        [torchrun, "--standalone", "--nproc-per-node", "2", *cmd[1:]],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    a, b = read_store(one), read_store(two)
    for name in ("ids", "features", "norms", "features_flip", "norms_flip"):
        np.testing.assert_array_equal(a[name], b[name])


# -- bad inputs ---------------------------------------------------------------------------


def test_missing_image_in_list(tmp_path: Path, data: Path, weights: Path) -> None:
    listing = tmp_path / "files.txt"
    listing.write_text("person_0/img_0000.jpg\nperson_0/nope.jpg\n")
    out = tmp_path / "s.h5"
    result = run(
        "extract",
        data,
        "--list",
        listing,
        "--arch",
        "small-cnn",
        "--weights",
        weights,
        "-o",
        out,
        "--no-progress",
    )
    assert_user_error(result, "1 of 2", "person_0/nope.jpg")
    assert not out.exists()


@pytest.mark.parametrize(
    ("defect", "phrase"),
    [("truncated", "img_0003.jpg"), ("empty", "img_0003.jpg"), ("text", "img_0003.jpg")],
)
def test_bad_image_stops_then_skip_bad_records_it(
    tmp_path: Path, weights: Path, defect: str, phrase: str
) -> None:
    data = tmp_path / "images"
    ids = make_images(data, n=12)
    bad = data / "person_3/img_0003.jpg"
    assert "person_3/img_0003.jpg" in ids
    if defect == "truncated":
        bad.write_bytes(bad.read_bytes()[: len(bad.read_bytes()) // 2])
    elif defect == "empty":
        bad.write_bytes(b"")
    else:
        bad.write_text("this is not an image\n")
    out = tmp_path / "s.h5"
    args = [
        "extract",
        data,
        "--arch",
        "small-cnn",
        "--weights",
        weights,
        "-o",
        out,
        "--workers",
        "0",
        "--chunk-size",
        "2",
        "--batch-size",
        "2",
        "--no-progress",
    ]
    result = run(*args)
    assert_user_error(result, phrase, "--skip-bad")
    assert not out.exists()
    assert list((tmp_path / "s.h5.parts").glob("chunk-*.npz")), "finished chunks are kept"
    result = run(*args, "--skip-bad")
    assert result.exit_code == 0, (result.output, result.exception)
    assert "1 skipped" in result.stderr
    stored = read_store(out)
    assert [i.decode() for i in stored["skipped_ids"]] == ["person_3/img_0003.jpg"]
    assert "img_0003.jpg" in stored["skipped_reasons"][0].decode()
    assert len(stored["ids"]) == 11


def test_unknown_arch_and_unfit_weights(tmp_path: Path, data: Path) -> None:
    out = tmp_path / "s.h5"
    result = run("extract", data, "--arch", "resnet9000", "-o", out, "--no-progress")
    assert_user_error(result, "resnet9000", "small-cnn")
    torch.save({"conv.weight": torch.zeros(3, 3)}, tmp_path / "bad.pth")
    result = run(
        "extract",
        data,
        "--arch",
        "small-cnn",
        "--weights",
        tmp_path / "bad.pth",
        "-o",
        out,
        "--no-progress",
    )
    assert_user_error(result, "missing")
    assert not out.exists()


def test_landmarks_wrong_columns_named(tmp_path: Path, data: Path, weights: Path) -> None:
    marks = tmp_path / "marks.txt"
    marks.write_text(
        "person_0/img_0000.jpg 1 2 3 4 5 6 7 8 9 10\r\nperson_0/img_0007.png 1 2 3\r\n"
    )
    result = run(
        "extract",
        data,
        "--arch",
        "iresnet18",
        "--landmarks",
        marks,
        "-o",
        tmp_path / "s.h5",
        "--no-progress",
    )
    assert_user_error(result, "marks.txt:2")


def test_other_run_in_work_folder_is_refused(tmp_path: Path, data: Path, weights: Path) -> None:
    out = tmp_path / "s.h5"
    parts = tmp_path / "s.h5.parts"
    parts.mkdir()
    (parts / "job.json").write_text('{"job_version": 1, "model": "other"}')
    args = [
        "extract",
        data,
        "--arch",
        "small-cnn",
        "--weights",
        weights,
        "-o",
        out,
        "--workers",
        "0",
        "--no-progress",
    ]
    assert_user_error(run(*args), "unfinished extraction", "--overwrite")
    result = run(*args, "--overwrite")
    assert result.exit_code == 0, (result.output, result.exception)
    assert out.exists() and not parts.exists()


def test_existing_output_checked_first(tmp_path: Path, data: Path, weights: Path) -> None:
    out = tmp_path / "s.h5"
    out.write_text("precious")
    result = run("extract", data, "--arch", "small-cnn", "--weights", weights, "-o", out)
    assert_user_error(result, "--overwrite")
    assert out.read_text() == "precious"


def test_ctrl_c_keeps_finished_chunks_and_resumes(tmp_path: Path, weights: Path) -> None:
    data = tmp_path / "images"
    make_images(data, n=120, seed=4)
    out = tmp_path / "s.h5"
    parts = tmp_path / "s.h5.parts"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        _command(data, weights, out),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if parts.exists() and len(list(parts.glob("chunk-*.npz"))) >= 3:
            break
        time.sleep(0.005)
    if proc.poll() is not None:
        pytest.skip("the run finished before it could be interrupted")
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "Traceback" not in stderr
    assert not out.exists()
    done = len(list(parts.glob("chunk-*.npz")))
    assert 3 <= done < 60
    result = subprocess.run(_command(data, weights, out), env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"{done} of 60 chunks already done" in result.stderr
    reference_out = tmp_path / "ref.h5"
    subprocess.run(_command(data, weights, reference_out), env=env, check=True, capture_output=True)
    np.testing.assert_array_equal(
        read_store(out)["features"], read_store(reference_out)["features"]
    )
