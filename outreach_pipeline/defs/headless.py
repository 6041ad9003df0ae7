"""Run the sync job for a range of complete windows without the UI (what `outreach-pipeline sync` calls)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import dagster as dg

from outreach_pipeline.defs.assets import FLOWS
from outreach_pipeline.defs.jobs import SYNC_JOB
from outreach_pipeline.defs.scaleout import execute_sync_job
from outreach_pipeline.settings import ExecutorKind


def last_complete_windows(
    windows: dg.TimeWindowPartitionsDefinition, count: int, *, now: datetime | None = None
) -> tuple[str, str]:
    """Partition keys of the first and last of the `count` most recent complete hourly windows."""
    if count < 1:
        raise ValueError(f"--windows must be at least 1, got {count}")
    end = (now or datetime.now(UTC)).astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    first, last = end - timedelta(hours=count), end - timedelta(hours=1)
    return windows.get_partition_key_for_timestamp(first.timestamp()), windows.get_partition_key_for_timestamp(
        last.timestamp()
    )


def parse_window(windows: dg.TimeWindowPartitionsDefinition, text: str) -> str:
    """Accept a partition key (`2026-11-27-05:00`) or an ISO datetime, return the key of its window."""
    try:
        return windows.get_partition_key_for_timestamp(windows.time_window_for_partition_key(text).start.timestamp())
    except ValueError:
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError(f"{text!r} is neither a window key like 2026-11-27-05:00 nor an ISO datetime") from exc
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    return windows.get_partition_key_for_timestamp(moment.timestamp())


def sync_windows_of(defs: dg.Definitions) -> dg.TimeWindowPartitionsDefinition:
    """The hourly partitions of the code location's sync job."""
    windows = defs.resolve_job_def(SYNC_JOB).partitions_def
    assert isinstance(windows, dg.TimeWindowPartitionsDefinition), windows
    return windows


@dataclass
class SyncSummary:
    success: bool
    run_id: str
    first_window: str
    last_window: str
    rows: list[dict[str, object]]


def run_sync(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    first: str,
    last: str,
    *,
    executor: ExecutorKind = ExecutorKind.IN_PROCESS,
) -> SyncSummary:
    """Materialise the sync job over [first, last] in one run and collect per-entity counts."""
    windows = sync_windows_of(defs)
    keys = windows.get_partition_keys()
    if not keys:
        raise ValueError(f"no complete window yet: the partitions start at {windows.start:%Y-%m-%d-%H:%M}")
    for key in (first, last):
        if key not in keys:
            raise ValueError(f"window {key} is outside the partitions ({keys[0]} .. {keys[-1]})")
    if first > last:
        raise ValueError(f"--from {first} is after --to {last}")
    # In this process, or with the celery executor its steps on the Celery workers.
    result = execute_sync_job(
        defs, SYNC_JOB,
        executor=executor,
        instance=instance,
        tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
        # Step-level DEBUG events belong in the UI; a terminal user wants the summary and any errors.
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    )
    rows = []
    for flow in FLOWS:
        materializations = result.asset_materializations_for_node(flow.load_key.to_python_identifier())
        # A ranged run reports one materialisation per window with the same run-wide metadata.
        metadata = {k: v.value for k, v in materializations[0].metadata.items()} if materializations else {}
        rows.append({
            "entity": flow.workbooks_name,
            **{name: metadata.get(f"records_{name}", "-") for name in ("created", "updated", "unchanged", "skipped", "failed")},
            "extracted": metadata.get("records_extracted", "-"),
            "requests": metadata.get("api_requests", "-"),
        })
    return SyncSummary(success=result.success, run_id=result.run_id, first_window=first, last_window=last, rows=rows)
