"""Bringing a job store to the current schema, once, however many processes start at once.

``upgrade`` runs the Alembic revisions in :mod:`img2vid.jobs.migrations` inside one transaction that holds the
schema lock: a transaction-scoped advisory lock on PostgreSQL, the write lock (``BEGIN IMMEDIATE``) on SQLite.
Front ends and workers started together on a new or old store queue on that lock; the first upgrades, the
others find the store at the head revision and do nothing. A store written before the store had revisions
(no ``alembic_version`` table) is recognised by its columns and stamped at the revision its version created,
then upgraded from there, so every job, key and result it holds is kept.

Every start first reads the revision with one query and skips the lock and Alembic when it is the head
(:data:`HEAD`), so opening a current store costs a query, not a migration run. This module must never
change the schema outside a revision, and never upgrade without the lock.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine as SqlEngine

__all__ = ["HEAD", "SCHEMA_LOCK", "upgrade", "current", "legacy_revision"]

#: The newest revision in ``migrations/versions`` (a test checks it against Alembic's own answer).
HEAD = "0005"
#: The PostgreSQL advisory lock that makes upgrading the schema one process at a time.
SCHEMA_LOCK = 0x1D2F1D00


def _read_revision(conn: Connection) -> str | None:
    if not inspect(conn).has_table("alembic_version"):
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def legacy_revision(conn: Connection) -> str | None:
    """The revision whose schema a store without ``alembic_version`` has: None for an empty database,
    ``0001`` for the first server's (no ``turn`` column), ``0002`` with ``route`` still there, else ``0003``."""
    inspector = inspect(conn)
    if not inspector.has_table("jobs"):
        return None
    columns = {column["name"] for column in inspector.get_columns("jobs")}
    if "turn" not in columns:
        return "0001"
    return "0002" if "route" in columns else "0003"


def current(engine: SqlEngine) -> str | None:
    """The store's revision: from ``alembic_version``, else what its columns say (None: an empty database)."""
    with engine.connect() as conn:
        return _read_revision(conn) or legacy_revision(conn)


def _config(conn: Connection) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(resources.files("img2vid.jobs") / "migrations"))
    config.attributes["connection"] = conn
    return config


def upgrade(engine: SqlEngine, revision: str = "head") -> tuple[str | None, str]:
    """Bring the store to ``revision`` (the newest by default) under the schema lock; (before, after)."""
    with engine.connect() as conn:
        if revision == "head" and _read_revision(conn) == HEAD:
            return HEAD, HEAD
        conn.rollback()
        conn.execution_options(img2vid_write=True)  # on SQLite: BEGIN IMMEDIATE, the lock
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})
            before = _read_revision(conn)
            if revision != "head" or before != HEAD:
                from alembic import command

                config = _config(conn)
                if before is None:
                    before = legacy_revision(conn)
                    if before is not None:
                        command.stamp(config, before)
                command.upgrade(config, revision)
            after = _read_revision(conn)
    return before, after or ""
