"""What operators (and autoscalers) watch, read from the store: jobs by state (in all, and queued and running
by model), the oldest queued job's age, outcomes by worker, and the run time of finished jobs.

Read-only queries at scrape time, so every front end reports the whole cluster; ages are the database's
clock's. This module must never write, and never group by an owner (an owner is an API key's hash).
"""

from __future__ import annotations

from sqlalchemy import func, select

from .database import Database
from .queue import ACTIVE, CANCELLED, DONE, FAILED, QUEUED, STATES
from .schema import jobs

__all__ = ["QueueWatch"]


class QueueWatch:
    """Aggregates over the jobs table."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.now = db.now

    def counts(self) -> dict[str, int]:
        """Jobs by state (every state present, zero when none)."""
        with self.db.connect() as conn:
            rows = conn.execute(select(jobs.c.status, func.count()).group_by(jobs.c.status)).all()
        found = {state: 0 for state in STATES}
        found.update({status: int(count) for status, count in rows})
        return found

    def active_by_model(self) -> dict[str, dict[str, int]]:
        """Model -> {queued, running} counts, for each model with a job queued or running: what a Celery
        front end tops up per model queue, and what ``/metrics`` reports per model (only a model's own
        workers can shorten its queue)."""
        with self.db.connect() as conn:
            rows = conn.execute(
                select(jobs.c.model, jobs.c.status, func.count()).where(jobs.c.status.in_(ACTIVE)).group_by(jobs.c.model, jobs.c.status)
            ).all()
        found: dict[str, dict[str, int]] = {}
        for model, status, count in rows:
            found.setdefault(str(model), {state: 0 for state in ACTIVE})[str(status)] = int(count)
        return found

    def queued_ids_for(self, model: str, limit: int) -> list[str]:
        """The first ``limit`` queued jobs of ``model``, in the order they will start."""
        with self.db.connect() as conn:
            rows = conn.execute(
                select(jobs.c.id)
                .where(jobs.c.status == QUEUED, jobs.c.model == model)
                .order_by(jobs.c.turn, jobs.c.created_at, jobs.c.id)
                .limit(limit)
            ).all()
        return [str(row[0]) for row in rows]

    def oldest_queued_age(self) -> float:
        with self.db.connect() as conn:
            age = conn.execute(select(self.now - func.min(jobs.c.created_at)).where(jobs.c.status == QUEUED)).scalar()
        return 0.0 if age is None else max(0.0, float(age))

    def outcomes_by_worker(self) -> dict[tuple[str, str], int]:
        """(worker, end state) -> jobs still in the store, for done, failed and cancelled jobs a worker ran."""
        with self.db.connect() as conn:
            rows = conn.execute(
                select(jobs.c.worker, jobs.c.status, func.count())
                .where(jobs.c.worker.is_not(None), jobs.c.status.in_((DONE, FAILED, CANCELLED)))
                .group_by(jobs.c.worker, jobs.c.status)
            ).all()
        return {(str(worker), str(status)): int(count) for worker, status, count in rows}

    def durations(self) -> list[float]:
        """Seconds from start to end of the finished jobs still in the store."""
        with self.db.connect() as conn:
            rows = conn.execute(
                select(jobs.c.finished_at - jobs.c.started_at).where(
                    jobs.c.status == DONE, jobs.c.started_at.is_not(None), jobs.c.finished_at.is_not(None)
                )
            ).all()
        return [float(row[0]) for row in rows]
