"""The job store: one facade over the store's concerns, each the one owner of its SQL.

SQLite (one file, one machine) by default; PostgreSQL when several front ends and workers share it. The
store is the one truth (see :mod:`.queue` for the moves and the rules they keep). Its parts:

- :mod:`.database`: the engine, transactions (``BEGIN IMMEDIATE`` on SQLite), the database's clock, the 503;
- :mod:`.schema` and :mod:`.migrate`: the tables, and the Alembic revisions that alone change their shape;
- :mod:`.queue`: admission and the queue's state machine (claims, leases, fencing, expiry);
- :mod:`.apikeys`: API keys, as hashes; :mod:`.registry`: the workers' own heartbeats;
- :mod:`.observe`: what operators watch.

:class:`JobStore` opens the database, brings its schema to the newest revision (behind the schema lock,
so many processes starting at once upgrade once), and is every part at once (it inherits their methods),
which is what the server, the dispatchers and the worker call. It holds no SQL of its own, and must never
import FastAPI or torch: workers import it.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine as SqlEngine

from . import migrate
from .apikeys import ApiKeyRow, ApiKeys
from .database import Database, db_now, store_unavailable
from .observe import QueueWatch
from .queue import (
    ACTIVE,
    CANCELLED,
    DONE,
    FAILED,
    IDEMPOTENCY_SECONDS,
    MAX_ATTEMPTS,
    MAX_CLAIMS,
    QUEUED,
    RUNNING,
    STATES,
    Claim,
    JobInput,
    JobQueue,
    JobResult,
    JobStatus,
)
from .registry import WorkerRegistry
from .schema import api_keys, jobs, workers

__all__ = [
    "JobStore",
    "JobStatus",
    "JobResult",
    "JobInput",
    "Claim",
    "ApiKeyRow",
    "QUEUED",
    "RUNNING",
    "DONE",
    "FAILED",
    "CANCELLED",
    "STATES",
    "ACTIVE",
    "MAX_ATTEMPTS",
    "MAX_CLAIMS",
    "IDEMPOTENCY_SECONDS",
    "db_now",
    "store_unavailable",
    "jobs",
    "api_keys",
    "workers",
]


class JobStore(JobQueue, ApiKeys, WorkerRegistry, QueueWatch):
    """Jobs, leases, keys and workers over one database with a connection pool: each part's methods, whose
    SQL stays in its own module, on one object.

    Every method is one transaction. A database that cannot be reached or written raises
    :class:`~img2vid.errors.StoreUnavailableError` (503 ``store_unavailable``) within a couple of seconds,
    never a driver error. ``upgrade=False`` opens a store without touching its schema.
    """

    def __init__(self, url: str, *, pool_size: int = 8, connect_timeout: float = 2.0, upgrade: bool = True) -> None:
        db = Database(url, pool_size=pool_size, connect_timeout=connect_timeout)
        if upgrade:
            # Front ends and workers often start together on a new or old database: the upgrade holds the
            # schema lock, so one of them upgrades and the others find the store current.
            with db.guard():
                migrate.upgrade(db.engine)
        for part in (JobQueue, ApiKeys, WorkerRegistry, QueueWatch):
            part.__init__(self, db)

    @property
    def url(self) -> str:
        return self.db.url

    @property
    def engine(self) -> SqlEngine:
        return self.db.engine

    def close(self) -> None:
        self.db.close()
