"""``facebench merge``: join an extraction's chunk files into one store."""

from __future__ import annotations

from pathlib import Path

import click

from facebench.store import COMPRESSIONS


@click.command("merge")
@click.argument("parts", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--compression", type=click.Choice(list(COMPRESSIONS)), default="none", show_default=True
)
@click.option("--keep-parts", is_flag=True, help="Keep the chunk folder after merging.")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT.")
def merge_command(
    parts: Path, output: Path, compression: str, keep_parts: bool, overwrite: bool
) -> None:
    """Assemble the chunk folder PARTS (OUT.h5.parts) of an extraction into a store.

    Needed only when torchrun ranks had no shared file system: copy every rank's
    chunk-*.npz and job.json into one folder first.

    \b
    Example:
      facebench merge ijbc.h5.parts -o ijbc.h5
    """
    from facebench.extract.journal import assemble

    info = assemble(
        parts,
        output,
        compression=COMPRESSIONS[compression],
        overwrite=overwrite,
        remove_parts=not keep_parts,
    )
    click.echo(f"wrote {info.path}: {info.n_items} items x {info.dim} dims", err=True)
