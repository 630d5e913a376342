"""``img2vid serve``: run the protocol server on uvicorn with a warm engine.

Options override ``IMG2VID_*`` variables, which override the defaults in
:class:`img2vid.jobs.settings.ServerSettings`. FastAPI, uvicorn and the engine are imported only when
the command runs, so ``img2vid --help`` stays fast. This module must never print or log an API key.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from .exits import report_error

if TYPE_CHECKING:
    pass

__all__ = ["serve"]


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 for every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    data: Annotated[
        Optional[Path], typer.Option(help="Folder for the job store (default: $IMG2VID_DATA, else a per-user folder).")
    ] = None,
    model: Annotated[
        Optional[list[str]],
        typer.Option(
            metavar="[NAME=]SOURCE",
            help="A model to serve (repeatable; the first is the default for a request that names none): a short "
            "name (svd-xt, wan2.2-ti2v-5b, ltx-video, ...), a hub id, a diffusers folder, an SVD .safetensors file, "
            "or 'tiny' / 'tiny-<short name>' (offline smoke runs). NAME is what a request's model field says "
            "(default: the short name, or the folder's or file's name). With --dispatch celery: the models "
            "this front end admits (read for their rules, never loaded; default: those live workers hold).",
        ),
    ] = None,
    workers: Annotated[Optional[int], typer.Option(help="Jobs run at once, each on its own warm engine (default 1).")] = None,
    dispatch: Annotated[
        Optional[str],
        typer.Option(help="embedded: run jobs here (default); celery: hand them to 'img2vid worker' processes (loads no model)."),
    ] = None,
    device: Annotated[Optional[str], typer.Option(help="cuda, cuda:1, mps or cpu (default: best available).")] = None,
    speed: Annotated[
        Optional[str],
        typer.Option(help="eager, compiled (default on CUDA: compiled before the first job), fp8 or fast."),
    ] = None,
    memory: Annotated[Optional[str], typer.Option(help="auto (default) or low (SVD-XT in 8 GiB).")] = None,
    any_size: Annotated[
        Optional[bool], typer.Option("--any-size/--protocol-sizes", help="Accept sizes other than 1024x576, 576x1024, 768x768.")
    ] = None,
    auth: Annotated[Optional[bool], typer.Option("--auth/--no-auth", help="Require an API key (default: on).")] = None,
    rate_limit: Annotated[Optional[int], typer.Option(help="Requests per key per 10 s (0: no limit; default 150).")] = None,
    result_ttl: Annotated[Optional[float], typer.Option(help="Seconds results are kept (default 86400).")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    access_log: Annotated[bool, typer.Option(help="Log every request (costly under heavy polling).")] = False,
    debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False,
) -> None:
    """Serve Stability's image-to-video protocol from this machine."""
    from ..redact import install_process_redaction

    install_process_redaction()  # uvicorn's, Celery's and SQLAlchemy's log lines are masked too
    restore_logging: Callable[[], None] | None = None
    try:
        import uvicorn

        from ..jobs.embedded import warm_engines
        from ..jobs.engines import engine_factories_for
        from ..jobs.settings import load_settings
        from ..server import create_app

        settings = load_settings(
            data=data,
            models=model,
            workers=workers,
            dispatch=dispatch,
            device=device,
            speed=speed,
            memory=memory,
            any_size=any_size,
            auth=auth,
            rate_limit=rate_limit,
            result_ttl=result_ttl,
        )
        restore_logging = _log_img2vid(log_level)
        if settings.dispatch == "embedded":
            # Load (and, in a compiled speed mode, compile) before listening, so a model that cannot load is
            # a plain error and an exit code, and the first job does not wait for a compile; progress is logged.
            warm = {name: iter(warm_engines(factory, settings.workers)) for name, factory in engine_factories_for(settings).items()}
            app = create_app(settings, engine_factory={name: (lambda it=it: next(it)) for name, it in warm.items()})
        else:
            from ..jobs.services import check_services

            check_services(settings)
            app = create_app(settings)
        where = "jobs run by img2vid workers" if settings.dispatch == "celery" else f"data in {settings.data}"
        typer.echo(f"img2vid server on http://{host}:{port} ({where})", err=True)
        uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=access_log)
    except (Exception, KeyboardInterrupt) as error:  # noqa: BLE001 - every error leaves as an exit code
        raise typer.Exit(report_error(error, debug=debug)) from None
    finally:
        if restore_logging is not None:
            restore_logging()


class _CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a line is logged, not the stream it was at set-up: a host
    that swaps stderr (a test runner, a process manager) never gets lines written to a closed stream."""

    @property
    def stream(self) -> Any:  # pyright: ignore[reportIncompatibleVariableOverride]
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def _log_img2vid(level: str) -> Callable[[], None]:
    """img2vid's own log lines on stderr at uvicorn's ``level`` (uvicorn configures only its own loggers;
    without this, INFO lines such as a client hanging up mid-upload went nowhere and WARNING lines reached
    stderr unformatted). The local engine's loading and compiling progress shows at INFO whatever the level.

    Returns what puts the loggers back as they were, which ``serve`` calls as it returns: a process that
    runs ``serve`` and then goes on (a test, an embedding host) keeps no handler or level of its."""
    logger = logging.getLogger("img2vid")
    engines = logging.getLogger("img2vid.engines")
    before = (logger.level, engines.level)
    handler: logging.Handler | None = None
    if not logger.handlers:
        handler = _CurrentStderr()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
    numeric = logging.getLevelName(level.upper())
    logger.setLevel(numeric if isinstance(numeric, int) else logging.INFO)
    engines.setLevel(min(engines.getEffectiveLevel(), logging.INFO))

    def restore() -> None:
        if handler is not None:
            logger.removeHandler(handler)
        logger.setLevel(before[0])
        engines.setLevel(before[1])

    return restore
