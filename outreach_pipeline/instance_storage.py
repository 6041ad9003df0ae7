"""The profiles' Dagster storage: Dagster's SQLite (sandbox) and Postgres (production) storage, with batched
event writes.

Why: a ranged run reports one materialization per asset per window, one "planned" event per asset per window
when it starts, and one check evaluation per partitioned check per window (about 90 events a window for this
job's ~40 asset keys and 11 checks). Dagster's SQLite event log stores each event in its own two or three
transactions (the run's database, the cross-run index, a check's execution row), each on a new connection;
dagster-postgres opens a new connection per event too. So a quiet 30-day backfill spent most of its time
opening, committing and closing connections. Dagster batches materializations and planned events when
`DAGSTER_EVENT_BATCH_SIZE` is set (`EVENT_BATCH_SIZE` below; dagster-postgres writes a batch of
materializations in one statement), but the SQLite event log's `store_event_batch` is a loop over
`store_event`, and neither batches check evaluations.

Rules:
* `BatchingSqliteStorage` is `DagsterSqliteStorage` (same files under the same `base_dir`, so an instance
  keeps its history when it switches) whose event log writes a batch in one transaction per database: the
  run's rows in one, the index rows (asset events, asset-key entries, event tags, check rows) in the other.
  Each event is stored as `SqliteEventLogStorage.store_event` stores it, in the same order; only the
  transactions differ.
* `BatchingPostgresStorage` is `DagsterPostgresStorage` (same database, same tables) whose event log stores
  a batch of planned events (materializations and checks) in one transaction (it already writes a batch of
  materializations in one statement), and held check evaluations (below) in one transaction.
* Whether a table exists is asked of the database once per table that exists (Dagster asks before each asset
  check row, on a new connection); a missing table is asked again, so a migration is still seen.
* Only the event types Dagster batches (`BATCH_WRITABLE_EVENTS`) arrive in `store_event_batch`; a batch that
  fails is stored again event by event by Dagster itself.
* A run's check evaluations, which Dagster does not batch (a partitioned check reports one per window: the
  loads' checks made ~15,000 of the 15,800 SQLite commits of a quiet 30-day backfill), are held by the event
  log until the next other event it is given (the step's output, success or failure always follows them, from
  the same process), a full batch (`EVENT_BATCH_SIZE`), or `dispose`, then stored as a batch: their event
  rows, their index mirrors and their check execution rows (through Dagster's own method, on the batch's
  connection). They are stored before that next event, in their order. A process killed between an
  evaluation and its step's next event loses the evaluation; the run then fails, and Dagster shows the check
  as not executed. Runless evaluations (no run id) are stored at once.
* `use_event_batches()` sets `DAGSTER_EVENT_BATCH_SIZE` for this process unless it is set already; the code
  location calls it, so every run worker and `execute_in_process` batches.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from dagster._core.events import ASSET_CHECK_EVENTS, ASSET_EVENTS, DagsterEventType
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log import SqliteEventLogStorage
from dagster._core.storage.event_log.schema import SqlEventLogStorageTable
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage, _event_logs_directory
from dagster._serdes import ConfigurableClassData
from dagster_postgres import DagsterPostgresStorage, PostgresEventLogStorage
from dagster_postgres.utils import get_token_provider_from_config, pg_url_from_config
from sqlalchemy.engine import Connection

if TYPE_CHECKING:
    from dagster_postgres.auth import PgTokenProvider

#: Events per batch: one step's materializations of one asset over a 30-day range (720) fit in one.
EVENT_BATCH_SIZE = 1000
EVENT_BATCH_VARIABLE = "DAGSTER_EVENT_BATCH_SIZE"


def use_event_batches(environ: os._Environ[str] | dict[str, str] = os.environ) -> None:
    """Let Dagster store a ranged run's per-window events in batches (unless the environment says otherwise)."""
    environ.setdefault(EVENT_BATCH_VARIABLE, str(EVENT_BATCH_SIZE))


class BatchingEventLog:
    """Event log behaviour shared by both storages, mixed in before Dagster's event log class: a run's check
    evaluations held until the next other event, then stored as one batch by `_store_checks` (each storage's own);
    the asset and check entries of stored events written on one connection; table existence asked once."""

    def _hold_checks(self) -> None:
        # Called before the event log's own __init__, which may already open the index.
        self._pending_checks: list[EventLogEntry] = []
        self._pending_lock = threading.Lock()
        self._shared_index = threading.local()

    def has_table(self, table_name: str) -> bool:
        # Dagster asks before every asset check row and every tagged asset event, each time on a new
        # connection; a table that exists stays (migrations add tables, wiping keeps them).
        known: set[str] = self.__dict__.setdefault("_tables_seen", set())
        if table_name not in known and super().has_table(table_name):  # type: ignore[misc]
            known.add(table_name)
        return table_name in known

    def store_event(self, event: EventLogEntry) -> None:
        if _deferrable(event):
            with self._pending_lock:
                self._pending_checks.append(event)
                full = len(self._pending_checks) >= EVENT_BATCH_SIZE
            if full:
                self.store_pending_checks()
            return
        self.store_pending_checks()
        super().store_event(event)  # type: ignore[misc]

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        self.store_pending_checks()
        super().store_event_batch(events)  # type: ignore[misc]

    def store_pending_checks(self) -> None:
        """Store the check evaluations held so far."""
        with self._pending_lock:
            pending, self._pending_checks = self._pending_checks, []
        if pending:
            self._store_checks(pending)

    def dispose(self) -> None:
        self.store_pending_checks()
        super().dispose()  # type: ignore[misc]

    def _store_checks(self, events: list[EventLogEntry]) -> None:
        raise NotImplementedError

    @contextmanager
    def index_connection(self) -> Iterator[Connection]:
        shared = getattr(self._shared_index, "conn", None)
        if shared is not None:  # inside `_sharing_index` on this thread: Dagster's own calls join its transaction
            yield shared
            return
        with super().index_connection() as conn:  # type: ignore[misc]
            yield conn

    @contextmanager
    def _sharing_index(self, conn: Connection) -> Iterator[Connection]:
        """While open, `index_connection` on this thread yields `conn` (in its transaction)."""
        self._shared_index.conn = conn
        try:
            yield conn
        finally:
            self._shared_index.conn = None

    def _store_asset_entries(self, conn: Connection, events: Sequence[EventLogEntry], event_ids: Sequence[int]) -> None:
        """On `conn`, what `store_event` stores for each stored asset event: its tags and its asset's entry."""
        self._store_asset_event_tags(conn, events, event_ids)  # type: ignore[attr-defined]
        # Each event would overwrite its asset's entry in turn: the last one per asset is what stays.
        last = {event.get_dagster_event().asset_key: (event, event_id)
                for event, event_id in zip(events, event_ids, strict=True)}
        for event, event_id in last.values():
            self._store_asset_event(conn, event, event_id)  # type: ignore[attr-defined]

    def _store_check_entries(self, conn: Connection, events: Sequence[EventLogEntry], event_ids: Sequence[int]) -> None:
        """On `conn`, each stored check event's execution row (Dagster's own method, joining `conn`'s transaction)."""
        with self._sharing_index(conn):
            for event, event_id in zip(events, event_ids, strict=True):
                self.store_asset_check_event(event, event_id)  # type: ignore[attr-defined]


class BatchingSqliteEventLogStorage(BatchingEventLog, SqliteEventLogStorage):
    """`SqliteEventLogStorage` that writes a batch of events in one transaction per database."""

    def __init__(self, base_dir: str, inst_data: ConfigurableClassData | None = None) -> None:
        self._hold_checks()
        super().__init__(base_dir, inst_data=inst_data)

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        self.store_pending_checks()
        self._store_batch(events)

    def _store_checks(self, events: list[EventLogEntry]) -> None:
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
            with self.index_transaction() as conn:
                self._store_asset_entries(conn, [events[i] for i in assets],
                                          _insert_returning_ids(conn, [rows[i] for i in assets]))
        if checks and self.supports_asset_checks:  # asked first: SQLite answers on a connection of its own
            # The events mirrored and each check's execution row, in one transaction.
            with SqliteEventLogStorage.index_connection(self) as conn:
                self._store_check_entries(conn, [events[i] for i in checks],
                                          _insert_returning_ids(conn, [rows[i] for i in checks]))


class BatchingPostgresEventLogStorage(BatchingEventLog, PostgresEventLogStorage):
    """`PostgresEventLogStorage` that stores a batch of planned events, and held check evaluations, in one
    transaction (dagster-postgres writes a batch of materializations in one statement, but planned events one
    by one: two connections each)."""

    def __init__(self, postgres_url: str, should_autocreate_tables: bool = True,
                 inst_data: ConfigurableClassData | None = None, token_provider: PgTokenProvider | None = None) -> None:
        self._hold_checks()
        super().__init__(postgres_url, should_autocreate_tables, inst_data=inst_data, token_provider=token_provider)

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        self.store_pending_checks()
        if not events or not {event.dagster_event_type for event in events} <= _PLANNED:
            super().store_event_batch(events)
            return
        # As `store_event` stores each (the event's row; an asset's tags and entry; a check's planned row), in one
        # transaction. A run's planned batch holds both kinds, each step's checks after its assets.
        with PostgresEventLogStorage.index_transaction(self) as conn:
            stored = list(zip(events, _insert_returning_ids(conn, [self._event_to_row(event) for event in events]),
                              strict=True))
            for kinds, store in ((ASSET_EVENTS, self._store_asset_entries), (ASSET_CHECK_EVENTS, self._store_check_entries)):
                of_kind = [(event, event_id) for event, event_id in stored if event.dagster_event_type in kinds]
                store(conn, [event for event, _ in of_kind], [event_id for _, event_id in of_kind])

    def _store_checks(self, events: list[EventLogEntry]) -> None:
        events = [event for event in events if event.is_dagster_event]
        if not events:
            return
        # One table holds every run's events on Postgres: the rows and the check rows in one transaction.
        with PostgresEventLogStorage.index_transaction(self) as conn:
            self._store_check_entries(conn, events,
                                      _insert_returning_ids(conn, [self._event_to_row(event) for event in events]))


#: The events Dagster stores when a run starts, in batches: planned materializations and planned checks.
_PLANNED = {DagsterEventType.ASSET_MATERIALIZATION_PLANNED, DagsterEventType.ASSET_CHECK_EVALUATION_PLANNED}


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


class BatchingPostgresStorage(DagsterPostgresStorage):
    """Dagster's Postgres storage (dagster-postgres' config: `postgres_url` or `postgres_db`, its token provider)
    with `BatchingPostgresEventLogStorage` as its event log.

    In dagster.yaml: ``storage: {custom: {module: outreach_pipeline.instance_storage, class:
    BatchingPostgresStorage, config: {postgres_url: {env: DAGSTER_PG_URL}}}}``.
    """

    def __init__(self, postgres_url: str, should_autocreate_tables: bool = True,
                 inst_data: ConfigurableClassData | None = None, token_provider: PgTokenProvider | None = None) -> None:
        super().__init__(postgres_url, should_autocreate_tables, inst_data=inst_data, token_provider=token_provider)
        self._event_log_storage.dispose()  # Dagster's own, replaced before first use
        self._event_log_storage = BatchingPostgresEventLogStorage(postgres_url, should_autocreate_tables,
                                                                  token_provider=token_provider)

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None,  # type: ignore[override]
                          config_value: Mapping[str, Any]) -> BatchingPostgresStorage:
        return cls(inst_data=inst_data, postgres_url=pg_url_from_config(config_value),  # type: ignore[arg-type]
                   should_autocreate_tables=config_value.get("should_autocreate_tables", True),
                   token_provider=get_token_provider_from_config(config_value))  # type: ignore[arg-type]
