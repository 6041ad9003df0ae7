"""Acceptance: one sync run on a Dagster instance whose storage is the real Postgres, with the ledger there too.

A uniquely named database is created on the test server (OUTREACH_PIPELINE_TEST_POSTGRES, default
127.0.0.1:5432, user postgres, trust auth) and dropped afterwards.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from outreach_pipeline_tests.pipeline.harness import pipeline, seeded_windows, step_failures

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
    assert outcomes == {"accounts": extracted["organisations"], "prospects": extracted["people"],
                        "opportunities": extracted["opportunities"]}, outcomes
    assert ledger_runs == [result.run_id]
    assert synced["accounts"] == extracted["organisations"]

