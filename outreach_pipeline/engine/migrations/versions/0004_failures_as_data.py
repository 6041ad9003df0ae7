"""Failures as data: each failure's field, kind, first failure and streak; history keeps old values.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 20:40:00

Existing rows: a record whose last outcome failed gets a streak of 1 and its last recorded time as its first
failure (the ledger did not count before); every other record a streak of 0. History rows keep no old values
(they were not recorded).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | Sequence[str] | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('sync_record_state', sa.Column('error_field', sa.String(length=128), nullable=True))
    op.add_column('sync_record_state', sa.Column('error_kind', sa.String(length=32), nullable=True))
    op.add_column('sync_record_state', sa.Column('first_failed_at', sa.DateTime(timezone=True), nullable=True))
    op.add_column('sync_record_state', sa.Column('fail_streak', sa.Integer(), server_default=sa.text('0'),
                                                 nullable=False))
    op.add_column('sync_history', sa.Column('old_json', sa.Text(), nullable=True))
    op.add_column('sync_history', sa.Column('error_field', sa.String(length=128), nullable=True))
    op.add_column('sync_history', sa.Column('error_kind', sa.String(length=32), nullable=True))
    op.add_column('sync_history', sa.Column('fail_streak', sa.Integer(), nullable=True))
    op.add_column('sync_history', sa.Column('first_failed_at', sa.DateTime(timezone=True), nullable=True))
    state = sa.table('sync_record_state', sa.column('last_outcome', sa.String), sa.column('fail_streak', sa.Integer),
                     sa.column('first_failed_at', sa.DateTime(timezone=True)),
                     sa.column('recorded_at', sa.DateTime(timezone=True)))
    op.execute(state.update().where(state.c.last_outcome == 'failed')
               .values(fail_streak=1, first_failed_at=state.c.recorded_at))
    old = sa.table('sync_history', sa.column('outcome', sa.String), sa.column('fail_streak', sa.Integer))
    op.execute(old.update().where(old.c.outcome == 'failed').values(fail_streak=1))


def downgrade() -> None:
    for column in ('first_failed_at', 'fail_streak', 'error_kind', 'error_field', 'old_json'):
        op.drop_column('sync_history', column)
    for column in ('fail_streak', 'first_failed_at', 'error_kind', 'error_field'):
        op.drop_column('sync_record_state', column)
