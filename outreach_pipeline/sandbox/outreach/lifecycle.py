"""Server-side behaviour around writes: defaults on create, derived attributes, member actions."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

from outreach_pipeline.sandbox.outreach.errors import ApiError, bad_request, validation_error
from outreach_pipeline.sandbox.outreach.spec import ResourceSpec
from outreach_pipeline.sandbox.outreach.store import OutreachRecord, RelationshipValue
from outreach_pipeline.sandbox.outreach.validation import check_attribute

# The UI states of a sequence state, as the API spells them ("active" is the only literal confirmed).
SEQUENCE_STATES = ("pending", "active", "paused", "finished", "disabled", "failed", "bounced", "opted_out")
TASK_STATES = ("pending", "incomplete", "complete")

CREATE_DEFAULTS: dict[str, dict[str, Any]] = {
    "prospect": {"externalSource": "outreach-api"},
    "account": {"externalSource": "outreach-api", "named": True},
    "task": {"state": "incomplete", "taskType": "manual", "completed": False},
    "sequenceState": {"state": "active"},
    "call": {"state": "completed"},
    "sequence": {"enabled": False},
    "webhook": {"active": True, "resource": "*", "action": "*", "payloadVersion": 1},
}
REQUIRED_RELATIONSHIPS: dict[str, tuple[str, ...]] = {
    "sequenceState": ("prospect", "sequence"),
    "opportunityProspectRole": ("opportunity", "prospect"),
}


def full_name(attributes: Mapping[str, Any]) -> str | None:
    """`name` of a prospect or user: first and last name joined, None when both are unset."""
    parts = [attributes.get("firstName"), attributes.get("lastName")]
    joined = " ".join(part for part in parts if part)
    return joined or None


def create_attributes(resource_type: str, attributes: Mapping[str, Any], now_text: str) -> dict[str, Any]:
    """Attributes of a new record: client values over defaults, plus server-owned ones."""
    result = CREATE_DEFAULTS.get(resource_type, {}) | dict(attributes)
    if resource_type in ("prospect", "user"):
        result["name"] = full_name(result)
    if resource_type in ("task", "sequenceState", "call"):
        result["stateChangedAt"] = now_text
    if resource_type == "sequenceState":
        result["activeAt"] = now_text
    if resource_type == "call":
        result["uid"] = str(uuid.uuid4())
    return result


def update_attributes(
    resource_type: str, current: OutreachRecord, changes: Mapping[str, Any]
) -> dict[str, Any]:
    """Changes plus derived attributes that follow from them (a renamed prospect gets a new `name`)."""
    result = dict(changes)
    if resource_type in ("prospect", "user") and ({"firstName", "lastName"} & changes.keys()):
        result["name"] = full_name(current.attributes | dict(changes))
    return result


def check_required_relationships(resource_type: str, relationships: Mapping[str, RelationshipValue]) -> None:
    """422 when a create lacks a relationship the real API insists on (e.g. a sequenceState's prospect)."""
    for name in REQUIRED_RELATIONSHIPS.get(resource_type, ()):
        if relationships.get(name) is None:
            label = name[0].upper() + name[1:]
            raise validation_error(f"{label} can't be blank.", pointer=f"/data/relationships/{name}")


# --------------------------------------------------------------------------- member actions

ActionHandler = Callable[[ResourceSpec, OutreachRecord, Mapping[str, str], str], dict[str, Any]]


def _transition(allowed_from: tuple[str, ...], target: str) -> ActionHandler:
    def handler(
        spec: ResourceSpec, record: OutreachRecord, _params: Mapping[str, str], now_text: str
    ) -> dict[str, Any]:
        state = record.attributes.get("state")
        if state not in allowed_from:
            raise validation_error(
                f"Cannot move {spec.type} {record.id} from state '{state}' to '{target}'.",
                pointer="/data/attributes/state",
            )
        return {"state": target, "stateChangedAt": now_text}

    return handler


def _mark_complete(
    spec: ResourceSpec, record: OutreachRecord, params: Mapping[str, str], now_text: str
) -> dict[str, Any]:
    if record.attributes.get("state") == "complete":
        raise validation_error(f"task {record.id} is already complete.", pointer="/data/attributes/state")
    changes: dict[str, Any] = {
        "state": "complete",
        "completed": True,
        "completedAt": now_text,
        "stateChangedAt": now_text,
    }
    note = params.get("completionNote")
    if note:
        changes["note"] = check_attribute(spec, spec.attributes["note"], note)
    return changes


def _reschedule(
    spec: ResourceSpec, record: OutreachRecord, params: Mapping[str, str], _now_text: str
) -> dict[str, Any]:
    if "dueAt" not in params:
        raise bad_request("reschedule needs actionParams[dueAt].", parameter="actionParams[dueAt]")
    return {"dueAt": check_attribute(spec, spec.attributes["dueAt"], params["dueAt"])}


def _update_note(
    spec: ResourceSpec, record: OutreachRecord, params: Mapping[str, str], _now_text: str
) -> dict[str, Any]:
    if "note" not in params:
        raise bad_request("updateNote needs actionParams[note].", parameter="actionParams[note]")
    return {"note": check_attribute(spec, spec.attributes["note"], params["note"])}


def _set_enabled(enabled: bool) -> ActionHandler:
    def handler(
        _spec: ResourceSpec, _record: OutreachRecord, _params: Mapping[str, str], now_text: str
    ) -> dict[str, Any]:
        return {"enabled": enabled, "enabledAt": now_text if enabled else None}

    return handler


ACTIONS: dict[tuple[str, str], tuple[ActionHandler, frozenset[str]]] = {
    ("sequenceState", "finish"): (
        _transition(tuple(s for s in SEQUENCE_STATES if s != "finished"), "finished"),
        frozenset(),
    ),
    ("sequenceState", "pause"): (_transition(("active",), "paused"), frozenset()),
    ("sequenceState", "resume"): (_transition(("paused",), "active"), frozenset()),
    ("task", "markComplete"): (_mark_complete, frozenset({"completionNote", "completionAction"})),
    ("task", "reschedule"): (_reschedule, frozenset({"dueAt"})),
    ("task", "updateNote"): (_update_note, frozenset({"note"})),
    ("sequence", "activate"): (_set_enabled(True), frozenset()),
    ("sequence", "deactivate"): (_set_enabled(False), frozenset()),
}


def run_action(
    spec: ResourceSpec, action: str, record: OutreachRecord, params: Mapping[str, str], now_text: str
) -> dict[str, Any]:
    """Attribute changes a member action makes.

    Raises:
        ApiError: 404 for an action the spec does not define, 400 for one the sandbox does not emulate or
            for unacceptable `actionParams`, 422 when the record's state forbids the action.
    """
    if action not in spec.actions:
        raise ApiError(
            404, "resourceNotFound", "Resource Not Found", f"{spec.type} has no action '{action}'."
        )
    entry = ACTIONS.get((spec.type, action))
    if entry is None:
        raise bad_request(f"The sandbox does not emulate the {spec.type} action '{action}'.")
    handler, accepted = entry
    unexpected = sorted(params.keys() - accepted)
    if unexpected:
        raise bad_request(
            f"Unacceptable parameter actionParams[{unexpected[0]}] for {spec.type} action '{action}'.",
            parameter=f"actionParams[{unexpected[0]}]",
        )
    return handler(spec, record, params, now_text)
