"""Run the sync job for a range of complete windows without the UI (what `outreach-pipeline sync` calls)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
from dagster._core.events import RunFailureReason

from outreach_pipeline.defs.assets import FLOWS
from outreach_pipeline.defs.jobs import SYNC_JOB
from outreach_pipeline.defs.scaleout import execute_sync_job
from outreach_pipeline.engine.outcome import Outcome
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
    #: failure_rate (or other) checks that failed at ERROR severity: "asset: check (metadata)".
    error_checks: list[str] = field(default_factory=list)
    #: Ctrl-C or SIGTERM stopped a step (Dagster marks the run failed as an unexpected termination).
    interrupted: bool = False


def run_sync(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    first: str,
    last: str,
    *,
    executor: ExecutorKind = ExecutorKind.IN_PROCESS,
    run_id: str | None = None,
    tags: Mapping[str, str] | None = None,
    hooks: frozenset[dg.HookDefinition] = frozenset(),
    job_name: str = SYNC_JOB,
    ops_config: Mapping[str, Any] | None = None,
) -> SyncSummary:
    """Materialise `job_name` (the sync job) over [first, last] in one run and collect per-entity counts.

    `run_id` and `tags` let the caller watch the run while it executes; `hooks` are added to the job (in
    this process: Celery workers run the steps elsewhere, so there the hooks and the run id do not apply).
    `ops_config` is the run config of the steps (the first sync's `from_beginning`).
    """
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
        defs, job_name,
        executor=executor,
        instance=instance,
        run_id=run_id,
        hooks=hooks,
        tags={**(tags or {}), "dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
        # Events go to the instance (and the UI) whatever the console logger does; the terminal gets only the
        # caller's summary and messages, not Dagster's step failures and their tracebacks.
        run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}, "ops": dict(ops_config or {})},
    )
    rows = []
    for flow in FLOWS:
        materializations = result.asset_materializations_for_node(flow.load_key.to_python_identifier())
        # A ranged run reports one materialisation per window, each with its window's counts (defs/audit.py):
        # the run's are their sums; requests are range-wide.
        windows = [{k: v.value for k, v in m.metadata.items()} for m in materializations]
        rows.append({
            "entity": flow.workbooks_name,
            **{outcome.value: sum(w.get(f"records_{outcome}", 0) for w in windows) if windows else "-"
               for outcome in Outcome},
            "extracted": sum(w.get("records_extracted", 0) for w in windows) if windows else "-",
            "requests": windows[0].get("range_api_requests", "-") if windows else "-",
        })
    error_checks = [
        f"{evaluation.asset_key.to_user_string()}: {evaluation.check_name} "
        f"({', '.join(f'{k}={_short(v.value)}' for k, v in evaluation.metadata.items())})"
        for evaluation in result.get_asset_check_evaluations()
        if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
    ]
    failure = result.get_run_failure_event() if not result.success else None
    failure_data = failure.job_failure_data if failure is not None else None
    interrupted = failure_data is not None and failure_data.failure_reason == RunFailureReason.UNEXPECTED_TERMINATION
    return SyncSummary(success=result.success, run_id=result.run_id, first_window=first, last_window=last, rows=rows,
                       error_checks=error_checks, interrupted=interrupted)


def _short(value: object) -> str:
    if isinstance(value, list):  # a table: its size, not its rows
        return f"{len(value)} rows"
    return f"{value:.1%}" if isinstance(value, float) and 0 <= value <= 1 else str(value)
