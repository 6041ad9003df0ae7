"""The sandbox profile's storage (BatchingSqliteStorage): a ranged run's per-window events written in batches
land as Dagster's own SQLite storage would hold them, per partition, metadata and checks included."""


import warnings
from pathlib import Path

import dagster as dg
import pytest
import yaml

from outreach_pipeline.instance_storage import EVENT_BATCH_VARIABLE, BatchingSqliteEventLogStorage
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


def test_a_ranged_run_on_the_sandbox_profile_stores_every_window(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(EVENT_BATCH_VARIABLE, "1000")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    config = yaml.safe_load(instance_config_source(Profile.SANDBOX).read_text())
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(config))
    defs = dg.Definitions(assets=[counted], asset_checks=[rows_ok],
                          jobs=[dg.define_asset_job("counted_job", executor_def=dg.in_process_executor)])
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert isinstance(instance.event_log_storage, BatchingSqliteEventLogStorage)
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
