"""The project's error types.

Every error a user can cause by a bad input is a :class:`FacebenchError`. Its message says
what was expected, what was found, where (file and line, or store and id) and how to fix it.
The CLI prints it on one line to stderr and exits with code 2; ``--debug`` shows the
traceback. Internal failures (bugs) are any other exception and exit with code 1.
"""

from __future__ import annotations


class FacebenchError(ValueError):
    """Base class of every user-facing error."""


class InputFormatError(FacebenchError):
    """A file does not follow its format (a malformed line, a wrong column count, ...)."""


class StoreError(FacebenchError):
    """A feature store is invalid (schema version, shapes, NaN, non-unit rows, duplicates)."""


class MissingItemsError(FacebenchError):
    """A protocol needs items that the feature store does not hold."""


class OutputExistsError(FacebenchError, FileExistsError):
    """An output file exists and ``--overwrite`` was not given."""


class ReportError(FacebenchError):
    """A report file is not a facebench report of a known schema version."""


def located(path: object, line: int | None, message: str) -> str:
    """Return ``"path:line: message"`` (or ``"path: message"``), the shape of file errors."""
    where = f"{path}:{line}" if line is not None else f"{path}"
    return f"{where}: {message}"
