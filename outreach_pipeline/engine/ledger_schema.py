"""The sync ledger's tables (SQLAlchemy Core), one ``metadata`` for SQLite and PostgreSQL.

Rules: a table or column changes here only together with an Alembic revision under ``engine/migrations``
(opening a ledger refuses a table no revision creates); timestamps are ``UtcDateTime`` columns. The methods
reading and writing these tables live in ``ledger.py`` (records, history, runs), ``ledger_failures.py``
(failures of both directions) and ``writer_lock.py``.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from outreach_pipeline.engine.outcome import Outcome
from outreach_pipeline.engine.utc_datetime import UtcDateTime

OUTCOMES: tuple[Outcome, ...] = tuple(Outcome)

metadata = sa.MetaData()

record_state = sa.Table(
    "sync_record_state",
    metadata,
    sa.Column("entity", sa.String(64), primary_key=True),
    sa.Column("outreach_id", sa.BigInteger, primary_key=True),
    sa.Column("workbooks_id", sa.BigInteger),
    sa.Column("outreach_updated_at", UtcDateTime()),
    sa.Column("values_hash", sa.String(64)),
    sa.Column("values_json", sa.Text),
    sa.Column("last_outcome", sa.String(16), nullable=False),
    sa.Column("last_reason", sa.String(64)),
    sa.Column("last_error", sa.Text),
    sa.Column("window_start", UtcDateTime()),
    sa.Column("window_end", UtcDateTime()),
    sa.Column("last_run_id", sa.String(128), nullable=False),
    sa.Column("needs_retry", sa.Boolean, nullable=False, default=False),
    sa.Column("recorded_at", UtcDateTime(), nullable=False),
    # Failure as data (revision 0004): the field and kind of the last error, when the current run of failures
    # began and how many runs in a row failed (0 after an applied outcome).
    sa.Column("error_field", sa.String(128)),
    sa.Column("error_kind", sa.String(32)),
    sa.Column("first_failed_at", UtcDateTime()),
    sa.Column("fail_streak", sa.Integer, nullable=False, server_default=sa.text("0")),
    # The Workbooks lock_version the values above came from (revision 0008): a Workbooks read older than it is stale.
    sa.Column("workbooks_lock_version", sa.Integer),
)

history = sa.Table(
    "sync_history",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(128), nullable=False),
    sa.Column("entity", sa.String(64), nullable=False),
    sa.Column("outreach_id", sa.BigInteger, nullable=False),
    sa.Column("workbooks_id", sa.BigInteger),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(64)),
    sa.Column("error", sa.Text),
    sa.Column("outreach_updated_at", UtcDateTime()),
    sa.Column("window_start", UtcDateTime()),
    sa.Column("window_end", UtcDateTime()),
    sa.Column("values_hash", sa.String(64)),
    sa.Column("diff_json", sa.Text),
    sa.Column("recorded_at", UtcDateTime(), nullable=False),
    # Revision 0004: the previous values of the fields in diff_json, and a failure's field, kind and streak.
    sa.Column("old_json", sa.Text),
    sa.Column("error_field", sa.String(128)),
    sa.Column("error_kind", sa.String(32)),
    sa.Column("fail_streak", sa.Integer),
    sa.Column("first_failed_at", UtcDateTime()),
    sa.Index("ix_sync_history_record", "entity", "outreach_id"),
    sa.Index("ix_sync_history_run", "run_id"),
)

pending_relation = sa.Table(
    "sync_pending_relation",
    metadata,
    sa.Column("entity", sa.String(64), primary_key=True),
    sa.Column("outreach_id", sa.BigInteger, primary_key=True),
    sa.Column("field", sa.String(128), primary_key=True),
    sa.Column("target_entity", sa.String(64), primary_key=True),
    sa.Column("target_outreach_id", sa.BigInteger, primary_key=True),
    sa.Column("first_run_id", sa.String(128), nullable=False),
    sa.Column("last_run_id", sa.String(128), nullable=False),
    sa.Column("recorded_at", UtcDateTime(), nullable=False),
    sa.Index("ix_sync_pending_target", "target_entity", "target_outreach_id"),
)

runs = sa.Table(
    "sync_run",
    metadata,
    sa.Column("run_id", sa.String(128), primary_key=True),
    sa.Column("entity", sa.String(64), primary_key=True),
    sa.Column("window_start", UtcDateTime()),
    sa.Column("window_end", UtcDateTime()),
    *(sa.Column(outcome.value, sa.Integer, nullable=False, default=0) for outcome in OUTCOMES),
    sa.Column("started_at", UtcDateTime(), nullable=False),
    sa.Column("finished_at", UtcDateTime()),
)

conflict = sa.Table(
    "sync_conflict",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(128), nullable=False),
    sa.Column("entity", sa.String(64), nullable=False),
    sa.Column("outreach_id", sa.BigInteger, nullable=False),
    sa.Column("workbooks_id", sa.BigInteger),
    sa.Column("field", sa.String(128), nullable=False),
    sa.Column("base_json", sa.Text),
    sa.Column("outreach_json", sa.Text),
    sa.Column("workbooks_json", sa.Text),
    sa.Column("winner", sa.String(16), nullable=False),
    sa.Column("policy", sa.String(32), nullable=False),
    sa.Column("recorded_at", UtcDateTime(), nullable=False),
    sa.Index("ix_sync_conflict_record", "entity", "outreach_id"),
)


#: One row per run of the low-latency lane (engine/lane.py): the range of update times it read. A row with
#: `finished_at` is a completed range; the lane's cursor is the latest finished `until` (engine/ledger_lane.py).
lane_run = sa.Table(
    "sync_lane_run",
    metadata,
    sa.Column("run_id", sa.String(128), primary_key=True),
    sa.Column("since", UtcDateTime(), nullable=False),
    sa.Column("until", UtcDateTime(), nullable=False),
    sa.Column("started_at", UtcDateTime(), nullable=False),
    sa.Column("finished_at", UtcDateTime()),
    sa.Index("ix_sync_lane_run_finished", "finished_at", "until"),
)


#: One row per (target system, entity) being written: who holds the writer lock (see engine/writer_lock.py).
writer_lock = sa.Table(
    "sync_writer_lock",
    metadata,
    sa.Column("target", sa.String(64), primary_key=True),
    sa.Column("entity", sa.String(64), primary_key=True),
    sa.Column("token", sa.String(64), nullable=False),
    sa.Column("run_id", sa.String(128), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("acquired_at", UtcDateTime(), nullable=False),
    sa.Column("heartbeat_at", UtcDateTime(), nullable=False),
    sa.Column("lease_seconds", sa.Float, nullable=False),
)

#: Workbooks -> Outreach failures (revision 0005). That direction's key is the Workbooks id, as a record Outreach
#: refused to create has no Outreach id; `sync_record_state` (keyed by the Outreach id) cannot hold it. One row per
#: Workbooks record that ever failed: its last failure's field, kind and message, when the streak began and how many
#: attempts in a row failed. A later attempt that does not fail sets the streak to 0 and records the Outreach id
#: (the same row, now linked).
to_outreach_state = sa.Table(
    "sync_to_outreach_state",
    metadata,
    sa.Column("entity", sa.String(64), primary_key=True),
    sa.Column("workbooks_id", sa.BigInteger, primary_key=True),
    sa.Column("outreach_id", sa.BigInteger),
    sa.Column("last_outcome", sa.String(16), nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("error_field", sa.String(128)),
    sa.Column("error_kind", sa.String(32)),
    sa.Column("first_failed_at", UtcDateTime()),
    sa.Column("fail_streak", sa.Integer, nullable=False, server_default=sa.text("0")),
    sa.Column("window_start", UtcDateTime()),
    sa.Column("window_end", UtcDateTime()),
    sa.Column("last_run_id", sa.String(128), nullable=False),
    sa.Column("recorded_at", UtcDateTime(), nullable=False),
    sa.Index("ix_sync_to_outreach_state_outreach", "entity", "outreach_id"),
)

#: Every Workbooks -> Outreach failure of every run (revision 0005), append-only: what `failures --run` lists.
to_outreach_failure = sa.Table(
    "sync_to_outreach_failure",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(128), nullable=False),
    sa.Column("entity", sa.String(64), nullable=False),
    sa.Column("workbooks_id", sa.BigInteger, nullable=False),
    sa.Column("outreach_id", sa.BigInteger),
    sa.Column("error", sa.Text),
    sa.Column("error_field", sa.String(128)),
    sa.Column("error_kind", sa.String(32)),
    sa.Column("fail_streak", sa.Integer, nullable=False),
    sa.Column("first_failed_at", UtcDateTime()),
    sa.Column("window_start", UtcDateTime()),
    sa.Column("window_end", UtcDateTime()),
    sa.Column("recorded_at", UtcDateTime(), nullable=False),
    sa.Index("ix_sync_to_outreach_failure_run", "run_id"),
    sa.Index("ix_sync_to_outreach_failure_record", "entity", "workbooks_id"),
)


#: Outreach webhook deliveries received, counted per resource type and hourly window (engine/webhook_hints.py):
#: a change hint, never a record's data.
webhook_hint = sa.Table(
    "sync_webhook_hint",
    metadata,
    sa.Column("resource_type", sa.String(64), primary_key=True),
    sa.Column("window_start", UtcDateTime(), primary_key=True),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("last_received_at", UtcDateTime(), nullable=False),
)

#: One row per start of the webhook receiver: what its subscription covers and from when until when it was
#: listening (`listening_until` moves with its heartbeat), so a gap in listening is visible.
webhook_listening = sa.Table(
    "sync_webhook_listening",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("webhook_url", sa.String(1024), nullable=False),
    sa.Column("resource", sa.String(64), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("listening_from", UtcDateTime(), nullable=False),
    sa.Column("listening_until", UtcDateTime(), nullable=False),
    sa.Index("ix_sync_webhook_listening_until", "listening_until"),
)


def upsert(connection: Connection, table: sa.Table, keys: list[str]) -> Any:
    """INSERT ... ON CONFLICT (keys) DO UPDATE every other column, on SQLite or PostgreSQL."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table)
    updates = {column.name: statement.excluded[column.name] for column in table.columns if column.name not in keys}
    return statement.on_conflict_do_update(index_elements=keys, set_=updates)
