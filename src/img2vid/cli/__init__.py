"""The ``img2vid`` command: one Typer app, one module per sub-command.

Errors never reach the user as tracebacks (unless ``--debug``): :mod:`img2vid.cli.exits` maps the error
tree to exit codes and one or two plain lines. Typer's pretty tracebacks are off because they print local
variables, and a local variable may be an API key.
"""

from __future__ import annotations

from typing import Annotated

import typer

from .. import __version__
from .cancel import cancel
from .db import db_app
from .generate import generate
from .keys import keys_app
from .serve import serve
from .worker import worker

app = typer.Typer(
    name="img2vid",
    help="Turn a still image into a short video with Stable Video Diffusion.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command(name="generate")(generate)
app.command(name="cancel")(cancel)
app.command(name="serve")(serve)
app.command(name="worker")(worker)
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"img2vid {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the version (the one a server's /info gives) and exit.",
        ),
    ] = False,
) -> None:
    """Turn a still image into a short video with Stable Video Diffusion."""


def main() -> None:
    """Console-script entry point."""
    app()
