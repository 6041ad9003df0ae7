"""The low-latency lane's runs: the range of update times each read, and when it finished (its cursor).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 23:50:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table("sync_lane_run",
    sa.Column("run_id", sa.String(length=128), nullable=False),
    sa.Column("since", sa.DateTime(timezone=True), nullable=False),
    sa.Column("until", sa.DateTime(timezone=True), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint("run_id")
    )
    op.create_index("ix_sync_lane_run_finished", "sync_lane_run", ["finished_at", "until"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_sync_lane_run_finished", table_name="sync_lane_run")
    op.drop_table("sync_lane_run")
