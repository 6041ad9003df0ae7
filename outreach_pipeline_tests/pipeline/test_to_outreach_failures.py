"""Acceptance: Workbooks -> Outreach failures are found like the other direction's. Each is in the ledger by its
Workbooks id (a refused create has no Outreach id), listed by `failures --run` and in the run's materialization
table with direction, field, kind and streak; three failed attempts in a row make it stuck with a streak of 3 (the
alert sensor's reading sees it); once Outreach takes it, the same record is linked and leaves the list. The write
and link-back steps log progress lines while they run.

People Outreach refuses (two invalid email addresses, and the email of another Person of the same window, whose
prospect the same write creates first) are made in one window through the Workbooks API. That direction never reads a flagged record again on its own: a
person clearing its Outreach Sync Error / Outreach Duplicate flag is what retries it. So the flags are cleared
after each run, as an operator would, and three runs fail the records three times in a row. Then one record's
email is fixed: the fourth run creates it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from click.testing import CliRunner

from outreach_pipeline.cli import main
from outreach_pipeline.defs.alerts import current_stuck_records
from outreach_pipeline.defs.assets_outreach import WRITE_STEP
from outreach_pipeline.defs.resources import LedgerResource, SyncSettings
from outreach_pipeline.engine.ledger import SyncLedger
from outreach_pipeline.engine.outcome import SyncDirection
from outreach_pipeline_tests.pipeline.two_way import (
    CLEARED_FLAGS,
    FIRST_EDIT_WINDOW,
    HOUR,
    TO_OUTREACH,
    create_refused_people,
    edit_workbooks,
    person_fields,
    run_assets,
    set_clocks,
    two_way_pipeline,
)

PROSPECTS_WRITTEN = dg.AssetKey(["outreach", "prospects_written"])
SETTINGS = SyncSettings(progress_every_records=1)  # a progress line per record or batch: the runs are small


@dataclass
class Runs:
    ledger_url: str
    ledger: SyncLedger
    ids: dict[str, int]  # Workbooks ids of the refused People
    failing: list[dg.ExecuteInProcessResult]  # three runs, flags cleared after each
    healed: dg.ExecuteInProcessResult  # bad_email_1 fixed: created; the other two fail a fourth time
    people: dict[str, dict[str, Any]]  # the refused People in Workbooks after the last run
    healed_logs: list[str]  # the log lines of the last run's steps


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    home: Path = tmp_path_factory.mktemp("to_outreach_failures")
    with two_way_pipeline(home, sync_settings=SETTINGS, prospects=5, accounts=2, opportunities=0,
                          seed_days=1) as pipe:
        window = FIRST_EDIT_WINDOW
        set_clocks(pipe, window + HOUR / 6)
        ids = create_refused_people(pipe)
        failing = []
        for _ in range(3):
            failing.append(run_assets(pipe, window, TO_OUTREACH))
            window += HOUR
            set_clocks(pipe, window + HOUR / 6)
            for workbooks_id in ids.values():
                edit_workbooks(pipe, "crm/people", workbooks_id, CLEARED_FLAGS)
        edit_workbooks(pipe, "crm/people", ids["bad_email_1"], {"main_location[email]": "fixed@ok.example"})
        healed = run_assets(pipe, window, TO_OUTREACH)
        people = {name: person_fields(pipe, workbooks_id) for name, workbooks_id in ids.items()}
        logs = [entry.user_message for entry in pipe.instance.all_logs(healed.run_id)]
        assert pipe.ledger_url is not None
        ledger = pipe.open_ledger()
        try:
            yield Runs(pipe.ledger_url, ledger, ids, failing, healed, people, logs)
        finally:
            ledger.dispose()


def _cli(ledger_url: str, *args: str) -> list[dict[str, Any]]:
    outcome = CliRunner().invoke(main, ["failures", "--json", "--ledger-url", ledger_url, *args])
    assert outcome.exit_code == 0, outcome.output
    return [json.loads(line) for line in outcome.output.splitlines() if line.strip()]


def _table(result: dg.ExecuteInProcessResult) -> list[dict[str, Any]]:
    (materialization,) = [m for m in result.asset_materializations_for_node(WRITE_STEP)
                          if m.asset_key == PROSPECTS_WRITTEN]
    assert materialization.metadata["failed_records_not_shown"].value == 0
    return [row.data for row in materialization.metadata["failed_records"].value.records]


def test_every_refused_record_of_a_run_is_listed_with_direction_field_kind_and_streak(runs: Runs) -> None:
    by_id = {workbooks_id: name for name, workbooks_id in runs.ids.items()}
    for number, result in enumerate(runs.failing, start=1):
        listed = _cli(runs.ledger_url, "--run", result.run_id)
        assert sorted(f["workbooks_id"] for f in listed) == sorted(runs.ids.values())
        for failure in listed:
            name = by_id[failure["workbooks_id"]]
            assert (failure["direction"], failure["entity"], failure["outreach_id"], failure["streak"]) == (
                "to_outreach", "prospects", None, number)
            assert failure["field"] == "main_location[email]"
            assert failure["kind"] == ("duplicate" if name == "duplicate" else "refused_by_outreach")
        # The run's materialization table lists the same records, the same way.
        rows = _table(result)
        assert {(r["direction"], r["workbooks_id"], r["field"], r["kind"], r["runs_failed_in_row"]) for r in rows} == {
            (f["direction"], f["workbooks_id"], f["field"], f["kind"], f["streak"]) for f in listed}
        assert _cli(runs.ledger_url, "--run", result.run_id, "--direction", "to_workbooks") == []
    first_failures = {f.workbooks_id: f.failed_at for f in runs.ledger.failures(run_id=runs.failing[0].run_id)}
    assert all(f.first_failed_at == first_failures[f.workbooks_id]
               for f in runs.ledger.failures(run_id=runs.failing[2].run_id))


def test_records_failing_attempt_after_attempt_are_stuck_and_the_alert_sensor_sees_them(runs: Runs) -> None:
    still_failing = {runs.ids["bad_email_2"], runs.ids["duplicate"]}
    stuck = runs.ledger.stuck_records(3, direction=SyncDirection.TO_OUTREACH)
    assert {(f.workbooks_id, f.streak) for f in stuck} == {(i, 4) for i in still_failing}
    seen = current_stuck_records(LedgerResource(url=runs.ledger_url), SyncSettings(stuck_after_runs=3))
    assert {(r.direction, r.workbooks_id) for r in seen} >= {("to_outreach", i) for i in still_failing}
    assert {r["workbooks_id"] for r in _table(runs.healed) if r["runs_failed_in_row"] == 4} == still_failing


def test_a_refused_record_created_later_is_linked_and_leaves_the_failures_list(runs: Runs) -> None:
    created = int(runs.people["bad_email_1"]["cf_person_outreach_id"])
    now_failing = {f["workbooks_id"] for f in _cli(runs.ledger_url, "--direction", "to_outreach")}
    assert now_failing == {runs.ids["bad_email_2"], runs.ids["duplicate"]}
    # The same ledger row, now linked: its three failures are found by the Outreach id it got.
    failures = runs.ledger.to_outreach_failures_of("prospects", outreach_id=created)
    assert [(f.workbooks_id, f.streak) for f in failures] == [(runs.ids["bad_email_1"], n) for n in (1, 2, 3)]
    history = CliRunner().invoke(main, ["history", "prospects", str(created), "--ledger-url", runs.ledger_url])
    assert history.exit_code == 0, history.output
    assert history.output.count("refused_by_outreach main_location[email]") == 3, history.output
    assert "created" in history.output
    by_workbooks_id = CliRunner().invoke(main, ["history", "prospects", str(runs.ids["duplicate"]), "--workbooks",
                                                "--ledger-url", runs.ledger_url])
    assert by_workbooks_id.exit_code == 0, by_workbooks_id.output
    assert "duplicate main_location[email], run 4 in a row" in by_workbooks_id.output


WRITE_LINE = re.compile(r"outreach/prospects_written: (\d+) of (\d+) records done \(\d+%\), (\d+) of (\d+) windows")
LINK_LINE = re.compile(r"workbooks/people_linked: (\d+) of (\d+) records done")


def test_the_write_and_link_back_steps_log_progress_while_they_run(runs: Runs) -> None:
    writes = [match for line in runs.healed_logs if (match := WRITE_LINE.search(line))]
    assert writes, runs.healed_logs
    assert int(writes[-1][1]) == int(writes[-1][2]) == len(runs.ids)  # the three read, all done
    assert [int(match[1]) for match in writes] == sorted(int(match[1]) for match in writes)
    links = [match for line in runs.healed_logs if (match := LINK_LINE.search(line))]
    assert links and int(links[-1][1]) == int(links[-1][2]) == len(runs.ids)  # a link and two flags written back
    assert not any("@" in line for line in runs.healed_logs if "records done" in line)

