"""The sandbox profile's storage (BatchingSqliteStorage): a ranged run's per-window events written in batches
land as Dagster's own SQLite storage would hold them, per partition, metadata and checks included; check
evaluations, held until the step's next event, are stored before it."""


import time
import warnings
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.events import EngineEventData
from dagster._core.events.log import EventLogEntry
from dagster_postgres import PostgresEventLogStorage

from outreach_pipeline.instance_storage import (
    EVENT_BATCH_VARIABLE,
    BatchingEventLog,
    BatchingSqliteEventLogStorage,
)
from outreach_pipeline.profiles import Profile, instance_config_source

WINDOWS = dg.HourlyPartitionsDefinition(start_date="2026-11-01-00:00", timezone="UTC")
FIRST, LAST = "2026-11-20-00:00", "2026-11-20-05:00"
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.PreviewWarning)
    CHECK = dg.AssetCheckSpec("rows_ok", asset="counted", partitions_def=WINDOWS)


@dg.asset(partitions_def=WINDOWS, backfill_policy=dg.BackfillPolicy.single_run())
def counted(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    for number, key in enumerate(context.partition_keys):
        context.add_asset_metadata({"rows": number}, partition_key=key)
    return dg.MaterializeResult(metadata={"range": len(context.partition_keys)})


@dg.multi_asset_check(specs=[CHECK])
def rows_ok(context: dg.AssetCheckExecutionContext):
    for key in WINDOWS.get_partition_keys_in_range(dg.PartitionKeyRange(FIRST, LAST)):
        yield dg.AssetCheckEvaluation(asset_key=dg.AssetKey("counted"), check_name="rows_ok", passed=True, partition=key)
    yield dg.Output(None, output_name=CHECK.get_python_identifier())


@pytest.mark.parametrize("profile", [Profile.SANDBOX, Profile.PRODUCTION])
def test_a_ranged_run_on_a_profiles_storage_stores_every_window(profile: Profile, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 request: pytest.FixtureRequest) -> None:
    """The sandbox profile's SQLite storage, and the production profile's on the real Postgres."""
    monkeypatch.setenv(EVENT_BATCH_VARIABLE, "1000")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    if profile is Profile.PRODUCTION:
        monkeypatch.setenv("DAGSTER_PG_URL", request.getfixturevalue("postgres_database_url"))
    config = yaml.safe_load(instance_config_source(profile).read_text())
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump({"storage": config["storage"]}))
    defs = dg.Definitions(assets=[counted], asset_checks=[rows_ok],
                          jobs=[dg.define_asset_job("counted_job", executor_def=dg.in_process_executor)])
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert isinstance(instance.event_log_storage, BatchingEventLog)
        assert isinstance(instance.event_log_storage, BatchingSqliteEventLogStorage if profile is Profile.SANDBOX
                          else PostgresEventLogStorage)
        result = defs.resolve_job_def("counted_job").execute_in_process(
            instance=instance,
            tags={"dagster/asset_partition_range_start": FIRST, "dagster/asset_partition_range_end": LAST},
        )
        assert result.success
        keys = WINDOWS.get_partition_keys_in_range(dg.PartitionKeyRange(FIRST, LAST))
        # Every window materialized, each with its own metadata merged over the range's.
        assert instance.get_materialized_partitions(dg.AssetKey("counted")) == set(keys)
        records = instance.fetch_materializations(dg.AssetKey("counted"), limit=100, ascending=True).records
        assert [(r.partition_key, r.asset_materialization.metadata["rows"].value,
                 r.asset_materialization.metadata["range"].value) for r in records] == [
            (key, number, len(keys)) for number, key in enumerate(keys)]
        # One planned event per window and asset, in the run's own database and the cross-run index.
        planned = instance.get_records_for_run(result.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED)
        assert sorted(r.event_log_entry.dagster_event.partition for r in planned.records) == keys
        asset_record = next(iter(instance.get_asset_records([dg.AssetKey("counted")])))
        assert asset_record.asset_entry.last_run_id == result.run_id
        assert asset_record.asset_entry.last_materialization_record.partition_key == keys[-1]
        # Each window's check evaluation is tied to the run's planned check row.
        check_key = dg.AssetCheckKey(dg.AssetKey("counted"), "rows_ok")
        executions = instance.event_log_storage.get_asset_check_execution_history(check_key, limit=100)
        assert sorted(e.partition for e in executions) == keys
        assert {e.status.value for e in executions} == {"SUCCEEDED"}
        # Each row points at its stored evaluation event (the run's events hold one per window).
        evaluations = instance.get_records_for_run(result.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        by_partition = {r.event_log_entry.dagster_event.asset_check_evaluation_data.partition: r.storage_id
                        for r in evaluations.records}
        assert sorted(by_partition) == keys
        assert {e.partition: e.event.dagster_event.asset_check_evaluation_data.partition for e in executions} == {
            key: key for key in keys}


def _engine_event(run_id: str, message: str) -> EventLogEntry:
    event = dg.DagsterEvent(event_type_value=dg.DagsterEventType.ENGINE_EVENT.value, job_name="counted_job",
                            message=message, event_specific_data=EngineEventData())
    return EventLogEntry(error_info=None, level="INFO", user_message=message, run_id=run_id, timestamp=time.time(),
                         dagster_event=event, job_name="counted_job")


def _evaluation_event(run_id: str, partition: str) -> EventLogEntry:
    evaluation = dg.AssetCheckEvaluation(asset_key=dg.AssetKey("counted"), check_name="rows_ok", passed=False,
                                         partition=partition)
    event = dg.DagsterEvent(event_type_value=dg.DagsterEventType.ASSET_CHECK_EVALUATION.value,
                            job_name="counted_job", event_specific_data=evaluation)
    return EventLogEntry(error_info=None, level="INFO", user_message="", run_id=run_id, timestamp=time.time(),
                         dagster_event=event, job_name="counted_job")


def test_check_evaluations_are_stored_before_the_next_event_of_the_process_in_order(tmp_path: Path) -> None:
    """Evaluations are held until the next other event (a step's output, success or failure follows its
    evaluations), then stored together: before that event, in their order, with their check rows."""
    storage = BatchingSqliteEventLogStorage(str(tmp_path))
    run_id = "run-held-checks"
    check_key = dg.AssetCheckKey(dg.AssetKey("counted"), "rows_ok")
    storage.store_event(_engine_event(run_id, "step started"))
    for partition in (FIRST, LAST):
        storage.store_event(_evaluation_event(run_id, partition))
    assert [r.event_log_entry.user_message for r in storage.get_records_for_run(run_id).records] == ["step started"]

    storage.store_event(_engine_event(run_id, "step output"))

    records = storage.get_records_for_run(run_id).records
    assert [(r.event_log_entry.dagster_event_type, r.event_log_entry.user_message) for r in records] == [
        (dg.DagsterEventType.ENGINE_EVENT, "step started"), (dg.DagsterEventType.ASSET_CHECK_EVALUATION, ""),
        (dg.DagsterEventType.ASSET_CHECK_EVALUATION, ""), (dg.DagsterEventType.ENGINE_EVENT, "step output")]
    history = storage.get_asset_check_execution_history(check_key, limit=10)
    assert sorted((e.partition, e.status.value) for e in history) == [(FIRST, "FAILED"), (LAST, "FAILED")]
    # Held evaluations are stored when the storage is disposed of, too.
    storage.store_event(_evaluation_event("run-disposed", FIRST))
    storage.dispose()
    reopened = BatchingSqliteEventLogStorage(str(tmp_path))
    assert [r.event_log_entry.dagster_event_type for r in reopened.get_records_for_run("run-disposed").records] == [
        dg.DagsterEventType.ASSET_CHECK_EVALUATION]
    reopened.dispose()
