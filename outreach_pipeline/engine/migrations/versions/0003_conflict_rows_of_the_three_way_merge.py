"""Conflict rows of the three-way merge: a field changed on both sides, both values, the base and the winner.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29 14:28:58.053824
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | Sequence[str] | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('sync_conflict',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.String(length=128), nullable=False),
    sa.Column('entity', sa.String(length=64), nullable=False),
    sa.Column('outreach_id', sa.BigInteger(), nullable=False),
    sa.Column('workbooks_id', sa.BigInteger(), nullable=True),
    sa.Column('field', sa.String(length=128), nullable=False),
    sa.Column('base_json', sa.Text(), nullable=True),
    sa.Column('outreach_json', sa.Text(), nullable=True),
    sa.Column('workbooks_json', sa.Text(), nullable=True),
    sa.Column('winner', sa.String(length=16), nullable=False),
    sa.Column('policy', sa.String(length=32), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_sync_conflict_record', 'sync_conflict', ['entity', 'outreach_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_sync_conflict_record', table_name='sync_conflict')
    op.drop_table('sync_conflict')
