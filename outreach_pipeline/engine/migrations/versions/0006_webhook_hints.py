"""Webhook change hints: deliveries counted per resource type and window, and the receiver's listening spans.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 23:40:00

New tables only; existing rows are untouched. An empty hint table with no listening span means "no receiver
ever listened": every window is read, as before this revision.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | Sequence[str] | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'sync_webhook_hint',
        sa.Column('resource_type', sa.String(length=64), nullable=False),
        sa.Column('window_start', sa.DateTime(timezone=True), nullable=False),
        sa.Column('count', sa.Integer(), nullable=False),
        sa.Column('last_received_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('resource_type', 'window_start'),
    )
    op.create_table(
        'sync_webhook_listening',
        sa.Column('id', sa.String(length=64), nullable=False),
        sa.Column('webhook_url', sa.String(length=1024), nullable=False),
        sa.Column('resource', sa.String(length=64), nullable=False),
        sa.Column('action', sa.String(length=64), nullable=False),
        sa.Column('listening_from', sa.DateTime(timezone=True), nullable=False),
        sa.Column('listening_until', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_sync_webhook_listening_until', 'sync_webhook_listening', ['listening_until'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_sync_webhook_listening_until', table_name='sync_webhook_listening')
    op.drop_table('sync_webhook_listening')
    op.drop_table('sync_webhook_hint')
