"""``img2vid db``: the job store's schema revision, and bringing the store to the newest one.

``serve`` and ``worker`` upgrade the store themselves at start (behind a lock, so many starting together
upgrade once); these commands are for an operator who wants to do it first, or to see where a store stands.
The store is the one ``serve`` would open (``--data``, or ``IMG2VID_DATABASE_URL``). This module must
never print the database URL, which may carry a password.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from .exits import report_error

__all__ = ["db_app"]

db_app = typer.Typer(help="See and upgrade the job store's schema revision.", no_args_is_help=True)

DataOption = Annotated[
    Optional[Path], typer.Option(help="The server's data folder (default: $IMG2VID_DATA, else a per-user folder).")
]


@db_app.command("current")
def current(data: DataOption = None) -> None:
    """Print the store's revision ('none' for an empty store) and whether it is the newest."""
    err = Console(stderr=True, highlight=False)
    try:
        from ..jobs import migrate
        from ..jobs.database import Database

        db = Database(_url(data))
        try:
            with db.guard():
                revision = migrate.current(db.engine)
        finally:
            db.close()
    except Exception as error:  # noqa: BLE001 - every error leaves as an exit code
        raise typer.Exit(report_error(error, console=err)) from None
    typer.echo(revision or "none")
    if revision == migrate.HEAD:
        err.print("the store is at the newest revision", markup=False)
    else:
        err.print(f"the newest revision is {migrate.HEAD}: run 'img2vid db upgrade' (or start the server)", markup=False)


@db_app.command("upgrade")
def upgrade(data: DataOption = None) -> None:
    """Bring the store to the newest revision, keeping every job, key and result."""
    err = Console(stderr=True, highlight=False)
    try:
        from ..jobs import migrate
        from ..jobs.database import Database

        db = Database(_url(data))
        try:
            with db.guard():
                before, after = migrate.upgrade(db.engine)
        finally:
            db.close()
    except Exception as error:  # noqa: BLE001 - every error leaves as an exit code
        raise typer.Exit(report_error(error, console=err)) from None
    typer.echo(after)
    if before == after:
        err.print(f"the store was already at revision {after}", markup=False)
    else:
        err.print(f"upgraded the store from revision {before or 'none'} to {after}", markup=False)


def _url(data: Path | None) -> str:
    from ..jobs.settings import load_settings

    settings = load_settings(data=data)
    if not settings.database_url:
        settings.data.mkdir(parents=True, exist_ok=True)
    return settings.store_url()
