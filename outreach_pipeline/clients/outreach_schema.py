"""Outreach's schema as typed records: the attributes and relationships of each resource type.

Read from an OpenAPI document in the form Outreach publishes at ``/api/v2/schema/openapi.json``: each type
has ``components.schemas.<type>`` (its attributes) and ``components.schemas.<type>Relationships`` (its
relationships; ``data`` an object for a to-one, an array for a to-many, absent for a links-only one).
Pure: no HTTP here, so the pure preflight can read these records. ``customN`` attributes are listed for
every org (custom1..custom150); which of them an org has configured is told by ``/api/v2/types`` instead.

A copy of the document ships with the package (``outreach_openapi.json``): the sandbox is derived from it,
and the preflight falls back to it when a service does not serve its own (see
``engine.preflight.fetch_outreach_schema``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any

from pydantic import BaseModel, ConfigDict

PACKAGED_OPENAPI_FILE = "outreach_openapi.json"
OPENAPI_PATH = "/api/v2/schema/openapi.json"
"""Where Outreach publishes its OpenAPI document (named in the document's own ``info.description``)."""


class RelationshipShape(StrEnum):
    """How a relationship is sent, which decides whether its id can be read as one column."""

    TO_ONE = "to_one"
    TO_MANY = "to_many"
    LINKS_ONLY = "links_only"


class OutreachRelationship(BaseModel):
    """One relationship of a type: its shape and the types it may point at."""

    model_config = ConfigDict(frozen=True)

    name: str
    shape: RelationshipShape
    target_types: tuple[str, ...] = ()


class OutreachType(BaseModel):
    """One resource type: attribute name -> JSON type (``string``, ``array``, ...), and relationships."""

    model_config = ConfigDict(frozen=True)

    type: str
    attributes: dict[str, str]
    relationships: dict[str, OutreachRelationship]


class OutreachSchema(BaseModel):
    """Every type a schema document describes, and where the document came from (for messages)."""

    model_config = ConfigDict(frozen=True)

    types: dict[str, OutreachType]
    source: str


def parse_openapi(document: Any, source: str) -> OutreachSchema:
    """The types of an OpenAPI document in Outreach's form.

    Args:
        document: The decoded JSON document.
        source: Where it came from (a URL or the packaged file), kept for messages.

    Raises:
        ValueError: The document has no ``components.schemas`` describing resource types; names ``source``.
    """
    schemas = document.get("components", {}).get("schemas") if isinstance(document, Mapping) else None
    if not isinstance(schemas, Mapping):
        raise ValueError(f"{source}: not an OpenAPI document (no components.schemas)")
    types: dict[str, OutreachType] = {}
    for name, relationships in schemas.items():
        if not name.endswith("Relationships") or not isinstance(relationships, Mapping):
            continue
        type_name = name.removesuffix("Relationships")
        attributes = schemas.get(type_name)
        if not isinstance(attributes, Mapping):
            continue
        types[type_name] = OutreachType(
            type=type_name,
            attributes={
                attribute: str(prop.get("type", "string")) if isinstance(prop, Mapping) else "string"
                for attribute, prop in (attributes.get("properties") or {}).items()
            },
            relationships={
                relationship: _relationship(relationship, prop)
                for relationship, prop in (relationships.get("properties") or {}).items()
                if isinstance(prop, Mapping)
            },
        )
    if not types:
        raise ValueError(f"{source}: the OpenAPI document describes no resource types")
    return OutreachSchema(types=types, source=source)


def _relationship(name: str, prop: Mapping[str, Any]) -> OutreachRelationship:
    data = (prop.get("properties") or {}).get("data")
    if not isinstance(data, Mapping):
        return OutreachRelationship(name=name, shape=RelationshipShape.LINKS_ONLY)
    if data.get("type") == "array":
        shape, identifier = RelationshipShape.TO_MANY, data.get("items") or {}
    else:
        shape, identifier = RelationshipShape.TO_ONE, data
    targets = ((identifier.get("properties") or {}).get("type") or {}).get("enum") or ()
    return OutreachRelationship(name=name, shape=shape, target_types=tuple(str(t) for t in targets))


@cache
def packaged_openapi() -> dict[str, Any]:
    """The OpenAPI document shipped with the package (parsed once per process)."""
    return json.loads(resources.files(__package__).joinpath(PACKAGED_OPENAPI_FILE).read_bytes())


@cache
def packaged_schema() -> OutreachSchema:
    """The schema of the packaged document."""
    return parse_openapi(packaged_openapi(), f"the packaged {PACKAGED_OPENAPI_FILE}")
