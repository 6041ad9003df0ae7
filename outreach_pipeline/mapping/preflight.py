"""Pre-flight check of a mapping set against the live schemas of both systems, before any write.

Workbooks ``metadata/types`` gives ``[{class_name, fields: [{name, datatype, ...}]}]``; Outreach ``/types`` gives
``[{type, meta: {validations: {customN: {type, ...}}}}]`` (custom fields only, so standard Outreach attributes are
not checked here: the OpenAPI spec fixes them).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from outreach_pipeline.mapping.models import EntityMapping, FieldMapping, LinkTransform, MappingSet

# Workbooks datatypes a transform may write into. Text-like targets accept anything that renders as text.
_TEXT = frozenset({"string", "text", "email", "url", "telephone", "phone", "html", "rich_text", "memo"})
_WORKBOOKS_COMPATIBLE: dict[str, frozenset[str]] = {
    "string": _TEXT | {"picklist"},
    "string_list": frozenset({"array", "string", "text"}),
    "integer": frozenset({"integer", "number", "decimal", "float"}) | _TEXT,
    "boolean": frozenset({"boolean", "checkbox"}),
    "wb_date": frozenset({"date"}),
    "wb_datetime": frozenset({"datetime", "date_time", "timestamp"}),
    "wb_currency": frozenset({"currency"}),
    "picklist": frozenset({"picklist", "boolean"}) | _TEXT,
    "link": frozenset({"integer", "link", "reference", "id", "foreign_key"}),
    "link_many": frozenset({"array", "string", "text"}),
}

# Outreach custom-field validation types a transform may read.
_OUTREACH_COMPATIBLE: dict[str, frozenset[str]] = {
    "string": frozenset(
        {"string", "url", "phone_number", "inclusion", "multi_inclusion", "numerical", "date"}
    ),
    "integer": frozenset({"numerical", "percentage"}),
    "boolean": frozenset({"boolean"}),
    "wb_date": frozenset({"date", "date_time"}),
    "wb_datetime": frozenset({"date_time"}),
    "wb_currency": frozenset({"currency", "numerical"}),
    "picklist": frozenset({"inclusion", "string", "boolean"}),
}


def preflight(
    mapping_set: MappingSet,
    workbooks_types: list[dict[str, Any]] | None,
    outreach_types: list[dict[str, Any]] | None,
) -> list[str]:
    """Check every mapped field against the Workbooks and Outreach schemas.

    Args:
        mapping_set: the mappings to check.
        workbooks_types: the ``data`` of Workbooks ``metadata/types``; None skips the Workbooks checks.
        outreach_types: the ``data`` of Outreach ``/types``; None skips the Outreach checks. (The sync checks
            each system in a step of its own, which holds only that API's pool.)

    Returns:
        One message per problem, naming the entity and the field; an empty list means the mapping is usable.
    """
    workbooks_fields = {
        entry.get("class_name"): {field.get("name"): field for field in entry.get("fields") or []}
        for entry in workbooks_types or []
    }
    outreach_fields = {
        str(entry.get("type", "")).lower(): (entry.get("meta") or {}).get("validations") or {}
        for entry in outreach_types or []
    }
    problems: list[str] = []
    for entity in mapping_set.entities.values():
        if workbooks_types is not None:
            problems.extend(_workbooks_problems(entity, workbooks_fields.get(entity.workbooks_record_type)))
        if outreach_types is not None:
            problems.extend(_outreach_problems(entity, outreach_fields.get(entity.outreach_type.lower(), {})))
    return problems


def _workbooks_problems(entity: EntityMapping, fields: dict[str, dict[str, Any]] | None) -> Iterable[str]:
    if fields is None:
        yield f"{entity.name}: Workbooks record type {entity.workbooks_record_type} is not in metadata/types"
        return
    for name in [entity.match.link_key, *entity.flag_fields()]:
        if name not in fields:
            yield f"{entity.name}: Workbooks field {name} (owned by the integration) is missing on " + (
                f"{entity.workbooks_record_type}; run the install step"
            )
    for field in entity.fields:
        described = fields.get(field.workbooks)
        if described is None:
            yield (
                f"{entity.name}: Workbooks field {field.workbooks} (mapped from {field.outreach}) is not a field "
                f"of {entity.workbooks_record_type}"
            )
            continue
        yield from _workbooks_field_problems(entity, field, described)


def _workbooks_field_problems(
    entity: EntityMapping, field: FieldMapping, described: dict[str, Any]
) -> Iterable[str]:
    datatype = str(described.get("datatype", "")).lower()
    kind = _compatibility_kind(field)
    if field.writes_workbooks and datatype not in _WORKBOOKS_COMPATIBLE[kind]:
        yield (
            f"{entity.name}: Workbooks field {field.workbooks} has datatype {datatype or '(none)'!r}, "
            f"which the {kind} transform of {field.outreach} cannot write"
        )
    if (
        field.writes_workbooks
        and described.get("is_createable") is False
        and described.get("is_updateable") is False
    ):
        yield f"{entity.name}: Workbooks field {field.workbooks} is read-only"


def _outreach_problems(entity: EntityMapping, validations: dict[str, dict[str, Any]]) -> Iterable[str]:
    for field in entity.fields:
        source = field.source
        if not source.is_custom_field:
            continue
        described = validations.get(source.column)
        if described is None:
            yield (
                f"{entity.name}: Outreach custom field {entity.outreach_type}.{source.column} "
                f"(mapped to {field.workbooks}) is not defined in /types"
            )
            continue
        validation_type = str(described.get("type", "")).lower()
        allowed = _OUTREACH_COMPATIBLE.get(field.transform.kind)
        if allowed is not None and validation_type not in allowed:
            yield (
                f"{entity.name}: Outreach custom field {entity.outreach_type}.{source.column} has type "
                f"{validation_type!r}, incompatible with the {field.transform.kind} transform to {field.workbooks}"
            )


def _compatibility_kind(field: FieldMapping) -> str:
    transform = field.transform
    if isinstance(transform, LinkTransform) and transform.many:
        return "link_many"
    return transform.kind
