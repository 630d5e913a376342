"""The job store's tables as the queries see them: the schema at the newest revision, described once.

The shape itself is made and changed only by the Alembic revisions in :mod:`img2vid.jobs.migrations`; this
module must match their head (a test compares them) and must never be used to create or alter a table.
Times are seconds since the epoch by the database's clock (:attr:`img2vid.jobs.database.Database.now`).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, Integer, LargeBinary, MetaData, String, Table, Text

__all__ = ["metadata", "jobs", "api_keys", "workers"]

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
    # SHA-256 of the request that made the job (route generation, image, fields), checked when its
    # Idempotency-Key comes again; None for jobs written before revision 0004.
    Column("request_hash", String(64), nullable=True),
    # The served model name the job runs on ('' for jobs written before revision 0005: SVD jobs).
    Column("model", String(200), nullable=False, server_default=""),
    Index("ix_jobs_owner_idempotency", "owner", "idempotency_key", unique=True),
    Index("ix_jobs_queue_order", "status", "turn", "created_at"),
    Index("ix_jobs_model_queue", "status", "model", "turn", "created_at"),
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
    # The model names the worker holds, comma-separated ('' before revision 0005, or an engine of any name).
    Column("models", Text, nullable=False, server_default=""),
)
