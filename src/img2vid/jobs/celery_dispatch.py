"""The front end's side of Celery: ring the doorbell for each committed job, and keep one rung per queued job.

A front end with ``--dispatch celery`` loads no model: it writes jobs to the shared store, publishes their
ids to their model's queue (``img2vid.<name>``; see :mod:`.celery_app`) from a background thread, so a slow
or stopped broker never holds up a submit, and runs the reconciler, whose ``top_up`` compares, model by
model, the queued jobs in the store with the messages waiting in that model's queue and publishes the
difference (a Redis restart loses messages; the store never loses the jobs). A job whose model no live
worker holds stays queued, its doorbell waiting in its queue, until a worker of that model starts; the
submit and poll answers say so (:meth:`CeleryDispatcher.waiting_notice`). Cancel never goes through the
broker: it is a row update that the job's worker sees at its next heartbeat. This module must never run an
engine and never show the broker URL's password.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter
from typing import Any

from .celery_app import QUEUE, TASK_NAME, make_celery, queue_for
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
        self._outbox: queue.Queue[tuple[str, str] | None] = queue.Queue()
        #: Doorbells in the outbox, by model: top_up must not publish them a second time.
        self._pending: Counter[str] = Counter()
        self._pending_lock = threading.Lock()
        self._publisher: threading.Thread | None = None
        #: Which models live workers hold, as submits, polls and /healthz read it (never waiting on the store).
        self.live = store.live_model_view(self.options.lease_seconds)
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
        # The one read of the live workers that waits (bounded by the store's connect timeout), made before
        # the first request, so no request waits for it on the event loop.
        self.live.refresh()
        self._publisher = threading.Thread(target=self._publish_loop, name="img2vid-publisher", daemon=True)
        self._publisher.start()
        self.reconciler.start()

    def notify(self, job_id: str, model: str = "") -> None:
        """Ring ``model``'s queue for a committed job (soon, from the publisher thread)."""
        with self._pending_lock:
            self._pending[model] += 1
        self._outbox.put((job_id, model))

    def waiting_notice(self, model: str) -> str | None:
        """Why a queued job of ``model`` may wait long: no live worker holds its model (it stays queued and
        runs when one starts). None when one does. Reads the cached view, so it never waits on the store."""
        if self.live.holders(model):
            return None
        shown = model or "svd (a job from before model names)"
        return f"no live worker holds model {shown}; the job waits until one does"

    def stop(self, timeout: float = 10.0) -> None:
        self.reconciler.stop()
        self._outbox.put(None)
        if self._publisher is not None:
            self._publisher.join(timeout)

    def publish(self, job_id: str, model: str = "") -> None:
        """Send one doorbell to ``model``'s queue now (raises when the broker cannot be reached). The message
        is the job id alone, as before doorbells were routed: the worker reads the model from the queue."""
        self.app.send_task(TASK_NAME, args=[job_id], queue=queue_for(model), retry=False)

    def _publish_loop(self) -> None:
        while True:
            item = self._outbox.get()
            if item is None:
                return
            job_id, model = item
            try:
                self.publish(job_id, model)
            except Exception:  # noqa: BLE001 - the reconciler rings again for queued jobs
                log.warning("could not publish job %s; the reconciler will retry", job_id[:12], exc_info=False)
            finally:
                with self._pending_lock:
                    self._pending[model] -= 1
                    if self._pending[model] <= 0:
                        del self._pending[model]

    def pending(self, model: str) -> int:
        """Doorbells of ``model`` still in this front end's outbox."""
        with self._pending_lock:
            return self._pending.get(model, 0)

    def waiting_messages(self, models: list[str] | None = None) -> dict[str, int]:
        """Doorbells waiting in the broker, by model (``models``: whose queues to count; default the legacy
        queue's); 0 for a queue that does not exist yet."""
        from kombu.exceptions import ChannelError

        counts: dict[str, int] = {}
        with self.app.connection_for_write() as connection:
            for model in models if models is not None else [""]:
                try:
                    counts[model] = int(connection.default_channel.queue_declare(queue=queue_for(model), passive=True).message_count)
                except ChannelError:
                    counts[model] = 0
        return counts

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
        """Publish a doorbell for each queued job whose model's queue holds none for it; returns how many.

        Model by model: a doorbell in one model's queue cannot wake a worker of another, so a model's
        deficit is its queued jobs less the messages in its own queue and its doorbells still in the outbox.
        """
        queued = {model: counts[QUEUED] for model, counts in self.store.active_by_model().items() if counts[QUEUED]}
        if not queued:
            return 0
        waiting = self.waiting_messages(sorted(queued))
        published = 0
        for model, count in sorted(queued.items()):
            deficit = count - waiting.get(model, 0) - self.pending(model)
            if deficit <= 0:
                continue
            for job_id in self.store.queued_ids_for(model, min(deficit, 100)):
                self.publish(job_id, model)
                published += 1
        if published:
            log.info("re-published %d queued job(s) the broker had no message for", published)
        return published

    def health(self) -> dict[str, bool]:
        """Whether the broker answers now: at most half a second old, and never more than a second's wait."""
        return {"broker": self.broker_probe.read().ok}
