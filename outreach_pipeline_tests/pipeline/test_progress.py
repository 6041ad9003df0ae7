"""Acceptance: a long extract or load reports its progress while it runs, in the run's event log.

A real run (sandbox over HTTP, Dagster in process) of a few hundred prospects spread over 8 windows,
with progress lines due every 50 records: the extracts and the loads log how many records and windows they
have done before their step ends, with counts only (no record values). The Workbooks -> Outreach read does
the same over a few hundred People made through the Workbooks API across 8 windows (its write and link-back
steps' lines are tested with their failures, test_to_outreach_failures.py).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg

from outreach_pipeline.clients.workbooks import WriteOp
from outreach_pipeline.definitions import build_definitions
from outreach_pipeline.defs.assets import OUTREACH_PREFLIGHT_KEY, PREFLIGHT_KEY
from outreach_pipeline.defs.assets_outreach import READ_STEP, REVERSE_FLOWS
from outreach_pipeline.defs.io_manager import WindowedParquetIOManager
from outreach_pipeline.defs.resources import LedgerResource, OutreachResource, SyncSettings, WorkbooksResource
from outreach_pipeline.engine.progress import ExtractProgress, LoadProgress
from outreach_pipeline.settings import PipelineSettings
from outreach_pipeline_tests.pipeline.harness import Pipeline, pipeline, seeded_windows, step_failures
from outreach_pipeline_tests.pipeline.two_way import (
    FIRST_EDIT_WINDOW,
    HOUR,
    TO_WORKBOOKS_PEOPLE,
    set_clocks,
    two_way_pipeline,
    workbooks_client,
)

WINDOWS = seeded_windows(1)[-8:]  # the seeded day's last 8 hourly windows: about 300 of the 500 prospects
#: People only (and what outreach/referenced_prospects reads): the loads of other entities add nothing here.
PEOPLE = [OUTREACH_PREFLIGHT_KEY, PREFLIGHT_KEY, *TO_WORKBOOKS_PEOPLE]
EVERY = 50
LOAD_LINE = re.compile(r"workbooks/people: ([\d,]+) of ([\d,]+) records done \(\d+%\), (\d+) of (\d+) windows complete")
EXTRACT_LINE = re.compile(r"outreach/prospects: ([\d,]+) records read in \d+ pages, (\d+) of (\d+) windows read through")
READ_LINE = re.compile(
    r"workbooks/changed_people: ([\d,]+) records read in (\d+) pages, (\d+) of (\d+) windows read through")
#: People made in each of the 8 windows: 256 in all, read in pages of 100 (100, 200, 256 read: a line each).
PEOPLE_PER_WINDOW = 32


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def test_a_load_over_many_windows_logs_its_progress_in_the_event_log(tmp_path: Path) -> None:
    with pipeline(tmp_path, prospects=500, accounts=10, opportunities=0, seed_days=1) as pipe:
        pipe.defs = build_definitions(PipelineSettings(), resources={
            "outreach": OutreachResource(base_url=pipe.sandbox.outreach_url, token_store_path=str(tmp_path / "t.json")),
            "workbooks": WorkbooksResource(base_url=pipe.sandbox.workbooks_url),
            "ledger": LedgerResource(url=f"sqlite:///{tmp_path / 'ledger.db'}"),
            "sync_settings": SyncSettings(progress_every_records=EVERY),
            "window_io_manager": WindowedParquetIOManager(base_dir=str(tmp_path / "windows")),
        })
        result = pipe.run(WINDOWS[0], WINDOWS[-1], raise_on_error=False, asset_selection=PEOPLE)
        assert result.success, step_failures(result)
        people = result.asset_materializations_for_node(dg.AssetKey(["workbooks", "people"]).to_python_identifier())
        extracted = sum(m.metadata["records_extracted"].value for m in people)  # each window's own count
        logs = pipe.instance.all_logs(result.run_id)
    assert extracted >= 4 * EVERY  # a few hundred records

    def lines(pattern: re.Pattern[str], step: str) -> list[tuple[re.Match[str], datetime]]:
        """Matching lines of `step`, with when they were logged."""
        return [(match, datetime.fromtimestamp(event.timestamp, UTC)) for event in logs
                if event.step_key == step and (match := pattern.search(event.user_message))]

    load_step = dg.AssetKey(["workbooks", "people"]).to_python_identifier()
    loads = lines(LOAD_LINE, load_step)
    done = [_number(match[1]) for match, _ in loads]
    assert len(loads) >= 2, [event.user_message for event in logs if event.step_key == load_step]
    assert done == sorted(done) and done[-1] <= extracted
    assert all(_number(match[2]) == extracted and int(match[4]) == len(WINDOWS) for match, _ in loads)
    assert int(loads[-1][0][3]) > int(loads[0][0][3])  # windows complete as the load goes
    # Reported while the step ran: before its materialization and the step's end.
    step_end = max(datetime.fromtimestamp(event.timestamp, UTC) for event in logs
                   if event.step_key == load_step and event.dagster_event is not None
                   and event.dagster_event.event_type_value == "STEP_SUCCESS")
    assert all(logged <= step_end for _, logged in loads)

    extracts = lines(EXTRACT_LINE, dg.AssetKey(["outreach", "prospects"]).to_python_identifier())
    assert extracts and all(int(match[3]) == len(WINDOWS) for match, _ in extracts)
    assert "@" not in " ".join(event.user_message for event in logs if "records done" in event.user_message)


def _people_selected_for_outreach(pipe: Pipeline, windows: list[datetime]) -> int:
    """PEOPLE_PER_WINDOW People selected for Outreach, changed 10 minutes into each window (one batch each),
    the last window's first: the People's ids run against the order of their changes."""
    made = 0
    with workbooks_client(pipe) as client:
        for window in reversed(windows):
            set_clocks(pipe, window + HOUR / 6)
            outcomes = client.write_batch("crm/people", [WriteOp(action="create", fields={
                "person_first_name": "Reads", "person_last_name": f"Person {made + n}",
                "main_location[email]": f"reads{made + n}@ok.example", "cf_person_sync_to_outreach": True})
                for n in range(PEOPLE_PER_WINDOW)])
            assert all(outcome.ok for outcome in outcomes), [o.errors for o in outcomes if not o.ok]
            made += len(outcomes)
    return made


def test_the_workbooks_read_for_outreach_logs_its_progress_while_it_reads(tmp_path: Path) -> None:
    windows = [FIRST_EDIT_WINDOW + HOUR * n for n in range(8)]
    with two_way_pipeline(tmp_path, sync_settings=SyncSettings(progress_every_records=EVERY), prospects=5,
                          accounts=2, opportunities=0, seed_days=1) as pipe:
        made = _people_selected_for_outreach(pipe, windows)
        # The read step alone (every record type's read: one step), over the 8 windows as a backfill runs them.
        result = pipe.run(windows[0], windows[-1], raise_on_error=False,
                          asset_selection=[flow.read_key for flow in REVERSE_FLOWS])
        assert result.success, step_failures(result)
        logs = [event for event in pipe.instance.all_logs(result.run_id) if event.step_key == READ_STEP]
    read = [match for event in logs if (match := READ_LINE.search(event.user_message))]
    assert len(read) == 3, [event.user_message for event in logs]
    assert [_number(match[1]) for match in read] == [100, 200, made]  # a line a page: each is 50 or more records
    assert [int(match[2]) for match in read] == [1, 2, 3]
    # Read oldest change first: 100 records are the first 3 windows and 4 of the 4th, 200 the first 6 and 8 of
    # the 7th; the last window is read through only once a later change is seen (as the Outreach extracts say).
    assert [int(match[3]) for match in read] == [3, 6, 7]
    assert all(int(match[4]) == len(windows) for match in read)
    step_end = max(event.timestamp for event in logs if event.dagster_event is not None
                   and event.dagster_event.event_type_value == "STEP_SUCCESS")
    assert all(event.timestamp <= step_end for event in logs if READ_LINE.search(event.user_message))
    assert not any("@" in event.user_message for event in logs if READ_LINE.search(event.user_message))


# ----------------------------------------------------------------------------- the reporters' rules


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_load_reports_every_n_records_or_after_the_interval_and_counts_complete_windows() -> None:
    clock, lines = Clock(), []
    windows = {1: "a", 2: "a", 3: "b", 4: "c"}  # window "d" holds no record: complete from the start
    progress = LoadProgress(lines.append, "workbooks/people", windows, windows=["a", "b", "c", "d"], every_records=2,
                            interval_seconds=10, clock=clock)
    progress.advance([1])
    assert lines == []  # 1 record, 0 s: not due
    progress.advance([1, 2])  # a repeat counts once
    assert lines == ["workbooks/people: 2 of 4 records done (50%), 2 of 4 windows complete, 0 s"]
    clock.now = 11
    progress.advance([])  # nothing new: no line, however long since the last
    progress.advance([4])
    assert lines[-1] == "workbooks/people: 3 of 4 records done (75%), 3 of 4 windows complete, 11 s"


def test_an_extract_counts_windows_read_through_by_the_latest_update() -> None:
    clock, lines = Clock(), []
    start = datetime(2026, 11, 2, tzinfo=UTC)
    progress = ExtractProgress(lines.append, "outreach/prospects", start, start + timedelta(hours=6),
                               every_records=1000, interval_seconds=10, clock=clock)
    progress.page(400, start + timedelta(hours=2, minutes=30))
    assert lines == []
    clock.now = 10
    progress.page(100, start + timedelta(hours=4))
    assert lines == ["outreach/prospects: 500 records read in 2 pages, 4 of 6 windows read through, 10 s"]
