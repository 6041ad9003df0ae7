"""Acceptance, two-way over real HTTP through Dagster: a Workbooks edit survives the Outreach -> Workbooks run
and reaches Outreach; the same field edited on both sides resolves by its policy whatever the order of the
two directions, recorded as a conflict with both values; the next cycle writes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from outreach_pipeline.engine.ledger import SyncLedger
from outreach_pipeline_tests.pipeline.harness import Pipeline
from outreach_pipeline_tests.pipeline.two_way import (
    FIRST_EDIT_WINDOW,
    HOUR,
    SMALL_SEED,
    TO_OUTREACH,
    TO_WORKBOOKS_PEOPLE,
    create_workbooks,
    edit_prospect,
    edit_workbooks,
    outreach_writes,
    person_fields,
    prospect,
    run_assets,
    set_clocks,
    two_way_pipeline,
    workbooks_writes,
)

SETUP, EDITS, READ_BACK = FIRST_EDIT_WINDOW, FIRST_EDIT_WINDOW + HOUR, FIRST_EDIT_WINDOW + 2 * HOUR
PEOPLE = {
    "a": {"person_first_name": "Ann", "person_last_name": "Able", "person_job_title": "Engineer",
          "main_location[telephone]": "+44 100"},
    "b": {"person_first_name": "Bob", "person_last_name": "Baker", "person_job_title": "Buyer"},
    "c": {"person_first_name": "Cy", "person_last_name": "Cole", "person_job_title": "Chef"},
}


def _scenario(home: Path, outreach_first: bool) -> tuple[dict[str, dict[str, Any]], list[Any], int]:
    with two_way_pipeline(home, **SMALL_SEED) as pipe:
        set_clocks(pipe, SETUP + HOUR / 6)
        ids = {key: create_workbooks(pipe, "crm/people", {**fields, "cf_person_sync_to_outreach": True})["id"]
               for key, fields in PEOPLE.items()}
        run_assets(pipe, SETUP, TO_WORKBOOKS_PEOPLE)
        run_assets(pipe, SETUP, TO_OUTREACH)
        links = {key: int(person_fields(pipe, person_id)["cf_person_outreach_id"]) for key, person_id in ids.items()}

        # a: each side edits another field. b: both edit the title, Workbooks later. c: both edit the first
        # name, Outreach later (latest_wins).
        set_clocks(pipe, EDITS + HOUR / 12)
        edit_workbooks(pipe, "crm/people", ids["a"], {"person_job_title": "Lead Engineer"})
        edit_workbooks(pipe, "crm/people", ids["c"], {"person_first_name": "Cyril"})
        set_clocks(pipe, EDITS + HOUR / 6)
        edit_prospect(pipe, links["a"], {"workPhones": ["+44 200"]})
        edit_prospect(pipe, links["b"], {"title": "Outreach Buyer"})
        set_clocks(pipe, EDITS + HOUR / 3)
        edit_workbooks(pipe, "crm/people", ids["b"], {"person_job_title": "Workbooks Buyer"})
        set_clocks(pipe, EDITS + HOUR / 2)
        edit_prospect(pipe, links["c"], {"firstName": "Cyrus"})

        # The sync itself runs in the next hour, so its writes are read back in the READ_BACK window.
        set_clocks(pipe, READ_BACK + HOUR / 6)
        order = [TO_WORKBOOKS_PEOPLE, TO_OUTREACH] if outreach_first else [TO_OUTREACH, TO_WORKBOOKS_PEOPLE]
        for keys in order:
            run_assets(pipe, EDITS, keys)
        state = {key: _both_sides(pipe, ids[key], links[key]) for key in PEOPLE}

        before = (outreach_writes(pipe), workbooks_writes(pipe))
        run_assets(pipe, READ_BACK, TO_WORKBOOKS_PEOPLE + TO_OUTREACH)
        writes_after_read_back = (outreach_writes(pipe), workbooks_writes(pipe))
        ledger = SyncLedger(pipe.ledger_url)
        try:
            conflicts = ledger.conflicts("prospects")
        finally:
            ledger.dispose()
        keys_by_link = {link: key for key, link in links.items()}
        return state, [(keys_by_link[c.outreach_id], c.field, c.outreach_value, c.workbooks_value, c.winner)
                       for c in conflicts], int(writes_after_read_back != before)


def _both_sides(pipe: Pipeline, person_id: int, outreach_id: int) -> dict[str, Any]:
    person, record = person_fields(pipe, person_id), prospect(pipe, outreach_id)
    return {
        "workbooks": (person["person_first_name"], person["person_job_title"], person["main_location[telephone]"]),
        "outreach": (record.attributes.get("firstName"), record.attributes.get("title"),
                     (record.attributes.get("workPhones") or [None])[0]),
    }


def test_edits_on_both_sides_merge_by_policy_in_either_order_and_the_read_back_writes_nothing(tmp_path: Path) -> None:
    expected = {
        "a": ("Ann", "Lead Engineer", "+44 200"),  # the Workbooks edit survived and reached Outreach
        "b": ("Bob", "Workbooks Buyer", None),  # both edited the title, Workbooks later
        "c": ("Cyrus", "Chef", None),  # both edited the first name, Outreach later
    }
    expected_conflicts = [("b", "person_job_title", "Outreach Buyer", "Workbooks Buyer", "workbooks"),
                          ("c", "person_first_name", "Cyrus", "Cyril", "outreach")]
    for outreach_first in (True, False):
        state, conflicts, read_back_wrote = _scenario(tmp_path / f"outreach_first_{outreach_first}", outreach_first)
        for key, values in expected.items():
            assert state[key] == {"workbooks": values, "outreach": values}, (outreach_first, key, state[key])
        assert sorted(conflicts) == expected_conflicts, outreach_first
        assert read_back_wrote == 0, outreach_first
