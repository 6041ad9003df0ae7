"""Jobs and the hourly schedule that stands in for Workbooks' "Outreach Send/Receive" process."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from outreach_pipeline.defs.assets import ASSET_KEYS, FLOWS, ExtractConfig
from outreach_pipeline.defs.assets_outreach import READ_STEP as WORKBOOKS_READ_STEP
from outreach_pipeline.defs.assets_outreach import REVERSE_KEYS
from outreach_pipeline.defs.run_options import WorkbooksReadConfig

SYNC_JOB = "outreach_to_workbooks_job"
FULL_SYNC_JOB = "full_sync_job"
SEND_RECEIVE_SCHEDULE = "outreach_send_receive"

SELECTION = dg.AssetSelection.assets(*ASSET_KEYS, *REVERSE_KEYS)


def full_sync_run_config() -> dg.RunConfig:
    """Run config of the full sync: every read of either direction has no lower bound."""
    return dg.RunConfig(ops={
        **{flow.extract_key.to_python_identifier(): ExtractConfig(from_beginning=True) for flow in FLOWS},
        WORKBOOKS_READ_STEP: WorkbooksReadConfig(from_beginning=True),
    })


@dataclass(frozen=True)
class SyncJobs:
    """The jobs and schedules of the code location."""

    jobs: list[dg.UnresolvedAssetJobDefinition]
    schedules: list[dg.ScheduleDefinition]


def build_jobs(schedule_minute: int, executor: dg.ExecutorDefinition = dg.in_process_executor) -> SyncJobs:
    """The sync job, the full-sync job and the hourly schedule that runs the last complete window
    `schedule_minute` minutes past the hour (late writes get that long to land); both jobs run on `executor`
    (`defs.scaleout.job_executor`)."""
    sync_job = dg.define_asset_job(
        SYNC_JOB,
        selection=SELECTION,
        description="Outreach accounts, prospects and opportunities into Workbooks for the selected sync windows.",
        executor_def=executor,
    )
    full_sync_job = dg.define_asset_job(
        FULL_SYNC_JOB,
        selection=SELECTION,
        description=(
            f"Like {SYNC_JOB}, but the read has no lower bound: launch it on the first window (or any range) to "
            "cover records last changed before the first sync window."
        ),
        config=full_sync_run_config(),
        executor_def=executor,
    )
    schedule = dg.build_schedule_from_partitioned_job(
        sync_job,
        name=SEND_RECEIVE_SCHEDULE,
        minute_of_hour=schedule_minute,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Hourly: syncs the last complete window, {schedule_minute} minutes past the hour.",
    )
    return SyncJobs(jobs=[sync_job, full_sync_job], schedules=[schedule])
