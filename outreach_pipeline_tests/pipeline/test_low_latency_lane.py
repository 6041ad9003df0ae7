"""Acceptance of the low-latency lane over real HTTP and real Dagster runs (engine/lane.py, defs/lane.py).

With both clocks pinned inside one hour: a lane run syncs a change made in that (open) hour in each direction;
the hourly run of the hour afterwards writes nothing (the sandboxes' write counters) and its partition's counts
add up, with the lane's writes as `records_synced_by_lane`; two lane runs at once write each record once; a lane
run killed half way and run again ends as an uninterrupted one does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as sa

from outreach_pipeline.definitions import build_definitions
from outreach_pipeline.defs.io_manager import WindowedParquetIOManager
from outreach_pipeline.defs.lane import LANE_JOB, LANE_OP, LANE_TAG
from outreach_pipeline.defs.resources import LedgerResource, OutreachResource, WorkbooksResource
from outreach_pipeline.engine.ledger import SyncLedger
from outreach_pipeline.engine.ledger_lane import lane_cursor
from outreach_pipeline.engine.ledger_schema import history, lane_run
from outreach_pipeline.sandbox.faults import FaultRule
from outreach_pipeline.settings import PipelineSettings
from outreach_pipeline_tests.pipeline.harness import (
    QUIET_LOGS,
    RETRY_EVERY_RUN,
    Pipeline,
    outreach_records,
    pipeline,
    step_failures,
)
from outreach_pipeline_tests.pipeline.two_way import (
    FIRST_EDIT_WINDOW,
    HOUR,
    SMALL_SEED,
    create_workbooks,
    edit_prospect,
    outreach_writes,
    read_workbooks,
    set_clocks,
    workbooks_writes,
)

CHANGED_AT = FIRST_EDIT_WINDOW + timedelta(minutes=10)
LANE_UNTIL = FIRST_EDIT_WINDOW + timedelta(minutes=20)
TITLE = "Head of Lanes"


def lane_definitions(pipe: Pipeline, home: Path) -> dg.Definitions:
    """The code location with the lane on (every minute), resources on the test's sandbox and ledger."""
    return build_definitions(PipelineSettings(low_latency_minutes=1), resources={
        "outreach": OutreachResource(base_url=pipe.sandbox.outreach_url, token_store_path=str(home / "tokens.json")),
        "workbooks": WorkbooksResource(base_url=pipe.sandbox.workbooks_url),
        "ledger": LedgerResource(url=pipe.ledger_url),
        "sync_settings": RETRY_EVERY_RUN,
        "window_io_manager": WindowedParquetIOManager(base_dir=str(home / "windows")),
    })


def run_lane(defs: dg.Definitions, instance: dg.DagsterInstance, until: datetime) -> dg.ExecuteInProcessResult:
    result = defs.resolve_job_def(LANE_JOB).execute_in_process(
        instance=instance, raise_on_error=False,
        run_config={**QUIET_LOGS, "ops": {LANE_OP: {"config": {"until": until.isoformat(), "lag_seconds": 10}}}},
    )
    assert result.success, step_failures(result)
    return result


def make_changes(pipe: Pipeline) -> tuple[int, int]:
    """In the open hour: a title edited on an Outreach prospect, a Person created in Workbooks for Outreach.
    Returns (prospect id, Person id)."""
    set_clocks(pipe, CHANGED_AT)
    prospect_id = min(record.id for record in outreach_records(pipe.sandbox, "prospect"))
    edit_prospect(pipe, prospect_id, {"title": TITLE})
    person = create_workbooks(pipe, "crm/people", {
        "person_first_name": "Lane", "person_last_name": "Walker", "main_location[email]": "lane@walker.example",
        "cf_person_sync_to_outreach": True})
    return prospect_id, int(person["id"])


def assert_synced_once(pipe: Pipeline, prospect_id: int, person_id: int) -> None:
    """Each change is in the other system exactly once."""
    people = pipe.synced_rows("prospects")  # fails on two Workbooks people for one prospect
    assert people[prospect_id]["person_job_title"] == TITLE
    walkers = [p for p in outreach_records(pipe.sandbox, "prospect") if p.attributes.get("lastName") == "Walker"]
    assert len(walkers) == 1, walkers
    assert int(read_workbooks(pipe, "crm/people", person_id)["cf_person_outreach_id"]) == walkers[0].id


def applied_writes(pipe: Pipeline) -> Counter[tuple[str, int, str]]:
    """Created/updated history rows per (entity, Outreach id, direction)."""
    query = sa.select(history.c.entity, history.c.outreach_id, history.c.reason).where(
        history.c.outcome.in_(["created", "updated"]))
    ledger = SyncLedger(pipe.ledger_url)
    try:
        with ledger.engine.connect() as connection:
            return Counter((e, int(o), "to_outreach" if r == "to_outreach" else "to_workbooks")
                           for e, o, r in connection.execute(query))
    finally:
        ledger.dispose()


def window_metadata(result: dg.ExecuteInProcessResult, node: str, asset: str) -> dict[str, Any]:
    [materialization] = [m for m in result.asset_materializations_for_node(node)
                         if m.asset_key.to_user_string() == asset]
    return {key: value.value for key, value in materialization.metadata.items()}


def test_lane_syncs_the_open_hour_both_ways_and_the_hourly_run_after_it_writes_nothing(tmp_path: Path) -> None:
    with pipeline(tmp_path, **SMALL_SEED) as pipe:
        defs = lane_definitions(pipe, tmp_path)
        prospect_id, person_id = make_changes(pipe)

        set_clocks(pipe, LANE_UNTIL)
        lane = run_lane(defs, pipe.instance, LANE_UNTIL)
        assert lane.dagster_run.tags[LANE_TAG] == "true"
        assert_synced_once(pipe, prospect_id, person_id)

        # The hour closes; its hourly run reads the whole window and finds everything the lane wrote unchanged.
        set_clocks(pipe, FIRST_EDIT_WINDOW + HOUR + timedelta(minutes=10))
        before = (outreach_writes(pipe), workbooks_writes(pipe))
        hourly = pipe.run(FIRST_EDIT_WINDOW, raise_on_error=False)
        assert hourly.success, step_failures(hourly)
        assert (outreach_writes(pipe), workbooks_writes(pipe)) == before

        people = window_metadata(hourly, "workbooks__people", "workbooks/people")
        outcomes = sum(people[f"records_{name}"] for name in ("created", "updated", "unchanged", "skipped", "failed"))
        assert outcomes == people["records_extracted"] == people["dagster/row_count"]
        assert people["records_created"] == people["records_updated"] == 0
        assert people["records_synced_by_lane"] == 1 <= people["records_unchanged"]
        prospects = window_metadata(hourly, "outreach_writes_from_workbooks", "outreach/prospects_written")
        assert prospects["records_created"] == prospects["records_updated"] == 0
        assert prospects["records_synced_by_lane"] == 1

        # The ledger attributes the lane's writes to the records' own hour, as the hourly run would.
        ledger = SyncLedger(pipe.ledger_url)
        try:
            state = ledger.get_states("prospects", [prospect_id])[prospect_id]
            assert lane_cursor(ledger) == LANE_UNTIL
        finally:
            ledger.dispose()
        assert (state.window_start, state.window_end) == (FIRST_EDIT_WINDOW, FIRST_EDIT_WINDOW + HOUR)


def test_two_lane_runs_at_once_write_each_change_once(tmp_path: Path) -> None:
    with pipeline(tmp_path, **SMALL_SEED) as pipe:
        prospect_id, person_id = make_changes(pipe)
        set_clocks(pipe, LANE_UNTIL)
        # Every Workbooks people write takes 2 s, so the two runs are still running together when both write.
        pipe.sandbox.workbooks_middleware.injector.add(
            [FaultRule(kind="slow", delay_ms=2000, path="/crm/people", methods=["PUT"])])
        # Two processes, as two launched runs are: same sandbox, same ledger, each its own Dagster instance.
        processes = [start_lane_process(pipe, tmp_path / f"run{n}") for n in range(2)]
        for process in processes:
            _, err = process.communicate(timeout=180)
            assert process.returncode == 0, err[-3000:]
        assert_synced_once(pipe, prospect_id, person_id)
        writes = applied_writes(pipe)
        assert writes and max(writes.values()) == 1, writes
        ledger = SyncLedger(pipe.ledger_url)
        try:
            with ledger.engine.connect() as connection:
                first, second = connection.execute(sa.select(lane_run.c.started_at, lane_run.c.finished_at)).all()
        finally:
            ledger.dispose()
        assert first.started_at < second.finished_at and second.started_at < first.finished_at  # they overlapped


LANE_PROCESS = """
import sys
from outreach_pipeline_tests.pipeline.test_low_latency_lane import lane_process
lane_process(*sys.argv[1:])
"""


def start_lane_process(pipe: Pipeline, home: Path) -> subprocess.Popen[str]:
    """`lane_process` in a new process, its Dagster instance and token file under `home`."""
    home.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-c", LANE_PROCESS, pipe.sandbox.outreach_url, pipe.sandbox.workbooks_url,
         str(pipe.ledger_url), str(home), LANE_UNTIL.isoformat()],
        env={**os.environ, "DAGSTER_HOME": str(home)}, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def lane_process(outreach_url: str, workbooks_url: str, ledger_url: str, home: str, until: str) -> None:
    """A lane run in a process of its own (the interrupted-run test kills it)."""
    defs = build_definitions(PipelineSettings(low_latency_minutes=1), resources={
        "outreach": OutreachResource(base_url=outreach_url, token_store_path=str(Path(home) / "tokens.json")),
        "workbooks": WorkbooksResource(base_url=workbooks_url),
        "ledger": LedgerResource(url=ledger_url),
        "sync_settings": RETRY_EVERY_RUN,
        "window_io_manager": WindowedParquetIOManager(base_dir=str(Path(home) / "windows")),
    })
    with dg.instance_for_test(temp_dir=home) as instance:
        defs.resolve_job_def(LANE_JOB).execute_in_process(
            instance=instance, run_config={"ops": {LANE_OP: {"config": {"until": until, "lag_seconds": 10}}}})


def test_a_lane_run_killed_half_way_then_run_again_ends_as_an_uninterrupted_one(tmp_path: Path) -> None:
    with pipeline(tmp_path, **SMALL_SEED) as pipe:
        defs = lane_definitions(pipe, tmp_path)
        prospect_id, person_id = make_changes(pipe)
        set_clocks(pipe, LANE_UNTIL)
        # Every Workbooks people write waits 5 s: the lane is killed while its first one is in flight.
        pipe.sandbox.workbooks_middleware.injector.add(
            [FaultRule(kind="slow", delay_ms=5000, path="/crm/people", methods=["PUT"])])
        process = start_lane_process(pipe, tmp_path / "killed")
        try:
            deadline = time.monotonic() + 120
            while pipe.sandbox.workbooks_middleware.stats.snapshot()["requests"].get("PUT /crm/people.api", 0) == 0:
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                assert time.monotonic() < deadline, "the lane run never wrote people"
                time.sleep(0.1)
            time.sleep(0.5)  # the write is in the server now
            process.send_signal(signal.SIGKILL)
            process.wait(30)
        finally:
            if process.poll() is None:
                process.kill()
        pipe.sandbox.workbooks_middleware.injector.clear()
        ledger = SyncLedger(pipe.ledger_url)
        try:
            assert lane_cursor(ledger) is None  # the killed run did not finish: the next one reads its range again
        finally:
            ledger.dispose()

        run_lane(defs, pipe.instance, LANE_UNTIL)
        assert_synced_once(pipe, prospect_id, person_id)
        before = (outreach_writes(pipe), workbooks_writes(pipe))
        run_lane(defs, pipe.instance, LANE_UNTIL + timedelta(minutes=1))  # and a further run has nothing to do
        assert (outreach_writes(pipe), workbooks_writes(pipe)) == before
        ledger = SyncLedger(pipe.ledger_url)
        try:
            assert lane_cursor(ledger) == LANE_UNTIL + timedelta(minutes=1)
        finally:
            ledger.dispose()
