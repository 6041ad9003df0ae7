"""Engagement mapping rules, pure: routing tasks to meetings, skipped sequence tasks, sequence-state values,
step numbers, the opt-out side effect and the latest-state-per-person rule (no I/O)."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from outreach_pipeline.engine.extract_engagement import (
    SEQUENCE_NAME_COLUMN,
    STEP_ORDER_COLUMN,
    mark_skipped_tasks,
    sequence_state_lookups,
)
from outreach_pipeline.engine.plan import plan_sync
from outreach_pipeline.engine.routing import ROUTE_COLUMN, stage_routed
from outreach_pipeline.mapping.models import MappingError, load_mapping_set
from outreach_pipeline.mapping.transform import stage_records

T0 = pd.Timestamp("2026-11-01T09:10:00Z")
LABELS = {
    "active": "Active - Running", "paused": "Active - Paused", "opted_out": "Opted Out", "finished": "Finished",
    "pending": "Pending", "disabled": "Disabled", "failed": "Failed", "bounced": "Bounced",
}


def tasks_frame(*rows: dict) -> pd.DataFrame:
    base = {"createdAt": T0, "updatedAt": T0, "note": "n", "dueAt": "2026-11-02T10:00:00.000Z", "state": "incomplete",
            "taskType": "manual", "completed": False, "prospectId": 7}
    frame = pd.DataFrame([{**base, **row} for row in rows])
    frame["prospectId"] = frame["prospectId"].astype("Int64")
    return frame


def test_in_person_tasks_are_staged_through_the_meetings_mapping_and_the_rest_through_tasks() -> None:
    mappings = load_mapping_set()
    frame = tasks_frame({"id": 1, "action": "call"}, {"id": 2, "action": "in_person"}, {"id": 3, "action": "email"},
                        {"id": 4, "action": "action_item"})
    staged = stage_routed(frame, mappings, mappings.entity("tasks"))
    assert staged["outreach_id"].tolist() == [1, 2, 3, 4]  # extracted order kept
    assert staged[ROUTE_COLUMN].tolist() == ["tasks", "meetings", "tasks", "tasks"]
    assert staged["activity_type"].tolist()[:1] + staged["activity_type"].tolist()[2:] == ["Phone call", "Email", "To-do"]
    assert staged.loc[1, "cf_meeting_outreach_id"] == "task:2" and pd.isna(staged.loc[1, "cf_task_outreach_id"])
    assert staged.loc[1, "start"] == "Mon Nov 02 10:00:00 UTC 2026"
    assert all(not errors for errors in staged["validation_errors"])  # in_person is no longer a picklist error


def test_a_route_to_an_entity_of_another_outreach_type_is_refused_naming_it(tmp_path) -> None:
    text = load_mapping_set().model_dump(exclude_none=False)
    text["entities"]["tasks"]["route"] = {"source": "action", "entities": {"in_person": "calls"}}
    path = tmp_path / "mapping.yaml"
    for entity in text["entities"].values():
        entity.pop("name", None)
    path.write_text(yaml.safe_dump(text))
    with pytest.raises(MappingError, match="route 'in_person': 'calls' must read the same Outreach type"):
        load_mapping_set(path)


def test_a_skipped_sequence_task_is_cancelled_and_a_completed_one_complete() -> None:
    mappings = load_mapping_set()
    frame = mark_skipped_tasks(tasks_frame(
        {"id": 1, "action": "call", "state": "complete", "taskType": "sequence_step_call", "completed": False},
        {"id": 2, "action": "call", "state": "complete", "taskType": "sequence_step_call", "completed": True},
        {"id": 3, "action": "call", "state": "complete", "taskType": "manual", "completed": False},
        {"id": 4, "action": "email", "state": "incomplete", "taskType": "sequence_step_email", "completed": False},
    ))
    staged = stage_routed(frame, mappings, mappings.entity("tasks"))
    assert staged["activity_status"].tolist() == ["Cancelled", "Complete", "Complete", "New"]


def states_frame(*rows: dict) -> pd.DataFrame:
    base = {"createdAt": T0, "updatedAt": T0, "stateChangedAt": "2026-11-01T09:05:00.000Z", "sequenceId": 3,
            "sequenceStepId": 30, SEQUENCE_NAME_COLUMN: "Renewal push", STEP_ORDER_COLUMN: 2}
    frame = pd.DataFrame([{**base, **row} for row in rows])
    for column in ("prospectId", "sequenceId", "sequenceStepId"):
        frame[column] = frame[column].astype("Int64")
    return frame


def test_each_sequence_state_value_its_step_number_and_the_opt_out_side_effect() -> None:
    entity = load_mapping_set().entity("sequence_states")
    frame = states_frame(*({"id": n, "prospectId": 100 + n, "state": state} for n, state in enumerate(LABELS, 1)))
    staged = stage_records(frame, entity, lookups=sequence_state_lookups(frame))
    assert dict(zip(frame["state"], staged["cf_person_outreach_sequence_state"], strict=True)) == LABELS
    assert staged["cf_person_outreach_sequence_step"].tolist() == [2] * len(LABELS)
    assert staged["cf_person_outreach_sequence"].tolist() == ["Renewal push"] * len(LABELS)
    assert staged["cf_person_outreach_sequence_state_updated_at"].tolist() == ["Sun Nov 01 09:05:00 UTC 2026"] * 8
    no_email = dict(zip(frame["state"], staged["no_email_soliciting"], strict=True))
    assert no_email.pop("opted_out") == True  # noqa: E712 (a numpy bool)
    assert all(pd.isna(value) for value in no_email.values())  # other states leave No Email alone
    assert staged["cf_person_outreach_id"].tolist() == [100 + n for n in range(1, 9)]  # written onto the Person
    assert all(not errors for errors in staged["validation_errors"])


def test_a_person_in_several_sequences_shows_the_state_changed_last_then_the_greater_id() -> None:
    entity = load_mapping_set().entity("sequence_states")
    later = T0 + pd.Timedelta(minutes=5)
    frame = states_frame(
        {"id": 1, "prospectId": 100, "state": "active", "updatedAt": later},
        {"id": 2, "prospectId": 100, "state": "finished"},
        {"id": 3, "prospectId": 200, "state": "paused"},
        {"id": 4, "prospectId": 200, "state": "bounced"},  # same updatedAt as 3: the greater id wins
    )
    staged = stage_records(frame, entity, lookups=sequence_state_lookups(frame))
    person = {"id": 9, "lock_version": 0, "cf_person_outreach_id": 100, "cf_person_sync_to_outreach": True}
    other = {**person, "id": 10, "cf_person_outreach_id": 200}
    plan = plan_sync(staged, entity, [person, other])
    decided = {d.outreach_id: (d.action, d.reason, d.fields.get("cf_person_outreach_sequence_state")) for d in plan.decisions}
    assert decided == {
        1: ("update", None, "Active - Running"), 2: ("skip", "superseded", None),
        3: ("skip", "superseded", None), 4: ("update", None, "Bounced"),
    }


def test_a_sequence_state_whose_person_is_not_in_workbooks_waits_as_no_match() -> None:
    entity = load_mapping_set().entity("sequence_states")
    frame = states_frame({"id": 1, "prospectId": 100, "state": "active"})
    staged = stage_records(frame, entity, lookups=sequence_state_lookups(frame))
    decision = plan_sync(staged, entity, []).decisions[0]
    assert (decision.action, decision.reason) == ("skip", "no_match")  # routing.waiting_ids reads it again
