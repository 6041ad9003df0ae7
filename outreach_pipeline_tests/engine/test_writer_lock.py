"""The writer lock on a real SQLite file and a real PostgreSQL server, held by real processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from outreach_pipeline.engine.ledger import SyncLedger, writer_lock
from outreach_pipeline.engine.writer_lock import LockPolicy, LockSettings, WriterLockBusy, hold_writer_lock

FAIL_FAST = LockSettings(policy=LockPolicy.FAIL_FAST)
HOLDER_SCRIPT = """
import sys, time
from outreach_pipeline.engine.ledger import SyncLedger
from outreach_pipeline.engine.writer_lock import hold_writer_lock
ledger = SyncLedger(sys.argv[1])
with hold_writer_lock(ledger.engine, target="workbooks", entity="people", run_id="holder-run"):
    print("held", flush=True)
    time.sleep(600)
"""


def _holder_process(url: str) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-c", HOLDER_SCRIPT, url], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process


@pytest.fixture(params=["sqlite", "postgres"])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    return request.getfixturevalue("postgres_database_url")


def test_a_second_writer_is_refused_or_waits_naming_the_holder_and_a_killed_holder_frees_the_lock(
    ledger_url: str,
) -> None:
    ledger = SyncLedger(ledger_url)
    holder = _holder_process(ledger_url)
    try:
        with pytest.raises(WriterLockBusy) as refused, hold_writer_lock(
            ledger.engine, target="workbooks", entity="people", run_id="second", settings=FAIL_FAST
        ):
            pytest.fail("two writers held workbooks/people at once")
        assert refused.value.holder is not None and refused.value.holder.run_id == "holder-run"
        assert f"pid {holder.pid}" in str(refused.value)
        messages: list[str] = []
        started = time.monotonic()
        with pytest.raises(WriterLockBusy), hold_writer_lock(
            ledger.engine, target="workbooks", entity="people", run_id="second",
            settings=LockSettings(max_wait=1.5, poll_seconds=0.2), on_wait=messages.append,
        ):
            pytest.fail("the wait should have run out")
        assert time.monotonic() - started >= 1.5
        assert messages and "held by run holder-run" in messages[0]
        # Another entity is another lock.
        with hold_writer_lock(ledger.engine, target="workbooks", entity="organisations", run_id="second",
                              settings=FAIL_FAST):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    # SIGKILL: no release ran. Postgres ends the session; SQLite sees the holder's pid gone from this host.
    with hold_writer_lock(ledger.engine, target="workbooks", entity="people", run_id="third",
                          settings=LockSettings(max_wait=20, poll_seconds=0.2)) as me:
        assert me.run_id == "third"
    ledger.dispose()


def test_sqlite_lease_another_hosts_holder_is_waited_for_until_its_heartbeat_expires(tmp_path: Path) -> None:
    ledger = SyncLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    now = datetime.now(UTC)
    row = {"target": "workbooks", "entity": "people", "token": "t", "run_id": "elsewhere", "pid": os.getpid(),
           "host": f"not-{socket.gethostname()}", "acquired_at": now, "heartbeat_at": now, "lease_seconds": 60.0}
    with ledger.engine.begin() as connection:
        connection.execute(writer_lock.insert().values(row))
    with pytest.raises(WriterLockBusy), hold_writer_lock(ledger.engine, target="workbooks", entity="people",
                                                         run_id="mine", settings=FAIL_FAST):
        pass
    with ledger.engine.begin() as connection:
        connection.execute(writer_lock.update().values(heartbeat_at=now - timedelta(seconds=61)))
    with (
        hold_writer_lock(ledger.engine, target="workbooks", entity="people", run_id="mine", settings=FAIL_FAST),
        ledger.engine.connect() as connection,
    ):
        assert connection.execute(sa.select(writer_lock.c.run_id)).scalar_one() == "mine"
    with ledger.engine.connect() as connection:  # released: the row is gone
        assert connection.execute(sa.select(sa.func.count()).select_from(writer_lock)).scalar_one() == 0
    ledger.dispose()
