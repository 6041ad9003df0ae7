"""One writer per target through the commands, on SQLite: two `outreach-pipeline sync` processes on two Dagster
instances sharing one SQLite ledger write each person once. Dagster's pools cannot see across the instances, so
only the ledger's writer lock serialises their loads; the test makes their people loads overlap.
"""

from __future__ import annotations

from pathlib import Path

from outreach_pipeline_tests.cli.sync_processes import (
    SLOW_PEOPLE_WRITES,
    assert_two_overlapping_syncs_write_each_person_once,
    sandbox_process,
    sync_env,
)


def test_two_syncs_on_two_instances_sharing_a_sqlite_ledger_never_duplicate_people(tmp_path: Path) -> None:
    # Two DAGSTER_HOMEs: Dagster's pools cannot see each other, only the ledger's writer lock serialises them.
    with sandbox_process(tmp_path / "sandbox", 70, faults=SLOW_PEOPLE_WRITES) as info:
        ledger_url = f"sqlite:///{tmp_path / 'shared_ledger.db'}"
        env_a = sync_env(info, tmp_path / "home_a", ledger_url)
        env_b = sync_env(info, tmp_path / "home_b", ledger_url)
        assert_two_overlapping_syncs_write_each_person_once(info, env_a, env_b, ledger_url)
