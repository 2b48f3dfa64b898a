"""PLACEHOLDER by plot-roc helper; delete."""

import click


@click.command("import")
def import_command() -> None:
    """Placeholder."""
