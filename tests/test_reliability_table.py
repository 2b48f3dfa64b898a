"""docs/reliability.md: every row of every table that ends in a test column names tests that exist.

A reference is `` `file.py::test_name` `` or `` `file.py::test_name[case]` `` (relative to
``tests/``). The file must exist and define ``test_name`` at module level; a ``[case]``
must be one of the test's parametrized cases: each piece of it around a ``*`` wildcard must
appear in the test file (case ids are written there, or built there from pieces that are).
The "In figures" table must give the number of rows the tables hold.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reliability.md"
REFERENCE = re.compile(r"`([A-Za-z0-9_/]+\.py)::([A-Za-z_][A-Za-z0-9_]*)(?:\[([^\]`]*)\])?`")


@dataclass(frozen=True)
class Row:
    """A data row of a table whose last column is ``test``."""

    line: int
    cells: tuple[str, ...]


def split_cells(line: str) -> tuple[str, ...]:
    """The cells of a markdown table line (no ``|`` appears inside the cells of this page)."""
    return tuple(cell.strip() for cell in line.strip().strip("|").split("|"))


def rows_naming_tests(text: str) -> list[Row]:
    """Data rows of the tables whose header's last cell is ``test``."""
    rows: list[Row] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        if not lines[index].startswith("|"):
            index += 1
            continue
        start = index
        while index < len(lines) and lines[index].startswith("|"):
            index += 1
        header, *body = lines[start:index]
        assert body and set(body[0]) <= set("|-: "), f"line {start + 2}: no separator row"
        if split_cells(header)[-1] == "test":
            width = len(split_cells(header))
            for offset, line in enumerate(body[1:], start=start + 3):
                cells = split_cells(line)
                assert len(cells) == width, f"docs/reliability.md:{offset}: {len(cells)} cells"
                rows.append(Row(offset, cells))
    return rows


@cache
def functions_of(name: str) -> tuple[frozenset[str], str]:
    """Module-level test function names of ``tests/<name>`` and the file's text."""
    source = (ROOT / "tests" / name).read_text(encoding="utf-8")
    tree = ast.parse(source)
    names = {
        node.name
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.name.startswith("test_")
    }
    return frozenset(names), source


ROWS = rows_naming_tests(DOC.read_text(encoding="utf-8"))


def test_the_page_has_the_tables() -> None:
    assert len(ROWS) > 100


@pytest.mark.parametrize("row", ROWS, ids=[f"line-{row.line}" for row in ROWS])
def test_every_row_names_tests_that_exist(row: Row) -> None:
    references = REFERENCE.findall(row.cells[-1])
    assert references, f"docs/reliability.md:{row.line}: no test named in {row.cells[-1]!r}"
    for file, function, case in references:
        assert (ROOT / "tests" / file).is_file(), f"line {row.line}: no tests/{file}"
        names, source = functions_of(file)
        assert function in names, f"line {row.line}: tests/{file} has no {function}"
        for piece in case.split("*"):
            piece = piece.strip("-")
            assert piece in source, f"line {row.line}: no case {case!r} of {file}::{function}"


def test_the_figures_give_the_number_of_rows() -> None:
    text = DOC.read_text(encoding="utf-8")
    match = re.search(r"^\| rows in the tables below[^|]*\| (\d[\d,]*) \|", text, re.MULTILINE)
    assert match, "the 'In figures' table gives no number of rows"
    assert int(match.group(1).replace(",", "")) == len(ROWS)
