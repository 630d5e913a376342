"""The services a job-running process needs, checked at its start: the store, and with Celery the broker.

Shared by ``img2vid serve --dispatch celery`` and ``img2vid worker``, so both fail their start in one line
(never at the first job), with the URL and the driver's reason masked by the one redaction. This module
must never print a URL's password and never import FastAPI or torch.
"""

from __future__ import annotations

from .settings import ServerSettings

__all__ = ["check_services"]


def check_services(settings: ServerSettings) -> None:
    """Fail at start, in one line, when the store or the broker cannot be reached (never at the first job).
    The line names the URL and the driver's reason, both masked by :func:`img2vid.redact.redact`."""
    from ..errors import ServiceError
    from ..jobs.celery_app import make_celery, masked
    from ..redact import redact

    settings.open_store().close()
    if settings.broker_url:
        app = make_celery(settings.broker_url, job_timeout=settings.job_timeout)
        try:
            with app.connection_for_write() as connection:
                connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0.5, timeout=3)
        except Exception as error:  # noqa: BLE001 - kombu raises many kinds; all mean "unreachable"
            reason = (str(error).strip().splitlines() or [""])[0]
            raise ServiceError(
                f"cannot reach the broker at {masked(settings.broker_url)} (IMG2VID_BROKER_URL): "
                + redact(f"{type(error).__name__}: {reason}" if reason else type(error).__name__)
            ) from None
