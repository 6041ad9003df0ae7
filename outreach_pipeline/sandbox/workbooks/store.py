"""SQLite (SQLAlchemy 2 Core) state of the Workbooks sandbox.

One table per record type (tasks and meetings share `activities`, told apart by `type`), with a
real column per API attribute named literally (e.g. `main_location[email]`). Custom fields are
added with `ALTER TABLE ADD COLUMN`; custom record types get their own table. The registry of
types and fields is rebuilt from the `custom_fields` / `custom_record_types` tables after every
committed change to them, so a file database reopens with the same schema.

Text columns use SQLite's NOCASE collation: Workbooks runs on MySQL whose default collation is
case-insensitive, so `main_location[email] eq A@X.COM` finds `a@x.com`, and indexes still apply.
All access goes through one re-entrant lock: the in-memory database is a single shared connection.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from outreach_pipeline.sandbox.workbooks.filters import (
    FilterContext,
    FilterError,
    FilterSpec,
    expression_to_sql,
    leaf_clause,
    parse_filter_expression,
)
from outreach_pipeline.sandbox.workbooks.schema import (
    DataType,
    FieldSpec,
    RecordKind,
    RecordTypeSpec,
    custom_record_fields,
    standard_record_types,
    title_to_camel,
    title_to_snake,
    with_extra_fields,
)
from outreach_pipeline.sandbox.workbooks.values import FieldValueError, parse_value, render_value

MAX_OBJECTS_PER_REQUEST = 100
STALE_LOCK_MESSAGE = "This record cannot be saved since it has already been updated elsewhere."
NO_VALUE = ":no_value:"
NULL_VALUE = ":null_value:"
CUSTOM_FIELD_DATA_TYPES: dict[str, DataType] = {
    **{datatype.value: datatype for datatype in DataType if datatype is not DataType.FOREIGN_KEY},
    "checkbox": DataType.BOOLEAN,
    "number": DataType.DECIMAL,
}
PERMISSION_FLAGS = {
    "_can_read": True,
    "_can_modify": True,
    "_can_delete": True,
    "_can_chown": True,
    "_can_chaccess": True,
}
CREATED_BY = "Sandbox User"


class UnknownControllerError(LookupError):
    """No record type is served at this controller path."""


class BadRequestError(ValueError):
    """A request-level problem (HTTP 406): bad parameters, bad filter, too many objects."""


class ReadQuery(BaseModel):
    """A parsed list request."""

    model_config = ConfigDict(frozen=True)

    filters: tuple[FilterSpec, ...] = ()
    filter_mode: str | None = None
    sort: tuple[tuple[str, str], ...] = ()
    start: int | None = None
    limit: int | None = None
    select_columns: tuple[str, ...] | None = None
    skip_total: bool = False
    max_rows: int = 10_000


class ReadResult(BaseModel):
    """Rendered records and the total count (or the rows returned when the count was skipped)."""

    data: list[dict[str, object]]
    total: int


class BatchObject(BaseModel):
    """One object of a square-array write: method, id, lock_version and raw attribute strings."""

    method: str
    id: str = "0"
    lock_version: str = "0"
    attributes: dict[str, str] = {}


@dataclass
class ObjectOutcome:
    """What happened to one object of a batch."""

    success: bool
    affected: dict[str, object]
    errors: dict[str, str] = field(default_factory=dict)
    warnings: dict[str, str] = field(default_factory=dict)


@dataclass
class _Registry:
    specs: dict[str, RecordTypeSpec]
    tables: dict[str, sa.Table]

    def by_class(self, class_name: str) -> RecordTypeSpec | None:
        return next((spec for spec in self.specs.values() if spec.class_name == class_name), None)


def _column_type(datatype: DataType) -> sa.types.TypeEngine:
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


def _index_name(table_name: str, column_name: str) -> str:
    return f"ix_{table_name}_{title_to_snake(column_name)}"


def _build_column(spec: FieldSpec) -> sa.Column:
    if spec.name == "id":
        return sa.Column("id", sa.Integer, primary_key=True, autoincrement=True)
    server_default = None
    if spec.datatype is DataType.BOOLEAN:
        # Boolean custom fields added to existing rows read as false, not blank.
        server_default = sa.text("1" if spec.default_value is True else "0")
    return sa.Column(spec.name, _column_type(spec.datatype), server_default=server_default)


def _build_tables(specs: Iterable[RecordTypeSpec]) -> dict[str, sa.Table]:
    metadata = sa.MetaData()
    columns_by_table: dict[str, dict[str, FieldSpec]] = {}
    for spec in specs:
        columns = columns_by_table.setdefault(spec.table_name, {})
        for field_spec in spec.fields:
            columns.setdefault(field_spec.name, field_spec)
    tables = {}
    for table_name, fields in columns_by_table.items():
        table = sa.Table(table_name, metadata, *(_build_column(f) for f in fields.values()))
        for field_spec in fields.values():
            if field_spec.indexed:
                sa.Index(_index_name(table_name, field_spec.name), table.c[field_spec.name])
        tables[table_name] = table
    return tables


def _sqlite_transaction_fix(engine: Engine) -> None:
    """Let SQLAlchemy, not pysqlite, emit BEGIN, so DDL (custom fields) rolls back with the request."""

    @sa.event.listens_for(engine, "connect")
    def _disable_pysqlite_transactions(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None

    @sa.event.listens_for(engine, "begin")
    def _begin(connection) -> None:
        connection.exec_driver_sql("BEGIN")


def _use_write_ahead_log(engine: Engine) -> None:
    """WAL with synchronous=NORMAL for a file database.

    A batch with per-object transactions commits up to 100 times; in the default rollback-journal mode
    every commit fsyncs several times, which made disk waits, not work, the cost of a sandbox write.
    """

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()


def _create_engine(url: str) -> Engine:
    if url in ("sqlite://", "sqlite:///:memory:"):
        engine = sa.create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        engine = sa.create_engine(url, connect_args={"check_same_thread": False})
        _use_write_ahead_log(engine)
    _sqlite_transaction_fix(engine)
    return engine


class WorkbooksStore:
    """The sandbox database: record types, reads with Workbooks filters, square-array batch writes.

    Args:
        url: SQLAlchemy SQLite URL, e.g. `sqlite://` (in memory) or `sqlite:////data/workbooks.db`.
        clock: returns the current UTC time; tests and simulations pass a fixed clock.
    """

    def __init__(self, url: str, *, clock: Callable[[], datetime] | None = None) -> None:
        self.url = url
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.RLock()
        self._engine = _create_engine(url)
        base_tables = _build_tables(standard_record_types())
        with self._engine.begin() as conn:
            for table in base_tables.values():
                table.create(conn, checkfirst=True)
        self._registry = self._load_registry()

    def __repr__(self) -> str:
        return f"WorkbooksStore(url={self.url!r})"

    # ------------------------------------------------------------ registry

    def now(self) -> datetime:
        """Current time as a naive UTC datetime (how datetimes are stored)."""
        return self._clock().astimezone(UTC).replace(tzinfo=None)

    def _load_registry(self) -> _Registry:
        base = {spec.controller_path: spec for spec in standard_record_types()}
        tables = _build_tables(base.values())
        with self._engine.connect() as conn:
            record_types = conn.execute(
                sa.select(tables["custom_record_types"]).where(
                    tables["custom_record_types"].c.is_deleted.is_(False)
                )
            ).mappings()
            for row in record_types:
                spec = RecordTypeSpec(
                    controller_path=row["controller_path"],
                    class_name=row["resource_type"],
                    human_class_name=row["name"],
                    table_name=f"custom_{row['route_suffix']}",
                    fields=tuple(custom_record_fields()),
                    object_ref_prefix=row["object_ref_prefix"],
                )
                base[spec.controller_path] = spec
            custom_fields = conn.execute(
                sa.select(tables["custom_fields"])
                .where(tables["custom_fields"].c.is_deleted.is_(False))
                .order_by(tables["custom_fields"].c.id)
            ).mappings()
            extra: dict[str, list[FieldSpec]] = {}
            for row in custom_fields:
                extra.setdefault(row["resource_type"], []).append(_custom_field_spec(row))
        specs = {
            path: with_extra_fields(spec, extra.get(spec.class_name, []))
            if spec.class_name in extra
            else spec
            for path, spec in base.items()
        }
        # Shared-table views (activities) see the custom fields of every type stored in them.
        for path, spec in specs.items():
            if spec.kind is RecordKind.READ_ONLY_VIEW:
                shared = [
                    f for other in specs.values() if other.table_name == spec.table_name for f in other.fields
                ]
                names = {f.name for f in spec.fields}
                unique = {f.name: f for f in shared if f.name not in names}
                specs[path] = with_extra_fields(spec, unique.values())
        return _Registry(specs=specs, tables=_build_tables(specs.values()))

    def spec_for(self, controller_path: str) -> RecordTypeSpec:
        """The record type served at `controller_path` (e.g. `crm/people`).

        Raises:
            UnknownControllerError: nothing is served there (custom record types appear once created).
        """
        spec = self._registry.specs.get(controller_path)
        if spec is None:
            raise UnknownControllerError(f"No API controller matches '{controller_path}'")
        return spec

    def record_types(self) -> list[RecordTypeSpec]:
        """Every record type currently served, built-in first."""
        return list(self._registry.specs.values())

    def _table(self, spec: RecordTypeSpec) -> sa.Table:
        return self._registry.tables[spec.table_name]

    def _scope(self, spec: RecordTypeSpec, table: sa.Table) -> list[sa.ColumnElement[bool]]:
        return [table.c.type == spec.discriminator] if spec.discriminator else []

    # ------------------------------------------------------------ reads

    def read(self, controller_path: str, query: ReadQuery) -> ReadResult:
        """List records of a type with Workbooks filters, sort, paging and column selection.

        Raises:
            UnknownControllerError: unknown controller.
            BadRequestError: unknown field, bad filter, bad `_fm`, bad sort.
        """
        with self._lock:
            spec = self.spec_for(controller_path)
            table = self._table(spec)
            where = self._where(spec, table, query)
            columns = self._selected_fields(spec, query.select_columns)
            statement = sa.select(*(table.c[f.name] for f in columns))
            if spec.table_name == "activities":
                statement = statement.add_columns(table.c.type.label("__type"))
            statement = statement.where(*where).order_by(*self._order_by(spec, table, query.sort))
            limit = (
                min(query.limit or query.max_rows, query.max_rows)
                if query.start is not None
                else query.max_rows
            )
            statement = statement.offset(query.start or 0).limit(limit)
            with self._engine.connect() as conn:
                rows = conn.execute(statement).mappings().all()
                data = [self._render(spec, row, columns) for row in rows]
                if query.skip_total:
                    total = len(data)
                else:
                    total = conn.execute(
                        sa.select(sa.func.count()).select_from(table).where(*where)
                    ).scalar_one()
        return ReadResult(data=data, total=total)

    def _column_for(
        self, spec: RecordTypeSpec, table: sa.Table
    ) -> Callable[[str], tuple[sa.ColumnElement, FieldSpec]]:
        def column_for(name: str) -> tuple[sa.ColumnElement, FieldSpec]:
            field_spec = spec.field(name)
            if field_spec is None or not field_spec.is_filterable:
                raise FilterError(f"unknown field '{name}' for {spec.class_name} ({spec.controller_path})")
            return table.c[name], field_spec

        return column_for

    def _where(self, spec: RecordTypeSpec, table: sa.Table, query: ReadQuery) -> list[sa.ColumnElement[bool]]:
        context = FilterContext(column_for=self._column_for(spec, table), today=self.now().date())
        try:
            leaves = [leaf_clause(n, f, context) for n, f in enumerate(query.filters, start=1)]
            expression = parse_filter_expression(query.filter_mode, len(leaves))
        except FilterError as error:
            raise BadRequestError(str(error)) from error
        where = self._scope(spec, table)
        if expression is not None:
            where.append(expression_to_sql(expression, leaves))
        if not any(f.field == "is_deleted" for f in query.filters):
            where.append(table.c.is_deleted.is_(False))
        return where

    def _selected_fields(self, spec: RecordTypeSpec, names: Sequence[str] | None) -> list[FieldSpec]:
        if not names:
            return list(spec.fields)
        unknown = [name for name in names if spec.field(name) is None]
        if unknown:
            raise BadRequestError(f"_select_columns[]: unknown column(s) {unknown} for {spec.class_name}")
        # id and lock_version always come back: clients need them to update what they read.
        wanted = {"id", "lock_version", *names}
        return [f for f in spec.fields if f.name in wanted]

    def _order_by(self, spec: RecordTypeSpec, table: sa.Table, sort: Sequence[tuple[str, str]]) -> list:
        clauses = []
        for name, direction in sort:
            if spec.field(name) is None:
                raise BadRequestError(f"_sort: unknown field '{name}' for {spec.class_name}")
            if direction.upper() not in ("ASC", "DESC"):
                raise BadRequestError(f"_dir: '{direction}' must be ASC or DESC (sorting on '{name}')")
            column = table.c[name]
            clauses.append(column.desc() if direction.upper() == "DESC" else column.asc())
        clauses.append(table.c.id.asc())
        return clauses

    def _render(
        self, spec: RecordTypeSpec, row: Mapping[str, object], columns: Sequence[FieldSpec]
    ) -> dict[str, object]:
        record = {f.name: render_value(row[f.name], f) for f in columns}
        record["type"] = row.get("__type") or spec.class_name
        record.update(PERMISSION_FLAGS)
        return record

    def get_record(self, controller_path: str, record_id: int) -> dict[str, object] | None:
        """One rendered record by id, deleted or not (for tests and simulations)."""
        with self._lock:
            spec = self.spec_for(controller_path)
            table = self._table(spec)
            with self._engine.connect() as conn:
                row = self._fetch(conn, spec, table, record_id)
            return None if row is None else self._render(spec, row, spec.fields)

    def _fetch(
        self, conn: Connection, spec: RecordTypeSpec, table: sa.Table, record_id: int
    ) -> Mapping | None:
        statement = sa.select(table).where(table.c.id == record_id, *self._scope(spec, table))
        row = conn.execute(statement).mappings().first()
        return None if row is None else {**row, "__type": row.get("type")}

    # ------------------------------------------------------------ writes

    def apply_batch(
        self,
        controller_path: str,
        objects: Sequence[BatchObject],
        *,
        per_object_transactions: bool = False,
        strict_attribute_checking: bool = False,
        actor: str = CREATED_BY,
        created_through: str = "API",
    ) -> list[ObjectOutcome]:
        """Create, update and delete objects; all-or-nothing unless `per_object_transactions`.

        Returns:
            One outcome per object in request order. Without per-object transactions, when any
            object fails nothing is saved and objects that would have succeeded report why.

        Raises:
            UnknownControllerError: unknown controller.
            BadRequestError: the type is read-only, or more than 100 objects were sent.
        """
        if len(objects) > MAX_OBJECTS_PER_REQUEST:
            raise BadRequestError(
                f"{len(objects)} objects sent; no more than {MAX_OBJECTS_PER_REQUEST} objects may be changed per request"
            )
        with self._lock:
            spec = self.spec_for(controller_path)
            if spec.kind is RecordKind.READ_ONLY_VIEW:
                raise BadRequestError(
                    f"{controller_path} is read-only; write tasks and meetings to their own controllers"
                )
            writer = _BatchWriter(self, spec, strict_attribute_checking, actor, created_through)
            if per_object_transactions:
                # One connection for the batch, one transaction per object on it (checking a connection out of
                # the pool per object, and its reset on return, cost as much as the transaction itself).
                with self._engine.connect() as conn:
                    outcomes = [self._in_transaction(lambda c, o=o: [writer.apply(c, o)], conn)[0] for o in objects]
            else:
                outcomes = self._in_transaction(lambda conn: [writer.apply(conn, o) for o in objects])
                if not all(outcome.success for outcome in outcomes):
                    outcomes = [_rolled_back(outcome) for outcome in outcomes]
            if spec.kind is not RecordKind.STANDARD and any(o.success for o in outcomes):
                self._registry = self._load_registry()
            return outcomes

    def _in_transaction(
        self, work: Callable[[Connection], list[ObjectOutcome]], conn: Connection | None = None
    ) -> list[ObjectOutcome]:
        """Run `work` in one transaction (on `conn` if given): committed when every outcome succeeded."""
        if conn is None:
            with self._engine.connect() as own:
                return self._in_transaction(work, own)
        transaction = conn.begin()
        try:
            outcomes = work(conn)
        except Exception:
            transaction.rollback()
            raise
        if all(outcome.success for outcome in outcomes):
            transaction.commit()
        else:
            transaction.rollback()
        return outcomes

    def bulk_insert(self, controller_path: str, records: Iterable[Mapping[str, object]]) -> list[int]:
        """Insert many records at once (seeding): values are Python values or wire strings.

        Returns:
            The new ids, in input order.

        Raises:
            BadRequestError: a record has an unknown attribute or a value that does not fit.
        """
        with self._lock:
            spec = self.spec_for(controller_path)
            table = self._table(spec)
            now = self.now()
            rows = [_bulk_row(spec, index, record, now) for index, record in enumerate(records)]
            if not rows:
                return []
            # executemany needs the same keys in every row.
            all_keys = set().union(*rows)
            for row in rows:
                for key in all_keys - row.keys():
                    row[key] = None
            with self._engine.begin() as conn:
                first_id = (conn.execute(sa.select(sa.func.max(table.c.id))).scalar() or 0) + 1
                ids = list(range(first_id, first_id + len(rows)))
                for row, new_id in zip(rows, ids, strict=True):
                    row["id"] = new_id
                    if spec.object_ref_prefix:
                        row["object_ref"] = f"{spec.object_ref_prefix}-{new_id}"
                conn.execute(table.insert(), rows)
            return ids

    def create_custom_field(
        self, resource_type: str, title: str, data_type: str, *, picklist_values: Sequence[str] = ()
    ) -> str:
        """Create a custom field as `admin/custom_fields` would and return its `value_column_name`.

        Raises:
            BadRequestError: the field could not be created (the message names the problem).
        """
        attributes = {"title": title, "resource_type": resource_type, "data_type": data_type}
        if picklist_values:
            attributes["picklist_values"] = "[" + ",".join(picklist_values) + "]"
        outcome = self.apply_batch(
            "admin/custom_fields", [BatchObject(method="POST", attributes=attributes)]
        )[0]
        if not outcome.success:
            raise BadRequestError(f"custom field '{title}' on {resource_type}: {outcome.errors}")
        return str(outcome.affected["value_column_name"])

    def dispose(self) -> None:
        """Close the database connections."""
        self._engine.dispose()


def _rolled_back(outcome: ObjectOutcome) -> ObjectOutcome:
    if not outcome.success:
        return outcome
    message = "Not saved: another object in this request failed and the request is all-or-nothing"
    return ObjectOutcome(success=False, affected={}, errors={"base": message}, warnings=outcome.warnings)


def _custom_field_spec(row: Mapping[str, object]) -> FieldSpec:
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


def _bulk_row(
    spec: RecordTypeSpec, index: int, record: Mapping[str, object], now: datetime
) -> dict[str, object]:
    row: dict[str, object] = {f.name: f.default_value for f in spec.fields if f.default_value is not None}
    row.update({"lock_version": 0, "created_at": now, "updated_at": now, "is_deleted": False})
    row.update({"created_by": CREATED_BY, "updated_by": CREATED_BY, "created_through": "sandbox seed"})
    if spec.discriminator:
        row["type"] = spec.discriminator
    for key, value in record.items():
        field_spec = spec.field(key)
        if field_spec is None:
            raise BadRequestError(f"record {index}: unknown attribute '{key}' for {spec.class_name}")
        try:
            row[key] = parse_value(value, field_spec) if isinstance(value, str) else value
        except FieldValueError as error:
            raise BadRequestError(f"record {index}: {key} {error}") from error
    _derive(spec, row, record, creating=True)
    return row


PERSON_NAME_PARTS = ("person_first_name", "person_middle_name", "person_last_name")


def _derive(
    spec: RecordTypeSpec, merged: dict[str, object], explicit: Mapping[str, object], *, creating: bool
) -> None:
    """Fill attributes Workbooks computes: a person's name from its parts, an opportunity's from its description.

    Args:
        spec: the record type.
        merged: the record as it will be saved; updated in place.
        explicit: the attributes the client sent (a name sent explicitly wins).
        creating: a new record always gets a derived name when none was sent.
    """
    name_parts_changed = creating or any(part in explicit for part in PERSON_NAME_PARTS)
    if spec.class_name == "Private::Crm::Person" and not explicit.get("name") and name_parts_changed:
        parts = (merged.get(part) for part in PERSON_NAME_PARTS)
        merged["name"] = " ".join(str(part) for part in parts if part) or None
    if spec.class_name == "Private::Crm::Opportunity" and "description" in explicit:
        merged["name"] = explicit["description"]


_RECORD_ID = "_record_id"  # the bound id of `_BatchWriter.update_by_id` (not a column name)


class _BatchWriter:
    """Applies one object of a batch inside the caller's transaction."""

    def __init__(
        self, store: WorkbooksStore, spec: RecordTypeSpec, strict: bool, actor: str, created_through: str
    ):
        self.store = store
        self.spec = spec
        self.table = store._table(spec)
        self.strict = strict
        self.actor = actor
        self.created_through = created_through
        # Statements built once per batch with bound parameters: building `.values(...)` per object (SQLAlchemy's
        # coercion and cache key of every value) was most of the sandbox's CPU on a bulk load.
        self.insert = self.table.insert()
        self.update_by_id = self.table.update().where(self.table.c.id == sa.bindparam(_RECORD_ID))

    def apply(self, conn: Connection, obj: BatchObject) -> ObjectOutcome:
        method = obj.method.upper()
        if method not in ("POST", "PUT", "DELETE"):
            return _failed({"__method": f"__method '{obj.method}' must be POST, PUT or DELETE"})
        try:
            record_id = int(obj.id or 0)
            lock_version = int(obj.lock_version or 0)
        except ValueError:
            return _failed({"id": f"id '{obj.id}' and lock_version '{obj.lock_version}' must be integers"})
        if method == "POST":
            return self._create(conn, obj, record_id)
        return self._change(conn, obj, method, record_id, lock_version)

    def _coerce(self, attributes: Mapping[str, str], *, creating: bool) -> tuple[dict, dict, dict]:
        values: dict[str, object] = {}
        errors: dict[str, str] = {}
        warnings: dict[str, str] = {}
        for key, raw in attributes.items():
            if raw == NO_VALUE:
                continue
            field_spec = self.spec.field(key)
            problem_target = errors if self.strict else warnings
            if field_spec is None:
                problem_target[key] = f"{key} is not an attribute of {self.spec.class_name}"
                continue
            if not (field_spec.is_createable if creating else field_spec.is_updateable):
                problem_target[key] = f"{key} cannot be {'set' if creating else 'changed'} through the API"
                continue
            if raw == NULL_VALUE:
                if field_spec.required:
                    errors[key] = f"{key} cannot be blank"
                values[key] = None
                continue
            try:
                values[key] = parse_value(raw, field_spec)
            except FieldValueError as error:
                errors[key] = f"{key} {error}"
        return values, errors, warnings

    def _missing_required(self, merged: Mapping[str, object]) -> dict[str, str]:
        errors = {
            f.name: f"{f.name} is required"
            for f in self.spec.fields
            if f.required and merged.get(f.name) in (None, "")
        }
        if self.spec.required_one_of and all(
            merged.get(name) in (None, "") for name in self.spec.required_one_of
        ):
            first = self.spec.required_one_of[0]
            errors[first] = (
                f"a {self.spec.human_class_name} needs one of {', '.join(self.spec.required_one_of)}"
            )
        return errors

    def _create(self, conn: Connection, obj: BatchObject, record_id: int) -> ObjectOutcome:
        if record_id != 0:
            return _failed({"id": f"id must be 0 to create a record (got {record_id})"})
        values, errors, warnings = self._coerce(obj.attributes, creating=True)
        defaults = {
            f.name: f.default_value
            for f in self.spec.fields
            if f.default_value is not None and f.is_createable
        }
        merged = {**defaults, **values}
        # Required fields are checked before derivation: a derived name does not satisfy "name required".
        _merge_missing(errors, self._missing_required(merged))
        _derive(self.spec, merged, values, creating=True)
        if not errors:
            errors.update(_admin_hook(self.store, conn, self.spec, merged))
        if errors:
            return ObjectOutcome(success=False, affected={}, errors=errors, warnings=warnings)
        now = self.store.now()
        merged.update(
            lock_version=0,
            created_at=now,
            updated_at=now,
            is_deleted=False,
            created_by=self.actor,
            updated_by=self.actor,
            created_through=self.created_through,
        )
        if self.spec.discriminator:
            merged["type"] = self.spec.discriminator
        new_id = conn.execute(self.insert, merged).inserted_primary_key[0]
        if self.spec.object_ref_prefix:
            object_ref = f"{self.spec.object_ref_prefix}-{new_id}"
            conn.execute(self.update_by_id, {_RECORD_ID: new_id, "object_ref": object_ref})
        return self._succeeded(conn, new_id, warnings)

    def _change(
        self, conn: Connection, obj: BatchObject, method: str, record_id: int, lock_version: int
    ) -> ObjectOutcome:
        current = self.store._fetch(conn, self.spec, self.table, record_id)
        if current is None or current["is_deleted"]:
            return _failed({"id": f"{self.spec.human_class_name} with id {record_id} does not exist"})
        if current["lock_version"] != lock_version:
            return _failed({"lock_version": STALE_LOCK_MESSAGE})
        stamp = {"lock_version": lock_version + 1, "updated_at": self.store.now(), "updated_by": self.actor}
        if method == "DELETE":
            conn.execute(self.update_by_id, {_RECORD_ID: record_id, "is_deleted": True, **stamp})
            return ObjectOutcome(success=True, affected={"id": record_id, "lock_version": lock_version + 1})
        values, errors, warnings = self._coerce(obj.attributes, creating=False)
        merged = {**current, **values}
        _merge_missing(errors, self._missing_required(merged))
        _derive(self.spec, merged, values, creating=False)
        if "name" in merged and merged["name"] != current.get("name"):
            values["name"] = merged["name"]
        if errors:
            return ObjectOutcome(success=False, affected={}, errors=errors, warnings=warnings)
        conn.execute(self.update_by_id, {_RECORD_ID: record_id, **values, **stamp})
        return self._succeeded(conn, record_id, warnings)

    def _succeeded(self, conn: Connection, record_id: int, warnings: dict[str, str]) -> ObjectOutcome:
        row = self.store._fetch(conn, self.spec, self.table, record_id)
        assert row is not None  # just written inside this transaction
        return ObjectOutcome(
            success=True, affected=self.store._render(self.spec, row, self.spec.fields), warnings=warnings
        )


def _merge_missing(errors: dict[str, str], missing: Mapping[str, str]) -> None:
    """Add "required" errors without hiding a more specific error already reported for the field."""
    for name, message in missing.items():
        errors.setdefault(name, message)


def _failed(errors: dict[str, str]) -> ObjectOutcome:
    return ObjectOutcome(success=False, affected={}, errors=errors)


# ---------------------------------------------------------------- admin hooks


def _admin_hook(
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
    column = _build_column(_custom_field_spec({**values, "is_indexed": values.get("is_indexed", False)}))
    column_sql = column.type.compile(dialect=conn.dialect)
    default_sql = (
        f" NOT NULL DEFAULT {column.server_default.arg.text}" if column.server_default is not None else ""
    )
    conn.exec_driver_sql(f'ALTER TABLE "{target.table_name}" ADD COLUMN "{name}" {column_sql}{default_sql}')
    if values.get("is_indexed") or name.endswith("_outreach_id"):
        conn.exec_driver_sql(
            f'CREATE INDEX "{_index_name(target.table_name, name)}" ON "{target.table_name}" ("{name}")'
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
    for table in _build_tables([_custom_record_spec_stub(route_suffix)]).values():
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
