"""Acceptance: with the sandbox dropping the connection after committing a create, exactly one record exists
after the run, linked back, for prospects, accounts, opportunities and tasks (the lost create is looked up by
the key written on create, or for a task by its content among the newest, never retried blind). The task of a
synced Person, completed in Workbooks, is completed in Outreach through markComplete."""

from __future__ import annotations

from pathlib import Path

from outreach_pipeline.sandbox.faults import parse_fault_spec
from outreach_pipeline_tests.pipeline.harness import outreach_records
from outreach_pipeline_tests.pipeline.two_way import (
    FIRST_EDIT_WINDOW,
    HOUR,
    SMALL_SEED,
    create_workbooks,
    read_workbooks,
    set_clocks,
    two_way_pipeline,
)


def test_a_create_whose_reply_is_lost_after_the_commit_exists_once(tmp_path: Path) -> None:
    with two_way_pipeline(tmp_path, **SMALL_SEED) as pipe:
        set_clocks(pipe, FIRST_EDIT_WINDOW + HOUR / 6)
        org = create_workbooks(pipe, "crm/organisations", {
            "name": "Dropped Reply Ltd", "cf_organisation_sync_to_outreach": True})
        person = create_workbooks(pipe, "crm/people", {
            "person_first_name": "Lost", "person_last_name": "Reply", "main_location[email]": "lost@reply.example",
            "cf_person_sync_to_outreach": True})
        nomail = create_workbooks(pipe, "crm/people", {
            "person_first_name": "Lost", "person_last_name": "Without Email", "cf_person_sync_to_outreach": True})
        opportunity = create_workbooks(pipe, "crm/opportunities", {
            "description": "Dropped deal", "probability": 40, "organisation_id": org["id"],
            "cf_opportunity_sync_to_outreach": True})
        task = create_workbooks(pipe, "activity/tasks", {
            "name": "Call back", "activity_type": "Phone call", "description": "About the renewal",
            "due_date": "5 Nov 2026", "activity_status": "Complete", "primary_contact_type": "Private::Crm::Person",
            "primary_contact_id": person["id"], "cf_task_sync_to_outreach": True})
        orphan_task = create_workbooks(pipe, "activity/tasks", {
            "name": "Nobody's", "activity_type": "To-do", "cf_task_sync_to_outreach": True})
        pipe.sandbox.outreach_middleware.injector.add(parse_fault_spec(",".join(
            f"drop_after_write:count={count}:methods=POST:path=/api/v2/{resource}"
            for resource, count in (("accounts", 1), ("prospects", 2), ("opportunities", 1), ("tasks", 1))
        )))
        result = pipe.run(FIRST_EDIT_WINDOW, raise_on_error=False)
        faults = pipe.sandbox.outreach_middleware.stats.snapshot()["faults"]
        pipe.sandbox.outreach_middleware.injector.clear()
        assert result.success

        for record_type, controller, workbooks_record, link_key, key_attribute in (
            ("account", "crm/organisations", org, "cf_organisation_outreach_id", "customId"),
            ("prospect", "crm/people", person, "cf_person_outreach_id", "externalId"),
            ("prospect", "crm/people", nomail, "cf_person_outreach_id", "externalId"),
            ("opportunity", "crm/opportunities", opportunity, "cf_opportunity_outreach_id", "customId"),
        ):
            made = [r for r in outreach_records(pipe.sandbox, record_type)
                    if r.attributes.get(key_attribute) == workbooks_record["object_ref"]]
            assert len(made) == 1, (record_type, workbooks_record["object_ref"], len(made))
            linked = read_workbooks(pipe, controller, workbooks_record["id"])[link_key]
            assert int(linked) == made[0].id, record_type
        opportunity_made = next(r for r in outreach_records(pipe.sandbox, "opportunity")
                                if r.attributes.get("customId") == opportunity["object_ref"])
        account_made = next(r for r in outreach_records(pipe.sandbox, "account")
                            if r.attributes.get("customId") == org["object_ref"])
        assert opportunity_made.attributes["name"] == "Dropped deal"
        assert opportunity_made.attributes["probability"] == 40
        assert opportunity_made.relationships.get("account") == account_made.id

        prospect_id = int(read_workbooks(pipe, "crm/people", person["id"])["cf_person_outreach_id"])
        tasks = [r for r in outreach_records(pipe.sandbox, "task") if r.attributes.get("note") == "About the renewal"]
        assert len(tasks) == 1, len(tasks)
        made_task = tasks[0]
        assert made_task.relationships.get("subject") == {"type": "prospect", "id": prospect_id}
        assert made_task.attributes["action"] == "call"
        assert made_task.attributes["state"] == "complete"
        assert made_task.attributes["dueAt"].startswith("2026-11-05")
        assert read_workbooks(pipe, "activity/tasks", task["id"])["cf_task_outreach_id"] == f"task:{made_task.id}"
        # A task whose primary contact is not a synced Person stays in Workbooks.
        assert read_workbooks(pipe, "activity/tasks", orphan_task["id"]).get("cf_task_outreach_id") in (None, "")
        assert sum(faults.values()) == 5, faults  # every create's reply was lost once
