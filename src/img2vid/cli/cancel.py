"""``img2vid cancel ID``: ask the img2vid server that runs a job to cancel it.

The server and key are found as ``img2vid generate`` finds them: ``--engine URL``, then
``$IMG2VID_BASE_URL`` / ``$IMG2VID_API_KEY``, then the config file. The command only resolves the server
and prints the outcome; the request itself is :meth:`RemoteEngine.cancel_job`. Exit codes are
``generate``'s: 0 cancelled, 2 the job already finished (or bad input), 3 the key was refused, 4 no such
job for this key, 6 the server could not be reached or failed. Never prints a key.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.console import Console

from ..config import ENV_BASE_URL, config_path, is_stability_url, resolve_base_url
from ..errors import InvalidInputError
from .exits import report_error

__all__ = ["cancel"]


def _server_url(engine: str | None) -> str:
    """The server to send the cancel to; Stability's service and the local engine have none to offer."""
    kind = (engine or "").strip()
    where = f"pass --engine URL, or set ${ENV_BASE_URL} or base_url in {config_path()}"
    if kind.lower() == "local":
        raise InvalidInputError(
            f"cancel talks to an img2vid server, and --engine local runs jobs in this process (stop them with "
            f"Ctrl-C): {where}",
            field="engine",
            value=kind,
            allowed="an http:// or https:// URL",
        )
    base_url = resolve_base_url(kind or None)
    if is_stability_url(base_url):
        raise InvalidInputError(
            f"{base_url} offers no way to cancel a job; cancel works against an img2vid server: {where}",
            field="engine",
            value=kind or base_url,
            allowed="an http:// or https:// URL",
        )
    return base_url


def cancel(
    job_id: Annotated[
        str, typer.Argument(metavar="ID", help="The job's id, as the server returned it.", show_default=False)
    ],
    engine: Annotated[
        Optional[str],
        typer.Option(help="The img2vid server's URL (default: $IMG2VID_BASE_URL, else base_url in the config file)."),
    ] = None,
    timeout: Annotated[Optional[float], typer.Option(help="Give up after this many seconds (default 10).")] = None,
    debug: Annotated[bool, typer.Option(help="Show tracebacks (API keys are masked).")] = False,
) -> None:
    """Cancel a job on an img2vid server: a queued job never starts, a running one stops.

    Prints one line. Exit code 0: cancelled; 2: it already finished; 4: no such job for this key; 6: the server could not be reached.
    """
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        from ..engines.remote import CANCEL_TIMEOUT, RemoteEngine

        with RemoteEngine(base_url=_server_url(engine)) as remote:
            remote.cancel_job(job_id, timeout=CANCEL_TIMEOUT if timeout is None else timeout)
        typer.echo(f"job {job_id} cancelled")
    except (Exception, KeyboardInterrupt) as error:  # noqa: BLE001 - every error leaves as an exit code
        raise typer.Exit(report_error(error, debug=debug, console=console)) from None
