"""Render stored records as Outreach JSON:API resource objects.

Every attribute of the schema is rendered (null when unset), every relationship in one of the three
shapes the real API uses, and `links.self` on every object. A few to-many relationships are owned by the
other side (a prospect's opportunities come from its opportunityProspectRoles); those are derived from
the owning records at render time, one indexed query per page, so they can never drift.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from outreach_pipeline.sandbox.outreach.spec import ResourceSpec, plural_of, resource_specs
from outreach_pipeline.sandbox.outreach.store import (
    Condition,
    FieldRef,
    OutreachRecord,
    OutreachStore,
    StoreQuery,
    format_timestamp,
)

TIMESTAMP_COLUMNS = {"createdAt": "created_at", "updatedAt": "updated_at"}
FINISHED_SEQUENCE_STATES = frozenset({"finished"})
# Upper bound of owning records fetched per page for one derived relationship.
DERIVED_FETCH_LIMIT = 1_000_000


class InverseRelationship(BaseModel):
    """A to-many relationship computed from records of `source` whose to-one `via` points at us.

    `pick` names a to-one of the source record whose target is listed instead of the source itself
    (prospect.opportunities lists each role's opportunity).
    """

    source: str
    via: str
    pick: str | None = None
    active_only: bool = False


DERIVED_RELATIONSHIPS: dict[tuple[str, str], InverseRelationship] = {
    ("prospect", "opportunityProspectRoles"): InverseRelationship(
        source="opportunityProspectRole", via="prospect"
    ),
    ("prospect", "opportunities"): InverseRelationship(
        source="opportunityProspectRole", via="prospect", pick="opportunity"
    ),
    ("prospect", "activeSequenceStates"): InverseRelationship(
        source="sequenceState", via="prospect", active_only=True
    ),
    ("sequence", "sequenceSteps"): InverseRelationship(source="sequenceStep", via="sequence"),
    ("user", "mailboxes"): InverseRelationship(source="mailbox", via="user"),
}


def is_derived(resource_type: str, relationship: str) -> bool:
    """Whether a relationship is computed from the owning side (and so cannot be written here)."""
    return (resource_type, relationship) in DERIVED_RELATIONSHIPS


class ResourceRenderer:
    """Builds resource objects with absolute links rooted at `base_url` (e.g. `http://127.0.0.1:8000`)."""

    def __init__(self, store: OutreachStore, base_url: str) -> None:
        self.store = store
        self.api_root = f"{base_url.rstrip('/')}/api/v2"

    def self_link(self, spec: ResourceSpec, record_id: int) -> str:
        """`links.self` of a resource object."""
        return f"{self.api_root}/{spec.plural}/{record_id}"

    def render(
        self,
        spec: ResourceSpec,
        records: Sequence[OutreachRecord],
        fields: Mapping[str, frozenset[str]] | None = None,
    ) -> list[dict[str, Any]]:
        """Resource objects for `records`, honouring a sparse fieldset for this type if one was asked for."""
        wanted = (fields or {}).get(spec.type)
        attribute_names = [name for name in spec.attributes if wanted is None or name in wanted]
        relationship_names = [name for name in spec.relationships if wanted is None or name in wanted]
        derived = self._derived_ids(spec, records, relationship_names)
        return [
            self._resource(spec, record, attribute_names, relationship_names, derived) for record in records
        ]

    def _resource(
        self,
        spec: ResourceSpec,
        record: OutreachRecord,
        attribute_names: Sequence[str],
        relationship_names: Sequence[str],
        derived: Mapping[str, Mapping[int, list[int]]],
    ) -> dict[str, Any]:
        stored = record.attributes
        attributes: dict[str, Any] = {}
        for name in attribute_names:
            column = TIMESTAMP_COLUMNS.get(name)
            if column is not None:
                attributes[name] = format_timestamp(getattr(record, column))
            elif spec.attributes[name].write_only:
                attributes[name] = None
            else:
                attributes[name] = stored.get(name)
        relationships = {
            name: self._relationship(spec, record, name, derived.get(name)) for name in relationship_names
        }
        return {
            "type": spec.type,
            "id": record.id,
            "attributes": attributes,
            "relationships": relationships,
            "links": {"self": self.self_link(spec, record.id)},
        }

    def _relationship(
        self, spec: ResourceSpec, record: OutreachRecord, name: str, derived: Mapping[int, list[int]] | None
    ) -> dict[str, Any]:
        relationship = spec.relationships[name]
        related_link = f"{self.api_root}/{name}?filter[{spec.type}][id]={record.id}"
        if relationship.shape == "links_only":
            return {"links": {"related": related_link}}
        value = record.relationships.get(name)
        if relationship.shape == "to_one":
            return {"data": _identifier(relationship.target_types, value)}
        ids = derived.get(record.id, []) if derived is not None else list(value or [])
        target = relationship.target_types[0] if relationship.target_types else name
        return {
            "data": [{"type": target, "id": related_id} for related_id in ids],
            "links": {"related": f"{self.api_root}/{plural_of(target)}?filter[{spec.type}][id]={record.id}"},
            "meta": {"count": len(ids)},
        }

    def _derived_ids(
        self, spec: ResourceSpec, records: Sequence[OutreachRecord], relationship_names: Iterable[str]
    ) -> dict[str, dict[int, list[int]]]:
        record_ids = [record.id for record in records]
        result: dict[str, dict[int, list[int]]] = {}
        if not record_ids:
            return result
        for name in relationship_names:
            inverse = DERIVED_RELATIONSHIPS.get((spec.type, name))
            if inverse is not None:
                result[name] = self._inverse_ids(inverse, record_ids)
        return result

    def _inverse_ids(self, inverse: InverseRelationship, record_ids: list[int]) -> dict[int, list[int]]:
        conditions = [Condition(field=FieldRef(kind="to_one", name=inverse.via), op="in", values=record_ids)]
        owners = self.store.query(
            inverse.source, StoreQuery(conditions=conditions, limit=DERIVED_FETCH_LIMIT)
        )
        result: dict[int, list[int]] = {}
        for owner in owners:
            if inverse.active_only and owner.attributes.get("state") in FINISHED_SEQUENCE_STATES:
                continue
            listed = owner.relationships.get(inverse.pick) if inverse.pick else owner.id
            parent = owner.relationships.get(inverse.via)
            if isinstance(listed, int) and isinstance(parent, int):
                result.setdefault(parent, []).append(listed)
        return result

    def included(
        self,
        spec: ResourceSpec,
        records: Sequence[OutreachRecord],
        include: Sequence[str],
        fields: Mapping[str, frozenset[str]] | None = None,
    ) -> list[dict[str, Any]]:
        """Top-level `included`: the distinct related objects named by `include=` that the sandbox serves."""
        wanted: dict[str, set[int]] = {}
        rendered = self.render(spec, records, {spec.type: frozenset(include)})
        for resource in rendered:
            for name in include:
                data = resource["relationships"][name].get("data")
                for identifier in data if isinstance(data, list) else [data]:
                    if identifier is not None:
                        wanted.setdefault(identifier["type"], set()).add(identifier["id"])
        served = resource_specs()
        documents: list[dict[str, Any]] = []
        for resource_type, ids in wanted.items():
            target_spec = served.get(resource_type)
            if target_spec is not None:
                documents.extend(self.render(target_spec, self.store.get_many(resource_type, ids), fields))
        return documents


def _identifier(target_types: Sequence[str], value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, dict):
        return {"type": value["type"], "id": value["id"]}
    return {"type": target_types[0], "id": value}
