"""Engagement benchmark: a backfill of Outreach tasks and calls into Workbooks through the real Dagster job.

    .venv/bin/python benchmarks/bench_engagement.py --activities 200000 [--prospects 20000]

The sandbox runs in its own process (this script re-run with `--serve`, seeded with the given numbers of
tasks and calls; two thirds tasks, one third calls), so wall time, CPU and peak memory are the client's alone.
It runs the sync job once over every complete seeded window (the backfill), then once more over the same
windows (which must write nothing), and checks that Workbooks holds exactly one activity or meeting per
extracted Outreach task or call, each naming the Person of its Outreach prospect. Prints wall time, requests per 1,000 records and peak memory for each run.
BENCHMARKS.md ("Engagement") records the figures with this command. Shares its machinery with bench_pipeline.py.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import bench_pipeline as base
import dagster as dg

from outreach_pipeline.clients.outreach import API_PREFIX, OutreachClient
from outreach_pipeline.clients.workbooks import WorkbooksClient
from outreach_pipeline.sandbox.credentials import SANDBOX_OUTREACH_AUTH, SANDBOX_WORKBOOKS_AUTH
from outreach_pipeline.sandbox.runtime import SandboxConfig, start_sandbox

#: Controllers and link keys of the Workbooks records engagement creates.
ACTIVITY_LINKS = (("activity/tasks", "cf_task_outreach_id"), ("activity/meetings", "cf_meeting_outreach_id"))
ENGAGEMENT = ("tasks", "calls")
ENGAGEMENT_TYPES = ("task", "call")  # Outreach types, and the prefixes of the Workbooks link values


def serve(data_dir: Path, prospects: int, tasks: int, calls: int) -> None:
    """The sandbox process: seed, print the URLs as one JSON line (as `sandbox up --json` does), serve until SIGTERM."""
    config = SandboxConfig(data_dir=data_dir, outreach_port=0, workbooks_port=0, prospects=prospects, tasks=tasks,
                           calls=calls, workbooks_people=0)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with start_sandbox(config) as running:
        print(json.dumps(running.credentials()), flush=True)
        stop.wait()


class EngagementSandbox(base.SandboxProcess):
    """This script's `--serve` mode as the child process."""

    def __init__(self, data_dir: Path, prospects: int, tasks: int, calls: int) -> None:
        command = [sys.executable, __file__, "--serve", "--data-dir", str(data_dir), "--prospects", str(prospects),
                   "--tasks", str(tasks), "--calls", str(calls)]
        data_dir.mkdir(parents=True)
        self._log = (data_dir.parent / "sandbox.log").open("w")
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self._log, text=True,
                                        cwd=base.PROJECT_ROOT)
        self.endpoints = self._read_endpoints()


def activity_links(workbooks_url: str) -> dict[str, int]:
    """How many Workbooks activities and meetings carry each Outreach link value (`task:17`, `call:5`)."""
    client = WorkbooksClient(workbooks_url, **SANDBOX_WORKBOOKS_AUTH)
    counts: dict[str, int] = {}
    try:
        for controller, link_key in ACTIVITY_LINKS:
            for row in client.iter_records(controller, select_columns=["id", link_key]):
                if row.get(link_key):
                    counts[str(row[link_key])] = counts.get(str(row[link_key]), 0) + 1
    finally:
        client.close()
    return counts


def wrong_contacts(outreach_url: str, workbooks_url: str) -> tuple[int, int]:
    """(activities checked, activities whose Person is not their Outreach prospect's).

    Every Outreach task and call is read over the API with its prospect; every Workbooks activity and meeting
    with its link value and primary contact; every Person with its Outreach id. An activity must name the
    Person linked to its prospect, or no contact when that prospect has no Person (it failed to sync).
    """
    outreach = OutreachClient(outreach_url, **SANDBOX_OUTREACH_AUTH)
    try:
        prospect_of = {f"{kind}:{record.id}": record.relationships.get("prospect")
                       for kind in ENGAGEMENT_TYPES for record in outreach.iter_records(f"{API_PREFIX}/{kind}s")}
    finally:
        outreach.close()
    workbooks = WorkbooksClient(workbooks_url, **SANDBOX_WORKBOOKS_AUTH)
    try:
        person_of = {int(row["cf_person_outreach_id"]): int(row["id"])
                     for row in workbooks.iter_records("crm/people", select_columns=["id", "cf_person_outreach_id"])
                     if row.get("cf_person_outreach_id")}
        checked = wrong = 0
        for controller, link_key in ACTIVITY_LINKS:
            for row in workbooks.iter_records(controller, select_columns=["id", link_key, "primary_contact_id"]):
                if not row.get(link_key):
                    continue
                checked += 1
                expected = person_of.get(prospect_of.get(str(row[link_key])))
                wrong += (int(row["primary_contact_id"]) if row.get("primary_contact_id") else None) != expected
    finally:
        workbooks.close()
    return checked, wrong


def report(label: str, figures: base.RunFigures) -> None:
    engagement = sum(figures.extracted.get(name, 0) for name in ENGAGEMENT)
    writes = sum(count for endpoint, count in figures.workbooks_requests.items() if endpoint.startswith("PUT "))
    print(f"--- {label}", flush=True)
    print(base.format_report(figures, {}), flush=True)
    print(f"{label}: tasks + calls extracted {engagement}; wall {figures.wall_seconds:.1f} s; "
          f"{figures.per_thousand(figures.total_requests):.2f} requests per 1,000 records; Workbooks writes {writes}; "
          f"peak RSS {figures.peak_rss_bytes / 1024**2:.0f} MiB", flush=True)


def run_benchmark(activities: int, prospects: int, *, keep: bool) -> bool:
    tasks = activities * 2 // 3
    calls = activities - tasks
    root = Path(tempfile.mkdtemp(prefix="bench_engagement_"))
    home = base._dagster_home(root)
    seeded_from = datetime.now(UTC) - timedelta(days=base.SEED_DAYS)
    started = time.perf_counter()
    sandbox = EngagementSandbox(root / "sandbox", prospects, tasks, calls)
    try:
        print(f"sandbox seeded ({json.dumps(sandbox.endpoints.seeded.get('outreach', {}))}) and serving in "
              f"{time.perf_counter() - started:.1f} s", flush=True)
        base.install_fields(sandbox.endpoints.workbooks_url)
        defs = base.build_definitions(sandbox.endpoints, home)
        windows = base.windows_covering(defs, seeded_from, datetime.now(UTC))
        with dg.DagsterInstance.get() as instance:
            backfill = base.measure_run(defs, instance, sandbox, windows, trace_memory=False)
            report("backfill", backfill)
            rerun = base.measure_run(defs, instance, sandbox, windows, trace_memory=False)
            report("rerun of the same windows", rerun)
        links = activity_links(sandbox.endpoints.workbooks_url)
        extracted = sum(backfill.extracted.get(name, 0) for name in ENGAGEMENT)
        twice = [link for link, count in links.items() if count > 1]
        rerun_writes = sum(c for e, c in rerun.workbooks_requests.items() if e.startswith("PUT "))
        checked, wrong = wrong_contacts(sandbox.endpoints.outreach_url, sandbox.endpoints.workbooks_url)
        print(f"Workbooks activities + meetings linked to Outreach: {len(links)} for {extracted} extracted tasks and "
              f"calls; linked twice: {len(twice)}; rerun writes: {rerun_writes}; contact checked {checked}, "
              f"not the Person of their prospect: {wrong}", flush=True)
        return (backfill.success and rerun.success and not twice and len(links) == extracted and rerun_writes == 0
                and checked == len(links) and wrong == 0)
    finally:
        sandbox.stop()
        if keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--activities", type=int, default=200_000, help="Outreach tasks + calls to seed")
    parser.add_argument("--prospects", type=int, default=20_000, help="prospects to seed (their people are synced too)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (sandbox data, ledger, windows)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--tasks", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.data_dir, args.prospects, args.tasks, args.calls)
        return 0
    return 0 if run_benchmark(args.activities, args.prospects, keep=args.keep) else 1


if __name__ == "__main__":
    raise SystemExit(main())
