"""PLACEHOLDER by plot-roc helper; delete."""

import click


@click.command("verify")
def verify_command() -> None:
    """Placeholder."""
