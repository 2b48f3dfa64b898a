"""``facebench scores``: every pair's score and label -> CSV, bob 4-column or pyeer files."""

from __future__ import annotations

from pathlib import Path

import click

from facebench.fusion import FLIP_FUSIONS
from facebench.pooling import POOLING_MODES
from facebench.score_files import SCORE_FORMATS
from facebench.scoring import VIDEO_POOLING
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
@click.option(
    "--pairs",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Another pairs file in the protocol's format instead of the shipped official one;"
    " --protocol pairs: the generic pairs file (id1 id2 label [fold]).",
)
@click.option(
    "--bin",
    "bin_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="--protocol bin: the insightface .bin file (lfw.bin, cfp_fp.bin, ...).",
)
@click.option(
    "--protocol-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="IJB-A/B/C: the folder of the user's protocol files (never shipped).",
)
@click.option(
    "--split",
    "split_numbers",
    type=click.IntRange(min=1),
    multiple=True,
    help="IJB-A: only this split (repeatable).",
)
@click.option(
    "--pooling",
    type=click.Choice(list(POOLING_MODES)),
    default="media",
    show_default=True,
    help="Template pooling for IJB protocols (as verify).",
)
@click.option(
    "--flip-fusion",
    type=click.Choice(list(FLIP_FUSIONS)),
    default="none",
    show_default=True,
    help="How an image's and its mirror's features combine (as verify).",
)
@click.option(
    "--video-pooling",
    type=click.Choice(list(VIDEO_POOLING)),
    default="mean",
    show_default=True,
    help="YTF: how a video's frames make its feature or score (as verify).",
)
@click.option(
    "--n-frames",
    type=click.IntRange(min=1),
    default=None,
    help="YTF with --video-pooling first: frames per video (by frame number).",
)
@click.option(
    "--allow-skipped",
    is_flag=True,
    help="Leave out the pairs whose images extraction skipped (--skip-bad).",
)
@click.option(
    "--memory-budget",
    "memory_mib",
    type=click.IntRange(min=16),
    default=None,
    metavar="MIB",
    help="IJB protocols: working memory of the streamed reads (default 256 MiB).",
)
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
