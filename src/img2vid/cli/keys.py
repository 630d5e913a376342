"""``img2vid keys``: create, list and revoke the server's API keys.

``create`` prints the new key alone on stdout (so ``KEY=$(img2vid keys create)`` works) and everything
else on stderr; the store keeps only the key's hash, so a lost key cannot be shown again, only revoked.
This module must never print a key anywhere but that one line of ``create``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from .exits import report_error

__all__ = ["keys_app"]

T = TypeVar("T")

keys_app = typer.Typer(help="Create, list and revoke the server's API keys.", no_args_is_help=True)

DataOption = Annotated[
    Optional[Path], typer.Option(help="The server's data folder (default: $IMG2VID_DATA, else a per-user folder).")
]


def _with_store(data: Path | None, action: Callable[[Any], T], err: Console) -> T:
    """Run ``action`` on the data folder's store, always closing it; any failure leaves as an exit code."""
    try:
        from ..jobs.settings import load_settings

        store = load_settings(data=data).open_store()
        try:
            return action(store)
        finally:
            store.close()
    except Exception as error:  # noqa: BLE001 - every error leaves as an exit code
        raise typer.Exit(report_error(error, console=err)) from None


def _when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return dt.datetime.fromtimestamp(stamp, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


@keys_app.command("create")
def create(
    name: Annotated[str, typer.Option(help="A label to recognise the key by.")] = "default",
    data: DataOption = None,
) -> None:
    """Make a new key and print it (once: only its hash is stored)."""
    err = Console(stderr=True, highlight=False)

    def create_in(store: Any) -> Any:
        from ..server.keys import create_key

        return create_key(store, name)

    key, row = _with_store(data, create_in, err)
    typer.echo(key)
    err.print(f"created key {row.key_id} ({name}); it is shown only this once", markup=False)


@keys_app.command("list")
def list_keys(data: DataOption = None) -> None:
    """Show every key's id, name, creation time and whether it is revoked (never the key itself)."""
    err = Console(stderr=True, highlight=False)
    rows = _with_store(data, lambda store: store.list_keys(), err)
    table = Table("id", "name", "created", "revoked")
    for row in rows:
        table.add_row(row.key_id, row.name, _when(row.created_at), _when(row.revoked_at))
    Console(highlight=False).print(table)


@keys_app.command("revoke")
def revoke(
    key: Annotated[str, typer.Argument(help="The key's id (from 'keys list') or its name.")],
    data: DataOption = None,
) -> None:
    """Revoke a key: the server refuses it within seconds."""
    err = Console(stderr=True, highlight=False)
    revoked = _with_store(data, lambda store: store.revoke_key(key), err)
    if not revoked:
        err.print(f"error: no active key with id or name {key!r}", markup=False)
        raise typer.Exit(4)
    for row in revoked:
        err.print(f"revoked key {row.key_id} ({row.name})", markup=False)
