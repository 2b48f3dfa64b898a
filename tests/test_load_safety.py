"""Safety of what facebench loads: no code from checkpoints, no path out of the dataset
root, no decompression bomb.

- A weights file whose unpickling would call code (here a function that creates a marker
  file) is refused before anything runs, naming what it would import and call;
  ``--trust-checkpoint`` loads it (the code runs) with a warning.
- Image paths from protocol files, list files and side files that are absolute or leave the
  dataset root (``..``) are refused with the file and line, before any image is opened.
- An image larger than ``--max-image-pixels`` (default Pillow's limit) is refused from its
  header, naming the file, its size and the option.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import assert_user_error
from click.testing import CliRunner, Result
from ijba_fixtures import write_ijba
from ijbc_fixtures import write_ijbc
from PIL import Image

from facebench.cli import cli
from facebench.extract.preprocess import ImageError, decode_image
from facebench.models.loaders import ModelError, load_model, pickle_globals
from facebench.models.registry import ARCHITECTURES
from facebench.store import FeatureStore

MODULE = __name__  # how unpickling finds _touch: tests/ is on sys.path


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def _touch(path: str) -> str:
    """What a malicious checkpoint would do: anything; here, create a file."""
    Path(path).write_text("code ran")
    return path


class Payload:
    """Unpickling this calls ``_touch(marker)``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (_touch, (str(self.marker),))


@pytest.fixture(scope="module")
def state_dict() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return ARCHITECTURES["small-cnn"].build().state_dict()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(4):
        pixels = rng.integers(0, 256, size=(20, 18, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"{i}.png")
    return root


def extract(root: Path, out: Path, *extra: str | Path) -> Result:
    return run(
        "extract", root, "-o", out, "--workers", "0", "--device", "cpu", "--no-progress",
        *extra,
    )  # fmt: skip


# --- checkpoints that need code -----------------------------------------------------------------


def test_a_checkpoint_that_needs_code_is_refused_naming_the_code(
    tmp_path: Path, images: Path, state_dict: dict[str, torch.Tensor]
) -> None:
    marker = tmp_path / "pwned"
    weights = tmp_path / "evil.pth"
    torch.save({"state_dict": state_dict, "extra": Payload(marker)}, weights)
    result = extract(images, tmp_path / "s.h5", "--arch", "small-cnn", "--weights", weights)
    assert_user_error(
        result,
        f"{weights}: loading it would need Python code",
        f"{MODULE}._touch",
        "never unpickles code",
        "--trust-checkpoint",
    )
    assert not marker.exists() and not (tmp_path / "s.h5").exists()


def test_trust_checkpoint_loads_it_and_warns(
    tmp_path: Path, images: Path, state_dict: dict[str, torch.Tensor]
) -> None:
    marker = tmp_path / "pwned"
    weights = tmp_path / "evil.pth"
    torch.save({"state_dict": state_dict, "extra": Payload(marker)}, weights)
    out = tmp_path / "s.h5"
    args = ("--arch", "small-cnn", "--weights", weights, "--trust-checkpoint")
    result = extract(images, out, *args)
    assert result.exit_code == 0, result.output
    assert f"WARNING: --trust-checkpoint: loading {weights}" in result.stderr
    assert f"imports and runs {MODULE}._touch" in result.stderr
    assert marker.read_text() == "code ran"  # the flag means it: the code did run
    with FeatureStore.open(out) as store:
        assert store.info.n_items == 4


def test_trust_checkpoint_takes_a_pickled_model(tmp_path: Path) -> None:
    torch.manual_seed(1)
    module = ARCHITECTURES["small-cnn"].build().eval()
    weights = tmp_path / "whole.pth"
    torch.save(module, weights)
    code = r"imports and calls facebench\.models\.small_cnn\.SmallCNN"
    with pytest.raises(ModelError, match=code):
        load_model(arch="small-cnn", weights=weights, log=lambda message: None)
    notes: list[str] = []
    model = load_model(arch="small-cnn", weights=weights, log=notes.append, trust_checkpoint=True)
    batch = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(batch), module(batch))
    assert any(note.startswith("WARNING: --trust-checkpoint") for note in notes)


def test_a_plain_state_dict_needs_no_trust(
    tmp_path: Path, state_dict: dict[str, torch.Tensor]
) -> None:
    weights = tmp_path / "w.pth"
    torch.save(state_dict, weights)
    notes: list[str] = []
    load_model(arch="small-cnn", weights=weights, log=notes.append, trust_checkpoint=True)
    assert not any("WARNING" in note for note in notes)  # the safe load sufficed


def test_pickle_globals_reads_without_running(
    tmp_path: Path, state_dict: dict[str, torch.Tensor]
) -> None:
    marker = tmp_path / "pwned"
    for protocol in (2, 4):  # GLOBAL (protocol 2) and STACK_GLOBAL with memo (protocol 4)
        path = tmp_path / f"evil{protocol}.pkl"
        path.write_bytes(
            pickle.dumps([Payload(marker), Payload(marker), os.system], protocol=protocol)
        )
        assert pickle_globals(path) == [f"{MODULE}._touch", f"{os.name}.system"]
    zipped = tmp_path / "evil.pth"
    torch.save({"a": Payload(marker)}, zipped)
    assert f"{MODULE}._touch" in pickle_globals(zipped)
    legacy = tmp_path / "legacy.pth"
    torch.save(state_dict, legacy, _use_new_zipfile_serialization=False)
    assert "torch._utils._rebuild_tensor_v2" in pickle_globals(legacy)
    assert not marker.exists()
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x80\x04\x95garbage")
    assert pickle_globals(garbage) == []


# --- paths that leave the dataset root ----------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "phrase"),
    [
        ("../outside.png", "which leaves it ('..')"),
        ("a/../../outside.png", "which leaves it ('..')"),
        ("/etc/passwd", "Expected a relative id"),
        ("C:/data/x.png", "the absolute path"),
    ],
)
def test_list_file_paths_that_leave_the_root(
    tmp_path: Path, images: Path, line: str, phrase: str
) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text(f"0.png\n{line}\n1.png\n")
    result = extract(images, tmp_path / "s.h5", "--list", listing, "--arch", "small-cnn")
    assert_user_error(result, f"{listing}:2: ", phrase)


def test_side_file_paths_that_leave_the_root(tmp_path: Path, images: Path) -> None:
    boxes = tmp_path / "boxes.txt"
    boxes.write_text("0.png 1 1 10 10\n../../x.png 1 1 10 10\n")
    result = extract(images, tmp_path / "s.h5", "--boxes", boxes, "--arch", "small-cnn")
    assert_user_error(result, f"{boxes}:2: ", "which leaves it")


def test_ijba_file_column_that_leaves_the_root(tmp_path: Path, images: Path) -> None:
    record = write_ijba(tmp_path / "ijba", n_splits=1, n_subjects=3, with_1n=False)
    metadata = Path(str(record["root"])) / record["files"][0]
    lines = metadata.read_bytes().split(b"\r\n")
    fields = lines[2].split(b",")
    fields[2] = b"../../../etc/passwd"
    lines[2] = b",".join(fields)
    metadata.write_bytes(b"\r\n".join(lines))
    result = extract(
        images, tmp_path / "s.h5", "--protocol", "ijba", "--protocol-dir", record["root"],
        "--arch", "small-cnn",
    )  # fmt: skip
    assert_user_error(result, f"{metadata}:3: ", "Expected FILE relative to the IJB-A image")


def test_ijbc_image_name_that_leaves_the_root(tmp_path: Path) -> None:
    record = write_ijbc(tmp_path / "ijbc", n_subjects=4, templates_per_subject=2)
    root = Path(str(record["root"]))
    for kind in ("tid_mid", "landmarks"):  # the same name in both files, as the release has
        path = root / record["files"][kind]
        text = path.read_text().replace("\n3.jpg ", "\n../../../outside.jpg ", 1)
        path.write_text(text)
    tid_mid = root / record["files"]["tid_mid"]
    result = extract(root, tmp_path / "s.h5", "--protocol", "ijbc", "--arch", "small-cnn")
    assert_user_error(result, f"{tid_mid}:3: ", "which leaves it ('..')")


def test_a_symbolic_link_inside_the_root_is_followed(tmp_path: Path, images: Path) -> None:
    """The rule is lexical: a protocol line cannot leave the root, but a link that the
    dataset's owner placed inside it is theirs to place (docs/reliability.md)."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "linked").symlink_to(images, target_is_directory=True)
    listing = tmp_path / "list.txt"
    listing.write_text("linked/0.png\nlinked/1.png\n")
    out = tmp_path / "s.h5"
    result = extract(root, out, "--list", listing, "--arch", "small-cnn")
    assert result.exit_code == 0, result.output
    with FeatureStore.open(out) as store:
        assert store.ids == ["linked/0.png", "linked/1.png"]


# --- decompression bombs ----------------------------------------------------------------------


def test_an_image_over_the_limit_is_refused_from_its_header(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.new("RGB", (120, 90)).save(path)
    with pytest.raises(ImageError) as info:
        decode_image(path, max_pixels=5000)
    message = str(info.value)
    assert message.startswith(f"{path}: image too large (10800 pixels; the limit is 5000")
    assert "the image is 120 x 90" in message and "--max-image-pixels" in message
    assert decode_image(path, max_pixels=10800).shape == (90, 120, 3)
    assert Image.MAX_IMAGE_PIXELS == 89478485  # the call changed nothing global


def test_the_default_limit_is_pillows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "img.png"
    Image.new("L", (30, 30)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 800)
    with pytest.raises(ImageError, match="the limit is 800 pixels"):
        decode_image(path)


def test_max_image_pixels_option(tmp_path: Path, images: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    for name in ("0.png", "1.png"):
        (root / name).write_bytes((images / name).read_bytes())
    Image.new("RGB", (200, 150)).save(root / "huge.png")
    out = tmp_path / "s.h5"
    common = ("--arch", "small-cnn", "--max-image-pixels", "10000")
    result = extract(root, out, *common)
    assert_user_error(
        result,
        f"{root / 'huge.png'}: image too large (30000 pixels; the limit is 10000",
        "the image is 200 x 150",
        "--max-image-pixels",
        "--skip-bad",
    )
    result = extract(root, out, *common, "--skip-bad", "--overwrite")
    assert result.exit_code == 0, result.output
    with FeatureStore.open(out) as store:
        assert store.ids == ["0.png", "1.png"] and list(store.skipped()) == ["huge.png"]
    result = extract(root, out, "--arch", "small-cnn", "--max-image-pixels", "30000", "--overwrite")
    assert result.exit_code == 0, result.output


def test_max_image_pixels_must_be_positive(tmp_path: Path, images: Path) -> None:
    result = extract(images, tmp_path / "s.h5", "--arch", "small-cnn", "--max-image-pixels", "0")
    assert result.exit_code == 2 and "--max-image-pixels" in result.stderr
