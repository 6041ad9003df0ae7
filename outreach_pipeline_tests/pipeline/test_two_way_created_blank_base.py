"""A record created in Outreach from Workbooks records its blank fields as the agreed base: a later change of such
a field in Workbooks is Workbooks' change, even when Outreach changed another field of the record in the same
window (it used to be decided as a conflict by the records' update times, and Outreach's blank overwrote it)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from outreach_pipeline_tests.pipeline.harness import pipeline, step_failures
from outreach_pipeline_tests.pipeline.two_way import (
    FIRST_EDIT_WINDOW,
    HOUR,
    SMALL_SEED,
    create_workbooks,
    edit_prospect,
    edit_workbooks,
    prospect,
    read_workbooks,
    set_clocks,
)

STATE = "main_location[county_province_state]"


def test_a_field_blank_at_create_then_set_in_workbooks_reaches_outreach_while_outreach_edits_another(
    tmp_path: Path,
) -> None:
    with pipeline(tmp_path, **SMALL_SEED) as pipe:
        set_clocks(pipe, FIRST_EDIT_WINDOW + timedelta(minutes=10))
        person_id = int(create_workbooks(pipe, "crm/people", {
            "person_first_name": "Blank", "person_last_name": "Base", "main_location[email]": "blank@base.example",
            "cf_person_sync_to_outreach": True})["id"])
        set_clocks(pipe, FIRST_EDIT_WINDOW + HOUR + timedelta(minutes=10))
        result = pipe.run(FIRST_EDIT_WINDOW, raise_on_error=False)
        assert result.success, step_failures(result)
        prospect_id = int(read_workbooks(pipe, "crm/people", person_id)["cf_person_outreach_id"])

        # One window, one record, a different field changed on each side (same minute).
        set_clocks(pipe, FIRST_EDIT_WINDOW + HOUR + timedelta(minutes=30))
        edit_prospect(pipe, prospect_id, {"title": "Edited in Outreach"})
        edit_workbooks(pipe, "crm/people", person_id, {STATE: "Edited in Workbooks"})
        set_clocks(pipe, FIRST_EDIT_WINDOW + 2 * HOUR + timedelta(minutes=10))
        result = pipe.run(FIRST_EDIT_WINDOW + HOUR, raise_on_error=False)
        assert result.success, step_failures(result)

        person, outreach = read_workbooks(pipe, "crm/people", person_id), prospect(pipe, prospect_id).attributes
        assert (person[STATE], person["person_job_title"]) == ("Edited in Workbooks", "Edited in Outreach")
        assert (outreach.get("addressState"), outreach.get("title")) == ("Edited in Workbooks", "Edited in Outreach")
