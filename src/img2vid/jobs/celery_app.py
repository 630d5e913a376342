"""The Celery app both sides share: the front end publishes doorbells with it, ``img2vid worker`` consumes them.

A message carries only a job id and means "a job is waiting": the worker that takes it claims the next job
in fair order from the store (often, but not always, that id). So a lost message costs time until the
reconciler rings again, a duplicate or late one finds nothing to claim and is dropped, and neither can lose a
job or make a second result. Results never travel through the broker.

Doorbells are routed by model: each served model name has a queue of its own (``img2vid.<name>``), and the
jobs from before model names (``model = ''``, all SVD) keep the legacy queue ``img2vid``. A worker consumes
the queues of the models it holds, so a doorbell wakes only a worker that can run the job, and the claim it
makes is for that queue's model (the store's claim is filtered by model as well: the queue only saves a
worker from waking for nothing, it is never what keeps a job off the wrong engine).

The settings follow Celery's guidance for long, at-least-once tasks: acks late, reject on worker lost,
prefetch 1, results ignored, and a Redis visibility timeout longer than the longest job. This module must
never put a URL with its password into a log line or an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..redact import mask_url_credentials

__all__ = ["TASK_NAME", "QUEUE", "QUEUE_PREFIX", "queue_for", "model_of_queue", "queues_for", "make_celery", "masked"]

TASK_NAME = "img2vid.run_job"
#: The legacy queue: doorbells of jobs from before model names (``model = ''``, SVD jobs), and the one
#: queue every worker consumed before doorbells were routed by model.
QUEUE = "img2vid"
#: A served model's queue is this prefix and its name (names are letters, digits, '.', '_' and '-').
QUEUE_PREFIX = "img2vid."


def queue_for(model: str) -> str:
    """The queue a job of ``model`` rings: ``img2vid.<name>``, or the legacy ``img2vid`` for ``''``."""
    return QUEUE_PREFIX + model if model else QUEUE


def model_of_queue(queue: str | None) -> str | None:
    """The job model a queue's doorbells are for (``''``: the legacy queue); None for any other queue
    (a doorbell that came some other way: the worker then claims a job of any model it holds)."""
    if queue == QUEUE:
        return ""
    if queue and queue.startswith(QUEUE_PREFIX) and len(queue) > len(QUEUE_PREFIX):
        return queue[len(QUEUE_PREFIX) :]
    return None


def queues_for(claim_models: Sequence[str]) -> list[str]:
    """The queues a worker that claims jobs of ``claim_models`` (names, and ``''`` when it holds an SVD
    model) consumes, in that order."""
    return list(dict.fromkeys(queue_for(model) for model in claim_models))


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
