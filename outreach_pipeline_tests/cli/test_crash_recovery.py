"""Crash recovery without hands, through the commands with real processes: a `sync` killed mid-load is
recovered by the next `sync`.

Each test starts its own `outreach-pipeline sandbox up` process (faults where a test needs a long or failing
load) and runs `outreach-pipeline sync` as subprocesses on temporary DAGSTER_HOMEs.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import sqlalchemy as sa

from outreach_pipeline_tests.cli.sync_processes import (
    finish,
    ledger_scalar,
    people_per_outreach_id,
    sandbox_process,
    set_faults,
    start_sync,
    sync_env,
)


def test_a_sync_killed_mid_load_is_recovered_by_the_next_sync_without_hands(
    tmp_path: Path, postgres_database_url: str
) -> None:
    # The production profile: the Dagster instance (runs, events, pool slots) and the ledger on Postgres.
    home = tmp_path / "home"
    ledger_url = postgres_database_url
    # About 150 people in the last 24 windows (a third of the seeded updates, spread over 3 days): two write
    # batches of at most 100 whatever the hour. (150 prospects gave 95-110 people: sometimes a single batch.)
    # Slow people writes (6 s each) leave time to kill between the batches, even on a loaded machine.
    with sandbox_process(tmp_path / "sandbox", 220, faults="slow:delay_ms=6000:path=/crm/people:methods=PUT") as info:
        env = {**sync_env(info, home, ledger_url), "DAGSTER_PG_URL": postgres_database_url}
        killed = start_sync(env, "--profile", "production")
        created = 0
        deadline = time.monotonic() + 150
        while created == 0:
            assert time.monotonic() < deadline and killed.poll() is None, "the first batch was never recorded"
            time.sleep(0.5)
            try:
                created = ledger_scalar(ledger_url, "SELECT count(*) FROM sync_history WHERE entity = 'prospects' "
                                                    "AND outcome = 'created'") or 0
            except sa.exc.ProgrammingError:  # the ledger's tables are not there yet
                created = 0
        killed.send_signal(signal.SIGKILL)
        killed.wait(10)
        killed_run = ledger_scalar(ledger_url, "SELECT run_id FROM sync_history WHERE entity = 'prospects' LIMIT 1")
        # Killed mid-load: its people load never finished, yet its first batch's creates are in the history.
        assert ledger_scalar(ledger_url, "SELECT count(*) FROM sync_run WHERE run_id = :run AND entity = 'prospects' "
                                         "AND finished_at IS NULL", run=killed_run) == 1
        set_faults(info["workbooks"]["url"], None)

        # The next sync: the killed run's pool slot and writer lock are freed without anyone's help.
        code, out, err = finish(start_sync(env, "--profile", "production", "--max-wait", "60"), timeout=180)
        assert code == 0, out + err[-3000:]
        assert f"run {killed_run} was left STARTED" in err, err
        people = people_per_outreach_id(info)

    # The killed run's creates are in the history, and nothing was created twice.
    assert max(people.values()) == 1
    assert len(people) > 100, "one write batch held every person: nothing was left to kill between batches"
    killed_creates = ledger_scalar(ledger_url, "SELECT count(*) FROM sync_history WHERE run_id = :run AND "
                                               "outcome = 'created' AND entity = 'prospects'", run=killed_run)
    assert killed_creates == created >= 1
    all_creates = ledger_scalar(ledger_url, "SELECT count(*) FROM sync_history WHERE outcome = 'created' AND "
                                            "entity = 'prospects'")
    # A write in flight at the kill may have landed unrecorded: the rerun links it (found by its link key).
    assert killed_creates <= all_creates <= len(people)
    # The same state a fault-free run ends in: every prospect the windows hold is linked to its one Person.
    linked = ledger_scalar(ledger_url, "SELECT count(*) FROM sync_record_state WHERE entity = 'prospects' AND "
                                       "workbooks_id IS NOT NULL")
    unsynced = ledger_scalar(ledger_url, "SELECT count(*) FROM sync_record_state WHERE entity = 'prospects' AND "
                                         "workbooks_id IS NULL AND last_outcome != 'failed'")
    assert linked == len(people) and unsynced == 0
