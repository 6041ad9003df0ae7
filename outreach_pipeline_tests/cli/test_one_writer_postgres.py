"""One writer per target through the commands, on Postgres: a sync on a Postgres Dagster instance and one on a
SQLite instance, sharing a Postgres ledger, write each person once (the ledger's writer lock, an advisory
lock there, serialises their loads); the test makes their people loads overlap.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from outreach_pipeline_tests.cli.sync_processes import (
    PROJECT_INSTANCE_CONFIG,
    SLOW_PEOPLE_WRITES,
    assert_two_overlapping_syncs_write_each_person_once,
    ledger_scalar,
    sandbox_process,
    sync_env,
)


def test_a_sync_on_a_postgres_instance_beside_another_instance_on_a_postgres_ledger(
    tmp_path: Path, postgres_database_url: str
) -> None:
    home_a = tmp_path / "home_a"
    home_a.mkdir()
    # Instance A on Postgres (the project's pools and run monitoring kept), instance B on SQLite; one ledger.
    config = yaml.safe_load(PROJECT_INSTANCE_CONFIG.read_text())
    config["storage"] = {"postgres": {"postgres_url": postgres_database_url}}
    (home_a / "dagster.yaml").write_text(yaml.safe_dump(config))
    with sandbox_process(tmp_path / "sandbox", 70, faults=SLOW_PEOPLE_WRITES) as info:
        env_a = sync_env(info, home_a, postgres_database_url)
        env_b = sync_env(info, tmp_path / "home_b", postgres_database_url)
        assert_two_overlapping_syncs_write_each_person_once(info, env_a, env_b, postgres_database_url)
    runs = ledger_scalar(postgres_database_url, "SELECT count(*) FROM runs WHERE status = 'SUCCESS'")
    assert runs == 1  # instance A's run is in Postgres run storage
