"""The sandbox profile's Dagster storage: Dagster's SQLite storage, with batched event writes.

Why: a ranged run reports one materialization per asset per window, and one "planned" event per asset per
window when it starts (about 80 events a window for this job's ~40 asset keys). Dagster's SQLite event log
stores each event in its own two transactions (the run's database, then the cross-run index), each on a new
connection, so a quiet 30-day backfill spent most of its time opening, committing and closing SQLite files.
Dagster batches those events when `DAGSTER_EVENT_BATCH_SIZE` is set (`EVENT_BATCH_SIZE` below; dagster-postgres
writes a batch in one statement), but the SQLite event log's `store_event_batch` is a loop over `store_event`.

Rules:
* `BatchingSqliteStorage` is `DagsterSqliteStorage` (same files under the same `base_dir`, so an instance
  keeps its history when it switches) whose event log writes a batch in one transaction per database: the
  run's rows in one, the index rows (asset events, asset-key entries, event tags) in the other. Each event
  is stored as `SqliteEventLogStorage.store_event` stores it, in the same order; only the transactions differ.
* Whether a table exists is asked of SQLite once per table that exists (Dagster asks before each asset
  check row, on a new connection); a missing table is asked again, so a migration is still seen.
* Only the event types Dagster batches (`BATCH_WRITABLE_EVENTS`) arrive here; a batch that fails is stored
  again event by event by Dagster itself.
* A run's check evaluations, which Dagster does not batch (a partitioned check reports one per window: seven
  loads' checks made ~15,000 of the 15,800 commits of a quiet 30-day backfill), are held by the storage until
  the next other event it is given (the step's output, success or failure always follows them, from the same
  process), a full batch, or `dispose`, then stored as a batch: the run's rows in one transaction, their
  mirrors in the index and their check execution rows (through Dagster's own method, on the same connection)
  in another. They are stored before that next event, in their order. A process killed between an
  evaluation and its step's next event loses the evaluation; the run then fails, and Dagster shows the check
  as not executed. Runless evaluations (no run id) are stored at once.
* `use_event_batches()` sets `DAGSTER_EVENT_BATCH_SIZE` for this process unless it is set already; the code
  location calls it, so every run worker and `execute_in_process` batches (Postgres instances too).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from dagster._core.events import ASSET_CHECK_EVENTS, ASSET_EVENTS, DagsterEventType
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._core.storage.event_log.schema import SqlEventLogStorageTable
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage, _event_logs_directory
from dagster._serdes import ConfigurableClassData
from sqlalchemy.engine import Connection

#: Events per batch: one step's materializations of one asset over a 30-day range (720) fit in one.
EVENT_BATCH_SIZE = 1000
EVENT_BATCH_VARIABLE = "DAGSTER_EVENT_BATCH_SIZE"


def use_event_batches(environ: os._Environ[str] | dict[str, str] = os.environ) -> None:
    """Let Dagster store a ranged run's per-window events in batches (unless the environment says otherwise)."""
    environ.setdefault(EVENT_BATCH_VARIABLE, str(EVENT_BATCH_SIZE))


class BatchingSqliteEventLogStorage(SqliteEventLogStorage):
    """`SqliteEventLogStorage` that writes a batch of events in one transaction per database."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        self._pending_checks: list[EventLogEntry] = []
        self._pending_lock = threading.Lock()
        self._shared_index = threading.local()
        super().__init__(base_dir, inst_data=inst_data)  # opens the index, through `index_connection`

    # ---- check evaluations: held until the next other event, then stored as one batch

    def store_event(self, event: EventLogEntry) -> None:
        if _deferrable(event):
            with self._pending_lock:
                self._pending_checks.append(event)
                full = len(self._pending_checks) >= EVENT_BATCH_SIZE
            if full:
                self.store_pending_checks()
            return
        self.store_pending_checks()
        super().store_event(event)

    def store_pending_checks(self) -> None:
        """Store the check evaluations held so far (each run's in one transaction per database)."""
        with self._pending_lock:
            pending, self._pending_checks = self._pending_checks, []
        if pending:
            self._store_batch(pending)

    def dispose(self) -> None:
        self.store_pending_checks()
        super().dispose()

    @contextmanager
    def index_connection(self) -> Iterator[Connection]:
        shared = getattr(self._shared_index, "conn", None)
        if shared is not None:  # inside `_one_index_transaction` on this thread: Dagster's own calls join it
            yield shared
            return
        with super().index_connection() as conn:
            yield conn

    @contextmanager
    def _one_index_transaction(self) -> Iterator[Connection]:
        with super().index_connection() as conn:
            self._shared_index.conn = conn
            try:
                yield conn
            finally:
                self._shared_index.conn = None

    def has_table(self, table_name: str) -> bool:
        # Dagster asks before every asset check row and every tagged asset event, each time on a new
        # connection; a table that exists stays (migrations add tables, wiping keeps them).
        known: set[str] = self.__dict__.setdefault("_tables_seen", set())
        if table_name not in known and super().has_table(table_name):
            known.add(table_name)
        return table_name in known

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        self.store_pending_checks()
        self._store_batch(events)

    def _store_batch(self, events: Sequence[EventLogEntry]) -> None:
        events = [event for event in events if event.is_dagster_event]
        if not events:
            return
        for run_id in dict.fromkeys(event.run_id for event in events):
            self._store_run_batch(run_id, [event for event in events if event.run_id == run_id])

    def _store_run_batch(self, run_id: str, events: list[EventLogEntry]) -> None:
        rows = [self._event_to_row(event) for event in events]  # each event serialized once for both databases
        with self.run_connection(run_id) as conn:
            conn.execute(SqlEventLogStorageTable.insert(), rows)
        assets = [i for i, event in enumerate(events) if event.dagster_event_type in ASSET_EVENTS]
        checks = [i for i, event in enumerate(events) if event.dagster_event_type in ASSET_CHECK_EVENTS]
        if assets:
            # The cross-run index: the events mirrored, their tags, and each asset's entry, in one transaction.
            asset_events = [events[i] for i in assets]
            with self.index_transaction() as conn:
                event_ids = _insert_returning_ids(conn, [rows[i] for i in assets])
                self._store_asset_event_tags(conn, asset_events, event_ids)
                # Each event would overwrite its asset's entry in turn: the last one per asset is what stays.
                last = {event.get_dagster_event().asset_key: (event, event_id)
                        for event, event_id in zip(asset_events, event_ids, strict=True)}
                for event, event_id in last.values():
                    self._store_asset_event(conn, event, event_id)
        if checks and self.supports_asset_checks:  # asked first: SQLite answers on a connection of its own
            # The events mirrored and each check's execution row, in one transaction: Dagster's own method
            # stores the rows, on this transaction's connection.
            with self._one_index_transaction() as conn:
                check_ids = _insert_returning_ids(conn, [rows[i] for i in checks])
                for i, event_id in zip(checks, check_ids, strict=True):
                    self.store_asset_check_event(events[i], event_id)


def _deferrable(event: EventLogEntry) -> bool:
    """A run's check evaluation: nothing waits on it being stored before the step's next event."""
    return bool(event.run_id) and event.dagster_event_type == DagsterEventType.ASSET_CHECK_EVALUATION


def _insert_returning_ids(conn: Connection, rows: list[dict[str, Any]]) -> list[int]:
    """Insert event rows in one statement; their new ids in the same order (ids grow in insertion order)."""
    statement = SqlEventLogStorageTable.insert().values(rows).returning(SqlEventLogStorageTable.c.id)
    return sorted(int(row[0]) for row in conn.execute(statement))


class BatchingSqliteStorage(DagsterSqliteStorage):
    """Dagster's SQLite storage under `base_dir` with `BatchingSqliteEventLogStorage` as its event log.

    In dagster.yaml: ``storage: {custom: {module: outreach_pipeline.instance_storage, class:
    BatchingSqliteStorage, config: {base_dir: {env: DAGSTER_HOME}}}}``.
    """

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        super().__init__(base_dir, inst_data=inst_data)
        self._event_log_storage = BatchingSqliteEventLogStorage(_event_logs_directory(base_dir))

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]) -> BatchingSqliteStorage:
        return cls(inst_data=inst_data, **config_value)
