"""Ledger schema migrations on a real SQLite file and a real PostgreSQL database.

The legacy fixtures in ``legacy_ledger/`` were written by the ledger of commit 40a9bd2, before migrations
existed (see ``make_legacy_ledger.py``); ``expected.json`` is what that code read back from them.
"""

import json
import multiprocessing
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from outreach_pipeline.engine import migrations
from outreach_pipeline.engine.ledger import RecordOutcome, SyncLedger, SyncWindow, metadata
from outreach_pipeline.engine.ledger import _make_engine as make_engine
from outreach_pipeline.engine.ledger_failures import ToOutreachAttempt
from outreach_pipeline.engine.migrations import (
    BASELINE_TABLES,
    VERSION_TABLE,
    PartialLegacyLedgerError,
    UnknownLedgerRevisionError,
    UnmigratedTablesError,
    alembic_config,
    current_revision,
    head_revision,
    upgrade_to_head,
)

LEGACY = Path(__file__).parent / "legacy_ledger"
EXPECTED = json.loads((LEGACY / "expected.json").read_text(encoding="utf-8"))
ENTITIES = ("accounts", "prospects")
RUNS = [("run-1", "accounts"), ("run-1", "prospects"), ("run-2", "prospects"), ("run-3", "accounts")]
ROW_COUNTS = {"sync_record_state": 5, "sync_history": 8, "sync_pending_relation": 1, "sync_run": 4}
# A session zone far from UTC: what Postgres hands back must still come out of the ledger in UTC.
NEW_YORK = "options=-c%20timezone%3DAmerica%2FNew_York"


@pytest.fixture(params=["sqlite", "postgresql"])
def dialect(request) -> str:
    return request.param


@pytest.fixture
def empty_url(dialect: str, tmp_path: Path, request) -> str:
    if dialect == "sqlite":
        return f"sqlite:///{tmp_path / 'dagster_home' / 'sync_ledger.db'}"
    return request.getfixturevalue("postgres_database_url")


@pytest.fixture
def legacy_url(dialect: str, empty_url: str) -> str:
    """A database holding the ledger exactly as the pre-migration code left it."""
    dump = (LEGACY / f"{dialect}.sql").read_text(encoding="utf-8")
    if dialect == "sqlite":
        path = Path(sa.make_url(empty_url).database)
        path.parent.mkdir(parents=True)
        with sqlite3.connect(path) as connection:
            connection.executescript(dump)
        return empty_url
    engine = sa.create_engine(empty_url)
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cursor:
            cursor.execute(dump)
        raw.commit()
    finally:
        raw.close()
        engine.dispose()
    return f"{empty_url}?{NEW_YORK}"


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _row_counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as connection:
        return {name: connection.execute(sa.text(f"SELECT count(*) FROM {name}")).scalar_one() for name in ROW_COUNTS}


def _datetimes(value: Any) -> list[datetime]:
    if isinstance(value, datetime):
        return [value]
    if isinstance(value, str):  # plain text and str enums (Outcome) hold no datetime
        return []
    if isinstance(value, dict):
        return [moment for item in value.values() for moment in _datetimes(item)]
    if isinstance(value, list | tuple):
        return [moment for item in value for moment in _datetimes(item)]
    if hasattr(value, "__dict__"):
        return _datetimes(dict(value))
    return []


def _id(state: Any) -> int:
    return state.outreach_id


#: Fields revision 0004 added to states and history entries (checked on their own).
FAILURE_FIELDS = {"error_field", "error_kind", "first_failed_at", "fail_streak", "old"}


#: Fields later revisions added, None on every legacy row (checked below): 0008, the Workbooks lock_version.
LATER_FIELDS = {"workbooks_lock_version"}


def _legacy(model: Any) -> dict[str, Any]:
    """A state or history entry as the pre-migration code read it (without the fields of later revisions)."""
    return {key: value for key, value in model.model_dump(mode="json").items()
            if key not in FAILURE_FIELDS | LATER_FIELDS}


def test_legacy_ledger_upgrades_in_place_with_its_history_intact(dialect: str, legacy_url: str) -> None:
    assert _tables(legacy_url) >= BASELINE_TABLES
    assert VERSION_TABLE not in _tables(legacy_url)
    expected = EXPECTED[dialect]

    ledger = SyncLedger(legacy_url)
    assert current_revision(ledger.engine) == head_revision()
    assert _row_counts(ledger.engine) == ROW_COUNTS

    states = {entity: sorted(ledger.get_states(entity, range(20)).values(), key=_id) for entity in ENTITIES}
    history = {
        key: ledger.history(key.split("/")[0], int(key.split("/")[1])) for key in expected["history"]
    }
    runs = {f"{run_id}/{entity}": ledger.run_summary(run_id, entity) for run_id, entity in RUNS}
    pending = ledger.pending_relations()
    assert {e: [_legacy(s) for s in v] for e, v in states.items()} == {
        entity: sorted(rows, key=lambda row: row["outreach_id"]) for entity, rows in expected["states"].items()
    }
    assert {k: [_legacy(h) for h in v] for k, v in history.items()} == expected["history"]
    assert {s.workbooks_lock_version for v in states.values() for s in v} == {None}
    # Revision 0004: a record failing before the upgrade has a streak of 1 from its last recorded time.
    for state in (s for v in states.values() for s in v):
        failed = state.last_outcome == "failed"
        assert (state.fail_streak, state.first_failed_at) == ((1, state.recorded_at) if failed else (0, None))
    assert {k: v.model_dump(mode="json") for k, v in runs.items()} == expected["runs"]
    assert [p.model_dump(mode="json") for p in pending] == expected["pending"]
    assert {entity: ledger.failed_ids(entity) for entity in ENTITIES} == expected["failed_ids"]
    assert sum(len(entries) for entries in history.values()) == ROW_COUNTS["sync_history"]
    assert runs["run-2/prospects"].finished_at is None

    moments = _datetimes([states, history, runs])
    assert len(moments) > 40
    assert all(moment.tzinfo is UTC for moment in moments)
    # Stored at 12:15+02:00 by the old code: the upgraded ledger reads the same instant, in UTC.
    assert states["prospects"][0].outreach_id == 1
    assert history["prospects/1"][0].outreach_updated_at == datetime(2026, 11, 28, 10, 15, tzinfo=UTC)

    # The upgraded ledger keeps working: history ids continue after the legacy rows.
    window = SyncWindow(start=datetime(2026, 11, 29, 9, tzinfo=UTC), end=datetime(2026, 11, 29, 10, tzinfo=UTC))
    ledger.record_outcomes(
        "run-4",
        window,
        [RecordOutcome(entity="prospects", outreach_id=4, outcome="created", workbooks_id=9004,
                       outreach_updated_at=window.start, values={"person_name": "Cy"})],
    )
    assert [entry.run_id for entry in ledger.history("prospects", 4)] == ["run-2", "run-4"]
    assert ledger.failed_ids("prospects") == []
    ledger.dispose()

    reopened = SyncLedger(legacy_url)
    assert current_revision(reopened.engine) == head_revision()
    assert len(reopened.history("prospects", 1)) == 2
    reopened.dispose()


def _schema(url: str) -> dict[str, Any]:
    engine = sa.create_engine(url)
    try:
        inspector = sa.inspect(engine)
        return {
            table: {
                "columns": [
                    (c["name"], str(c["type"]), c["nullable"], str(c.get("default"))) for c in inspector.get_columns(table)
                ],
                "primary_key": inspector.get_pk_constraint(table),
                "indexes": sorted(
                    (i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in inspector.get_indexes(table)
                ),
            }
            for table in sorted(BASELINE_TABLES)
        }
    finally:
        engine.dispose()


def test_baseline_revision_is_exactly_the_legacy_schema(dialect: str, legacy_url: str, tmp_path: Path) -> None:
    if dialect == "sqlite":
        fresh_url = f"sqlite:///{tmp_path / 'fresh.db'}"
    else:
        fresh_url = sa.make_url(legacy_url).set(database=f"{sa.make_url(legacy_url).database}_fresh")
        fresh_url = fresh_url.set(query={}).render_as_string(hide_password=False)
        admin = sa.create_engine(sa.make_url(fresh_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{sa.make_url(fresh_url).database}"')
    engine = sa.create_engine(fresh_url)
    try:
        config = alembic_config()
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, migrations.BASELINE_REVISION)
        assert _schema(fresh_url) == _schema(legacy_url)
        if dialect == "sqlite":
            statements = (
                "SELECT type, name, sql FROM sqlite_master "
                f"WHERE name LIKE 'sync_%' AND name != '{VERSION_TABLE}' ORDER BY name"
            )
            with sqlite3.connect(sa.make_url(fresh_url).database) as fresh, sqlite3.connect(
                sa.make_url(legacy_url).database
            ) as legacy:
                assert fresh.execute(statements).fetchall() == legacy.execute(statements).fetchall()
    finally:
        engine.dispose()
        if dialect == "postgresql":
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE "{sa.make_url(fresh_url).database}" WITH (FORCE)')
            admin.dispose()


def test_new_ledger_is_created_at_head_matching_the_ledger_metadata(empty_url: str) -> None:
    ledger = SyncLedger(empty_url)
    assert current_revision(ledger.engine) == head_revision()
    with ledger.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection, opts={"compare_type": True, "version_table": VERSION_TABLE}), metadata)
    assert differences == []
    ledger.dispose()


_LATER_REVISION = '''
import sqlalchemy as sa
from alembic import op

revision = "9001"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("sync_run", sa.Column("note", sa.String(32), nullable=False, server_default="migrated"))
    {then}


def downgrade():
    op.drop_column("sync_run", "note")
'''


def _later_revision(directory: Path, then: str = "pass") -> Path:
    directory.mkdir()
    (directory / "9001_add_note.py").write_text(_LATER_REVISION.format(head=head_revision(), then=then))
    return directory


def test_legacy_ledger_is_stamped_then_runs_later_revisions(legacy_url: str, tmp_path: Path) -> None:
    # The ledger's own engine setup (BEGIN IMMEDIATE on SQLite), on the untouched pre-migration database (later
    # revisions also change the baseline tables, so an upgraded ledger cannot be turned back into one).
    engine = make_engine(legacy_url)
    assert VERSION_TABLE not in set(sa.inspect(engine).get_table_names())

    config = alembic_config(_later_revision(tmp_path / "later"))
    assert upgrade_to_head(engine, metadata, config) == "9001"
    assert current_revision(engine) == "9001"
    with engine.connect() as connection:
        notes = connection.execute(sa.text("SELECT run_id, note FROM sync_run ORDER BY run_id, entity")).all()
    assert notes == [("run-1", "migrated"), ("run-1", "migrated"), ("run-2", "migrated"), ("run-3", "migrated")]
    assert _row_counts(engine) == ROW_COUNTS
    engine.dispose()


def test_a_failing_revision_leaves_the_ledger_as_it_was(legacy_url: str, tmp_path: Path) -> None:
    engine = SyncLedger(legacy_url).engine
    config = alembic_config(_later_revision(tmp_path / "later", then='raise RuntimeError("revision broke")'))
    with pytest.raises(RuntimeError, match="revision broke"):
        upgrade_to_head(engine, metadata, config)
    assert current_revision(engine) == head_revision()
    assert "note" not in {column["name"] for column in sa.inspect(engine).get_columns("sync_run")}
    assert _row_counts(engine) == ROW_COUNTS
    engine.dispose()


def test_a_ledger_from_a_newer_release_is_refused_untouched(empty_url: str) -> None:
    SyncLedger(empty_url).dispose()
    engine = sa.create_engine(empty_url)
    with engine.begin() as connection:
        connection.exec_driver_sql(f"UPDATE {VERSION_TABLE} SET version_num = 'f00d'")
    engine.dispose()
    with pytest.raises(UnknownLedgerRevisionError) as raised:
        SyncLedger(empty_url)
    assert (raised.value.revision, raised.value.head) == ("f00d", head_revision())
    assert "f00d" in str(raised.value)
    engine = sa.create_engine(empty_url)
    assert current_revision(engine) == "f00d"
    engine.dispose()


def test_a_pre_migration_ledger_missing_tables_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'partial.db'}"
    engine = sa.create_engine(url)
    metadata.tables["sync_run"].create(engine)
    engine.dispose()
    with pytest.raises(PartialLegacyLedgerError) as raised:
        SyncLedger(url)
    assert raised.value.missing == ["sync_history", "sync_pending_relation", "sync_record_state"]
    assert _tables(url) == {"sync_run"}


def _open(url: str, start: Any, results: Any) -> None:
    # The barrier releases every process at once, after each has paid for its imports.
    start.wait(120)
    try:
        ledger = SyncLedger(url)
        results.put(("ok", current_revision(ledger.engine)))
        ledger.dispose()
    except BaseException as exc:  # reported to the parent, which asserts on it
        results.put(("error", f"{type(exc).__name__}: {exc}"))


def test_processes_opening_a_new_ledger_at_once_all_succeed(empty_url: str) -> None:
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(4), context.Queue()
    processes = [context.Process(target=_open, args=(empty_url, start, results)) for _ in range(4)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(30)
    assert outcomes == [("ok", head_revision())] * len(processes)
    engine = sa.create_engine(empty_url)
    with engine.connect() as connection:
        assert connection.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all() == [
            head_revision()
        ]
    engine.dispose()


def test_a_table_no_revision_creates_is_refused(tmp_path: Path) -> None:
    ledger = SyncLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    extended = sa.MetaData()
    for table in metadata.tables.values():
        table.to_metadata(extended)
    sa.Table("sync_unmigrated_example", extended, sa.Column("entity", sa.String(64), primary_key=True))
    with pytest.raises(UnmigratedTablesError) as raised:
        upgrade_to_head(ledger.engine, extended)
    assert raised.value.tables == ["sync_unmigrated_example"]
    ledger.dispose()


def test_a_ledger_sharing_a_database_with_dagster_storage_keeps_both_histories(postgres_database_url: str) -> None:
    """Dagster's Postgres storage keeps its own Alembic revision in ``alembic_version`` in the same database."""
    from dagster_postgres import PostgresRunStorage

    dagster_url = postgres_database_url
    PostgresRunStorage(postgres_url=dagster_url).dispose()
    engine = sa.create_engine(postgres_database_url)
    with engine.connect() as connection:
        dagster_revision = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one()
    engine.dispose()

    ledger = SyncLedger(postgres_database_url)
    assert current_revision(ledger.engine) == head_revision()
    with ledger.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one() == dagster_revision
    ledger.dispose()
    storage = PostgresRunStorage(postgres_url=dagster_url)  # Dagster still finds its schema current
    assert storage.get_runs() == []
    storage.dispose()


def test_0004_upgrades_a_0003_ledger_with_rows_and_failures_become_data(empty_url: str) -> None:
    """A ledger at 0003 holding a failed, a created and a history row: upgraded in place, then counted."""
    engine = make_engine(empty_url)
    try:
        config = alembic_config()
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0003")
        failed_at = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)
        with engine.begin() as connection:
            for outreach_id, outcome in ((1, "failed"), (2, "created")):
                connection.execute(sa.text(
                    "INSERT INTO sync_record_state (entity, outreach_id, last_outcome, last_error, last_run_id, "
                    "needs_retry, recorded_at) VALUES ('prospects', :id, :outcome, :error, 'old-run', :retry, :at)"
                ), {"id": outreach_id, "outcome": outcome, "error": "bad email" if outcome == "failed" else None,
                    "retry": outcome == "failed", "at": failed_at})
            connection.execute(sa.text(
                "INSERT INTO sync_history (run_id, entity, outreach_id, outcome, error, recorded_at) "
                "VALUES ('old-run', 'prospects', 1, 'failed', 'bad email', :at)"
            ), {"at": failed_at})
        assert current_revision(engine) == "0003"
    finally:
        engine.dispose()

    ledger = SyncLedger(empty_url)
    try:
        assert current_revision(ledger.engine) == head_revision()
        states = ledger.get_states("prospects", [1, 2])
        assert (states[1].fail_streak, states[1].first_failed_at) == (1, failed_at)
        assert (states[2].fail_streak, states[2].first_failed_at) == (0, None)
        (old,) = ledger.failures(run_id="old-run")
        assert (old.outreach_id, old.message, old.streak, old.kind) == (1, "bad email", 1, None)
        # The upgraded ledger counts on: a second failure makes a streak of 2 from the same first failure.
        window = SyncWindow(start=datetime(2026, 11, 29, 9, tzinfo=UTC), end=datetime(2026, 11, 29, 12, tzinfo=UTC))
        ledger.record_outcomes("new-run", window, [RecordOutcome(
            entity="prospects", outreach_id=1, outcome="failed", error="still bad", error_field="email",
            error_kind="required", window_start=datetime(2026, 11, 29, 10, tzinfo=UTC))])
        (now,) = ledger.failures(run_id="new-run")
        assert (now.streak, now.first_failed_at, now.field, now.kind) == (2, failed_at, "email", "required")
        assert now.window_start == datetime(2026, 11, 29, 10, tzinfo=UTC)
        assert [f.outreach_id for f in ledger.stuck_records(2)] == [1]
    finally:
        ledger.dispose()


def test_0005_adds_the_workbooks_to_outreach_failure_tables_to_a_0004_ledger(empty_url: str) -> None:
    """A ledger at 0004 holding an Outreach -> Workbooks failure: upgraded in place, that failure untouched, and
    Workbooks -> Outreach failures recorded by Workbooks id from then on."""
    engine = make_engine(empty_url)
    try:
        config = alembic_config()
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0004")
        failed_at = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)
        with engine.begin() as connection:
            connection.execute(sa.text(
                "INSERT INTO sync_record_state (entity, outreach_id, last_outcome, last_error, last_run_id, "
                "needs_retry, recorded_at, fail_streak, first_failed_at) "
                "VALUES ('prospects', 1, 'failed', 'bad email', 'old-run', :retry, :at, 2, :at)"
            ), {"retry": True, "at": failed_at})
        assert current_revision(engine) == "0004"
        assert "sync_to_outreach_state" not in set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()

    ledger = SyncLedger(empty_url)
    try:
        assert current_revision(ledger.engine) == head_revision()
        assert {"sync_to_outreach_state", "sync_to_outreach_failure"} <= set(sa.inspect(ledger.engine).get_table_names())
        (old,) = ledger.failures()
        assert (old.direction, old.outreach_id, old.streak) == ("to_workbooks", 1, 2)
        ledger.record_to_outreach("new-run", [ToOutreachAttempt(
            entity="prospects", workbooks_id=9001, outcome="failed", error="Outreach refused the write",
            error_field="person_job_title", error_kind="refused_by_outreach",
            window_start=datetime(2026, 11, 29, 10, tzinfo=UTC))])
        (refused,) = ledger.failures(run_id="new-run")
        assert (refused.direction, refused.outreach_id, refused.workbooks_id, refused.streak) == (
            "to_outreach", None, 9001, 1)
        assert {f.direction for f in ledger.failures()} == {"to_workbooks", "to_outreach"}
    finally:
        ledger.dispose()


def test_0006_adds_the_webhook_hint_tables_to_a_0005_ledger(empty_url: str) -> None:
    engine = make_engine(empty_url)
    try:
        config = alembic_config()
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0005")
        assert "sync_webhook_hint" not in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()
    ledger = SyncLedger(empty_url)
    try:
        assert current_revision(ledger.engine) == head_revision()
        tables = set(sa.inspect(ledger.engine).get_table_names())
        assert {"sync_webhook_hint", "sync_webhook_listening"} <= tables
    finally:
        ledger.dispose()
