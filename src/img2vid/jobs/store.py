"""The job store: jobs, their leases, API keys and live workers in one SQL database.

SQLite (one file, one machine) by default; PostgreSQL when several front ends and workers share it. The
store is the one truth: a job is written here before its id is returned, and every move of a job is one
SQL statement whose WHERE clause states what must hold, so the row count says whether it happened. There is
no read-then-write race and no state kept only in memory.

The moves, each one guarded in SQL::

    queued ──claim──> running ──finish──> done
      │                 │ ├──fail────> failed
      │                 │ ├──release─> queued        (a clean stop: the attempt is given back)
      │                 │ └──expire──> queued|failed (its lease ran out: the reconciler; failed past MAX_ATTEMPTS)
      └──cancel──> cancelled <──cancel──┘

A claim sets a lease: a token that only grows (per job), the worker's name, and an expiry. Every write a
worker makes names its token (fencing): a write whose token is no longer current changes nothing, and the
worker learns it has lost the job. A run counts as an attempt once its worker says it starts the engine
(:meth:`JobStore.start_run`); a claim lost before that (its worker died or was cut off first) is a fault of
the system, not of the job, and is not counted towards MAX_ATTEMPTS.

One clock: every time written or compared here (leases, heartbeats, result expiry, worker liveness, the
idempotency window, fair turns' creation order) is the database's (``clock_timestamp()`` on PostgreSQL,
``julianday('now')`` on SQLite), never a process's ``time.time()``: machines drift and NTP steps, and a
worker whose clock is a minute off must neither lose its job nor hold a dead one past its lease. The poll path reads only status columns, never the image or the result.
This module must never store an API key in the clear (only its SHA-256 hash, as the key's id and each job's
owner), and must never import FastAPI or torch: workers import it.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    and_,
    case,
    cast,
    create_engine,
    delete,
    event,
    extract,
    func,
    inspect,
    select,
    text,
    true,
    tuple_,
    update,
)
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine as SqlEngine
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from ..errors import CANCELLED_HTTP_STATUS, QueueFullError, StoreUnavailableError, TooManyJobsError

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
    "db_now",
    "store_unavailable",
]

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
STATES = (QUEUED, RUNNING, DONE, FAILED, CANCELLED)
#: States that count against a key's quota and the server's queue cap.
ACTIVE = (QUEUED, RUNNING)
#: How many times a job may start running and be lost (its worker or server died) before it is failed.
MAX_ATTEMPTS = 3
#: How many times a job may be claimed at all (started or not) before it is failed: the bound on a job that
#: somehow ends every worker before its engine starts, which MAX_ATTEMPTS does not count.
MAX_CLAIMS = 20
#: The PostgreSQL advisory lock that makes creating and upgrading the tables one process at a time.
_SCHEMA_LOCK = 0x1D2F1D00
#: The PostgreSQL advisory lock spaces (two-int form) of admission: one lock per owner (hashed), and one
#: for the server-wide count. A submit holds them until its transaction ends, so no other front end can
#: count and insert in between.
_OWNER_ADMISSION_LOCK = 0x1D2F1D01
_GLOBAL_ADMISSION_LOCK = 0x1D2F1D02
#: How long an Idempotency-Key keeps naming its first job.
IDEMPOTENCY_SECONDS = 24 * 3600.0
#: Columns earlier versions wrote and nothing reads: ``route`` (either route generation fetches any job).
_RETIRED_COLUMNS = ("route",)

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
    # Fair turns: jobs start in (turn, created_at) order; see JobStore.add_job.
    Column("turn", BigInteger, nullable=False, default=0),
    # The lease: whose the running job is, until when, and the token every worker write must name.
    Column("lease_token", BigInteger, nullable=False, default=0),
    Column("lease_expires", Float, nullable=True),
    Column("worker", String(200), nullable=True),
    Column("idempotency_key", String(200), nullable=True),
    Index("ix_jobs_owner_idempotency", "owner", "idempotency_key", unique=True),
    Index("ix_jobs_queue_order", "status", "turn", "created_at"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_hash", String(64), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
)

workers = Table(
    "workers",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("started_at", Float, nullable=False),
    Column("last_seen", Float, nullable=False, index=True),
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
    jobs.c.turn,
    jobs.c.created_at,
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
    turn: int = 0
    created_at: float = 0.0
    #: The database's clock when the row was read: compare ``expires_at`` and ``started_at`` with this.
    now: float = 0.0

    @property
    def expired(self) -> bool:
        """Past its expiry (by the database's clock), though the sweep has not removed it yet."""
        return self.expires_at is not None and self.expires_at < self.now


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
class Claim:
    """A job a worker holds: its inputs and the lease token that every write about it must name."""

    job: JobInput
    token: int
    attempt: int


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
    # The driver's own transaction handling begins a transaction only before a write, so a count read
    # before an insert ran outside it; this store says BEGIN itself (see _sqlite_begin).
    dbapi_connection.isolation_level = None
    # WAL lets the poll path read while a worker writes; NORMAL sync survives a killed process (not a
    # power cut), which is the durability this store promises.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    """A write transaction takes SQLite's write lock at BEGIN (``BEGIN IMMEDIATE``), so a read inside it (a
    count, a queue head) cannot be overtaken by another writer before its own write: the transaction is
    serialised whole. Read-only connections begin deferred and never block writers (WAL)."""
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("img2vid_write") else "BEGIN")


def db_now(dialect: str) -> Any:
    """The database's clock as seconds since the epoch, a SQL expression (never a process's clock)."""
    if dialect == "sqlite":
        # julianday('now') is the same within one statement; 2440587.5 is the epoch's Julian day.
        return (func.julianday("now") - 2440587.5) * 86400.0
    return cast(extract("epoch", func.clock_timestamp()), Float)


def _ended(status: str, *, ttl: float, now: Any, **columns: Any) -> dict[str, Any]:
    """The columns of a job that reached an end state: kept ``ttl`` seconds; the input image is dropped."""
    return {
        "status": status,
        "image": None,
        "finished_at": now,
        "expires_at": now + ttl,
        "lease_expires": None,
        **columns,
    }


def _failed(*, status: int, name: str, message: str, ttl: float, now: Any) -> dict[str, Any]:
    return _ended(FAILED, ttl=ttl, now=now, error_status=status, error_name=name, error_message=message)


def store_unavailable(error: BaseException) -> bool:
    """Whether a database error means the store cannot be reached or written now (503), as opposed to a bug."""
    if isinstance(error, OperationalError):
        return True
    if isinstance(error, DBAPIError):
        return bool(error.connection_invalidated) or "readonly" in str(error.orig).lower().replace(" ", "")
    return False


class JobStore:
    """Jobs, leases, keys and workers over one SQLAlchemy engine with a connection pool.

    Every public method is one transaction. A database that cannot be reached or written raises
    :class:`StoreUnavailableError` (503 ``store_unavailable``) within a couple of seconds, never a driver error.
    """

    def __init__(self, url: str, *, pool_size: int = 8, connect_timeout: float = 2.0) -> None:
        self.url = url
        options: dict[str, Any] = {"pool_pre_ping": False}
        if url.startswith("sqlite"):
            options["connect_args"] = {"check_same_thread": False, "timeout": 10}
            if ":memory:" not in url and url not in ("sqlite://", "sqlite:///"):
                options.update(pool_size=pool_size, max_overflow=pool_size)
        else:
            # A stopped PostgreSQL must cost a submit at most ~2 s before its 503, not the driver's minutes.
            options.update(
                pool_size=pool_size,
                max_overflow=pool_size,
                pool_pre_ping=True,
                pool_timeout=connect_timeout,
                connect_args={"connect_timeout": max(1, int(connect_timeout))},
            )
        self.engine: SqlEngine = create_engine(url, **options)
        self.is_sqlite = url.startswith("sqlite")
        #: The database's clock, for every time this store writes or compares.
        self.now = db_now("sqlite" if self.is_sqlite else "postgresql")
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _sqlite_begin)
        with self._begin() as conn:
            if conn.dialect.name == "postgresql":
                # Front ends and workers often start together on a new database: without this lock two of
                # them both find a table missing, both create it, and one fails on PostgreSQL's catalog
                # (duplicate key in pg_type). The lock is held until this transaction ends.
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
            metadata.create_all(conn)
            self._upgrade_jobs_table(conn)

    def _upgrade_jobs_table(self, conn: Connection) -> None:
        """A store written by an earlier img2vid lacks the newer columns: add them (every new column has a
        default or is nullable), so upgrading keeps every job and key; and drop the retired ones, whose
        NOT NULL would refuse every new job."""
        present = {column["name"] for column in inspect(conn).get_columns("jobs")}
        for retired in _RETIRED_COLUMNS:
            if retired in present:
                conn.execute(text(f"ALTER TABLE jobs DROP COLUMN {retired}"))
        for column in jobs.columns:
            if column.name in present:
                continue
            kind = column.type.compile(dialect=conn.dialect)
            default = column.default.arg if column.default is not None and not callable(column.default.arg) else None
            suffix = f" NOT NULL DEFAULT {int(default)}" if default is not None else ""
            conn.execute(text(f"ALTER TABLE jobs ADD COLUMN {column.name} {kind}{suffix}"))
        for index in jobs.indexes:
            index.create(conn, checkfirst=True)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except (OperationalError, DBAPIError) as error:
            if store_unavailable(error):
                raise StoreUnavailableError(
                    "the job store cannot be reached or written right now; nothing was recorded, so "
                    "sending the request again later is safe",
                    retry_after=5,
                ) from error
            raise

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        """One write transaction (on SQLite it holds the write lock from its start)."""
        with self._guard(), self.engine.connect() as conn:
            conn.execution_options(img2vid_write=True)
            with conn.begin():
                yield conn

    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        with self._guard(), self.engine.connect() as conn:
            yield conn

    # ------------------------------------------------------------------ submit

    def add_job(
        self,
        *,
        owner: str,
        image: bytes,
        seed: int,
        params: dict[str, Any],
        idempotency_key: str | None = None,
        max_per_owner: int | None = None,
        max_active: int | None = None,
    ) -> tuple[str, bool]:
        """Write a queued job; return its id and whether it is new. The row is committed when this returns.

        With an ``idempotency_key`` the owner used for a job in the last 24 hours, that job's id is
        returned and nothing is written (the unique index decides, so two front ends racing on one key
        make one job). ``max_per_owner`` and ``max_active`` bound the queued and running jobs of this owner
        and of everyone (:class:`TooManyJobsError`, :class:`QueueFullError`).

        Fair turns: a job's turn is one past its owner's latest active turn, but never before the turn now
        being served, so a key with many waiting jobs holds back another key's first job by at most one
        job per worker; jobs start in (turn, created_at) order.
        """
        now = self.now
        job_id = secrets.token_hex(32)
        try:
            with self._begin() as conn:
                if idempotency_key is not None:
                    existing = self._job_for_idempotency_key(conn, owner, idempotency_key, now)
                    if existing is not None:
                        return existing, False
                # The row (and its image, the slow part) goes in first, unseen by others until the commit;
                # only the count and the turn are made under the admission locks, so they are held briefly.
                conn.execute(
                    jobs.insert().values(
                        id=job_id,
                        owner=owner,
                        status=QUEUED,
                        progress=0.0,
                        params=json.dumps(params, sort_keys=True),
                        image=image,
                        seed=seed,
                        attempts=0,
                        created_at=now,
                        turn=0,
                        lease_token=0,
                        idempotency_key=idempotency_key,
                    )
                )
                self._lock_admission(conn, owner, whole_queue=max_active is not None)
                if max_per_owner is not None or max_active is not None:
                    self._check_caps(conn, owner, job_id, max_per_owner, max_active)
                conn.execute(update(jobs).where(jobs.c.id == job_id).values(turn=self._next_turn(conn, owner, job_id)))
        except IntegrityError:
            # Two submits raced on one Idempotency-Key: the unique index made the second wait for the
            # first's commit and refused it; the first's job is the answer.
            if idempotency_key is None:
                raise
            with self._begin() as conn:
                existing = self._job_for_idempotency_key(conn, owner, idempotency_key, now)
            if existing is None:
                raise
            return existing, False
        return job_id, True

    def _lock_admission(self, conn: Connection, owner: str, *, whole_queue: bool) -> None:
        """Make this transaction the only admission in progress for ``owner`` (and, with ``whole_queue``,
        for the whole server) until it ends. PostgreSQL: transaction-scoped advisory locks, the owner's
        first and the global one second (always in that order, so two submits never wait on each other
        in a cycle). Chosen by measurement (bench/admission.py: 16 threads, two pools, 600 KiB images):
        about 160 submits/s against 250 counted without a lock (which let 17 of 48 past a cap of 3), and
        22/s under SERIALIZABLE with retries, where nearly every submit's count conflicts with another's
        insert. SQLite: the write lock ``BEGIN IMMEDIATE`` took already."""
        if self.is_sqlite:
            return
        conn.execute(text("SELECT pg_advisory_xact_lock(:space, hashtext(:owner))"), {"space": _OWNER_ADMISSION_LOCK, "owner": owner})
        if whole_queue:
            conn.execute(text("SELECT pg_advisory_xact_lock(:space, 0)"), {"space": _GLOBAL_ADMISSION_LOCK})

    @staticmethod
    def _job_for_idempotency_key(conn: Connection, owner: str, key: str, now: Any) -> str | None:
        row = conn.execute(
            select(jobs.c.id, jobs.c.created_at >= now - IDEMPOTENCY_SECONDS).where(
                jobs.c.owner == owner, jobs.c.idempotency_key == key
            )
        ).first()
        if row is None:
            return None
        if row[1]:
            return str(row[0])
        # Older than a day: the key is free again (the old job keeps its result until it expires).
        conn.execute(update(jobs).where(jobs.c.id == row[0]).values(idempotency_key=None))
        return None

    @staticmethod
    def _check_caps(conn: Connection, owner: str, job_id: str, max_per_owner: int | None, max_active: int | None) -> None:
        """Refuse the job ``job_id`` (inserted, not yet committed) when it would pass a cap: the active jobs
        counted are the others', as every earlier admission committed them."""
        total, mine = conn.execute(
            select(func.count(), func.coalesce(func.sum(case((jobs.c.owner == owner, 1), else_=0)), 0)).where(
                jobs.c.status.in_(ACTIVE), jobs.c.id != job_id
            )
        ).one()
        if max_active is not None and total >= max_active:
            raise QueueFullError(
                f"the server's queue is full: {total} jobs are queued or running (the limit is {max_active}); "
                "try again in a minute",
                retry_after=30,
            )
        if max_per_owner is not None and mine >= max_per_owner:
            raise TooManyJobsError(
                f"this key already has {mine} jobs queued or running (the limit is {max_per_owner}); "
                "wait for one to finish, or cancel one",
                retry_after=10,
            )

    @staticmethod
    def _next_turn(conn: Connection, owner: str, job_id: str) -> int:
        others = jobs.c.id != job_id
        mine = conn.execute(
            select(func.max(jobs.c.turn)).where(jobs.c.owner == owner, jobs.c.status.in_(ACTIVE), others)
        ).scalar()
        # The turn now being served: the latest running job's, else the first queued one's.
        serving = conn.execute(select(func.max(jobs.c.turn)).where(jobs.c.status == RUNNING)).scalar()
        if serving is None:
            serving = conn.execute(select(func.min(jobs.c.turn)).where(jobs.c.status == QUEUED, others)).scalar() or 0
        return max(int(serving), -1 if mine is None else int(mine) + 1)

    # ------------------------------------------------------------------ polling

    def status(self, job_id: str) -> JobStatus | None:
        """The job's status columns (no blobs), or None."""
        with self._connect() as conn:
            row = conn.execute(select(*_STATUS_COLUMNS, self.now).where(jobs.c.id == job_id)).first()
        return None if row is None else JobStatus(*row)

    def queue_position(self, status: JobStatus) -> int:
        """0 for a running job; else 1 + the queued jobs that start before it (its real turn)."""
        if status.status != QUEUED:
            return 0
        with self._connect() as conn:
            ahead = conn.execute(
                select(func.count()).where(
                    jobs.c.status == QUEUED,
                    tuple_(jobs.c.turn, jobs.c.created_at, jobs.c.id)
                    < tuple_(status.turn, status.created_at, status.id),
                )
            ).scalar()
        return int(ahead or 0) + 1

    def result(self, job_id: str) -> JobResult | None:
        with self._connect() as conn:
            row = conn.execute(
                select(jobs.c.result, jobs.c.seed, jobs.c.finish_reason).where(
                    jobs.c.id == job_id, jobs.c.status == DONE
                )
            ).first()
        if row is None or row[0] is None:
            return None
        return JobResult(video=bytes(row[0]), seed=int(row[1]), finish_reason=row[2] or "SUCCESS")

    def cancel(self, job_id: str, owner: str, *, ttl: float) -> str | None:
        """Cancel the owner's job: ``"cancelled"`` (now, or it already was), ``"finished"`` (too late: it
        is done or failed), or None (no such job for this owner). A running job's worker learns it at its
        next heartbeat, whose fenced write no longer matches, and stops its engine."""
        columns = _ended(
            CANCELLED,
            ttl=ttl,
            now=self.now,
            error_status=CANCELLED_HTTP_STATUS,
            error_name="cancelled",
            error_message="the job was cancelled by its owner",
        )
        with self._begin() as conn:
            moved = conn.execute(
                update(jobs).where(jobs.c.id == job_id, jobs.c.owner == owner, jobs.c.status.in_(ACTIVE)).values(**columns)
            )
            if moved.rowcount == 1:
                return CANCELLED
            row = conn.execute(select(jobs.c.status).where(jobs.c.id == job_id, jobs.c.owner == owner)).first()
        if row is None:
            return None
        return CANCELLED if row[0] == CANCELLED else "finished"

    # ------------------------------------------------------------------ workers' moves (fenced)

    def claim_next(self, worker: str = "embedded", *, lease_seconds: float = 30.0) -> Claim | None:
        """Take the next job in fair order: mark it running under a new lease; None when nothing is queued.

        PostgreSQL skips rows another worker is claiming (``FOR UPDATE SKIP LOCKED``); on SQLite the write
        lock serialises claims. Either way the conditional update makes a double claim impossible.
        """
        while True:
            with self._begin() as conn:
                query = (
                    select(jobs.c.id)
                    .where(jobs.c.status == QUEUED)
                    .order_by(jobs.c.turn, jobs.c.created_at, jobs.c.id)
                    .limit(1)
                )
                if not self.is_sqlite:
                    query = query.with_for_update(skip_locked=True)
                row = conn.execute(query).first()
                if row is None:
                    return None
                # Not yet an attempt: that is counted when the worker starts the engine (start_run).
                claimed = conn.execute(
                    update(jobs)
                    .where(jobs.c.id == row[0], jobs.c.status == QUEUED)
                    .values(
                        status=RUNNING,
                        started_at=None,
                        progress=0.0,
                        lease_token=jobs.c.lease_token + 1,
                        lease_expires=self.now + lease_seconds,
                        worker=worker,
                    )
                    .returning(jobs.c.image, jobs.c.seed, jobs.c.params, jobs.c.lease_token, jobs.c.attempts)
                ).first()
                if claimed is None:
                    continue
            job = JobInput(id=row[0], image=bytes(claimed[0]), seed=int(claimed[1]), params=json.loads(claimed[2]))
            return Claim(job=job, token=int(claimed[3]), attempt=int(claimed[4]) + 1)

    def _fenced(self, job_id: str, token: int) -> Any:
        return and_(jobs.c.id == job_id, jobs.c.status == RUNNING, jobs.c.lease_token == token)

    def start_run(self, job_id: str, token: int, *, lease_seconds: float) -> bool:
        """The worker starts the engine on a job it holds: from now on losing the job counts as an attempt
        (towards MAX_ATTEMPTS). Renews the lease; False when the job is no longer this lease's."""
        with self._begin() as conn:
            started = conn.execute(
                update(jobs)
                .where(self._fenced(job_id, token), jobs.c.started_at.is_(None))
                .values(started_at=self.now, attempts=jobs.c.attempts + 1, lease_expires=self.now + lease_seconds)
            )
        return started.rowcount == 1

    def heartbeat(self, job_id: str, token: int, *, progress: float | None, lease_seconds: float) -> bool:
        """Extend the lease (and write progress); False when the job is no longer this lease's (cancelled,
        or its lease expired and it was handed on): the worker must then stop and drop it."""
        values: dict[str, Any] = {"lease_expires": self.now + lease_seconds}
        if progress is not None:
            values["progress"] = progress
        with self._begin() as conn:
            return conn.execute(update(jobs).where(self._fenced(job_id, token)).values(**values)).rowcount == 1

    def finish(self, job_id: str, token: int, *, video: bytes, seed: int, finish_reason: str, ttl: float) -> bool:
        """Store the result and mark the job done in one transaction, if the lease is still this one."""
        with self._begin() as conn:
            done = conn.execute(
                update(jobs)
                .where(self._fenced(job_id, token))
                .values(**_ended(DONE, ttl=ttl, now=self.now, progress=1.0, result=video, seed=seed, finish_reason=finish_reason))
            )
        return done.rowcount == 1

    def fail(self, job_id: str, token: int, *, status: int, name: str, message: str, ttl: float) -> bool:
        with self._begin() as conn:
            done = conn.execute(
                update(jobs)
                .where(self._fenced(job_id, token))
                .values(**_failed(status=status, name=name, message=message, ttl=ttl, now=self.now))
            )
        return done.rowcount == 1

    def release(self, job_id: str, token: int) -> bool:
        """Give a held job back to the queue (a clean stop mid-job): the attempt does not count."""
        with self._begin() as conn:
            done = conn.execute(
                update(jobs)
                .where(self._fenced(job_id, token))
                .values(
                    status=QUEUED,
                    progress=0.0,
                    attempts=case((jobs.c.started_at.is_(None), jobs.c.attempts), else_=jobs.c.attempts - 1),
                    started_at=None,
                    lease_expires=None,
                )
            )
        return done.rowcount == 1

    # ------------------------------------------------------------------ reconciling

    def requeue_running(self, *, max_attempts: int = MAX_ATTEMPTS, ttl: float = 24 * 3600) -> int:
        """At the start of a server that owns its store alone (embedded mode): every job a crash left running
        goes back in the queue. Returns how many. Never used when workers share the store."""
        return self._requeue(true(), max_attempts, ttl)

    def requeue_expired(self, *, now: float | None = None, max_attempts: int = MAX_ATTEMPTS, ttl: float = 24 * 3600) -> int:
        """Jobs whose lease ran out by the database's clock (their worker died or stalled) go back in the
        queue, or fail past ``max_attempts`` runs started. Safe to run from many processes at once.
        ``now`` is for tests only: a stand-in for the database's clock."""
        clock = self.now if now is None else now
        return self._requeue(and_(jobs.c.lease_expires.is_not(None), jobs.c.lease_expires < clock), max_attempts, ttl)

    def _requeue(self, which: Any, max_attempts: int, ttl: float) -> int:
        ran_out = and_(jobs.c.started_at.is_not(None), jobs.c.attempts >= max_attempts)
        messages = (
            (
                ran_out,
                f"the job was started {max_attempts} times and each time its worker stopped unexpectedly "
                "(crashed, was killed or lost the store), so it was not run again",
            ),
            (
                jobs.c.lease_token >= MAX_CLAIMS,
                f"the job was taken by a worker {MAX_CLAIMS} times and each time lost before it started, so it "
                "was not tried again",
            ),
        )
        with self._begin() as conn:
            for which_failed, message in messages:
                conn.execute(
                    update(jobs)
                    .where(jobs.c.status == RUNNING, which, which_failed)
                    .values(**_failed(status=500, name="internal_error", message=message, ttl=ttl, now=self.now))
                )
            # A run that never started gives its claim back: that loss was the system's, not the job's.
            result = conn.execute(
                update(jobs)
                .where(jobs.c.status == RUNNING, which)
                .values(status=QUEUED, progress=0.0, started_at=None, lease_expires=None)
            )
        return int(result.rowcount or 0)

    def queued_ids(self, limit: int) -> list[str]:
        """The first ``limit`` queued jobs in the order they will start."""
        with self._connect() as conn:
            rows = conn.execute(
                select(jobs.c.id).where(jobs.c.status == QUEUED).order_by(jobs.c.turn, jobs.c.created_at, jobs.c.id).limit(limit)
            ).all()
        return [str(row[0]) for row in rows]

    def remove_expired(self, now: float | None = None) -> int:
        """Delete the jobs kept past their expiry by the database's clock (``now``: tests' stand-in for it)."""
        clock = self.now if now is None else now
        with self._begin() as conn:
            result = conn.execute(delete(jobs).where(jobs.c.expires_at.is_not(None), jobs.c.expires_at < clock))
        return int(result.rowcount or 0)

    # ------------------------------------------------------------------ what operators watch

    def counts(self) -> dict[str, int]:
        """Jobs by state (every state present, zero when none)."""
        with self._connect() as conn:
            rows = conn.execute(select(jobs.c.status, func.count()).group_by(jobs.c.status)).all()
        found = {state: 0 for state in STATES}
        found.update({status: int(count) for status, count in rows})
        return found

    def oldest_queued_age(self) -> float:
        with self._connect() as conn:
            age = conn.execute(select(self.now - func.min(jobs.c.created_at)).where(jobs.c.status == QUEUED)).scalar()
        return 0.0 if age is None else max(0.0, float(age))

    def outcomes_by_worker(self) -> dict[tuple[str, str], int]:
        """(worker, end state) -> jobs still in the store, for done, failed and cancelled jobs a worker ran."""
        with self._connect() as conn:
            rows = conn.execute(
                select(jobs.c.worker, jobs.c.status, func.count())
                .where(jobs.c.worker.is_not(None), jobs.c.status.in_((DONE, FAILED, CANCELLED)))
                .group_by(jobs.c.worker, jobs.c.status)
            ).all()
        return {(str(worker), str(status)): int(count) for worker, status, count in rows}

    def durations(self) -> list[float]:
        """Seconds from start to end of the finished jobs still in the store."""
        with self._connect() as conn:
            rows = conn.execute(
                select(jobs.c.finished_at - jobs.c.started_at).where(
                    jobs.c.status == DONE, jobs.c.started_at.is_not(None), jobs.c.finished_at.is_not(None)
                )
            ).all()
        return [float(row[0]) for row in rows]

    def worker_seen(self, name: str) -> None:
        """A worker's own heartbeat (live workers are those seen within a lease)."""
        now = self.now
        with self._begin() as conn:
            if conn.execute(update(workers).where(workers.c.name == name).values(last_seen=now)).rowcount == 0:
                try:
                    with conn.begin_nested():
                        conn.execute(workers.insert().values(name=name, started_at=now, last_seen=now))
                except IntegrityError:
                    conn.execute(update(workers).where(workers.c.name == name).values(last_seen=now))

    def live_workers(self, within: float) -> list[str]:
        with self._connect() as conn:
            rows = conn.execute(select(workers.c.name).where(workers.c.last_seen >= self.now - within)).all()
        return sorted(str(row[0]) for row in rows)

    # ------------------------------------------------------------------ keys

    def add_key(self, key_hash: str, name: str) -> ApiKeyRow:
        with self._begin() as conn:
            created = conn.execute(
                api_keys.insert().values(key_hash=key_hash, name=name, created_at=self.now).returning(api_keys.c.created_at)
            ).scalar_one()
        return ApiKeyRow(key_hash=key_hash, name=name, created_at=float(created), revoked_at=None)

    def key_is_active(self, key_hash: str) -> bool:
        with self._connect() as conn:
            row = conn.execute(select(api_keys.c.revoked_at).where(api_keys.c.key_hash == key_hash)).first()
        return row is not None and row[0] is None

    def list_keys(self) -> list[ApiKeyRow]:
        with self._connect() as conn:
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
            with self._begin() as conn:
                for row in matches:
                    conn.execute(update(api_keys).where(api_keys.c.key_hash == row.key_hash).values(revoked_at=self.now))
        return matches
