"""Suite-wide rules and the real PostgreSQL the ledger and instance tests use."""

import os
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

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
        yield f"{POSTGRES_SERVER}/{name}"
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


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
