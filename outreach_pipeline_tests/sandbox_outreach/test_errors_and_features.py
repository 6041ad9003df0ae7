"""Documented error shapes, validation, include/fields, /types and member actions."""

from __future__ import annotations

import requests

from outreach_pipeline.sandbox.outreach.seed import seed_outreach


def _prospect(client, sandbox, **attributes):
    return client.post(
        f"{sandbox.api}/prospects", json={"data": {"type": "prospect", "attributes": attributes}}
    )


def _only_error(response) -> dict:
    body = response.json()
    assert set(body) == {"errors"} and len(body["errors"]) == 1
    error = body["errors"][0]
    assert {"id", "title", "detail"} <= set(error)
    return error


def test_content_type_415(sandbox, client) -> None:
    response = client.post(
        f"{sandbox.api}/prospects",
        data='{"data": {"type": "prospect"}}',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 415
    assert _only_error(response) == {
        "id": "unsupportedMediaType",
        "title": "Unsupported Media Type",
        "detail": "Expected Content-Type header to be 'application/vnd.api+json'.",
    }


def test_malformed_requests_get_documented_errors(sandbox, client) -> None:
    assert client.get(f"{sandbox.api}/widgets").status_code == 404
    assert _only_error(client.get(f"{sandbox.api}/widgets"))["id"] == "resourceNotFound"
    assert client.get(f"{sandbox.api}/prospects/abc").status_code == 404
    bad_json = client.post(f"{sandbox.api}/prospects", data="{not json")
    assert bad_json.status_code == 400 and _only_error(bad_json)["id"] == "badRequest"
    unknown = _prospect(client, sandbox, shoeSize=44)
    assert unknown.status_code == 422 and _only_error(unknown)["source"] == {
        "pointer": "/data/attributes/shoeSize"
    }
    read_only = _prospect(client, sandbox, clickCount=3)
    assert (
        read_only.status_code == 422
        and _only_error(read_only)["source"]["pointer"] == "/data/attributes/clickCount"
    )
    wrong_type = _prospect(client, sandbox, linkedInConnections="many")
    assert wrong_type.status_code == 422 and "linkedInConnections" in _only_error(wrong_type)["detail"]
    unknown_fields = client.get(f"{sandbox.api}/prospects", params={"fields[prospect]": "firstName,shoeSize"})
    assert unknown_fields.status_code == 400 and "shoeSize" in _only_error(unknown_fields)["detail"]
    no_route = requests.get(f"{sandbox.url}/nowhere", timeout=10)
    assert no_route.status_code == 404 and _only_error(no_route)["id"] == "resourceNotFound"


def test_max_length_and_duplicate_email(sandbox, client) -> None:
    too_long = _prospect(client, sandbox, firstName="x" * 256)
    assert too_long.status_code == 422
    error = _only_error(too_long)
    assert error["id"] == "validationError" and error["source"] == {"pointer": "/data/attributes/firstName"}
    assert _prospect(client, sandbox, firstName="x" * 255, emails=["dup@x.com"]).status_code == 201
    duplicate = _prospect(client, sandbox, emails=["DUP@x.com"])
    assert duplicate.status_code == 422
    assert _only_error(duplicate) == {
        "id": "validationError",
        "title": "Validation Error",
        "detail": "Contacts email hash has already been taken.",
        "source": {"pointer": "/data"},
    }
    other = _prospect(client, sandbox, emails=["other@x.com"]).json()["data"]
    clash = client.patch(
        f"{sandbox.api}/prospects/{other['id']}",
        json={"data": {"type": "prospect", "id": other["id"], "attributes": {"emails": ["dup@x.com"]}}},
    )
    assert clash.status_code == 422
    missing_id = client.patch(
        f"{sandbox.api}/prospects/{other['id']}", json={"data": {"type": "prospect", "attributes": {}}}
    )
    assert missing_id.status_code == 422 and _only_error(missing_id)["source"]["pointer"] == "/data/id"


def test_include_and_sparse_fields(sandbox, client) -> None:
    seed_outreach(sandbox.store, prospects=30, seed=3)
    response = client.get(
        f"{sandbox.api}/prospects",
        params={
            "filter[account][id]": "__notnull__",
            "include": "account,owner",
            "page[size]": 5,
            "fields[prospect]": "firstName,account",
            "fields[account]": "name",
        },
    )
    body = response.json()
    assert response.status_code == 200
    for resource in body["data"]:
        assert set(resource["attributes"]) == {"firstName"} and set(resource["relationships"]) == {"account"}
    included_types = {item["type"] for item in body["included"]}
    assert included_types == {"account", "user"}
    account_ids = {r["relationships"]["account"]["data"]["id"] for r in body["data"]}
    assert {i["id"] for i in body["included"] if i["type"] == "account"} == account_ids
    assert all(set(i["attributes"]) == {"name"} for i in body["included"] if i["type"] == "account")
    assert client.get(f"{sandbox.api}/prospects", params={"include": "calls"}).status_code == 400


def test_types_endpoint(sandbox, client) -> None:
    body = client.get(f"{sandbox.api}/types").json()
    by_type = {entry["type"]: entry["meta"]["validations"] for entry in body["data"]}
    assert set(by_type) == {"prospect", "account", "opportunity"}
    assert (
        by_type["prospect"]["custom2"]["type"] == "inclusion" and by_type["prospect"]["custom2"]["definition"]
    )
    assert set(by_type["account"]["custom1"]) == {"type", "required", "label", "definition"}


def test_member_actions(sandbox, client) -> None:
    seed_outreach(sandbox.store, prospects=10, seed=5)
    task = client.post(
        f"{sandbox.api}/tasks", json={"data": {"type": "task", "attributes": {"action": "email"}}}
    ).json()["data"]
    assert task["attributes"]["state"] == "incomplete"
    read_only = client.patch(
        f"{sandbox.api}/tasks/{task['id']}",
        json={"data": {"type": "task", "id": task["id"], "attributes": {"state": "complete"}}},
    )
    assert read_only.status_code == 422
    done = client.post(
        f"{sandbox.api}/tasks/{task['id']}/actions/markComplete",
        params={"actionParams[completionNote]": "Sent"},
    )
    assert done.status_code == 200 and done.json()["data"]["attributes"]["state"] == "complete"
    assert done.json()["data"]["attributes"]["completed"] is True
    assert client.post(f"{sandbox.api}/tasks/{task['id']}/actions/markComplete").status_code == 422
    state = client.post(
        f"{sandbox.api}/sequenceStates",
        json={
            "data": {
                "type": "sequenceState",
                "relationships": {
                    "prospect": {"data": {"type": "prospect", "id": 1}},
                    "sequence": {"data": {"type": "sequence", "id": 1}},
                },
            }
        },
    ).json()["data"]
    url = f"{sandbox.api}/sequenceStates/{state['id']}/actions"
    assert client.post(f"{url}/pause").json()["data"]["attributes"]["state"] == "paused"
    assert client.post(f"{url}/pause").status_code == 422
    assert client.post(f"{url}/resume").json()["data"]["attributes"]["state"] == "active"
    assert client.post(f"{url}/finish").json()["data"]["attributes"]["state"] == "finished"
    assert client.post(f"{url}/explode").status_code == 404
    blank = client.post(f"{sandbox.api}/sequenceStates", json={"data": {"type": "sequenceState"}})
    assert (
        blank.status_code == 422 and _only_error(blank)["source"]["pointer"] == "/data/relationships/prospect"
    )
