"""Reports of one protocol side by side, with paired bootstrap intervals of their differences.

The library call behind ``facebench compare``. The first report is the reference; every other
report's headline numbers are differenced against it, and each difference gets a paired
percentile bootstrap interval computed from the reports' per-unit files (``x.scores.npz``,
written beside ``x.json`` by ``facebench verify --json``).

Headline numbers
----------------
Fold protocols (LFW, YTF, generic pairs): the k-fold accuracy (mean over folds; its std with
ddof=1 and standard error std/sqrt(k) are shown, not differenced), AUC, EER and TAR at every
FAR target common to all reports. Split protocols (IJB-A/B/C): the mean over splits of TAR at
every common FAR target and of the AUC, and with 1:N the mean over splits of CMC rank 1, 5, 10
and of TPIR at every common FPIR target (a split's 1:N number is the mean over its galleries
when it has several, as in the report). Every number is a fraction in [0, 1].

Interval: the percentile interval; with ``c`` the confidence and ``d`` the R bootstrap
differences (report minus reference), ``[quantile(d, (1 - c) / 2), quantile(d, (1 + c) / 2)]``
(numpy's default linear interpolation). The point estimate is the difference of the
full-sample numbers (exactly what the two reports say). A difference is "within noise" when
its interval contains 0. Two identical reports give exactly [0, 0].

Decisions
---------
- Reports of different protocols, or of one protocol read from different files
  (``protocol_sha256``), or made with different TAR/TPIR rules, are refused; so are reports
  made with ``--compat`` (the bootstrap refits facebench's k-fold rule only).
- FAR (and FPIR) targets: only the targets common to all reports are compared; the others are
  named in ``notes``.
- One report: its headline only, no differences, and its per-unit file is not needed.
- A per-unit file that does not reproduce its report's headline numbers (a stale or foreign
  ``.scores.npz``) is refused.

The resampling (strata, random draws, split layouts) is :mod:`facebench.compare.resample`,
the weighted-resample metrics :mod:`facebench.metrics.bootstrap`, the result types and the
JSON document :mod:`facebench.compare.comparison`, the tables :mod:`facebench.compare.render`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from facebench.compare.comparison import Comparison, Difference, Headline, Metric
from facebench.compare.resample import (
    CMC_RANKS,
    FOLD_SCHEME,
    RNG_RULE,
    SPLIT_SCHEME,
    bootstrap_folds,
    bootstrap_splits,
    fold_strata,
    split_engines,
    split_layouts,
    split_point,
)
from facebench.errors import FacebenchError, ReportError
from facebench.metrics.bootstrap import FoldEngine, Stats, cmc_key, tar_key, tpir_key
from facebench.report import load_report, scores_path_for

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
DEFAULT_CONFIDENCE = 0.95

FOLD_UNITS = ("left", "right", "is_same", "fold")
SPLIT_UNITS = ("split", "left", "right", "is_same")
PROBE_UNITS = ("probe_split", "probe_gallery", "probe_template", "probe_mated")
PROBE_VALUES = ("probe_mate_rank", "probe_mate_score", "probe_top_score")
INTERVAL_RULE = "percentile: quantiles (1-c)/2 and (1+c)/2 of the bootstrap differences"


def _kind(path: Path, report: dict[str, Any]) -> str:
    if "accuracy" in report:
        return "fold"
    if "splits" in report:
        return "split"
    raise ReportError(
        f"{path}: a report with neither `accuracy` (fold protocols) nor `splits` (split"
        " protocols); write one with `facebench verify --json`"
    )


def _load_units(path: Path, kind: str) -> dict[str, Any]:
    """The per-unit arrays of ``path`` (its ``.scores.npz``), checked for the keys needed."""
    npz = scores_path_for(path)
    if not npz.exists():
        raise ReportError(
            f"{npz}: no per-pair scores beside {path}; a paired bootstrap needs them, and"
            f" `facebench verify ... --json {path.name}` writes them next to the report"
        )
    try:
        with np.load(npz, allow_pickle=False) as handle:
            data = {k: handle[k] for k in handle.files}
    except Exception as err:  # a damaged zip raises BadZipFile, EOFError, ... too
        raise ReportError(
            f"{npz}: cannot read the per-pair scores ({type(err).__name__}: {err}); write it"
            " again with `facebench verify ... --json`"
        ) from None
    if kind == "fold":
        needed = [*FOLD_UNITS, "score"]
    else:
        needed = [*SPLIT_UNITS, "score"] if "split" in data or "probe_split" not in data else []
        if "probe_split" in data:
            needed += [*PROBE_UNITS, *PROBE_VALUES]
    missing = [k for k in needed if k not in data]
    if missing:
        raise ReportError(
            f"{npz}: expected the arrays {', '.join(needed)}, but {', '.join(missing)}"
            " missing; run `facebench verify --json` again to write it"
        )
    return data


def _same_units(
    paths: Sequence[Path], datas: Sequence[dict[str, Any]], keys: Sequence[str]
) -> None:
    ref = datas[0]
    for path, data in zip(paths[1:], datas[1:], strict=True):
        for key in keys:
            a, b = ref.get(key), data.get(key)
            if a is None and b is None:
                continue
            if a is None or b is None or a.shape != b.shape:
                raise FacebenchError(
                    f"{scores_path_for(path)}: expected the same units as"
                    f" {scores_path_for(paths[0])} for a paired bootstrap, but `{key}` has"
                    f" {'no' if b is None else b.shape[0]} entries against"
                    f" {'no' if a is None else a.shape[0]}; verify both with the same protocol"
                    " files and options (--pairs, --split, --allow-skipped)"
                )
            differ = np.flatnonzero(a != b)
            if differ.size:
                i = int(differ[0])
                raise FacebenchError(
                    f"{scores_path_for(path)}: expected the same units in the same order as"
                    f" {scores_path_for(paths[0])} for a paired bootstrap, but `{key}` differs"
                    f" at {differ.size} entries (first: index {i}, {b[i]!r} against {a[i]!r});"
                    " verify both with the same protocol files and options (--pairs, --split,"
                    " --allow-skipped)"
                )


def _common_targets(
    paths: Sequence[Path], lists: Sequence[list[float]], what: str, notes: list[str]
) -> list[float]:
    common = [t for t in lists[0] if all(t in other for other in lists[1:])]
    for path, targets in zip(paths, lists, strict=True):
        dropped = [t for t in targets if t not in common]
        if dropped:
            notes.append(
                f"{path}: {what} {', '.join(f'{t:g}' for t in dropped)} not in every report;"
                " compared only at the common targets"
            )
    return common


def _fold_headline(report: dict[str, Any], far_targets: Sequence[float]) -> dict[str, float]:
    out = {
        "accuracy": report["accuracy"]["mean"],
        "auc": report["auc"],
        "eer": report["eer"],
    }
    by_target = {p["far_target"]: p["tar"] for p in report["tar_at_far"]}
    out.update({tar_key(t): by_target[t] for t in far_targets})
    return out


def _split_headline(
    report: dict[str, Any], far_targets: Sequence[float], fpir_targets: Sequence[float]
) -> tuple[dict[str, float], dict[str, dict[str, float | None]]]:
    summary = report["summary"]
    values: dict[str, float] = {}
    spread: dict[str, dict[str, float | None]] = {}

    def put(key: str, entry: dict[str, Any]) -> None:
        values[key] = entry["mean"]
        spread[key] = {"std": entry.get("std"), "stderr": None}

    if "tar_at_far" in summary:
        by_target = {e["far_target"]: e for e in summary["tar_at_far"]}
        for t in far_targets:
            put(tar_key(t), by_target[t])
        put("auc", summary["auc"])
    if "cmc" in summary:
        for r in CMC_RANKS:
            if str(r) in summary["cmc"]:
                put(cmc_key(r), summary["cmc"][str(r)])
        by_fpir = {e["fpir_target"]: e for e in summary["tpir_at_fpir"]}
        for t in fpir_targets:
            put(tpir_key(t), by_fpir[t])
    return values, spread


def _metrics(kind: str, keys: Sequence[str]) -> list[Metric]:
    out = []
    for key in keys:
        name, _, arg = key.partition(":")
        if key == "accuracy":
            out.append(Metric(key, "accuracy"))
        elif key == "auc":
            out.append(Metric(key, "AUC", decimals=3))
        elif key == "eer":
            out.append(Metric(key, "EER", higher_is_better=False))
        elif name == "tar_at_far":
            out.append(Metric(key, f"TAR@FAR={arg}"))
        elif name == "cmc":
            out.append(Metric(key, f"rank-{arg}"))
        elif name == "tpir_at_fpir":
            out.append(Metric(key, f"TPIR@FPIR={arg}"))
    return out


def _check_rules(paths: Sequence[Path], reports: Sequence[dict[str, Any]], kind: str) -> None:
    for path, report in zip(paths, reports, strict=True):
        compat = report.get("conventions", {}).get("compat")
        if compat:
            raise FacebenchError(
                f"{path}: made with --compat {compat}; compare refits facebench's k-fold rule"
                " in every resample, so verify again without --compat to compare"
            )
    names = ["tar_rule"] + (["tpir_rule"] if kind == "split" else [])
    for name in names:
        rules = [r.get("conventions", {}).get(name) for r in reports]
        for path, rule in zip(paths[1:], rules[1:], strict=True):
            if rule != rules[0]:
                raise FacebenchError(
                    f"{path}: expected the {name.replace('_', ' ')} of {paths[0]}"
                    f" ({rules[0]!r}), but got {rule!r}; verify both with the same --tar-rule"
                )


def compare_reports(
    paths: Sequence[str | Path],
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
) -> Comparison:
    """Compare reports of one protocol to the first, with paired bootstrap intervals.

    Parameters
    ----------
    paths : sequence of path
        Report JSON files written by ``facebench verify --json``; the first is the
        reference. With two or more, each needs its ``.scores.npz`` beside it.
    n_resamples : int
        Bootstrap resamples (>= 1).
    seed : int
        Seed of ``numpy.random.default_rng``; the same seed gives the same intervals.
    confidence : float
        Coverage of the intervals, in (0, 1).

    Returns
    -------
    Comparison
        The headline numbers of every report, and for every other report and metric the
        difference to the reference with its interval. The resampling schemes, the order
        of the random draws are in :mod:`facebench.compare.resample`, the refusals in
        this module's docstring.

    Raises
    ------
    FacebenchError
        Different protocols or protocol files, different TAR/TPIR rules, ``--compat``
        reports, a missing or stale ``.scores.npz``, or different units.
    """
    if not paths:
        raise FacebenchError("Expected at least one report, but got none")
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < 1:
        raise FacebenchError(f"Expected --resamples >= 1, but got {n_resamples!r}")
    if not 0.0 < float(confidence) < 1.0:
        raise FacebenchError(f"Expected --confidence in (0, 1), but got {confidence!r}")
    files = [Path(p) for p in paths]
    reports = [load_report(p) for p in files]
    ref = reports[0]
    for path, report in zip(files[1:], reports[1:], strict=True):
        if report["protocol"] != ref["protocol"]:
            raise FacebenchError(
                f"{path}: expected a report of protocol {ref['protocol']!r} like {files[0]},"
                f" but got {report['protocol']!r}; compare reports of one protocol"
            )
        if report.get("protocol_sha256") != ref.get("protocol_sha256"):
            raise FacebenchError(
                f"{path}: expected the protocol files of {files[0]} (protocol_sha256"
                f" {ref.get('protocol_sha256')}), but got {report.get('protocol_sha256')}"
                f" ({report.get('protocol_file')}); reports of different protocol files"
                " cannot be compared"
            )
    kind = _kind(files[0], ref)
    for path, report in zip(files[1:], reports[1:], strict=True):
        if _kind(path, report) != kind:
            raise FacebenchError(f"{path}: not the same kind of report as {files[0]}")
    _check_rules(files, reports, kind)
    notes: list[str] = []
    if kind == "fold":
        far_targets = _common_targets(
            files, [[p["far_target"] for p in r["tar_at_far"]] for r in reports], "FAR", notes
        )
        fpir_targets: list[float] = []
        values = [_fold_headline(r, far_targets) for r in reports]
        spreads: list[dict[str, dict[str, float | None]]] = [
            {"accuracy": {"std": r["accuracy"]["std"], "stderr": r["accuracy"]["stderr"]}}
            for r in reports
        ]
    else:
        far_targets = _common_targets(
            files, [r["conventions"].get("far_targets", []) for r in reports], "FAR", notes
        )
        fpir_targets = _common_targets(
            files, [r["conventions"].get("fpir_targets", []) for r in reports], "FPIR", notes
        )
        pairs = [_split_headline(r, far_targets, fpir_targets) for r in reports]
        values = [v for v, _ in pairs]
        spreads = [s for _, s in pairs]
    keys = list(values[0])
    headlines = [
        Headline(
            path=str(path),
            label=report.get("label") or path.name.removesuffix(".json"),
            model=report.get("store", {}).get("attributes", {}).get("model"),
            store_content_sha256=report.get("store", {}).get("content_sha256"),
            values=v,
            spread=s,
        )
        for path, report, v, s in zip(files, reports, values, spreads, strict=True)
    ]
    settings: dict[str, Any] = {
        "resamples": n_resamples if len(files) > 1 else 0,
        "seed": seed,
        "confidence": float(confidence),
        "interval": INTERVAL_RULE,
        "unit": "pair" if kind == "fold" else "template (1:1), probe template (1:N)",
        "scheme": FOLD_SCHEME if kind == "fold" else SPLIT_SCHEME,
        "rng": RNG_RULE,
        "reference": str(files[0]),
    }
    differences: list[Difference] = []
    if len(files) > 1:
        points, samples = _bootstrap(
            files, reports, kind, far_targets, fpir_targets, n_resamples, seed
        )
        for path, v, p in zip(files, values, points, strict=True):
            _check_reproduced(path, v, p)
        alpha = (1.0 - float(confidence)) / 2.0
        for i in range(1, len(files)):
            for key in keys:
                d = samples[i][key] - samples[0][key]
                low, high = np.quantile(d, [alpha, 1.0 - alpha])
                differences.append(
                    Difference(
                        report=i,
                        metric=key,
                        estimate=points[i][key] - points[0][key],
                        low=float(low),
                        high=float(high),
                        std_error=float(np.std(d, ddof=1)) if d.size > 1 else 0.0,
                        within_noise=bool(low <= 0.0 <= high),
                    )
                )
    return Comparison(
        protocol=ref["protocol"],
        protocol_sha256=ref.get("protocol_sha256", ""),
        kind=kind,
        metrics=_metrics(kind, keys),
        reports=headlines,
        differences=differences,
        settings=settings,
        notes=notes,
    )


def _bootstrap(
    files: Sequence[Path],
    reports: Sequence[dict[str, Any]],
    kind: str,
    far_targets: Sequence[float],
    fpir_targets: Sequence[float],
    n_resamples: int,
    seed: int,
) -> tuple[list[dict[str, float]], list[Stats]]:
    """Full-sample numbers and bootstrap samples of every report, from the per-unit files."""
    conventions = reports[0].get("conventions", {})
    tar_rule = conventions.get("tar_rule", "exact")
    if kind == "fold":
        datas = [_load_units(p, kind) for p in files]
        _same_units(files, datas, FOLD_UNITS)
        engines = [
            FoldEngine(d["score"], d["is_same"], d["fold"], far_targets, tar_rule) for d in datas
        ]
        points = [e.point() for e in engines]
        strata = fold_strata(datas[0]["fold"], datas[0]["is_same"])
        return points, bootstrap_folds(engines, strata, n_resamples, seed)
    datas = [_load_units(p, kind) for p in files]
    _same_units(files, datas, (*SPLIT_UNITS, *PROBE_UNITS))
    layouts = split_layouts(datas[0])
    tpir_rule = conventions.get("tpir_rule", "exact")
    per_report = [
        split_engines(d, layouts, far_targets, fpir_targets, tar_rule, tpir_rule) for d in datas
    ]
    points = [split_point(e) for e in per_report]
    return points, bootstrap_splits(per_report, layouts, n_resamples, seed)


def _check_reproduced(path: Path, stated: dict[str, float], computed: dict[str, float]) -> None:
    for key, value in stated.items():
        got = computed.get(key)
        if got is None or value is None or not math.isclose(value, got, rel_tol=0, abs_tol=1e-9):
            raise ReportError(
                f"{scores_path_for(path)}: expected per-pair data that reproduce {path}"
                f" ({key} = {value}), but it gives {got}; the file is stale or belongs to"
                " another report: run `facebench verify --json` again"
            )
