"""Reports: one JSON shape for every protocol (PROTOCOLS.md, "Reports"), and their tables.

A fold report (LFW, YTF, generic pairs) holds, at the top level: ``schema_version``,
``protocol``, ``protocol_file``, ``protocol_sha256``, ``store`` {path, content_sha256,
attributes}, ``conventions`` (every rule and option used), ``counts`` (what the parser read
and the official counts), ``warnings``, ``n_pairs``, ``n_genuine``, ``n_impostor``,
``accuracy`` {mean, std, stderr, folds, thresholds, rule, std_kind}, ``auc``, ``eer``,
``eer_threshold``, ``tar_at_far`` [{far_target, tar, threshold, far_achieved,
n_impostors_at_or_above, resolution_limited, rule}], ``roc`` {far, tar, threshold}
(downsampled for plotting only: every point is a true operating point, no number in the
report is read from it), ``created``, ``facebench_version``. Non-finite thresholds are
written as ``null`` (+inf accepts nothing, -inf accepts everything; ``threshold_inf`` in
``conventions`` says which). Beside ``report.json`` verify writes ``report.scores.npz``
with every pair's ids, score, label and fold.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from facebench.errors import ReportError
from facebench.fileio import atomic_path, check_writable, write_text_atomic
from facebench.metrics import OperatingPoint

REPORT_SCHEMA_VERSION = 1


def json_float(value: float | None) -> float | None:
    """A float for JSON: non-finite values and None become ``null``."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars made Python numbers and non-finite floats ``None``."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return json_float(float(value))
    return value


@dataclass(frozen=True)
class Accuracy:
    """k-fold accuracy as reported: per fold and summarized."""

    mean: float
    std: float
    stderr: float
    folds: list[float]
    thresholds: list[float]
    rule: str
    std_kind: str


@dataclass(frozen=True)
class FoldReport:
    """The report of a fold protocol (LFW, YTF, generic pairs)."""

    protocol: str
    protocol_file: str
    protocol_sha256: str
    store: dict[str, Any]
    conventions: dict[str, Any]
    counts: dict[str, Any]
    warnings: list[str]
    n_pairs: int
    n_genuine: int
    n_impostor: int
    accuracy: Accuracy
    auc: float
    eer: float
    eer_threshold: float
    tar_at_far: list[OperatingPoint]
    roc: dict[str, list[float | None]]
    created: str
    facebench_version: str
    label: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    schema_version: int = REPORT_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, keys in the documented order; ``extra`` merged at the top.

        Non-finite floats (infinite thresholds) become ``null``.
        """
        data = jsonable(dataclasses.asdict(self))
        extra = data.pop("extra")
        ordered = {"schema_version": data.pop("schema_version")}
        ordered.update(data)
        ordered.update(extra)
        return ordered


@dataclass(frozen=True)
class SplitReport:
    """The report of a split protocol (IJB-A, IJB-B, IJB-C).

    ``splits`` holds one entry per split (``split`` counts from 1): ``n_templates``,
    ``n_pairs``, ``n_genuine``, ``n_impostor``, ``auc``, ``eer``, ``tar_at_far``, ``roc``
    for 1:1; ``identification`` (one entry per gallery, plus ``gallery: "mean"`` when there
    are several), and the headline ``cmc`` {"1", "5", "10"} and ``tpir_at_fpir`` for 1:N.
    ``summary`` gives mean and std (ddof=1) over the splits.
    """

    protocol: str
    protocol_file: str
    protocol_sha256: str
    store: dict[str, Any]
    conventions: dict[str, Any]
    counts: dict[str, Any]
    warnings: list[str]
    n_pairs: int
    n_genuine: int
    splits: list[dict[str, Any]]
    summary: dict[str, Any]
    created: str
    facebench_version: str
    label: str | None = None
    schema_version: int = REPORT_SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        """The JSON object; non-finite floats become ``null``."""
        data = jsonable(dataclasses.asdict(self))
        ordered = {"schema_version": data.pop("schema_version")}
        ordered.update(data)
        return ordered


def to_json(report: FoldReport | SplitReport) -> str:
    """Serialize a report as indented JSON (strict: no NaN or Infinity literals)."""
    return json.dumps(report.to_dict(), indent=2, allow_nan=False) + "\n"


def scores_path_for(report_path: str | Path) -> Path:
    """``x/report.json`` -> ``x/report.scores.npz``."""
    path = Path(report_path)
    stem = path.name[: -len(".json")] if path.name.endswith(".json") else path.name
    return path.with_name(stem + ".scores.npz")


def write_report(
    report: FoldReport | SplitReport,
    path: str | Path,
    pair_data: dict[str, npt.NDArray[Any]],
    overwrite: bool = False,
) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.scores.npz`` atomically.

    Both targets are checked before anything is written; the per-pair file is written
    first so that a report never points at missing per-pair data.
    """
    path = Path(path)
    npz_path = scores_path_for(path)
    check_writable(path, overwrite)
    check_writable(npz_path, overwrite)
    text = to_json(report)
    with atomic_path(npz_path, overwrite) as tmp:
        # Straight to the temporary file (renamed into place when complete): the per-pair
        # arrays (300 MB at IJB-C size) are never held twice.
        with open(tmp, "wb") as handle:
            np.savez(handle, **pair_data)  # type: ignore[arg-type]
    write_text_atomic(path, text, overwrite)
    return path, npz_path


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
