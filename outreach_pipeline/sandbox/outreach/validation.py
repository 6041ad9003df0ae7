"""Validate JSON:API write bodies against the spec: unknown or read-only members, types, maxLength.

Every failure is a 422 `validationError` whose `source.pointer` names the member and whose detail names
the resource type and the field.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, Field

from outreach_pipeline.sandbox.outreach.errors import validation_error
from outreach_pipeline.sandbox.outreach.render import is_derived
from outreach_pipeline.sandbox.outreach.spec import (
    AttributeSpec,
    RelationshipSpec,
    ResourceSpec,
    resource_specs,
)
from outreach_pipeline.sandbox.outreach.store import OutreachStore, RelationshipValue
from outreach_pipeline.sandbox.outreach.values import canonical_date, canonical_datetime

EMAIL_PATTERN = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
JSON_TYPES = {"string": str, "boolean": bool, "array": list, "object": dict}


class WriteBody(BaseModel):
    """A validated create/update body: stored-form attributes and relationship values."""

    attributes: dict[str, Any] = Field(default_factory=dict)
    relationships: dict[str, RelationshipValue] = Field(default_factory=dict)


def _attribute_pointer(name: str) -> str:
    return f"/data/attributes/{name}"


def _type_name(kind: str) -> str:
    return {
        "date-time": "an ISO 8601 date-time",
        "date": "a YYYY-MM-DD date",
        "integer": "an integer",
        "array": "an array",
        "object": "an object",
        "number": "a number",
        "boolean": "a boolean",
    }.get(kind, "a string")


def check_attribute(spec: ResourceSpec, attribute: AttributeSpec, value: Any) -> Any:
    """Validate one attribute value and return it in stored form (date-times normalised).

    Raises:
        ApiError: 422 naming the type, attribute and pointer.
    """
    if value is None:
        return None
    pointer = _attribute_pointer(attribute.name)
    wrong_type = validation_error(
        f"{spec.type} attribute '{attribute.name}' must be {_type_name(attribute.kind)}.", pointer=pointer
    )
    match attribute.kind:
        case "integer":
            if isinstance(value, bool) or not isinstance(value, int):
                raise wrong_type
        case "number":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise wrong_type
        case "date-time" | "date":
            if not isinstance(value, str):
                raise wrong_type
            try:
                return canonical_datetime(value) if attribute.kind == "date-time" else canonical_date(value)
            except ValueError:
                raise wrong_type from None
        case "array":
            _check_array(spec, attribute, value, wrong_type)
        case kind:
            if not isinstance(value, JSON_TYPES.get(kind, str)):
                raise wrong_type
    if attribute.max_length is not None and isinstance(value, str) and len(value) > attribute.max_length:
        raise validation_error(
            f"{spec.type} attribute '{attribute.name}' is too long (maximum is {attribute.max_length} characters).",
            pointer=pointer,
        )
    return value


def _check_array(spec: ResourceSpec, attribute: AttributeSpec, value: Any, wrong_type: Exception) -> None:
    if not isinstance(value, list):
        raise wrong_type
    if attribute.item_kind == "string" and not all(isinstance(item, str) for item in value):
        raise validation_error(
            f"{spec.type} attribute '{attribute.name}' must be an array of strings.",
            pointer=_attribute_pointer(attribute.name),
        )
    if attribute.name == "emails":
        for item in value:
            if not EMAIL_PATTERN.match(item):
                raise validation_error(
                    f"{spec.type} attribute 'emails' holds an invalid email address: '{item}'.",
                    pointer=_attribute_pointer("emails"),
                )


def _parse_attributes(spec: ResourceSpec, raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise validation_error(
            f"data.attributes of a {spec.type} must be an object.", pointer="/data/attributes"
        )
    parsed: dict[str, Any] = {}
    for name, value in raw.items():
        attribute = spec.attributes.get(name)
        if attribute is None:
            raise validation_error(
                f"Unknown attribute '{name}' for {spec.type}.", pointer=_attribute_pointer(name)
            )
        if attribute.read_only:
            raise validation_error(
                f"{spec.type} attribute '{name}' is read-only.", pointer=_attribute_pointer(name)
            )
        parsed[name] = check_attribute(spec, attribute, value)
    return parsed


def _identifier(
    spec: ResourceSpec, relationship: RelationshipSpec, raw: Any, pointer: str
) -> tuple[str, int]:
    if not isinstance(raw, dict) or "type" not in raw or "id" not in raw:
        raise validation_error(
            f'{spec.type} relationship \'{relationship.name}\' needs resource identifiers {{"type", "id"}}.',
            pointer=pointer,
        )
    target_type, raw_id = raw["type"], raw["id"]
    if relationship.target_types and target_type not in relationship.target_types:
        allowed = ", ".join(relationship.target_types)
        raise validation_error(
            f"{spec.type} relationship '{relationship.name}' must point at {allowed}, not '{target_type}'.",
            pointer=pointer,
        )
    try:
        if isinstance(raw_id, bool):
            raise ValueError(raw_id)
        return target_type, int(raw_id)
    except (TypeError, ValueError):
        raise validation_error(
            f"{spec.type} relationship '{relationship.name}' has a non-integer id '{raw_id}'.",
            pointer=pointer,
        ) from None


def _parse_relationship(
    spec: ResourceSpec, relationship: RelationshipSpec, raw: Any
) -> tuple[RelationshipValue, list[tuple[str, int]]]:
    pointer = f"/data/relationships/{relationship.name}"
    if not isinstance(raw, dict) or "data" not in raw:
        raise validation_error(
            f"{spec.type} relationship '{relationship.name}' must be an object with 'data'.", pointer=pointer
        )
    data = raw["data"]
    if relationship.shape == "to_one":
        if data is None:
            return None, []
        target_type, target_id = _identifier(spec, relationship, data, pointer)
        value: RelationshipValue = (
            {"type": target_type, "id": target_id} if len(relationship.target_types) > 1 else target_id
        )
        return value, [(target_type, target_id)]
    if not isinstance(data, list):
        raise validation_error(
            f"{spec.type} relationship '{relationship.name}' takes a list of identifiers.", pointer=pointer
        )
    identifiers = [_identifier(spec, relationship, item, pointer) for item in data]
    return [target_id for _, target_id in identifiers], identifiers


def _parse_relationships(spec: ResourceSpec, raw: Any, store: OutreachStore) -> dict[str, RelationshipValue]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise validation_error(
            f"data.relationships of a {spec.type} must be an object.", pointer="/data/relationships"
        )
    parsed: dict[str, RelationshipValue] = {}
    for name, value in raw.items():
        relationship = spec.relationships.get(name)
        pointer = f"/data/relationships/{name}"
        if relationship is None:
            raise validation_error(f"Unknown relationship '{name}' for {spec.type}.", pointer=pointer)
        if relationship.read_only or relationship.shape == "links_only" or is_derived(spec.type, name):
            raise validation_error(f"{spec.type} relationship '{name}' is read-only.", pointer=pointer)
        parsed[name], identifiers = _parse_relationship(spec, relationship, value)
        _check_targets_exist(store, identifiers, pointer)
    return parsed


def _check_targets_exist(store: OutreachStore, identifiers: list[tuple[str, int]], pointer: str) -> None:
    served = resource_specs()
    for target_type in {target_type for target_type, _ in identifiers if target_type in served}:
        wanted = {target_id for kind, target_id in identifiers if kind == target_type}
        missing = sorted(wanted - store.existing_ids(target_type, wanted))
        if missing:
            raise validation_error(f"Could not find '{target_type}' with ID '{missing[0]}'.", pointer=pointer)


def parse_write_body(
    spec: ResourceSpec, body: Any, store: OutreachStore, record_id: int | None = None
) -> WriteBody:
    """Validate a POST (record_id None) or PATCH body for `spec`.

    Raises:
        ApiError: 422 `validationError` naming the member at fault.
    """
    if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
        raise validation_error(
            "The request body must be a JSON:API document with a 'data' object.", pointer="/data"
        )
    data = body["data"]
    if data.get("type") != spec.type:
        raise validation_error(
            f"data.type must be '{spec.type}', got {data.get('type')!r}.", pointer="/data/type"
        )
    if record_id is not None and str(data.get("id")) != str(record_id):
        raise validation_error(
            f"data.id must be the id in the URL ({record_id}) when updating a {spec.type}, got {data.get('id')!r}.",
            pointer="/data/id",
        )
    if record_id is None and "id" in data:
        raise validation_error(f"A new {spec.type} cannot carry a client-generated id.", pointer="/data/id")
    return WriteBody(
        attributes=_parse_attributes(spec, data.get("attributes")),
        relationships=_parse_relationships(spec, data.get("relationships"), store),
    )
