"""``img2vid worker``'s body: a Celery worker that runs jobs from the shared store on one warm engine.

One job at a time per process (solo pool: the engine is never used from a forked child after CUDA has
started), one process per GPU. Each message is a doorbell: the worker claims the next job in fair order from
the store under a lease, runs it through :class:`~img2vid.jobs.runner.JobRunner`, and acknowledges the
message after the outcome is written (acks late). A worker consumes only the queues of the models it holds
(``img2vid.<name>``, and the legacy ``img2vid`` when it holds an SVD model), claims a job of the doorbell's
queue's model, and announces its models with every heartbeat, so front ends know what they may admit. A warm shutdown (SIGTERM, Ctrl-C) stops the engine at its
next step and gives the job back to the queue. This module must never import FastAPI.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Sequence
from typing import Any

from .celery_app import TASK_NAME, make_celery, model_of_queue, queues_for
from .engine_set import EngineFactory, EngineSet
from .engines import engine_factories_for
from .runner import JobRunner, RunOptions
from .served import ServedModel, claim_names
from .settings import ServerSettings
from .store import JobStore

__all__ = ["default_worker_name", "Worker"]

log = logging.getLogger("img2vid.worker")


def default_worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Worker:
    """The parts of one worker process; :meth:`run` blocks until the worker is shut down."""

    def __init__(self, settings: ServerSettings, *, name: str | None = None, engine_factory: EngineFactory | None = None) -> None:
        broker_url = settings.require_broker("a worker")
        self.settings = settings
        self.name = name or default_worker_name()
        self.store: JobStore = settings.open_store()
        self.factories = engine_factory if engine_factory is not None else engine_factories_for(settings)
        self.options = RunOptions.from_settings(settings, worker=self.name)
        self.stopping = threading.Event()
        self.runner = JobRunner(self.store, self.options, stopping=self.stopping.is_set)
        self.app = make_celery(broker_url, job_timeout=settings.job_timeout)
        self.engines: EngineSet | None = None
        self._register_task()

    def _register_task(self) -> None:
        worker = self

        @self.app.task(name=TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
        def run_job(task: Any, job_id: str) -> str:
            delivery = getattr(task.request, "delivery_info", None) or {}
            return worker.take(job_id, queue=delivery.get("routing_key"))

    @property
    def served(self) -> list[ServedModel]:
        """The models this worker holds: what it announces and whose queues it consumes. An engine that
        serves every name (one custom factory) holds the settings' names."""
        if self.engines is not None and self.engines.served is not None:
            return [model for model in self.engines.served if model.name in self.engines.engines]
        return self.settings.served_models()

    def claim_models(self, queue: str | None = None) -> Sequence[str] | None:
        """The job models to claim for a doorbell from ``queue``: that queue's model when this worker holds
        it (so a doorbell of one model never starts a job of another, whose own doorbell would then wake a
        worker for nothing while this model's job waited for the reconciler); else every model it holds."""
        assert self.engines is not None
        mine = self.engines.claim_models
        model = model_of_queue(queue)
        if model is None:
            return mine
        if mine is None:
            return [model]
        return [model] if model in mine else mine

    def take(self, job_id: str, queue: str | None = None) -> str:
        """Answer one doorbell: claim the next job in fair order (of the queue's model) and run it; 'none'
        when nothing is claimable."""
        if self.stopping.is_set():
            return "stopping"
        assert self.engines is not None, "run() loads the engines before Celery delivers a job"
        try:
            claim = self.store.claim_next(self.name, lease_seconds=self.options.lease_seconds, models=self.claim_models(queue))
        except Exception:  # noqa: BLE001 - the store may be down; the reconciler rings again later
            log.warning("could not claim a job (doorbell %s); the reconciler will ring again", job_id[:12])
            return "store_unavailable"
        if claim is None:
            return "none"
        log.info("job %s (%s): attempt %d on %s, rung on %s", claim.job.id[:12], claim.job.model or "svd, unnamed", claim.attempt, self.name, queue or "an unknown queue")
        outcome = self.runner.run(self.engines.for_job(claim.job.model), claim)
        log.info("job %s: %s", claim.job.id[:12], outcome)
        return outcome

    def _presence(self) -> None:
        interval = max(0.5, self.settings.lease_seconds / 3)
        while not self.stopping.wait(interval):
            try:
                self.store.worker_seen(self.name, models=self.served)
            except Exception:  # noqa: BLE001 - the store may be down; try again
                log.debug("presence write failed", exc_info=True)

    def run(self, *, loglevel: str = "INFO") -> None:
        from celery.signals import worker_shutting_down

        self.engines = EngineSet.build(self.factories, None if callable(self.factories) else self.settings.served_models())
        served = self.served
        queues = queues_for(claim_names(served))
        self.store.worker_seen(self.name, models=served)
        threading.Thread(target=self._presence, name="img2vid-presence", daemon=True).start()
        worker_shutting_down.connect(lambda **_kw: self.stopping.set(), weak=False)
        log.info("worker %s ready with %s; waiting for jobs on %s", self.name, ", ".join(m.name for m in served), ", ".join(queues))
        self.app.worker_main(
            [
                "worker",
                "--pool=solo",
                "--concurrency=1",
                "--prefetch-multiplier=1",
                f"--hostname=img2vid-{os.getpid()}@{socket.gethostname()}",
                f"--queues={','.join(queues)}",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                f"--loglevel={loglevel}",
            ]
        )
        self.stopping.set()
        self.engines.close()
        self.store.close()
