"""Workbooks -> Outreach failures as data: their state per Workbooks record, and every failure of every run.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 23:55:00

Two new tables, keyed by the Workbooks id because a record Outreach refused to create has no Outreach id. No
existing row changes: the failures that direction had before were kept only in run metadata, so the new tables
start empty.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | Sequence[str] | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('sync_to_outreach_state',
    sa.Column('entity', sa.String(length=64), nullable=False),
    sa.Column('workbooks_id', sa.BigInteger(), nullable=False),
    sa.Column('outreach_id', sa.BigInteger(), nullable=True),
    sa.Column('last_outcome', sa.String(length=16), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('error_field', sa.String(length=128), nullable=True),
    sa.Column('error_kind', sa.String(length=32), nullable=True),
    sa.Column('first_failed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('fail_streak', sa.Integer(), server_default=sa.text('0'), nullable=False),
    sa.Column('window_start', sa.DateTime(timezone=True), nullable=True),
    sa.Column('window_end', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_run_id', sa.String(length=128), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('entity', 'workbooks_id')
    )
    op.create_index('ix_sync_to_outreach_state_outreach', 'sync_to_outreach_state', ['entity', 'outreach_id'],
                    unique=False)
    op.create_table('sync_to_outreach_failure',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('run_id', sa.String(length=128), nullable=False),
    sa.Column('entity', sa.String(length=64), nullable=False),
    sa.Column('workbooks_id', sa.BigInteger(), nullable=False),
    sa.Column('outreach_id', sa.BigInteger(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('error_field', sa.String(length=128), nullable=True),
    sa.Column('error_kind', sa.String(length=32), nullable=True),
    sa.Column('fail_streak', sa.Integer(), nullable=False),
    sa.Column('first_failed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('window_start', sa.DateTime(timezone=True), nullable=True),
    sa.Column('window_end', sa.DateTime(timezone=True), nullable=True),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_sync_to_outreach_failure_run', 'sync_to_outreach_failure', ['run_id'], unique=False)
    op.create_index('ix_sync_to_outreach_failure_record', 'sync_to_outreach_failure', ['entity', 'workbooks_id'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_sync_to_outreach_failure_record', table_name='sync_to_outreach_failure')
    op.drop_index('ix_sync_to_outreach_failure_run', table_name='sync_to_outreach_failure')
    op.drop_table('sync_to_outreach_failure')
    op.drop_index('ix_sync_to_outreach_state_outreach', table_name='sync_to_outreach_state')
    op.drop_table('sync_to_outreach_state')
