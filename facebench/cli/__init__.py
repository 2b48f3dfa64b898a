"""The ``facebench`` command line: one module per command, each body one library call.

Errors a user can cause (:class:`facebench.errors.FacebenchError`) print one line to stderr
and exit with code 2; ``--debug`` shows the traceback. Results go to stdout, logs and
progress to stderr.
"""

from __future__ import annotations

from facebench.cpu import before_numpy

before_numpy()  # numpy's sort and OpenBLAS's threads (facebench.cpu)

import sys
from typing import Any

import click

from facebench import __version__
from facebench.errors import FacebenchError


class FacebenchGroup(click.Group):
    """A click group that turns :class:`FacebenchError` into a short message and exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FacebenchError as err:
            if ctx.meta.get("facebench.debug"):
                raise
            click.echo(f"error: {err}", err=True)
            ctx.exit(2)


@click.group(cls=FacebenchGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="facebench", message="%(prog)s %(version)s")
@click.option("--debug", is_flag=True, help="Show the full traceback of errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """facebench: exact face-verification evaluation.

    \b
    Example:
      facebench import feats.npy --ids ids.txt -o lfw.h5
      facebench verify --protocol lfw --features lfw.h5 --json lfw.json
      facebench plot-roc lfw.json -o roc.png
    """
    ctx.meta["facebench.debug"] = debug


def _register() -> None:
    from facebench.cli import (
        alpha_bound_cmd,
        compare_cmd,
        demo_cmd,
        extract_cmd,
        import_cmd,
        merge_cmd,
        norms_cmd,
        plot_roc_cmd,
        search_cmd,
        train_cmd,
        verify_cmd,
    )

    cli.add_command(alpha_bound_cmd.alpha_bound_command)
    cli.add_command(compare_cmd.compare_command)
    cli.add_command(demo_cmd.demo_command)
    cli.add_command(norms_cmd.norms_command)
    cli.add_command(train_cmd.train_command)
    cli.add_command(extract_cmd.extract_command)
    cli.add_command(merge_cmd.merge_command)
    cli.add_command(import_cmd.import_command)
    cli.add_command(verify_cmd.verify_command)
    cli.add_command(plot_roc_cmd.plot_roc_command)
    cli.add_command(search_cmd.search_command)
    from facebench.cli import export_cmd, inspect_cmd, protocols_cmd, scores_cmd

    cli.add_command(scores_cmd.scores_command)
    cli.add_command(export_cmd.export_command)
    cli.add_command(inspect_cmd.inspect_command)
    cli.add_command(protocols_cmd.protocols_command)


_register()


def main() -> None:
    """Console-script entry point."""
    cli.main(prog_name="facebench", standalone_mode=True)
    sys.exit(0)
