"""The sync ledger: per-record state, append-only history, pending relationships and run counts.

SQLAlchemy Core on SQLite (a file under DAGSTER_HOME) or PostgreSQL. Every write method is one transaction
with one statement per table per batch. Writers are serialised so that two processes recording outcomes
for the same entity cannot interleave their read-merge-write: SQLite takes the write lock up front
(``BEGIN IMMEDIATE``, WAL, busy timeout), PostgreSQL takes a transaction-scoped advisory lock per entity.

The tables are in ``ledger_schema.py``, versioned by the Alembic revisions in ``engine/migrations``, applied
when a ledger is opened: a change to them needs a revision. Timestamps are ``UtcDateTime`` columns, stored as UTC and read
back aware in UTC on both databases.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.engine import Connection, Engine

from outreach_pipeline.engine import migrations
from outreach_pipeline.engine.ledger_failures import FailureQueries
from outreach_pipeline.engine.ledger_schema import (
    OUTCOMES,
    conflict,
    history,
    metadata,
    pending_relation,
    record_state,
    runs,
    upsert,
)
from outreach_pipeline.engine.ledger_schema import writer_lock as writer_lock  # re-exported: its table
from outreach_pipeline.engine.outcome import Outcome
from outreach_pipeline.engine.utc_datetime import to_utc
from outreach_pipeline.mapping.errors import ErrorKind

HOUR = timedelta(hours=1)
_IN_CLAUSE_CHUNK = 500
#: The reason recorded with the outcomes of the Workbooks -> Outreach direction (history rows without it are
#: the Outreach -> Workbooks direction's).
TO_OUTREACH_REASON = "to_outreach"


class LedgerModel(BaseModel):
    """Base of ledger records: immutable, unknown keys rejected, datetimes aware and in UTC."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _datetimes_in_utc(cls, value: Any) -> Any:
        # A naive datetime is refused where it enters, naming the field, rather than at the database.
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise ValueError("datetimes must be timezone-aware")
            return to_utc(value)
        return value


class SyncWindow(LedgerModel):
    """A half-open sync window ``[start, end)`` in UTC."""

    start: datetime
    end: datetime


class PendingRelation(LedgerModel):
    """A link from ``entity``/``outreach_id`` that could not be resolved because its target is not synced yet."""

    entity: str
    outreach_id: int
    field: str
    target_entity: str
    target_outreach_id: int


class RecordOutcome(LedgerModel):
    """What happened to one record in one run (input to :meth:`SyncLedger.record_outcomes`).

    Attributes:
        values: the full set of normalised values now in Workbooks (applied outcomes only); hashed.
        diff: what was written (fields -> new values), kept in the history with each field's previous value
            (from the ledger's last applied values; absent when the ledger had none).
        pending_relations: the record's complete set of unresolved links after this run (replaces the old set).
        window_start: the record's own sync window (the hour its change belongs to); ``window_end`` defaults to
            one hour later. Without it the record is stored with the whole window the run was given.
        error_field, error_kind: what a failure concerns (``mapping.errors.ErrorKind``); None when unknown.
        workbooks_lock_version: the Workbooks record's lock_version that ``values`` correspond to (after an
            Outreach -> Workbooks write, or as read for a Workbooks -> Outreach write); the ledger keeps the highest.
    """

    entity: str
    outreach_id: int
    outcome: Outcome
    workbooks_id: int | None = None
    outreach_updated_at: datetime | None = None
    values: dict[str, Any] | None = None
    diff: dict[str, Any] | None = None
    reason: str | None = None
    error: str | None = None
    pending_relations: list[PendingRelation] = Field(default_factory=list)
    window_start: datetime | None = None
    window_end: datetime | None = None
    error_field: str | None = None
    error_kind: ErrorKind | None = None
    workbooks_lock_version: int | None = None

    def own_window(self, run_window: SyncWindow) -> SyncWindow:
        """The record's own window if it has one, else the run's."""
        if self.window_start is None:
            return run_window
        return SyncWindow(start=self.window_start, end=self.window_end or self.window_start + HOUR)


class RecordState(LedgerModel):
    """The ledger's latest knowledge of one record."""

    entity: str
    outreach_id: int
    workbooks_id: int | None
    outreach_updated_at: datetime | None
    values_hash: str | None
    values: dict[str, Any] | None
    last_outcome: Outcome
    last_reason: str | None
    last_error: str | None
    window_start: datetime | None
    window_end: datetime | None
    last_run_id: str
    needs_retry: bool
    recorded_at: datetime
    error_field: str | None = None
    error_kind: str | None = None
    first_failed_at: datetime | None = None
    fail_streak: int = 0
    workbooks_lock_version: int | None = None


class HistoryEntry(LedgerModel):
    """One row of the append-only history."""

    run_id: str
    entity: str
    outreach_id: int
    workbooks_id: int | None
    outcome: Outcome
    reason: str | None
    error: str | None
    outreach_updated_at: datetime | None
    window_start: datetime | None
    window_end: datetime | None
    values_hash: str | None
    diff: dict[str, Any] | None
    recorded_at: datetime
    old: dict[str, Any] | None = None
    error_field: str | None = None
    error_kind: str | None = None
    fail_streak: int | None = None


class RunSummary(LedgerModel):
    """Counts per outcome of one run of one entity."""

    run_id: str
    entity: str
    window_start: datetime | None
    window_end: datetime | None
    counts: dict[str, int]
    started_at: datetime
    finished_at: datetime | None


class FieldConflict(LedgerModel):
    """A field changed on both sides since they last agreed: both values, the base, and who won."""

    entity: str
    outreach_id: int
    workbooks_id: int | None
    field: str
    base: Any
    had_base: bool
    outreach_value: Any
    workbooks_value: Any
    winner: str
    policy: str


def values_hash(values: dict[str, Any] | None) -> str | None:
    """Stable SHA-256 of a values dict (sorted keys, JSON)."""
    if values is None:
        return None
    return hashlib.sha256(_dumps(values).encode()).hexdigest()


class SyncLedger(FailureQueries):
    """Sync ledger on SQLite or PostgreSQL; opening creates or upgrades its tables to the current schema.

    Args:
        url: SQLAlchemy URL, e.g. ``sqlite:///<DAGSTER_HOME>/sync_ledger.db`` or
            ``postgresql+psycopg2://user@host/db``. Never logged: ``repr`` hides the password.
    """

    def __init__(self, url: str) -> None:
        self._engine = _make_engine(url)
        migrations.upgrade_to_head(self._engine, metadata)

    def __repr__(self) -> str:
        return f"SyncLedger({self._engine.url.render_as_string(hide_password=True)!r})"

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine (for disposal and inspection)."""
        return self._engine

    def dispose(self) -> None:
        """Close pooled connections."""
        self._engine.dispose()

    # --- runs --------------------------------------------------------------------------------------------

    def start_run(self, run_id: str, entity: str, window: SyncWindow) -> None:
        """Register a run of one entity (idempotent: a retried run keeps its counts)."""
        with self._write(entity) as connection:
            exists = connection.execute(
                sa.select(runs.c.run_id).where(runs.c.run_id == run_id, runs.c.entity == entity)
            ).first()
            if exists is None:
                connection.execute(
                    runs.insert().values(
                        run_id=run_id,
                        entity=entity,
                        window_start=window.start,
                        window_end=window.end,
                        started_at=_now(),
                        **dict.fromkeys((o.value for o in OUTCOMES), 0),
                    )
                )

    def finish_run(self, run_id: str, entity: str) -> RunSummary:
        """Stamp the run finished and return its counts."""
        with self._write(entity) as connection:
            connection.execute(
                runs.update()
                .where(runs.c.run_id == run_id, runs.c.entity == entity)
                .values(finished_at=_now())
            )
        summary = self.run_summary(run_id, entity)
        if summary is None:
            raise KeyError(f"run {run_id!r} of entity {entity!r} was never started")
        return summary

    def run_summary(self, run_id: str, entity: str) -> RunSummary | None:
        """Counts of one run, or None when unknown."""
        with self._engine.connect() as connection:
            row = (
                connection.execute(sa.select(runs).where(runs.c.run_id == run_id, runs.c.entity == entity))
                .mappings()
                .first()
            )
        if row is None:
            return None
        return RunSummary(
            run_id=row["run_id"],
            entity=row["entity"],
            window_start=row["window_start"],
            window_end=row["window_end"],
            counts={outcome.value: row[outcome.value] for outcome in OUTCOMES},
            started_at=row["started_at"],
            finished_at=row["finished_at"],
        )

    # --- records -----------------------------------------------------------------------------------------

    def get_states(self, entity: str, outreach_ids: Iterable[int]) -> dict[int, RecordState]:
        """States of the given records of ``entity`` (absent ids are left out)."""
        with self._engine.connect() as connection:
            return self._read_states(connection, entity, outreach_ids)

    def record_outcomes(self, run_id: str, window: SyncWindow, outcomes: Sequence[RecordOutcome]) -> None:
        """Upsert record states, append history, replace pending relations and add run counts, atomically.

        Failed and skipped outcomes keep the last applied version and values, so a later stale-version check
        and the unchanged-comparison still refer to what Workbooks really holds.

        Args:
            run_id: the Dagster run id.
            window: the window the outcomes belong to.
            outcomes: one per record, all of one entity.

        Raises:
            ValueError: outcomes of several entities, or one record twice in the batch.
        """
        if not outcomes:
            return
        entity = _single_entity(outcomes)
        now = _now()
        with self._write(entity) as connection:
            previous = self._read_states(connection, entity, [outcome.outreach_id for outcome in outcomes])
            state_rows = [_state_row(o, previous.get(o.outreach_id), run_id, window, now) for o in outcomes]
            connection.execute(upsert(connection, record_state, ["entity", "outreach_id"]), state_rows)
            connection.execute(history.insert(), [
                _history_row(o, previous.get(o.outreach_id), state, run_id, window, now)
                for o, state in zip(outcomes, state_rows, strict=True)
            ])
            self._replace_pending(connection, entity, outcomes, run_id, now)
            self._add_run_counts(connection, run_id, entity, window, outcomes, now)

    def record_conflicts(self, run_id: str, conflicts: Sequence[FieldConflict]) -> None:
        """Append conflict rows (one per field both sides changed)."""
        if not conflicts:
            return
        now = _now()
        rows = [
            {
                "run_id": run_id, "entity": c.entity, "outreach_id": c.outreach_id, "workbooks_id": c.workbooks_id,
                "field": c.field, "base_json": _dumps({"value": c.base}) if c.had_base else None,
                "outreach_json": _dumps(c.outreach_value), "workbooks_json": _dumps(c.workbooks_value),
                "winner": c.winner, "policy": c.policy, "recorded_at": now,
            }
            for c in conflicts
        ]
        with self._engine.begin() as connection:
            connection.execute(conflict.insert(), rows)

    def conflicts(self, entity: str, outreach_id: int | None = None) -> list[FieldConflict]:
        """Recorded conflicts of ``entity`` (of one record when ``outreach_id`` is given), oldest first."""
        query = sa.select(conflict).where(conflict.c.entity == entity).order_by(conflict.c.id)
        if outreach_id is not None:
            query = query.where(conflict.c.outreach_id == outreach_id)
        with self._engine.connect() as connection:
            return [
                FieldConflict(
                    entity=row["entity"], outreach_id=row["outreach_id"], workbooks_id=row["workbooks_id"],
                    field=row["field"], had_base=row["base_json"] is not None,
                    base=(_loads(row["base_json"]) or {}).get("value"),
                    outreach_value=_loads(row["outreach_json"]), workbooks_value=_loads(row["workbooks_json"]),
                    winner=row["winner"], policy=row["policy"],
                )
                for row in connection.execute(query).mappings()
            ]

    def states_by_workbooks_id(self, entity: str, workbooks_ids: Iterable[int]) -> dict[int, RecordState]:
        """States of ``entity`` by Workbooks id (the Workbooks -> Outreach direction's key)."""
        ids = sorted({int(i) for i in workbooks_ids})
        found: dict[int, RecordState] = {}
        with self._engine.connect() as connection:
            for start in range(0, len(ids), _IN_CLAUSE_CHUNK):
                query = sa.select(record_state).where(
                    record_state.c.entity == entity,
                    record_state.c.workbooks_id.in_(ids[start : start + _IN_CLAUSE_CHUNK]),
                )
                for row in connection.execute(query).mappings():
                    found[int(row["workbooks_id"])] = _record_state(row)
        return found

    def written_in_window(self, entity: str, window: SyncWindow, *, to_outreach: bool) -> list[tuple[int, int | None]]:
        """(Outreach id, Workbooks id) of the records one direction wrote for a window (any run).

        A sync write moves the record's update time out of the window it was synced for, so the other
        direction's read of that window would miss it; it reads these too, and a window's result does not
        depend on which direction ran first. Only updates: a record the sync created has no change of its own
        on that side to miss.
        """
        direction = (
            history.c.reason == TO_OUTREACH_REASON
            if to_outreach
            else sa.or_(history.c.reason.is_(None), history.c.reason != TO_OUTREACH_REASON)
        )
        query = sa.select(history.c.outreach_id, history.c.workbooks_id).where(
            history.c.entity == entity,
            history.c.outcome == Outcome.UPDATED.value,
            history.c.window_start >= window.start,
            history.c.window_end <= window.end,
            direction,
        ).distinct()
        with self._engine.connect() as connection:
            return [(int(o), None if w is None else int(w)) for o, w in connection.execute(query)]

    def unlink(self, entity: str, outreach_ids: Sequence[int]) -> None:
        """Forget the Workbooks twin and the agreed values of records whose twin was deleted (reconcile)."""
        ids = sorted({int(i) for i in outreach_ids})
        with self._write(entity) as connection:
            for start in range(0, len(ids), _IN_CLAUSE_CHUNK):
                connection.execute(
                    record_state.update()
                    .where(record_state.c.entity == entity,
                           record_state.c.outreach_id.in_(ids[start : start + _IN_CLAUSE_CHUNK]))
                    .values(workbooks_id=None, values_json=None, values_hash=None, last_reason="unlinked",
                            recorded_at=_now())
                )

    def linked_ids(self, entity: str) -> list[tuple[int, int]]:
        """(Outreach id, Workbooks id) of every linked record of ``entity``."""
        query = sa.select(record_state.c.outreach_id, record_state.c.workbooks_id).where(
            record_state.c.entity == entity, record_state.c.workbooks_id.is_not(None)
        )
        with self._engine.connect() as connection:
            return [(int(o), int(w)) for o, w in connection.execute(query)]

    def failed_ids(self, entity: str) -> list[int]:
        """Outreach ids of ``entity`` whose last outcome failed and that later runs must retry."""
        query = (
            sa.select(record_state.c.outreach_id)
            .where(record_state.c.entity == entity, record_state.c.needs_retry.is_(True))
            .order_by(record_state.c.outreach_id)
        )
        with self._engine.connect() as connection:
            return [row[0] for row in connection.execute(query)]

    def pending_relations(
        self, entity: str | None = None, *, target_entity: str | None = None
    ) -> list[PendingRelation]:
        """Unresolved links, optionally of one source entity and/or towards one target entity."""
        query = sa.select(
            pending_relation.c.entity,
            pending_relation.c.outreach_id,
            pending_relation.c.field,
            pending_relation.c.target_entity,
            pending_relation.c.target_outreach_id,
        ).order_by(*pending_relation.primary_key.columns)
        if entity is not None:
            query = query.where(pending_relation.c.entity == entity)
        if target_entity is not None:
            query = query.where(pending_relation.c.target_entity == target_entity)
        with self._engine.connect() as connection:
            return [PendingRelation(**row) for row in connection.execute(query).mappings()]

    def history(self, entity: str, outreach_id: int | None = None, *, workbooks_id: int | None = None
                ) -> list[HistoryEntry]:
        """Every recorded outcome of one record (by Outreach id, or by Workbooks id), oldest first."""
        key = history.c.outreach_id == outreach_id if workbooks_id is None else history.c.workbooks_id == workbooks_id
        query = sa.select(history).where(history.c.entity == entity, key).order_by(history.c.id)
        with self._engine.connect() as connection:
            return [_history_entry(row) for row in connection.execute(query).mappings()]

    # --- internals ---------------------------------------------------------------------------------------

    def _write(self, entity: str) -> _WriteTransaction:
        return _WriteTransaction(self._engine, entity)

    def _read_states(
        self, connection: Connection, entity: str, outreach_ids: Iterable[int]
    ) -> dict[int, RecordState]:
        ids = sorted({int(outreach_id) for outreach_id in outreach_ids})
        states: dict[int, RecordState] = {}
        for start in range(0, len(ids), _IN_CLAUSE_CHUNK):
            chunk = ids[start : start + _IN_CLAUSE_CHUNK]
            query = sa.select(record_state).where(
                record_state.c.entity == entity, record_state.c.outreach_id.in_(chunk)
            )
            for row in connection.execute(query).mappings():
                states[row["outreach_id"]] = _record_state(row)
        return states

    def _replace_pending(
        self,
        connection: Connection,
        entity: str,
        outcomes: Sequence[RecordOutcome],
        run_id: str,
        now: datetime,
    ) -> None:
        # A failed or skipped record was not written, so its old pending links are still pending.
        rewritten = [o for o in outcomes if o.outcome.applied]
        if not rewritten:
            return
        ids = [o.outreach_id for o in rewritten]
        first_seen = self._first_pending_runs(connection, entity, ids)
        for start in range(0, len(ids), _IN_CLAUSE_CHUNK):
            connection.execute(
                pending_relation.delete().where(
                    pending_relation.c.entity == entity,
                    pending_relation.c.outreach_id.in_(ids[start : start + _IN_CLAUSE_CHUNK]),
                )
            )
        rows = [
            {
                **relation.model_dump(),
                "first_run_id": first_seen.get(_pending_key(relation), run_id),
                "last_run_id": run_id,
                "recorded_at": now,
            }
            for outcome in rewritten
            for relation in outcome.pending_relations
        ]
        if rows:
            connection.execute(pending_relation.insert(), rows)

    @staticmethod
    def _first_pending_runs(connection: Connection, entity: str, ids: list[int]) -> dict[tuple, str]:
        first: dict[tuple, str] = {}
        for start in range(0, len(ids), _IN_CLAUSE_CHUNK):
            query = sa.select(pending_relation).where(
                pending_relation.c.entity == entity,
                pending_relation.c.outreach_id.in_(ids[start : start + _IN_CLAUSE_CHUNK]),
            )
            for row in connection.execute(query).mappings():
                first[(row["outreach_id"], row["field"], row["target_entity"], row["target_outreach_id"])] = (
                    row["first_run_id"]
                )
        return first

    @staticmethod
    def _add_run_counts(
        connection: Connection,
        run_id: str,
        entity: str,
        window: SyncWindow,
        outcomes: Sequence[RecordOutcome],
        now: datetime,
    ) -> None:
        counts = {name.value: sum(1 for o in outcomes if o.outcome is name) for name in OUTCOMES}
        updated = connection.execute(
            runs.update()
            .where(runs.c.run_id == run_id, runs.c.entity == entity)
            .values({runs.c[name]: runs.c[name] + count for name, count in counts.items()})
        )
        if updated.rowcount == 0:
            connection.execute(
                runs.insert().values(
                    run_id=run_id,
                    entity=entity,
                    window_start=window.start,
                    window_end=window.end,
                    started_at=now,
                    **counts,
                )
            )


class _WriteTransaction:
    """A write transaction holding the per-entity writer lock (see module docstring)."""

    def __init__(self, engine: Engine, entity: str) -> None:
        self._engine = engine
        self._entity = entity
        self._context: Any = None

    def __enter__(self) -> Connection:
        self._context = self._engine.begin()
        connection = self._context.__enter__()
        if connection.dialect.name == "postgresql":
            lock_key = zlib.crc32(f"sync_ledger:{self._entity}".encode())
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key})
        return connection

    def __exit__(self, *exc: Any) -> None:
        self._context.__exit__(*exc)


def _make_engine(url: str) -> Engine:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(parsed, pool_pre_ping=True)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(parsed, connect_args={"timeout": 30})

    @sa.event.listens_for(engine, "connect")
    def _configure_sqlite(dbapi_connection: Any, _: Any) -> None:
        # Autocommit at the driver level so SQLAlchemy's "begin" event decides how transactions start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin_immediate(connection: Connection) -> None:
        # Taking the write lock at BEGIN makes a second writer wait (busy timeout) instead of failing with
        # SQLITE_BUSY when it upgrades a read lock after another writer committed.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _single_entity(outcomes: Sequence[RecordOutcome]) -> str:
    entities = {outcome.entity for outcome in outcomes}
    if len(entities) != 1:
        raise ValueError(f"record_outcomes takes one entity per batch, got {sorted(entities)}")
    ids = [outcome.outreach_id for outcome in outcomes]
    duplicates = sorted(outreach_id for outreach_id, count in Counter(ids).items() if count > 1)  # linear, not ids.count
    if duplicates:
        raise ValueError(f"{entities.pop()}: outreach ids {duplicates} appear more than once in one batch")
    return entities.pop()


def _state_row(
    outcome: RecordOutcome, previous: RecordState | None, run_id: str, window: SyncWindow, now: datetime
) -> dict[str, Any]:
    applied = outcome.outcome.applied
    keep_values = not applied and previous is not None
    own = outcome.own_window(window)
    failed = outcome.outcome is Outcome.FAILED
    # A stale-version skip (an old window reloaded) says nothing about the record's failures: it keeps them.
    keeps_failure = outcome.reason == "stale_version" and previous is not None and previous.fail_streak > 0
    streak = (previous.fail_streak if previous is not None else 0) + 1 if failed else 0
    first_failed = (previous.first_failed_at if previous is not None and previous.fail_streak > 0 else None) or now
    row = {
        "entity": outcome.entity,
        "outreach_id": outcome.outreach_id,
        "workbooks_id": outcome.workbooks_id
        if outcome.workbooks_id is not None
        else _get(previous, "workbooks_id"),
        "outreach_updated_at": outcome.outreach_updated_at
        if applied
        else _get(previous, "outreach_updated_at"),
        "values_hash": previous.values_hash if keep_values else values_hash(outcome.values),
        "values_json": _dumps(previous.values if keep_values else outcome.values),
        "last_outcome": outcome.outcome,
        "last_reason": outcome.reason,
        "last_error": outcome.error,
        "window_start": own.start,
        "window_end": own.end,
        "last_run_id": run_id,
        # Only failures are retried. A flag skip is terminal for this version; a stale-version skip (an old
        # window reloaded) says nothing about the record's retry state, so it keeps it.
        "needs_retry": outcome.outcome is Outcome.FAILED
        or (outcome.reason == "stale_version" and bool(_get(previous, "needs_retry"))),
        "recorded_at": now,
        "error_field": outcome.error_field if failed else None,
        "error_kind": outcome.error_kind.value if failed and outcome.error_kind is not None else None,
        "first_failed_at": first_failed if failed else None,
        "fail_streak": streak,
        "workbooks_lock_version": _workbooks_lock_version(outcome, previous),
    }
    if keeps_failure:
        assert previous is not None
        row |= {"error_field": previous.error_field, "error_kind": previous.error_kind,
                "first_failed_at": previous.first_failed_at, "fail_streak": previous.fail_streak}
    return row


def _workbooks_lock_version(outcome: RecordOutcome, previous: RecordState | None) -> int | None:
    """The highest Workbooks version the record's values are known from; a new Workbooks twin starts afresh."""
    new = outcome.workbooks_lock_version if outcome.outcome.applied else None
    if previous is None or (outcome.workbooks_id is not None and outcome.workbooks_id != previous.workbooks_id):
        return new
    return max((v for v in (previous.workbooks_lock_version, new) if v is not None), default=None)


def _history_row(
    outcome: RecordOutcome, previous: RecordState | None, state: dict[str, Any], run_id: str, window: SyncWindow,
    now: datetime,
) -> dict[str, Any]:
    own = outcome.own_window(window)
    known = previous.values if previous is not None and previous.values is not None else None
    old = {name: known.get(name) for name in outcome.diff if name in known} if outcome.diff and known else None
    failed = outcome.outcome is Outcome.FAILED
    return {
        "run_id": run_id,
        "entity": outcome.entity,
        "outreach_id": outcome.outreach_id,
        "workbooks_id": outcome.workbooks_id,
        "outcome": outcome.outcome,
        "reason": outcome.reason,
        "error": outcome.error,
        "outreach_updated_at": outcome.outreach_updated_at,
        "window_start": own.start,
        "window_end": own.end,
        "values_hash": values_hash(outcome.values),
        "diff_json": _dumps(outcome.diff),
        "recorded_at": now,
        "old_json": _dumps(old),
        "error_field": state["error_field"] if failed else None,
        "error_kind": state["error_kind"] if failed else None,
        "fail_streak": state["fail_streak"] if failed else None,
        "first_failed_at": state["first_failed_at"] if failed else None,
    }


def _record_state(row: Any) -> RecordState:
    return RecordState(
        entity=row["entity"],
        outreach_id=row["outreach_id"],
        workbooks_id=row["workbooks_id"],
        outreach_updated_at=row["outreach_updated_at"],
        values_hash=row["values_hash"],
        values=_loads(row["values_json"]),
        last_outcome=row["last_outcome"],
        last_reason=row["last_reason"],
        last_error=row["last_error"],
        window_start=row["window_start"],
        window_end=row["window_end"],
        last_run_id=row["last_run_id"],
        needs_retry=bool(row["needs_retry"]),
        recorded_at=row["recorded_at"],
        error_field=row["error_field"],
        error_kind=row["error_kind"],
        first_failed_at=row["first_failed_at"],
        fail_streak=int(row["fail_streak"] or 0),
        workbooks_lock_version=row["workbooks_lock_version"],
    )


def _history_entry(row: Any) -> HistoryEntry:
    return HistoryEntry(
        run_id=row["run_id"],
        entity=row["entity"],
        outreach_id=row["outreach_id"],
        workbooks_id=row["workbooks_id"],
        outcome=row["outcome"],
        reason=row["reason"],
        error=row["error"],
        outreach_updated_at=row["outreach_updated_at"],
        window_start=row["window_start"],
        window_end=row["window_end"],
        values_hash=row["values_hash"],
        diff=_loads(row["diff_json"]),
        recorded_at=row["recorded_at"],
        old=_loads(row["old_json"]),
        error_field=row["error_field"],
        error_kind=row["error_kind"],
        fail_streak=row["fail_streak"],
    )


def _pending_key(relation: PendingRelation) -> tuple:
    return (relation.outreach_id, relation.field, relation.target_entity, relation.target_outreach_id)


def _get(state: RecordState | None, attribute: str) -> Any:
    return getattr(state, attribute) if state is not None else None


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _now() -> datetime:
    return datetime.now(UTC)
