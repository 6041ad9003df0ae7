"""Suite-wide rules and the real PostgreSQL the ledger and instance tests use."""

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

#: Where the tests' scratch files go when TMPDIR is not set: memory, where the machine has a tmpfs there.
SCRATCH_IN_MEMORY = Path("/dev/shm")


def _scratch_in_memory() -> None:
    """Dagster instances, ledgers and window files of the tests are thrown away at the end, yet on a disk every
    SQLite commit waits for fsync (about 5 ms here, against 0.1 ms in memory) and a run commits hundreds of
    events. Put them in memory, for this process and the CLI and daemon subprocesses the tests start. A crash
    of a process loses nothing more there than on a disk: only a machine crash would, and that ends the test."""
    if "TMPDIR" in os.environ or not SCRATCH_IN_MEMORY.is_dir() or not os.access(SCRATCH_IN_MEMORY, os.W_OK):
        return
    os.environ["TMPDIR"] = str(SCRATCH_IN_MEMORY)
    tempfile.tempdir = None  # gettempdir() reads TMPDIR again


_scratch_in_memory()

@pytest.fixture(autouse=True)
def _no_definitions_state_storage_from_an_earlier_test() -> Iterator[None]:
    """Each test starts without a "current" definitions-state storage. Entering a Dagster instance makes its
    storage current (a context variable) until the instance is left; one left set by an earlier test in the
    same worker, whose instance is gone, made `dg.materialize` fail at definition load ("undefined DagsterInstance
    weakref") in whichever test the worker ran next."""
    from dagster._core.storage.defs_state.base import set_defs_state_storage

    with set_defs_state_storage(None):
        yield


#: The server the Postgres tests create throwaway databases on (trust auth by default, as on CI).
POSTGRES_SERVER = os.environ.get("OUTREACH_PIPELINE_TEST_POSTGRES", "postgresql+psycopg2://postgres@127.0.0.1:5432")


@pytest.fixture
def postgres_database_url() -> Iterator[str]:
    """A new, empty database on the real server (dropped afterwards), as a psycopg2 SQLAlchemy URL."""
    name = f"outreach_pipeline_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(f"{POSTGRES_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
            # A throwaway database need not wait for its WAL to reach the disk at each commit; a server crash
            # could lose its last commits, never corrupt it. The server's other databases are untouched.
            connection.exec_driver_sql(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
        yield f"{POSTGRES_SERVER}/{name}"
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


#: Test files that take minutes (whole-day syncs, subprocess syncs with slow faults), longest first as measured
#: by `make test`'s durations. The suite runs a file per xdist worker; starting these first keeps one of them
#: from running alone at the end while the other workers sit idle.
LONGEST_FILES = (
    "pipeline/test_faults_recovery.py",
    "pipeline/test_window_order.py",
    "pipeline/test_backfill_acceptance.py",
    "pipeline/test_engagement.py",
    # Mostly waiting (slow sandbox answers): one test per file so they wait on different workers.
    "cli/test_crash_recovery.py",
    "cli/test_exit_codes.py",
    "cli/test_one_writer_sqlite.py",
    "cli/test_one_writer_postgres.py",
    "cli/test_end_to_end_cli.py",
    "pipeline/test_rate_budget.py",
    "browser/test_ui_backfill.py",
    "cli/test_dev_stops_whole.py",
    "pipeline/test_celery_scaleout.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest files first, in LONGEST_FILES order; every other test after them, in collection order."""
    rank = {name: position for position, name in enumerate(LONGEST_FILES)}

    suite = Path(__file__).parent

    def position(item: pytest.Item) -> int:
        if not item.path.is_relative_to(suite):  # a test outside the suite (the CI guard's own cases)
            return len(LONGEST_FILES)
        return rank.get(item.path.relative_to(suite).as_posix(), len(LONGEST_FILES))

    items.sort(key=position)  # stable: collection order within a file and among the rest


#: Outcomes that must not pass quietly under CI: a test that did not run, or whose result was declared wrong
#: in advance (xfail) or unexpectedly right (xpass), says nothing about the code.
NOT_RUN_OUTCOMES = ("skipped", "xfailed", "xpassed")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI a skipped, xfailed or xpassed test is a failure: none may be counted as a pass there."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if not os.environ.get("CI") or reporter is None or exitstatus != 0:
        return
    counts = {outcome: len(reporter.stats.get(outcome, [])) for outcome in NOT_RUN_OUTCOMES}
    if any(counts.values()):
        found = ", ".join(f"{count} {outcome}" for outcome, count in counts.items() if count)
        reporter.write_line(f"{found} under CI=true: failing the run", red=True)
        session.exitstatus = 1
