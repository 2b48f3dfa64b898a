"""``facebench demo``: the paper's experiment in miniature on real data (what `make demo` runs)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("demo")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("demo-output"),
    show_default=True,
    help="Output folder.",
)
@click.option(
    "--dataset",
    default="digits",
    show_default=True,
    help="A built-in dataset (digits, fashion-mnist) or a class-per-folder tree.",
)
@click.option(
    "--holdout",
    default="5,6,7,8,9",
    show_default=True,
    help="Classes kept out of training and used for verification.",
)
@click.option("--epochs", type=click.IntRange(min=1), default=12, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--overwrite", is_flag=True, help="Reuse a non-empty output folder.")
def demo_command(
    out_dir: Path, dataset: str, holdout: str, epochs: int, seed: int, overwrite: bool
) -> None:
    """Train softmax and L2-softmax (alpha at the bound, 16, learned) on real data, then
    extract, verify on LFW- and IJB-A-format protocols, compare, and draw the figures.

    \b
    Example:
      facebench demo --out demo-output
      facebench demo --dataset fashion-mnist --out fm-demo --seed 1
    """
    from facebench.experiment import run_demo

    run_demo(
        out_dir, dataset=dataset, holdout=holdout, epochs=epochs, seed=seed, overwrite=overwrite
    )
