"""Baseline: the sync ledger's schema as ``metadata.create_all`` made it before migrations existed.

Ledgers created by that code are stamped at this revision rather than running it, so it must stay
exactly that schema (names, types, nullability, keys and indexes): never edit it, add a revision.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OUTCOMES = ("created", "updated", "unchanged", "skipped", "failed")


def upgrade() -> None:
    op.create_table(
        "sync_record_state",
        sa.Column("entity", sa.String(64), primary_key=True),
        sa.Column("outreach_id", sa.BigInteger, primary_key=True),
        sa.Column("workbooks_id", sa.BigInteger),
        sa.Column("outreach_updated_at", sa.DateTime(timezone=True)),
        sa.Column("values_hash", sa.String(64)),
        sa.Column("values_json", sa.Text),
        sa.Column("last_outcome", sa.String(16), nullable=False),
        sa.Column("last_reason", sa.String(64)),
        sa.Column("last_error", sa.Text),
        sa.Column("window_start", sa.DateTime(timezone=True)),
        sa.Column("window_end", sa.DateTime(timezone=True)),
        sa.Column("last_run_id", sa.String(128), nullable=False),
        sa.Column("needs_retry", sa.Boolean, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "sync_history",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
        ),
        sa.Column("run_id", sa.String(128), nullable=False),
        sa.Column("entity", sa.String(64), nullable=False),
        sa.Column("outreach_id", sa.BigInteger, nullable=False),
        sa.Column("workbooks_id", sa.BigInteger),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(64)),
        sa.Column("error", sa.Text),
        sa.Column("outreach_updated_at", sa.DateTime(timezone=True)),
        sa.Column("window_start", sa.DateTime(timezone=True)),
        sa.Column("window_end", sa.DateTime(timezone=True)),
        sa.Column("values_hash", sa.String(64)),
        sa.Column("diff_json", sa.Text),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_sync_history_record", "sync_history", ["entity", "outreach_id"])
    op.create_index("ix_sync_history_run", "sync_history", ["run_id"])
    op.create_table(
        "sync_pending_relation",
        sa.Column("entity", sa.String(64), primary_key=True),
        sa.Column("outreach_id", sa.BigInteger, primary_key=True),
        sa.Column("field", sa.String(128), primary_key=True),
        sa.Column("target_entity", sa.String(64), primary_key=True),
        sa.Column("target_outreach_id", sa.BigInteger, primary_key=True),
        sa.Column("first_run_id", sa.String(128), nullable=False),
        sa.Column("last_run_id", sa.String(128), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_sync_pending_target", "sync_pending_relation", ["target_entity", "target_outreach_id"])
    op.create_table(
        "sync_run",
        sa.Column("run_id", sa.String(128), primary_key=True),
        sa.Column("entity", sa.String(64), primary_key=True),
        sa.Column("window_start", sa.DateTime(timezone=True)),
        sa.Column("window_end", sa.DateTime(timezone=True)),
        *(sa.Column(outcome, sa.Integer, nullable=False) for outcome in _OUTCOMES),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
    )


def downgrade() -> None:
    op.drop_table("sync_run")
    op.drop_index("ix_sync_pending_target", table_name="sync_pending_relation")
    op.drop_table("sync_pending_relation")
    op.drop_index("ix_sync_history_run", table_name="sync_history")
    op.drop_index("ix_sync_history_record", table_name="sync_history")
    op.drop_table("sync_history")
    op.drop_table("sync_record_state")
