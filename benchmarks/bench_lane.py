"""Low-latency lane benchmark: change-to-change latency at N = 1 minute, then the hourly runs over the same hours.

    .venv/bin/python benchmarks/bench_lane.py [--minutes 10] [--changes-per-minute 6] [--prospects 300]

Setup (not measured): the sandbox in its own process (`outreach-pipeline sandbox up --simulate`: the activity
simulator creates and edits records in both systems every 5 s throughout), the custom fields installed, and one
lane run (its first run reads the hour before, as a newly enabled lane does).

Measured, for `--minutes`:
* a change generator writes through the sandbox APIs at a steady rate, alternating systems: in Outreach it sets
  a marked state (`addressState`, which neither simulator edits) on one of 20 prospects in turn (the first round
  creates their Workbooks people, later rounds update them); in Workbooks it creates a Person selected for
  Outreach with a marked state (the first 10), then sets a marked state on those people in turn (their
  prospects are updated);
* the lane as the code location runs it at N = 1: every 60 s the `low_latency_lane` sensor is evaluated and, when
  it requests a run, `low_latency_lane_job` runs (in this process, as the run launcher would in its own).

Latency of a change (the method): from its commit in the source system, the record's update time as the source
API returned it after the write (Outreach: milliseconds; Workbooks: whole seconds, so up to 1 s is added), to the
ledger's `recorded_at` of the lane's write carrying the marked value to the other system (the history row whose
diff holds the marker). The ledger records a write after the target system confirmed it, so this is an upper
bound of when the change became visible there. Not included: the daemon's sensor tick jitter and a run
launcher's process start (a few seconds with `dg dev`); the cadence itself (up to 60 s) is included.

Then the changes stop, one last lane run passes them, and the hourly job runs over every hour the lane covered
(the open hour too: the bench admits it as a partition with `end_offset=1` instead of waiting for it to close;
the run reads the whole hour so far). Printed: how many records it wrote, and how many of those writes repeat a
lane write: the record's previous write was a lane write of the same values (same record, direction and
values hash): the acceptance figure, which must be 0. Also printed: hourly writes whose values any lane write
had written earlier (a record the simulator changed back to earlier values counts there, rightly written). The activity
simulator keeps changing records meanwhile, so the hourly run has changes of its own to write.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median
from typing import Any

import dagster as dg
import requests
import sqlalchemy as sa

from outreach_pipeline.clients.formats import parse_wb_datetime
from outreach_pipeline.clients.outreach import API_PREFIX, OutreachClient
from outreach_pipeline.clients.workbooks import WorkbooksClient, WriteOp
from outreach_pipeline.definitions import build_definitions
from outreach_pipeline.defs.assets import build_assets
from outreach_pipeline.defs.io_manager import WindowedParquetIOManager
from outreach_pipeline.defs.jobs import SYNC_JOB, build_jobs
from outreach_pipeline.defs.lane import LANE_JOB, LANE_SENSOR
from outreach_pipeline.defs.resources import LedgerResource, OutreachResource, SyncSettings, WorkbooksResource
from outreach_pipeline.engine.install import install
from outreach_pipeline.engine.ledger import TO_OUTREACH_REASON, SyncLedger
from outreach_pipeline.engine.ledger_lane import lane_run_ids
from outreach_pipeline.engine.ledger_schema import history
from outreach_pipeline.mapping.models import load_mapping_set
from outreach_pipeline.sandbox.credentials import SANDBOX_OUTREACH_AUTH, SANDBOX_WORKBOOKS_AUTH
from outreach_pipeline.settings import PipelineSettings

CLI = str(Path(sys.executable).with_name("outreach-pipeline"))
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
OUTREACH_POOL, WORKBOOKS_PEOPLE = 20, 10
#: The marked field (Outreach addressState): neither activity simulator edits it, so no marker is overwritten.
STATE = "main_location[county_province_state]"


def _percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile: the smallest value with at least `share` of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _start_sandbox(data_dir: Path, prospects: int) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    process = subprocess.Popen(
        [CLI, "sandbox", "up", "--json", "--outreach-port", "0", "--workbooks-port", "0", "--data-dir", str(data_dir),
         "--prospects", str(prospects), "--simulate"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    line = process.stdout.readline() if process.stdout else ""
    if not line:
        raise SystemExit("the sandbox did not start")
    return process, json.loads(line)


class ChangeGenerator:
    """Marked changes in both systems at a steady rate (see the module docstring); commit times by marker."""

    def __init__(self, info: dict[str, Any], per_minute: float) -> None:
        self.outreach = OutreachClient(info["outreach"]["url"], **SANDBOX_OUTREACH_AUTH)
        self.workbooks = WorkbooksClient(info["workbooks"]["url"], **SANDBOX_WORKBOOKS_AUTH)
        self.interval = 60.0 / per_minute
        self.committed: dict[str, datetime] = {}  # marker -> commit time in its source system
        self.records: dict[str, int] = {}  # marker -> id of the record changed (Outreach or Workbooks)
        self.errors: list[str] = []
        self.stop = threading.Event()
        prospects = self.outreach.iter_records(f"{API_PREFIX}/prospects", {"page[size]": "100", "sort": "id"})
        self.pool = [p.id for p in prospects if p.attributes.get("emails") and p.attributes.get("lastName")][:OUTREACH_POOL]
        self.people: list[int] = []

    def _outreach_change(self, n: int) -> None:
        marker = f"lane-o-{n:04d}"
        record = self.outreach.update("prospects", self.pool[n % len(self.pool)], {"addressState": marker})
        assert record.updated_at is not None
        self.committed[marker], self.records[marker] = record.updated_at, record.id

    def _workbooks_change(self, n: int) -> None:
        marker = f"lane-w-{n:04d}"
        if len(self.people) < WORKBOOKS_PEOPLE:
            outcome = self.workbooks.write_one("crm/people", WriteOp(action="create", fields={
                "person_first_name": "Bench", "person_last_name": f"Lane {n}", STATE: marker,
                "main_location[email]": f"bench.lane.{n}@lane.example", "cf_person_sync_to_outreach": True}))
            self.people.append(int(outcome.id))
            row = self.workbooks.lookup("crm/people", "id", [int(outcome.id)])[0]
        else:
            person = self.people[n % len(self.people)]
            current = self.workbooks.lookup("crm/people", "id", [person])[0]
            self.workbooks.write_one("crm/people", WriteOp(action="update", id=person,
                                                           lock_version=int(current["lock_version"]),
                                                           fields={STATE: marker}))
            row = self.workbooks.lookup("crm/people", "id", [person])[0]
        self.committed[marker], self.records[marker] = parse_wb_datetime(str(row["updated_at"])), int(row["id"])

    def run(self) -> None:
        n = 0
        next_at = time.monotonic()
        while not self.stop.is_set():
            try:
                (self._outreach_change if n % 2 == 0 else self._workbooks_change)(n)
            except Exception as exc:  # a refused change is reported, the rate goes on
                self.errors.append(f"{n}: {exc}")
            n += 1
            next_at += self.interval
            self.stop.wait(max(0.0, next_at - time.monotonic()))

    def close(self) -> None:
        self.outreach.close()
        self.workbooks.close()


def _arrivals(ledger_url: str) -> dict[str, datetime]:
    """Marker -> when the ledger recorded the write carrying it to the other system (the earliest)."""
    ledger = SyncLedger(ledger_url)
    found: dict[str, datetime] = {}
    try:
        query = sa.select(history.c.diff_json, history.c.reason, history.c.recorded_at).where(
            history.c.entity == "prospects", history.c.outcome.in_(["created", "updated"]),
            history.c.diff_json.like("%lane-%"))
        with ledger.engine.connect() as connection:
            for diff, reason, recorded in connection.execute(query):
                to_outreach = reason == TO_OUTREACH_REASON
                for value in json.loads(diff).values():
                    if isinstance(value, str) and value.startswith("lane-w-" if to_outreach else "lane-o-"):
                        recorded = recorded if recorded.tzinfo else recorded.replace(tzinfo=UTC)
                        found[value] = min(found.get(value, recorded), recorded)
    finally:
        ledger.dispose()
    return found


def _explain(ledger_url: str, markers: list[str], records: dict[str, int], to_outreach: bool) -> dict[str, Any]:
    """For each change that never arrived: the ledger's last word on its record (outcome, reason, error)."""
    ledger = SyncLedger(ledger_url)
    try:
        found: dict[str, Any] = {}
        for marker in markers:
            record_id = records.get(marker)
            state = (ledger.states_by_workbooks_id("prospects", [record_id]).get(record_id) if to_outreach
                     else ledger.get_states("prospects", [record_id]).get(record_id)) if record_id else None
            found[marker] = (None if state is None else
                             f"{state.last_outcome.value} {state.last_reason} {state.last_error} run {state.last_run_id}")
        return found
    finally:
        ledger.dispose()


def _hourly_rewrites(ledger_url: str, hourly_run: str) -> dict[str, int]:
    """The hourly run's writes, those of records the lane wrote, and those repeating a lane write exactly."""
    ledger = SyncLedger(ledger_url)
    try:
        lanes = lane_run_ids(ledger)
        columns = (history.c.run_id, history.c.entity, history.c.outreach_id, history.c.reason, history.c.values_hash,
                   history.c.outreach_updated_at)
        query = sa.select(*columns).where(history.c.outcome.in_(["created", "updated"])).order_by(history.c.id)
        with ledger.engine.connect() as connection:
            rows = connection.execute(query).all()
    finally:
        ledger.dispose()

    def key(row: Any) -> tuple[str, int, bool]:
        return (row.entity, int(row.outreach_id), row.reason == TO_OUTREACH_REASON)

    lane_writes = {(*key(row), row.values_hash) for row in rows if row.run_id in lanes}
    lane_records = {entry[:3] for entry in lane_writes}
    # Outreach -> Workbooks rows carry the Outreach version written: the same version written again is a rewrite
    # even with other values (the two runs would have staged it differently).
    lane_versions = {(*key(row), row.outreach_updated_at) for row in rows if row.run_id in lanes and not key(row)[2]}
    hourly = [row for row in rows if row.run_id == hourly_run]
    # The acceptance figure: an hourly write whose record's previous write was a lane write of the same values
    # (a record the simulator changed back to values a lane wrote earlier is a new change, not a repeat).
    previous: dict[tuple[str, int, bool], Any] = {}
    repeats = 0
    for row in rows:
        before = previous.get(key(row))
        if row.run_id == hourly_run and before is not None and before.run_id in lanes \
                and before.values_hash == row.values_hash:
            repeats += 1
        previous[key(row)] = row
    return {"hourly_writes": len(hourly), "hourly_repeats_of_the_last_lane_write": repeats,
            "hourly_writes_of_records_the_lane_wrote": sum(1 for row in hourly if key(row) in lane_records),
            "hourly_writes_with_values_a_lane_run_wrote_earlier": sum(
                1 for row in hourly if (*key(row), row.values_hash) in lane_writes),
            "hourly_writes_of_an_outreach_version_the_lane_wrote": sum(
                1 for row in hourly if (*key(row), row.outreach_updated_at) in lane_versions)}


def _sandbox_writes(info: dict[str, Any]) -> int:
    total = 0
    for side, prefixes in (("outreach", ("POST /api", "PATCH /api")), ("workbooks", ("PUT ",))):
        stats = requests.get(info["admin"][side], timeout=10).json()
        total += sum(n for endpoint, n in stats["requests"].items() if endpoint.startswith(prefixes))
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10, help="measured period")
    parser.add_argument("--changes-per-minute", type=float, default=6, help="marked changes, both systems together")
    parser.add_argument("--prospects", type=int, default=300, help="prospects the sandbox seeds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home_dir:
        home = Path(home_dir)
        sandbox, info = _start_sandbox(home / "sandbox", args.prospects)
        try:
            client = WorkbooksClient(info["workbooks"]["url"], **SANDBOX_WORKBOOKS_AUTH)
            install(client, load_mapping_set())
            client.close()
            ledger_url = f"sqlite:///{home / 'ledger.db'}"
            resources = {
                "outreach": OutreachResource(base_url=info["outreach"]["url"], token_store_path=str(home / "t.json")),
                "workbooks": WorkbooksResource(base_url=info["workbooks"]["url"]),
                "ledger": LedgerResource(url=ledger_url),
                "sync_settings": SyncSettings(),
                "window_io_manager": WindowedParquetIOManager(base_dir=str(home / "windows")),
            }
            start = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%d-00:00")
            settings = PipelineSettings(low_latency_minutes=1, partitions_start=start)
            defs = build_definitions(settings, resources=resources)
            lane_job, sensor = defs.resolve_job_def(LANE_JOB), defs.resolve_sensor_def(LANE_SENSOR)
            (home / "dagster").mkdir()
            with dg.instance_for_test(temp_dir=str(home / "dagster")) as instance:
                def lane_tick() -> float | None:
                    request = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
                    if not request.run_requests:
                        return None
                    started = time.perf_counter()
                    result = lane_job.execute_in_process(instance=instance, run_config=QUIET,
                                                         tags=request.run_requests[0].tags, raise_on_error=False)
                    if not result.success:
                        print("lane run failed", result.run_id, file=sys.stderr)
                    return time.perf_counter() - started

                warm_up = lane_tick()
                generator = ChangeGenerator(info, args.changes_per_minute)
                thread = threading.Thread(target=generator.run, daemon=True)
                load_before = os.getloadavg()
                measured_from = time.monotonic()
                thread.start()
                durations: list[float] = []
                next_tick = time.monotonic() + 60
                while time.monotonic() - measured_from < args.minutes * 60:
                    time.sleep(max(0.0, next_tick - time.monotonic()))
                    next_tick += 60
                    if (duration := lane_tick()) is not None:
                        durations.append(duration)
                generator.stop.set()
                thread.join(30)
                time.sleep(settings.low_latency_lag_seconds + 1)
                if (duration := lane_tick()) is not None:  # the last changes' run
                    durations.append(duration)
                load_after = os.getloadavg()
                generator.close()

                arrivals = _arrivals(ledger_url)
                figures: dict[str, Any] = {"measured_minutes": args.minutes, "lane_every_minutes": 1,
                                           "changes_per_minute": args.changes_per_minute,
                                           "warm_up_lane_run_seconds": round(warm_up or 0, 1),
                                           "lane_runs": len(durations),
                                           "lane_run_seconds_p50": round(median(durations), 1),
                                           "lane_run_seconds_max": round(max(durations), 1),
                                           "generator_errors": generator.errors[:5]}
                for direction, prefix in (("outreach_to_workbooks", "lane-o-"), ("workbooks_to_outreach", "lane-w-")):
                    latencies = [(arrivals[m] - t).total_seconds() for m, t in generator.committed.items()
                                 if m.startswith(prefix) and m in arrivals]
                    missing = sorted(m for m in generator.committed if m.startswith(prefix) and m not in arrivals)
                    figures[direction] = {
                        "changes": len(latencies) + len(missing), "arrived": len(latencies),
                        "missing": _explain(ledger_url, missing[:10], generator.records, prefix == "lane-w-"),
                        "p50_seconds": round(_percentile(latencies, 0.5), 1) if latencies else None,
                        "p95_seconds": round(_percentile(latencies, 0.95), 1) if latencies else None,
                        "max_seconds": round(max(latencies), 1) if latencies else None,
                    }

                # The hourly run over every hour the lane covered, the open one admitted as a partition.
                ledger = SyncLedger(ledger_url)
                try:
                    with ledger.engine.connect() as connection:
                        first_since = connection.execute(sa.text("SELECT min(since) FROM sync_lane_run")).scalar()
                finally:
                    ledger.dispose()
                first_hour = datetime.fromisoformat(str(first_since)).replace(minute=0, second=0, microsecond=0)
                open_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
                windows = dg.HourlyPartitionsDefinition(start_date=start, timezone="UTC", end_offset=1)
                hourly_defs = dg.Definitions(assets=build_assets(windows), jobs=build_jobs(10).jobs,
                                             resources=resources)
                writes_before = _sandbox_writes(info)
                started = time.perf_counter()
                hourly = hourly_defs.resolve_job_def(SYNC_JOB).execute_in_process(
                    instance=instance, run_config=QUIET, raise_on_error=False,
                    tags={"dagster/asset_partition_range_start": first_hour.strftime("%Y-%m-%d-%H:%M"),
                          "dagster/asset_partition_range_end": open_hour.strftime("%Y-%m-%d-%H:%M")})
                figures["hourly_run"] = {
                    "success": hourly.success, "seconds": round(time.perf_counter() - started, 1),
                    "hours": f"{first_hour:%Y-%m-%d-%H:%M}..{open_hour:%Y-%m-%d-%H:%M}",
                    "sandbox_write_requests": _sandbox_writes(info) - writes_before,
                    **_hourly_rewrites(ledger_url, hourly.run_id),
                }
                figures["load_average_before"] = [round(x, 2) for x in load_before]
                figures["load_average_after"] = [round(x, 2) for x in load_after]
        finally:
            os.killpg(sandbox.pid, signal.SIGINT)
            sandbox.wait(30)
    print(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
