"""Outreach's JSON:API documents as typed records: resource objects, pages, and the parsing of both.

A record keeps its attributes as sent (timestamps stay strings) with relationships reduced to ids; a page
whose objects cannot all be read keeps the readable ones and reports the rest as rejected, naming the
record and the field. No HTTP here and no frames: the client returns these records, the engine flattens them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SkipValidation, field_serializer

from outreach_pipeline.clients.http import MalformedResponse

# Relationship names whose JSON:API type differs from the name (for write bodies).
_RELATIONSHIP_TYPES: dict[str, str] = {
    "owner": "user",
    "creator": "user",
    "updater": "user",
    "user": "user",
    "primaryProspect": "prospect",
    "assignedUsers": "user",
    "assignedTeams": "team",
}


class ResourceRef(NamedTuple):
    """An explicit relationship target, for polymorphic relationships such as a task's ``subject``."""

    type: str
    id: int


class AttributeNames(NamedTuple):
    """The attribute names one resource object was sent with: in order, and as a set for lookups."""

    ordered: tuple[str, ...]
    members: frozenset[str]


@lru_cache(maxsize=256)
def _attribute_names(ordered: tuple[str, ...]) -> AttributeNames:
    # Every record of a type is sent with the same names, so their records share one instance.
    return AttributeNames(ordered, frozenset(ordered))


class AttributeMap(Mapping[str, Any]):
    """A read-only mapping of a record's attributes as sent, holding only the non-null values.

    A prospect is sent with about 230 attributes of which a dozen are set; a dict per record made
    100,000 extracted prospects weigh about 1 GB. Here the names are shared by every record sent with
    the same ones, so a null attribute still reads as None and is still iterated, in the order sent.
    """

    __slots__ = ("_names", "_values")

    def __init__(self, attributes: Mapping[str, Any]) -> None:
        self._names = _attribute_names(tuple(attributes))
        self._values = {name: value for name, value in attributes.items() if value is not None}

    @property
    def names(self) -> AttributeNames:
        """Every attribute name sent, null or not (shared between records)."""
        return self._names

    def set_items(self) -> Iterator[tuple[str, Any]]:
        """The (name, value) pairs whose value is not null, in the order sent."""
        return iter(self._values.items())

    def __getitem__(self, name: str) -> Any:
        value = self._values.get(name, _ABSENT)
        if value is not _ABSENT:
            return value
        if name in self._names.members:
            return None
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return name in self._names.members

    def __iter__(self) -> Iterator[str]:
        return iter(self._names.ordered)

    def __len__(self) -> int:
        return len(self._names.ordered)

    def __repr__(self) -> str:
        return repr(dict(self))


_ABSENT = object()


class OutreachRecord(BaseModel):
    """One JSON:API resource object, with relationships reduced to ids.

    Attributes:
        type: Singular JSON:API type, e.g. ``prospect``.
        id: Outreach id.
        attributes: Attributes under their Outreach names (as sent; timestamps stay strings).
        relationships: ``int`` for a to-one with data, ``None`` for a to-one with ``data: null``,
            ``list[int]`` for a to-many with data. Links-only / meta-only relationships are absent:
            they say nothing about the related ids.
        relationship_types: JSON:API type of each to-one target (needed for polymorphic ones like
            ``subject``).
        created_at: ``createdAt`` as a UTC datetime.
        updated_at: ``updatedAt`` as a UTC datetime.
    """

    model_config = ConfigDict(frozen=True)

    type: str
    id: int
    # Not validated: an AttributeMap is kept as it is (a plain dict, as tests build records, works too).
    attributes: SkipValidation[Mapping[str, Any]] = Field(default_factory=dict)
    relationships: dict[str, int | list[int] | None] = Field(default_factory=dict)
    relationship_types: dict[str, str] = Field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @field_serializer("attributes")
    def _attributes_as_dict(self, attributes: Mapping[str, Any]) -> dict[str, Any]:
        return dict(attributes)

    @classmethod
    def from_resource(cls, resource: Mapping[str, Any]) -> OutreachRecord:
        """Build a record from a JSON:API resource object.

        Raises:
            ValueError: When the object lacks ``type``/``id`` or a timestamp does not parse; the
                message names the record and field.
        """
        if not isinstance(resource, Mapping) or "type" not in resource or "id" not in resource:
            raise ValueError(f"resource object without type/id: {str(resource)[:200]!r}")
        label = f"{resource['type']} {resource['id']}"
        attributes = resource.get("attributes") or {}
        if not isinstance(attributes, Mapping):
            raise ValueError(f"{label}: field 'attributes' is not an object")
        relationships: dict[str, int | list[int] | None] = {}
        relationship_types: dict[str, str] = {}
        for name, value in (resource.get("relationships") or {}).items():
            if not isinstance(value, Mapping) or "data" not in value:
                continue  # links-only or meta-only: no ids to report (tap-outreach crashed here)
            data = value["data"]
            if data is None:
                relationships[name] = None
            elif isinstance(data, list):
                relationships[name] = [int(item["id"]) for item in data]
            elif isinstance(data, Mapping) and "id" in data:
                relationships[name] = int(data["id"])
                relationship_types[name] = str(data.get("type", ""))
            else:
                raise ValueError(f"{label}: relationship '{name}' has unreadable data {data!r}")
        return cls(
            type=str(resource["type"]),
            id=int(resource["id"]),
            attributes=AttributeMap(attributes),
            relationships=relationships,
            relationship_types=relationship_types,
            created_at=_parse_timestamp(attributes.get("createdAt"), label, "createdAt"),
            updated_at=_parse_timestamp(attributes.get("updatedAt"), label, "updatedAt"),
        )


class RejectedResource(BaseModel):
    """A resource object of a page that could not be read; the rest of the page still is.

    Attributes:
        type: Its JSON:API type.
        id: Its id: only objects that carry one can be rejected alone (others fail the page).
        error: What is wrong, naming the record and the field.
    """

    type: str
    id: int
    error: str


class OutreachPage(BaseModel):
    """One page of a collection read.

    Attributes:
        records: The page's primary ``data``.
        included: Related objects requested with ``include=``.
        next_url: Absolute ``links.next``, None on the last page.
        rejected: Primary objects that could not be read (bad timestamps, unreadable relationships, ...).
    """

    records: list[OutreachRecord]
    included: list[OutreachRecord] = Field(default_factory=list)
    next_url: str | None = None
    rejected: list[RejectedResource] = Field(default_factory=list)


def _parse_timestamp(value: Any, label: str, field: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"{label}: field '{field}' is not an ISO timestamp: {value!r}") from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def format_outreach_timestamp(moment: datetime) -> str:
    """Outreach's timestamp form: UTC, milliseconds, ``Z`` (``2021-11-10T13:06:54.000Z``).

    Raises:
        ValueError: For a naive datetime.
    """
    if moment.tzinfo is None:
        raise ValueError(f"Outreach timestamps need a timezone-aware datetime, got {moment.isoformat()}")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_resource(resource: Any, request: str) -> OutreachRecord:
    try:
        return OutreachRecord.from_resource(resource)
    except (ValueError, TypeError, KeyError) as exc:
        raise MalformedResponse("unreadable resource object", method=request.split()[0],
                                path=request.split()[1], detail=str(exc)) from exc


def parse_page(body: dict[str, Any], url: str) -> OutreachPage:
    """Parse a page; one unreadable record with an id is rejected alone, the rest of the page is kept."""
    request = f"GET {urlsplit(url).path}"
    links = body.get("links") or {}
    records: list[OutreachRecord] = []
    rejected: list[RejectedResource] = []
    for item in body["data"]:
        try:
            records.append(OutreachRecord.from_resource(item))
        except (ValueError, TypeError, KeyError) as exc:
            identity = _identity(item)
            if identity is None:  # nothing to report it by: the page itself is broken
                raise MalformedResponse("unreadable resource object", method="GET", path=request.split()[1],
                                        detail=str(exc)) from exc
            rejected.append(RejectedResource(type=identity[0], id=identity[1], error=str(exc)))
    return OutreachPage(
        records=records,
        included=[parse_resource(item, request) for item in body.get("included") or []],
        next_url=links.get("next") if isinstance(links, dict) else None,
        rejected=rejected,
    )


def _identity(item: Any) -> tuple[str, int] | None:
    if not isinstance(item, Mapping):
        return None
    try:
        return str(item["type"]), int(item["id"])
    except (KeyError, TypeError, ValueError):
        return None


def singular_type(resource: str) -> str:
    """JSON:API type for a collection path segment: ``opportunities`` -> ``opportunity``."""
    if resource.endswith("ies"):
        return resource[:-3] + "y"
    if resource.endswith(("xes", "ches", "shes")):
        return resource[:-2]
    return resource.removesuffix("s")


def write_resource(
    resource: str,
    record_id: int | None,
    attributes: Mapping[str, Any],
    relationships: Mapping[str, int | ResourceRef | list[int] | None] | None,
) -> dict[str, Any]:
    """The JSON:API ``data`` object of a create (``record_id`` None) or an update."""
    data: dict[str, Any] = {"type": singular_type(resource), "attributes": dict(attributes)}
    if record_id is not None:
        data["id"] = int(record_id)
    if relationships:
        data["relationships"] = {
            name: {"data": _relationship_data(name, value)} for name, value in relationships.items()
        }
    return data


def _relationship_data(name: str, value: int | ResourceRef | list[int] | None) -> Any:
    target_type = _RELATIONSHIP_TYPES.get(name, singular_type(name))
    if value is None:
        return None
    if isinstance(value, ResourceRef):
        return {"type": value.type, "id": int(value.id)}
    if isinstance(value, list):
        return [{"type": target_type, "id": int(item)} for item in value]
    return {"type": target_type, "id": int(value)}
