"""The first server's store: jobs (with the ``route`` each was submitted on) and hashed API keys.

Revision ID: 0001
Revises:
Create Date: the first release of ``img2vid serve``
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("progress", sa.Float, nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("image", sa.LargeBinary, nullable=True),
        sa.Column("seed", sa.BigInteger, nullable=False),
        sa.Column("route", sa.String(16), nullable=False),
        sa.Column("result", sa.LargeBinary, nullable=True),
        sa.Column("finish_reason", sa.String(32), nullable=True),
        sa.Column("error_status", sa.Integer, nullable=True),
        sa.Column("error_name", sa.String(64), nullable=True),
        sa.Column("error_message", sa.Text, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float, nullable=True),
        sa.Column("finished_at", sa.Float, nullable=True),
        sa.Column("expires_at", sa.Float, nullable=True),
    )
    for column in ("owner", "status", "created_at", "expires_at"):
        op.create_index(f"ix_jobs_{column}", "jobs", [column])
    op.create_table(
        "api_keys",
        sa.Column("key_hash", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
    op.drop_table("jobs")
