"""The shared store: fair turns, leases with fencing tokens, idempotency keys, and the workers' registry.

Revision ID: 0002
Revises: 0001
Create Date: the release that added ``img2vid worker`` (jobs/ with Celery)

Stores of that release opened by a later one before Alembic may already have some of these (its start added
the missing columns by hand), so each part is added only where it is missing.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_COLUMNS = (
    sa.Column("turn", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("lease_token", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("lease_expires", sa.Float, nullable=True),
    sa.Column("worker", sa.String(200), nullable=True),
    sa.Column("idempotency_key", sa.String(200), nullable=True),
)


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    present = {column["name"] for column in inspector.get_columns("jobs")}
    for column in _COLUMNS:
        if column.name not in present:
            op.add_column("jobs", column)
    indexes = {index["name"] for index in inspector.get_indexes("jobs")}
    if "ix_jobs_owner_idempotency" not in indexes:
        op.create_index("ix_jobs_owner_idempotency", "jobs", ["owner", "idempotency_key"], unique=True)
    if "ix_jobs_queue_order" not in indexes:
        op.create_index("ix_jobs_queue_order", "jobs", ["status", "turn", "created_at"])
    if not inspector.has_table("workers"):
        op.create_table(
            "workers",
            sa.Column("name", sa.String(200), primary_key=True),
            sa.Column("started_at", sa.Float, nullable=False),
            sa.Column("last_seen", sa.Float, nullable=False),
        )
        op.create_index("ix_workers_last_seen", "workers", ["last_seen"])


def downgrade() -> None:
    op.drop_table("workers")
    op.drop_index("ix_jobs_queue_order", "jobs")
    op.drop_index("ix_jobs_owner_idempotency", "jobs")
    for column in reversed(_COLUMNS):
        op.drop_column("jobs", column.name)
