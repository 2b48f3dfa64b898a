"""``facebench train``: a backbone + softmax or L2-softmax head on labelled images -> checkpoint."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from facebench.models.registry import ARCHITECTURES
from facebench.train import HEAD_NAMES, OPTIMIZERS, SCHEDULES

if TYPE_CHECKING:
    from rich.table import Table

_ALPHA_HELP = (
    "L2-softmax: a fixed alpha (> 0), or 'learned' [default: fixed at alpha_low(C, 0.9), "
    "see `facebench alpha-bound`]."
)


def _alpha(ctx: click.Context, param: click.Parameter, value: str | None) -> float | str | None:
    if value is None or value == "learned":
        return value
    try:
        return float(value)
    except ValueError:
        raise click.BadParameter(f"expected a number > 0 or 'learned', got {value!r}") from None


@click.command("train")
@click.argument("data")
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The checkpoint to write (.pt).",
)
@click.option(
    "--arch", type=click.Choice(list(ARCHITECTURES)), default="small-cnn", show_default=True
)
@click.option("--head", type=click.Choice(list(HEAD_NAMES)), default="l2softmax", show_default=True)
@click.option("--alpha", callback=_alpha, default=None, metavar="FLOAT|learned", help=_ALPHA_HELP)
@click.option("--alpha-init", type=float, default=None, help="With --alpha learned: its start.")
@click.option("--holdout", default=None, help="Classes kept out of training: '5,6,7,8,9'.")
@click.option(
    "--max-per-class",
    type=click.IntRange(min=1),
    default=None,
    help="Train on the first N images of each class only (a quick run).",
)
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--lr", type=float, default=0.1, show_default=True, help="Initial learning rate.")
@click.option("--optimizer", type=click.Choice(list(OPTIMIZERS)), default="sgd", show_default=True)
@click.option("--schedule", type=click.Choice(list(SCHEDULES)), default="cosine", show_default=True)
@click.option("--weight-decay", type=float, default=5e-4, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or mps.")
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--flip/--no-flip",
    default=None,
    help="Random horizontal flips [default: on for image folders, off for built-in sets].",
)
@click.option("--preset", default=None, help="Preprocessing preset (default: the arch's).")
@click.option(
    "--data-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Where a built-in set's files are (fashion-mnist's idx files).",
)
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def train_command(data: str, output: Path, **kw: Any) -> None:
    """Train a backbone with a softmax or L2-constrained softmax head on DATA.

    DATA is a built-in set (digits, fashion-mnist) or a folder with one sub-folder of
    images per class (CASIA-WebFace's layout). The checkpoint loads with
    `facebench extract --arch ARCH --weights OUTPUT`. Prints the per-epoch table.

    \b
    Example:
      facebench train digits --holdout 5,6,7,8,9 --epochs 5 -o digits.pt
      facebench train /data/CASIA-WebFace --arch face-resnet --head l2softmax --alpha 16 \\
          --device cuda --workers 8 -o fr.pt
    """
    from facebench.train.datasets import parse_holdout
    from facebench.train.head import HeadConfig
    from facebench.train.loop import TrainOptions, train_to_file

    head_config = HeadConfig(name=kw["head"], alpha=kw["alpha"], alpha_init=kw["alpha_init"])
    options = TrainOptions(
        epochs=kw["epochs"],
        batch_size=kw["batch_size"],
        lr=kw["lr"],
        optimizer=kw["optimizer"],
        schedule=kw["schedule"],
        weight_decay=kw["weight_decay"],
        seed=kw["seed"],
        device=kw["device"],
        workers=kw["workers"],
        flip=kw["flip"],
        preset=kw["preset"],
    )
    result = train_to_file(
        data,
        output,
        kw["arch"],
        head_config,
        options,
        holdout=parse_holdout(kw["holdout"]),
        data_dir=kw["data_dir"],
        max_per_class=kw["max_per_class"],
        overwrite=kw["overwrite"],
        progress=not kw["no_progress"],
    )
    from rich.console import Console

    Console(file=sys.stdout, width=110).print(_history_table(result.history))
    click.echo(
        f"wrote {output}: {result.arch} + {result.head_config.describe()}, "
        f"{len(result.classes)} classes, {len(result.history)} epochs",
        err=True,
    )


def _history_table(history: list[dict[str, float]]) -> Table:
    from rich.table import Table

    columns = [
        ("epoch", "epoch", "{:.0f}"),
        ("loss", "loss", "{:.4f}"),
        ("accuracy", "train acc", "{:.4f}"),
        ("feature_norm", "feature norm", "{:.3f}"),
        ("alpha", "alpha", "{:.4f}"),
        ("lr", "lr", "{:.3g}"),
        ("seconds", "seconds", "{:.1f}"),
    ]
    shown = [column for column in columns if history and column[0] in history[0]]
    table = Table(title="training history")
    for _, title, _ in shown:
        table.add_column(title, justify="right")
    for entry in history:
        table.add_row(*(fmt.format(entry[key]) for key, _, fmt in shown))
    return table
