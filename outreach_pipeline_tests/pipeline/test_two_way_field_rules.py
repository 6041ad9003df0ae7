"""Acceptance, two-way over real HTTP through Dagster: a field marked `to_workbooks` is never written to Outreach,
and a `skip_blank` field's blank never overwrites a value on the other side, in either direction.

The merge's own unit tests (`engine/test_merge.py`) cover the rules field by field; this one runs them through
both directions' assets against the sandboxes, with a copy of the default mapping that marks the job title
`to_workbooks` and the last name `skip_blank`.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from outreach_pipeline.mapping.models import DEFAULT_MAPPING_PATH
from outreach_pipeline_tests.pipeline.two_way import (
    FIRST_EDIT_WINDOW,
    HOUR,
    SMALL_SEED,
    TO_OUTREACH,
    TO_WORKBOOKS_PEOPLE,
    create_workbooks,
    edit_prospect,
    edit_workbooks,
    person_fields,
    prospect,
    run_assets,
    set_clocks,
    two_way_pipeline,
)

SETUP, EDITS, MORE_EDITS = FIRST_EDIT_WINDOW, FIRST_EDIT_WINDOW + HOUR, FIRST_EDIT_WINDOW + 2 * HOUR


def _mapping(home: Path) -> Path:
    raw = yaml.safe_load(DEFAULT_MAPPING_PATH.read_text(encoding="utf-8"))
    for field in raw["entities"]["prospects"]["fields"]:
        if field["workbooks"] == "person_job_title":
            field["direction"] = "to_workbooks"
        if field["workbooks"] == "person_last_name":
            field["skip_blank"] = True
    path = home / "mapping.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_a_to_workbooks_field_never_reaches_outreach_and_a_skip_blank_blank_never_overwrites(tmp_path: Path) -> None:
    with two_way_pipeline(tmp_path, mapping_path=_mapping(tmp_path), **SMALL_SEED) as pipe:
        set_clocks(pipe, SETUP + HOUR / 6)
        person_id = create_workbooks(pipe, "crm/people", {
            "person_first_name": "Dee", "person_last_name": "Dunn", "person_job_title": "Analyst",
            "cf_person_sync_to_outreach": True})["id"]
        run_assets(pipe, SETUP, TO_OUTREACH)
        outreach_id = int(person_fields(pipe, person_id)["cf_person_outreach_id"])
        created = prospect(pipe, outreach_id).attributes
        # Created in Outreach without the title: the Workbooks -> Outreach direction does not write it.
        assert (created.get("lastName"), created.get("title")) == ("Dunn", None)

        # Workbooks: a new title and a blank last name. Neither reaches Outreach.
        set_clocks(pipe, EDITS + HOUR / 6)
        edit_workbooks(pipe, "crm/people", person_id, {"person_job_title": "Director", "person_last_name": ""})
        set_clocks(pipe, MORE_EDITS + HOUR / 6)
        run_assets(pipe, EDITS, TO_OUTREACH)
        after = prospect(pipe, outreach_id).attributes
        assert (after.get("lastName"), after.get("title")) == ("Dunn", None), after

        # Workbooks gets its last name back (Outreach already holds it: nothing to write). Then Outreach: a title
        # and a blank last name. The title reaches Workbooks; the blank does not overwrite "Dunn".
        set_clocks(pipe, MORE_EDITS + HOUR / 12)
        edit_workbooks(pipe, "crm/people", person_id, {"person_last_name": "Dunn"})
        set_clocks(pipe, MORE_EDITS + HOUR / 3)
        edit_prospect(pipe, outreach_id, {"title": "VP Data", "lastName": None})
        set_clocks(pipe, MORE_EDITS + 2 * HOUR)
        run_assets(pipe, MORE_EDITS, TO_OUTREACH)
        run_assets(pipe, MORE_EDITS, TO_WORKBOOKS_PEOPLE)
        person = person_fields(pipe, person_id)
        assert (person["person_job_title"], person["person_last_name"]) == ("VP Data", "Dunn"), person
        assert prospect(pipe, outreach_id).attributes.get("title") == "VP Data"  # written by Outreach itself
