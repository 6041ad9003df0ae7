"""End to end through the commands a user types: the sandbox, `install`, `sync`, `history`, and Dagster's CLI.

Every process is real: the sandbox runs as `outreach-pipeline sandbox up` in its own process, and the
pipeline runs through `outreach-pipeline sync` and `dagster asset materialize` against it, on a real
instance in a temporary DAGSTER_HOME.
"""

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from outreach_pipeline.defs.assets import FLOWS

BIN = Path(sys.executable).parent
CLI = str(BIN / "outreach-pipeline")
DAGSTER = str(BIN / "dagster")


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Iterator[dict]:
    data_dir = tmp_path_factory.mktemp("sandbox")
    process = subprocess.Popen(
        [CLI, "sandbox", "up", "--json", "--outreach-port", "0", "--workbooks-port", "0",
         "--data-dir", str(data_dir), "--prospects", "150"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = process.stdout.readline()
        assert line, process.stderr.read()
        yield json.loads(line)
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(20)


@pytest.fixture(scope="module")
def env(sandbox, tmp_path_factory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("dagster_home")
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "OUTREACH_BASE_URL": sandbox["outreach"]["url"],
        "WORKBOOKS_BASE_URL": sandbox["workbooks"]["url"],
        # The seeded data spans the last days; keep the partition set small and recent.
        "OUTREACH_PIPELINE_PARTITIONS_START": (datetime.now(UTC) - timedelta(days=3)).strftime("%Y-%m-%d-00:00"),
    }


def _run(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)


def _summary(output: str) -> dict[str, dict[str, str]]:
    """The `sync` summary table (GitHub format) as {entity: {column: value}}."""
    lines = [line for line in output.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")), strict=True)) for line in lines[2:]]
    return {row["entity"]: row for row in rows}


def _pinned_windows() -> tuple[str, str]:
    """The three most recent complete windows when the test starts (what `--windows 3` meant), as explicit keys.

    Both syncs name the same keys, so an hour boundary passing between them cannot change what the second
    covers (with `--windows N` it would move the range on by an hour).
    """
    last = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    return (last - timedelta(hours=2)).strftime("%Y-%m-%d-%H:%M"), last.strftime("%Y-%m-%d-%H:%M")


def test_install_sync_history_and_rerun(sandbox, env):
    installed = _run([CLI, "install", "--workbooks-url", env["WORKBOOKS_BASE_URL"], "--outreach-url", env["OUTREACH_BASE_URL"]], env)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert "Preflight of accounts, prospects, opportunities: OK" in installed.stdout
    assert "sandbox-api-key" not in installed.stdout + installed.stderr

    first_window, last_window = _pinned_windows()
    first = _run([CLI, "sync", "--from", first_window, "--to", last_window], env)
    assert first.returncode == 0, first.stdout + first.stderr[-3000:]
    table = first.stdout
    assert "| people" in table and "| organisations" in table and "| opportunities" in table
    assert f"windows {first_window} .. {last_window}" in table
    written = _summary(table)
    assert set(written) == {flow.workbooks_name for flow in FLOWS}, table  # every load, engagement included
    # The seed changes prospects in every recent hour: the first sync must have created People.
    assert int(written["people"]["created"]) > 0, table
    assert all(int(row["created"]) + int(row["updated"]) + int(row["unchanged"]) + int(row["skipped"])
               + int(row["failed"]) == int(row["extracted"]) for row in written.values()), table

    stats = requests.get(f"{env['WORKBOOKS_BASE_URL']}/_sandbox/stats", timeout=10).json()["requests"]
    writes_before = sum(n for key, n in stats.items() if key.startswith("PUT /") and key.endswith(".api"))

    again = _run([CLI, "sync", "--from", first_window, "--to", last_window], env)
    assert again.returncode == 0, again.stderr[-3000:]
    stats = requests.get(f"{env['WORKBOOKS_BASE_URL']}/_sandbox/stats", timeout=10).json()["requests"]
    # A rerun writes nothing: no record of any type (people, activities, sequences).
    assert sum(n for key, n in stats.items() if key.startswith("PUT /") and key.endswith(".api")) == writes_before
    rerun = _summary(again.stdout)
    assert set(rerun) == set(written), again.stdout
    for row in rerun.values():  # the same windows again: what the first sync wrote is found unchanged
        assert (row["created"], row["updated"]) == ("0", "0"), again.stdout
    assert int(rerun["people"]["unchanged"]) > 0, again.stdout

    ledger_ids = _people_synced(env)
    assert ledger_ids, "the ledger holds no synced prospect"
    outreach_id = _a_synced_person(env)
    assert outreach_id in _people_synced(env, limit=None)
    shown = _run([CLI, "history", "prospects", str(outreach_id)], env)
    assert shown.returncode == 0, shown.stderr
    assert "created" in shown.stdout and "unchanged" in shown.stdout
    table = [[cell.strip() for cell in line.split("|")[1:-1]] for line in shown.stdout.splitlines() if line.startswith("|")]
    outcomes = [row[table[0].index("outcome")] for row in table[2:]]  # after the header and its rule
    assert outcomes == ["created", "unchanged"], shown.stdout  # one entry per sync, in order


def _a_synced_person(env: dict[str, str]) -> int:
    """The Outreach id of a Person the sync created, as Workbooks holds it (read over its API).

    Seeded People that share a prospect's email are linked (updated) rather than created; the seed's own
    records say `created_through: sandbox seed`, the integration's say `API`.
    """
    from outreach_pipeline.clients.workbooks import WorkbooksClient

    client = WorkbooksClient(env["WORKBOOKS_BASE_URL"], api_key="sandbox-api-key")
    try:
        people = client.iter_records("crm/people", select_columns=["id", "cf_person_outreach_id", "created_through"])
        created = sorted(int(row["cf_person_outreach_id"]) for row in people
                         if row.get("cf_person_outreach_id") and row.get("created_through") == "API")
    finally:
        client.close()
    assert created, "Workbooks holds no Person created by the sync"
    return created[0]


def _people_synced(env: dict[str, str], limit: int | None = 1) -> list[int]:
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{env['DAGSTER_HOME']}/sync_ledger.db")
    with engine.connect() as connection:
        rows = connection.execute(sa.text(
            "select outreach_id from sync_record_state where entity = 'prospects' and workbooks_id is not null"
            + (f" limit {int(limit)}" if limit is not None else "")
        )).fetchall()
    engine.dispose()
    return [int(row[0]) for row in rows]


def test_sync_rejects_bad_arguments(env):
    neither = _run([CLI, "sync"], env, timeout=60)
    assert neither.returncode != 0 and "--windows" in neither.stderr
    bad = _run([CLI, "sync", "--from", "yesterday"], env, timeout=60)
    assert bad.returncode != 0 and "neither a window key" in bad.stderr


def test_dagster_cli_materializes_a_window_range(sandbox, env):
    last_hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    first, last = (last_hour - timedelta(hours=5)).strftime("%Y-%m-%d-%H:%M"), last_hour.strftime("%Y-%m-%d-%H:%M")
    installed = _run([CLI, "install", "--skip-preflight", "--workbooks-url", env["WORKBOOKS_BASE_URL"]], env)
    assert installed.returncode == 0, installed.stderr
    result = _run(
        [DAGSTER, "asset", "materialize", "-m", "outreach_pipeline.definitions", "--select", "*",
         "--partition-range", f"{first}...{last}"],
        env,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "RUN_SUCCESS" in result.stderr + result.stdout
