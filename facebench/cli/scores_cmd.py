"""``facebench scores``: every pair's score and label -> CSV, bob 4-column or pyeer files."""

from __future__ import annotations

from pathlib import Path

import click

from facebench.cli._options import scoring_options
from facebench.score_files import SCORE_FORMATS
from protocols import PROTOCOLS


@click.command("scores")
@click.option(
    "--protocol",
    "protocol_name",
    required=True,
    type=click.Choice(sorted(PROTOCOLS)),
    help="The benchmark protocol.",
)
@click.option(
    "--features",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The feature store (HDF5) written by `facebench extract` or `facebench import`.",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The score file (pyeer: the base name of its two files, see below).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(list(SCORE_FORMATS)),
    default="csv",
    show_default=True,
    help="csv: id1,id2,score,label,fold|split; bob: claimed_id real_id test_label score;"
    " pyeer: BASE.genuine.txt and BASE.impostor.txt.",
)
@scoring_options
@click.option("--overwrite", is_flag=True, help="Replace existing output files.")
def scores_command(
    protocol_name: str,
    features: Path,
    output: Path,
    fmt: str,
    pairs: Path | None,
    bin_file: Path | None,
    protocol_dir: Path | None,
    split_numbers: tuple[int, ...],
    pooling: str,
    flip_fusion: str,
    video_pooling: str,
    n_frames: int | None,
    allow_skipped: bool,
    memory_mib: int | None,
    overwrite: bool,
) -> None:
    """Write every pair's score and label, for checking results with other tools.

    The scores are those `facebench verify` computes with the same options, one per pair
    in protocol order, written with full float64 precision. Pair protocols (lfw, ytf, bin,
    pairs) give the two store ids (ytf: video keys) and the fold of each pair; IJB
    protocols the two template ids and the split. --format bob writes bob.measure's
    4-column file (a genuine pair is `id1 id1 id2 score`, an impostor pair
    `id1 id2 id2 score`); --format pyeer
    writes BASE.genuine.txt and BASE.impostor.txt (BASE: -o without its suffix) for
    `geteerinf -g ... -i ...`. `facebench verify --scores FILE` reads the csv format back.

    \b
    Example:
      facebench scores --protocol lfw --features lfw.h5 -o lfw.scores.csv
      facebench scores --protocol lfw --features lfw.h5 -o lfw.bob.txt --format bob
      facebench scores --protocol lfw --features lfw.h5 -o lfw.txt --format pyeer
      facebench scores --protocol bin --bin cfp_fp.bin --features cfp_fp.h5 -o cfp_fp.csv
      facebench scores --protocol ijbc --protocol-dir /data/IJB_release/IJBC \\
          --features ijbc.h5 -o ijbc.csv
    """
    from facebench.score_files import ScoreOptions, export_scores

    options = ScoreOptions(
        pairs=pairs,
        bin_file=bin_file,
        protocol_dir=protocol_dir,
        splits=split_numbers or None,
        pooling=pooling,
        flip_fusion=flip_fusion,
        video_pooling=video_pooling,
        n_frames=n_frames,
        allow_skipped=allow_skipped,
        memory_mib=memory_mib,
    )
    scores, written = export_scores(
        protocol_name, features, output, fmt, options, overwrite=overwrite
    )
    click.echo(
        f"wrote {' and '.join(map(str, written))}: {scores.n_pairs} pairs"
        f" ({scores.n_genuine} genuine, {scores.n_pairs - scores.n_genuine} impostor)",
        err=True,
    )
