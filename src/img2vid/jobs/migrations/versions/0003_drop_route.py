"""The ``route`` column goes: written on every submit and read nowhere (either route generation fetches any
job), and its NOT NULL would refuse every job a later version writes.

Revision ID: 0003
Revises: 0002
Create Date: the release that dropped ``route``
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if "route" in {column["name"] for column in sa.inspect(op.get_bind()).get_columns("jobs")}:
        # Plain ALTER on both databases (SQLite has had DROP COLUMN since 3.35): no copy of the table.
        op.execute("ALTER TABLE jobs DROP COLUMN route")


def downgrade() -> None:
    op.add_column("jobs", sa.Column("route", sa.String(16), nullable=False, server_default="v2beta"))
