"""The front end's side of Celery: ring the doorbell for each committed job, and keep one rung per queued job.

A front end with ``--dispatch celery`` loads no model: it writes jobs to the shared store, publishes their
ids (from a background thread, so a slow or stopped broker never holds up a submit), and runs the
reconciler, whose ``top_up`` compares the queued jobs in the store with the messages waiting in the broker and
publishes the difference (a Redis restart loses messages; the store never loses the jobs). Cancel never goes
through the broker: it is a row update that the job's worker sees at its next heartbeat. This module must
never run an engine and never show the broker URL's password.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from .celery_app import QUEUE, TASK_NAME, make_celery
from .health import PROBE_TIMEOUT, Probe
from .reconciler import Reconciler
from .runner import RunOptions
from .store import QUEUED, JobStore

__all__ = ["CeleryDispatcher"]

log = logging.getLogger("img2vid.jobs")


class CeleryDispatcher:
    """Routes committed jobs to ``img2vid worker`` processes through a Celery broker."""

    def __init__(
        self,
        store: JobStore,
        broker_url: str,
        *,
        options: RunOptions | None = None,
        reconcile_interval: float = 2.0,
        sweep_interval: float = 60.0,
        app: Any = None,
    ) -> None:
        self.store = store
        self.options = options or RunOptions()
        self.app = app or make_celery(broker_url, job_timeout=self.options.job_timeout)
        self._outbox: queue.Queue[str | None] = queue.Queue()
        self._publisher: threading.Thread | None = None
        #: What /healthz reports: a round trip of its own, bounded and cached for half a second, never the
        #: reconciler's last pass (which may be seconds old, or stuck in the broker's connect retries).
        self.broker_probe = Probe("broker", self.ping_broker)
        self.reconciler = Reconciler(
            store,
            interval=reconcile_interval,
            sweep_interval=sweep_interval,
            result_ttl=self.options.result_ttl,
            top_up=self.top_up,
        )

    @property
    def ready(self) -> bool:
        return True  # a front end has no engine to load; /healthz reports the broker on its own

    def start(self) -> None:
        self._publisher = threading.Thread(target=self._publish_loop, name="img2vid-publisher", daemon=True)
        self._publisher.start()
        self.reconciler.start()

    def notify(self, job_id: str) -> None:
        self._outbox.put(job_id)

    def stop(self, timeout: float = 10.0) -> None:
        self.reconciler.stop()
        self._outbox.put(None)
        if self._publisher is not None:
            self._publisher.join(timeout)

    def publish(self, job_id: str) -> None:
        """Send one doorbell now (raises when the broker cannot be reached)."""
        self.app.send_task(TASK_NAME, args=[job_id], queue=QUEUE, retry=False)

    def _publish_loop(self) -> None:
        while True:
            job_id = self._outbox.get()
            if job_id is None:
                return
            try:
                self.publish(job_id)
            except Exception:  # noqa: BLE001 - the reconciler rings again for queued jobs
                log.warning("could not publish job %s; the reconciler will retry", job_id[:12], exc_info=False)

    def waiting_messages(self) -> int:
        """Doorbells waiting in the broker (0 when its queue does not exist yet)."""
        from kombu.exceptions import ChannelError

        with self.app.connection_for_write() as connection:
            try:
                return int(connection.default_channel.queue_declare(queue=QUEUE, passive=True).message_count)
            except ChannelError:
                return 0

    def ping_broker(self, timeout: float = PROBE_TIMEOUT) -> None:
        """One round trip to the broker on a connection of its own, with no retries and every socket wait
        bounded by ``timeout``; raises when the broker does not answer. (A missing queue is an answer.)"""
        from kombu.exceptions import ChannelError

        options = {"max_retries": 0, "socket_connect_timeout": timeout, "socket_timeout": timeout}
        with self.app.connection_for_write(connect_timeout=timeout, transport_options=options) as connection:
            try:
                connection.default_channel.queue_declare(queue=QUEUE, passive=True)
            except ChannelError:
                pass

    def top_up(self) -> int:
        """Publish a doorbell for each queued job the broker holds none for; returns how many."""
        waiting = self.waiting_messages()
        deficit = self.store.counts()[QUEUED] - waiting - self._outbox.qsize()
        if deficit <= 0:
            return 0
        ids = self.store.queued_ids(min(deficit, 100))
        for job_id in ids:
            self.publish(job_id)
        log.info("re-published %d queued job(s) the broker had no message for", len(ids))
        return len(ids)

    def health(self) -> dict[str, bool]:
        """Whether the broker answers now: at most half a second old, and never more than a second's wait."""
        return {"broker": self.broker_probe.read().ok}
