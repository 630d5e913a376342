"""The Celery app both sides share: the front end publishes doorbells with it, ``img2vid worker`` consumes them.

A message carries only a job id and means "a job is waiting": the worker that takes it claims the next job
in fair order from the store (often, but not always, that id). So a lost message costs time until the
reconciler rings again, a duplicate or late one finds nothing to claim and is dropped, and neither can lose a
job or make a second result. Results never travel through the broker.

The settings follow Celery's guidance for long, at-least-once tasks: acks late, reject on worker lost,
prefetch 1, results ignored, and a Redis visibility timeout longer than the longest job. This module must
never put a URL with its password into a log line or an error.
"""

from __future__ import annotations

from typing import Any

from ..redact import mask_url_credentials

__all__ = ["TASK_NAME", "QUEUE", "make_celery", "masked"]

TASK_NAME = "img2vid.run_job"
QUEUE = "img2vid"


def masked(url: str) -> str:
    """The broker URL as it may be shown: its password (user part or query) replaced, by the one rule."""
    return mask_url_credentials(url)


def make_celery(broker_url: str, *, job_timeout: float, connect_timeout: float = 2.0) -> Any:
    """A Celery app for ``broker_url``; the visibility timeout is set well above ``job_timeout``."""
    from celery import Celery

    visibility = int(max(3600.0, job_timeout * 2 + 300))
    app = Celery("img2vid", broker=broker_url, set_as_current=False)
    transport = {"visibility_timeout": visibility, "socket_connect_timeout": connect_timeout, "socket_timeout": 10}
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        result_backend=None,
        broker_transport_options=transport,
        result_backend_transport_options={"visibility_timeout": visibility},
        visibility_timeout=visibility,
        broker_connection_timeout=connect_timeout,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        task_default_queue=QUEUE,
        task_create_missing_queues=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        accept_content=["json"],
        task_serializer="json",
    )
    return app
