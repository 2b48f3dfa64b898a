"""What ``facebench compare`` gives: the headline metrics, each report's numbers, the
differences with their intervals, and the JSON document.

The JSON document (:meth:`Comparison.to_dict`)
----------------------------------------------
``schema``: ``"facebench-compare"``, ``schema_version``, ``protocol``, ``protocol_sha256``,
``kind`` (``"fold"`` or ``"split"``), ``settings`` {resamples, seed, confidence, interval,
unit, scheme, rng, reference}, ``metrics`` [{key, label, higher_is_better}], ``reports``
[{path, label, model, store_content_sha256, headline {key: value}, spread {key: {std,
stderr}}}] (the first is the reference), ``differences`` [{report (index into ``reports``),
label, metric, estimate, interval [low, high], std_error (ddof=1 over the resamples),
within_noise}], ``notes`` [...]. Values are fractions (not percent).

The numbers are computed by :func:`facebench.compare.reports.compare_reports`; tables are
drawn by :mod:`facebench.compare.render`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from facebench.report import jsonable

COMPARE_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Metric:
    """One headline number.

    Attributes
    ----------
    key : str
        Its name in the JSON (``accuracy``, ``auc``, ``eer``, ``tar_at_far:0.001``,
        ``cmc:1``, ``tpir_at_fpir:0.01``).
    label : str
        Its name in tables.
    higher_is_better : bool
        False for the EER only.
    decimals : int
        Decimals of its percentage in tables.
    """

    key: str
    label: str
    higher_is_better: bool = True
    decimals: int = 2


@dataclass(frozen=True)
class Headline:
    """One report's headline numbers.

    Attributes
    ----------
    path : str
    label : str
        The report's ``label``, else its file name without ``.json``.
    model : str or None
        The store's ``model`` attribute.
    store_content_sha256 : str or None
    values : dict of str to float
        Metric key -> the number the report states.
    spread : dict of str to dict
        Metric key -> {"std": ..., "stderr": ...} where the report gives them (fold
        accuracy: std ddof=1 and std/sqrt(k) over folds; split protocols: std ddof=1 over
        splits, None with one split).
    """

    path: str
    label: str
    model: str | None
    store_content_sha256: str | None
    values: dict[str, float]
    spread: dict[str, dict[str, float | None]]


@dataclass(frozen=True)
class Difference:
    """A report's difference to the reference on one metric.

    Attributes
    ----------
    report : int
        Index of the report (>= 1; 0 is the reference).
    metric : str
        A metric key.
    estimate : float
        value(report) - value(reference), full sample.
    low, high : float
        The paired percentile bootstrap interval of the difference.
    std_error : float
        Standard deviation (ddof=1) of the bootstrap differences (0 with one resample).
    within_noise : bool
        ``low <= 0 <= high``.
    """

    report: int
    metric: str
    estimate: float
    low: float
    high: float
    std_error: float
    within_noise: bool


@dataclass(frozen=True)
class Comparison:
    """Reports of one protocol with the differences to the first (see
    :mod:`facebench.compare.reports`)."""

    protocol: str
    protocol_sha256: str
    kind: str
    metrics: list[Metric]
    reports: list[Headline]
    differences: list[Difference]
    settings: dict[str, Any]
    notes: list[str]

    def difference(self, report: int, metric: str) -> Difference:
        """The difference of report ``report`` (>= 1) on ``metric``."""
        for d in self.differences:
            if d.report == report and d.metric == metric:
                return d
        raise KeyError((report, metric))

    def to_dict(self) -> dict[str, Any]:
        """The JSON document (module docstring); values are fractions."""
        return jsonable(
            {
                "schema": "facebench-compare",
                "schema_version": COMPARE_SCHEMA_VERSION,
                "protocol": self.protocol,
                "protocol_sha256": self.protocol_sha256,
                "kind": self.kind,
                "settings": self.settings,
                "metrics": [
                    {"key": m.key, "label": m.label, "higher_is_better": m.higher_is_better}
                    for m in self.metrics
                ],
                "reports": [
                    {
                        "path": h.path,
                        "label": h.label,
                        "model": h.model,
                        "store_content_sha256": h.store_content_sha256,
                        "headline": h.values,
                        "spread": h.spread,
                    }
                    for h in self.reports
                ],
                "differences": [
                    {
                        "report": d.report,
                        "label": self.reports[d.report].label,
                        "metric": d.metric,
                        "estimate": d.estimate,
                        "interval": [d.low, d.high],
                        "std_error": d.std_error,
                        "within_noise": d.within_noise,
                    }
                    for d in self.differences
                ],
                "notes": self.notes,
            }
        )

    def to_json(self) -> str:
        """Indented JSON (strict: no NaN or Infinity literals)."""
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"
