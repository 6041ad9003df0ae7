"""Acceptance: Outreach engagement (tasks, calls, meetings, sequences, sequence states) into Workbooks.

Real HTTP against both sandboxes, through the Dagster job. Expected values come from the Outreach store and
the rules of default_mappings.md, not from the planner.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from outreach_pipeline.clients.formats import parse_wb_date, parse_wb_datetime
from outreach_pipeline.sandbox.runtime import RunningSandbox
from outreach_pipeline.sandbox.workbooks.store import ReadQuery
from outreach_pipeline_tests.pipeline.harness import (
    Pipeline,
    as_date,
    outreach_clock_at,
    outreach_records,
    pipeline,
    seeded_windows,
    step_failures,
)

EMPTY_DAY = datetime(2026, 11, 1, 9, tzinfo=UTC)  # windows the seed leaves empty (seed_days=1)
ACTIVITY_TYPES = {"call": "Phone call", "email": "Email", "action_item": "To-do"}
TASK_STATUSES = {"complete": "Complete", "pending": "New", "incomplete": "New"}
SEQUENCE_STATE_LABELS = {
    "active": "Active - Running",
    "paused": "Active - Paused",
    "opted_out": "Opted Out",
    "finished": "Finished",
    "pending": "Pending",
    "disabled": "Disabled",
    "failed": "Failed",
    "bounced": "Bounced",
}


def rows(sandbox: RunningSandbox, controller: str) -> list[dict[str, Any]]:
    """Every Workbooks record of a controller, straight from the store."""
    found: list[dict[str, Any]] = []
    while True:
        page = sandbox.workbooks_store.read(
            controller, ReadQuery(start=len(found), limit=5000, skip_total=True, sort=(("id", "ASC"),))
        )
        found += page.data
        if len(page.data) < 5000:
            return found


def by_link(sandbox: RunningSandbox, controller: str, link_key: str, prefix: str) -> dict[int, dict[str, Any]]:
    """Records carrying `prefix<id>` in `link_key`, by Outreach id; a second record for one id fails the test."""
    linked: dict[int, dict[str, Any]] = {}
    for row in rows(sandbox, controller):
        value = str(row.get(link_key) or "")
        if value.startswith(prefix):
            outreach_id = int(value.removeprefix(prefix))
            assert outreach_id not in linked, f"two {controller} records for {prefix}{outreach_id}"
            linked[outreach_id] = row
    return linked


def people(sandbox: RunningSandbox) -> dict[int, dict[str, Any]]:
    return {int(row["cf_person_outreach_id"]): row for row in rows(sandbox, "crm/people")
            if row.get("cf_person_outreach_id") not in (None, "")}


def write_requests(pipe: Pipeline) -> int:
    """Workbooks write requests so far (every controller)."""
    requests = pipe.sandbox.workbooks_middleware.stats.snapshot()["requests"]
    return sum(count for endpoint, count in requests.items() if endpoint.startswith("PUT "))


def run(pipe: Pipeline, first: datetime, last: datetime | None = None) -> None:
    result = pipe.run(first, last, raise_on_error=False)
    assert result.success, step_failures(result)


def test_a_backfill_leaves_one_activity_or_meeting_per_task_and_call_linked_to_its_person(tmp_path: Path) -> None:
    # 200 tasks and 100 calls (at least one of each kind) over half as many prospects: a lighter people load.
    with pipeline(tmp_path, prospects=500, tasks=200, calls=100, seed_days=1) as pipe:
        windows = seeded_windows(1)
        run(pipe, windows[0], windows[-1])
        sandbox = pipe.sandbox
        persons = people(sandbox)
        tasks = by_link(sandbox, "activity/tasks", "cf_task_outreach_id", "task:")
        calls = by_link(sandbox, "activity/tasks", "cf_task_outreach_id", "call:")
        meetings = by_link(sandbox, "activity/meetings", "cf_meeting_outreach_id", "task:")
        outreach_tasks = outreach_records(sandbox, "task")
        outreach_calls = outreach_records(sandbox, "call")
        assert len(outreach_tasks) >= 200 and len(outreach_calls) >= 100

        checked_skip = checked_meeting = 0
        for task in outreach_tasks:
            attributes, prospect = task.attributes, task.relationships.get("prospect")
            in_person = attributes["action"] == "in_person"
            row = (meetings if in_person else tasks).get(task.id)
            assert row is not None, f"task {task.id} ({attributes['action']}) has no Workbooks record"
            assert task.id not in (tasks if in_person else meetings), f"task {task.id} written twice"
            skipped = attributes.get("taskType", "").startswith("sequence_step") and attributes["state"] == "complete" \
                and attributes.get("completed") is False
            assert row["activity_status"] == ("Cancelled" if skipped else TASK_STATUSES[attributes["state"]]), task.id
            checked_skip += skipped
            checked_meeting += in_person
            if not in_person:
                assert row["activity_type"] == ACTIVITY_TYPES[attributes["action"]], task.id
            assert row["description"] == attributes["note"]
            assert parse_wb_date(row["due_date"]) == as_date(attributes["dueAt"])
            person = persons.get(prospect)
            # A prospect that failed to sync (a duplicate or over-long value) leaves the contact empty, and a pending link.
            assert row["primary_contact_id"] == (person["id"] if person else None), f"task {task.id}"
        assert checked_skip and checked_meeting
        assert len(tasks) + len(meetings) == len(outreach_tasks)

        linked_to_task = 0
        for call in outreach_calls:
            row = calls[call.id]
            assert row["activity_type"] == "Phone call" and row["activity_status"] == "Complete"
            assert row["name"] == call.attributes["outcome"]
            assert row["cf_task_outreach_call_direction"] == call.attributes["direction"]
            assert row["description"] == call.attributes.get("note")
            assert parse_wb_date(row["completed_date"]) == as_date(call.attributes["completedAt"])
            assert parse_wb_datetime(row["start"]) == _moment(call.attributes["dialedAt"])
            assert parse_wb_datetime(row["finish"]) == _moment(call.attributes["completedAt"])
            person = persons.get(call.relationships["prospect"])
            assert row["primary_contact_id"] == (person["id"] if person else None), f"call {call.id}"
            if (task_id := call.relationships.get("task")) is not None:
                assert row["cf_task_outreach_completed_task"] == tasks[task_id]["id"], f"call {call.id}"
                linked_to_task += 1
        assert linked_to_task and len(calls) == len(outreach_calls)

        sequences = by_link(sandbox, "custom_record/outreach_sequences", "cf_outreach_sequence_outreach_id", "")
        for sequence in outreach_records(sandbox, "sequence"):
            row = sequences[sequence.id]
            assert row["name"] == sequence.attributes["name"]
            assert row["cf_outreach_sequence_step_count"] == sequence.attributes["sequenceStepCount"]
            assert bool(row["cf_outreach_sequence_enabled"]) == sequence.attributes["enabled"]

        writes = write_requests(pipe)
        run(pipe, windows[0], windows[-1])
        run(pipe, windows[6], windows[8])
        assert write_requests(pipe) == writes, "re-running windows wrote to Workbooks"


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).replace(microsecond=0)


def _state(store: Any, prospect: int, sequence: int, step: int, state: str) -> int:
    return store.create("sequenceState", {"state": state, "stateChangedAt": _text(store.now())},
                        {"prospect": prospect, "sequence": sequence, "sequenceStep": step}).id


def _text(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def test_sequence_states_steps_opt_out_and_late_prospects_across_windows(tmp_path: Path) -> None:
    first, second = EMPTY_DAY, EMPTY_DAY + timedelta(hours=1)
    with pipeline(tmp_path, prospects=30, accounts=5, opportunities=5, seed_days=1) as pipe:
        store = pipe.sandbox.outreach_store
        sequence = store.create("sequence", {"name": "Renewal push", "sequenceStepCount": 3}, {}).id
        steps = [store.create("sequenceStep", {"order": order, "stepType": "call"}, {"sequence": sequence}).id
                 for order in (1, 2, 3)]
        other = store.create("sequence", {"name": "Webinar follow-up"}, {}).id
        other_step = store.create("sequenceStep", {"order": 4, "stepType": "task"}, {"sequence": other}).id
        with outreach_clock_at(pipe.sandbox, first.replace(minute=10)):
            prospects = {
                state: store.create("prospect", {"firstName": state, "lastName": "Stater", "emails": [f"{state}@states.example"]}, {}).id
                for state in SEQUENCE_STATE_LABELS
            }
            states = {state: _state(store, prospects[state], sequence, steps[0], state) for state in SEQUENCE_STATE_LABELS}
            # A first name over Workbooks' 255 characters: the prospect fails until it is fixed in Outreach.
            late = store.create("prospect", {"firstName": "L" * 300, "lastName": "Comer",
                                             "emails": ["late@states.example"]}, {}).id
            late_task = store.create("task", {"action": "email", "note": "Send deck", "state": "incomplete"},
                                     {"prospect": late, "subject": {"type": "prospect", "id": late}}).id
            _state(store, late, sequence, steps[1], "paused")  # waits for its Person; never changes again
        with outreach_clock_at(pipe.sandbox, first.replace(minute=40)):
            # Active prospect is in a second sequence, changed later: that one is shown.
            _state(store, prospects["active"], other, other_step, "paused")

        run(pipe, first)
        persons = people(pipe.sandbox)
        for state, prospect in prospects.items():
            person = persons[prospect]
            expected = "Active - Paused" if state == "active" else SEQUENCE_STATE_LABELS[state]
            assert person["cf_person_outreach_sequence_state"] == expected, state
            assert person["cf_person_outreach_sequence"] == ("Webinar follow-up" if state == "active" else "Renewal push")
            assert person["cf_person_outreach_sequence_step"] == (4 if state == "active" else 1)
            assert bool(person["no_email_soliciting"]) is (state == "opted_out"), state
            assert person["cf_person_outreach_sequence_state_updated_at"] is not None
        task_row = by_link(pipe.sandbox, "activity/tasks", "cf_task_outreach_id", "task:")[late_task]
        assert task_row["primary_contact_id"] is None  # its person is not synced yet
        assert late not in persons

        with outreach_clock_at(pipe.sandbox, second.replace(minute=5)):
            # A step change without a state change, a state change, an older state moving ahead, a late fix.
            store.update("sequenceState", states["finished"], relationships={"sequenceStep": steps[2]})
            store.update("sequenceState", states["pending"], {"state": "active"})
            store.update("sequenceState", states["active"], relationships={"sequenceStep": steps[1]})
            store.update("prospect", late, {"firstName": "Late"})
        run(pipe, second)
        persons = people(pipe.sandbox)
        assert persons[prospects["finished"]]["cf_person_outreach_sequence_state"] == "Finished"
        assert persons[prospects["finished"]]["cf_person_outreach_sequence_step"] == 3
        assert persons[prospects["pending"]]["cf_person_outreach_sequence_state"] == "Active - Running"
        assert persons[prospects["active"]]["cf_person_outreach_sequence"] == "Renewal push"
        assert persons[prospects["active"]]["cf_person_outreach_sequence_state"] == "Active - Running"
        assert persons[prospects["active"]]["cf_person_outreach_sequence_step"] == 2
        task_row = by_link(pipe.sandbox, "activity/tasks", "cf_task_outreach_id", "task:")[late_task]
        assert task_row["primary_contact_id"] == persons[late]["id"]  # landed, linked, after that window
        assert persons[late]["cf_person_outreach_sequence_state"] == "Active - Paused"  # the waiting state landed
        assert persons[late]["cf_person_outreach_sequence_step"] == 2
        assert not pipe.open_ledger().pending_relations("tasks")

        writes = write_requests(pipe)
        run(pipe, first, second)  # old windows re-run: nothing moves backwards, nothing is written
        assert write_requests(pipe) == writes
