"""`facebench demo` (what `make demo` runs), shortened to one epoch: every output exists and
the comparison covers the four variants on both protocols."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from facebench.cli import cli
from facebench.experiment import VARIANTS


def test_demo_one_epoch(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", "--out", str(out), "--epochs", "1"])
    assert result.exit_code == 0, (result.output, result.exception)
    for protocol in ("lfw", "ijba"):
        comparison = json.loads((out / f"compare-{protocol}.json").read_text())
        text = json.dumps(comparison)
        for name, _, _ in VARIANTS:
            assert name in text
            report = json.loads((out / f"{name}.{protocol}.json").read_text())
            assert report["protocol"] == ("lfw" if protocol == "lfw" else "ijba")
        assert (out / f"roc-{protocol}.png").read_bytes()[:4] == b"\x89PNG"
        assert (out / f"compare-{protocol}.md").read_text().count("|") > 10
    lfw = json.loads((out / "softmax.lfw.json").read_text())
    assert lfw["n_pairs"] == 6000 and len(lfw["accuracy"]["folds"]) == 10
    ijba = json.loads((out / "softmax.ijba.json").read_text())
    assert len(ijba["splits"]) == 10
    for name in ("norms-softmax.png", "features-2d.png", "README.md"):
        assert (out / name).exists()
    # an existing, non-empty output folder is not reused without --overwrite
    again = CliRunner().invoke(cli, ["demo", "--out", str(out), "--epochs", "1"])
    assert again.exit_code == 2 and "--overwrite" in again.stderr
