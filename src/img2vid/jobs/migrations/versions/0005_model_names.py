"""Jobs name the model they run on, and workers the models they hold: one deployment serves SVD, Wan and
LTX-Video side by side, and a job is claimed only by a worker holding its model.

Revision ID: 0005
Revises: 0004
Create Date: the release with model families at every front door

``jobs.model`` is the served name the job asked for (``''`` for jobs written before this revision: they
were SVD jobs, and any worker holding an SVD model may take them). ``workers.models`` lists a worker's
model names, comma-separated, for routing figures and for the names a Celery front end admits.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("model", sa.String(200), nullable=False, server_default=""))
    op.create_index("ix_jobs_model_queue", "jobs", ["status", "model", "turn", "created_at"])
    op.add_column("workers", sa.Column("models", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    op.drop_column("workers", "models")
    op.drop_index("ix_jobs_model_queue", table_name="jobs")
    op.drop_column("jobs", "model")
