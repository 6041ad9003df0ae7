"""Acceptance, Workbooks -> Outreach through the scheduled job over real HTTP: creates linked back, loops
prevented, a person without email, the link to the employer's account."""

from __future__ import annotations

from pathlib import Path

from outreach_pipeline.engine.ledger import SyncLedger
from outreach_pipeline_tests.pipeline.harness import pipeline, step_failures
from outreach_pipeline_tests.pipeline.two_way import (
    FIRST_EDIT_WINDOW,
    HOUR,
    SMALL_SEED,
    create_workbooks,
    outreach_by_id,
    outreach_writes,
    read_workbooks,
    set_clocks,
    workbooks_writes,
)


def test_people_and_organisations_become_linked_prospects_and_accounts_and_a_rerun_writes_nothing(
    tmp_path: Path,
) -> None:
    with pipeline(tmp_path, **SMALL_SEED) as pipe:
        set_clocks(pipe, FIRST_EDIT_WINDOW + HOUR / 6)
        org = create_workbooks(pipe, "crm/organisations", {
            "name": "Workbooks Only Ltd", "website": "https://wbonly.example", "industry": "Brewing",
            "cf_organisation_sync_to_outreach": True})
        person = create_workbooks(pipe, "crm/people", {
            "person_first_name": "Ada", "person_last_name": "Lovelace", "person_job_title": "Analyst",
            "main_location[email]": "ada@wbonly.example", "main_location[telephone]": "+44 1 234",
            "employer_link": org["id"], "cf_person_sync_to_outreach": True})
        no_email = create_workbooks(pipe, "crm/people", {
            "person_first_name": "Nomail", "person_last_name": "Person", "cf_person_sync_to_outreach": True})
        not_selected = create_workbooks(pipe, "crm/people", {
            "person_first_name": "Local", "person_last_name": "Only", "cf_person_sync_to_outreach": False})

        result = pipe.run(FIRST_EDIT_WINDOW, raise_on_error=False)
        assert result.success, step_failures(result)

        org = read_workbooks(pipe, "crm/organisations", org["id"])
        person = read_workbooks(pipe, "crm/people", person["id"])
        no_email = read_workbooks(pipe, "crm/people", no_email["id"])
        accounts, prospects = outreach_by_id(pipe, "account"), outreach_by_id(pipe, "prospect")
        account = accounts[int(org["cf_organisation_outreach_id"])]
        assert account.attributes["name"] == "Workbooks Only Ltd"
        assert account.attributes["customId"] == org["object_ref"]
        prospect = prospects[int(person["cf_person_outreach_id"])]
        assert prospect.attributes["firstName"] == "Ada"
        assert prospect.attributes["title"] == "Analyst"
        assert prospect.attributes["emails"] == ["ada@wbonly.example"]
        assert prospect.attributes["workPhones"] == ["+44 1 234"]
        assert prospect.attributes["externalId"] == person["object_ref"]
        assert prospect.relationships.get("account") == account.id
        nomail_prospect = prospects[int(no_email["cf_person_outreach_id"])]
        assert not nomail_prospect.attributes.get("emails")
        assert read_workbooks(pipe, "crm/people", not_selected["id"]).get("cf_person_outreach_id") in (None, "")
        assert sum(1 for p in prospects.values() if p.attributes.get("firstName") == "Ada") == 1

        # Read back: the window holds the sync's own writes on both sides (both clocks stamp them in it).
        before = (outreach_writes(pipe), workbooks_writes(pipe))
        result = pipe.run(FIRST_EDIT_WINDOW, raise_on_error=False)
        assert result.success, step_failures(result)
        assert (outreach_writes(pipe), workbooks_writes(pipe)) == before

        ledger = SyncLedger(pipe.ledger_url)
        try:
            state = ledger.get_states("prospects", [prospect.id])[prospect.id]
        finally:
            ledger.dispose()
        assert state.workbooks_id == person["id"]
        assert state.values["person_first_name"] == "Ada"
