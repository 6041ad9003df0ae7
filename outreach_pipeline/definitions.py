"""The Dagster code location: assets, jobs, the hourly schedule and resources."""

from __future__ import annotations

import dagster as dg

from outreach_pipeline.defs.assets import ASSETS
from outreach_pipeline.defs.io_manager import WindowedParquetIOManager, window_store
from outreach_pipeline.defs.jobs import full_sync_job, outreach_send_receive, outreach_to_workbooks_job
from outreach_pipeline.defs.resources import build_resources, dagster_home

defs = dg.Definitions(
    assets=ASSETS,
    jobs=[outreach_to_workbooks_job, full_sync_job],
    schedules=[outreach_send_receive],
    resources={
        **build_resources(),
        "window_io_manager": WindowedParquetIOManager(base_dir=window_store(dagster_home() / "windows")),
    },
)
