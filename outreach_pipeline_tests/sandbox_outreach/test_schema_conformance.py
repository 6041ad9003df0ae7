"""Every served resource's list, fetch, create and update responses validate against the spec's schemas."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from outreach_pipeline.sandbox.outreach.seed import seed_outreach
from outreach_pipeline.sandbox.outreach.spec import SERVED_TYPES, load_openapi, resource_specs

SPEC_URI = "urn:outreach-openapi"

# Minimal valid create bodies; relationship ids refer to the small seeded org.
CREATE_BODIES: dict[str, dict[str, Any]] = {
    "user": {"attributes": {"firstName": "New", "lastName": "User", "email": "new.user@sandbox.example"}},
    "mailbox": {
        "attributes": {"email": "new.box@sandbox.example"},
        "relationships": {"user": {"data": {"type": "user", "id": 1}}},
    },
    "stage": {"attributes": {"name": "Warm", "order": 9}},
    "opportunityStage": {"attributes": {"name": "Discovery", "order": 9, "isClosed": False}},
    "account": {"attributes": {"name": "Schema Test Ltd", "domain": "schema.example"}},
    "prospect": {
        "attributes": {"firstName": "Zoë", "emails": ["zoe@schema.example"]},
        "relationships": {"account": {"data": {"type": "account", "id": 1}}},
    },
    "opportunity": {
        "attributes": {"name": "Schema deal", "amount": 1000, "closeDate": "2024-05-01T00:00:00Z"},
        "relationships": {"opportunityStage": {"data": {"type": "opportunityStage", "id": 1}}},
    },
    "opportunityProspectRole": {
        "attributes": {"role": "Champion", "primary": True},
        "relationships": {
            "opportunity": {"data": {"type": "opportunity", "id": 1}},
            "prospect": {"data": {"type": "prospect", "id": 1}},
        },
    },
    "sequence": {"attributes": {"name": "Schema sequence", "sequenceType": "interval"}},
    "sequenceStep": {
        "attributes": {"order": 1, "stepType": "call"},
        "relationships": {"sequence": {"data": {"type": "sequence", "id": 1}}},
    },
    "sequenceState": {
        "relationships": {
            "prospect": {"data": {"type": "prospect", "id": 2}},
            "sequence": {"data": {"type": "sequence", "id": 1}},
            "mailbox": {"data": {"type": "mailbox", "id": 1}},
        }
    },
    "task": {
        "attributes": {"action": "call", "dueAt": "2024-04-01T09:00:00Z", "note": "Ring them"},
        "relationships": {"subject": {"data": {"type": "prospect", "id": 1}}},
    },
    "call": {
        "attributes": {"direction": "outbound", "outcome": "Answered", "to": "+441234"},
        "relationships": {"prospect": {"data": {"type": "prospect", "id": 1}}},
    },
    # No delivery is made: nothing listens at this url and no record changes after it is created.
    "webhook": {"attributes": {"url": "http://127.0.0.1:9/hooks", "secret": "s", "resource": "prospect"}},
}
UPDATE_ATTRIBUTES: dict[str, dict[str, Any]] = {
    "user": {"title": "Boss"},
    "mailbox": {"maxEmailsPerDay": 50},
    "stage": {"color": "#000000"},
    "opportunityStage": {"color": "#111111"},
    "account": {"industry": "Retail"},
    "prospect": {"lastName": "Müller"},
    "opportunity": {"probability": 40},
    "opportunityProspectRole": {"role": "Influencer"},
    "sequence": {"description": "Updated"},
    "sequenceStep": {"interval": 3600},
    "task": {"note": "Updated"},
    "webhook": {"active": False},
}


def _nullable_to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0 `nullable: true` has no JSON Schema meaning; rewrite it as the equivalent `type: [T, "null"]`.

    The spec marks every attribute (and every to-one `data`) nullable, and the real API renders unset
    attributes as null, so this is the faithful reading of the spec, not a loosening: attributes without
    `nullable` (none today) would still reject null.
    """
    if isinstance(node, dict):
        converted = {key: _nullable_to_json_schema(value) for key, value in node.items()}
        if converted.pop("nullable", False) and "type" in converted:
            converted["type"] = [converted["type"], "null"]
        if converted.get("type") == ["array", "null"] and isinstance(converted.get("items"), dict):
            converted["items"].pop("format", None)
        return converted
    if isinstance(node, list):
        return [_nullable_to_json_schema(item) for item in node]
    return node


@pytest.fixture(scope="module")
def validators() -> dict[str, Draft202012Validator]:
    document = _nullable_to_json_schema(copy.deepcopy(load_openapi()))
    registry = Registry().with_resource(
        SPEC_URI, Resource.from_contents(document, default_specification=DRAFT202012)
    )
    return {
        resource_type: Draft202012Validator(
            {"$ref": f"{SPEC_URI}#/components/schemas/{resource_type}Response"}, registry=registry
        )
        for resource_type in SERVED_TYPES
    }


def _assert_valid(validator: Draft202012Validator, resource: dict[str, Any]) -> None:
    errors = sorted(validator.iter_errors(resource), key=lambda error: list(error.path))
    assert not errors, [f"{list(error.path)}: {error.message}" for error in errors[:5]]


def test_nullable_rewrite_keeps_types_strict(validators) -> None:
    bad = {"type": "prospect", "id": 1, "attributes": {"firstName": 5}, "relationships": {}}
    assert list(validators["prospect"].iter_errors(bad))


@pytest.mark.parametrize("resource_type", SERVED_TYPES)
def test_resource_responses_match_spec(sandbox, client, validators, resource_type: str) -> None:
    seed_outreach(sandbox.store, prospects=20, seed=7)
    if resource_type == "webhook":  # an org has none until an integration registers one
        sandbox.store.create("webhook", {"url": "http://127.0.0.1:9/seeded", "resource": "*", "action": "*"})
    spec = resource_specs()[resource_type]
    validator = validators[resource_type]

    listed = client.get(f"{sandbox.api}/{spec.plural}", params={"page[size]": 5})
    assert listed.status_code == 200, listed.text
    assert listed.json()["data"], f"seed left no {resource_type}"
    for resource in listed.json()["data"]:
        _assert_valid(validator, resource)
        assert set(resource["attributes"]) == set(spec.attributes)
        assert resource["links"]["self"] == f"{sandbox.api}/{spec.plural}/{resource['id']}"

    first_id = listed.json()["data"][0]["id"]
    fetched = client.get(f"{sandbox.api}/{spec.plural}/{first_id}")
    assert fetched.status_code == 200
    _assert_valid(validator, fetched.json()["data"])

    created = client.post(
        f"{sandbox.api}/{spec.plural}", json={"data": {"type": resource_type, **CREATE_BODIES[resource_type]}}
    )
    assert created.status_code == 201, created.text
    new = created.json()["data"]
    _assert_valid(validator, new)
    assert created.headers["Location"] == new["links"]["self"]

    if "update" in spec.methods:
        body = {
            "data": {"type": resource_type, "id": new["id"], "attributes": UPDATE_ATTRIBUTES[resource_type]}
        }
        updated = client.patch(f"{sandbox.api}/{spec.plural}/{new['id']}", json=body)
        assert updated.status_code == 200, updated.text
        _assert_valid(validator, updated.json()["data"])
        for name, value in UPDATE_ATTRIBUTES[resource_type].items():
            assert updated.json()["data"]["attributes"][name] == value
    else:
        refused = client.patch(
            f"{sandbox.api}/{spec.plural}/{new['id']}",
            json={"data": {"type": resource_type, "id": new["id"]}},
        )
        assert refused.status_code == 405
        assert refused.json()["errors"][0]["id"] == "methodNotAllowed"

    if "delete" in spec.methods:
        assert client.delete(f"{sandbox.api}/{spec.plural}/{new['id']}").status_code == 204
        gone = client.get(f"{sandbox.api}/{spec.plural}/{new['id']}")
        assert gone.status_code == 404
        assert (
            gone.json()["errors"][0]["detail"] == f"Could not find '{resource_type}' with ID '{new['id']}'."
        )


def test_relationship_shapes(sandbox, client) -> None:
    seed_outreach(sandbox.store, prospects=20, seed=7)
    role = client.get(f"{sandbox.api}/opportunityProspectRoles/1").json()["data"]
    prospect_id = role["relationships"]["prospect"]["data"]["id"]
    prospect = client.get(f"{sandbox.api}/prospects/{prospect_id}").json()["data"]
    relationships = prospect["relationships"]
    assert relationships["mailings"] == {
        "links": {"related": f"{sandbox.api}/mailings?filter[prospect][id]={prospect_id}"}
    }
    opportunities = relationships["opportunities"]
    assert {"type": "opportunity", "id": role["relationships"]["opportunity"]["data"]["id"]} in opportunities[
        "data"
    ]
    assert opportunities["meta"]["count"] == len(opportunities["data"])
    assert (
        opportunities["links"]["related"] == f"{sandbox.api}/opportunities?filter[prospect][id]={prospect_id}"
    )
    assert relationships["persona"] == {"data": None}
