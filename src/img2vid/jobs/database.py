"""The connection to the store's database: one engine and pool, one way to begin, one clock, one error.

Every concern of the store (the queue, API keys, the worker registry, what operators watch) runs its SQL
through a :class:`Database`: ``begin()`` for a write transaction (on SQLite it takes the write lock at its
start, ``BEGIN IMMEDIATE``, so a read inside it cannot be overtaken by another writer), ``connect()`` for
reads, and ``now`` for the time, which is always the database's clock, never a process's. A database that
cannot be reached or written becomes :class:`~img2vid.errors.StoreUnavailableError` (503) here, in one place.
This module must never hold a query of a concern, and never show the URL, which may carry a password.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Float, cast, create_engine, event, extract, func
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine as SqlEngine
from sqlalchemy.exc import DBAPIError, OperationalError

from ..errors import StoreUnavailableError

__all__ = ["Database", "db_now", "store_unavailable"]


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


def store_unavailable(error: BaseException) -> bool:
    """Whether a database error means the store cannot be reached or written now (503), as opposed to a bug."""
    if isinstance(error, OperationalError):
        return True
    if isinstance(error, DBAPIError):
        return bool(error.connection_invalidated) or "readonly" in str(error.orig).lower().replace(" ", "")
    return False


class Database:
    """One SQLAlchemy engine with a connection pool, SQLite's pragmas and transactions set as the store needs."""

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

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def guard(self) -> Iterator[None]:
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
    def begin(self) -> Iterator[Connection]:
        """One write transaction (on SQLite it holds the write lock from its start)."""
        with self.guard(), self.engine.connect() as conn, _discarded_on_failure(conn):
            conn.execution_options(img2vid_write=True)
            with conn.begin():
                yield conn

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        with self.guard(), self.engine.connect() as conn, _discarded_on_failure(conn):
            yield conn


@contextmanager
def _discarded_on_failure(conn: Connection) -> Iterator[None]:
    """A connection that failed because the store could not be used is dropped, never pooled again: a
    SQLite connection that met an I/O error (its file unwritable for a while) could fail its next use too,
    after the file was writable again; a new one starts clean. (PostgreSQL's pool already drops the
    connections a lost server broke; the pre-ping catches the rest.)"""
    try:
        yield
    except (OperationalError, DBAPIError) as error:
        if store_unavailable(error):
            conn.invalidate()
        raise
