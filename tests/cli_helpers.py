"""What every command-line test checks of a user error: exit code 2, one ``error: ...``
line on stderr (click's own usage errors print ``Error: ...`` with the usage), no traceback,
and the phrases that name the problem."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner, Result

from facebench.cli import cli


def run(*args: str | Path) -> Result:
    """Invoke ``facebench`` with ``args`` in this process."""
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_user_error(result: Result, *phrases: str, only_line: bool = False) -> None:
    """Exit code 2, one error line (the only stderr line with ``only_line``), the phrases."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    lines = result.stderr.splitlines()
    errors = [line for line in lines if line.startswith(("error: ", "Error: "))]
    assert len(errors) == 1, result.stderr
    if only_line:
        assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr
