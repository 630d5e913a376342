"""Alembic's environment for the job store: it runs on the connection :mod:`img2vid.jobs.migrate` hands it.

That connection is already inside the transaction that holds the schema lock (an advisory lock on
PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), so Alembic never begins or commits on its own: the whole
upgrade commits at once, or not at all. There is no offline (SQL script) mode. This module must never open
a connection of its own.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the job store's migrations through img2vid.jobs.migrate (img2vid db upgrade)")

context.configure(connection=connection, target_metadata=None, transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
