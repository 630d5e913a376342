"""The queue's state machine: every move of a job is one SQL statement here, guarded by its WHERE clause.

The store is the one truth: a job is written here before its id is returned, and every move of a job is one
SQL statement whose WHERE clause states what must hold, so the row count says whether it happened. There is
no read-then-write race and no state kept only in memory. The moves::

    queued ──claim──> running ──finish──> done
      │                 │ ├──fail────> failed
      │                 │ ├──release─> queued        (a clean stop: the attempt is given back)
      │                 │ └──expire──> queued|failed (its lease ran out: the reconciler; failed past MAX_ATTEMPTS)
      └──cancel──> cancelled <──cancel──┘

Admission (a submit) counts the caps and inserts in one transaction no other front end can interleave with.
A claim sets a lease: a token that only grows (per job), the worker's name, and an expiry. Every write a
worker makes names its token (fencing): a write whose token is no longer current changes nothing, and the
worker learns it has lost the job. A run counts as an attempt once its worker says it starts the engine
(:meth:`JobQueue.start_run`); a claim lost before that (its worker died or was cut off first) is a fault of
the system, not of the job, and is not counted towards MAX_ATTEMPTS.

One clock: every time written or compared here (leases, heartbeats, result expiry, the idempotency window,
creation order) is the database's (:attr:`Database.now`), never a process's ``time.time()``: machines drift
and NTP steps, and a worker whose clock is a minute off must neither lose its job nor hold a dead one past
its lease. The poll path reads only status columns, never the image or the result. This module must never
store an API key in the clear (each job's owner is the key's SHA-256 hash), and never import FastAPI or
torch: workers import it.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, case, delete, func, select, text, true, tuple_, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ..errors import CANCELLED_HTTP_STATUS, IdempotencyKeyReusedError, QueueFullError, TooManyJobsError
from .database import Database
from .schema import jobs

__all__ = [
    "JobQueue",
    "JobStatus",
    "JobResult",
    "JobInput",
    "Claim",
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
#: The PostgreSQL advisory lock spaces (two-int form) of admission: one lock per owner (hashed), and one
#: for the server-wide count. A submit holds them until its transaction ends, so no other front end can
#: count and insert in between.
_OWNER_ADMISSION_LOCK = 0x1D2F1D01
_GLOBAL_ADMISSION_LOCK = 0x1D2F1D02
#: How long an Idempotency-Key keeps naming its first job.
IDEMPOTENCY_SECONDS = 24 * 3600.0

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
    jobs.c.model,
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
    #: The served model name the job asked for ('' for jobs from before model names).
    model: str = ""
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
    #: The served model name the job runs on ('' for jobs from before model names: an SVD model's).
    model: str = ""


@dataclass(frozen=True)
class Claim:
    """A job a worker holds: its inputs and the lease token that every write about it must name."""

    job: JobInput
    token: int
    attempt: int


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


class JobQueue:
    """The jobs table's moves. Every public method is one transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.now = db.now
        self.is_sqlite = db.is_sqlite

    # ------------------------------------------------------------------ submit

    def add_job(
        self,
        *,
        owner: str,
        image: bytes,
        seed: int,
        params: dict[str, Any],
        model: str = "",
        idempotency_key: str | None = None,
        fingerprint: str | None = None,
        max_per_owner: int | None = None,
        max_active: int | None = None,
    ) -> tuple[str, bool]:
        """Write a queued job; return its id and whether it is new. The row is committed when this returns.

        With an ``idempotency_key`` the owner used for a job in the last 24 hours, that job's id is
        returned and nothing is written (the unique index decides, so two front ends racing on one key
        make one job); when that job's request ``fingerprint`` differs from this one,
        :class:`IdempotencyKeyReusedError` (422). ``max_per_owner`` and ``max_active`` bound the queued and
        running jobs of this owner and of everyone (:class:`TooManyJobsError`, :class:`QueueFullError`),
        counted under the admission locks, so they hold exactly however many front ends submit at once.

        Fair turns: a job's turn is one past its owner's latest active turn for the same model, but never
        before the turn now being served for that model, so a key with many waiting jobs holds back another
        key's first job by at most one job per worker of that model; jobs start in (turn, created_at) order
        among the jobs of their model (``model``: the served name; workers claim by model).
        """
        now = self.now
        job_id = secrets.token_hex(32)
        row = {
            "id": job_id, "owner": owner, "status": QUEUED, "progress": 0.0, "params": json.dumps(params, sort_keys=True),
            "image": image, "seed": seed, "attempts": 0, "created_at": now, "turn": 0, "lease_token": 0,
            "idempotency_key": idempotency_key, "request_hash": fingerprint, "model": model,
        }  # fmt: skip
        try:
            with self.db.begin() as conn:
                if idempotency_key is not None:
                    existing = self._job_for_idempotency_key(conn, owner, idempotency_key, now, fingerprint)
                    if existing is not None:
                        return existing, False
                self._admit(conn, row, max_per_owner, max_active)
        except IntegrityError:
            # Two submits raced on one Idempotency-Key: the unique index made the second wait for the
            # first's commit and refused it; the first's job is the answer.
            if idempotency_key is None:
                raise
            with self.db.begin() as conn:
                existing = self._job_for_idempotency_key(conn, owner, idempotency_key, now, fingerprint)
            if existing is None:
                raise
            return existing, False
        return job_id, True

    def _admit(self, conn: Connection, row: dict[str, Any], max_per_owner: int | None, max_active: int | None) -> None:
        """Insert the job, then count the caps and choose its turn under the admission locks.

        The row (and its image, the slow part) goes in first, unseen by others until the commit; only the
        count and the turn are made under the locks, so they are held briefly."""
        owner, job_id = row["owner"], row["id"]
        conn.execute(jobs.insert().values(**row))
        self._lock_admission(conn, owner, whole_queue=max_active is not None)
        if max_per_owner is not None or max_active is not None:
            self._check_caps(conn, owner, job_id, max_per_owner, max_active)
        turn = self._next_turn(conn, owner, job_id, row["model"])
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(turn=turn))

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

    def job_for_idempotency_key(self, owner: str, key: str) -> str | None:
        """The job ``key`` names for this owner (made within the last 24 hours), or None."""
        with self.db.begin() as conn:
            return self._job_for_idempotency_key(conn, owner, key, self.now, None)

    @staticmethod
    def _job_for_idempotency_key(conn: Connection, owner: str, key: str, now: Any, fingerprint: str | None) -> str | None:
        """The owner's job for ``key`` if it is fresh; a different ``fingerprint`` than the job's is refused."""
        row = conn.execute(
            select(jobs.c.id, jobs.c.created_at >= now - IDEMPOTENCY_SECONDS, jobs.c.request_hash).where(
                jobs.c.owner == owner, jobs.c.idempotency_key == key
            )
        ).first()
        if row is None:
            return None
        if row[1]:
            if fingerprint is not None and row[2] is not None and row[2] != fingerprint:
                raise IdempotencyKeyReusedError.for_key(key)
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
    def _next_turn(conn: Connection, owner: str, job_id: str, model: str = "") -> int:
        others = and_(jobs.c.id != job_id, jobs.c.model == model)
        mine = conn.execute(
            select(func.max(jobs.c.turn)).where(jobs.c.owner == owner, jobs.c.status.in_(ACTIVE), others)
        ).scalar()
        # The turn now being served for this model: its latest running job's, else its first queued one's.
        serving = conn.execute(select(func.max(jobs.c.turn)).where(jobs.c.status == RUNNING, jobs.c.model == model)).scalar()
        if serving is None:
            serving = conn.execute(select(func.min(jobs.c.turn)).where(jobs.c.status == QUEUED, others)).scalar() or 0
        return max(int(serving), -1 if mine is None else int(mine) + 1)

    # ------------------------------------------------------------------ polling

    def status(self, job_id: str) -> JobStatus | None:
        """The job's status columns (no blobs), or None."""
        with self.db.connect() as conn:
            row = conn.execute(select(*_STATUS_COLUMNS, self.now).where(jobs.c.id == job_id)).first()
        return None if row is None else JobStatus(*row)

    def queue_position(self, status: JobStatus) -> int:
        """0 for a running job; else 1 + the queued jobs of its model that start before it (its real turn:
        only workers of its model take them)."""
        if status.status != QUEUED:
            return 0
        with self.db.connect() as conn:
            ahead = conn.execute(
                select(func.count()).where(
                    jobs.c.status == QUEUED,
                    jobs.c.model == status.model,
                    tuple_(jobs.c.turn, jobs.c.created_at, jobs.c.id)
                    < tuple_(status.turn, status.created_at, status.id),
                )
            ).scalar()
        return int(ahead or 0) + 1

    def result(self, job_id: str) -> JobResult | None:
        with self.db.connect() as conn:
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
        with self.db.begin() as conn:
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

    def claim_next(
        self, worker: str = "embedded", *, lease_seconds: float = 30.0, models: Sequence[str] | None = None
    ) -> Claim | None:
        """Take the next job in fair order: mark it running under a new lease; None when nothing is queued.

        ``models``: the served names this worker holds; only their jobs are taken (None: any job, for a
        worker whose engine serves every name). PostgreSQL skips rows another worker is claiming
        (``FOR UPDATE SKIP LOCKED``); on SQLite the write lock serialises claims. Either way the conditional
        update makes a double claim impossible.
        """
        while True:
            with self.db.begin() as conn:
                query = select(jobs.c.id, jobs.c.model).where(jobs.c.status == QUEUED)
                if models is not None:
                    query = query.where(jobs.c.model.in_(list(models)))
                query = query.order_by(jobs.c.turn, jobs.c.created_at, jobs.c.id).limit(1)
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
            job = JobInput(id=row[0], image=bytes(claimed[0]), seed=int(claimed[1]), params=json.loads(claimed[2]), model=str(row[1]))
            return Claim(job=job, token=int(claimed[3]), attempt=int(claimed[4]) + 1)

    def _fenced(self, job_id: str, token: int) -> Any:
        return and_(jobs.c.id == job_id, jobs.c.status == RUNNING, jobs.c.lease_token == token)

    def start_run(self, job_id: str, token: int, *, lease_seconds: float) -> bool:
        """The worker starts the engine on a job it holds: from now on losing the job counts as an attempt
        (towards MAX_ATTEMPTS). Renews the lease; False when the job is no longer this lease's."""
        with self.db.begin() as conn:
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
        with self.db.begin() as conn:
            return conn.execute(update(jobs).where(self._fenced(job_id, token)).values(**values)).rowcount == 1

    def finish(self, job_id: str, token: int, *, video: bytes, seed: int, finish_reason: str, ttl: float) -> bool:
        """Store the result and mark the job done in one transaction, if the lease is still this one."""
        with self.db.begin() as conn:
            done = conn.execute(
                update(jobs)
                .where(self._fenced(job_id, token))
                .values(**_ended(DONE, ttl=ttl, now=self.now, progress=1.0, result=video, seed=seed, finish_reason=finish_reason))
            )
        return done.rowcount == 1

    def fail(self, job_id: str, token: int, *, status: int, name: str, message: str, ttl: float) -> bool:
        with self.db.begin() as conn:
            done = conn.execute(
                update(jobs)
                .where(self._fenced(job_id, token))
                .values(**_failed(status=status, name=name, message=message, ttl=ttl, now=self.now))
            )
        return done.rowcount == 1

    def release(self, job_id: str, token: int) -> bool:
        """Give a held job back to the queue (a clean stop mid-job): the attempt does not count."""
        with self.db.begin() as conn:
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
        with self.db.begin() as conn:
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
        return [job_id for job_id, _ in self.queued_jobs(limit)]

    def queued_jobs(self, limit: int) -> list[tuple[str, str]]:
        """(id, model) of the first ``limit`` queued jobs in the order they will start."""
        with self.db.connect() as conn:
            rows = conn.execute(
                select(jobs.c.id, jobs.c.model)
                .where(jobs.c.status == QUEUED)
                .order_by(jobs.c.turn, jobs.c.created_at, jobs.c.id)
                .limit(limit)
            ).all()
        return [(str(row[0]), str(row[1])) for row in rows]

    def remove_expired(self, now: float | None = None) -> int:
        """Delete the jobs kept past their expiry by the database's clock (``now``: tests' stand-in for it)."""
        clock = self.now if now is None else now
        with self.db.begin() as conn:
            result = conn.execute(delete(jobs).where(jobs.c.expires_at.is_not(None), jobs.c.expires_at < clock))
        return int(result.rowcount or 0)
