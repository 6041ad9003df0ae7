"""Two-way steady-state benchmark: one window with N changed records in each direction, through the real job.

    .venv/bin/python benchmarks/bench_two_way.py [--changed 1000]

Setup (not measured): an in-process sandbox seeded with 2N + 200 prospects over one day, the custom fields
installed, and one run of `outreach_to_workbooks_job` over every seeded window, which links them all. Then, in
one later hourly window, N linked prospects get a new title in Outreach and N other linked people a new job
title in Workbooks. Measured: the run of the scheduled job for that window (both directions, every asset) and
the next window's run, which reads the sync's own writes back and must write nothing. Requests are counted
server side on both APIs. BENCHMARKS.md ("Two-way steady state") records the figures with this command.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg

from outreach_pipeline.clients.workbooks import WorkbooksClient, WriteOp
from outreach_pipeline.definitions import build_definitions
from outreach_pipeline.defs.io_manager import WindowedParquetIOManager
from outreach_pipeline.defs.jobs import SYNC_JOB
from outreach_pipeline.defs.resources import LedgerResource, OutreachResource, SyncSettings, WorkbooksResource
from outreach_pipeline.engine.install import install
from outreach_pipeline.mapping.models import load_mapping_set
from outreach_pipeline.sandbox.credentials import SANDBOX_WORKBOOKS_AUTH
from outreach_pipeline.sandbox.runtime import RunningSandbox, SandboxConfig, start_sandbox
from outreach_pipeline.settings import PipelineSettings

SEEDED_UNTIL = datetime(2026, 11, 3, tzinfo=UTC)
HOUR = timedelta(hours=1)
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _key(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d-%H:%M")


def _set_clocks(sandbox: RunningSandbox, moment: datetime) -> None:
    sandbox.outreach_store.now = lambda: moment
    sandbox.workbooks_store._clock = lambda: moment


def _requests(sandbox: RunningSandbox) -> dict[str, dict[str, int]]:
    return {"outreach": sandbox.outreach_middleware.stats.snapshot()["requests"],
            "workbooks": sandbox.workbooks_middleware.stats.snapshot()["requests"]}


def _writes(requests: dict[str, dict[str, int]]) -> int:
    outreach = sum(n for e, n in requests["outreach"].items() if e.startswith(("POST /api", "PATCH /api")))
    workbooks = sum(n for e, n in requests["workbooks"].items() if e.startswith("PUT "))
    return outreach + workbooks


def _total(requests: dict[str, dict[str, int]]) -> int:
    return sum(sum(side.values()) for side in requests.values())


def _reset(sandbox: RunningSandbox) -> None:
    sandbox.outreach_middleware.stats.reset()
    sandbox.workbooks_middleware.stats.reset()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changed", type=int, default=1000, help="changed records in each direction")
    args = parser.parse_args()
    changed = args.changed
    sandbox = start_sandbox(SandboxConfig(
        data_dir=None, outreach_port=0, workbooks_port=0, seed_now=SEEDED_UNTIL, workbooks_people=0,
        prospects=2 * changed + 200, accounts=100, opportunities=0, seed_days=1))
    sandbox.outreach_store.now = lambda: SEEDED_UNTIL
    try:
        client = WorkbooksClient(sandbox.workbooks_url, **SANDBOX_WORKBOOKS_AUTH)
        install(client, load_mapping_set())
        with tempfile.TemporaryDirectory() as home_dir:
            home = Path(home_dir)
            defs = build_definitions(PipelineSettings(), resources={
                "outreach": OutreachResource(base_url=sandbox.outreach_url, token_store_path=str(home / "t.json")),
                "workbooks": WorkbooksResource(base_url=sandbox.workbooks_url),
                "ledger": LedgerResource(url=f"sqlite:///{home / 'ledger.db'}"),
                "sync_settings": SyncSettings(),
                "window_io_manager": WindowedParquetIOManager(base_dir=str(home / "windows")),
            })
            job = defs.resolve_job_def(SYNC_JOB)
            (home / "dagster").mkdir()
            with dg.instance_for_test(temp_dir=str(home / "dagster")) as instance:
                def run(first: datetime, last: datetime | None = None) -> float:
                    started = time.perf_counter()
                    result = job.execute_in_process(
                        instance=instance, raise_on_error=True, run_config=QUIET,
                        tags={"dagster/asset_partition_range_start": _key(first),
                              "dagster/asset_partition_range_end": _key(last or first)})
                    assert result.success
                    return time.perf_counter() - started

                setup_seconds = run(SEEDED_UNTIL - 24 * HOUR, SEEDED_UNTIL - HOUR)
                people = [row for row in client.iter_records(
                    "crm/people", select_columns=["id", "lock_version", "cf_person_outreach_id"])
                    if row.get("cf_person_outreach_id")]
                assert len(people) >= 2 * changed, f"only {len(people)} linked people"
                edit_window = SEEDED_UNTIL + 5 * HOUR
                _set_clocks(sandbox, edit_window + HOUR / 6)
                for row in people[:changed]:
                    sandbox.outreach_store.update("prospect", int(row["cf_person_outreach_id"]),
                                                  {"title": f"Outreach title {row['id']}"})
                ops = [WriteOp(action="update", id=int(row["id"]), lock_version=int(row["lock_version"]),
                               fields={"person_job_title": f"Workbooks title {row['id']}"})
                       for row in people[changed : 2 * changed]]
                client.write_batch("crm/people", ops)

                _set_clocks(sandbox, edit_window + HOUR + HOUR / 6)
                _reset(sandbox)
                window_seconds = run(edit_window)
                window_requests = _requests(sandbox)
                _reset(sandbox)
                read_back_seconds = run(edit_window + HOUR)
                read_back_requests = _requests(sandbox)
        client.close()
    finally:
        sandbox.stop()
    figures: dict[str, Any] = {
        "changed_per_direction": changed,
        "setup_initial_sync_seconds": round(setup_seconds, 1),
        "window_seconds": round(window_seconds, 1),
        "window_requests": _total(window_requests),
        "window_writes": _writes(window_requests),
        "requests_per_changed_record": round(_total(window_requests) / (2 * changed), 3),
        "read_back_seconds": round(read_back_seconds, 1),
        "read_back_requests": _total(read_back_requests),
        "read_back_writes": _writes(read_back_requests),
        "window_requests_by_endpoint": window_requests,
    }
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
