"""Stores as img2vid's earlier versions wrote them, before the schema had Alembic revisions, with data in
them: for the tests that upgrade each one and find every key, job and result intact and usable.

The schemas are read from the history of the store's module (``git log -p -- src/img2vid/jobs/store.py
src/img2vid/server/``): ``first-server`` (jobs with a ``route``, API keys), ``leases`` (turns, leases,
idempotency keys, the workers table; ``route`` still there) and ``no-route`` (the schema of revision 0003).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import BigInteger, Column, Float, Index, Integer, LargeBinary, MetaData, String, Table, Text, create_engine

__all__ = ["RELEASES", "OldStore", "build_old_store", "KEY_HASH", "REVOKED_HASH"]

#: Earlier schemas -> the revision a store of each is stamped at.
RELEASES = {"first-server": "0001", "leases": "0002", "no-route": "0003"}
KEY_HASH = "a" * 64
REVOKED_HASH = "b" * 64


def _metadata(release: str) -> MetaData:
    metadata = MetaData()
    columns = [
        Column("id", String(64), primary_key=True),
        Column("owner", String(64), nullable=False, index=True),
        Column("status", String(16), nullable=False, index=True),
        Column("progress", Float, nullable=False, default=0.0),
        Column("params", Text, nullable=False),
        Column("image", LargeBinary, nullable=True),
        Column("seed", BigInteger, nullable=False),
    ]
    if release != "no-route":
        columns.append(Column("route", String(16), nullable=False, default="v2beta"))
    columns += [
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
    ]
    if release != "first-server":
        columns += [
            Column("turn", BigInteger, nullable=False, default=0),
            Column("lease_token", BigInteger, nullable=False, default=0),
            Column("lease_expires", Float, nullable=True),
            Column("worker", String(200), nullable=True),
            Column("idempotency_key", String(200), nullable=True),
            Index("ix_jobs_owner_idempotency", "owner", "idempotency_key", unique=True),
            Index("ix_jobs_queue_order", "status", "turn", "created_at"),
        ]
        Table(
            "workers",
            metadata,
            Column("name", String(200), primary_key=True),
            Column("started_at", Float, nullable=False),
            Column("last_seen", Float, nullable=False, index=True),
        )
    Table("jobs", metadata, *columns)
    Table(
        "api_keys",
        metadata,
        Column("key_hash", String(64), primary_key=True),
        Column("name", String(128), nullable=False),
        Column("created_at", Float, nullable=False),
        Column("revoked_at", Float, nullable=True),
    )
    return metadata


@dataclass(frozen=True)
class OldStore:
    queued: str = "q" * 64
    running: str = "r" * 64
    done: str = "d" * 64
    failed: str = "f" * 64
    video: bytes = b"\x00\x00\x00\x18ftypmp42 an old video"
    created_at: float = 1_700_000_000.0


def build_old_store(url: str, release: str, now: float) -> OldStore:
    """Create ``release``'s tables at ``url`` and fill them: two keys (one revoked), a queued, a running, a
    done (kept until a day after ``now``) and a failed job."""
    old = OldStore()
    metadata = _metadata(release)
    engine = create_engine(url)
    try:
        metadata.create_all(engine)
        jobs, keys = metadata.tables["jobs"], metadata.tables["api_keys"]
        base = {"owner": KEY_HASH, "params": '{"cfg_scale": 1.8}', "created_at": old.created_at, "progress": 0.0, "attempts": 0}
        if release != "no-route":
            base["route"] = "v2alpha"
        rows = [
            {**base, "id": old.queued, "status": "queued", "image": b"png-queued", "seed": 11},
            {**base, "id": old.running, "status": "running", "image": b"png-running", "seed": 12, "attempts": 1,
             "started_at": now - 5, "progress": 0.4},
            {**base, "id": old.done, "status": "done", "image": None, "seed": 13, "attempts": 1, "result": old.video,
             "finish_reason": "SUCCESS", "started_at": now - 60, "finished_at": now - 30, "expires_at": now + 86400,
             "progress": 1.0},
            {**base, "id": old.failed, "status": "failed", "image": None, "seed": 14, "attempts": 1, "error_status": 500,
             "error_name": "internal_error", "error_message": "an old failure", "finished_at": now - 10,
             "expires_at": now + 86400},
        ]
        if release != "first-server":
            for row in rows:
                row.update(turn=0, lease_token=1 if row["status"] != "queued" else 0, worker="old-worker")
            rows[1]["lease_expires"] = now - 1  # its worker is gone: the lease already ran out
        with engine.begin() as conn:
            conn.execute(keys.insert(), [
                {"key_hash": KEY_HASH, "name": "kept", "created_at": old.created_at, "revoked_at": None},
                {"key_hash": REVOKED_HASH, "name": "gone", "created_at": old.created_at, "revoked_at": old.created_at + 1},
            ])
            for row in rows:  # one by one: a many-row insert takes its columns from the first row
                conn.execute(jobs.insert().values(**row))
            if release != "first-server":
                conn.execute(metadata.tables["workers"].insert(), [{"name": "old-worker", "started_at": now - 100, "last_seen": now - 50}])
    finally:
        engine.dispose()
    return old
