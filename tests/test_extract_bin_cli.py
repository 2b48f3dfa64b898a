"""`facebench extract FILE.bin` on the command line: the .bin's images become a store that
`verify --protocol bin` reads; another kind of file as ROOT is a clear error."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from cli_helpers import assert_user_error, run
from PIL import Image

from facebench.store import FeatureStore


def _jpegs(n: int) -> list[bytes]:
    import io

    rng = np.random.default_rng(5)
    out = []
    for _ in range(n):
        buffer = io.BytesIO()
        pixels = rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(buffer, format="JPEG")
        out.append(buffer.getvalue())
    return out


def test_extract_a_bin_from_the_command_line_then_verify(tmp_path: Path) -> None:
    import torch

    from facebench.models.registry import ARCHITECTURES

    images = _jpegs(24)
    bin_path = tmp_path / "calfw.bin"
    bin_path.write_bytes(pickle.dumps((images, [True, False] * 6), protocol=2))
    torch.manual_seed(0)
    weights = tmp_path / "w.pth"
    torch.save(ARCHITECTURES["small-cnn"].build().state_dict(), weights)
    out = tmp_path / "calfw.h5"
    result = run(
        "extract",
        bin_path,
        "--arch",
        "small-cnn",
        "--weights",
        weights,
        "-o",
        out,
        "--workers",
        "0",
        "--no-progress",
    )
    assert result.exit_code == 0, result.output
    with FeatureStore.open(out) as store:
        assert sorted(store.ids) == sorted(f"calfw.bin#{i}" for i in range(24))
    report = tmp_path / "r.json"
    result = run(
        "verify", "--protocol", "bin", "--bin", bin_path, "--features", out, "--json", report
    )
    assert result.exit_code == 0, result.output
    assert report.is_file()


def test_another_file_as_root_is_a_user_error(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not images\n", encoding="utf-8")
    result = run("extract", text, "--arch", "small-cnn", "-o", tmp_path / "o.h5")
    assert_user_error(result, "folder or an insightface .bin file")
