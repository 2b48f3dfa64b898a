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


#: What protocols/ may use of the engine: errors, file reading, the on-disk cache.
PROTOCOL_ENGINE_MODULES = {"facebench.errors", "facebench.fileio", "facebench.cache"}


def test_protocols_import_only_errors_fileio_and_cache_of_the_engine():
    used = set()
    for path in (ROOT / "protocols").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "facebench":
                names = {f"facebench.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("facebench"):
                names = {str(node.module)}
            elif isinstance(node, ast.Import):
                names = {a.name for a in node.names if a.name.startswith("facebench")}
            else:
                continue
            assert names <= PROTOCOL_ENGINE_MODULES, (path.name, names)
            used |= names
    assert used == PROTOCOL_ENGINE_MODULES  # the rule names nothing protocols do not use


@pytest.mark.parametrize("module", sorted(PROTOCOL_ENGINE_MODULES))
def test_what_protocols_use_of_the_engine_uses_nothing_else(module: str) -> None:
    """Importing protocols/ must not pull in the engine: the modules they may use import
    no other facebench module (the package's __init__ aside)."""
    path = ROOT / (module.replace(".", "/") + ".py")
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("facebench"):
            named = (
                {f"facebench.{a.name}" for a in node.names}
                if node.module == "facebench"
                else {node.module}
            )
            assert named <= PROTOCOL_ENGINE_MODULES, (module, named)
