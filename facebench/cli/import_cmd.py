"""``facebench import``: features from any tool -> a feature store."""

from __future__ import annotations

from pathlib import Path

import click

from facebench.importing import import_features
from facebench.store import COMPRESSIONS

_INPUT = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.command("import")
@click.argument("features", type=_INPUT)
@click.option("--ids", "ids_path", required=True, type=_INPUT, help="Ids, one per line (UTF-8).")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The feature store to write (.h5).",
)
@click.option("--flip-features", type=_INPUT, help="Features of the mirrored images.")
@click.option("--key", help="Array name in a .npz, or dataset path in an .h5 (required there).")
@click.option(
    "--compression",
    type=click.Choice(list(COMPRESSIONS)),
    default="none",
    show_default=True,
    help="Compression of the numeric datasets.",
)
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
def import_command(
    features: Path,
    ids_path: Path,
    output: Path,
    flip_features: Path | None,
    key: str | None,
    compression: str,
    overwrite: bool,
) -> None:
    """Import raw FEATURES (.npy, .npz or .h5; N x D) with their ids into a feature store.

    Rows are L2-normalized and their raw norms kept; line i of the ids file names row i.

    \b
    Example:
      facebench import feats.npy --ids ids.txt -o lfw.h5
      facebench import feats.h5 --key emb/feats --ids ids.txt --flip-features flip.h5 -o lfw.h5
    """
    info = import_features(
        features,
        ids_path,
        output,
        flip_features_path=flip_features,
        key=key,
        compression=COMPRESSIONS[compression],
        overwrite=overwrite,
    )
    click.echo(
        f"wrote {info.path}: {info.n_items} items x {info.dim} dims, flip"
        f" {'yes' if info.has_flip else 'no'}, content sha256 {info.content_sha256[:12]}...",
        err=True,
    )
