"""Jobs and the hourly schedule that stands in for Workbooks' "Outreach Send/Receive" process."""

from __future__ import annotations

import os

import dagster as dg

from outreach_pipeline.defs.assets import ASSET_KEYS, FLOWS

#: Minutes past the hour the schedule runs the last complete window (late writes get this long to land).
SCHEDULE_MINUTE = int(os.environ.get("OUTREACH_PIPELINE_SCHEDULE_MINUTE", "10"))

_SELECTION = dg.AssetSelection.assets(*ASSET_KEYS)

outreach_to_workbooks_job = dg.define_asset_job(
    "outreach_to_workbooks_job",
    selection=_SELECTION,
    description="Outreach accounts, prospects and opportunities into Workbooks for the selected sync windows.",
    executor_def=dg.in_process_executor,
)

#: Run config of the full sync: every extract reads without a lower bound.
FULL_SYNC_CONFIG = {"ops": {f"outreach__{f.outreach_name}": {"config": {"from_beginning": True}} for f in FLOWS}}

full_sync_job = dg.define_asset_job(
    "full_sync_job",
    selection=_SELECTION,
    description=(
        "Like outreach_to_workbooks_job, but the read has no lower bound: launch it on the first window (or any "
        "range) to cover records last changed before the first sync window."
    ),
    config=FULL_SYNC_CONFIG,
    executor_def=dg.in_process_executor,
)

outreach_send_receive = dg.build_schedule_from_partitioned_job(
    outreach_to_workbooks_job,
    name="outreach_send_receive",
    minute_of_hour=SCHEDULE_MINUTE,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Hourly: syncs the last complete window, SCHEDULE_MINUTE minutes past the hour.",
)
