"""One writer per target through the commands, with real processes: two `outreach-pipeline sync` processes on two
Dagster instances over one ledger write each person once (the ledger's writer lock serialises their loads).

Each test starts its own `outreach-pipeline sandbox up` process with slow people requests, so the two loads
overlap whatever the machine's load.
"""

from __future__ import annotations

from pathlib import Path

from outreach_pipeline_tests.cli.sync_processes import (
    SLOW_PEOPLE,
    assert_two_overlapping_syncs_write_each_person_once,
    sandbox_process,
    sync_env,
)


def test_two_syncs_on_two_instances_sharing_a_sqlite_ledger_never_duplicate_people(tmp_path: Path) -> None:
    # Two DAGSTER_HOMEs: Dagster's pools cannot see each other, only the ledger's writer lock serialises them.
    with sandbox_process(tmp_path / "sandbox", 70, faults=SLOW_PEOPLE) as info:
        ledger_url = f"sqlite:///{tmp_path / 'shared_ledger.db'}"
        env_a = sync_env(info, tmp_path / "home_a", ledger_url)
        env_b = sync_env(info, tmp_path / "home_b", ledger_url)
        assert_two_overlapping_syncs_write_each_person_once(info, env_a, env_b, ledger_url)
