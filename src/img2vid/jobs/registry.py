"""The worker registry: each worker's own heartbeat, and which workers are live (seen within a lease).

Workers write ``last_seen`` with the database's clock and liveness compares against it, so a worker whose
clock is off is neither dead early nor alive late. This is what ``/metrics`` reports as live workers; the
queue never reads it (a job's own lease decides who holds it). This module must never touch the jobs table.
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from .database import Database
from .schema import workers

__all__ = ["WorkerRegistry"]


class WorkerRegistry:
    """The workers table."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.now = db.now

    def worker_seen(self, name: str) -> None:
        """A worker's own heartbeat (live workers are those seen within a lease)."""
        now = self.now
        with self.db.begin() as conn:
            if conn.execute(update(workers).where(workers.c.name == name).values(last_seen=now)).rowcount == 0:
                try:
                    with conn.begin_nested():
                        conn.execute(workers.insert().values(name=name, started_at=now, last_seen=now))
                except IntegrityError:
                    conn.execute(update(workers).where(workers.c.name == name).values(last_seen=now))

    def live_workers(self, within: float) -> list[str]:
        with self.db.connect() as conn:
            rows = conn.execute(select(workers.c.name).where(workers.c.last_seen >= self.now - within)).all()
        return sorted(str(row[0]) for row in rows)
