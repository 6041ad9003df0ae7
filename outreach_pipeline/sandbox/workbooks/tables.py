"""The SQL tables of Workbooks record types, and the DDL that creating a custom field or record type runs.

A real column per API attribute, named literally; text columns use SQLite's NOCASE collation (see store.py).
Creating a custom field adds its column (`ALTER TABLE ADD COLUMN`, indexed when asked or when it holds an
Outreach id); creating a custom record type creates its table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from outreach_pipeline.sandbox.workbooks.schema import (
    DataType,
    FieldSpec,
    RecordKind,
    RecordTypeSpec,
    custom_record_fields,
    title_to_camel,
    title_to_snake,
)

if TYPE_CHECKING:
    from outreach_pipeline.sandbox.workbooks.store import WorkbooksStore

CUSTOM_FIELD_DATA_TYPES: dict[str, DataType] = {
    **{datatype.value: datatype for datatype in DataType if datatype is not DataType.FOREIGN_KEY},
    "checkbox": DataType.BOOLEAN,
    "number": DataType.DECIMAL,
}


def column_type(datatype: DataType) -> sa.types.TypeEngine:
    if datatype in (DataType.INTEGER, DataType.FOREIGN_KEY):
        return sa.Integer()
    if datatype is DataType.DECIMAL:
        return sa.Float()
    if datatype is DataType.BOOLEAN:
        return sa.Boolean(create_constraint=False)
    if datatype is DataType.DATE:
        return sa.Date()
    if datatype is DataType.DATETIME:
        return sa.DateTime()
    return sa.String(collation="NOCASE")


def index_name(table_name: str, column_name: str) -> str:
    return f"ix_{table_name}_{title_to_snake(column_name)}"


def build_column(spec: FieldSpec) -> sa.Column:
    if spec.name == "id":
        return sa.Column("id", sa.Integer, primary_key=True, autoincrement=True)
    server_default = None
    if spec.datatype is DataType.BOOLEAN:
        # Boolean custom fields added to existing rows read as false, not blank.
        server_default = sa.text("1" if spec.default_value is True else "0")
    return sa.Column(spec.name, column_type(spec.datatype), server_default=server_default)


def build_tables(specs: Iterable[RecordTypeSpec]) -> dict[str, sa.Table]:
    metadata = sa.MetaData()
    columns_by_table: dict[str, dict[str, FieldSpec]] = {}
    for spec in specs:
        columns = columns_by_table.setdefault(spec.table_name, {})
        for field_spec in spec.fields:
            columns.setdefault(field_spec.name, field_spec)
    tables = {}
    for table_name, fields in columns_by_table.items():
        table = sa.Table(table_name, metadata, *(build_column(f) for f in fields.values()))
        for field_spec in fields.values():
            if field_spec.indexed:
                sa.Index(index_name(table_name, field_spec.name), table.c[field_spec.name])
        tables[table_name] = table
    return tables


def custom_field_spec(row: Mapping[str, object]) -> FieldSpec:
    name = str(row["value_column_name"])
    datatype = CUSTOM_FIELD_DATA_TYPES[str(row["data_type"]).lower()]
    picklist_raw = row.get("picklist_values")
    picklist = tuple(v for v in str(picklist_raw).strip("[]").split(",") if v) if picklist_raw else None
    default = row.get("default_value")
    return FieldSpec(
        name=name,
        datatype=datatype,
        title=str(row["title"]),
        picklist=picklist if datatype is DataType.PICKLIST else None,
        default_value=default,
        indexed=bool(row.get("is_indexed")) or name.endswith("_outreach_id"),
        custom=True,
    )


def admin_hook(
    store: WorkbooksStore, conn: Connection, spec: RecordTypeSpec, values: dict[str, object]
) -> dict[str, str]:
    """Side effects of creating admin records: DDL for custom fields and custom record types."""
    if spec.kind is RecordKind.CUSTOM_FIELD_ADMIN:
        return _create_custom_field_column(store, conn, values)
    if spec.kind is RecordKind.CUSTOM_RECORD_TYPE_ADMIN:
        return _create_custom_record_table(store, conn, values)
    return {}


def _create_custom_field_column(
    store: WorkbooksStore, conn: Connection, values: dict[str, object]
) -> dict[str, str]:
    data_type = str(values["data_type"]).lower()
    if data_type not in CUSTOM_FIELD_DATA_TYPES:
        return {
            "data_type": f"data_type '{values['data_type']}' must be one of {sorted(CUSTOM_FIELD_DATA_TYPES)}"
        }
    target = store._registry.by_class(str(values["resource_type"]))
    if target is None or target.kind is not RecordKind.STANDARD:
        return {
            "resource_type": f"resource_type '{values['resource_type']}' is not a record type that takes custom fields"
        }
    datatype = CUSTOM_FIELD_DATA_TYPES[data_type]
    if datatype is DataType.PICKLIST and not values.get("picklist_values"):
        return {"picklist_values": "picklist_values (e.g. '[Red,Green]') is required for a picklist field"}
    base_name = f"cf_{target.type_slug}_{title_to_snake(str(values['title']))}"
    existing = {column["name"] for column in sa.inspect(conn).get_columns(target.table_name)}
    name, suffix = base_name, 2
    while name in existing:  # Workbooks appends a number when the name is taken
        name, suffix = f"{base_name}_{suffix}", suffix + 1
    values["value_column_name"] = name
    values["data_type"] = datatype.value
    column = build_column(custom_field_spec({**values, "is_indexed": values.get("is_indexed", False)}))
    column_sql = column.type.compile(dialect=conn.dialect)
    default_sql = (
        f" NOT NULL DEFAULT {column.server_default.arg.text}" if column.server_default is not None else ""
    )
    conn.exec_driver_sql(f'ALTER TABLE "{target.table_name}" ADD COLUMN "{name}" {column_sql}{default_sql}')
    if values.get("is_indexed") or name.endswith("_outreach_id"):
        conn.exec_driver_sql(
            f'CREATE INDEX "{index_name(target.table_name, name)}" ON "{target.table_name}" ("{name}")'
        )
    return {}


def _create_custom_record_table(
    store: WorkbooksStore, conn: Connection, values: dict[str, object]
) -> dict[str, str]:
    route_suffix = str(values.get("route_suffix") or title_to_snake(str(values["name_plural"])))
    controller_path = f"custom_record/{route_suffix}"
    if controller_path in store._registry.specs or sa.inspect(conn).has_table(f"custom_{route_suffix}"):
        return {
            "route_suffix": f"route_suffix '{route_suffix}' is already used by another custom record type"
        }
    values["route_suffix"] = route_suffix
    values["controller_path"] = controller_path
    values["resource_type"] = f"Private::CustomRecord::{title_to_camel(str(values['name']))}"
    if store._registry.by_class(str(values["resource_type"])):
        return {"name": f"a custom record type named '{values['name']}' already exists"}
    values.setdefault("object_ref_prefix", title_to_snake(str(values["name"])).upper())
    for table in build_tables([_custom_record_spec_stub(route_suffix)]).values():
        table.create(conn)
    return {}


def _custom_record_spec_stub(route_suffix: str) -> RecordTypeSpec:
    return RecordTypeSpec(
        controller_path=f"custom_record/{route_suffix}",
        class_name="Private::CustomRecord::Stub",
        human_class_name="stub",
        table_name=f"custom_{route_suffix}",
        fields=tuple(custom_record_fields()),
    )
