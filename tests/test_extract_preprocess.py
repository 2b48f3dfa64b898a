"""Decoding (every Pillow mode, EXIF orientation, broken files) and the preprocessing steps,
checked by hand on tiny images."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from facebench.errors import FacebenchError
from facebench.extract.align import TEMPLATES, align
from facebench.extract.preprocess import (
    PREPROCESSING_VERSION,
    PRESETS,
    ImageError,
    Preprocessing,
    PreprocessingError,
    decode_image,
    flip_horizontal,
    load_item,
    preprocess,
)
from facebench.extract.sources import Item

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (4, 6, 3), dtype=np.uint8)


def save(image: Image.Image, path: Path, **options: object) -> Path:
    image.save(path, **options)
    return path


# --- decoding ---------------------------------------------------------------------------


def test_rgb_png_and_bmp_are_exact(tmp_path: Path):
    for name in ("a.png", "a.bmp"):
        decoded = decode_image(save(Image.fromarray(RGB), tmp_path / name))
        assert decoded.dtype == np.uint8 and decoded.shape == (4, 6, 3)
        np.testing.assert_array_equal(decoded, RGB)


def test_gray_and_bilevel(tmp_path: Path):
    gray = RGB[:, :, 0]
    decoded = decode_image(save(Image.fromarray(gray), tmp_path / "l.png"))
    np.testing.assert_array_equal(decoded, np.repeat(gray[:, :, None], 3, axis=2))
    bits = Image.fromarray(gray > 128).convert("1")
    assert bits.mode == "1"
    decoded = decode_image(save(bits, tmp_path / "1.png"))
    np.testing.assert_array_equal(decoded[:, :, 1], np.where(gray > 128, 255, 0))


def test_rgba_and_la_are_composited_on_black(tmp_path: Path):
    rgba = np.array([[[200, 100, 50, 128], [255, 255, 255, 0], [10, 20, 30, 255]]], np.uint8)
    decoded = decode_image(save(Image.fromarray(rgba), tmp_path / "rgba.png"))
    # round(200 * 128 / 255) = 100, round(100 * 128 / 255) = 50, round(50 * 128 / 255) = 25
    assert decoded.tolist() == [[[100, 50, 25], [0, 0, 0], [10, 20, 30]]]
    la = Image.fromarray(np.array([[[200, 128], [90, 255]]], np.uint8), mode="LA")
    decoded = decode_image(save(la, tmp_path / "la.png"))
    assert decoded.tolist() == [[[100] * 3, [90] * 3]]


def test_palette_with_and_without_transparency(tmp_path: Path):
    palette = Image.new("P", (3, 1))
    palette.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 759)
    palette.putdata([0, 1, 2])
    decoded = decode_image(save(palette, tmp_path / "p.png"))
    assert decoded.tolist() == [[[255, 0, 0], [0, 255, 0], [0, 0, 255]]]
    decoded = decode_image(save(palette, tmp_path / "t.png", transparency=1))
    assert decoded.tolist() == [[[255, 0, 0], [0, 0, 0], [0, 0, 255]]]
    decoded = decode_image(save(palette, tmp_path / "p.gif"))
    assert decoded.tolist() == [[[255, 0, 0], [0, 255, 0], [0, 0, 255]]]


@pytest.mark.parametrize("suffix", [".tif", ".jpg"])
def test_cmyk_follows_pillow(tmp_path: Path, suffix: str):
    path = save(Image.fromarray(RGB).convert("CMYK"), tmp_path / f"c{suffix}")
    with Image.open(path) as image:
        assert image.mode == "CMYK"
        expected = np.asarray(image.convert("RGB"))
    np.testing.assert_array_equal(decode_image(path), expected)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_sixteen_bit_gray_is_scaled_to_the_full_range(tmp_path: Path, suffix: str):
    values = np.array([[0, 128, 129, 257 * 100, 65535]], dtype=np.uint16)
    path = save(Image.fromarray(values), tmp_path / f"g16{suffix}")
    with Image.open(path) as image:
        assert image.mode.startswith("I;16")
    assert decode_image(path)[:, :, 2].tolist() == [[0, 0, 1, 100, 255]]


def test_32_bit_int_and_float(tmp_path: Path):
    ints = np.array([[0, 257 * 7, 65535]], dtype=np.int32)
    assert decode_image(save(Image.fromarray(ints), tmp_path / "i.tif"))[0, :, 0].tolist() == [
        0,
        7,
        255,
    ]
    floats = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    assert decode_image(save(Image.fromarray(floats), tmp_path / "f.tif"))[0, :, 0].tolist() == [
        0,
        128,
        255,
    ]
    for name, bad in (("neg.tif", ints - 1), ("big.tif", floats * 2)):
        path = save(Image.fromarray(bad), tmp_path / name)
        with pytest.raises(ImageError, match="convert the image to 8-bit") as info:
            decode_image(path)
        assert str(info.value).startswith(f"{path}: expected")


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_exif_orientation_is_applied(tmp_path: Path, suffix: str):
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: rotate 90 degrees clockwise to display
    path = save(Image.fromarray(RGB), tmp_path / f"o{suffix}", exif=exif, quality=95)
    with Image.open(path) as image:
        stored = np.asarray(image.convert("RGB"))
    decoded = decode_image(path)
    assert decoded.shape == (6, 4, 3)
    np.testing.assert_array_equal(decoded, np.rot90(stored, -1))  # same pixels, turned
    if suffix == ".png":
        np.testing.assert_array_equal(decoded, np.rot90(RGB, -1))


def broken_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, words expected in the error)."""
    jpeg = save(
        Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)), folder / "f.jpg"
    )
    png = save(Image.fromarray(RGB), folder / "f.png").read_bytes()
    files = {}
    (folder / "empty.jpg").write_bytes(b"")
    files["empty"] = (folder / "empty.jpg", "empty file (0 bytes)")
    (folder / "half.jpg").write_bytes(jpeg.read_bytes()[: jpeg.stat().st_size // 2])
    files["truncated"] = (folder / "half.jpg", "cannot decode JPEG image (image file is truncated")
    (folder / "text.jpg").write_text("not a picture\n")
    files["text"] = (folder / "text.jpg", "not an image (no known image format)")
    header_crc = bytearray(png)
    header_crc[29] ^= 0xFF  # the CRC of IHDR (8-byte signature, 8-byte chunk head, 13 bytes)
    (folder / "crc.png").write_bytes(bytes(header_crc))
    files["header crc"] = (folder / "crc.png", "cannot decode PNG image")
    data = bytearray(png)
    at = png.index(b"IDAT") + 6
    data[at : at + 2] = bytes([data[at] ^ 0xFF, data[at + 1] ^ 0x55])
    (folder / "data.png").write_bytes(bytes(data))
    files["corrupt data"] = (folder / "data.png", "cannot decode PNG image")
    files["missing"] = (folder / "nope.jpg", "no such file")
    (folder / "dir.jpg").mkdir()
    files["folder"] = (folder / "dir.jpg", "not a regular file")
    return files


def test_broken_files_raise_image_errors_naming_the_path(tmp_path: Path):
    for path, words in broken_files(tmp_path).values():
        with pytest.raises(ImageError) as info:
            decode_image(path)
        assert str(info.value).startswith(f"{path}: ")
        assert words in str(info.value)
        assert info.value.path == str(path) and words in info.value.reason
        assert isinstance(info.value, FacebenchError)


def test_image_error_survives_pickling(tmp_path: Path):
    with pytest.raises(ImageError) as info:
        decode_image(tmp_path / "nope.jpg")
    copy = pickle.loads(pickle.dumps(info.value))
    assert str(copy) == str(info.value) and copy.path == info.value.path
    assert str(ImageError("one string")) == "one string"  # what DataLoader re-raises


@pytest.mark.parametrize(("side", "pixels"), [(12, 144), (20, 400)])
def test_decompression_bomb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, side: int, pixels):
    path = save(Image.new("L", (side, side)), tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageError) as info:
        decode_image(path)
    assert str(info.value).startswith(
        f"{path}: image too large ({pixels} pixels; the limit is 100 pixels"
    )


# --- preprocessing ----------------------------------------------------------------------

TINY = np.array([[[0, 51, 255], [102, 153, 204]], [[255, 0, 0], [10, 20, 30]]], dtype=np.uint8)


def test_numbers_by_hand():
    out = preprocess(TINY, Preprocessing())
    assert out.dtype == np.float32 and out.shape == (3, 2, 2) and out.flags.c_contiguous
    # (v / 255 - 0.5) / 0.5: 0 -> -1, 51 -> -0.6, 255 -> 1
    np.testing.assert_allclose(out[:, 0, 0], [-1.0, -0.6, 1.0], atol=1e-6)
    np.testing.assert_allclose(out[0], (TINY[:, :, 0] / 255 - 0.5) / 0.5, atol=1e-6)
    config = Preprocessing(bgr=True, mean=(0.0, 0.1, 0.2), std=(1.0, 0.5, 0.25))
    out = preprocess(TINY, config)
    # channel 0 is blue now: (255/255 - 0) / 1 = 1; channel 1 green (0.2 - 0.1) / 0.5 = 0.2;
    # channel 2 red (0 - 0.2) / 0.25 = -0.8
    np.testing.assert_allclose(out[:, 0, 0], [1.0, 0.2, -0.8], atol=1e-6)
    face_resnet = PRESETS["face-resnet-112x96"]
    np.testing.assert_allclose(
        preprocess(TINY, face_resnet.with_overrides(image_size=None))[0],
        (TINY[:, :, 0].astype(float) - 127.5) / 128,
        atol=1e-6,
    )


def test_resize_only_when_the_size_differs():
    same = preprocess(TINY, Preprocessing(image_size=(2, 2)))
    np.testing.assert_array_equal(same, preprocess(TINY, Preprocessing()))
    big = preprocess(TINY, Preprocessing(image_size=(4, 6)))
    expected = np.asarray(Image.fromarray(TINY).resize((6, 4), Image.Resampling.BILINEAR))
    assert big.shape == (3, 4, 6)
    np.testing.assert_allclose(big, (expected.transpose(2, 0, 1) / 255 - 0.5) / 0.5, atol=1e-6)


def test_center_crop():
    wide = RNG.integers(0, 256, (4, 8, 3), dtype=np.uint8)
    out = preprocess(wide, Preprocessing(image_size=(4, 4), crop="center"))
    np.testing.assert_allclose(out, preprocess(wide[:, 2:6], Preprocessing()), atol=0)
    tall = RNG.integers(0, 256, (9, 3, 3), dtype=np.uint8)
    out = preprocess(tall, Preprocessing(image_size=(2, 2), crop="center"))
    squeezed = np.asarray(Image.fromarray(tall[3:6]).resize((2, 2), Image.Resampling.BILINEAR))
    np.testing.assert_allclose(out, preprocess(squeezed, Preprocessing()), atol=0)
    # without image_size there is no aspect to crop to
    assert preprocess(wide, Preprocessing(crop="center")).shape == (3, 4, 8)


def test_box_crop_with_margin_and_zero_padding():
    image = RNG.integers(1, 256, (6, 6, 3), dtype=np.uint8)  # no zeros inside
    plain = Preprocessing()
    out = preprocess(image, plain.with_overrides(box_margin=0.5), box=(1, 1, 2, 2))
    np.testing.assert_array_equal(out, preprocess(image[0:4, 0:4], plain))
    # rows and columns -1 .. 2: one row and column of zeros (black) outside the image
    out = preprocess(image, plain.with_overrides(box_margin=0.5), box=(0, 0, 2, 2))
    padded = np.zeros((4, 4, 3), np.uint8)
    padded[1:, 1:] = image[:3, :3]
    np.testing.assert_array_equal(out, preprocess(padded, plain))
    np.testing.assert_allclose(out[:, 0, :], -1.0)
    # fractional boxes round to the nearest pixel edge
    out = preprocess(image, plain, box=(1.4, 0.6, 2.2, 3.0))
    np.testing.assert_array_equal(out, preprocess(image[1:4, 1:4], plain))


@pytest.mark.parametrize(
    "box", [(10, 0, 2, 2), (0, 0, 0, 2), (-5, -5, 4, 4), (0, 0, float("nan"), 1)]
)
def test_bad_boxes(box):
    with pytest.raises(ImageError, match="face box"):
        preprocess(RGB, Preprocessing(), box=box)


def test_landmarks_align_first_and_need_a_template():
    photo = RNG.integers(0, 256, (250, 250, 3), dtype=np.uint8)
    points = TEMPLATES["arcface112"][0] * 1.5 + 20
    config = PRESETS["arcface112"]
    out = preprocess(photo, config, landmarks=points.reshape(-1), box=(0, 0, 5, 5))
    assert out.shape == (3, 112, 112)
    aligned = align(photo, points, "arcface112")
    np.testing.assert_array_equal(out, preprocess(aligned, Preprocessing()))
    with pytest.raises(PreprocessingError, match="alignment template"):
        preprocess(photo, PRESETS["none"], landmarks=points.reshape(-1))
    with pytest.raises(ImageError, match="cannot align"):
        preprocess(photo, config, landmarks=(5.0,) * 10)


def test_load_item(tmp_path: Path):
    path = save(Image.fromarray(RGB), tmp_path / "a.png")
    item = Item("a.png", path, box=(1, 1, 2, 2))
    np.testing.assert_array_equal(
        load_item(item, Preprocessing()), preprocess(RGB[1:3, 1:3], Preprocessing())
    )
    bad = Item("a.png", path, box=(100, 100, 2, 2))
    with pytest.raises(ImageError) as info:
        load_item(bad, Preprocessing())
    assert str(info.value).startswith(f"{path}: Expected a face box")
    with pytest.raises(ImageError, match="no such file"):
        load_item(Item("b.png", tmp_path / "b.png"), Preprocessing())


def test_flip_horizontal():
    tensor = preprocess(RGB, Preprocessing())
    flipped = flip_horizontal(tensor)
    assert flipped.flags.c_contiguous and not np.shares_memory(flipped, tensor)
    np.testing.assert_array_equal(flipped[:, :, 0], tensor[:, :, -1])
    np.testing.assert_array_equal(flip_horizontal(flipped), tensor)
    with pytest.raises(PreprocessingError):
        flip_horizontal(tensor[0])


# --- the configuration ------------------------------------------------------------------

finite = st.floats(-10, 10, allow_nan=False)
configs = st.builds(
    Preprocessing,
    name=st.text(min_size=1, max_size=20),
    image_size=st.none() | st.tuples(st.integers(1, 1024), st.integers(1, 1024)),
    crop=st.sampled_from(["none", "center"]),
    bgr=st.booleans(),
    mean=st.tuples(finite, finite, finite),
    std=st.tuples(*[st.floats(1e-6, 10)] * 3),
    box_margin=st.floats(0, 2),
    align_template=st.none() | st.sampled_from(sorted(TEMPLATES)),
)


@given(configs)
def test_config_round_trip(config: Preprocessing):
    data = config.to_dict()
    assert Preprocessing.from_dict(data) == config
    assert Preprocessing.from_dict(json.loads(json.dumps(data))) == config


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets(name: str):
    preset = PRESETS[name]
    assert preset.name == name and preset.version == PREPROCESSING_VERSION
    assert Preprocessing.from_dict(json.loads(json.dumps(preset.to_dict()))) == preset
    if preset.align_template is not None:
        assert TEMPLATES[preset.align_template][1] == preset.image_size


def test_preset_numbers():
    arcface = PRESETS["arcface112"]
    assert (arcface.image_size, arcface.mean, arcface.std, arcface.bgr) == (
        (112, 112),
        (0.5,) * 3,
        (0.5,) * 3,
        False,
    )
    resnet = PRESETS["face-resnet-112x96"]
    assert resnet.image_size == (112, 96) and resnet.align_template == "face-resnet-112x96"
    assert resnet.mean == (127.5 / 255,) * 3 and resnet.std == (128 / 255,) * 3
    assert PRESETS["none"].image_size is None


def test_overrides():
    preset = PRESETS["arcface112"]
    assert preset.with_overrides() is preset
    assert preset.with_overrides(bgr=False) is preset
    changed = preset.with_overrides(bgr=True)
    assert changed.name == "arcface112+custom" and changed.bgr
    assert changed.with_overrides(box_margin=0.1).name == "arcface112+custom"
    assert preset.with_overrides(bgr=True, name="mine").name == "mine"


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"colour": "rgb"}, "unknown \\['colour'\\]"),
        ({"version": 2}, "version 1, but got 2"),
        ({"crop": "random"}, "crop in"),
        ({"std": [1, 0, 1]}, "std > 0"),
        ({"mean": [0.5, 0.5]}, "mean as 3 finite numbers"),
        ({"image_size": [112, 0]}, "image_size"),
        ({"box_margin": -0.1}, "box_margin >= 0"),
        ({"align_template": "dlib68"}, "align_template in"),
        ({"bgr": "yes"}, "bgr true or false"),
    ],
)
def test_from_dict_rejects(data: dict[str, object], words: str):
    with pytest.raises(PreprocessingError, match=words):
        Preprocessing.from_dict({**PRESETS["none"].to_dict(), **data})
