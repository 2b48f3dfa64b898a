"""The data flow of STYLE.md, checked: metrics import nothing of the layers to their right,
and the command line does not pay for torch or matplotlib."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("h5py", "click", "rich", "matplotlib", "torch")


def loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return set(out.stdout.split())


def test_metrics_are_pure_numpy():
    modules = loaded_after("import facebench.metrics, facebench.metrics.compat")
    assert not {m for m in modules if m.split(".")[0] in HEAVY}


def test_cli_does_not_import_torch_or_matplotlib():
    modules = loaded_after("import facebench.cli")
    assert not {m for m in modules if m.split(".")[0] in ("torch", "matplotlib")}


@pytest.mark.parametrize("path", sorted((ROOT / "facebench" / "metrics").glob("*.py")))
def test_metrics_modules_import_only_metrics_errors_and_numerics(path: Path):
    allowed_top = {
        "numpy",
        "scipy",
        "math",
        "fractions",
        "dataclasses",
        "collections",
        "typing",
        "__future__",
        "functools",
        "itertools",
        "concurrent",  # threads for numpy kernels that release the GIL (the counts core's sort)
    }
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            ok = (
                name.split(".")[0] in allowed_top
                or name.startswith("facebench.metrics")
                or name == "facebench.errors"
            )
            assert ok, f"{path.name} imports {name}"


def test_only_store_touches_h5py():
    users = [
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "facebench").rglob("*.py")
        if "import h5py" in p.read_text()
    ]
    assert users == ["facebench/store.py"]


def test_protocols_import_only_errors_and_fileio_of_the_engine():
    for path in (ROOT / "protocols").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("facebench")
            ):
                assert node.module in ("facebench.errors", "facebench.fileio"), path.name
