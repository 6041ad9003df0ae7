"""The Dagster code location: assets, jobs, the hourly schedule and resources.

Definitions are built when Dagster loads them (``@dg.definitions``), from the typed settings: a bad setting
or an inconsistent set of credentials shows as a load error of the code location naming the variable,
rather than as an import error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg

from outreach_pipeline.defs.alerts import alert_webhook_from_settings, build_alert_sensors
from outreach_pipeline.defs.assets import FLOWS, build_assets
from outreach_pipeline.defs.dry_run import build_dry_run_assets
from outreach_pipeline.defs.first_sync import build_first_sync_sensor
from outreach_pipeline.defs.graph import present_assets
from outreach_pipeline.defs.groups import GROUP_DESCRIPTIONS
from outreach_pipeline.defs.io_manager import WindowedParquetIOManager, window_store
from outreach_pipeline.defs.jobs import build_jobs
from outreach_pipeline.defs.lane import build_lane
from outreach_pipeline.defs.partitions import sync_windows
from outreach_pipeline.defs.reconcile import reconcile_job, reconcile_schedule
from outreach_pipeline.defs.resources import build_resources, dagster_home
from outreach_pipeline.defs.scaleout import job_executor
from outreach_pipeline.instance_storage import use_event_batches
from outreach_pipeline.mapping.models import load_mapping_set
from outreach_pipeline.settings import PipelineSettings, load_settings


def build_definitions(settings: PipelineSettings, resources: Mapping[str, Any] | None = None) -> dg.Definitions:
    """The code location for `settings`; `resources` replaces the ones the environment configures (tests,
    benchmarks)."""
    # A ranged run's per-window events are stored in batches by whatever process runs it (instance_storage.py).
    use_event_batches()
    executor = job_executor(settings)
    jobs = build_jobs(settings.schedule_minute, executor)
    if resources is None:
        resources = {
            **build_resources(settings),
            "alert_webhook": alert_webhook_from_settings(settings),
            "window_io_manager": WindowedParquetIOManager(
                base_dir=window_store(settings.window_store, dagster_home() / "windows")
            ),
        }
    windows = sync_windows(settings.partitions_start)
    # The low-latency lane (off by default): its job and sensor only when `low_latency_minutes` is set. Its one
    # step runs in process whatever the executor setting.
    lane_jobs, lane_sensors = build_lane(settings)
    return dg.Definitions(
        assets=present_assets([*build_assets(windows), *build_dry_run_assets(windows)],
                              load_mapping_set(settings.mapping_path)),
        jobs=[*jobs.jobs, reconcile_job, *lane_jobs],
        schedules=[*jobs.schedules, reconcile_schedule],
        sensors=[build_first_sync_sensor(windows, [flow.load_key for flow in FLOWS],
                                         running=settings.first_sync_on_start), *build_alert_sensors(settings),
                 *lane_sensors],
        resources=dict(resources),
        # Runs launched from the asset graph (Dagster's implicit `__ASSET_JOB`) use the jobs' executor, not
        # Dagster's default of one subprocess per step.
        executor=executor,
        # Not shown by the open-source UI (see defs.groups); for readers of the definitions.
        metadata={"group_descriptions": dg.MetadataValue.json({str(g): text for g, text in GROUP_DESCRIPTIONS.items()})},
    )


@dg.definitions
def defs() -> dg.Definitions:
    """The code location as the environment configures it."""
    return build_definitions(load_settings())
