"""Pipeline benchmark: one initial load of every seeded window through the real Dagster job.

    .venv/bin/python benchmarks/bench_pipeline.py [--prospects 100000] [--tracemalloc] [--profile FILE]

The sandbox runs in its own process (`outreach-pipeline sandbox up --json`), so the CPU time and peak memory
measured here are the client's alone: Dagster, the extract/stage/load assets, the HTTP clients and the ledger.
Request counts come from the sandbox's server-side `/_sandbox/stats`, reset after the install step, so they
cover exactly the sync run. BENCHMARKS.md ("Pipeline") records the figures with this command.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import math
import os
import pstats
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import requests
from pydantic import BaseModel

from outreach_pipeline.clients.workbooks import WorkbooksClient
from outreach_pipeline.definitions import build_definitions as build_code_location
from outreach_pipeline.defs.assets import FLOWS
from outreach_pipeline.defs.headless import sync_windows_of
from outreach_pipeline.defs.io_manager import WindowedParquetIOManager
from outreach_pipeline.defs.jobs import SYNC_JOB
from outreach_pipeline.defs.resources import LedgerResource, OutreachResource, SyncSettings, WorkbooksResource
from outreach_pipeline.defs.scaleout import execute_sync_job
from outreach_pipeline.engine.install import install
from outreach_pipeline.mapping.models import load_mapping_set
from outreach_pipeline.sandbox.credentials import SANDBOX_WORKBOOKS_AUTH
from outreach_pipeline.sandbox.runtime import SandboxConfig
from outreach_pipeline.settings import ExecutorKind, load_settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SANDBOX_COMMAND = str(Path(sys.executable).with_name("outreach-pipeline"))
#: The CLI has no --seed-days: the seeder spreads updatedAt over SandboxConfig's default span before "now".
SEED_DAYS: int = SandboxConfig.model_fields["seed_days"].default
HTTP_TIMEOUT = 30
STARTUP_TIMEOUT_SECONDS = 600
WINDOW = timedelta(hours=1)
#: Per 1,000 extracted records: 1 Outreach page, 10 Workbooks write batches and 10 batched lookups.
LOWER_BOUND_PER_THOUSAND = 21
REQUEST_RATIO_TARGET = 1.25
PEAK_MEMORY_TARGET_BYTES = int(1.5 * 1024**3)
CLOCK_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
PROFILE_TOP_ENTRIES = 40


class SandboxEndpoints(BaseModel):
    """What `sandbox up --json` printed that the benchmark uses."""

    outreach_url: str
    workbooks_url: str
    seeded: dict[str, dict[str, int]]


class RunFigures(BaseModel):
    """Everything measured around one sync run."""

    success: bool
    first_window: str
    last_window: str
    wall_seconds: float
    client_cpu_seconds: float
    server_cpu_seconds: float
    peak_rss_bytes: int
    peak_traced_bytes: int | None
    extracted: dict[str, int]
    load_counts: dict[str, dict[str, Any]]
    outreach_requests: dict[str, int]
    workbooks_requests: dict[str, int]

    @property
    def records(self) -> int:
        """Extracted Outreach records of every entity."""
        return sum(self.extracted.values())

    @property
    def total_requests(self) -> int:
        """Requests both sandboxes served during the run."""
        return sum(self.outreach_requests.values()) + sum(self.workbooks_requests.values())

    def per_thousand(self, value: float) -> float:
        """`value` per 1,000 extracted records."""
        return value * 1000 / self.records if self.records else math.nan


class SandboxProcess:
    """`outreach-pipeline sandbox up` as a child process, with its admin API and CPU time."""

    def __init__(self, data_dir: Path, prospects: int) -> None:
        command = [
            SANDBOX_COMMAND, "sandbox", "up", "--json", "--outreach-port", "0", "--workbooks-port", "0",
            "--data-dir", str(data_dir), "--prospects", str(prospects),
        ]
        # The sandbox's own log lines go to a file so a full stderr pipe can never stall it.
        self._log = (data_dir.parent / "sandbox.log").open("w")
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=self._log, text=True, cwd=PROJECT_ROOT)
        self.endpoints = self._read_endpoints()

    def _read_endpoints(self) -> SandboxEndpoints:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.stop()
            raise RuntimeError(f"sandbox exited with {self.process.returncode} before printing its URLs: "
                               f"see {self._log.name}")
        info = json.loads(line)
        return SandboxEndpoints(
            outreach_url=info["outreach"]["url"], workbooks_url=info["workbooks"]["url"], seeded=info["seeded"]
        )

    def stats(self, api: str) -> dict[str, Any]:
        """The server-side request counts of `api` (``outreach`` or ``workbooks``)."""
        response = requests.get(f"{self._url(api)}/_sandbox/stats", timeout=HTTP_TIMEOUT)
        response.raise_for_status()
        return response.json()

    def reset_stats(self) -> None:
        """Zero both APIs' request counters."""
        for api in ("outreach", "workbooks"):
            requests.post(f"{self._url(api)}/_sandbox/stats/reset", timeout=HTTP_TIMEOUT).raise_for_status()

    def _url(self, api: str) -> str:
        return self.endpoints.outreach_url if api == "outreach" else self.endpoints.workbooks_url

    def cpu_seconds(self) -> float:
        """User + system CPU time the sandbox process has used so far (from /proc, Linux only)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        # After the command name: state is field 3, utime 14 and stime 15 (1-based, see proc(5)).
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_SECOND

    def stop(self) -> None:
        """SIGTERM (the CLI's clean shutdown), then SIGKILL if it does not exit within 30 s."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


def install_fields(workbooks_url: str) -> None:
    """Create the custom fields the mapping writes, as `outreach-pipeline install` does on a fresh database."""
    client = WorkbooksClient(workbooks_url, **SANDBOX_WORKBOOKS_AUTH)
    try:
        report = install(client, load_mapping_set())
    finally:
        client.close()
    if not report.ok:
        raise RuntimeError(f"install failed: {[item.model_dump() for item in report.conflicts]}")


def windows_covering(defs: dg.Definitions, seeded_from: datetime, now: datetime) -> tuple[str, str]:
    """First and last partition keys of the complete windows from `seeded_from` up to `now`.

    Records updated in the current, incomplete hour belong to no partition yet; they are not extracted.
    """
    partitions = sync_windows_of(defs)
    first = max(seeded_from.replace(minute=0, second=0, microsecond=0), partitions.start)
    last = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0) - WINDOW
    return (partitions.get_partition_key_for_timestamp(first.timestamp()),
            partitions.get_partition_key_for_timestamp(last.timestamp()))


def build_definitions(endpoints: SandboxEndpoints, home: Path) -> dg.Definitions:
    """The production assets and job, with resources pointed at the sandbox process and files under `home`."""
    return build_code_location(
        load_settings(),
        resources={
            "outreach": OutreachResource(base_url=endpoints.outreach_url, token_store_path=str(home / "tokens.json")),
            "workbooks": WorkbooksResource(base_url=endpoints.workbooks_url),
            "ledger": LedgerResource(url=f"sqlite:///{home / 'ledger.db'}"),
            "sync_settings": SyncSettings(),
            "window_io_manager": WindowedParquetIOManager(base_dir=str(home / "windows")),
        },
    )


def _cpu_seconds_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _summed_metadata(result: dg.ExecuteInProcessResult, node: str) -> dict[str, Any]:
    """The run's counts of one asset: a ranged run reports one materialisation per window, each with its own
    window's counts (summed here) and the same range-wide values (kept once)."""
    summed: dict[str, Any] = {}
    for materialization in result.asset_materializations_for_node(node):
        for key, entry in materialization.metadata.items():
            value = entry.value
            if isinstance(value, int) and not isinstance(value, bool) and not key.startswith("range"):
                summed[key] = summed.get(key, 0) + value
            else:
                summed.setdefault(key, value)
    return summed


class RssSampler(threading.Thread):
    """Samples this process's resident memory every 50 ms, so the peak can be put on the step that made it."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[tuple[float, int]] = []  # (unix time, RSS bytes)
        self._stop_event = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE")

    def run(self) -> None:
        while not self._stop_event.wait(0.05):
            with open("/proc/self/statm") as statm:
                self.samples.append((time.time(), int(statm.read().split()[1]) * self._page))

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def print_step_memory(instance: dg.DagsterInstance, run_id: str, sampler: RssSampler) -> None:
    """Each step's peak RSS (sampled while it ran) and how much it grew the process, largest peak first."""
    spans: dict[str, list[float]] = {}
    for record in instance.get_records_for_run(run_id, of_type={
        dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE,
    }).records:
        entry = record.event_log_entry
        spans.setdefault(entry.step_key or "?", []).append(entry.timestamp)
    rows = []
    for step, stamps in spans.items():
        start, end = min(stamps), max(stamps)
        inside = [rss for at, rss in sampler.samples if start <= at <= end]
        before = [rss for at, rss in sampler.samples if at <= start]
        if inside:
            rows.append((max(inside), max(inside) - (before[-1] if before else inside[0]), end - start, step))
    first = sampler.samples[0][1] if sampler.samples else 0
    print(f"RSS by step, the 12 that grew it most (MiB: peak while it ran, growth over its start; seconds); "
          f"at the run's start {first / 1024**2:.0f} MiB:")
    for peak, growth, seconds, step in sorted(rows, key=lambda row: -row[1])[:12]:
        print(f"  {peak / 1024**2:8.0f} {growth / 1024**2:+8.0f} {seconds:8.1f}  {step}")


def measure_run(
    defs: dg.Definitions, instance: dg.DagsterInstance, sandbox: SandboxProcess, windows: tuple[str, str],
    *, trace_memory: bool, profile_path: Path | None = None,
) -> RunFigures:
    """Run the sync job once over `windows` and measure wall time, CPU, memory and requests around it.

    With `profile_path`, the run executes under cProfile (which inflates CPU and wall time) and the pstats
    are dumped there; the run is in-process, so every step's Python work shows in the profile. The profiler
    counts CPU time (`time.process_time`), not wall time: on a shared machine wall time mostly measures the
    other processes, and waiting for the sandbox or for fsync is not client CPU.
    """
    sandbox.reset_stats()
    sampler = RssSampler()
    sampler.start()
    if trace_memory:
        tracemalloc.start()
    profiler = cProfile.Profile(time.process_time) if profile_path is not None else None
    server_cpu_before, cpu_before, started = sandbox.cpu_seconds(), _cpu_seconds_self(), time.perf_counter()
    if profiler is not None:
        profiler.enable()
    # As `outreach-pipeline sync` runs it (defs/headless.py): in this process, step outputs not kept in memory.
    result = execute_sync_job(
        defs, SYNC_JOB, executor=ExecutorKind.IN_PROCESS, instance=instance,
        tags={"dagster/asset_partition_range_start": windows[0], "dagster/asset_partition_range_end": windows[1]},
        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
    )
    if profiler is not None:
        profiler.disable()
    wall, cpu = time.perf_counter() - started, _cpu_seconds_self() - cpu_before
    if profiler is not None and profile_path is not None:
        profiler.dump_stats(profile_path)
        stats = pstats.Stats(profiler, stream=sys.stdout).strip_dirs()
        print(f"profile dumped to {profile_path}; top entries by own time, then cumulative:")
        stats.sort_stats("tottime").print_stats(PROFILE_TOP_ENTRIES)
        stats.sort_stats("cumulative").print_stats(PROFILE_TOP_ENTRIES)
    server_cpu = sandbox.cpu_seconds() - server_cpu_before
    sampler.stop()
    print_step_memory(instance, result.run_id, sampler)
    peak_traced = tracemalloc.get_traced_memory()[1] if trace_memory else None
    tracemalloc.stop()
    for event in result.all_events:
        if event.is_failure:
            print(f"FAILURE: {(event.message or '')[:2000]}", file=sys.stderr)
    return RunFigures(
        success=result.success,
        first_window=windows[0],
        last_window=windows[1],
        wall_seconds=wall,
        client_cpu_seconds=cpu,
        server_cpu_seconds=server_cpu,
        # Linux reports ru_maxrss in KiB.
        peak_rss_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        peak_traced_bytes=peak_traced,
        extracted={  # the window's records and those pulled in because others point at them
            flow.outreach_name: sum(
                int(_summed_metadata(result, key.to_python_identifier()).get("dagster/row_count", 0))
                for key in (flow.extract_key, flow.referenced_key) if key is not None
            )
            for flow in FLOWS
        },
        load_counts={flow.workbooks_name: _summed_metadata(result, flow.load_key.to_python_identifier()) for flow in FLOWS},
        outreach_requests=sandbox.stats("outreach")["requests"],
        workbooks_requests=sandbox.stats("workbooks")["requests"],
    )


def _verdict(met: bool) -> str:
    return "MET" if met else "NOT MET"


def _endpoint_lines(figures: RunFigures, api: str, requests_by_endpoint: Mapping[str, int]) -> list[str]:
    lines = [f"  {api}: {sum(requests_by_endpoint.values())} requests "
             f"({figures.per_thousand(sum(requests_by_endpoint.values())):.2f} per 1,000 records)"]
    for endpoint, count in sorted(requests_by_endpoint.items(), key=lambda item: -item[1]):
        lines.append(f"    {count:>7}  {figures.per_thousand(count):7.2f}/1k  {endpoint}")
    return lines


def format_report(figures: RunFigures, seeded: Mapping[str, Mapping[str, int]]) -> str:
    """The figures as printable lines, each target with its verdict."""
    requests_per_thousand = figures.per_thousand(figures.total_requests)
    ratio = requests_per_thousand / LOWER_BOUND_PER_THOUSAND
    peak_mib = figures.peak_rss_bytes / 1024**2
    lines = [
        f"run success: {figures.success}; windows {figures.first_window} .. {figures.last_window}",
        f"seeded: {json.dumps(seeded.get('outreach', {}))}",
        f"extracted records: {figures.records} {json.dumps(figures.extracted)}",
        *(f"  {name}: " + ", ".join(f"{k.removeprefix('records_')}={v}" for k, v in counts.items()
                                     if k.startswith("records_"))
          for name, counts in figures.load_counts.items()),
        f"wall time: {figures.wall_seconds:.1f} s",
        f"requests: {figures.total_requests} = {requests_per_thousand:.2f} per 1,000 records; lower bound "
        f"{LOWER_BOUND_PER_THOUSAND} -> {ratio:.2f}x (target <= {REQUEST_RATIO_TARGET}x: {_verdict(ratio <= REQUEST_RATIO_TARGET)})",
        *_endpoint_lines(figures, "Outreach", figures.outreach_requests),
        *_endpoint_lines(figures, "Workbooks", figures.workbooks_requests),
        f"client CPU: {figures.client_cpu_seconds:.1f} s = {figures.per_thousand(figures.client_cpu_seconds):.3f} s "
        f"per 1,000 records (sandbox process: {figures.server_cpu_seconds:.1f} s)",
        f"client peak RSS: {peak_mib:.0f} MiB (target < 1536 MiB: "
        f"{_verdict(figures.peak_rss_bytes < PEAK_MEMORY_TARGET_BYTES)})",
    ]
    if figures.peak_traced_bytes is not None:
        lines.append(f"client peak Python heap (tracemalloc, during the run): {figures.peak_traced_bytes / 1024**2:.0f} MiB")
    return "\n".join(lines)


def _dagster_home(root: Path) -> Path:
    """A fresh DAGSTER_HOME with the project's instance settings (telemetry off, the API pools)."""
    home = root / "dagster_home"
    home.mkdir()
    shutil.copyfile(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def run_benchmark(prospects: int, *, trace_memory: bool, keep: bool, profile_path: Path | None = None) -> RunFigures:
    """Start the sandbox process, install the fields, run the initial load and print the figures."""
    root = Path(tempfile.mkdtemp(prefix="bench_pipeline_"))
    home = _dagster_home(root)
    seeded_from = datetime.now(UTC) - timedelta(days=SEED_DAYS)
    started = time.perf_counter()
    sandbox = SandboxProcess(root / "sandbox", prospects)
    try:
        print(f"sandbox seeded and serving in {time.perf_counter() - started:.1f} s", flush=True)
        install_fields(sandbox.endpoints.workbooks_url)
        defs = build_definitions(sandbox.endpoints, home)
        windows = windows_covering(defs, seeded_from, datetime.now(UTC))
        with dg.DagsterInstance.get() as instance:
            figures = measure_run(defs, instance, sandbox, windows, trace_memory=trace_memory,
                                  profile_path=profile_path)
        print(format_report(figures, sandbox.endpoints.seeded), flush=True)
        return figures
    finally:
        sandbox.stop()
        if keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the benchmark; exit 1 when the run itself failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prospects", type=int, default=100_000,
                        help="prospects to seed (accounts = prospects/5, opportunities = prospects/10)")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="also trace the Python heap peak (slows the run down noticeably)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (sandbox data, ledger, windows)")
    parser.add_argument("--profile", type=Path, metavar="FILE",
                        help="run under cProfile, dump the pstats to FILE and print the top entries "
                             "(inflates CPU and wall time: profile runs are not the benchmark's figures)")
    args = parser.parse_args(argv)
    figures = run_benchmark(args.prospects, trace_memory=args.tracemalloc, keep=args.keep,
                            profile_path=args.profile)
    return 0 if figures.success else 1


if __name__ == "__main__":
    raise SystemExit(main())
