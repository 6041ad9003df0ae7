"""Batch writes sent as the official binding sends them: square arrays, working-set filter, locking."""

from __future__ import annotations

import urllib.parse

import requests

from outreach_pipeline.sandbox.workbooks.store import STALE_LOCK_MESSAGE


def test_binding_wire_format_round_trip(sandbox):
    """POST + _method, client=api, _dc, api_key, _api_version=1, nested keys, arrays, :null_value:."""
    created = sandbox.create(
        "crm/people",
        [
            {"person_first_name": "Łukasz", "person_last_name": "Nowak", "main_location[email]": "l@x.com"},
            {"name": "Prof. Ann Lee", "person_last_name": "Lee", "no_email_soliciting": "yes"},
        ],
    )
    assert created["success"] is True and created["flash"] == "Updated successfully"
    assert [o["name"] for o in created["affected_objects"]] == ["Łukasz Nowak", "Prof. Ann Lee"]
    assert created["affected_object_information"] == [{"success": True, "errors": {}, "warnings": {}}] * 2
    first, second = created["affected_objects"]
    assert first["lock_version"] == 0 and first["object_ref"] == f"PERS-{first['id']}"
    assert first["main_location[email]"] == "l@x.com" and second["no_email_soliciting"] is True

    update = sandbox.client.batch(
        "crm/people",
        [
            {"id": first["id"], "lock_version": 0, "person_job_title": "CTO", "main_location[email]": None},
            {"id": second["id"], "lock_version": 0, "person_first_name": "Ann"},
        ],
        "update",
    ).json()
    updated = update["affected_objects"]
    assert [o["lock_version"] for o in updated] == [1, 1]
    # :no_value: (a key only the other object has) leaves the field unchanged; :null_value: clears it.
    assert updated[0]["person_job_title"] == "CTO" and updated[0]["main_location[email]"] is None
    assert updated[0]["person_first_name"] == "Łukasz"
    # Changing a name part re-derives the full name, as Workbooks does.
    assert updated[1]["person_job_title"] is None and updated[1]["name"] == "Ann Lee"

    opportunity = sandbox.create(
        "crm/opportunities",
        [{"description": "Deal", "amount": "250 EUR", "opportunity_contact_ids": [first["id"], second["id"]],
          "predicted_close_date": "2024-04-01", "document_date": "1 Apr 2024"}],
    )["affected_objects"][0]  # fmt: skip
    assert opportunity["opportunity_contact_ids"] == f"[{first['id']},{second['id']}]"
    assert opportunity["amount"] == "250 EUR 0" and opportunity["predicted_close_date"] == " 1 Apr 2024"


def test_real_put_and_get_verbs_with_query_string(sandbox):
    body = urllib.parse.urlencode(
        [("api_key", "sandbox-api-key"), ("_ff[]", "id"), ("_ft[]", "eq"), ("_fc[]", "0"),
         ("__method[]", "POST"), ("id[]", "0"), ("lock_version[]", "0"), ("name[]", "Acme")]
    )  # fmt: skip
    put = requests.put(f"{sandbox.url}/crm/organisations.api", data=body,
                       headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert put.json()["success"] is True
    get = requests.get(
        f"{sandbox.url}/crm/organisations.api", params={"api_key": "sandbox-api-key", "json": "pretty"}
    )
    assert get.json()["data"][0]["name"] == "Acme" and "\n  " in get.text


def test_stale_lock_version_fails_that_object(sandbox):
    org = sandbox.create("crm/organisations", [{"name": "Acme"}])["affected_objects"][0]
    sandbox.client.batch(
        "crm/organisations", [{"id": org["id"], "lock_version": 0, "name": "Acme 2"}], "update"
    )
    stale = sandbox.client.batch(
        "crm/organisations", [{"id": org["id"], "lock_version": 0, "name": "Acme 3"}], "update"
    )
    body = stale.json()
    assert stale.status_code == 200 and body["success"] is False
    assert body["affected_object_information"][0]["errors"] == {"lock_version": STALE_LOCK_MESSAGE}
    assert body["failures"][0]["id"] == org["id"]
    assert sandbox.store.get_record("crm/organisations", org["id"])["name"] == "Acme 2"


def test_at_most_100_objects_per_request(sandbox):
    too_many = sandbox.client.batch("crm/organisations", [{"name": f"Org {i}"} for i in range(101)], "create")
    assert too_many.status_code == 406 and "no more than 100" in too_many.json()["flash"]
    assert sandbox.create("crm/organisations", [{"name": f"Org {i}"} for i in range(100)])["success"] is True


def test_all_or_nothing_by_default_and_per_object_on_request(sandbox):
    batch = [{"name": "Good"}, {"name": "x" * 256}, {"name": "Also good"}]
    failed = sandbox.client.batch("crm/organisations", batch, "create").json()
    assert failed["success"] is False and failed["affected_objects"] == []
    assert "name is too long" in failed["affected_object_information"][1]["errors"]["name"]
    assert "all-or-nothing" in failed["affected_object_information"][0]["errors"]["base"]
    assert failed["affected_object_errors"][1]["name"][0].startswith("name is too long")
    assert "object 2 of 3" in failed["flash"] and "[1]" in failed["errors"]
    assert sandbox.ids("crm/organisations") == []

    partial = sandbox.client.batch(
        "crm/organisations", batch, "create", {"_per_object_transactions": "true"}
    ).json()
    assert [i["success"] for i in partial["affected_object_information"]] == [True, False, True]
    assert "errors" in partial  # the binding reports this as not-ok
    assert [r["name"] for r in sandbox.client.get("crm/organisations").json()["data"]] == [
        "Good",
        "Also good",
    ]


def test_validation_names_the_field(sandbox):
    response = sandbox.client.batch(
        "crm/opportunities",
        [{"description": "D", "probability": "high", "predicted_close_date": "someday", "amount": "lots"}],
        "create",
    ).json()
    errors = response["affected_object_information"][0]["errors"]
    assert set(errors) == {"probability", "predicted_close_date", "amount"}
    assert "'high' is not an integer" in errors["probability"]
    missing = sandbox.client.batch("crm/people", [{"person_first_name": "Only"}], "create").json()
    assert "person_last_name" in missing["affected_object_information"][0]["errors"]["name"]
    bad_pick = sandbox.client.batch(
        "activity/tasks", [{"name": "T", "activity_status": "Maybe"}], "create"
    ).json()
    assert "picklist" in bad_pick["affected_object_information"][0]["errors"]["activity_status"]


def test_strict_attribute_checking(sandbox):
    lenient = sandbox.create("crm/organisations", [{"name": "A", "shoe_size": "9"}])
    assert lenient["success"] is True and "shoe_size" in lenient["affected_object_information"][0]["warnings"]
    strict = sandbox.client.batch(
        "crm/organisations", [{"name": "B", "shoe_size": "9"}], "create", {"_strict_attribute_checking": "1"}
    ).json()
    assert strict["success"] is False
    assert (
        "not an attribute of Private::Crm::Organisation"
        in strict["affected_object_information"][0]["errors"]["shoe_size"]
    )


def test_working_set_filter_is_required_and_checked(sandbox):
    org = sandbox.create("crm/organisations", [{"name": "Acme"}])["affected_objects"][0]
    square = [("__method[]", "PUT"), ("id[]", str(org["id"])), ("lock_version[]", "0"), ("name[]", "New")]
    base = [("api_key", "sandbox-api-key"), ("_method", "PUT"), ("client", "api")]
    no_filter = requests.post(f"{sandbox.url}/crm/organisations.api", data=base + square)
    assert no_filter.status_code == 406 and "working set" in no_filter.json()["flash"]
    wrong = requests.post(
        f"{sandbox.url}/crm/organisations.api",
        data=[*base, ("_ff[]", "id"), ("_ft[]", "eq"), ("_fc[]", "999"), *square],
    )
    assert wrong.status_code == 406 and f"not selected: id {org['id']}" in wrong.json()["flash"]
    uneven = requests.post(
        f"{sandbox.url}/crm/organisations.api",
        data=[
            *base,
            ("_ff[]", "id"),
            ("_ft[]", "eq"),
            ("_fc[]", str(org["id"])),
            *square,
            ("name[]", "Extra"),
        ],
    )
    assert uneven.status_code == 406 and "square arrays" in uneven.json()["flash"]
    assert sandbox.store.get_record("crm/organisations", org["id"])["name"] == "Acme"


def test_updated_at_and_lock_version_bump_on_delete_and_deleted_record_cannot_change(sandbox):
    task = sandbox.create("activity/tasks", [{"name": "T"}])["affected_objects"][0]
    deleted = sandbox.client.batch("activity/tasks", [{"id": task["id"], "lock_version": 0}], "delete").json()
    assert deleted["affected_objects"] == [{"id": task["id"], "lock_version": 1}]
    again = sandbox.client.batch(
        "activity/tasks", [{"id": task["id"], "lock_version": 1, "name": "U"}], "update"
    )
    assert "does not exist" in again.json()["affected_object_information"][0]["errors"]["id"]
