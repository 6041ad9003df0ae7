"""The field mapping as the open-source Dagster UI can show it: a table per entity.

Column lineage (`dagster/column_lineage`) is only drawn by Dagster+, so each `staged/...` asset (and each
`outreach/..._written` asset of the other direction) carries its entity's mapping twice: as a Markdown table
in its description (the asset's overview page) and as a `mapping` table in its definition metadata. Both are
built from the mapping file the code location loads (`OUTREACH_PIPELINE_MAPPING_PATH` or the packaged
`default.yaml`), one row per field mapping: Outreach field, Workbooks field, transform, direction and the
field's rules (required, skip blank, personal, conflict policy). A routed entity (tasks, whose in_person
rows become meetings) shows each route's rows, named by the entity mapping they go through.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from outreach_pipeline.mapping.models import EntityMapping, FieldMapping, MappingSet

COLUMNS = ("entity", "outreach", "workbooks", "transform", "direction", "rules")
#: How each direction reads in the table.
DIRECTION_LABELS = {"both": "both", "to_workbooks": "Outreach -> Workbooks", "to_outreach": "Workbooks -> Outreach"}


def transform_label(field: FieldMapping) -> str:
    """The transform in a few words: its kind and the settings that change values."""
    transform = field.transform
    match transform.kind:
        case "string":
            return f"string (max {transform.max_length})" if transform.max_length else "string"
        case "picklist":
            values = ", ".join(f"{source} -> {target}" for source, target in transform.values.items())
            return f"picklist ({values}; unmapped: {transform.unmapped})"
        case "link":
            return f"link to {transform.entity}" + (" (many)" if transform.many else "")
        case "wb_currency":
            default = f", default {transform.default_currency}" if transform.default_currency else ""
            return f"wb_currency (currency from {transform.currency_source}{default})"
        case kind:
            return kind


def rules_label(field: FieldMapping) -> str:
    """The field's rules beyond its transform, comma-separated (empty when it has none)."""
    rules = [name for name, on in (("required", field.required), ("skip blank", field.skip_blank),
                                   ("personal", field.personal)) if on]
    if field.direction == "both":
        rules.append(f"conflict: {field.conflict}")
    return ", ".join(rules)


def mapping_rows(mappings: MappingSet, entity: str) -> list[dict[str, str]]:
    """One row per field mapping of `entity` and of the entities its route sends records to."""
    return [
        {"entity": name, "outreach": field.outreach, "workbooks": field.workbooks,
         "transform": transform_label(field), "direction": DIRECTION_LABELS[field.direction],
         "rules": rules_label(field)}
        for name in mappings.route_entities(entity)
        for field in mappings.entity(name).fields
    ]


def _cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ") or " "


def mapping_markdown(mappings: MappingSet, entity: str) -> str:
    """The mapping of `entity` as a Markdown table, headed by where the records go."""
    mapping: EntityMapping = mappings.entity(entity)
    routed = [name for name in mappings.route_entities(entity) if name != entity]
    head = (f"**Field mapping** ({Path(mappings.source_label).name}): Outreach `{mapping.outreach_type}` <-> Workbooks "
            f"`{mapping.workbooks_controller}`")
    if routed:
        head += "; rows routed by `" + str(mapping.route.source if mapping.route else "") + "` go through " + \
            ", ".join(f"`{name}` (`{mappings.entity(name).workbooks_controller}`)" for name in routed)
    lines = [head, "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cell(row[column]) for column in COLUMNS) + " |"
              for row in mapping_rows(mappings, entity)]
    return "\n".join(lines)


def mapping_metadata(mappings: MappingSet, entity: str) -> dg.TableMetadataValue:
    """The mapping of `entity` as a `dg.MetadataValue.table` (shown under the asset's definition metadata)."""
    return dg.MetadataValue.table(
        records=[dg.TableRecord(row) for row in mapping_rows(mappings, entity)],
        schema=dg.TableSchema(columns=[dg.TableColumn(column, "string") for column in COLUMNS]),
    )
