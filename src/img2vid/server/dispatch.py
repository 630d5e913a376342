"""Running jobs: the dispatcher interface and the embedded dispatcher (worker threads in the server).

A dispatcher takes queued jobs from the store, runs them on an engine and writes the outcome back to the
store. Only ids travel: a worker re-reads the job's inputs from the store, and the result is a function
of those inputs and the seed stored at submit, so a job re-run after a crash makes the same video. A
failing job fails alone (its error is stored) and the worker goes on. A scaled-out dispatcher (Celery
workers on other machines writing to a shared store) implements the same :class:`Dispatcher` interface.
This module must never run an engine on the event loop, and never lose a claimed job on shutdown.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Protocol

from ..engines.base import Engine
from ..errors import CancelledError, Img2VidError
from ..request import VideoRequest
from .metrics import ServerMetrics
from .store import JobInput, JobStore

__all__ = ["Dispatcher", "EmbeddedDispatcher", "ExpirySweeper", "EngineFactory", "warm_engines"]

log = logging.getLogger("img2vid.server.dispatch")

EngineFactory = Callable[[], Engine]

#: A worker looks at the store at least this often, even without a wake-up (jobs from other processes).
_IDLE_POLL_SECONDS = 1.0
#: Progress is written to the store at most this often per job (and always on the last step).
_PROGRESS_WRITE_SECONDS = 0.25


class Dispatcher(Protocol):
    """Gets committed jobs run somewhere; the server calls nothing else."""

    def start(self) -> None:
        """Re-queue what a crash left running, load engines, start taking jobs."""

    def notify(self, job_id: str) -> None:
        """A job was committed to the store (called after the commit, never before)."""

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking jobs; a job cut short goes back to the queue."""

    @property
    def ready(self) -> bool:
        """Whether jobs can be run (engines loaded)."""


def _engine_failure_message(error: BaseException) -> str:
    name = type(error).__name__
    if "OutOfMemory" in name or "out of memory" in str(error).lower():
        return "the GPU ran out of memory while making this video; try fewer frames or a smaller decode_chunk_size"
    return f"the engine failed while making this video ({name}); the server log has the details"


def _free_accelerator_memory() -> None:
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except Exception:  # noqa: BLE001 - best effort after a failure
            pass


def warm_engines(factory: EngineFactory, count: int) -> list[Engine]:
    """``count`` engines from ``factory``, each with its model loaded now (engines with a ``load``), so
    the first job does not pay for loading and a model that cannot load fails the start, not a job."""
    engines = [factory() for _ in range(count)]
    for engine in engines:
        load = getattr(engine, "load", None)
        if callable(load):
            load()
    return engines


class EmbeddedDispatcher:
    """``workers`` threads, each with its own warm engine, each running one job at a time."""

    def __init__(
        self,
        store: JobStore,
        engine_factory: EngineFactory,
        *,
        workers: int = 1,
        result_ttl: float = 24 * 3600.0,
        metrics: ServerMetrics | None = None,
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        #: Called with a job id after each change this dispatcher makes to it (the status cache listens).
        self.on_change = on_change or (lambda _job_id: None)
        self.engine_factory = engine_factory
        self.workers = workers
        self.result_ttl = result_ttl
        self.metrics = metrics
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._engines: list[Engine] = []

    @property
    def ready(self) -> bool:
        return len(self._engines) == self.workers and not self._stop.is_set()

    def start(self) -> None:
        requeued = self.store.requeue_running(ttl=self.result_ttl)
        if requeued:
            log.warning("re-queued %d job(s) left running by an earlier server", requeued)
        self._engines = warm_engines(self.engine_factory, self.workers)
        for index, engine in enumerate(self._engines):
            thread = threading.Thread(target=self._work, args=(engine,), name=f"img2vid-worker-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def notify(self, job_id: str) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads.clear()

    # ------------------------------------------------------------------ the loop

    def _work(self, engine: Engine) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                job = self.store.claim_next()
            except Exception:  # noqa: BLE001 - the store may be briefly unavailable; keep the worker alive
                log.exception("could not claim a job; retrying")
                job = None
            if job is None:
                self._wake.wait(_IDLE_POLL_SECONDS)
                continue
            self._wake.set()  # another worker may take the next queued job at once
            self.run_job(engine, job)

    def run_job(self, engine: Engine, job: JobInput) -> None:
        """Run one claimed job to its stored outcome; never raises."""
        started = time.monotonic()
        last_write = [0.0]  # when progress was last written

        def progress(fraction: float | None, _text: str) -> None:
            if fraction is None:
                return
            now = time.monotonic()
            if now - last_write[0] >= _PROGRESS_WRITE_SECONDS or fraction >= 1.0:
                last_write[0] = now
                try:
                    self.store.set_progress(job.id, max(0.0, min(0.99, float(fraction))))
                    self.on_change(job.id)
                except Exception:  # noqa: BLE001 - progress is a hint; the job goes on
                    log.debug("progress write failed", exc_info=True)

        outcome = "failed"
        try:
            request = VideoRequest(image=job.image, seed=job.seed, **job.params)
            video = engine.generate(request, progress=progress, cancel=self._stop.is_set)
            data = video.to_bytes("mp4")
            seed = job.seed if video.seed is None else int(video.seed)
            self.store.finish(job.id, video=data, seed=seed, finish_reason=video.finish_reason, ttl=self.result_ttl)
            outcome = "done"
        except CancelledError:
            if self._stop.is_set():
                self.store.requeue(job.id)
                outcome = "requeued"
            else:
                self._fail(job.id, 500, CancelledError.error_name, "the job was cancelled on the server")
        except Img2VidError as error:
            status = error.http_status if 400 <= error.http_status < 500 else 500
            self._fail(job.id, status, error.error_name, error.message)
        except Exception as error:  # noqa: BLE001 - one failing job must not stop the worker
            log.exception("job %s failed", job.id[:12])
            _free_accelerator_memory()
            self._fail(job.id, 500, "internal_error", _engine_failure_message(error))
        finally:
            self.on_change(job.id)
            if self.metrics is not None and outcome != "requeued":
                self.metrics.job_duration.labels(outcome=outcome).observe(time.monotonic() - started)

    def _fail(self, job_id: str, status: int, name: str, message: str) -> None:
        try:
            self.store.fail(job_id, status=status, name=name, message=message, ttl=self.result_ttl)
        except Exception:  # noqa: BLE001 - if even this fails, the job is re-run at the next start
            log.exception("could not record the failure of job %s", job_id[:12])


class ExpirySweeper:
    """Removes expired jobs and results every ``interval`` seconds."""

    def __init__(self, store: JobStore, interval: float) -> None:
        self.store = store
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="img2vid-sweeper", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                removed = self.store.remove_expired()
                if removed:
                    log.info("removed %d expired job(s)", removed)
            except Exception:  # noqa: BLE001 - try again next time
                log.exception("expiry sweep failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
