"""The reconciler: the periodic pass that keeps the store and the workers agreeing.

Every few seconds it re-queues jobs whose lease ran out (their worker died, stalled or lost the store;
past MAX_ATTEMPTS they fail with a message that says so), rings the broker's doorbell again for queued jobs
whose message may have been lost (``top_up``, celery mode: model by model, each into its model's queue, since
only that model's workers consume it), and now and then removes expired results.
Every step is a guarded statement in the store, so any number of front ends may run it at once. It must
never touch a job whose lease is still live: a front end's restart leaves running jobs to their workers.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .store import MAX_ATTEMPTS, JobStore

__all__ = ["Reconciler"]

log = logging.getLogger("img2vid.jobs")


class Reconciler:
    def __init__(
        self,
        store: JobStore,
        *,
        interval: float = 2.0,
        sweep_interval: float = 60.0,
        result_ttl: float = 24 * 3600.0,
        max_attempts: int = MAX_ATTEMPTS,
        on_requeue: Callable[[str], None] | None = None,
        top_up: Callable[[], object] | None = None,
        presence: str | None = None,
    ) -> None:
        self.store = store
        self.interval = interval
        self.sweep_interval = sweep_interval
        self.result_ttl = result_ttl
        self.max_attempts = max_attempts
        self.on_requeue = on_requeue or (lambda _job_id: None)
        #: Makes sure the broker holds a doorbell for every queued job (celery mode only).
        self.top_up = top_up
        #: The name of the worker threads in this process (embedded mode), reported live at each pass.
        self.presence = presence
        self._last_sweep = -float("inf")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="img2vid-reconciler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.run_once()

    def run_once(self) -> None:
        """One pass; each step is tried on its own, so a failing one does not stop the others. Which leases
        ran out and which results expired is the database's clock's to say; this process's clock only paces
        the sweep."""
        now = time.monotonic()
        if self.presence is not None:
            try:
                self.store.worker_seen(self.presence)
            except Exception:  # noqa: BLE001 - try again next pass
                log.debug("reconciler: presence write failed", exc_info=True)
        try:
            requeued = self.store.requeue_expired(max_attempts=self.max_attempts, ttl=self.result_ttl)
            if requeued:
                log.warning("re-queued %d job(s) whose worker stopped renewing its lease", requeued)
                self.on_requeue("")
        except Exception:  # noqa: BLE001 - the store may be down; try again next pass
            log.warning("reconciler: could not re-queue expired leases (%s)", _why())
        if self.top_up is not None:
            try:
                self.top_up()
            except Exception:  # noqa: BLE001 - the broker may be down; try again next pass
                log.warning("reconciler: could not re-publish queued jobs (%s)", _why())
        if now - self._last_sweep >= self.sweep_interval:
            try:
                removed = self.store.remove_expired()
                self._last_sweep = now
                if removed:
                    log.info("removed %d expired job(s)", removed)
            except Exception:  # noqa: BLE001 - try again next pass
                log.warning("reconciler: expiry sweep failed (%s)", _why())


def _why() -> str:
    """The current exception's type, for a one-line warning that repeats while a service is down."""
    import sys

    error = sys.exc_info()[1]
    return type(error).__name__ if error is not None else "unknown error"
