"""The command line meets users where they are: ``--version``, shell completion, an example
in every command's ``--help``, and ``facebench protocols`` listing what each protocol reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_helpers import run
from ijba_fixtures import write_ijba
from ijbc_fixtures import file_names

from facebench import __version__
from facebench.cli import cli
from facebench.cli.protocols_cmd import EXPECTS
from protocols import PROTOCOLS, ijba

ROOT = Path(__file__).resolve().parents[1]


def facebench_process(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m facebench`` (the console script's entry point) in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "facebench", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def test_version_prints_name_and_version() -> None:
    result = run("--version")
    assert result.exit_code == 0
    assert result.stdout == f"facebench {__version__}\n"
    assert __version__.count(".") == 2


@pytest.mark.parametrize(
    ("shell", "marker"),
    [
        ("bash", "complete -o nosort -F _facebench_completion facebench"),
        ("zsh", "#compdef facebench"),
        ("fish", "complete --no-files --command facebench"),
    ],
)
def test_completion_script_is_printed(shell: str, marker: str) -> None:
    result = facebench_process({"_FACEBENCH_COMPLETE": f"{shell}_source"})
    assert result.returncode == 0, result.stderr
    assert marker in result.stdout


def test_completion_completes_commands_and_choices() -> None:
    commands = facebench_process(
        {"_FACEBENCH_COMPLETE": "bash_complete", "COMP_WORDS": "facebench ins", "COMP_CWORD": "1"}
    )
    assert commands.stdout.split() == ["plain,inspect"]
    formats = facebench_process(
        {
            "_FACEBENCH_COMPLETE": "bash_complete",
            "COMP_WORDS": "facebench scores --format ",
            "COMP_CWORD": "3",
        }
    )
    assert formats.stdout.split() == ["plain,csv", "plain,bob", "plain,pyeer"]


def test_readme_documents_completion() -> None:
    text = (ROOT / "README.md").read_text()
    assert "## Shell completion" in text
    for shell in ("bash", "zsh", "fish"):
        assert f"_FACEBENCH_COMPLETE={shell}_source facebench" in text


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_command_help_has_an_example(name: str) -> None:
    result = run(name, "--help")
    assert result.exit_code == 0, result.output
    assert "Example" in result.stdout, f"`facebench {name} --help` shows no example"
    example = result.stdout.split("Example", 1)[1]
    assert f"facebench {name}" in example, f"`facebench {name} --help`: the example does not run it"


def test_protocols_lists_every_registered_protocol() -> None:
    assert set(EXPECTS) == set(PROTOCOLS)  # a new protocol must say what it reads
    result = run("protocols", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == list(PROTOCOLS)
    for row in rows:
        spec = PROTOCOLS[row["name"]]
        assert (row["kind"], row["description"]) == (spec.kind, spec.description)
        assert row["files"] and row["store_ids"]
    table = run("protocols")
    assert table.exit_code == 0
    for name in PROTOCOLS:
        assert name in table.stdout


def test_shipped_protocol_files_exist() -> None:
    for name, expects in EXPECTS.items():
        if expects.source == "shipped":
            for entry in expects.files:
                assert Path(entry.split("  (")[0]).is_file(), (name, entry)


@pytest.mark.parametrize("variant", ["ijbb", "ijbc"])
def test_ijb_file_names_are_those_the_fixtures_write(variant: str) -> None:
    listed = " ".join(EXPECTS[variant].files)
    for file_name in file_names(variant).values():
        assert f"meta/{file_name}" in listed


def test_ijba_files_are_those_the_parser_reads(tmp_path: Path) -> None:
    record = write_ijba(tmp_path, n_splits=2, n_subjects=6)
    listed = [f.split("  (")[0] for f in EXPECTS["ijba"].files]
    patterns = {p for entry in listed for p in entry.split(", ")}
    folders = {p.rpartition("/")[0] for p in patterns if "/" in p}
    names = {p.rpartition("/")[2] for p in patterns}
    for read in ijba.load(tmp_path).files:
        folder, _, name = read.rpartition("/")
        number = folder.rpartition("split")[2]
        assert folder.replace(f"split{number}", "splitN") in folders, read
        assert name.replace(f"_{number}.", "_N.") in names, read
    assert len(record["files"]) == len(ijba.load(tmp_path).files)
