"""The window hand-off between assets (one Parquet file per run range, indexed by window) and the window helpers
of the sync CLI.

Runs real Dagster materialisations on a real (temporary) instance: the IO manager is exercised by Dagster
itself, through a ranged run and then single-window reads.
"""

from datetime import UTC, datetime

import dagster as dg
import pandas as pd
import pytest
from upath import UPath

from outreach_pipeline.defs.headless import last_complete_windows, parse_window
from outreach_pipeline.defs.io_manager import INPUT_COLUMNS, WindowedParquetIOManager, window_store
from outreach_pipeline.defs.partitions import WINDOW_COLUMN, sync_windows
from outreach_pipeline.engine.extract import window_of
from outreach_pipeline.settings import load_settings

FIRST, LAST = "2026-11-20-00:00", "2026-11-20-02:00"
SYNC_WINDOWS = sync_windows("2026-11-01-00:00")


@dg.asset(partitions_def=SYNC_WINDOWS, backfill_policy=dg.BackfillPolicy.single_run(), io_manager_key="windows")
def produced(context: dg.AssetExecutionContext) -> pd.DataFrame:
    window = context.partition_time_window
    hours = pd.date_range(window.start, window.end, freq="h", inclusive="left", tz="UTC")
    # Two rows in the first window, none in the second, one per remaining window; nested values too.
    rows = [{"id": 1, WINDOW_COLUMN: hours[0], "emails": ["a@x.example"], "extra": {"k": [1, 2]}},
            {"id": 2, WINDOW_COLUMN: hours[0], "emails": [], "extra": None}]
    rows += [{"id": 10 + i, WINDOW_COLUMN: hour, "emails": ["b@x.example"], "extra": None} for i, hour in enumerate(hours[2:])]
    return pd.DataFrame(rows)


@dg.asset(partitions_def=SYNC_WINDOWS, backfill_policy=dg.BackfillPolicy.single_run(), io_manager_key="windows")
def consumed(produced: pd.DataFrame) -> pd.DataFrame:
    return produced.assign(seen=True)


def _run(instance: dg.DagsterInstance, tmp_path, first: str, last: str) -> dg.ExecuteInProcessResult:
    job = dg.define_asset_job("windows_job", selection=[produced, consumed], executor_def=dg.in_process_executor)
    defs = dg.Definitions(
        assets=[produced, consumed], jobs=[job],
        resources={"windows": WindowedParquetIOManager(base_dir=str(tmp_path))},
    )
    return defs.resolve_job_def("windows_job").execute_in_process(
        instance=instance,
        tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
    )


def _read(io: WindowedParquetIOManager, instance: dg.DagsterInstance, first: str, last: str) -> pd.DataFrame:
    return io.load_input(dg.build_input_context(
        asset_key=dg.AssetKey("produced"), asset_partition_key_range=dg.PartitionKeyRange(first, last),
        asset_partitions_def=SYNC_WINDOWS, instance=instance,
    ))


def _write(io: WindowedParquetIOManager, instance: dg.DagsterInstance, key: str, frame: pd.DataFrame) -> None:
    io.handle_output(dg.build_output_context(
        asset_key=dg.AssetKey("produced"), partition_key=key, asset_partitions_def=SYNC_WINDOWS, instance=instance,
    ), frame)


def _files(tmp_path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "produced").iterdir())


def test_a_ranged_run_writes_one_file_for_its_range_and_reloads_any_subrange(tmp_path):
    with dg.instance_for_test() as instance:
        result = _run(instance, tmp_path, FIRST, LAST)
        assert result.success
        (name,) = _files(tmp_path)
        assert name.startswith("2026-11-20-0000~2026-11-20-0200~") and name.endswith(".parquet"), name
        combined = result.output_for_node("consumed")
        assert sorted(combined["id"]) == [1, 2, 10]
        assert combined.loc[combined["id"] == 1, "emails"].iloc[0] == ["a@x.example"]  # a list again, not numpy
        assert combined.loc[combined["id"] == 1, "extra"].iloc[0] == {"k": [1, 2]}

        io = WindowedParquetIOManager(base_dir=str(tmp_path))
        empty = _read(io, instance, "2026-11-20-01:00", "2026-11-20-01:00")
        assert empty.empty and {"id", WINDOW_COLUMN}.issubset(empty.columns)
        assert _read(io, instance, "2026-11-20-00:00", "2026-11-20-01:00")["id"].tolist() == [1, 2]
        assert _read(io, instance, "2026-11-20-02:00", "2026-11-20-02:00")["id"].tolist() == [10]
        with pytest.raises(FileNotFoundError, match="no stored output for window 2026-11-20-03:00"):
            _read(io, instance, "2026-11-20-02:00", "2026-11-20-03:00")


def test_a_rerun_of_one_window_replaces_that_window_only_and_a_covering_run_replaces_both_files(tmp_path):
    with dg.instance_for_test() as instance:
        assert _run(instance, tmp_path, FIRST, LAST).success
        io = WindowedParquetIOManager(base_dir=str(tmp_path))
        _write(io, instance, "2026-11-20-01:00",
               pd.DataFrame({"id": [99], WINDOW_COLUMN: [pd.Timestamp("2026-11-20 01:00", tz="UTC")],
                             "emails": [["c@x.example"]], "extra": [None]}))
        assert len(_files(tmp_path)) == 2  # the range file still holds the other windows
        reread = _read(io, instance, FIRST, LAST)
        assert reread["id"].tolist() == [1, 2, 99, 10]  # window order, each window from its newest file
        assert reread.loc[reread["id"] == 99, "emails"].iloc[0] == ["c@x.example"]
        _write(io, instance, "2026-11-20-00:00",
               pd.DataFrame({"id": pd.Series([], dtype="int64"), WINDOW_COLUMN: pd.Series([], dtype="datetime64[ns, UTC]")}))
        assert _read(io, instance, FIRST, LAST)["id"].tolist() == [99, 10]  # the newer window is empty

        assert _run(instance, tmp_path, FIRST, LAST).success  # a run over the whole range supersedes every file
        assert len(_files(tmp_path)) == 1
        assert _read(io, instance, FIRST, LAST)["id"].tolist() == [1, 2, 10]


def test_files_of_one_file_per_window_stay_readable_until_a_run_replaces_them(tmp_path):
    """Window stores written before range files (`<window>.parquet`) keep working."""
    legacy = tmp_path / "produced" / "2026-11-20-0100.parquet"
    legacy.parent.mkdir()
    pd.DataFrame({"id": [7], WINDOW_COLUMN: [pd.Timestamp("2026-11-20 01:00", tz="UTC")]}).to_parquet(legacy)
    with dg.instance_for_test() as instance:
        io = WindowedParquetIOManager(base_dir=str(tmp_path))
        assert _read(io, instance, "2026-11-20-01:00", "2026-11-20-01:00")["id"].tolist() == [7]
        assert _run(instance, tmp_path, FIRST, LAST).success
        assert not legacy.exists()
        assert _read(io, instance, FIRST, LAST)["id"].tolist() == [1, 2, 10]


def test_rows_outside_the_run_windows_are_refused(tmp_path):
    io = WindowedParquetIOManager(base_dir=str(tmp_path))
    frame = pd.DataFrame({"id": [1], WINDOW_COLUMN: [pd.Timestamp("2026-11-21 05:00", tz="UTC")]})
    with dg.instance_for_test() as instance:
        context = dg.build_output_context(
            asset_key=dg.AssetKey("x"), partition_key="2026-11-20-00:00",
            asset_partitions_def=SYNC_WINDOWS, instance=instance,
        )
        with pytest.raises(ValueError, match="outside this run"):
            io.handle_output(context, frame)


def test_window_of_floors_to_the_hour_and_clamps_retried_rows_into_the_range():
    start, end = datetime(2026, 11, 20, 0, tzinfo=UTC), datetime(2026, 11, 20, 3, tzinfo=UTC)
    stamps = pd.Series(pd.to_datetime(
        ["2026-11-20T00:00:00Z", "2026-11-20T00:59:59.999Z", "2026-11-20T01:00:00Z", "2026-11-25T00:00:00Z", None],
        utc=True, format="ISO8601",
    ))
    windows = window_of(stamps, start, end).dt.strftime("%H:%M").tolist()
    # A record changed exactly at 01:00 belongs to the 01:00 window; later or unknown ones to the last window.
    assert windows == ["00:00", "00:00", "01:00", "02:00", "02:00"]


def test_last_complete_windows_and_window_parsing():
    now = datetime(2026, 11, 27, 5, 42, tzinfo=UTC)
    assert last_complete_windows(SYNC_WINDOWS, 1, now=now) == ("2026-11-27-04:00", "2026-11-27-04:00")
    assert last_complete_windows(SYNC_WINDOWS, 24, now=now) == ("2026-11-26-05:00", "2026-11-27-04:00")
    assert parse_window(SYNC_WINDOWS, "2026-11-27-05:00") == "2026-11-27-05:00"
    assert parse_window(SYNC_WINDOWS, "2026-11-27T05:30:00Z") == "2026-11-27-05:00"
    assert parse_window(SYNC_WINDOWS, "2026-11-27T07:30:00+02:00") == "2026-11-27-05:00"
    with pytest.raises(ValueError, match="neither a window key"):
        parse_window(SYNC_WINDOWS, "yesterday")
    with pytest.raises(ValueError, match="at least 1"):
        last_complete_windows(SYNC_WINDOWS, 0, now=now)


@pytest.mark.parametrize("scheme", ["file", "memory"])
def test_the_window_store_may_be_a_url(tmp_path, scheme):
    """A store named by URL (what Celery workers on several machines share): `file://` and fsspec's
    in-memory object store, which takes the object-store path (one upload per file, no rename)."""
    base = tmp_path.as_uri() if scheme == "file" else f"memory://windows-{tmp_path.name}"
    job = dg.define_asset_job("windows_job", selection=[produced, consumed], executor_def=dg.in_process_executor)
    defs = dg.Definitions(assets=[produced, consumed], jobs=[job],
                          resources={"windows": WindowedParquetIOManager(base_dir=base)})
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("windows_job").execute_in_process(
            instance=instance,
            tags={"dagster/asset_partition_range_start": FIRST, "dagster/asset_partition_range_end": LAST},
        )
        assert result.success
        files = sorted(p.name for p in UPath(base, "produced").iterdir())
        assert len(files) == 1 and files[0].startswith("2026-11-20-0000~2026-11-20-0200~"), files
        combined = result.output_for_node("consumed")
        assert sorted(combined["id"]) == [1, 2, 10]
        assert combined.loc[combined["id"] == 1, "extra"].iloc[0] == {"k": [1, 2]}
    if scheme == "file":
        assert sorted(p.name for p in (tmp_path / "produced").iterdir()) == files  # no temporary file left


def test_the_window_store_setting_overrides_the_default(monkeypatch, tmp_path):
    monkeypatch.delenv("OUTREACH_PIPELINE_WINDOW_STORE", raising=False)
    assert window_store(load_settings().window_store, tmp_path / "windows") == str(tmp_path / "windows")
    monkeypatch.setenv("OUTREACH_PIPELINE_WINDOW_STORE", "s3://bucket/windows")
    assert window_store(load_settings().window_store, tmp_path / "windows") == "s3://bucket/windows"


@dg.asset(partitions_def=SYNC_WINDOWS, backfill_policy=dg.BackfillPolicy.single_run(),
          ins={"produced": dg.AssetIn(metadata={INPUT_COLUMNS: ["id", "extra", "not_stored"]})})
def narrow(produced: pd.DataFrame) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"columns_seen": list(produced.columns), "rows": len(produced),
                                          "extra_of_1": dg.MetadataValue.json(
                                              produced.loc[produced["id"] == 1, "extra"].iloc[0])})


def test_an_input_reads_only_the_columns_its_metadata_names(tmp_path):
    job = dg.define_asset_job("narrow_job", selection=[produced, narrow], executor_def=dg.in_process_executor)
    defs = dg.Definitions(assets=[produced, narrow], jobs=[job],
                          resources={"windows": WindowedParquetIOManager(base_dir=str(tmp_path))})
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("narrow_job").execute_in_process(
            instance=instance,
            tags={"dagster/asset_partition_range_start": FIRST, "dagster/asset_partition_range_end": LAST},
        )
        assert result.success
        seen = result.asset_materializations_for_node("narrow")[0].metadata  # one per window, the same
        assert seen["columns_seen"].value == ["id", "extra"], "a named column the output lacks is left out"
        assert seen["rows"].value == 3
        assert seen["extra_of_1"].value == {"k": [1, 2]}, "a JSON column read alone still decodes"
