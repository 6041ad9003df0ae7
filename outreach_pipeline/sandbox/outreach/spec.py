"""Resource descriptions derived from Outreach's own OpenAPI document.

The document is shipped once, as `outreach_pipeline/clients/outreach_openapi.json`: the client's preflight
falls back to the same copy when a service does not serve it, and this sandbox serves it at
`/api/v2/schema/openapi.json` as the real service does.

The spec marks read-only, filterable and sortable properties with badge images in each property's
description (`<img src=https://developers.outreach.io/badges/readonly.svg>` ...), not with `readOnly` or
`x-` extensions, so the badges are what we parse. Allowed HTTP methods and member actions come from
`paths`, relationship shapes (to-one, to-many with data, links-only) from `<type>Relationships`.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

SPEC_PACKAGE = "outreach_pipeline.clients"
SPEC_FILE = "outreach_openapi.json"
READONLY_BADGE = "badges/readonly.svg"
FILTERABLE_BADGE = "badges/filterable.svg"
SORTABLE_BADGE = "badges/sortable.svg"
NOT_FILTERABLE_NOTE = "cannot be used as a filter"

# The resources this sandbox serves, in seeding order (a resource only points at earlier ones).
SERVED_TYPES: tuple[str, ...] = (
    "user",
    "mailbox",
    "stage",
    "opportunityStage",
    "account",
    "prospect",
    "opportunity",
    "opportunityProspectRole",
    "sequence",
    "sequenceStep",
    "sequenceState",
    "task",
    "call",
    "webhook",
)

# Server-managed timestamps live in their own indexed columns rather than in the attribute blob.
TIMESTAMP_ATTRIBUTES = ("createdAt", "updatedAt")

# Credentials a mailbox accepts on write; the real API never echoes them, and neither do we.
WRITE_ONLY_ATTRIBUTES: dict[str, frozenset[str]] = {
    "mailbox": frozenset({"password", "smtpPassword", "sendgridApiKey"}),
    # A webhook's signing key: what a reader of the org's webhooks could forge deliveries with.
    "webhook": frozenset({"secret"}),
}

AttributeKind = Literal["string", "integer", "number", "boolean", "array", "object", "date-time", "date"]
RelationshipShape = Literal["to_one", "to_many", "links_only"]
Method = Literal["list", "fetch", "create", "update", "delete"]


class AttributeSpec(BaseModel):
    """One attribute of a resource as the spec describes it."""

    model_config = ConfigDict(frozen=True)

    name: str
    kind: AttributeKind
    item_kind: str | None = None
    max_length: int | None = None
    read_only: bool = False
    filterable: bool = False
    sortable: bool = False
    write_only: bool = False


class RelationshipSpec(BaseModel):
    """One relationship of a resource: its shape, the types it may point at and whether it is writable."""

    model_config = ConfigDict(frozen=True)

    name: str
    shape: RelationshipShape
    target_types: tuple[str, ...] = ()
    read_only: bool = False
    filterable: bool = True


class ResourceSpec(BaseModel):
    """Everything the sandbox needs to serve one resource type."""

    model_config = ConfigDict(frozen=True)

    type: str
    plural: str
    attributes: dict[str, AttributeSpec]
    relationships: dict[str, RelationshipSpec]
    methods: frozenset[Method]
    actions: frozenset[str]

    @property
    def controller_name(self) -> str:
        """Name of the Rails controller the real API puts in its cursors (`ApiV2::ProspectsController`)."""
        return f"ApiV2::{self.plural[0].upper()}{self.plural[1:]}Controller"

    def writable_attribute(self, name: str) -> AttributeSpec | None:
        """The attribute `name` if a client may write it, else None."""
        spec = self.attributes.get(name)
        return spec if spec is not None and not spec.read_only else None


@cache
def openapi_bytes() -> bytes:
    """The shipped copy of Outreach's OpenAPI document, as published (read once per process)."""
    return resources.files(SPEC_PACKAGE).joinpath(SPEC_FILE).read_bytes()


@cache
def load_openapi() -> dict[str, Any]:
    """Load the shipped copy of Outreach's OpenAPI document (parsed once per process)."""
    return json.loads(openapi_bytes())


def _attribute_kind(prop: dict[str, Any]) -> AttributeKind:
    declared = prop.get("type", "string")
    if declared == "string" and prop.get("format") in ("date-time", "date"):
        return prop["format"]
    if declared in ("integer", "number", "boolean", "array", "object"):
        return declared
    return "string"


def _parse_attribute(resource_type: str, name: str, prop: dict[str, Any]) -> AttributeSpec:
    description = prop.get("description", "")
    item_kind = prop.get("items", {}).get("type") if prop.get("type") == "array" else None
    return AttributeSpec(
        name=name,
        kind=_attribute_kind(prop),
        item_kind=item_kind,
        max_length=prop.get("maxLength"),
        read_only=READONLY_BADGE in description or name in TIMESTAMP_ATTRIBUTES,
        filterable=FILTERABLE_BADGE in description,
        sortable=SORTABLE_BADGE in description,
        write_only=name in WRITE_ONLY_ATTRIBUTES.get(resource_type, frozenset()),
    )


def _parse_relationship(name: str, prop: dict[str, Any]) -> RelationshipSpec:
    description = prop.get("description", "")
    data = prop.get("properties", {}).get("data")
    if data is None:
        shape: RelationshipShape = "links_only"
        type_schema: dict[str, Any] = {}
    elif data.get("type") == "array":
        shape = "to_many"
        type_schema = data.get("items", {}).get("properties", {}).get("type", {})
    else:
        shape = "to_one"
        type_schema = data.get("properties", {}).get("type", {})
    return RelationshipSpec(
        name=name,
        shape=shape,
        target_types=tuple(type_schema.get("enum", ())),
        read_only=READONLY_BADGE in description,
        filterable=NOT_FILTERABLE_NOTE not in description,
    )


def _methods_and_actions(spec: dict[str, Any], plural: str) -> tuple[frozenset[Method], frozenset[str]]:
    paths = spec["paths"]
    collection = paths.get(f"/{plural}", {})
    member = paths.get(f"/{plural}/{{id}}", {})
    methods: set[Method] = set()
    for verb, method in (("get", "list"), ("post", "create")):
        if verb in collection:
            methods.add(method)
    for verb, method in (("get", "fetch"), ("patch", "update"), ("delete", "delete")):
        if verb in member:
            methods.add(method)
    prefix = f"/{plural}/{{id}}/actions/"
    actions = {
        path.removeprefix(prefix) for path, ops in paths.items() if path.startswith(prefix) and "post" in ops
    }
    return frozenset(methods), frozenset(actions)


def _plural_for(spec: dict[str, Any], resource_type: str) -> str:
    """Find the collection path whose list response is made of `resource_type` objects."""
    wanted = f"#/components/schemas/{resource_type}Response"
    for path, ops in spec["paths"].items():
        if path.count("/") != 1 or "get" not in ops:
            continue
        schema = ops["get"]["responses"].get("200", {}).get("content", {})
        items = schema.get("application/vnd.api+json", {}).get("schema", {}).get("properties", {})
        if items.get("data", {}).get("items", {}).get("$ref") == wanted:
            return path.lstrip("/")
    raise KeyError(f"no collection path serves {resource_type!r} in the OpenAPI document")


@cache
def resource_specs() -> dict[str, ResourceSpec]:
    """Specs of every served resource, keyed by singular type."""
    spec = load_openapi()
    schemas = spec["components"]["schemas"]
    result: dict[str, ResourceSpec] = {}
    for resource_type in SERVED_TYPES:
        plural = _plural_for(spec, resource_type)
        methods, actions = _methods_and_actions(spec, plural)
        attributes = {
            name: _parse_attribute(resource_type, name, prop)
            for name, prop in schemas[resource_type]["properties"].items()
        }
        relationships = {
            name: _parse_relationship(name, prop)
            for name, prop in schemas[f"{resource_type}Relationships"]["properties"].items()
        }
        result[resource_type] = ResourceSpec(
            type=resource_type,
            plural=plural,
            attributes=attributes,
            relationships=relationships,
            methods=methods,
            actions=actions,
        )
    return result


@cache
def specs_by_plural() -> dict[str, ResourceSpec]:
    """Specs of every served resource, keyed by the collection name used in URLs (`prospects`)."""
    return {spec.plural: spec for spec in resource_specs().values()}


@cache
def plural_of(resource_type: str) -> str:
    """URL collection name for any type named in the spec, served or not (`emailAddress` -> `emailAddresses`)."""
    served = resource_specs().get(resource_type)
    if served is not None:
        return served.plural
    try:
        return _plural_for(load_openapi(), resource_type)
    except KeyError:
        return f"{resource_type}s"
