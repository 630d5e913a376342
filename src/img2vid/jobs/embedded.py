"""The dispatcher interface, and the embedded dispatcher: worker threads inside the server process.

A dispatcher gets committed jobs run somewhere. Only ids travel: a worker claims a job in the store, re-reads
its inputs there, and writes the outcome back through :class:`~img2vid.jobs.runner.JobRunner`, so a job
re-run after a crash makes the same video. The embedded dispatcher owns its store alone (one machine), so at
start it re-queues whatever a crash left running in its SQLite file; the scaled-out one (:mod:`img2vid.jobs.celery_dispatch`)
never does that. This module must never run an engine on the event loop, and never lose a claimed job on
shutdown.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from ..errors import StoreUnavailableError
from .engine_set import EngineFactory, EngineSet, warm_engines
from .reconciler import Reconciler
from .runner import JobRunner, RunOptions
from .served import ServedModel
from .store import JobStore

__all__ = ["Dispatcher", "EmbeddedDispatcher", "EngineFactory", "warm_engines", "OutcomeHook"]

log = logging.getLogger("img2vid.jobs")

#: Called after each job this process ran: (outcome, seconds).
OutcomeHook = Callable[[str, float], None]

#: A worker looks at the store at least this often, even without a wake-up (jobs from other processes).
_IDLE_POLL_SECONDS = 1.0


class Dispatcher(Protocol):
    """Gets committed jobs run somewhere; the server calls nothing else."""

    def start(self) -> None:
        """Load engines (if this process runs jobs) and start taking or routing jobs."""

    def notify(self, job_id: str, model: str = "") -> None:
        """A job of ``model`` (its served name; ``''`` before model names) was committed to the store
        (called after the commit, never before): route it to a worker that holds ``model``."""

    def waiting_notice(self, model: str) -> str | None:
        """Why a queued job of ``model`` may wait long (no live worker holds it), for the submit and poll
        answers; None when nothing unusual holds it up. Must not wait on a service: it is called on the
        event loop."""

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking jobs; a job cut short goes back to the queue."""

    @property
    def ready(self) -> bool:
        """Whether jobs can be taken (engines loaded, or the broker reachable)."""
        ...

    def health(self) -> dict[str, bool]:
        """Each part this dispatcher depends on, beyond the store, and whether it answers."""
        ...


class EmbeddedDispatcher:
    """``workers`` threads, each with its own warm engines (one per served model), each running one job at
    a time. ``engine_factory`` is one factory (its engine serves every job) or, with ``served``, a factory
    per served name."""

    def __init__(
        self,
        store: JobStore,
        engine_factory: EngineFactory | Mapping[str, EngineFactory],
        *,
        served: Sequence[ServedModel] | None = None,
        workers: int = 1,
        options: RunOptions | None = None,
        sweep_interval: float = 60.0,
        on_change: Callable[[str], None] | None = None,
        on_start: Callable[[str], None] | None = None,
        on_outcome: OutcomeHook | None = None,
    ) -> None:
        self.store = store
        self.engine_factory = engine_factory
        self.served = served
        self.workers = workers
        self.options = options or RunOptions()
        self.on_outcome = on_outcome or (lambda _outcome, _seconds: None)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._engines: list[EngineSet] = []
        self.runner = JobRunner(store, self.options, stopping=self._stop.is_set, on_change=on_change, on_start=on_start)
        # Expired leases happen here too: a result that could not be written while the SQLite file was
        # read-only leaves its job running until the lease runs out; the reconciler re-queues it.
        self.reconciler = Reconciler(
            store,
            interval=min(max(1.0, self.options.lease_seconds / 3), sweep_interval),
            sweep_interval=sweep_interval,
            result_ttl=self.options.result_ttl,
            on_requeue=self.notify,
            presence=self.options.worker,
        )

    @property
    def ready(self) -> bool:
        return len(self._engines) == self.workers and not self._stop.is_set()

    def health(self) -> dict[str, bool]:
        return {}

    def start(self) -> None:
        if self.store.is_sqlite:
            self._requeue_what_a_crash_left()
        self._engines = [EngineSet.build(self.engine_factory, self.served) for _ in range(self.workers)]
        for index, engine in enumerate(self._engines):
            thread = threading.Thread(target=self._work, args=(engine,), name=f"img2vid-worker-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self.reconciler.start()

    def _requeue_what_a_crash_left(self) -> None:
        """A SQLite store belongs to this one server, so every running job in it was this server's before a
        crash: re-queue them now rather than after their leases run out. A shared store (PostgreSQL) is
        left to the reconciler, which touches only expired leases: other processes may hold the rest."""
        try:
            requeued = self.store.requeue_running(ttl=self.options.result_ttl)
        except Exception:  # noqa: BLE001 - the store may be down at start; the reconciler catches up
            log.exception("could not re-queue the jobs an earlier server left running")
            requeued = 0
        if requeued:
            log.warning("re-queued %d job(s) left running by an earlier server", requeued)

    def notify(self, job_id: str, model: str = "") -> None:
        self._wake.set()

    def waiting_notice(self, model: str) -> str | None:
        return None  # this process holds every model it admits

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        self.reconciler.stop()
        deadline = time.monotonic() + timeout
        for thread, engine in zip(self._threads, self._engines, strict=False):  # fewer threads if start() failed midway
            thread.join(max(0.0, deadline - time.monotonic()))
            if not thread.is_alive():  # one still in a run keeps its engine: closing would wait for the run
                engine.close()
        self._threads.clear()

    def _work(self, engines: EngineSet) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                claim = self.store.claim_next(
                    self.options.worker, lease_seconds=self.options.lease_seconds, models=engines.claim_models
                )
            except Exception as error:  # noqa: BLE001 - the store may be briefly unavailable; keep the worker alive
                # Every second while the store is down: one line each, a traceback only for a surprise.
                log.warning(
                    "could not claim a job (%s); retrying",
                    type(error).__name__,
                    exc_info=not isinstance(error, StoreUnavailableError),
                )
                claim = None
            if claim is None:
                self._wake.wait(_IDLE_POLL_SECONDS)
                continue
            self._wake.set()  # another worker may take the next queued job at once
            started = time.monotonic()
            outcome = self.runner.run(engines.for_job(claim.job.model), claim)
            self.on_outcome(outcome, time.monotonic() - started)
