"""The pure planner: every decision branch, normalisation, links, pending relations and determinism."""

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from outreach_pipeline.engine.ledger import RecordState
from outreach_pipeline.engine.plan import plan_sync
from outreach_pipeline.mapping import load_mapping_set
from outreach_pipeline.mapping.transform import stage_records
from outreach_pipeline_tests.engine.frames import T0, extracted_prospects, with_email_required

MAPPING = load_mapping_set()
PROSPECTS = MAPPING.entity("prospects")


def staged_prospects(*rows: dict) -> pd.DataFrame:
    """Stage real extracted-frame rows: each row overrides a minimal valid prospect."""
    return stage_records(extracted_prospects(*rows), PROSPECTS)


def person(workbooks_id: int, outreach_id: int | None, **fields) -> dict:
    record = {
        "id": workbooks_id,
        "lock_version": 3,
        "cf_person_outreach_id": outreach_id,
        "cf_person_sync_to_outreach": True,
        "cf_person_outreach_sync_error": False,
        "cf_person_outreach_duplicate": False,
        "person_first_name": "Ann",
        "person_last_name": "Lee",
        "main_location[email]": f"p{outreach_id}@example.com",
        "no_email_soliciting": False,
    }
    record.update(fields)
    return record


def state(outreach_id: int, **fields) -> RecordState:
    values = {
        "entity": "prospects",
        "outreach_id": outreach_id,
        "workbooks_id": None,
        "outreach_updated_at": None,
        "values_hash": None,
        "values": None,
        "last_outcome": "created",
        "last_reason": None,
        "last_error": None,
        "window_start": None,
        "window_end": None,
        "last_run_id": "r0",
        "needs_retry": False,
        "recorded_at": datetime(2024, 1, 1, tzinfo=UTC),
    }
    values.update(fields)
    return RecordState(**values)


def only(plan):
    assert len(plan.decisions) == 1
    return plan.decisions[0]


def test_create_sets_link_key_and_sync_flag_and_omits_blanks() -> None:
    decision = only(plan_sync(staged_prospects({"id": 17}), PROSPECTS, []))
    assert decision.action == "create"
    assert decision.fields == {
        "person_first_name": "Ann",
        "person_last_name": "Lee",
        "main_location[email]": "p17@example.com",
        "cf_person_outreach_id": 17,
        "cf_person_sync_to_outreach": True,
    }
    assert decision.values["cf_person_outreach_id"] == "17"
    assert decision.ledger_outcome == "created"


def test_update_writes_only_changed_fields() -> None:
    staged = staged_prospects({"id": 17, "firstName": "Anna", "title": "CTO"})
    decision = only(plan_sync(staged, PROSPECTS, [person(900, 17)]))
    assert (decision.action, decision.workbooks_id, decision.lock_version) == ("update", 900, 3)
    assert decision.fields == {"person_first_name": "Anna", "person_job_title": "CTO"}


@pytest.mark.parametrize(
    "workbooks_values",
    [
        {"person_first_name": "  Ann  ", "cf_person_outreach_id": "17"},  # whitespace, id as text
        {"person_middle_name": "", "no_email_soliciting": None},  # "" vs None, blank checkbox vs False
        {"cf_person_outreach_id": "17.0", "no_email_soliciting": "0"},  # number format, checkbox as text
        {"main_location": {"email": "p17@example.com"}},  # nested Workbooks shape
    ],
)
def test_equivalent_values_are_unchanged(workbooks_values: dict) -> None:
    record = person(900, 17, **workbooks_values)
    if "main_location" in workbooks_values:
        del record["main_location[email]"]
    decision = only(plan_sync(staged_prospects({"id": 17}), PROSPECTS, [record]))
    assert decision.action == "unchanged", decision.fields
    assert decision.fields == {}


def test_dates_and_currency_compare_after_normalisation() -> None:
    entity = MAPPING.entity("opportunities")
    frame = pd.DataFrame(
        {
            "id": [5],
            "createdAt": [T0],
            "updatedAt": [T0],
            "name": ["Deal"],
            "amount": [100],
            "currencyType": ["GBP"],
            "closeDate": ["2024-05-02T10:00:00Z"],
            "probability": [50],
            "opportunityStageId": pd.array([None], dtype="Int64"),
            "accountId": pd.array([None], dtype="Int64"),
            "customId": [None],
        }
    )
    staged = stage_records(
        frame,
        entity,
        lookups={
            "opportunityStage": pd.DataFrame({"id": [], "name": []}),
            "opportunityProspectRole": pd.DataFrame(
                {"id": [], "opportunityId": [], "prospectId": [], "role": []}
            ),
        },
    )
    record = {
        "id": 40,
        "lock_version": 1,
        "cf_opportunity_outreach_id": 5,
        "cf_opportunity_sync_to_outreach": 1,
        "description": "Deal",
        "amount": "100.00 GBP 0",
        "predicted_close_date": "2 May 2024",
        "probability": "50",
        "opportunity_contact_ids": "[]",
        "opportunity_contact_roles": [],
    }
    assert only(plan_sync(staged, entity, [record])).action == "unchanged"
    record["predicted_close_date"] = " 3 May 2024"
    assert only(plan_sync(staged, entity, [record])).fields == {"predicted_close_date": " 2 May 2024"}


def test_natural_key_match_links_the_record() -> None:
    record = person(901, None, **{"main_location[email]": "P17@Example.com "})
    decision = only(plan_sync(staged_prospects({"id": 17}), PROSPECTS, [record]))
    assert decision.action == "update"
    # Matched case-insensitively; the differing spelling is then written from Outreach.
    assert decision.fields == {"cf_person_outreach_id": 17, "main_location[email]": "p17@example.com"}


def test_several_matches_skip_and_flag_duplicates() -> None:
    records = [
        person(902, None, **{"main_location[email]": "p17@example.com"}),
        person(901, None, **{"main_location[email]": "p17@example.com"}),
        person(903, None, cf_person_outreach_duplicate=True, **{"main_location[email]": "p17@example.com"}),
    ]
    plan = plan_sync(staged_prospects({"id": 17}), PROSPECTS, records)
    assert (only(plan).action, only(plan).reason) == ("skip", "duplicate_match")
    assert [(flag.workbooks_id, flag.fields) for flag in plan.duplicate_flags] == [
        (901, {"cf_person_outreach_duplicate": True}),
        (902, {"cf_person_outreach_duplicate": True}),
    ]


def test_two_records_linked_to_one_outreach_id_are_duplicates() -> None:
    plan = plan_sync(staged_prospects({"id": 17}), PROSPECTS, [person(900, 17), person(905, 17)])
    assert only(plan).reason == "duplicate_match"
    assert [flag.workbooks_id for flag in plan.duplicate_flags] == [900, 905]


def test_staged_records_sharing_a_natural_key_both_fail_naming_the_field() -> None:
    staged = staged_prospects(
        {"id": 1, "emails": ["same@example.com"]}, {"id": 2, "emails": ["same@example.com"]}
    )
    plan = plan_sync(staged, PROSPECTS, [])
    assert [d.action for d in plan.decisions] == ["failed", "failed"]
    assert "prospect 1: main_location[email] 'same@example.com' is also held by Outreach prospect 2" in plan.decisions[0].error
    assert not any(d.fields for d in plan.decisions)  # nothing created, nothing to flag


def test_sharers_found_in_outreach_fail_the_record_even_when_alone_in_the_run() -> None:
    staged = staged_prospects({"id": 1, "emails": ["same@example.com"]})
    staged["natural_key_sharers"] = [[9]]
    decision = only(plan_sync(staged, PROSPECTS, []))
    assert decision.action == "failed" and "is also held by Outreach prospect 9" in decision.error


def test_a_linked_prospect_fails_too_when_outreach_finds_another_holder_of_its_email() -> None:
    twin = person(700, 17, **{"main_location[email]": "p17@example.com"})
    staged = staged_prospects({"id": 17})
    staged["natural_key_sharers"] = [[40]]
    decision = only(plan_sync(staged, PROSPECTS, [twin]))
    assert decision.action == "failed" and decision.workbooks_id == 700
    assert "is also held by Outreach prospect 40" in decision.error
    assert decision.fields["cf_person_outreach_sync_error"] is True  # flagged on its existing Person


def test_a_natural_key_owned_by_another_linked_record_fails_instead_of_creating_a_second_twin() -> None:
    owner = person(700, 5, **{"main_location[email]": "p17@example.com"})
    decision = only(plan_sync(staged_prospects({"id": 17}), PROSPECTS, [owner]))
    assert decision.action == "failed"
    assert "already belongs to Workbooks record #700 linked to prospect 5" in decision.error
    assert decision.fields == {}  # the owner's record is left alone: it is not this record's twin


@pytest.mark.parametrize(
    ("flags", "reason"),
    [
        ({"cf_person_sync_to_outreach": False}, "sync_disabled"),
        ({"cf_person_sync_to_outreach": None}, "sync_disabled"),
        ({"cf_person_outreach_duplicate": "1"}, "duplicate_flag"),
        (
            {
                "cf_person_outreach_sync_error": True,
                "cf_person_outreach_sync_error_message": "set by a person",
            },
            "sync_error_flag",
        ),
    ],
)
def test_flags_on_the_workbooks_record_leave_it_alone(flags: dict, reason: str) -> None:
    staged = staged_prospects({"id": 17, "firstName": "Changed"})
    decision = only(
        plan_sync(
            staged,
            PROSPECTS,
            [person(900, 17, **flags)],
            {17: state(17, last_outcome="failed", last_error="other")},
        )
    )
    assert (decision.action, decision.reason, decision.fields) == ("skip", reason, {})


def test_stale_version_changes_nothing() -> None:
    newer = T0 + timedelta(hours=1)
    staged = staged_prospects({"id": 17, "firstName": "Old"})
    decision = only(
        plan_sync(staged, PROSPECTS, [person(900, 17)], {17: state(17, outreach_updated_at=newer)})
    )
    assert (decision.action, decision.reason) == ("skip", "stale_version")
    same = only(plan_sync(staged, PROSPECTS, [person(900, 17)], {17: state(17, outreach_updated_at=T0)}))
    assert same.action == "update"  # the same version is re-applied (idempotent replay), not skipped


def test_validation_failure_flags_the_existing_record() -> None:
    staged = staged_prospects({"id": 17, "firstName": "x" * 32768})
    decision = only(plan_sync(staged, PROSPECTS, [person(900, 17)]))
    message = "prospect 17: firstName is 32768 characters, over the 255 limit of person_first_name"
    assert (decision.action, decision.error, decision.workbooks_id) == ("failed", message, 900)
    assert decision.fields == {
        "cf_person_outreach_sync_error": True,
        "cf_person_outreach_sync_error_message": message,
    }
    assert only(plan_sync(staged, PROSPECTS, [])).fields == {}  # nothing to flag, nothing created


def test_our_own_error_flag_is_cleared_once_the_record_is_valid() -> None:
    message = "prospect 17: main_location[email] is blank (required)"
    record = person(
        900,
        17,
        person_first_name="Old",
        cf_person_outreach_sync_error=True,
        cf_person_outreach_sync_error_message=message,
    )
    ledger_state = {17: state(17, last_outcome="failed", last_error=message)}
    decision = only(plan_sync(staged_prospects({"id": 17}), PROSPECTS, [record], ledger_state))
    assert decision.action == "update"
    assert decision.fields == {
        "person_first_name": "Ann",
        "cf_person_outreach_sync_error": False,
        "cf_person_outreach_sync_error_message": None,
    }
    # Still invalid with the same message already shown: failed, nothing to write (a mapping requiring emails).
    required = with_email_required(PROSPECTS)
    staged = stage_records(extracted_prospects({"id": 17, "emails": []}), required)
    again = only(plan_sync(staged, required, [record], ledger_state))
    assert (again.action, again.fields) == ("failed", {})


def test_links_resolve_or_become_pending() -> None:
    staged = staged_prospects({"id": 17, "accountId": 5}, {"id": 18, "accountId": 6})
    plan = plan_sync(staged, PROSPECTS, [person(900, 17, employer_link=None)], id_maps={"accounts": {5: 500}})
    linked, pending = plan.decisions
    assert linked.fields == {"employer_link": 500}
    assert linked.pending_relations == []
    assert pending.action == "create"
    assert "employer_link" not in pending.fields
    assert [
        (r.outreach_id, r.field, r.target_entity, r.target_outreach_id) for r in plan.pending_relations
    ] == [(18, "employer_link", "accounts", 6)]


def test_unresolved_contacts_are_pending_and_the_rest_is_written_with_aligned_roles() -> None:
    entity = MAPPING.entity("opportunities")
    staged = pd.DataFrame(
        {
            "outreach_id": pd.array([5], dtype="Int64"),
            "outreach_updated_at": [T0],
            "validation_errors": [[]],
            "cf_opportunity_outreach_id": [5],
            "description": ["Deal"],
            "amount": [None],
            "predicted_close_date": [None],
            "probability": [None],
            "opportunity_stage": [None],
            "organisation_id": [None],
            "opportunity_contact_ids": [[20, 30]],
            "opportunity_contact_roles": [["Buyer", "Champ"]],
        }
    )
    pending = only(plan_sync(staged, entity, [], id_maps={"prospects": {20: 200}}))
    # The contact whose prospect is synced is written now, with its own role; prospect 30 is retried later.
    assert pending.fields["opportunity_contact_ids"] == [200]
    assert pending.fields["opportunity_contact_roles"] == ["Buyer"]
    assert [r.target_outreach_id for r in pending.pending_relations] == [30]
    resolved = only(plan_sync(staged, entity, [], id_maps={"prospects": {20: 200, 30: 300}}))
    assert resolved.fields["opportunity_contact_ids"] == [200, 300]
    assert resolved.fields["opportunity_contact_roles"] == ["Buyer", "Champ"]


def test_update_only_entity_skips_unmatched_and_superseded_states() -> None:
    entity = MAPPING.entity("sequence_states")
    frame = pd.DataFrame(
        {
            "id": [1, 2, 3],
            "createdAt": [T0] * 3,
            "updatedAt": [T0, T0 + timedelta(minutes=5), T0],
            "state": ["active", "opted_out", "paused"],
            "stateChangedAt": [T0] * 3,
            "prospectId": pd.array([17, 17, 99], dtype="Int64"),
            "sequenceId": pd.array([None] * 3, dtype="Int64"),
            "sequenceStepId": pd.array([None] * 3, dtype="Int64"),
        }
    )
    staged = stage_records(
        frame,
        entity,
        lookups={
            "sequence": pd.DataFrame({"id": [], "name": []}),
            "sequenceStep": pd.DataFrame({"id": [], "order": []}),
        },
    )
    plan = plan_sync(staged, entity, [person(900, 17)])
    assert [(d.outreach_id, d.action, d.reason) for d in plan.decisions] == [
        (1, "skip", "superseded"),
        (2, "update", None),
        (3, "skip", "no_match"),
    ]
    assert plan.decisions[1].fields["cf_person_outreach_sequence_state"] == "Opted Out"
    assert plan.decisions[1].fields["no_email_soliciting"] is True


def test_plan_is_deterministic_under_input_order() -> None:
    staged = staged_prospects({"id": 3, "firstName": "C"}, {"id": 1, "accountId": 9}, {"id": 2})
    records = [
        person(902, 2),
        person(901, 1, person_first_name="Z"),
        person(903, None, **{"main_location[email]": "p3@example.com"}),
    ]
    plan = plan_sync(staged, PROSPECTS, records, id_maps={"accounts": {9: 90}})
    reversed_plan = plan_sync(staged.iloc[::-1], PROSPECTS, records[::-1], id_maps={"accounts": {9: 90}})
    assert plan == reversed_plan
    assert [d.outreach_id for d in plan.decisions] == [1, 2, 3]
    assert plan.counts() == {"update": 2, "unchanged": 1}
