"""A short-lived in-memory cache of job status rows and queue positions, so heavy polling stays off the
database.

A poll answered from here is at most ``ttl`` seconds stale (a client then sees "in-progress" a moment
longer and polls again); this process's workers drop a job's entry whenever they change it, so their
own jobs are never stale. A queued job's position is cached the same way: counting the jobs ahead of it
is a query over the queue, which every poll of a queued job would otherwise run. Positions move only when
the queue does (a submit, a start, a cancel), so only those drop them here; a running job's heartbeat
does not. This module must never cache a result blob, only status columns.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

from ..jobs.store import QUEUED, JobStatus, JobStore

__all__ = ["StatusCache"]


class StatusCache:
    def __init__(self, store: JobStore, *, ttl: float = 0.25, size: int = 4096) -> None:
        self.store = store
        self.ttl = ttl
        self.size = size
        self._entries: OrderedDict[str, tuple[float, JobStatus]] = OrderedDict()
        self._positions: OrderedDict[str, tuple[float, int]] = OrderedDict()
        self._lock = threading.Lock()

    def cached(self, job_id: str) -> JobStatus | None:
        """The cached row if it is fresh, else None (then call :meth:`load`)."""
        entry = self._entries.get(job_id)
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        return None

    def load(self, job_id: str) -> JobStatus | None:
        """Read the row from the store (blocking: call it off the event loop) and cache it."""
        status = self.store.status(job_id)
        if status is not None:
            self._remember(self._entries, job_id, status)
        return status

    def cached_position(self, status: JobStatus) -> int | None:
        """The job's queue position if it is known without the store: 0 unless queued, else a fresh
        cached count (then call :meth:`load_position`)."""
        if status.status != QUEUED:
            return 0
        entry = self._positions.get(status.id)
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        return None

    def load_position(self, status: JobStatus) -> int:
        """Count the queue ahead of the job (blocking: call it off the event loop) and cache the answer."""
        position = self.store.queue_position(status)
        if status.status == QUEUED:
            self._remember(self._positions, status.id, position)
        return position

    def forget(self, job_id: str) -> None:
        """This process changed the job (progress, an outcome): drop its cached row."""
        with self._lock:
            self._entries.pop(job_id, None)

    def queue_moved(self) -> None:
        """A job joined the queue (it may go ahead of others, by fair turns) or left it (started or
        cancelled) in this process: every cached position is stale."""
        with self._lock:
            self._positions.clear()

    def left_queue(self, job_id: str) -> None:
        """The job left the queue in this process (a worker began it, or it was cancelled): its row is
        stale, and the jobs behind it moved up."""
        self.forget(job_id)
        self.queue_moved()

    def _remember(self, table: OrderedDict[str, Any], job_id: str, value: object) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            table[job_id] = (time.monotonic() + self.ttl, value)
            table.move_to_end(job_id)
            while len(table) > self.size:
                table.popitem(last=False)
