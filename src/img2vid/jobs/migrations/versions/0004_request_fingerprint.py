"""Each job keeps a fingerprint of the request that made it (``request_hash``: SHA-256 over the route
generation, the image bytes and every field as sent), so a reused Idempotency-Key with a different request
is refused (422 ``idempotency_key_reused``) instead of silently naming the first job.

Revision ID: 0004
Revises: 0003
Create Date: the release with idempotency fingerprints

Nullable: jobs written before it have none, and their key keeps naming them whatever is sent.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("request_hash", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "request_hash")
