"""Acceptance: sync runs on a Dagster instance whose storage is the real Postgres, with the ledger there too,
directly and through the production profile of `outreach-pipeline sync`.

A uniquely named database is created on the test server (OUTREACH_PIPELINE_TEST_POSTGRES, default
127.0.0.1:5432, user postgres, trust auth) and dropped afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from outreach_pipeline.defs.resources import sandbox_only_environment
from outreach_pipeline.profiles import Profile, instance_config_source, write_instance_config
from outreach_pipeline_tests.pipeline.harness import (
    Pipeline,
    partition_key,
    pipeline,
    seeded_windows,
    start_pinned_sandbox,
    step_failures,
)

SEED = {"prospects": 60, "accounts": 10, "opportunities": 15, "seed_days": 1}


def test_a_run_lands_in_postgres_run_storage_and_the_ledger_in_postgres(
    postgres_database_url: str, tmp_path: Path
) -> None:
    # The driver is named in the URL: SQLAlchemy 2.1 maps a bare `postgresql://` to psycopg 3 (not installed).
    postgres_url = postgres_database_url
    windows = seeded_windows(1)[-6:]  # the busiest quarter of the seeded day keeps the run short
    (tmp_path / "dagster").mkdir()
    overrides = {"storage": {"postgres": {"postgres_url": postgres_url}}}
    with (
        dg.instance_for_test(overrides=overrides, temp_dir=str(tmp_path / "dagster")) as instance,
        pipeline(tmp_path, ledger_url=postgres_url, instance=instance, **SEED) as pipe,
    ):
        result = pipe.run(windows[0], windows[-1], raise_on_error=False)
        assert result.success, step_failures(result)
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        extracted = {name: values["records_extracted"] for name, values in pipe.load_metadata(result).items()}
        synced = {entity: len(pipe.synced_rows(entity)) for entity in ("accounts", "prospects", "opportunities")}

    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as connection:
            runs = connection.execute(sa.text("SELECT run_id, status FROM runs")).all()
            materialized = connection.execute(sa.text(
                "SELECT count(*) FROM event_logs WHERE run_id = :run AND dagster_event_type = 'ASSET_MATERIALIZATION'"
            ), {"run": result.run_id}).scalar_one()
            outcomes = dict(connection.execute(sa.text(
                "SELECT entity, count(*) FROM sync_record_state WHERE last_run_id = :run GROUP BY entity"
            ), {"run": result.run_id}).all())
            ledger_runs = connection.execute(sa.text("SELECT DISTINCT run_id FROM sync_run")).scalars().all()
    finally:
        engine.dispose()
    assert [(run_id, status) for run_id, status in runs] == [(result.run_id, "SUCCESS")]
    assert materialized >= len(windows) * 3, materialized  # every window of every load asset, plus the rest
    # Every extracted record has its state in the Postgres ledger (in_person tasks under the meetings route).
    tasks = outcomes.pop("tasks", 0) + outcomes.pop("meetings", 0)
    assert {**outcomes, "tasks": tasks} == {
        "accounts": extracted["organisations"], "prospects": extracted["people"],
        "opportunities": extracted["opportunities"], "tasks": extracted["tasks"], "calls": extracted["calls"],
        "sequences": extracted["outreach_sequences"], "sequence_states": extracted["sequence_states"],
    }, outcomes
    assert ledger_runs == [result.run_id]
    assert synced["accounts"] == extracted["organisations"]



CLI = str(Path(sys.executable).with_name("outreach-pipeline"))


def test_sync_with_the_production_profile_keeps_instance_and_ledger_on_postgres(
    postgres_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`outreach-pipeline sync --profile production`, as an operator runs it: the profile's instance
    configuration lands in DAGSTER_HOME (secrets as {env: ...} only), and the run, its events, the pools
    and the ledger all live in the Postgres database the environment names."""
    windows = seeded_windows(1)[-6:]
    home = tmp_path / "home"
    sandbox = start_pinned_sandbox(**SEED)
    try:
        env = {
            **sandbox_only_environment(os.environ, outreach_url=sandbox.outreach_url, workbooks_url=sandbox.workbooks_url),
            "DAGSTER_HOME": str(home),
            "DAGSTER_PG_URL": postgres_database_url,
            "OUTREACH_PIPELINE_LEDGER_URL": postgres_database_url,
        }
        env.pop("OUTREACH_PIPELINE_PROFILE", None)
        sync = subprocess.run(
            [CLI, "sync", "--profile", "production", "--from", partition_key(windows[0]), "--to", partition_key(windows[-1])],
            env=env, capture_output=True, text=True, timeout=300,
        )
        assert sync.returncode == 0, f"{sync.stdout}\n{sync.stderr}"
        synced_people = len(Pipeline(sandbox=sandbox, instance=None, defs=dg.Definitions()).synced_rows("prospects"))  # type: ignore[arg-type]
    finally:
        sandbox.stop()

    written = (home / "dagster.yaml").read_text()
    assert written.startswith("# outreach-pipeline profile: production"), written[:200]
    assert "{env: DAGSTER_PG_URL}" in written and postgres_database_url not in written
    monkeypatch.setenv("DAGSTER_PG_URL", postgres_database_url)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "BatchingPostgresEventLogStorage"  # dagster-postgres'
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        assert instance.run_monitoring_enabled and instance.run_retries_enabled
        assert instance.run_retries_max_retries == 2
        runs = instance.get_runs()
        assert [run.status for run in runs] == [dg.DagsterRunStatus.SUCCESS]
        run_id = runs[0].run_id
        # The pools the load and extract steps claimed were created at the profile's limit, in Postgres.
        limits = {pool: instance.event_log_storage.get_concurrency_info(pool).slot_count
                  for pool in ("outreach_api", "workbooks_api")}
    assert limits == {"outreach_api": 1, "workbooks_api": 1}
    assert f"run {run_id}" in sync.stdout

    engine = sa.create_engine(postgres_database_url)
    try:
        with engine.connect() as connection:
            ledger_runs = connection.execute(sa.text("SELECT DISTINCT run_id FROM sync_run")).scalars().all()
            people = connection.execute(sa.text(
                "SELECT count(*) FROM sync_record_state"
                " WHERE entity = 'prospects' AND last_run_id = :run AND workbooks_id IS NOT NULL"
            ), {"run": run_id}).scalar_one()
    finally:
        engine.dispose()
    assert ledger_runs == [run_id]
    assert people == synced_people > 0
    assert not (home / "sync_ledger.db").exists()  # nothing fell back to the SQLite ledger


def test_the_production_profile_refuses_to_start_without_its_postgres_urls(tmp_path: Path) -> None:
    env = {**sandbox_only_environment(os.environ, outreach_url="http://127.0.0.1:9", workbooks_url="http://127.0.0.1:9"),
           "DAGSTER_HOME": str(tmp_path), "OUTREACH_PIPELINE_PROFILE": "production",
           "DAGSTER_PG_URL": "postgresql://user:s3cret@db.example:5432/dagster"}
    sync = subprocess.run([CLI, "sync", "--windows", "1"], env=env, capture_output=True, text=True, timeout=120)
    assert sync.returncode == 1
    message = sync.stderr.strip()
    assert "DAGSTER_PG_URL uses postgresql://" in message and "postgresql+psycopg2://" in message, message
    assert "set OUTREACH_PIPELINE_LEDGER_URL" in message, message
    assert "s3cret" not in message and "Traceback" not in message
    assert not (tmp_path / "dagster.yaml").exists()  # nothing written before the check passed


def test_a_hand_written_instance_configuration_is_left_alone(tmp_path: Path) -> None:
    own = "# mine\ntelemetry:\n  enabled: false\n"
    (tmp_path / "dagster.yaml").write_text(own)
    config = write_instance_config(tmp_path, Profile.PRODUCTION)
    assert not config.written and (tmp_path / "dagster.yaml").read_text() == own
    # A copy `dev` made before profiles existed is the sandbox file itself: it is the profile's to replace.
    (tmp_path / "dagster.yaml").write_text(instance_config_source(Profile.SANDBOX).read_text())
    assert write_instance_config(tmp_path, Profile.PRODUCTION).written
    assert (tmp_path / "dagster.yaml").read_text().endswith(instance_config_source(Profile.PRODUCTION).read_text())
