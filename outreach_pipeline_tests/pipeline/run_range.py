"""Run the sync job over a range of windows in a process of its own, on the Dagster instance in $DAGSTER_HOME.

For tests whose runs must be separate processes sharing one instance (as a schedule beside a backfill):
`python -m outreach_pipeline_tests.pipeline.run_range OUTREACH_URL WORKBOOKS_URL HOME FIRST LAST`, windows as
partition keys. Exits 0 when the run succeeded; prints each failed step otherwise.
"""

from __future__ import annotations

import sys
from pathlib import Path

import dagster as dg

from outreach_pipeline.definitions import build_definitions
from outreach_pipeline.defs.io_manager import WindowedParquetIOManager
from outreach_pipeline.defs.jobs import SYNC_JOB
from outreach_pipeline.defs.resources import LedgerResource, OutreachResource, SyncSettings, WorkbooksResource
from outreach_pipeline.settings import PipelineSettings
from outreach_pipeline_tests.pipeline.harness import QUIET_LOGS, step_failures


def main(argv: list[str]) -> int:
    outreach_url, workbooks_url, home, first, last = argv
    files = Path(home)
    defs = build_definitions(
        PipelineSettings(),
        resources={
            "outreach": OutreachResource(base_url=outreach_url, token_store_path=str(files / "tokens.json")),
            "workbooks": WorkbooksResource(base_url=workbooks_url),
            "ledger": LedgerResource(url=f"sqlite:///{files / 'ledger.db'}"),
            "sync_settings": SyncSettings(retry_backoff_hours=0),  # retried on the next run, as the harness does
            "window_io_manager": WindowedParquetIOManager(base_dir=str(files / "windows")),
        },
    )
    with dg.DagsterInstance.get() as instance:
        result = defs.resolve_job_def(SYNC_JOB).execute_in_process(
            instance=instance,
            tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
            raise_on_error=False,
            run_config=QUIET_LOGS,
        )
    for failure in step_failures(result):
        print(failure)
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
