"""Parse list-endpoint query parameters (filter, sort, page, count, include, fields) into a store query.

Every rejection is a 400 in the JSON:API error shape naming the offending parameter.

Several values: Outreach documents comma lists for ids (`filter[id]=1,2,3`) and, for any field, the
`newFilterSyntax=true` array form (`filter[x][]=a&filter[x][]=b`). A classic `filter[emails]` value is read
whole, as one address: Outreach finds prospects by email through the address's hash (its uniqueness error
reads "Contacts email hash has already been taken"), and a hash of `a@x.com,b@x.com` matches no prospect.
So an undocumented comma list of emails finds nothing here, as it plausibly does there, and a duplicate
check built on it would pass in silence: tests notice.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from outreach_pipeline.sandbox.outreach.errors import ApiError, bad_request
from outreach_pipeline.sandbox.outreach.settings import DEFAULT_PAGE_SIZE
from outreach_pipeline.sandbox.outreach.spec import AttributeSpec, ResourceSpec, resource_specs
from outreach_pipeline.sandbox.outreach.store import (
    Condition,
    FieldRef,
    OutreachRecord,
    SortKey,
    StoreQuery,
    format_timestamp,
)
from outreach_pipeline.sandbox.outreach.values import canonical_date, canonical_datetime, parse_timestamp_ms

FILTER_PARAM = re.compile(r"^filter\[([^\[\]]+)\](?:\[([^\[\]]*)\])?$")
FIELDS_PARAM = re.compile(r"^fields\[([^\[\]]+)\]$")
CURSOR_VERSION = 1
NULL_TOKEN = "__null__"
NOT_NULL_TOKEN = "__notnull__"
RANGE_OPERATORS = {"gte": "low", "lte": "high"}
COLUMN_FIELDS = {"id": "id", "createdAt": "created_at", "updatedAt": "updated_at"}


class ListRequest(BaseModel):
    """A parsed list request."""

    query: StoreQuery
    sort_param: str
    count: bool = False
    include: list[str] = Field(default_factory=list)
    fields: dict[str, frozenset[str]] = Field(default_factory=dict)


def invalid_filter(parameter: str, detail: str, error_id: str = "badRequest") -> ApiError:
    """400 for a filter the API cannot apply."""
    return ApiError(400, error_id, "Bad Request", detail, parameter=parameter)


# --------------------------------------------------------------------------- filters


def _filter_field(
    spec: ResourceSpec, name: str, sub_key: str | None, parameter: str
) -> tuple[FieldRef, AttributeSpec | None]:
    """Resolve `filter[name]` / `filter[name][id]` to a store field (and the attribute spec for typing)."""
    if name in COLUMN_FIELDS:
        return FieldRef(kind=COLUMN_FIELDS[name]), spec.attributes.get(name)  # type: ignore[arg-type]
    relationship = spec.relationships.get(name)
    if relationship is not None:
        if sub_key != "id":
            raise invalid_filter(
                parameter,
                f"Relationship '{name}' of {spec.type} can only be filtered by id (filter[{name}][id]=...).",
            )
        if relationship.shape == "links_only" or not relationship.filterable:
            raise invalid_filter(
                parameter, f"Relationship '{name}' cannot be used as a filter on {spec.type}."
            )
        return FieldRef(kind=relationship.shape, name=name), None
    attribute = spec.attributes.get(name)
    if attribute is None:
        raise invalid_filter(parameter, f"Unknown filter field '{name}' for {spec.type}.")
    if not attribute.filterable:
        raise invalid_filter(parameter, f"Attribute '{name}' of {spec.type} is not filterable.")
    if spec.type == "prospect" and name == "emails":
        return FieldRef(kind="emails", name=name), attribute
    kind = "array_attribute" if attribute.kind == "array" else "attribute"
    return FieldRef(kind=kind, name=name), attribute


def _typed_filter_value(field: FieldRef, attribute: AttributeSpec | None, raw: str, parameter: str) -> Any:
    """Convert one textual filter value to the type stored for the field."""
    try:
        if field.kind in ("created_at", "updated_at"):
            return parse_timestamp_ms(raw)
        if field.kind in ("id", "to_one", "to_many"):
            return int(raw)
        if attribute is None:
            return raw
        match attribute.kind:
            case "integer":
                return int(raw)
            case "number":
                return float(raw)
            case "boolean":
                return _parse_bool(raw)
            case "date-time":
                return canonical_datetime(raw)
            case "date":
                return canonical_date(raw)
    except ValueError:
        if field.kind in ("created_at", "updated_at") or (
            attribute is not None and attribute.kind in ("date-time", "date")
        ):
            raise invalid_filter(
                parameter,
                f"Invalid datetime format '{raw}' in {parameter}.",
                "filterParameter.invalidDatetimeFormat",
            ) from None
        raise invalid_filter(parameter, f"Invalid value '{raw}' in {parameter}.") from None
    return raw


def _parse_bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered not in ("true", "false"):
        raise ValueError(raw)
    return lowered == "true"


def _classic_condition(
    field: FieldRef, attribute: AttributeSpec | None, raw: str, parameter: str
) -> Condition:
    """Old syntax: `a,b` lists, `a..b` ranges with `inf`/`neginf`, `__null__` / `__notnull__`; an email is literal."""
    if raw == NULL_TOKEN:
        return Condition(field=field, op="null")
    if raw == NOT_NULL_TOKEN:
        return Condition(field=field, op="not_null")
    if field.kind == "emails":
        return Condition(field=field, op="in", values=[raw])  # one address, commas and all (module docstring)
    if ".." in raw:
        low_text, _, high_text = raw.partition("..")
        if not low_text or not high_text:
            raise invalid_filter(
                parameter, f"Range '{raw}' in {parameter} needs both ends (use neginf or inf)."
            )
        low = None if low_text == "neginf" else _typed_filter_value(field, attribute, low_text, parameter)
        high = None if high_text == "inf" else _typed_filter_value(field, attribute, high_text, parameter)
        return Condition(field=field, op="range", low=low, high=high)
    values = [_typed_filter_value(field, attribute, part, parameter) for part in raw.split(",") if part != ""]
    if not values:
        raise invalid_filter(parameter, f"{parameter} needs a value.")
    return Condition(field=field, op="in", values=values)


def _new_syntax_condition(
    field: FieldRef,
    attribute: AttributeSpec | None,
    operator: str | None,
    raws: Sequence[str],
    parameter: str,
) -> Condition:
    """`newFilterSyntax=true`: values are literal (may hold `,` or `..`); `[]` lists, `[gte]`/`[lte]` bounds."""
    if operator in RANGE_OPERATORS:
        bound = _typed_filter_value(field, attribute, raws[-1], parameter)
        return Condition(field=field, op="range", **{RANGE_OPERATORS[operator]: bound})
    if operator not in (None, ""):
        raise invalid_filter(parameter, f"Unknown filter operator '{operator}' in {parameter}.")
    if len(raws) == 1 and raws[0] in (NULL_TOKEN, NOT_NULL_TOKEN):
        return Condition(field=field, op="null" if raws[0] == NULL_TOKEN else "not_null")
    return Condition(
        field=field, op="in", values=[_typed_filter_value(field, attribute, raw, parameter) for raw in raws]
    )


def parse_filters(spec: ResourceSpec, items: Sequence[tuple[str, str]], new_syntax: bool) -> list[Condition]:
    """Every `filter[...]` parameter as store conditions (ANDed)."""
    grouped: dict[str, list[str]] = {}
    for key, value in items:
        if key.startswith("filter"):
            grouped.setdefault(key, []).append(value)
    conditions: list[Condition] = []
    for parameter, raws in grouped.items():
        match = FILTER_PARAM.match(parameter)
        if match is None:
            raise invalid_filter(parameter, f"Malformed filter parameter '{parameter}'.")
        name, sub_key = match.group(1), match.group(2)
        is_relationship = name in spec.relationships
        relationship_key = sub_key if is_relationship else None
        field, attribute = _filter_field(spec, name, relationship_key, parameter)
        operator = None if is_relationship else sub_key
        if new_syntax:
            conditions.append(_new_syntax_condition(field, attribute, operator, raws, parameter))
            continue
        if operator is not None:
            raise invalid_filter(parameter, f"'{parameter}' needs newFilterSyntax=true.")
        conditions.append(_classic_condition(field, attribute, raws[-1], parameter))
    return conditions


# --------------------------------------------------------------------------- sort and cursor


def parse_sort(spec: ResourceSpec, raw: str | None) -> list[SortKey]:
    """`sort=lastName,-firstName`; only `id`, createdAt/updatedAt and sortable attributes are allowed."""
    if not raw:
        return []
    keys: list[SortKey] = []
    for token in raw.split(","):
        descending = token.startswith("-")
        name = token.lstrip("-")
        if name in COLUMN_FIELDS:
            keys.append(SortKey(field=FieldRef(kind=COLUMN_FIELDS[name]), descending=descending))  # type: ignore[arg-type]
            continue
        attribute = spec.attributes.get(name)
        if attribute is None:
            raise bad_request(f"Unknown sort field '{name}' for {spec.type}.", parameter="sort")
        if not attribute.sortable:
            raise bad_request(f"Attribute '{name}' of {spec.type} is not sortable.", parameter="sort")
        keys.append(SortKey(field=FieldRef(kind="attribute", name=name), descending=descending))
    return keys


def _wire_sort_value(key: SortKey, value: Any) -> Any:
    return (
        format_timestamp(value)
        if key.field.kind in ("created_at", "updated_at") and value is not None
        else value
    )


def encode_cursor(
    spec: ResourceSpec, sort_param: str, sort: Sequence[SortKey], position: Sequence[Any]
) -> str:
    """Opaque `page[after]` token: base64 JSON of controller, sort, sort values and last id."""
    *values, record_id = position
    payload = {
        "cn": spec.controller_name,
        "sp": sort_param,
        "sv": [_wire_sort_value(key, value) for key, value in zip(sort, values, strict=True)],
        "id": record_id,
        "v": CURSOR_VERSION,
    }
    return base64.b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode()


def decode_cursor(spec: ResourceSpec, sort_param: str, sort: Sequence[SortKey], token: str) -> list[Any]:
    """Validate a `page[after]` token against the current request and return the keyset position."""
    try:
        padded = token + "=" * (-len(token) % 4)
        payload = json.loads(base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True))
        values = list(payload["sv"])
        record_id = int(payload["id"])
        matches = payload.get("cn") == spec.controller_name and payload.get("sp") == sort_param
        if not matches or len(values) != len(sort) or payload.get("v") != CURSOR_VERSION:
            raise ValueError("cursor belongs to another request")
        converted = [
            parse_timestamp_ms(value)
            if key.field.kind in ("created_at", "updated_at") and value is not None
            else value
            for key, value in zip(sort, values, strict=True)
        ]
    except (ValueError, KeyError, TypeError, binascii.Error, json.JSONDecodeError):
        raise bad_request(
            "Invalid page[after] cursor: it must be the value from links.next of the same query.",
            parameter="page[after]",
        ) from None
    return [*converted, record_id]


def sort_position(sort: Sequence[SortKey], record: OutreachRecord) -> list[Any]:
    """The keyset position of a record (sort values, then id), matching what the store orders by."""
    values: list[Any] = []
    for key in sort:
        match key.field.kind:
            case "id":
                values.append(record.id)
            case "created_at":
                values.append(record.created_at)
            case "updated_at":
                values.append(record.updated_at)
            case _:
                values.append(record.attributes.get(key.field.name))
    return [*values, record.id]


# --------------------------------------------------------------------------- page, include, fields


def parse_page_size(raw: str | None, max_size: int) -> int:
    """`page[size]`: 1..max (default 50)."""
    if raw is None:
        return DEFAULT_PAGE_SIZE
    try:
        size = int(raw)
    except ValueError:
        raise bad_request(f"page[size] must be an integer, got '{raw}'.", parameter="page[size]") from None
    if not 1 <= size <= max_size:
        raise bad_request(f"page[size] must be between 1 and {max_size}, got {size}.", parameter="page[size]")
    return size


def parse_include(spec: ResourceSpec, raw: str | None) -> list[str]:
    """`include=account,stage`: relationships with data whose target type the sandbox serves."""
    if not raw:
        return []
    names = [name for name in raw.split(",") if name]
    for name in names:
        relationship = spec.relationships.get(name)
        if relationship is None or relationship.shape == "links_only":
            raise bad_request(
                f"Unknown relationship '{name}' for {spec.type} in include.", parameter="include"
            )
    return names


def parse_fields(items: Sequence[tuple[str, str]]) -> dict[str, frozenset[str]]:
    """`fields[type]=a,b` sparse fieldsets, keyed by type; names must exist on that type."""
    specs = resource_specs()
    fields: dict[str, frozenset[str]] = {}
    for key, value in items:
        match = FIELDS_PARAM.match(key)
        if match is None:
            continue
        resource_type = match.group(1)
        names = frozenset(name for name in value.split(",") if name)
        spec = specs.get(resource_type)
        if spec is None:
            raise bad_request(f"Unknown type '{resource_type}' in {key}.", parameter=key)
        unknown = sorted(names - spec.attributes.keys() - spec.relationships.keys())
        if unknown:
            raise bad_request(f"Unknown field '{unknown[0]}' for {resource_type} in {key}.", parameter=key)
        fields[resource_type] = names
    return fields


def _parse_flag(raw: str | None, parameter: str) -> bool:
    if raw is None:
        return False
    try:
        return _parse_bool(raw)
    except ValueError:
        raise bad_request(f"{parameter} must be true or false, got '{raw}'.", parameter=parameter) from None


def _reject_unknown_page_params(items: Sequence[tuple[str, str]]) -> None:
    for key, _ in items:
        if key.startswith("page[") and key not in ("page[size]", "page[after]"):
            raise bad_request(
                f"Unsupported paging parameter '{key}': use cursor paging with page[size] and links.next.",
                parameter=key,
            )


def parse_list_request(
    spec: ResourceSpec, items: Sequence[tuple[str, str]], max_page_size: int
) -> ListRequest:
    """Turn the query string of `GET /api/v2/<plural>` into a `ListRequest`.

    Raises:
        ApiError: 400 naming the offending parameter.
    """
    params = dict(items)
    _reject_unknown_page_params(items)
    new_syntax = _parse_flag(params.get("newFilterSyntax"), "newFilterSyntax")
    sort_param = params.get("sort", "")
    sort = parse_sort(spec, sort_param)
    query = StoreQuery(
        conditions=parse_filters(spec, items, new_syntax),
        sort=sort,
        limit=parse_page_size(params.get("page[size]"), max_page_size),
    )
    if "page[after]" in params:
        query.after = decode_cursor(spec, sort_param, sort, params["page[after]"])
    return ListRequest(
        query=query,
        sort_param=sort_param,
        count=_parse_flag(params.get("count"), "count"),
        include=parse_include(spec, params.get("include")),
        fields=parse_fields(items),
    )
