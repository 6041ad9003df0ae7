"""The writer lock table: one row per (target, entity) held by the run writing it (SQLite ledgers; Postgres
ledgers use advisory locks and leave it empty).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 14:50:36.009709
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table("sync_writer_lock",
    sa.Column("target", sa.String(length=64), nullable=False),
    sa.Column("entity", sa.String(length=64), nullable=False),
    sa.Column("token", sa.String(length=64), nullable=False),
    sa.Column("run_id", sa.String(length=128), nullable=False),
    sa.Column("pid", sa.Integer(), nullable=False),
    sa.Column("host", sa.String(length=255), nullable=False),
    sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("lease_seconds", sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint("target", "entity")
    )


def downgrade() -> None:
    op.drop_table("sync_writer_lock")
