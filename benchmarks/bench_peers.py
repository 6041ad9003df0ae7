"""Peer benchmark: our Outreach extraction and the Singer tap-outreach, on one sandbox, in one run.

    .venv/bin/python benchmarks/bench_peers.py [--prospects 20000] [--tap-version 1.2.2] [--page-size 1000]

One seeded Outreach sandbox (accounts = prospects / 5, opportunities = prospects / 10, as the seeder's
defaults; no tasks or calls) serves every tool in turn, in the benchmark's own process. Each tool runs as its
own child process, so its figures are comparable:

* wall s: process start to exit, interpreter start-up and imports included;
* working s: from the sandbox counting the tool's first request to the tool's exit (start-up excluded);
* cpu s: the child's user + system time (`wait4` rusage);
* requests: counted by the sandbox's middleware, reset before each tool; req/1k per 1,000 records;
* peak MiB: the largest resident set of the child's whole process tree (summed over its processes, polled
  every 20 ms), never below the child's own `ru_maxrss`;
* start MiB: that tree's resident memory at the sample that first saw a request (start-up and imports);
* sandbox cpu s: the benchmark process's CPU meanwhile, i.e. the sandbox serving that tool.

The tools, each reading accounts, prospects and opportunities from the beginning of time:

* ``ours (sparse)``: `engine.extract.extract_entity` with our `OutreachClient` and the mapping's sparse
  fieldsets, as the extract assets run it (opportunities with their stage names and prospect roles).
* ``ours (all)``: the same with every attribute (the assets' `all_attributes` run config).
* ``tap-outreach``: the PyPI package, installed by this script with pip into its own virtualenv
  (`.bench/tap-outreach-<version>`, gitignored; never a dependency of the project), run in discover mode,
  the three streams and all their fields selected, then synced with `page_size` 1,000 and stdout (the
  Singer messages) to /dev/null; its records are the `record_count` metrics it logs.

tap-outreach hardcodes ``https://api.outreach.io`` (its `OutreachClient.BASE_URL` and the token URL in
`OutreachClient.refresh`) and has no setting for another host. The script therefore writes a
`sitecustomize.py` into the tap's virtualenv (and only there) which, when `BENCH_OUTREACH_BASE_URL` is set,
rewrites the origin of every `requests.Session.request` URL starting with ``https://api.outreach.io`` to that
base URL. The tap's code, requests, parameters and paging are otherwise untouched. BENCHMARKS.md ("Peers")
records the figures with this command.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STREAMS = ("accounts", "prospects", "opportunities")
DEFAULT_TAP_VERSION = "1.2.2"
TAP_ORIGIN = "https://api.outreach.io"
BASE_URL_VARIABLE = "BENCH_OUTREACH_BASE_URL"
POLL_SECONDS = 0.02
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
#: Before every seeded `updatedAt`; the tap's `start_date` and our open lower bound.
BEGINNING = datetime(2000, 1, 1, tzinfo=UTC)
METRIC_LINE = re.compile(r"METRIC: (\{.*\})\s*$")
TOOLS = ("ours-sparse", "ours-all", "tap")

SITECUSTOMIZE = f'''\
"""Written by benchmarks/bench_peers.py into the tap-outreach benchmark virtualenv; nothing else loads it.

tap-outreach hardcodes {TAP_ORIGIN} and has no setting for another host. When {BASE_URL_VARIABLE} is set,
every requests.Session request to a URL starting with {TAP_ORIGIN} goes to that base URL instead (same path,
query, headers and body). Without the variable nothing is changed.
"""

import os

_TARGET = os.environ.get("{BASE_URL_VARIABLE}", "").rstrip("/")
if _TARGET:
    import requests.sessions

    _ORIGIN = "{TAP_ORIGIN}"
    _request = requests.sessions.Session.request

    def _to_sandbox(self, method, url, *args, **kwargs):
        if isinstance(url, str) and url.startswith(_ORIGIN):
            url = _TARGET + url[len(_ORIGIN):]
        return _request(self, method, url, *args, **kwargs)

    requests.sessions.Session.request = _to_sandbox
'''


# ------------------------------------------------------------------------------------------- measuring


@dataclass
class ToolRun:
    """What one tool did against the sandbox."""

    tool: str
    records: dict[str, int]
    wall_seconds: float
    #: From the sandbox seeing the tool's first request to the tool's exit: start-up and imports excluded.
    working_seconds: float
    cpu_seconds: float
    peak_rss_bytes: int
    requests: dict[str, int]
    exit_code: int
    #: Resident memory of the tool's process tree when its first request arrived (start-up and imports).
    start_rss_bytes: int
    #: CPU the benchmark process used meanwhile: the sandbox serving this tool (and the 20 ms memory poll).
    sandbox_cpu_seconds: float

    @property
    def total_records(self) -> int:
        return sum(self.records.values())

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    @property
    def requests_per_thousand(self) -> float:
        return self.total_requests * 1000 / self.total_records if self.total_records else float("nan")

    @property
    def peak_mib(self) -> float:
        return self.peak_rss_bytes / 1024**2


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of `pid` and all its descendants now (0 for processes already gone)."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            total += int(Path(f"/proc/{current}/statm").read_text().split()[1]) * PAGE_BYTES
        except (OSError, IndexError, ValueError):
            continue
        pending.extend(_children(current))
    return total


@dataclass
class _TreePoller:
    """Samples the process tree's resident memory on a thread until stopped; keeps the peak, and notes when
    `requests_seen()` first turns positive (the tool's first request reached the sandbox)."""

    pid: int
    requests_seen: Callable[[], int]
    peak: int = 0
    first_request_at: float | None = None
    #: The tree's resident memory at the sample that first saw a request: start-up and imports, before any data.
    rss_at_first_request: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self._stop.is_set():
            rss = tree_rss_bytes(self.pid)
            self.peak = max(self.peak, rss)
            if self.first_request_at is None and self.requests_seen() > 0:
                self.first_request_at, self.rss_at_first_request = time.perf_counter(), rss
            self._stop.wait(POLL_SECONDS)

    def stop(self) -> None:
        self._stop.set()


@dataclass
class Measured:
    """One child process's exit code, times and peak memory."""

    exit_code: int
    wall_seconds: float
    working_seconds: float
    cpu_seconds: float
    peak_rss_bytes: int
    start_rss_bytes: int


def run_measured(command: Sequence[str], *, env: dict[str, str], stdout: Any, stderr: Any,
                 requests_seen: Callable[[], int]) -> Measured:
    """Run `command` and measure it; `requests_seen` counts the requests the sandbox has received so far."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=stdout, stderr=stderr, cwd=PROJECT_ROOT)
    poller = _TreePoller(process.pid, requests_seen)
    thread = threading.Thread(target=poller.run, daemon=True)
    thread.start()
    # wait4 rather than Popen.wait: it also returns the child's own rusage (CPU, ru_maxrss in KiB).
    _, status, usage = os.wait4(process.pid, 0)
    ended = time.perf_counter()
    process.returncode = os.waitstatus_to_exitcode(status)
    poller.stop()
    thread.join()
    first_request = poller.first_request_at if poller.first_request_at is not None else started
    return Measured(
        exit_code=process.returncode,
        wall_seconds=ended - started,
        working_seconds=ended - first_request,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        peak_rss_bytes=max(poller.peak, usage.ru_maxrss * 1024),
        start_rss_bytes=poller.rss_at_first_request,
    )


# ------------------------------------------------------------------------------------------ tap-outreach


def tap_venv_path(version: str) -> Path:
    """Where the tap's own virtualenv lives (gitignored)."""
    return PROJECT_ROOT / ".bench" / f"tap-outreach-{version}"


def ensure_tap(venv: Path, version: str) -> Path:
    """Install tap-outreach `version` into its own virtualenv at `venv` (once) and (re)write the sitecustomize.

    Returns:
        The `tap-outreach` executable.
    """
    stamp = venv / f".installed-tap-outreach-{version}"
    if not stamp.exists():
        print(f"installing tap-outreach=={version} into {venv} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        f"tap-outreach=={version}"], check=True)
        stamp.touch()
    site_packages = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    (Path(site_packages) / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return venv / "bin" / "tap-outreach"


def tap_config(page_size: int) -> dict[str, Any]:
    """The tap's config: the sandbox's published, sandbox-only OAuth app and bootstrap refresh token."""
    from outreach_pipeline.sandbox.credentials import SANDBOX_OUTREACH_AUTH

    return {
        "start_date": BEGINNING.strftime("%Y-%m-%dT%H:%M:%SZ"),
        **SANDBOX_OUTREACH_AUTH,
        "page_size": page_size,
        "request_timeout": 300,
    }


def select_streams(catalog: dict[str, Any], streams: Sequence[str]) -> dict[str, Any]:
    """The discovered catalog with `streams` and every one of their fields selected, every other stream not."""
    for entry in catalog["streams"]:
        chosen = entry["tap_stream_id"] in streams
        for item in entry["metadata"]:
            if not item["breadcrumb"] or item["metadata"].get("inclusion") != "unsupported":
                item["metadata"]["selected"] = chosen
    return catalog


def tap_record_counts(log_text: str) -> dict[str, int]:
    """Records per stream, summed from the `record_count` metrics a Singer tap logs."""
    counts: Counter[str] = Counter()
    for line in log_text.splitlines():
        match = METRIC_LINE.search(line)
        if match is None:
            continue
        metric = json.loads(match.group(1))
        if metric.get("metric") == "record_count":
            counts[metric.get("tags", {}).get("endpoint", "?")] += int(metric["value"])
    return dict(counts)


# ---------------------------------------------------------------------------------------- our extraction


def extract_ours(outreach_url: str, *, all_attributes: bool) -> dict[str, int]:
    """Extract every record of the three entities as the extract assets do; return the rows per entity.

    Runs in the measured child process. Each entity's frame is dropped before the next is read, as the assets
    hand theirs to the IO manager.
    """
    from outreach_pipeline.clients.outreach import OutreachClient
    from outreach_pipeline.engine.extract import extract_entity
    from outreach_pipeline.mapping.models import load_mapping_set
    from outreach_pipeline.mapping.transform import outreach_fields
    from outreach_pipeline.sandbox.credentials import SANDBOX_OUTREACH_AUTH

    mappings = load_mapping_set()
    # An end past every seeded updatedAt: the next full hour after now, plus one.
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=2)
    client = OutreachClient(outreach_url, **SANDBOX_OUTREACH_AUTH)
    counts: dict[str, int] = {}
    try:
        for name in STREAMS:
            entity = mappings.entity(name)
            fields = None if all_attributes else {f"fields[{entity.outreach_type}]": ",".join(outreach_fields(entity))}
            extract = extract_entity(client, name, BEGINNING, end, from_beginning=True, fields=fields)
            counts[name] = len(extract.frame)
            del extract
    finally:
        client.close()
    return counts


# ------------------------------------------------------------------------------------------------ the run


def run_tool(tool: str, *, outreach_url: str, tap: Path | None, work: Path, page_size: int) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that run `tool` against `outreach_url`."""
    env = dict(os.environ)
    if tool == "tap":
        assert tap is not None
        (work / "tap_config.json").write_text(json.dumps(tap_config(page_size)))
        env[BASE_URL_VARIABLE] = outreach_url
        discovered = subprocess.run([str(tap), "--config", str(work / "tap_config.json"), "--discover"],
                                    env=env, check=True, capture_output=True, text=True).stdout
        (work / "tap_catalog.json").write_text(json.dumps(select_streams(json.loads(discovered), STREAMS)))
        return [str(tap), "--config", str(work / "tap_config.json"), "--catalog", str(work / "tap_catalog.json")], env
    mode = ["--all-attributes"] if tool == "ours-all" else []
    return [sys.executable, str(Path(__file__).resolve()), "extract-ours", "--outreach-url", outreach_url, *mode], env


def measure_tool(tool: str, sandbox: Any, *, tap: Path | None, work: Path, page_size: int) -> ToolRun:
    """Run one tool against the sandbox with its request counters reset; raise when it failed."""
    command, env = run_tool(tool, outreach_url=sandbox.outreach_url, tap=tap, work=work, page_size=page_size)
    log_path, out_path = work / f"{tool}.log", work / f"{tool}.out"
    stats = sandbox.outreach_middleware.stats
    stats.reset()
    sandbox_cpu_before = time.process_time()
    with log_path.open("w") as log, (open(os.devnull, "w") if tool == "tap" else out_path.open("w")) as out:
        measured = run_measured(command, env=env, stdout=out, stderr=log,
                                requests_seen=lambda: stats.snapshot()["total"])
    sandbox_cpu = time.process_time() - sandbox_cpu_before
    requests_used = stats.snapshot()["requests"]
    if measured.exit_code != 0:
        raise RuntimeError(f"{tool} exited with {measured.exit_code}; last log lines:\n"
                           + "\n".join(log_path.read_text().splitlines()[-20:]))
    records = tap_record_counts(log_path.read_text()) if tool == "tap" else json.loads(out_path.read_text())
    return ToolRun(tool, records, measured.wall_seconds, measured.working_seconds, measured.cpu_seconds,
                   measured.peak_rss_bytes, requests_used, measured.exit_code, measured.start_rss_bytes, sandbox_cpu)


def tool_label(tool: str, tap_version: str) -> str:
    return {"ours-sparse": "ours (sparse fieldsets)", "ours-all": "ours (all attributes)"}.get(
        tool, f"tap-outreach {tap_version}")


def format_report(runs: Sequence[ToolRun], tap_version: str) -> str:
    """A table of every run, the request endpoints per tool, and the tap / ours ratios of the medians."""
    lines = [f"{'tool':<26} {'records':>8} {'wall s':>7} {'working s':>9} {'cpu s':>7} {'requests':>8} "
             f"{'req/1k':>7} {'peak MiB':>9} {'start MiB':>9} {'sandbox cpu s':>13}"]
    for run in runs:
        lines.append(f"{tool_label(run.tool, tap_version):<26} {run.total_records:>8} {run.wall_seconds:>7.1f} "
                     f"{run.working_seconds:>9.1f} {run.cpu_seconds:>7.1f} {run.total_requests:>8} "
                     f"{run.requests_per_thousand:>7.2f} {run.peak_mib:>9.0f} {run.start_rss_bytes / 1024**2:>9.0f} {run.sandbox_cpu_seconds:>13.1f}")
    by_tool: dict[str, list[ToolRun]] = {}
    for run in runs:
        by_tool.setdefault(run.tool, []).append(run)
    for tool, tool_runs in by_tool.items():
        lines.append(f"{tool_label(tool, tap_version)}: records {json.dumps(tool_runs[-1].records)}; requests "
                     + ", ".join(f"{endpoint} {count}" for endpoint, count in sorted(tool_runs[-1].requests.items())))

    def median(tool: str, attribute: str) -> float:
        return statistics.median(getattr(run, attribute) for run in by_tool[tool])

    if "tap" in by_tool:
        for ours in ("ours-sparse", "ours-all"):
            if ours not in by_tool:
                continue
            ratios = {label: median("tap", attribute) / median(ours, attribute)
                      for label, attribute in (("wall", "wall_seconds"), ("working", "working_seconds"), ("cpu", "cpu_seconds"),
                                               ("requests", "total_requests"), ("peak memory", "peak_rss_bytes"))}
            lines.append(f"ratio tap-outreach / {tool_label(ours, tap_version)}: "
                         + ", ".join(f"{label} {value:.2f}x" for label, value in ratios.items()))
    return "\n".join(lines)


def run_benchmark(args: argparse.Namespace) -> list[ToolRun]:
    """Seed and start the sandbox, install the tap, run every tool `--repeat` times in turn, print the table."""
    from outreach_pipeline.sandbox.runtime import SandboxConfig, start_sandbox

    tap = ensure_tap(args.tap_venv or tap_venv_path(args.tap_version), args.tap_version) if "tap" in args.tools else None
    with tempfile.TemporaryDirectory(prefix="bench_peers_") as tmp:
        work = Path(tmp)
        config = SandboxConfig(
            data_dir=work / "sandbox", prospects=args.prospects, accounts=args.accounts,
            opportunities=args.opportunities, tasks=0, calls=0, workbooks_people=0, outreach_port=0, workbooks_port=0,
        )
        started = time.perf_counter()
        with start_sandbox(config) as sandbox:
            print(f"sandbox seeded and serving in {time.perf_counter() - started:.1f} s: "
                  f"{json.dumps(sandbox.seeded.get('outreach', {}))}", flush=True)
            runs = []
            for round_number in range(args.repeat):
                for tool in args.tools:
                    run = measure_tool(tool, sandbox, tap=tap, work=work, page_size=args.page_size)
                    print(f"round {round_number + 1}: {tool_label(tool, args.tap_version)}: {run.total_records} records, "
                          f"{run.wall_seconds:.1f} s, {run.total_requests} requests, {run.peak_mib:.0f} MiB", flush=True)
                    runs.append(run)
        print(format_report(runs, args.tap_version), flush=True)
        return runs


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The benchmark's options, or `extract-ours` (the child process measured as "ours")."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--prospects", type=int, default=20_000)
    parser.add_argument("--accounts", type=int, default=None, help="default: prospects / 5")
    parser.add_argument("--opportunities", type=int, default=None, help="default: prospects / 10")
    parser.add_argument("--tap-version", default=DEFAULT_TAP_VERSION)
    parser.add_argument("--tap-venv", type=Path, default=None, help="default: .bench/tap-outreach-<version>")
    parser.add_argument("--page-size", type=int, default=1000, help="the tap's page_size (ours always reads 1,000)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of every tool; ratios use the medians")
    parser.add_argument("--tools", nargs="+", choices=TOOLS, default=list(TOOLS))
    sub = parser.add_subparsers(dest="command")
    child = sub.add_parser("extract-ours", help="(internal) our extraction, run as the measured child process")
    child.add_argument("--outreach-url", required=True)
    child.add_argument("--all-attributes", action="store_true")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.prospects < 0 or not 1 <= args.page_size <= 1000:
        parser.error("--repeat must be at least 1, --prospects at least 0, --page-size 1..1000")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "extract-ours":
        print(json.dumps(extract_ours(args.outreach_url, all_attributes=args.all_attributes)))
        return 0
    run_benchmark(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
