"""Running one claimed job to its stored outcome, for every dispatcher (embedded threads, Celery workers).

While the engine runs, a heartbeat thread renews the job's lease and writes its progress; each heartbeat
is a fenced write, so it also tells the worker whether the job is still its own (not cancelled by its
owner, not handed to another worker after a stall). The engine's cancel callback reads that answer, the
worker's stop flag and the job's time limit, so a cancel is obeyed within a heartbeat or one step.

The outcome is written with the lease token, and retried with backoff while the store is unreachable, until
the lease would have run out: after that another worker may hold the job, and it is re-run from its stored
inputs (same seed, same video). This module must never write without the token, and never raise out of
:meth:`JobRunner.run`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..engines.base import Engine
from ..errors import CancelledError, Img2VidError, StoreUnavailableError
from ..request import VideoRequest
from ..video import Video
from .store import Claim, JobStore

if TYPE_CHECKING:
    from .settings import ServerSettings

__all__ = ["JobRunner", "RunOptions", "Outcome", "engine_failure_message"]

log = logging.getLogger("img2vid.jobs")

#: What became of a job this worker held: its end state, or ``released`` (given back on a clean stop),
#: or ``lost`` (no longer this worker's: cancelled by its owner, or handed on after the lease ran out).
Outcome = str

#: How often a running job's heartbeat writes progress, renews the lease and learns of a cancel.
HEARTBEAT_SECONDS = 0.5
#: A progress report is written at once when the last write is at least this old.
PROGRESS_WRITE_SECONDS = 0.25


@dataclass(frozen=True)
class RunOptions:
    """How jobs are run; one object shared by the runners of a process."""

    worker: str = "embedded"
    lease_seconds: float = 30.0
    result_ttl: float = 24 * 3600.0
    #: Seconds of engine time a job may use before it is stopped and failed.
    job_timeout: float = 900.0

    @classmethod
    def from_settings(cls, settings: ServerSettings, *, worker: str) -> RunOptions:
        """The options a process runs jobs with, from the settings every job-running process reads."""
        return cls(
            worker=worker,
            lease_seconds=settings.lease_seconds,
            result_ttl=settings.result_ttl,
            job_timeout=settings.job_timeout,
        )


def engine_failure_message(error: BaseException) -> str:
    """What a job's owner reads when the engine failed with something that is not one of img2vid's errors
    (those carry their own message: an engine that ran out of memory raises
    :class:`~img2vid.errors.OutOfMemoryError` saying what to try)."""
    return f"the engine failed while making this video ({type(error).__name__}); the worker's log has the details"


class _Lease:
    """The heartbeat of one held job: renews the lease, writes progress, and notices when the job is lost."""

    def __init__(self, store: JobStore, claim: Claim, options: RunOptions, on_change: Callable[[str], None]) -> None:
        self.store = store
        self.claim = claim
        self.options = options
        self.on_change = on_change
        self.progress: float | None = None
        self.lost = False
        self.renewed = time.monotonic()
        #: When the last heartbeat was attempted (a progress report writes at once when it is old enough).
        self.written = 0.0
        self.interval = min(HEARTBEAT_SECONDS, options.lease_seconds / 3)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"img2vid-lease-{claim.job.id[:8]}", daemon=True)

    def __enter__(self) -> _Lease:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(5.0)

    @property
    def expired(self) -> bool:
        """Whether the lease may have run out in the store (no renewal for a whole lease)."""
        return time.monotonic() - self.renewed >= self.options.lease_seconds

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()

    def beat(self) -> None:
        self.written = time.monotonic()
        try:
            mine = self.store.heartbeat(
                self.claim.job.id, self.claim.token, progress=self.progress, lease_seconds=self.options.lease_seconds
            )
        except Exception as error:  # noqa: BLE001 - the store may be back at the next beat
            # Twice a second while the store is down: one line each, a traceback only for a surprise.
            log.warning(
                "job %s: heartbeat failed (%s); retrying",
                self.claim.job.id[:12],
                type(error).__name__,
                exc_info=not isinstance(error, StoreUnavailableError),
            )
            if self.expired:
                self.lost = True
            return
        self.renewed = time.monotonic()
        self.on_change(self.claim.job.id)
        if not mine:
            self.lost = True


class JobRunner:
    """Runs claimed jobs on an engine and writes each outcome back, fenced by the job's lease token."""

    def __init__(
        self,
        store: JobStore,
        options: RunOptions,
        *,
        stopping: Callable[[], bool] = lambda: False,
        on_change: Callable[[str], None] | None = None,
        on_start: Callable[[str], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.options = options
        #: True once this worker is shutting down: a job then goes back to the queue instead of failing.
        self.stopping = stopping
        #: Called with a job id after each change this runner makes to it (a status cache listens).
        self.on_change = on_change or (lambda _job_id: None)
        #: Called with a job id when its run begins: it left the queue, so the jobs behind it moved up.
        self.on_start = on_start or (lambda _job_id: None)
        self.sleep = sleep
        self.clock = clock

    def run(self, engine: Engine, claim: Claim) -> Outcome:
        """Run one claimed job to its stored outcome; never raises."""
        job = claim.job
        started = self.clock()
        self.on_start(job.id)

        def timed_out() -> bool:
            return self.clock() - started > self.options.job_timeout

        try:
            with _Lease(self.store, claim, self.options, self.on_change) as lease:
                try:
                    made = self._make(engine, claim, lease, timed_out)
                except CancelledError:
                    return self._after_stop(claim, lease, timed_out)
                except Img2VidError as error:
                    status = error.http_status if 400 <= error.http_status < 500 else 500
                    return self._fail(claim, lease, status, error.error_name, error.message)
                except Exception as error:  # noqa: BLE001 - one failing job must not stop the worker
                    log.exception("job %s failed", job.id[:12])
                    return self._fail(claim, lease, 500, "internal_error", engine_failure_message(error))
                if made is None:
                    log.info("job %s is no longer this worker's (cancelled or handed on); dropped", job.id[:12])
                    return "lost"
                video, data = made
                seed = job.seed if video.seed is None else int(video.seed)
                return self._write(
                    claim,
                    lease,
                    "done",
                    lambda: self.store.finish(
                        job.id, claim.token, video=data, seed=seed, finish_reason=video.finish_reason, ttl=self.options.result_ttl
                    ),
                )
        finally:
            self.on_change(job.id)

    def _make(self, engine: Engine, claim: Claim, lease: _Lease, timed_out: Callable[[], bool]) -> tuple[Video, bytes] | None:
        """The job's video and its MP4 bytes, with progress written through the lease and the engine stopped
        when the lease is lost, the worker stops or time runs out; None when the job was no longer this
        worker's before its run began."""
        job = claim.job

        def progress(fraction: float | None, _text: str) -> None:
            if fraction is None:
                return
            first = lease.progress is None
            lease.progress = max(0.0, min(0.99, float(fraction)))
            if first or time.monotonic() - lease.written >= PROGRESS_WRITE_SECONDS:
                # A poll sees progress at once, not at the next timed heartbeat: the first report always,
                # later ones when the last write is old enough.
                lease.beat()

        def cancel() -> bool:
            return lease.lost or self.stopping() or timed_out()

        request = VideoRequest(image=job.image, seed=job.seed, **job.params)
        # From here a lost run counts towards the job's attempts; a claim lost before this does not.
        if not self.store.start_run(job.id, claim.token, lease_seconds=self.options.lease_seconds):
            return None
        lease.renewed = time.monotonic()
        video = engine.generate(request, progress=progress, cancel=cancel)
        return video, video.to_bytes("mp4")

    def _after_stop(self, claim: Claim, lease: _Lease, timed_out: Callable[[], bool]) -> Outcome:
        """A run the engine stopped: the job lost (dropped), the worker stopping (given back to the queue),
        its time run out (failed, saying so), or stopped for another reason on the server (failed)."""
        job = claim.job
        if lease.lost:
            log.info("job %s is no longer this worker's (cancelled or handed on); dropped", job.id[:12])
            return "lost"
        if self.stopping():
            return self._write(claim, lease, "released", lambda: self.store.release(job.id, claim.token))
        if timed_out():
            message = (
                f"the job ran out of time: it used more than {self.options.job_timeout:g} s of engine "
                "time (IMG2VID_JOB_TIMEOUT); ask for fewer frames or steps"
            )
            return self._fail(claim, lease, 500, "timeout", message)
        return self._fail(claim, lease, 500, CancelledError.error_name, "the job was stopped on the server")

    def _fail(self, claim: Claim, lease: _Lease, status: int, name: str, message: str) -> Outcome:
        return self._write(
            claim,
            lease,
            "failed",
            lambda: self.store.fail(
                claim.job.id, claim.token, status=status, name=name, message=message, ttl=self.options.result_ttl
            ),
        )

    def _write(self, claim: Claim, lease: _Lease, outcome: Outcome, write: Callable[[], bool]) -> Outcome:
        """Make a fenced write, retrying with backoff while the store is unreachable, as long as the lease
        could still be ours; ``lost`` when the store refuses the token or the lease has surely run out."""
        delay = 0.25
        while True:
            try:
                if write():
                    return outcome
                log.info("job %s: the store refused a stale lease; the outcome was dropped", claim.job.id[:12])
                return "lost"
            except StoreUnavailableError:
                if lease.expired:
                    log.error(
                        "job %s: the store stayed unreachable for a whole lease; the job will be re-run", claim.job.id[:12]
                    )
                    return "lost"
                log.warning("job %s: the store is unreachable; retrying in %.1f s", claim.job.id[:12], delay)
                self.sleep(delay)
                delay = min(5.0, delay * 2)
            except Exception:  # noqa: BLE001 - never raise out of run(); the lease expiry re-runs the job
                log.exception("job %s: could not record its outcome", claim.job.id[:12])
                return "lost"
