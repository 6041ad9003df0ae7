"""SQLite (SQLAlchemy 2 Core) state of the Workbooks sandbox.

One table per record type (tasks and meetings share `activities`, told apart by `type`), with a
real column per API attribute named literally (e.g. `main_location[email]`). Custom fields are
added with `ALTER TABLE ADD COLUMN`; custom record types get their own table. The registry of
types and fields is rebuilt from the `custom_fields` / `custom_record_types` tables after every
committed change to them, so a file database reopens with the same schema.

Text columns use SQLite's NOCASE collation: Workbooks runs on MySQL whose default collation is
case-insensitive, so `main_location[email] eq A@X.COM` finds `a@x.com`, and indexes still apply.
All access goes through one re-entrant lock: the in-memory database is a single shared connection.
The tables and custom-field DDL are in `tables.py`; how one object of a batch write is applied, in `batch.py`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from outreach_pipeline.sandbox.workbooks.batch import (
    MAX_OBJECTS_PER_REQUEST,
    NO_VALUE,
    NULL_VALUE,
    STALE_LOCK_MESSAGE,
    BatchObject,
    BatchWriter,
    ObjectOutcome,
    derive,
)
from outreach_pipeline.sandbox.workbooks.filters import (
    FilterContext,
    FilterError,
    FilterSpec,
    expression_to_sql,
    leaf_clause,
    parse_filter_expression,
)
from outreach_pipeline.sandbox.workbooks.schema import (
    FieldSpec,
    RecordKind,
    RecordTypeSpec,
    custom_record_fields,
    standard_record_types,
    with_extra_fields,
)
from outreach_pipeline.sandbox.workbooks.tables import (
    CUSTOM_FIELD_DATA_TYPES,
    build_tables,
    custom_field_spec,
)
from outreach_pipeline.sandbox.workbooks.values import FieldValueError, parse_value, render_value

__all__ = ["CUSTOM_FIELD_DATA_TYPES", "MAX_OBJECTS_PER_REQUEST", "NO_VALUE", "NULL_VALUE", "STALE_LOCK_MESSAGE",
           "BadRequestError", "BatchObject", "ObjectOutcome", "ReadQuery", "ReadResult", "UnknownControllerError",
           "WorkbooksStore"]

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


@dataclass
class _Registry:
    specs: dict[str, RecordTypeSpec]
    tables: dict[str, sa.Table]

    def by_class(self, class_name: str) -> RecordTypeSpec | None:
        return next((spec for spec in self.specs.values() if spec.class_name == class_name), None)


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
        base_tables = build_tables(standard_record_types())
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
        tables = build_tables(base.values())
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
                extra.setdefault(row["resource_type"], []).append(custom_field_spec(row))
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
        return _Registry(specs=specs, tables=build_tables(specs.values()))

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
            writer = BatchWriter(self, spec, strict_attribute_checking, actor, created_through)
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
    derive(spec, row, record, creating=True)
    return row


