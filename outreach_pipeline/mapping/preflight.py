"""Pre-flight check of a mapping set against the live schemas of both systems, before any write.

Workbooks ``metadata/types`` gives ``[{class_name, fields: [{name, datatype, ...}]}]``. On the Outreach side
every source a field mapping reads (an attribute, an array element, a to-one relationship's id, an attribute
of a related record, a role list, a currency column, a link key other than ``id``) must be an attribute or
relationship of its type in Outreach's schema (``OutreachSchema``, from its OpenAPI document), so a typo such
as ``fristName`` stops the sync here instead of as a 400 on every sparse read. ``customN`` attributes exist
for every org in that document; which ones an org has configured, and their types, come from ``/types``
(``[{type, meta: {validations: {customN: {type, ...}}}}]``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from outreach_pipeline.clients.outreach_schema import OutreachSchema, OutreachType, RelationshipShape
from outreach_pipeline.mapping.models import (
    EntityMapping,
    FieldMapping,
    LinkTransform,
    MappingSet,
    SourceRef,
    WbCurrencyTransform,
)

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
    outreach_schema: OutreachSchema | None = None,
) -> list[str]:
    """Check every mapped field against the Workbooks and Outreach schemas.

    Args:
        mapping_set: the mappings to check.
        workbooks_types: the ``data`` of Workbooks ``metadata/types``; None skips the Workbooks checks.
        outreach_types: the ``data`` of Outreach ``/types``; None skips the Outreach custom-field checks. (The
            sync checks each system in a step of its own, which holds only that API's pool.)
        outreach_schema: Outreach's types, attributes and relationships; None skips that check.

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
        if outreach_schema is not None:
            problems.extend(outreach_schema_problems(entity, outreach_schema, mapping_set.source_label))
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


def outreach_schema_problems(entity: EntityMapping, schema: OutreachSchema, mapping_file: str) -> list[str]:
    """Every Outreach source of ``entity`` that its type in ``schema`` lacks, one message each.

    Both directions are checked: a source read for Workbooks and one written back must both exist.

    Args:
        entity: the entity mapping.
        schema: Outreach's types.
        mapping_file: the mapping file, named in each message as the place to fix.
    """
    own = schema.types.get(entity.outreach_type)
    if own is None:
        return [f"{entity.name}: Outreach has no type {entity.outreach_type}; fix outreach_type in {mapping_file}"]
    problems: list[str] = []
    for field in entity.fields:
        for problem in _source_problems(own, field.source, schema):
            problems.append(f"{entity.name}: {problem} (source {field.outreach!r} of {field.workbooks}); "
                            f"fix the source in {mapping_file}")
        if isinstance(field.transform, WbCurrencyTransform):
            for problem in _column_problems(own, field.transform.currency_source):
                problems.append(f"{entity.name}: {problem} (currency_source of {field.workbooks}); "
                                f"fix the currency_source in {mapping_file}")
    if entity.match.outreach_key != "id":
        for problem in _column_problems(own, entity.match.outreach_key):
            problems.append(f"{entity.name}: {problem} (match.outreach_key); fix it in {mapping_file}")
    return problems


def _source_problems(own: OutreachType, source: SourceRef, schema: OutreachSchema) -> list[str]:
    if source.is_custom_field:
        return []  # which customN fields exist is the org's configuration: checked against /types
    if source.kind == "column":
        return _column_problems(own, source.column)
    if source.kind == "element":
        kind = own.attributes.get(source.column)
        if kind is None:
            return [f"Outreach has no attribute {source.column} on {own.type}"]
        return [] if kind == "array" else [f"Outreach attribute {source.column} on {own.type} is not a list"]
    if source.kind == "related":
        relation = source.relation or ""
        problems = _to_one_problems(own, relation)
        if problems:
            return problems
        targets = own.relationships[relation].target_types or (relation,)
        if not any(source.attribute in getattr(schema.types.get(t), "attributes", {}) for t in targets):
            return [f"Outreach has no attribute {source.attribute} on {' or '.join(targets)}"]
        return []
    related = schema.types.get(source.relation or "")
    if related is None:
        return [f"Outreach has no type {source.relation}"]
    return [*_column_problems(related, source.column), *_column_problems(related, source.attribute or "")]


def _column_problems(owner: OutreachType, column: str) -> list[str]:
    """A column of the extracted frame: an attribute, ``id``, or a to-one relationship flattened as ``<name>Id``."""
    if column == "id" or column in owner.attributes:
        return []
    if column.endswith("Id") and column.removesuffix("Id") in owner.relationships:
        return _to_one_problems(owner, column.removesuffix("Id"))
    if column.endswith("Id"):
        return [f"Outreach has no attribute {column} and no relationship {column.removesuffix('Id')} on {owner.type}"]
    return [f"Outreach has no attribute {column} on {owner.type}"]


def _to_one_problems(owner: OutreachType, name: str) -> list[str]:
    relationship = owner.relationships.get(name)
    if relationship is None:
        return [f"Outreach has no relationship {name} on {owner.type}"]
    if relationship.shape is not RelationshipShape.TO_ONE:
        return [f"Outreach relationship {name} on {owner.type} is {relationship.shape.value.replace('_', '-')}, "
                "so it has no single id to read"]
    return []
