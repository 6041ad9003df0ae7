"""The Workbooks lock_version of each record's ledger values: a Workbooks read older than it is stale.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 03:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sync_record_state") as batch:
        batch.add_column(sa.Column("workbooks_lock_version", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sync_record_state") as batch:
        batch.drop_column("workbooks_lock_version")
