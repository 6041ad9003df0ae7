"""`outreach-pipeline dev` (the README's run command) in its own session, on free ports under a temporary
directory, and everything it started stopped afterwards."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import requests

CLI = str(Path(sys.executable).with_name("outreach-pipeline"))
#: Starting the sandbox, installing the fields and `dg dev` loading the code location take about 30 s on an
#: idle machine; the suite's other workers can triple that.
READY_TIMEOUT_SECONDS = 180.0


@dataclass(frozen=True)
class DevServer:
    url: str  # the Dagster UI, e.g. http://127.0.0.1:41234
    log: Path  # the command's stdout and stderr


def free_port() -> int:
    """A port nobody listens on now (the command checks it again and names it if it was taken since)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _session_members(session: int) -> list[int]:
    """Every live process of the session (dagster's code servers and run workers included)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getsid(int(entry)) == session:
                members.append(int(entry))
        except (ProcessLookupError, PermissionError):
            continue
    return members


def _stop_session(process: subprocess.Popen[bytes], grace_seconds: float = 30.0) -> None:
    """Ctrl-C for the whole session, as a terminal sends it; whatever is left after the grace period is killed."""
    with _ignore_gone():
        os.killpg(process.pid, signal.SIGINT)
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline and _session_members(process.pid):
        with _ignore_gone():
            process.wait(0.5)
    for pid in _session_members(process.pid):
        with _ignore_gone():
            os.kill(pid, signal.SIGKILL)
    with _ignore_gone():
        process.wait(10)


def _ignore_gone() -> suppress:
    """A process that has already gone, or is still going after a wait, is no error while stopping."""
    return suppress(ProcessLookupError, subprocess.TimeoutExpired)


def _wait_until_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"`outreach-pipeline dev` exited with {process.returncode}:\n{log.read_text()}")
        try:
            # The webserver answers before the code location is loaded: wait until its jobs are listed.
            answer = requests.post(f"{url}/graphql", timeout=5, json={
                "query": "{ repositoriesOrError { ... on RepositoryConnection { nodes { jobs { name } } } } }"})
            nodes = answer.json()["data"]["repositoriesOrError"].get("nodes") or []
            if any(job["name"] == "outreach_to_workbooks_job" for node in nodes for job in node["jobs"]):
                return
        except (requests.RequestException, ValueError, KeyError, TypeError):
            pass
        time.sleep(1)
    raise AssertionError(f"the Dagster UI at {url} was not ready within {READY_TIMEOUT_SECONDS:.0f} s:\n"
                         f"{log.read_text()}")


@contextmanager
def dev_server(root: Path, data_dir: Path, prospects: int, partitions_start: str) -> Iterator[DevServer]:
    """Run `outreach-pipeline dev` on `data_dir` (sandbox on free ports, no simulator) until the block ends.

    Args:
        root: where its DAGSTER_HOME and log go.
        data_dir: the sandbox's data (seeded when empty).
        prospects: the seed's size when `data_dir` is empty.
        partitions_start: the first sync window (`OUTREACH_PIPELINE_PARTITIONS_START`).
    """
    port = free_port()
    log = root / "dev.log"
    # Only the sandbox and this test's settings: nothing from the caller's OUTREACH_*/WORKBOOKS_* variables.
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OUTREACH_", "WORKBOOKS_"))}
    env["OUTREACH_PIPELINE_PARTITIONS_START"] = partitions_start
    # The planted windows' counts are the test's: a first sync landing before the UI's backfill would leave
    # that backfill nothing to create (test_first_sync_and_dry_run.py covers the first sync).
    env["OUTREACH_PIPELINE_FIRST_SYNC_ON_START"] = "false"
    command = [CLI, "dev", "--port", str(port), "--dagster-home", str(root / "dagster_home"),
               "--data-dir", str(data_dir), "--outreach-port", "0", "--workbooks-port", "0",
               "--prospects", str(prospects), "--no-simulate"]
    with log.open("wb") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_until_ready(url, process, log)
        yield DevServer(url=url, log=log)
    finally:
        _stop_session(process)
