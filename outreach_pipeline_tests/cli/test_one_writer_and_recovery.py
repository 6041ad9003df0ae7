"""Production safety through the commands, with real processes: one writer per target, crash recovery without
hands, exit codes and short failure messages.

Each test starts its own `outreach-pipeline sandbox up` process (a small seed; faults where a test needs a
long or failing load) and runs `outreach-pipeline sync` as subprocesses on temporary DAGSTER_HOMEs. Counts
are read back over HTTP from the Workbooks sandbox and from the ledger's database.
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
#: Every Workbooks people request takes 6 s, so one run's people load (lookups, writes) lasts far longer than
#: the two runs' difference in start-up: their loads overlap whatever the machine's load.
SLOW_PEOPLE = "slow:delay_ms=6000:path=/crm/people"


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


def test_two_syncs_on_two_instances_sharing_a_sqlite_ledger_never_duplicate_people(tmp_path: Path) -> None:
    # Two DAGSTER_HOMEs: Dagster's pools cannot see each other, only the ledger's writer lock serialises them.
    with sandbox_process(tmp_path / "sandbox", 70, faults=SLOW_PEOPLE) as info:
        ledger_url = f"sqlite:///{tmp_path / 'shared_ledger.db'}"
        env_a = sync_env(info, tmp_path / "home_a", ledger_url)
        env_b = sync_env(info, tmp_path / "home_b", ledger_url)
        assert_two_overlapping_syncs_write_each_person_once(info, env_a, env_b, ledger_url)


def test_a_sync_on_a_postgres_instance_beside_another_instance_on_a_postgres_ledger(
    tmp_path: Path, postgres_database_url: str
) -> None:
    home_a = tmp_path / "home_a"
    home_a.mkdir()
    # Instance A on Postgres (the project's pools and run monitoring kept), instance B on SQLite; one ledger.
    (home_a / "dagster.yaml").write_text(PROJECT_INSTANCE_CONFIG.read_text()
                                         + f"storage:\n  postgres:\n    postgres_url: {postgres_database_url}\n")
    with sandbox_process(tmp_path / "sandbox", 70, faults=SLOW_PEOPLE) as info:
        env_a = sync_env(info, home_a, postgres_database_url)
        env_b = sync_env(info, tmp_path / "home_b", postgres_database_url)
        assert_two_overlapping_syncs_write_each_person_once(info, env_a, env_b, postgres_database_url)
    runs = ledger_scalar(postgres_database_url, "SELECT count(*) FROM runs WHERE status = 'SUCCESS'")
    assert runs == 1  # instance A's run is in Postgres run storage


def test_a_sync_killed_mid_load_is_recovered_by_the_next_sync_without_hands(
    tmp_path: Path, postgres_database_url: str
) -> None:
    # The production profile: the Dagster instance (runs, events, pool slots) and the ledger on Postgres.
    home = tmp_path / "home"
    ledger_url = postgres_database_url
    # About 150 people in the last 24 windows (a third of the seeded updates, spread over 3 days): two write
    # batches of at most 100 whatever the hour. (150 prospects gave 95-110 people: sometimes a single batch.)
    # Slow people writes (6 s each) leave time to kill between the batches, even on a loaded machine.
    with sandbox_process(tmp_path / "sandbox", 220, faults="slow:delay_ms=6000:path=/crm/people:methods=PUT") as info:
        env = {**sync_env(info, home, ledger_url), "DAGSTER_PG_URL": postgres_database_url}
        killed = start_sync(env, "--profile", "production")
        created = 0
        deadline = time.monotonic() + 150
        while created == 0:
            assert time.monotonic() < deadline and killed.poll() is None, "the first batch was never recorded"
            time.sleep(0.5)
            try:
                created = ledger_scalar(ledger_url, "SELECT count(*) FROM sync_history WHERE entity = 'prospects' "
                                                    "AND outcome = 'created'") or 0
            except sa.exc.ProgrammingError:  # the ledger's tables are not there yet
                created = 0
        killed.send_signal(signal.SIGKILL)
        killed.wait(10)
        killed_run = ledger_scalar(ledger_url, "SELECT run_id FROM sync_history WHERE entity = 'prospects' LIMIT 1")
        # Killed mid-load: its people load never finished, yet its first batch's creates are in the history.
        assert ledger_scalar(ledger_url, "SELECT count(*) FROM sync_run WHERE run_id = :run AND entity = 'prospects' "
                                         "AND finished_at IS NULL", run=killed_run) == 1
        set_faults(info["workbooks"]["url"], None)

        # The next sync: the killed run's pool slot and writer lock are freed without anyone's help.
        code, out, err = finish(start_sync(env, "--profile", "production", "--max-wait", "60"), timeout=180)
        assert code == 0, out + err[-3000:]
        assert f"run {killed_run} was left STARTED" in err, err
        people = people_per_outreach_id(info)

    # The killed run's creates are in the history, and nothing was created twice.
    assert max(people.values()) == 1
    assert len(people) > 100, "one write batch held every person: nothing was left to kill between batches"
    killed_creates = ledger_scalar(ledger_url, "SELECT count(*) FROM sync_history WHERE run_id = :run AND "
                                               "outcome = 'created' AND entity = 'prospects'", run=killed_run)
    assert killed_creates == created >= 1
    all_creates = ledger_scalar(ledger_url, "SELECT count(*) FROM sync_history WHERE outcome = 'created' AND "
                                            "entity = 'prospects'")
    # A write in flight at the kill may have landed unrecorded: the rerun links it (found by its link key).
    assert killed_creates <= all_creates <= len(people)
    # The same state a fault-free run ends in: every prospect the windows hold is linked to its one Person.
    linked = ledger_scalar(ledger_url, "SELECT count(*) FROM sync_record_state WHERE entity = 'prospects' AND "
                                       "workbooks_id IS NOT NULL")
    unsynced = ledger_scalar(ledger_url, "SELECT count(*) FROM sync_record_state WHERE entity = 'prospects' AND "
                                         "workbooks_id IS NULL AND last_outcome != 'failed'")
    assert linked == len(people) and unsynced == 0


def test_exit_codes_and_short_messages(tmp_path: Path) -> None:
    # Most people writes answer 503: the load fails per record and the failure_rate check is at ERROR.
    with sandbox_process(tmp_path / "sandbox", 60, faults="status:status=503:rate=0.9:path=/crm/people:methods=PUT") as info:
        code, out, err = finish(start_sync(sync_env(info, tmp_path / "home")))
        assert code == 1, out + err
        assert "| people" in out  # the summary is printed anyway
        assert "failed check at ERROR severity: workbooks/people: failure_rate" in err, err

        # Wrong credentials: one paragraph naming the system and what to set, no traceback.
        env = {**sync_env(info, tmp_path / "home_creds"), "WORKBOOKS_API_KEY": "not-the-key",
               "OUTREACH_PIPELINE_ALLOW_MIXED": "1"}
        code, out, err = finish(start_sync(env))
        output = out + err
        assert code == 1 and len(output.strip().splitlines()) <= 10, output
        assert "Traceback" not in output and "not-the-key" not in output
        assert "Workbooks" in err and "refused the credentials" in err and "WORKBOOKS_API_KEY" in err, err

    # A service that is down (the sandbox is stopped): the same, naming the URL variable to check.
    code, out, err = finish(start_sync(sync_env(info, tmp_path / "home_down")))
    output = out + err
    assert code == 1 and len(output.strip().splitlines()) <= 10, output
    assert "Traceback" not in output
    assert "could not be reached" in err and "OUTREACH_BASE_URL" in err and "WORKBOOKS_BASE_URL" in err, err
