"""Reports: one JSON shape for every protocol (PROTOCOLS.md, "Reports").

Placeholder for the report dataclasses; ``load_report`` is the one way to read a report.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from facebench.errors import ReportError

REPORT_SCHEMA_VERSION = 1


def load_report(path: str | Path) -> dict[str, Any]:
    """Read a report JSON written by ``facebench verify``.

    Raises
    ------
    ReportError
        When the file is missing, is not JSON, or is not a report of a known schema version.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportError(f"{path}: no such report file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ReportError(f"{path}: cannot read the report ({err})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ReportError(
            f"{path}:{err.lineno}: not valid JSON ({err.msg}); is this a facebench report?"
        ) from None
    if not isinstance(data, dict) or "schema_version" not in data or "protocol" not in data:
        raise ReportError(
            f"{path}: not a facebench report (expected an object with `schema_version` and"
            " `protocol`); write one with `facebench verify --json`"
        )
    if data["schema_version"] != REPORT_SCHEMA_VERSION:
        raise ReportError(
            f"{path}: report schema_version {data['schema_version']!r} is not known to this"
            f" facebench (expected {REPORT_SCHEMA_VERSION}); upgrade facebench or re-run verify"
        )
    return data


def json_float(value: float) -> float | None:
    """A float for JSON: non-finite values become ``null`` (a +inf threshold accepts nothing)."""
    value = float(value)
    return value if math.isfinite(value) else None
