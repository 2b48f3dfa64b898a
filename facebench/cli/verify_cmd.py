"""``facebench verify``: a protocol on a feature store -> a report (table + JSON)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console

from facebench.cli._options import scoring_options
from facebench.errors import FacebenchError
from facebench.metrics import TAR_RULES
from facebench.metrics.compat import COMPAT_KFOLD
from protocols import PROTOCOLS

if TYPE_CHECKING:
    from facebench.evaluate_splits import SplitOptions
    from facebench.store import StoreOpening


def _far_list(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        targets = tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, got {value!r}") from None
    if not all(0.0 < t <= 1.0 for t in targets):
        raise click.BadParameter(f"every FAR must lie in (0, 1], got {value!r}")
    return targets


#: Options that say how scores are made from features: meaningless with --scores.
_SCORING_OPTIONS = {
    "pairs": "--pairs",
    "bin_file": "--bin",
    "protocol_dir": "--protocol-dir",
    "split_numbers": "--split",
    "pooling": "--pooling",
    "flip_fusion": "--flip-fusion",
    "video_pooling": "--video-pooling",
    "n_frames": "--n-frames",
    "allow_skipped": "--allow-skipped",
    "memory_mib": "--memory-budget",
    "fpir_targets": "--fpir",
    "score_precision": "--score-precision",
    "device": "--device",
}


def _check_scores_mode(protocol_name: str | None, features: Path | None) -> None:
    """--scores stands alone: no protocol, no store, no option about making scores."""
    ctx = click.get_current_context()
    given = [
        flag
        for name, flag in _SCORING_OPTIONS.items()
        if ctx.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT)
    ]
    if protocol_name is not None:
        given.insert(0, "--protocol")
    if features is not None:
        given.insert(0, "--features")
    if given:
        raise FacebenchError(
            f"Expected --scores FILE alone (its lines give the pairs, labels, folds and"
            f" scores), but got {', '.join(given)} too; drop them, or drop --scores to score"
            " a feature store"
        )


def _check_outputs(json_path: Path | None, overwrite: bool) -> None:
    """Fail before any work, never after."""
    from facebench.report import check_report_writable

    if json_path is not None:
        # A .scores.npz without its report is an interrupted write's leftover: replaced.
        check_report_writable(json_path, overwrite)


def _write_outputs(
    report: Any, pair_data: dict[str, Any], json_path: Path | None, overwrite: bool
) -> None:
    from facebench.report import write_report

    if json_path is not None:
        written, npz = write_report(report, json_path, pair_data, overwrite=overwrite)
        click.echo(f"wrote {written} and {npz}", err=True)


def _protocol_and_store(protocol_name: str | None, features: Path | None) -> tuple[str, Path]:
    """Without --scores, both --protocol and an existing --features store are needed."""
    if protocol_name is None or features is None:
        missing = [
            flag
            for flag, value in (("--protocol NAME", protocol_name), ("--features STORE", features))
            if value is None
        ]
        raise FacebenchError(
            f"Expected --protocol NAME and --features STORE, or --scores FILE alone, but"
            f" {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing"
        )
    if not features.exists():
        raise FacebenchError(
            f"{features}: no such feature store; write one with `facebench import` or"
            " `facebench extract`"
        )
    return protocol_name, features


@click.command("verify")
@click.option(
    "--protocol",
    "protocol_name",
    type=click.Choice(sorted(PROTOCOLS)),
    default=None,
    help="The benchmark protocol (required unless --scores).",
)
@click.option(
    "--features",
    "features",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The feature store (HDF5) written by `facebench extract` or `facebench import`"
    " (required unless --scores).",
)
@click.option(
    "--scores",
    "scores_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Evaluate scores another tool computed: lines id1 id2 score label [fold] (no"
    " --protocol or --features).",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the JSON report here (and PATH.scores.npz beside it).",
)
@click.option(
    "--far",
    "far_targets",
    callback=_far_list,
    default=None,
    help="Comma-separated FAR targets for TAR@FAR [default: LFW/YTF 1e-3,1e-2; IJB-A"
    " 1e-4,1e-3,1e-2; IJB-B/C 1e-6 ... 1e-1].",
)
@click.option(
    "--fpir",
    "fpir_targets",
    callback=_far_list,
    default=None,
    help="Comma-separated FPIR targets for 1:N TPIR [default: 0.01,0.1].",
)
@click.option(
    "--tar-rule",
    type=click.Choice(list(TAR_RULES)),
    default="exact",
    show_default=True,
    help="How TAR at a FAR is read (PROTOCOLS.md).",
)
@click.option(
    "--compat",
    type=click.Choice(list(COMPAT_KFOLD)),
    default=None,
    help="Reproduce another tool's k-fold accuracy rule.",
)
@scoring_options
@click.option(
    "--score-precision",
    type=click.Choice(["auto", "float64", "float32"]),
    default="auto",
    show_default=True,
    help="IJB protocols: float64 scores for every pair, or float32 products with every"
    " genuine pair and the impostor pairs near each TAR@FAR threshold re-scored in float64"
    " (TAR@FAR exactly the float64 one; AUC/EER/ROC float32-accurate elsewhere, within"
    " about 3e-5). auto: float32 from 2**20 pairs under --tar-rule exact (IJB-B/C).",
)
@click.option(
    "--device",
    type=click.Choice(["cpu", "cuda"]),
    default="cpu",
    show_default=True,
    help="IJB protocols: where the 1:1 matrix products run (cuda: torch on the GPU; with"
    " float32 scoring TAR@FAR is the same on either).",
)
@click.option("--label", default=None, help="A name for this report (legend of plot-roc).")
@click.option("--overwrite", is_flag=True, help="Replace existing output files.")
def verify_command(
    protocol_name: str | None,
    features: Path | None,
    pairs: Path | None,
    bin_file: Path | None,
    scores_file: Path | None,
    json_path: Path | None,
    far_targets: tuple[float, ...] | None,
    fpir_targets: tuple[float, ...] | None,
    protocol_dir: Path | None,
    split_numbers: tuple[int, ...],
    pooling: str,
    tar_rule: str,
    compat: str | None,
    flip_fusion: str,
    video_pooling: str,
    n_frames: int | None,
    allow_skipped: bool,
    memory_mib: int | None,
    score_precision: str,
    device: str,
    label: str | None,
    overwrite: bool,
) -> None:
    """Evaluate a feature store on a benchmark protocol.

    Prints the result table to stdout and, with --json, writes the report.

    \b
    Example:
      facebench verify --protocol lfw --features lfw.h5 --json lfw.json
      facebench verify --protocol lfw --features lfw.h5 --compat insightface --flip-fusion sum-raw
      facebench verify --protocol ytf --features ytf.h5 --json ytf.json
      facebench verify --protocol ijba --protocol-dir /data/IJB-A --features ijba.h5 \\
          --json ijba.json
      facebench verify --protocol bin --bin cfp_fp.bin --features cfp_fp.h5 --compat insightface
      facebench verify --protocol pairs --pairs my_pairs.txt --features faces.h5
      facebench verify --scores other_tool.csv --json other.json
    """
    from facebench.evaluate import DEFAULT_FAR_TARGETS, VerifyOptions, load_protocol
    from facebench.tables import render_fold_report

    console = Console(file=sys.stdout, width=110)
    if scores_file is not None:
        from facebench.external_scores import evaluate_scores

        _check_scores_mode(protocol_name, features)
        _check_outputs(json_path, overwrite)
        options = VerifyOptions(
            far_targets=far_targets or DEFAULT_FAR_TARGETS,
            tar_rule=tar_rule,
            compat=compat,
            label=label,
        )
        fold_report, pair_data = evaluate_scores(scores_file, options)
        render_fold_report(fold_report, console)
        _write_outputs(fold_report, pair_data, json_path, overwrite)
        return
    name, store = _protocol_and_store(protocol_name, features)
    _check_outputs(json_path, overwrite)

    def protocol_files() -> Any:
        return load_protocol(
            name,
            protocol_dir=protocol_dir,
            pairs=pairs,
            bin_file=bin_file,
            pooling=pooling,
            splits=split_numbers,
            defer_pairs=True,  # IJB-B/C: the pair file is read while the store is pooled
        )

    if PROTOCOLS[name].kind == "templates":
        from facebench.evaluate_splits import SplitOptions
        from facebench.store import StoreOpening

        # The store is opened (its ids read) in a thread while the protocol is parsed.
        with StoreOpening(store) as opening:
            protocol = protocol_files()
            _verify_templates(
                protocol,
                opening,
                json_path,
                overwrite,
                memory_mib,
                SplitOptions(
                    far_targets=far_targets,
                    fpir_targets=fpir_targets or (0.01, 0.1),
                    tar_rule=tar_rule,
                    pooling=pooling,
                    flip_fusion=flip_fusion,
                    splits=split_numbers or None,
                    allow_skipped=allow_skipped,
                    label=label,
                    score_precision=score_precision,
                    device=device,
                ),
                console,
            )
        return
    protocol = protocol_files()
    from facebench.evaluate import evaluate_pairs

    for given, option in (
        (fpir_targets, "--fpir"),
        (memory_mib, "--memory-budget"),
        (score_precision == "float32", "--score-precision float32"),
        (device == "cuda", "--device cuda"),
    ):
        if given:
            raise FacebenchError(f"{option} is for IJB protocols, not --protocol {name}")
    options = VerifyOptions(
        far_targets=far_targets or DEFAULT_FAR_TARGETS,
        tar_rule=tar_rule,
        compat=compat,
        flip_fusion=flip_fusion,
        video_pooling=video_pooling,
        n_frames=n_frames,
        allow_skipped=allow_skipped,
        label=label,
    )
    fold_report, pair_data = evaluate_pairs(protocol, store, options)
    render_fold_report(fold_report, console)
    _write_outputs(fold_report, pair_data, json_path, overwrite)


def _verify_templates(
    protocol: Any,
    store: StoreOpening,
    json_path: Path | None,
    overwrite: bool,
    memory_mib: int | None,
    split_options: SplitOptions,
    console: Console,
) -> None:
    """``verify`` of a template protocol (IJB-A/B/C): the table, and the report with
    ``--json``."""
    from facebench.evaluate_splits import evaluate_templates
    from facebench.tables import render_split_report

    if json_path is None:
        split_report, _ = evaluate_templates(protocol, store, split_options, memory_mib=memory_mib)
        render_split_report(split_report, console)
        return
    from facebench.report import ReportWriter, to_json

    # The per-pair file's first columns are written while the scores are counted.
    with ReportWriter(json_path, overwrite) as writer:
        split_report, pair_data = evaluate_templates(
            protocol, store, split_options, memory_mib=memory_mib, pair_sink=writer.begin
        )
        render_split_report(split_report, console)
        written, npz = writer.finish(to_json(split_report), pair_data)
    click.echo(f"wrote {written} and {npz}", err=True)
