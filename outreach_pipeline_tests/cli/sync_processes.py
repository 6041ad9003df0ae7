"""Helpers for the command-level tests: a sandbox in its own process, `outreach-pipeline sync` subprocesses on
temporary DAGSTER_HOMEs, and counts read back over HTTP from the Workbooks sandbox and from the ledger.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
import sqlalchemy as sa

from outreach_pipeline.clients.workbooks import WorkbooksClient
from outreach_pipeline.engine.ledger import SyncLedger
from outreach_pipeline.engine.writer_lock import hold_writer_lock

BIN = Path(sys.executable).parent
CLI = str(BIN / "outreach-pipeline")
PROJECT_INSTANCE_CONFIG = Path(__file__).resolve().parents[2] / "dagster.yaml"
LOCK_WAIT = "waiting for the writer lock on workbooks/people"
#: Every Workbooks people write takes 3 s, so whichever sync writes people first still holds the lock when the
#: other asks for it again (it polls every second).
SLOW_PEOPLE_WRITES = "slow:delay_ms=3000:path=/crm/people:methods=PUT"


@contextmanager
def sandbox_process(data_dir: Path, prospects: int, faults: str = "") -> Iterator[dict]:
    process = subprocess.Popen(
        [CLI, "sandbox", "up", "--json", "--outreach-port", "0", "--workbooks-port", "0", "--data-dir", str(data_dir),
         "--prospects", str(prospects), *(["--faults", faults] if faults else [])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = process.stdout.readline()
        assert line, process.stderr.read()
        info = json.loads(line)
        installed = subprocess.run([CLI, "install", "--skip-preflight", "--workbooks-url", info["workbooks"]["url"]],
                                   capture_output=True, text=True, timeout=120)
        assert installed.returncode == 0, installed.stdout + installed.stderr
        yield info
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(30)


def sync_env(info: dict, home: Path, ledger_url: str | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OUTREACH_", "WORKBOOKS_"))}
    env.update({
        "DAGSTER_HOME": str(home),
        "OUTREACH_BASE_URL": info["outreach"]["url"],
        "WORKBOOKS_BASE_URL": info["workbooks"]["url"],
        # The seeded data spans the last days; keep the partition set small and recent.
        "OUTREACH_PIPELINE_PARTITIONS_START": (datetime.now(UTC) - timedelta(days=3)).strftime("%Y-%m-%d-00:00"),
    })
    if ledger_url:
        env["OUTREACH_PIPELINE_LEDGER_URL"] = ledger_url
    home.mkdir(parents=True, exist_ok=True)
    return env


def start_sync(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([CLI, "sync", "--windows", "24", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen[str], timeout: float = 240) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def people_per_outreach_id(info: dict) -> Counter[int]:
    client = WorkbooksClient(info["workbooks"]["url"], api_key=info["workbooks"]["api_key"])
    try:
        rows = client.iter_records("crm/people", (), ["id", "cf_person_outreach_id"])
        return Counter(int(row["cf_person_outreach_id"]) for row in rows if row.get("cf_person_outreach_id"))
    finally:
        client.close()


def ledger_scalar(url: str, query: str, **params: object) -> object:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(sa.text(query), params).scalar()
    finally:
        engine.dispose()


def set_faults(url: str, spec: str | None) -> None:
    if spec is None:
        requests.delete(f"{url}/_sandbox/faults", timeout=10).raise_for_status()
    else:
        requests.post(f"{url}/_sandbox/faults", json={"spec": spec}, timeout=10).raise_for_status()


def assert_two_overlapping_syncs_write_each_person_once(info: dict, env_a: dict, env_b: dict, ledger_url: str) -> None:
    """Two syncs whose people loads certainly overlap write each person once.

    The overlap is arranged, not hoped for: the test holds the people writer lock itself until both syncs
    report waiting for it, so both are inside their people load, with the same people to create, when it lets
    go. Only the ledger's lock then stands between them and two copies of each person.
    """
    ledger = SyncLedger(ledger_url)  # creates the ledger's tables, the lock's among them
    syncs: list[StreamedProcess] = []
    try:
        with hold_writer_lock(ledger.engine, target="workbooks", entity="people", run_id="test-gate") as gate:
            syncs = [StreamedProcess(start_sync(env_a)), StreamedProcess(start_sync(env_b))]
            deadline = time.monotonic() + 240
            while not all(LOCK_WAIT in sync.stderr() for sync in syncs):
                exited = [sync for sync in syncs if sync.process.poll() is not None]
                assert not exited and time.monotonic() < deadline, "".join(sync.stderr()[-3000:] for sync in syncs)
                time.sleep(0.5)
            assert all(f"held by run {gate.run_id}" in sync.stderr() for sync in syncs)
        (code_a, err_a), (code_b, err_b) = (sync.finish() for sync in syncs)
    finally:
        for sync in syncs:
            if sync.process.poll() is None:
                sync.process.kill()
        ledger.dispose()
    assert (code_a, code_b) == (0, 0), err_a[-2000:] + err_b[-2000:]
    people = people_per_outreach_id(info)
    assert people and max(people.values()) == 1, {k: n for k, n in people.items() if n > 1}
    linked = ledger_scalar(ledger_url, "SELECT count(*) FROM sync_record_state WHERE entity = 'prospects' "
                                       "AND workbooks_id IS NOT NULL")
    assert linked == len(people)


class StreamedProcess:
    """A process whose output is read as it comes (so a test can wait for a line) and kept."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self._err: list[str] = []
        self._out: list[str] = []
        self._readers = [threading.Thread(target=self._drain, args=(stream, lines), daemon=True)
                         for stream, lines in ((process.stderr, self._err), (process.stdout, self._out))]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _drain(stream: object, lines: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            lines.append(line)

    def stderr(self) -> str:
        return "".join(self._err)

    def finish(self, timeout: float = 240) -> tuple[int, str]:
        code = self.process.wait(timeout)
        for reader in self._readers:
            reader.join(10)
        return code, self.stderr()
