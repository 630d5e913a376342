"""A short-lived in-memory cache of job status rows, so heavy polling stays off the database.

A poll answered from here is at most ``ttl`` seconds stale (a client then sees "in-progress" a moment
longer and polls again); this process's workers drop a job's entry whenever they change it, so their
own jobs are never stale. This module must never cache a result blob, only status columns.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

from ..jobs.store import JobStatus, JobStore

__all__ = ["StatusCache"]


class StatusCache:
    def __init__(self, store: JobStore, *, ttl: float = 0.25, size: int = 4096) -> None:
        self.store = store
        self.ttl = ttl
        self.size = size
        self._entries: OrderedDict[str, tuple[float, JobStatus]] = OrderedDict()
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
        if status is not None and self.ttl > 0:
            with self._lock:
                self._entries[job_id] = (time.monotonic() + self.ttl, status)
                self._entries.move_to_end(job_id)
                while len(self._entries) > self.size:
                    self._entries.popitem(last=False)
        return status

    def forget(self, job_id: str) -> None:
        with self._lock:
            self._entries.pop(job_id, None)
