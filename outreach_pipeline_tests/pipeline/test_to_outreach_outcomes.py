"""Acceptance, Workbooks -> Outreach outcomes over real HTTP through Dagster: a duplicate email adopts an
unlinked prospect or flags the Person; another refusal sets Outreach Sync Error with its message and clearing
it makes the next window sync the record; a create whose connection drops after the commit exists once."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import dagster as dg

from outreach_pipeline.sandbox.faults import parse_fault_spec
from outreach_pipeline_tests.pipeline.harness import outreach_records
from outreach_pipeline_tests.pipeline.two_way import (
    FIRST_EDIT_WINDOW,
    HOUR,
    SMALL_SEED,
    TO_OUTREACH,
    create_workbooks,
    edit_workbooks,
    person_fields,
    prospect,
    run_assets,
    set_clocks,
    two_way_pipeline,
)

PROSPECTS_WRITTEN = dg.AssetKey(["outreach", "prospects_written"])


def _emails(pipe) -> Counter:
    return Counter(email for record in outreach_records(pipe.sandbox, "prospect")
                   for email in (record.attributes.get("emails") or [])[:1])


def _failed_records(result: dg.ExecuteInProcessResult) -> list[dict]:
    """The rows of the failed_records table of outreach/prospects_written (one window, one materialization)."""
    (materialization,) = [m for m in result.asset_materializations_for_node("outreach_writes_from_workbooks")
                          if m.asset_key == PROSPECTS_WRITTEN]
    assert materialization.metadata["failed_records_not_shown"].value == 0
    return [row.data for row in materialization.metadata["failed_records"].value.records]


def test_duplicate_emails_adopt_or_flag_and_refusals_flag_until_cleared(tmp_path: Path) -> None:
    with two_way_pipeline(tmp_path, **SMALL_SEED) as pipe:
        emails = _emails(pipe)
        seeded = next(r for r in outreach_records(pipe.sandbox, "prospect")
                      if (r.attributes.get("emails") or [None])[0] and emails[r.attributes["emails"][0]] == 1)
        window = FIRST_EDIT_WINDOW
        set_clocks(pipe, window + HOUR / 6)
        adopter = create_workbooks(pipe, "crm/people", {
            "person_first_name": "Adopting", "person_last_name": "Person",
            "main_location[email]": seeded.attributes["emails"][0], "cf_person_sync_to_outreach": True})
        first = create_workbooks(pipe, "crm/people", {
            "person_first_name": "First", "person_last_name": "Holder", "main_location[email]": "shared@dup.example",
            "cf_person_sync_to_outreach": True})
        run_assets(pipe, window, TO_OUTREACH)

        # The seeded prospect was unlinked: adopted (linked and merged), no second prospect with its email.
        adopted = person_fields(pipe, adopter["id"])
        assert int(adopted["cf_person_outreach_id"]) == seeded.id
        assert prospect(pipe, seeded.id).attributes["firstName"] == "Adopting"  # Workbooks changed later
        assert _emails(pipe)[seeded.attributes["emails"][0]] == 1
        linked_first = int(person_fields(pipe, first["id"])["cf_person_outreach_id"])

        window += HOUR
        set_clocks(pipe, window + HOUR / 6)
        second = create_workbooks(pipe, "crm/people", {
            "person_first_name": "Second", "person_last_name": "Claimant", "main_location[email]": "shared@dup.example",
            "cf_person_sync_to_outreach": True})
        duplicate_run = run_assets(pipe, window, TO_OUTREACH)
        (duplicate,) = _failed_records(duplicate_run)
        assert (duplicate["workbooks_id"], duplicate["kind"], duplicate["runs_failed_in_row"]) == (
            second["id"], "duplicate", 1)
        assert "@" not in duplicate["message"]  # the email is masked in Dagster's event store
        second_now = person_fields(pipe, second["id"])
        assert second_now["cf_person_outreach_duplicate"] is True
        assert second_now.get("cf_person_outreach_id") in (None, "")
        assert _emails(pipe)["shared@dup.example"] == 1
        assert int(person_fields(pipe, first["id"])["cf_person_outreach_id"]) == linked_first

        window += HOUR
        set_clocks(pipe, window + HOUR / 6)
        refused = create_workbooks(pipe, "crm/people", {
            "person_first_name": "Refused", "person_last_name": "Once", "cf_person_sync_to_outreach": True})
        pipe.sandbox.outreach_middleware.injector.add(parse_fault_spec(
            "status:status=422:count=1:methods=POST:path=/api/v2/prospects"))
        refused_run = run_assets(pipe, window, TO_OUTREACH)
        pipe.sandbox.outreach_middleware.injector.clear()
        (refusal,) = _failed_records(refused_run)
        assert (refusal["workbooks_id"], refusal["kind"]) == (refused["id"], "refused_by_outreach")
        assert "Outreach refused the write" in refusal["message"]
        refused_now = person_fields(pipe, refused["id"])
        assert refused_now["cf_person_outreach_sync_error"] is True
        assert "Outreach refused the write" in refused_now["cf_person_outreach_sync_error_message"]
        assert refused_now.get("cf_person_outreach_id") in (None, "")

        # Flagged records are left alone, even with the fault gone...
        window += HOUR
        set_clocks(pipe, window + HOUR / 6)
        edit_workbooks(pipe, "crm/people", refused["id"], {"person_last_name": "Still flagged"})
        run_assets(pipe, window, TO_OUTREACH)
        assert person_fields(pipe, refused["id"]).get("cf_person_outreach_id") in (None, "")
        # ...until a person clears the flag: the next window syncs it.
        window += HOUR
        set_clocks(pipe, window + HOUR / 6)
        edit_workbooks(pipe, "crm/people", refused["id"], {"cf_person_outreach_sync_error": False})
        run_assets(pipe, window, TO_OUTREACH)
        healed = int(person_fields(pipe, refused["id"])["cf_person_outreach_id"])
        assert prospect(pipe, healed).attributes["lastName"] == "Still flagged"
