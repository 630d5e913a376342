"""The job store: jobs and API keys in one SQL database (SQLite file by default, PostgreSQL works too).

A job is written here before its id is returned, and every state change goes through here, so a server
killed at any moment loses nothing it has accepted. The poll path reads only the status columns
(:meth:`JobStore.status`), never the image or the result blobs. This module must never store an API key
in the clear: only its SHA-256 hash is kept, as the key's id and as each job's owner.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    select,
    update,
)
from sqlalchemy.engine import Engine as SqlEngine

__all__ = ["JobStore", "JobStatus", "JobResult", "JobInput", "ApiKeyRow", "QUEUED", "RUNNING", "DONE", "FAILED"]

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"

#: How many times a job may be running when the server dies before it is failed rather than re-run.
MAX_ATTEMPTS = 3
STATES = (QUEUED, RUNNING, DONE, FAILED)

metadata = MetaData()

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("owner", String(64), nullable=False, index=True),
    Column("status", String(16), nullable=False, index=True),
    Column("progress", Float, nullable=False, default=0.0),
    Column("params", Text, nullable=False),
    Column("image", LargeBinary, nullable=True),
    Column("seed", BigInteger, nullable=False),
    Column("route", String(16), nullable=False, default="v2beta"),
    Column("result", LargeBinary, nullable=True),
    Column("finish_reason", String(32), nullable=True),
    Column("error_status", Integer, nullable=True),
    Column("error_name", String(64), nullable=True),
    Column("error_message", Text, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("created_at", Float, nullable=False, index=True),
    Column("started_at", Float, nullable=True),
    Column("finished_at", Float, nullable=True),
    Column("expires_at", Float, nullable=True, index=True),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_hash", String(64), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
)

_STATUS_COLUMNS = (
    jobs.c.id,
    jobs.c.owner,
    jobs.c.status,
    jobs.c.progress,
    jobs.c.started_at,
    jobs.c.expires_at,
    jobs.c.error_status,
    jobs.c.error_name,
    jobs.c.error_message,
)


@dataclass(frozen=True)
class JobStatus:
    """What the poll path needs, without any blob."""

    id: str
    owner: str
    status: str
    progress: float
    started_at: float | None
    expires_at: float | None
    error_status: int | None
    error_name: str | None
    error_message: str | None


@dataclass(frozen=True)
class JobResult:
    """A finished job's video and how it finished."""

    video: bytes
    seed: int
    finish_reason: str


@dataclass(frozen=True)
class JobInput:
    """Everything a worker needs to run a job; the result is a function of these alone."""

    id: str
    image: bytes
    seed: int
    params: dict[str, Any]


@dataclass(frozen=True)
class ApiKeyRow:
    key_hash: str
    name: str
    created_at: float
    revoked_at: float | None

    @property
    def key_id(self) -> str:
        """A short, non-secret handle to show and revoke by (the start of the hash)."""
        return self.key_hash[:12]


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the poll path read while a worker writes; NORMAL sync survives a killed process (not a
    # power cut), which is the durability this store promises.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _failed(*, status: int, name: str, message: str, ttl: float) -> dict[str, Any]:
    """The columns of a failed job: its error, kept ``ttl`` seconds; the input image is no longer needed."""
    now = time.time()
    return {
        "status": FAILED,
        "error_status": status,
        "error_name": name,
        "error_message": message,
        "image": None,
        "finished_at": now,
        "expires_at": now + ttl,
    }


class JobStore:
    """Jobs and keys over one SQLAlchemy engine with a connection pool."""

    def __init__(self, url: str, *, pool_size: int = 8) -> None:
        self.url = url
        options: dict[str, Any] = {"pool_pre_ping": False}
        if url.startswith("sqlite"):
            options["connect_args"] = {"check_same_thread": False, "timeout": 10}
            if ":memory:" not in url and url not in ("sqlite://", "sqlite:///"):
                options.update(pool_size=pool_size, max_overflow=pool_size)
        else:
            options.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)
        self.engine: SqlEngine = create_engine(url, **options)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        metadata.create_all(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ jobs

    def add_job(self, *, owner: str, image: bytes, seed: int, params: dict[str, Any], route: str) -> str:
        """Write a queued job and return its id; the row is committed when this returns."""
        job_id = secrets.token_hex(32)
        with self.engine.begin() as conn:
            conn.execute(
                jobs.insert().values(
                    id=job_id,
                    owner=owner,
                    status=QUEUED,
                    progress=0.0,
                    params=json.dumps(params, sort_keys=True),
                    image=image,
                    seed=seed,
                    route=route,
                    attempts=0,
                    created_at=time.time(),
                )
            )
        return job_id

    def status(self, job_id: str) -> JobStatus | None:
        """The job's status columns (no blobs), or None."""
        with self.engine.connect() as conn:
            row = conn.execute(select(*_STATUS_COLUMNS).where(jobs.c.id == job_id)).first()
        return None if row is None else JobStatus(*row)

    def result(self, job_id: str) -> JobResult | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(jobs.c.result, jobs.c.seed, jobs.c.finish_reason).where(
                    jobs.c.id == job_id, jobs.c.status == DONE
                )
            ).first()
        if row is None or row[0] is None:
            return None
        return JobResult(video=bytes(row[0]), seed=int(row[1]), finish_reason=row[2] or "SUCCESS")

    def claim_next(self) -> JobInput | None:
        """Mark the oldest queued job running and return its inputs; None when the queue is empty.

        The conditional update makes the claim safe when several workers (or processes) race for a job.
        """
        while True:
            with self.engine.begin() as conn:
                row = conn.execute(
                    select(jobs.c.id).where(jobs.c.status == QUEUED).order_by(jobs.c.created_at).limit(1)
                ).first()
                if row is None:
                    return None
                claimed = conn.execute(
                    update(jobs)
                    .where(jobs.c.id == row[0], jobs.c.status == QUEUED)
                    .values(status=RUNNING, started_at=time.time(), progress=0.0, attempts=jobs.c.attempts + 1)
                )
                if claimed.rowcount != 1:
                    continue
                data = conn.execute(
                    select(jobs.c.image, jobs.c.seed, jobs.c.params).where(jobs.c.id == row[0])
                ).one()
            return JobInput(id=row[0], image=bytes(data[0]), seed=int(data[1]), params=json.loads(data[2]))

    def set_progress(self, job_id: str, fraction: float) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                update(jobs).where(jobs.c.id == job_id, jobs.c.status == RUNNING).values(progress=fraction)
            )

    def finish(self, job_id: str, *, video: bytes, seed: int, finish_reason: str, ttl: float) -> bool:
        """Store the result and mark the job done in one transaction; the image is no longer needed."""
        now = time.time()
        with self.engine.begin() as conn:
            done = conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.status == RUNNING)
                .values(
                    status=DONE,
                    progress=1.0,
                    result=video,
                    seed=seed,
                    finish_reason=finish_reason,
                    image=None,
                    finished_at=now,
                    expires_at=now + ttl,
                )
            )
        return done.rowcount == 1

    def fail(self, job_id: str, *, status: int, name: str, message: str, ttl: float) -> bool:
        with self.engine.begin() as conn:
            done = conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.status == RUNNING)
                .values(**_failed(status=status, name=name, message=message, ttl=ttl))
            )
        return done.rowcount == 1

    def requeue(self, job_id: str) -> None:
        """Put a job this process was running back in the queue (a clean shutdown mid-job).

        A clean stop is not the job's fault, so the claim it used is given back and does not count
        towards :data:`MAX_ATTEMPTS`.
        """
        with self.engine.begin() as conn:
            conn.execute(
                update(jobs)
                .where(jobs.c.id == job_id, jobs.c.status == RUNNING)
                .values(status=QUEUED, progress=0.0, attempts=jobs.c.attempts - 1)
            )

    def requeue_running(self, *, max_attempts: int = MAX_ATTEMPTS, ttl: float = 24 * 3600) -> int:
        """At start: every job a crashed server left running goes back in the queue. Returns how many.

        A job that was already running when the server died ``max_attempts`` times is failed instead:
        a job that kills the server (a poison input, a driver crash) must not take it down at every start.
        """
        message = (
            f"the job was running each of the {max_attempts} times the server stopped unexpectedly, "
            "so it was not run again"
        )
        with self.engine.begin() as conn:
            conn.execute(
                update(jobs)
                .where(jobs.c.status == RUNNING, jobs.c.attempts >= max_attempts)
                .values(**_failed(status=500, name="internal_error", message=message, ttl=ttl))
            )
            result = conn.execute(update(jobs).where(jobs.c.status == RUNNING).values(status=QUEUED, progress=0.0))
        return int(result.rowcount or 0)

    def remove_expired(self, now: float | None = None) -> int:
        now = time.time() if now is None else now
        with self.engine.begin() as conn:
            result = conn.execute(delete(jobs).where(jobs.c.expires_at.is_not(None), jobs.c.expires_at < now))
        return int(result.rowcount or 0)

    def counts(self) -> dict[str, int]:
        """Jobs by state (every state present, zero when none)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(jobs.c.status, func.count()).group_by(jobs.c.status)).all()
        found = {state: 0 for state in STATES}
        found.update({status: int(count) for status, count in rows})
        return found

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(select(1))

    # ------------------------------------------------------------------ keys

    def add_key(self, key_hash: str, name: str) -> ApiKeyRow:
        row = ApiKeyRow(key_hash=key_hash, name=name, created_at=time.time(), revoked_at=None)
        with self.engine.begin() as conn:
            conn.execute(api_keys.insert().values(key_hash=key_hash, name=name, created_at=row.created_at))
        return row

    def key_is_active(self, key_hash: str) -> bool:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(api_keys.c.revoked_at).where(api_keys.c.key_hash == key_hash)
            ).first()
        return row is not None and row[0] is None

    def list_keys(self) -> list[ApiKeyRow]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(api_keys).order_by(api_keys.c.created_at)).all()
        return [ApiKeyRow(*row) for row in rows]

    def revoke_key(self, key_id_or_name: str) -> list[ApiKeyRow]:
        """Revoke the active keys whose id (hash prefix, at least 8 characters) or name matches."""
        token = key_id_or_name.strip()
        matches = [
            row
            for row in self.list_keys()
            if row.revoked_at is None and (row.name == token or (len(token) >= 8 and row.key_hash.startswith(token)))
        ]
        if matches:
            now = time.time()
            with self.engine.begin() as conn:
                for row in matches:
                    conn.execute(update(api_keys).where(api_keys.c.key_hash == row.key_hash).values(revoked_at=now))
        return matches
