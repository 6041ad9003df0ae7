"""Render stored records as Outreach JSON:API resource objects, written straight to JSON text.

Every attribute of the schema is rendered (null when unset), every relationship in one of the three
shapes the real API uses, and `links.self` on every object. A few to-many relationships are owned by the
other side (a prospect's opportunities come from its opportunityProspectRoles); those are derived from
the owning records at render time, one indexed query per page, so they can never drift.

A 1,000-prospect page is about 6 MB of JSON, and building it as nested dicts and then encoding them cost
several times more than the SQLite read. So everything that depends only on the type, the sparse fieldset
and the API root (quoted attribute keys, the nulls, relationship skeletons, link prefixes) is encoded once
into a cached `_ResourceTemplate`, and per record only the set values, ids and timestamps are encoded. The
text is byte-for-byte what `json.dumps(..., ensure_ascii=False, separators=(",", ":"))` gives for the
equivalent dicts, which is what every other response of the sandbox uses.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
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
# Templates are keyed by the API root, which comes from the request's Host header; bound the cache so
# that clients sending many different hosts cannot grow it without limit.
TEMPLATE_CACHE_SIZE = 256

# Identifiers a page's derived relationships resolve to: relationship name -> record id -> related ids.
DerivedIds = Mapping[str, Mapping[int, list[int]]]

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)
# The types json.loads produces for scalars, encoded without the encoder's per-call set-up; the functions
# are the ones JSONEncoder itself uses, so the output is identical.
_SCALAR_ENCODERS: dict[type, Callable[[Any], str]] = {
    str: json.encoder.encode_basestring,
    int: int.__repr__,
    bool: lambda value: "true" if value else "false",
    type(None): lambda _value: "null",
}


def to_json(value: Any) -> str:
    """Encode `value` the way the API does: compact separators, non-ASCII text left unescaped.

    Args:
        value: any JSON-serialisable value.

    Returns:
        The JSON text, identical to `json.dumps(value, ensure_ascii=False, separators=(",", ":"))`.
    """
    scalar_encoder = _SCALAR_ENCODERS.get(type(value))
    return scalar_encoder(value) if scalar_encoder is not None else _ENCODER.encode(value)


def json_array(fragments: Iterable[bytes]) -> bytes:
    """A JSON array whose elements are already-encoded UTF-8 JSON texts."""
    return b"[" + b",".join(fragments) + b"]"


def json_document(members: Mapping[str, bytes]) -> bytes:
    """A JSON object whose member values are already-encoded UTF-8 JSON texts, in `members` order.

    Args:
        members: member name -> UTF-8 JSON (e.g. `{"data": json_array(resources), "links": links_json}`).

    Returns:
        The object as UTF-8 JSON.
    """
    return b"{" + b",".join(to_json(name).encode() + b":" + text for name, text in members.items()) + b"}"


def _open_string(text: str) -> str:
    """`text` as a JSON string without its closing quote, so a record id can be appended to it.

    JSON escaping works character by character, so encoding the prefix alone gives the same text as
    encoding the whole string.
    """
    return to_json(text)[:-1]


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


# --------------------------------------------------------------------------- per-type templates


@dataclass(frozen=True, slots=True)
class _LinksOnly:
    """A relationship rendered as `{"links":{"related":...}}` only (no data)."""

    name: str
    # '"name":{"links":{"related":"<root>/<name>?filter[<type>][id]=' (the record id follows).
    opening: str

    def render(self, _record: OutreachRecord, record_id: str, _derived: DerivedIds) -> str:
        return self.opening + record_id + '"}}'

    def identifiers(self, _record: OutreachRecord, _derived: DerivedIds) -> list[tuple[str, Any]]:
        return []


@dataclass(frozen=True, slots=True)
class _ToOne:
    """A to-one relationship: `{"data":null}` or `{"data":{"type":...,"id":...}}`."""

    name: str
    # The type of a plain-id value; polymorphic values ({"type", "id"}, task.subject) carry their own.
    target_type: str
    opening: str  # '"name":{"data":'
    typed_id_opening: str  # '{"type":"<target_type>","id":'

    def render(self, record: OutreachRecord, _record_id: str, _derived: DerivedIds) -> str:
        value = record.relationships.get(self.name)
        if value is None:
            return self.opening + "null}"
        if isinstance(value, dict):
            identifier = '{"type":' + to_json(value["type"]) + ',"id":' + to_json(value["id"]) + "}"
        else:
            identifier = self.typed_id_opening + to_json(value) + "}"
        return self.opening + identifier + "}"

    def identifiers(self, record: OutreachRecord, _derived: DerivedIds) -> list[tuple[str, Any]]:
        value = record.relationships.get(self.name)
        if value is None:
            return []
        if isinstance(value, dict):
            return [(value["type"], value["id"])]
        return [(self.target_type, value)]


@dataclass(frozen=True, slots=True)
class _ToMany:
    """A to-many relationship: identifiers, a `related` link and `meta.count`."""

    name: str
    target_type: str
    derived: bool
    opening: str  # '"name":{"data":['
    typed_id_opening: str  # '{"type":"<target_type>","id":'
    # '],"links":{"related":"<root>/<target plural>?filter[<type>][id]=' (the record id follows).
    links_opening: str

    def _ids(self, record: OutreachRecord, derived: DerivedIds) -> Sequence[Any]:
        if self.derived:
            return derived[self.name].get(record.id, [])
        return list(record.relationships.get(self.name) or [])

    def render(self, record: OutreachRecord, record_id: str, derived: DerivedIds) -> str:
        ids = self._ids(record, derived)
        data = ",".join([self.typed_id_opening + to_json(related_id) + "}" for related_id in ids])
        count = str(len(ids))
        return "".join(
            (self.opening, data, self.links_opening, record_id, '"},"meta":{"count":', count, "}}")
        )

    def identifiers(self, record: OutreachRecord, derived: DerivedIds) -> list[tuple[str, Any]]:
        return [(self.target_type, related_id) for related_id in self._ids(record, derived)]


_RelationshipTemplate = _LinksOnly | _ToOne | _ToMany


@dataclass(frozen=True, slots=True)
class _ResourceTemplate:
    """The encoded parts of one type's resource objects for one fieldset and API root."""

    opening: str  # '{"type":"<type>","id":'
    attribute_keys: tuple[str, ...]  # '"name":' for each rendered attribute, in schema order
    null_attributes: tuple[str, ...]  # '"name":null' for each, copied per record and filled in
    value_slots: dict[str, int]  # attributes read from the stored blob -> their position
    timestamp_slots: tuple[tuple[int, str], ...]  # (position, OutreachRecord field) of createdAt/updatedAt
    relationships: tuple[_RelationshipTemplate, ...]
    self_link_opening: str  # '},"links":{"self":"<root>/<plural>/' (the record id follows)

    def render(self, record: OutreachRecord, derived: DerivedIds) -> str:
        record_id = to_json(record.id)
        attributes = list(self.null_attributes)
        keys, slots = self.attribute_keys, self.value_slots
        for name, value in record.attributes.items():
            slot = slots.get(name)
            if slot is not None:
                attributes[slot] = keys[slot] + to_json(value)
        for slot, field in self.timestamp_slots:
            attributes[slot] = f'{keys[slot]}"{format_timestamp(getattr(record, field))}"'
        relationships = [
            relationship.render(record, record_id, derived) for relationship in self.relationships
        ]
        return "".join(
            (
                self.opening,
                record_id,
                ',"attributes":{',
                ",".join(attributes),
                '},"relationships":{',
                ",".join(relationships),
                self.self_link_opening,
                record_id,
                '"}}',
            )
        )


def _relationship_template(spec: ResourceSpec, name: str, api_root: str) -> _RelationshipTemplate:
    relationship = spec.relationships[name]
    opening = f"{to_json(name)}:"
    filter_suffix = f"?filter[{spec.type}][id]="
    if relationship.shape == "links_only":
        related = _open_string(f"{api_root}/{name}{filter_suffix}")
        return _LinksOnly(name=name, opening=f'{opening}{{"links":{{"related":{related}')
    target = relationship.target_types[0] if relationship.target_types else name
    typed_id_opening = f'{{"type":{to_json(target)},"id":'
    if relationship.shape == "to_one":
        return _ToOne(
            name=name, target_type=target, opening=f'{opening}{{"data":', typed_id_opening=typed_id_opening
        )
    related = _open_string(f"{api_root}/{plural_of(target)}{filter_suffix}")
    return _ToMany(
        name=name,
        target_type=target,
        derived=is_derived(spec.type, name),
        opening=f'{opening}{{"data":[',
        typed_id_opening=typed_id_opening,
        links_opening=f'],"links":{{"related":{related}',
    )


def _build_template(spec: ResourceSpec, api_root: str, wanted: frozenset[str] | None) -> _ResourceTemplate:
    attribute_names = [name for name in spec.attributes if wanted is None or name in wanted]
    keys = tuple(f"{to_json(name)}:" for name in attribute_names)
    value_slots = {
        name: slot
        for slot, name in enumerate(attribute_names)
        if name not in TIMESTAMP_COLUMNS and not spec.attributes[name].write_only
    }
    timestamp_slots = tuple(
        (slot, TIMESTAMP_COLUMNS[name])
        for slot, name in enumerate(attribute_names)
        if name in TIMESTAMP_COLUMNS
    )
    relationships = tuple(
        _relationship_template(spec, name, api_root)
        for name in spec.relationships
        if wanted is None or name in wanted
    )
    return _ResourceTemplate(
        opening=f'{{"type":{to_json(spec.type)},"id":',
        attribute_keys=keys,
        null_attributes=tuple(f"{key}null" for key in keys),
        value_slots=value_slots,
        timestamp_slots=timestamp_slots,
        relationships=relationships,
        self_link_opening=f'}},"links":{{"self":{_open_string(f"{api_root}/{spec.plural}/")}',
    )


_templates: dict[tuple[str, str, frozenset[str] | None], _ResourceTemplate] = {}
_templates_lock = threading.Lock()


def _template(spec: ResourceSpec, api_root: str, wanted: frozenset[str] | None) -> _ResourceTemplate:
    """The cached template of `spec` (specs come from the shipped OpenAPI file, so the type names one)."""
    key = (spec.type, api_root, wanted)
    template = _templates.get(key)
    if template is None:
        template = _build_template(spec, api_root, wanted)
        with _templates_lock:
            if len(_templates) >= TEMPLATE_CACHE_SIZE:
                _templates.clear()
            _templates[key] = template
    return template


# --------------------------------------------------------------------------- renderer


class ResourceRenderer:
    """Builds resource objects with absolute links rooted at `base_url` (e.g. `http://127.0.0.1:8000`)."""

    def __init__(self, store: OutreachStore, base_url: str) -> None:
        self.store = store
        self.api_root = f"{base_url.rstrip('/')}/api/v2"

    def self_link(self, spec: ResourceSpec, record_id: int) -> str:
        """`links.self` of a resource object."""
        return f"{self.api_root}/{spec.plural}/{record_id}"

    def render_json(
        self,
        spec: ResourceSpec,
        records: Sequence[OutreachRecord],
        fields: Mapping[str, frozenset[str]] | None = None,
    ) -> list[bytes]:
        """Resource objects for `records` as UTF-8 JSON, honouring a sparse fieldset for this type if asked.

        Args:
            spec: the records' resource type.
            records: the records, in response order.
            fields: sparse fieldsets by type (`fields[prospect]=...`); None or a missing type means all.

        Returns:
            One JSON object per record; join them with `json_array` / `json_document`. Each is encoded on
            its own because joining first would widen the whole page to the widest character of any
            record (one emoji in one name), which made the single encode about 8x slower.
        """
        template = _template(spec, self.api_root, (fields or {}).get(spec.type))
        derived_names = [
            relationship.name
            for relationship in template.relationships
            if isinstance(relationship, _ToMany) and relationship.derived
        ]
        derived = self._derived_ids(spec, records, derived_names)
        return [template.render(record, derived).encode() for record in records]

    def _derived_ids(
        self, spec: ResourceSpec, records: Sequence[OutreachRecord], relationship_names: Iterable[str]
    ) -> dict[str, dict[int, list[int]]]:
        record_ids = [record.id for record in records]
        result: dict[str, dict[int, list[int]]] = {}
        if not record_ids:
            return result
        # prospect.opportunityProspectRoles and prospect.opportunities read the same roles: fetch them once.
        owners_by_source: dict[tuple[str, str], list[OutreachRecord]] = {}
        for name in relationship_names:
            inverse = DERIVED_RELATIONSHIPS.get((spec.type, name))
            if inverse is None:
                continue
            source = (inverse.source, inverse.via)
            if source not in owners_by_source:
                owners_by_source[source] = self._owners(inverse, record_ids)
            result[name] = _inverse_ids(inverse, owners_by_source[source])
        return result

    def _owners(self, inverse: InverseRelationship, record_ids: list[int]) -> list[OutreachRecord]:
        """The `inverse.source` records whose `inverse.via` points at one of `record_ids`."""
        conditions = [Condition(field=FieldRef(kind="to_one", name=inverse.via), op="in", values=record_ids)]
        return self.store.query(inverse.source, StoreQuery(conditions=conditions, limit=DERIVED_FETCH_LIMIT))

    def included_json(
        self,
        spec: ResourceSpec,
        records: Sequence[OutreachRecord],
        include: Sequence[str],
        fields: Mapping[str, frozenset[str]] | None = None,
    ) -> list[bytes]:
        """Top-level `included`: the distinct related objects named by `include=` that the sandbox serves.

        Args:
            spec: the primary records' type.
            records: the primary records.
            include: relationship names of `spec` (validated by the query parser).
            fields: sparse fieldsets applied to the included objects.

        Returns:
            UTF-8 JSON of the related objects, grouped by type in order of first mention, by id within a type.
        """
        template = _template(spec, self.api_root, frozenset(include))
        by_name = {relationship.name: relationship for relationship in template.relationships}
        derived = self._derived_ids(spec, records, include)
        wanted: dict[str, set[int]] = {}
        for record in records:
            for name in include:
                for resource_type, related_id in by_name[name].identifiers(record, derived):
                    wanted.setdefault(resource_type, set()).add(related_id)
        served = resource_specs()
        documents: list[bytes] = []
        for resource_type, ids in wanted.items():
            target_spec = served.get(resource_type)
            if target_spec is not None:
                documents.extend(
                    self.render_json(target_spec, self.store.get_many(resource_type, ids), fields)
                )
        return documents


def _inverse_ids(inverse: InverseRelationship, owners: Iterable[OutreachRecord]) -> dict[int, list[int]]:
    """Parent id -> the ids `inverse` lists for it, in owner id order."""
    result: dict[int, list[int]] = {}
    for owner in owners:
        if inverse.active_only and owner.attributes.get("state") in FINISHED_SEQUENCE_STATES:
            continue
        listed = owner.relationships.get(inverse.pick) if inverse.pick else owner.id
        parent = owner.relationships.get(inverse.via)
        if isinstance(listed, int) and isinstance(parent, int):
            result.setdefault(parent, []).append(listed)
    return result
