"""Helpers for the command-level tests: a sandbox in its own process, `outreach-pipeline sync` subprocesses on
temporary DAGSTER_HOMEs, and counts read back over HTTP from the Workbooks sandbox and from the ledger.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
import sqlalchemy as sa

from outreach_pipeline.clients.workbooks import WorkbooksClient

BIN = Path(sys.executable).parent
CLI = str(BIN / "outreach-pipeline")
PROJECT_INSTANCE_CONFIG = Path(__file__).resolve().parents[2] / "dagster.yaml"
LOCK_WAIT = "waiting for the writer lock on workbooks/people"
#: Every Workbooks people request takes 6 s and every people write 20 s (one delay per request: the first rule that
#: matches), so the people load of the run that writes them (lookups, then a 20 s write) lasts far longer than
#: the two runs' difference in reaching it, even when one instance is much faster than the other (SQLite with
#: batched events beside Postgres) and the machine is loaded: their loads overlap.
SLOW_PEOPLE = "slow:delay_ms=20000:path=/crm/people:methods=PUT,slow:delay_ms=6000:path=/crm/people"


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
    first = start_sync(env_a)
    time.sleep(1)
    second = start_sync(env_b)
    code_a, _, err_a = finish(first)
    code_b, _, err_b = finish(second)
    assert (code_a, code_b) == (0, 0), err_a[-2000:] + err_b[-2000:]
    people = people_per_outreach_id(info)
    assert people and max(people.values()) == 1, {k: n for k, n in people.items() if n > 1}
    # They did overlap: one of them waited for the other's people load, naming its run.
    assert LOCK_WAIT in err_a + err_b and "held by run " in err_a + err_b, err_a + err_b
    linked = ledger_scalar(ledger_url, "SELECT count(*) FROM sync_record_state WHERE entity = 'prospects' "
                                       "AND workbooks_id IS NOT NULL")
    assert linked == len(people)
