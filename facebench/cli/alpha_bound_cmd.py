"""``facebench alpha-bound``: the L2-softmax paper's lower bound on alpha for C classes."""

from __future__ import annotations

import json

import click

from facebench.train import alpha_low


@click.command("alpha-bound")
@click.option("--classes", "n_classes", required=True, type=int, help="Number of classes C (> 2).")
@click.option(
    "--p",
    "p",
    type=float,
    default=0.9,
    show_default=True,
    help="Target probability of the right class, in (0, 1).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object instead.")
def alpha_bound_command(n_classes: int, p: float, as_json: bool) -> None:
    """Print alpha_low = log(p (C - 2) / (1 - p)), to 2 decimals.

    Ranjan et al. 2017: with features of norm alpha, the softmax probability of the right
    class among C can reach p only when alpha >= alpha_low.

    \b
    Example:
      facebench alpha-bound --classes 10575 --p 0.9     # CASIA-WebFace: 11.46
    """
    value = alpha_low(n_classes, p)
    if as_json:
        click.echo(json.dumps({"n_classes": n_classes, "p": p, "alpha_low": value}))
    else:
        click.echo(f"{value:.2f}")
