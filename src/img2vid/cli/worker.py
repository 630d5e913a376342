"""``img2vid worker``: take jobs from the shared store through the Celery broker and run them on a warm engine.

One job at a time per process; run one per GPU (``CUDA_VISIBLE_DEVICES=N img2vid worker``). Options override
``IMG2VID_*`` variables, as for ``serve``. The store and the broker are checked before the model loads, so a
wrong URL is one line and an exit code. This module must never print a URL's password or an API key.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from .exits import report_error

__all__ = ["worker"]


def worker(
    model: Annotated[
        Optional[list[str]],
        typer.Option(
            metavar="[NAME=]SOURCE",
            help="The model this worker holds (repeatable): a short name (svd-xt, wan2.2-ti2v-5b, ltx-video, ...), a "
            "hub id, a diffusers folder, an SVD .safetensors file, or 'tiny' / 'tiny-<short name>'. NAME is the "
            "name requests use (default: the short name, or the folder's or file's name); it takes only jobs of its models, "
            "consumes only their doorbell queues (img2vid.NAME) and announces them to the front ends.",
        ),
    ] = None,
    device: Annotated[Optional[str], typer.Option(help="cuda, cuda:1, mps or cpu (default: best available).")] = None,
    dtype: Annotated[Optional[str], typer.Option(help="float32, float16 or bfloat16 (default: chosen for the device).")] = None,
    speed: Annotated[
        Optional[str],
        typer.Option(help="eager, compiled (default on CUDA: compiled before the first job), fp8 or fast."),
    ] = None,
    memory: Annotated[Optional[str], typer.Option(help="auto (default) or low (SVD-XT in 8 GiB).")] = None,
    name: Annotated[Optional[str], typer.Option(help="This worker's name in metrics and logs (default: host:pid).")] = None,
    log_level: Annotated[str, typer.Option(help="Log level: DEBUG, INFO, WARNING.")] = "INFO",
    debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False,
) -> None:
    """Run jobs for 'img2vid serve --dispatch celery' front ends (needs IMG2VID_DATABASE_URL and IMG2VID_BROKER_URL)."""
    try:
        import logging

        from ..jobs.services import check_services
        from ..jobs.settings import load_settings
        from ..jobs.worker import Worker
        from ..redact import install_process_redaction

        install_process_redaction()  # Celery's and kombu's log lines are masked too, whoever logs them
        logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        settings = load_settings(models=model, device=device, dtype=dtype, speed=speed, memory=memory, dispatch="celery")
        if not settings.database_url:
            typer.echo(
                "img2vid worker: IMG2VID_DATABASE_URL is not set; the worker uses the local SQLite store, "
                "which only a server on this machine can share",
                err=True,
            )
        check_services(settings)
        Worker(settings, name=name).run(loglevel=log_level.upper())
    except (Exception, KeyboardInterrupt) as error:  # noqa: BLE001 - every error leaves as an exit code
        raise typer.Exit(report_error(error, debug=debug)) from None
