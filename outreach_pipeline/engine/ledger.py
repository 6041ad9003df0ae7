"""The sync ledger: per-record state, append-only history, pending relationships and run counts.

SQLAlchemy Core on SQLite (a file under DAGSTER_HOME) or PostgreSQL. Every write method is one transaction
with one statement per table per batch. Writers are serialised so that two processes recording outcomes
for the same entity cannot interleave their read-merge-write: SQLite takes the write lock up front
(``BEGIN IMMEDIATE``, WAL, busy timeout), PostgreSQL takes a transaction-scoped advisory lock per entity.

The records a run gives and reads back are in ``ledger_models.py``, the rules that turn an outcome into its state
and history rows in ``ledger_rows.py`` (pure). The tables are in ``ledger_schema.py``, versioned by the Alembic revisions in ``engine/migrations``, applied
when a ledger is opened: a change to them needs a revision. Timestamps are ``UtcDateTime`` columns, stored as UTC and read
back aware in UTC on both databases.
"""

from __future__ import annotations

import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from outreach_pipeline.engine import migrations
from outreach_pipeline.engine.ledger_failures import FailureQueries
from outreach_pipeline.engine.ledger_models import (
    FieldConflict,
    HistoryEntry,
    PendingRelation,
    RecordOutcome,
    RecordState,
    RunSummary,
    SyncWindow,
    from_json,
    to_json,
    values_hash,
)
from outreach_pipeline.engine.ledger_rows import history_from_row, history_row, state_from_row, state_row
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

# The records are the ledger's vocabulary: importers take them from here.
__all__ = [
    "TO_OUTREACH_REASON",
    "FieldConflict",
    "HistoryEntry",
    "PendingRelation",
    "RecordOutcome",
    "RecordState",
    "RunSummary",
    "SyncLedger",
    "SyncWindow",
    "values_hash",
    "writer_lock",
]

_IN_CLAUSE_CHUNK = 500
#: The reason recorded with the outcomes of the Workbooks -> Outreach direction (history rows without it are
#: the Outreach -> Workbooks direction's).
TO_OUTREACH_REASON = "to_outreach"


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
            state_rows = [state_row(o, previous.get(o.outreach_id), run_id, window, now) for o in outcomes]
            connection.execute(upsert(connection, record_state, ["entity", "outreach_id"]), state_rows)
            connection.execute(history.insert(), [
                history_row(o, previous.get(o.outreach_id), state, run_id, window, now)
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
                "field": c.field, "base_json": to_json({"value": c.base}) if c.had_base else None,
                "outreach_json": to_json(c.outreach_value), "workbooks_json": to_json(c.workbooks_value),
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
                    base=(from_json(row["base_json"]) or {}).get("value"),
                    outreach_value=from_json(row["outreach_json"]), workbooks_value=from_json(row["workbooks_json"]),
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
                    found[int(row["workbooks_id"])] = state_from_row(row)
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
            return [history_from_row(row) for row in connection.execute(query).mappings()]

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
                states[row["outreach_id"]] = state_from_row(row)
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


def _pending_key(relation: PendingRelation) -> tuple:
    return (relation.outreach_id, relation.field, relation.target_entity, relation.target_outreach_id)


def _now() -> datetime:
    return datetime.now(UTC)
