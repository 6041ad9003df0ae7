"""SQLite storage for the Outreach sandbox (SQLAlchemy Core).

One table per resource type: `id` (autoincrement, never reused), `created_at` / `updated_at` as integer
epoch milliseconds (indexed together with `id`, so keyset paging and updatedAt windows are index range
scans) and two JSON text blobs, the set attributes and the relationship ids. Prospect emails are mirrored
into `prospect_emails` so that uniqueness checks and `filter[emails]=` are indexed look-ups instead of
scans of every blob.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field
from sqlalchemy import (
    Column,
    ColumnElement,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    and_,
    create_engine,
    delete,
    event,
    exists,
    false,
    func,
    insert,
    literal,
    literal_column,
    null,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from outreach_pipeline.sandbox.outreach.spec import SERVED_TYPES

# A to-one id, to-many ids, or {"type", "id"} for a polymorphic to-one (task.subject).
RelationshipValue = int | list[int] | dict[str, Any] | None
EMAIL_TABLE = "prospect_emails"
# To-one relationships that are filtered or joined on often get an expression index.
INDEXED_RELATIONSHIPS: dict[str, tuple[str, ...]] = {
    "prospect": ("account",),
    "opportunity": ("account",),
    "opportunityProspectRole": ("prospect", "opportunity"),
    "sequenceStep": ("sequence",),
    "sequenceState": ("prospect", "sequence"),
    "mailbox": ("user",),
    "task": ("prospect",),
    "call": ("prospect",),
}


class RecordNotFoundError(LookupError):
    """No record of that type has that id."""

    def __init__(self, resource_type: str, record_id: int) -> None:
        super().__init__(f"Could not find '{resource_type}' with ID '{record_id}'.")
        self.resource_type = resource_type
        self.record_id = record_id


class DuplicateEmailError(ValueError):
    """A prospect write would reuse an email another prospect already has."""

    def __init__(self, emails: Iterable[str]) -> None:
        super().__init__("Contacts email hash has already been taken.")
        self.emails = sorted(emails)


class OutreachRecord(BaseModel):
    """One stored resource: server timestamps in epoch ms, the set attributes and relationship ids."""

    type: str
    id: int
    created_at: int
    updated_at: int
    attributes: dict[str, Any] = Field(default_factory=dict)
    relationships: dict[str, RelationshipValue] = Field(default_factory=dict)


class StoreChange(BaseModel):
    """One committed single-record write, as the store's listeners (webhook deliveries) receive it: the record
    after the change (before it, for a delete) and, for an update, the attributes and relationships it was given."""

    action: Literal["created", "updated", "destroyed"]
    record: OutreachRecord
    changed_attributes: list[str] = Field(default_factory=list)
    changed_relationships: list[str] = Field(default_factory=list)


FieldKind = Literal[
    "id", "created_at", "updated_at", "attribute", "array_attribute", "to_one", "to_many", "emails"
]


class FieldRef(BaseModel):
    """What a filter or sort key reads: a column, an attribute in the blob, a relationship or the email index."""

    kind: FieldKind
    name: str = ""


class Condition(BaseModel):
    """One filter: membership (`in`), an inclusive range (either end None = unbounded), or a null test."""

    field: FieldRef
    op: Literal["in", "range", "null", "not_null"]
    values: list[Any] = Field(default_factory=list)
    low: Any = None
    high: Any = None


class SortKey(BaseModel):
    """One sort key; `id` is always appended by the store as the final tie-breaker."""

    field: FieldRef
    descending: bool = False


class StoreQuery(BaseModel):
    """A keyset-paged, filtered, sorted read. `after` holds the sort values plus id of the last row seen."""

    conditions: list[Condition] = Field(default_factory=list)
    sort: list[SortKey] = Field(default_factory=list)
    after: list[Any] | None = None
    limit: int = 50


def utc_now() -> datetime:
    """Default store clock."""
    return datetime.now(UTC)


def to_epoch_ms(moment: datetime) -> int:
    """Epoch milliseconds of an aware datetime (naive ones are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def format_timestamp(epoch_ms: int) -> str:
    """Render epoch ms the way Outreach does: `2021-11-10T13:06:54.000Z`."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch_ms % 1000:03d}Z"


def _dumps(value: Mapping[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _enable_sqlite_speedups(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


class OutreachStore:
    """Storage shared by the sandbox app, the seeder and the activity simulator.

    Args:
        url: SQLAlchemy URL; `sqlite://` for a private in-memory database (tests), or
            `sqlite:///path/outreach.db` for a file under a data directory.

    `now` is the clock every write stamps records with; tests replace it to pin times.
    """

    def __init__(self, url: str = "sqlite://") -> None:
        self.url = url
        self.now: Callable[[], datetime] = utc_now
        # Told of every committed create, update and delete of one record (the API's writes, member actions and
        # the activity simulator); the seeder's bulk loads are not changes anyone subscribed to.
        self.listeners: list[Callable[[StoreChange], None]] = []
        in_memory = url in ("sqlite://", "sqlite:///:memory:")
        if in_memory:
            # One shared connection: every thread must see the same in-memory database.
            self.engine: Engine = create_engine(
                url, poolclass=StaticPool, connect_args={"check_same_thread": False}
            )
        else:
            self.engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
            event.listen(self.engine, "connect", _enable_sqlite_speedups)
        self._write_lock = threading.RLock()
        # A single shared connection must not be used by two threads at once, reads included.
        self._read_guard: Callable[[], AbstractContextManager[Any]] = (
            (lambda: self._write_lock) if in_memory else nullcontext
        )
        self.metadata = MetaData()
        self.tables: dict[str, Table] = {name: self._resource_table(name) for name in SERVED_TYPES}
        self.emails = Table(
            EMAIL_TABLE,
            self.metadata,
            Column("prospect_id", Integer, nullable=False, index=True),
            Column("email", Text, nullable=False, index=True),
        )
        self.metadata.create_all(self.engine)

    def __repr__(self) -> str:
        return f"OutreachStore(url={self.url!r})"

    def _resource_table(self, name: str) -> Table:
        table = Table(
            name,
            self.metadata,
            Column("id", Integer, primary_key=True, autoincrement=True),
            Column("created_at", Integer, nullable=False),
            Column("updated_at", Integer, nullable=False),
            Column("attributes", Text, nullable=False, default="{}"),
            Column("relationships", Text, nullable=False, default="{}"),
            Index(f"ix_{name}_updated_at_id", "updated_at", "id"),
            Index(f"ix_{name}_created_at_id", "created_at", "id"),
            sqlite_autoincrement=True,
        )
        for relationship in INDEXED_RELATIONSHIPS.get(name, ()):
            Index(f"ix_{name}_{relationship}", json_path(table.c.relationships, relationship))
        return table

    def table(self, resource_type: str) -> Table:
        """The table of a served type; KeyError names the type otherwise."""
        try:
            return self.tables[resource_type]
        except KeyError:
            raise KeyError(f"unknown resource type {resource_type!r}") from None

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        with self._write_lock, self.engine.begin() as conn:
            yield conn

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        with self._read_guard(), self.engine.connect() as conn:
            yield conn

    def now_ms(self) -> int:
        """The store clock in epoch milliseconds."""
        return to_epoch_ms(self.now())

    # ----------------------------------------------------------------- single-record writes

    def create(
        self,
        resource_type: str,
        attributes: Mapping[str, Any] | None = None,
        relationships: Mapping[str, RelationshipValue] | None = None,
    ) -> OutreachRecord:
        """Insert one record stamped with the store clock.

        Raises:
            DuplicateEmailError: a prospect would share an email with another prospect.
        """
        attrs = {k: v for k, v in (attributes or {}).items() if v is not None}
        rels = {k: v for k, v in (relationships or {}).items() if v is not None}
        table = self.table(resource_type)
        with self._writing() as conn:
            stamp = self.now_ms()
            if resource_type == "prospect":
                self._check_unique_emails(conn, attrs.get("emails") or [], exclude_id=None)
            record_id = conn.execute(
                insert(table).values(
                    created_at=stamp, updated_at=stamp, attributes=_dumps(attrs), relationships=_dumps(rels)
                )
            ).inserted_primary_key[0]
            if resource_type == "prospect":
                self._replace_emails(conn, record_id, attrs.get("emails") or [])
        record = OutreachRecord(
            type=resource_type,
            id=record_id,
            created_at=stamp,
            updated_at=stamp,
            attributes=attrs,
            relationships=rels,
        )
        self._tell(StoreChange(action="created", record=record))
        return record

    def update(
        self,
        resource_type: str,
        record_id: int,
        attributes: Mapping[str, Any] | None = None,
        relationships: Mapping[str, RelationshipValue] | None = None,
    ) -> OutreachRecord:
        """Change only the given attributes/relationships (None clears one) and bump updatedAt.

        Raises:
            RecordNotFoundError: no such record.
            DuplicateEmailError: a prospect would share an email with another prospect.
        """
        table = self.table(resource_type)
        with self._writing() as conn:
            current = self._get(conn, resource_type, record_id)
            attrs = _merged(current.attributes, attributes or {})
            rels = _merged(current.relationships, relationships or {})
            emails_changed = resource_type == "prospect" and "emails" in (attributes or {})
            if emails_changed:
                self._check_unique_emails(conn, attrs.get("emails") or [], exclude_id=record_id)
            # Never let a write move a record backwards, even if the clock was pinned earlier.
            stamp = max(self.now_ms(), current.updated_at)
            conn.execute(
                update(table)
                .where(table.c.id == record_id)
                .values(updated_at=stamp, attributes=_dumps(attrs), relationships=_dumps(rels))
            )
            if emails_changed:
                self._replace_emails(conn, record_id, attrs.get("emails") or [])
        record = current.model_copy(update={"updated_at": stamp, "attributes": attrs, "relationships": rels})
        self._tell(StoreChange(action="updated", record=record, changed_attributes=sorted(attributes or {}),
                               changed_relationships=sorted(relationships or {})))
        return record

    def delete(self, resource_type: str, record_id: int) -> None:
        """Remove one record.

        Raises:
            RecordNotFoundError: no such record.
        """
        table = self.table(resource_type)
        with self._writing() as conn:
            row = conn.execute(select(table).where(table.c.id == record_id)).first()
            if row is None:
                raise RecordNotFoundError(resource_type, record_id)
            conn.execute(delete(table).where(table.c.id == record_id))
            if resource_type == "prospect":
                conn.execute(delete(self.emails).where(self.emails.c.prospect_id == record_id))
        self._tell(StoreChange(action="destroyed", record=_record_from_row(resource_type, row)))

    def _tell(self, change: StoreChange) -> None:
        for listener in list(self.listeners):
            listener(change)

    def _check_unique_emails(self, conn: Connection, emails: Sequence[str], exclude_id: int | None) -> None:
        wanted = {email.lower() for email in emails}
        if not wanted:
            return
        query = select(self.emails.c.email).where(self.emails.c.email.in_(wanted))
        if exclude_id is not None:
            query = query.where(self.emails.c.prospect_id != exclude_id)
        taken = set(conn.execute(query.limit(len(wanted))).scalars())
        if taken:
            raise DuplicateEmailError(taken)

    def _replace_emails(self, conn: Connection, prospect_id: int, emails: Sequence[str]) -> None:
        conn.execute(delete(self.emails).where(self.emails.c.prospect_id == prospect_id))
        rows = [{"prospect_id": prospect_id, "email": email.lower()} for email in dict.fromkeys(emails)]
        if rows:
            conn.execute(insert(self.emails), rows)

    # ----------------------------------------------------------------- bulk load for the seeder

    def set_attributes_unstamped(self, resource_type: str, record_ids: Iterable[int], attributes: Mapping[str, Any]) -> None:
        """Set attributes on existing records without moving their updatedAt: the seeder's way to make data it
        generated earlier consistent with data generated later (an opted-out sequence state's prospect)."""
        table = self.table(resource_type)
        with self._writing() as conn:
            for record_id in sorted(set(record_ids)):
                current = self._get(conn, resource_type, record_id)
                conn.execute(
                    update(table).where(table.c.id == record_id)
                    .values(attributes=_dumps(_merged(current.attributes, attributes)))
                )

    def bulk_insert(self, resource_type: str, rows: Iterable[Mapping[str, Any]]) -> list[int]:
        """Insert many records in one transaction, bypassing API validation (legacy data may break rules).

        Args:
            resource_type: a served type.
            rows: mappings with `attributes`, `relationships` and optional `created_at` / `updated_at`
                (epoch ms or datetime; default: the store clock).

        Returns:
            The new ids, in input order.
        """
        table = self.table(resource_type)
        stamp = self.now_ms()
        values = [_bulk_row(row, stamp) for row in rows]
        if not values:
            return []
        with self._writing() as conn:
            first_id = (conn.execute(select(func.max(table.c.id))).scalar() or 0) + 1
            ids = list(range(first_id, first_id + len(values)))
            email_lists = [row.pop("_emails") for row in values]
            for record_id, row in zip(ids, values, strict=True):
                row["id"] = record_id
            conn.execute(insert(table), values)
            email_rows = [
                {"prospect_id": record_id, "email": email.lower()}
                for record_id, emails in zip(ids, email_lists, strict=True)
                for email in dict.fromkeys(emails)
            ]
            if email_rows:
                conn.execute(insert(self.emails), email_rows)
        return ids

    # ----------------------------------------------------------------- reads

    def get(self, resource_type: str, record_id: int) -> OutreachRecord:
        """One record.

        Raises:
            RecordNotFoundError: no such record.
        """
        with self._reading() as conn:
            return self._get(conn, resource_type, record_id)

    def _get(self, conn: Connection, resource_type: str, record_id: int) -> OutreachRecord:
        table = self.table(resource_type)
        row = conn.execute(select(table).where(table.c.id == record_id)).first()
        if row is None:
            raise RecordNotFoundError(resource_type, record_id)
        return _record_from_row(resource_type, row)

    def get_many(self, resource_type: str, record_ids: Iterable[int]) -> list[OutreachRecord]:
        """The records that exist among `record_ids` (missing ids are skipped), ordered by id."""
        wanted = sorted(set(record_ids))
        if not wanted:
            return []
        table = self.table(resource_type)
        with self._reading() as conn:
            rows = conn.execute(select(table).where(table.c.id.in_(wanted)).order_by(table.c.id)).all()
        return [_record_from_row(resource_type, row) for row in rows]

    def existing_ids(self, resource_type: str, record_ids: Iterable[int]) -> set[int]:
        """The subset of `record_ids` that exist."""
        wanted = set(record_ids)
        if not wanted:
            return set()
        table = self.table(resource_type)
        with self._reading() as conn:
            return set(conn.execute(select(table.c.id).where(table.c.id.in_(wanted))).scalars())

    def query(self, resource_type: str, request: StoreQuery) -> list[OutreachRecord]:
        """Run a filtered, sorted keyset read; returns at most `request.limit` records."""
        table = self.table(resource_type)
        keys = self._order_keys(table, request.sort)
        statement = select(table).where(*self._conditions(table, request.conditions))
        if request.after is not None:
            statement = statement.where(_keyset_after(keys, list(request.after)))
        order_by = [expression.desc() if descending else expression.asc() for expression, descending in keys]
        statement = statement.order_by(*order_by).limit(request.limit)
        with self._reading() as conn:
            rows = conn.execute(statement).all()
        return [_record_from_row(resource_type, row) for row in rows]

    def count(self, resource_type: str, conditions: Sequence[Condition]) -> int:
        """Number of records matching `conditions`."""
        table = self.table(resource_type)
        statement = select(func.count()).select_from(table).where(*self._conditions(table, conditions))
        with self._reading() as conn:
            return int(conn.execute(statement).scalar() or 0)

    def count_all(self) -> dict[str, int]:
        """Row count of every resource table."""
        with self._reading() as conn:
            return {
                name: int(conn.execute(select(func.count()).select_from(table)).scalar() or 0)
                for name, table in self.tables.items()
            }

    def related_ids(
        self, resource_type: str, relationship: str, target_ids: Iterable[int]
    ) -> dict[int, list[int]]:
        """For each target id, ids of `resource_type` records whose to-one `relationship` points at it."""
        wanted = sorted(set(target_ids))
        if not wanted:
            return {}
        table = self.table(resource_type)
        pointer = json_path(table.c.relationships, relationship)
        statement = select(pointer, table.c.id).where(pointer.in_(wanted)).order_by(table.c.id)
        result: dict[int, list[int]] = {}
        with self._reading() as conn:
            for target_id, record_id in conn.execute(statement):
                result.setdefault(int(target_id), []).append(record_id)
        return result

    # ----------------------------------------------------------------- SQL building

    def _field_expression(self, table: Table, field: FieldRef) -> ColumnElement[Any]:
        match field.kind:
            case "id" | "created_at" | "updated_at":
                return table.c[field.kind]
            case "attribute":
                return json_path(table.c.attributes, field.name)
            case "to_one":
                return json_path(table.c.relationships, field.name)
        raise ValueError(f"field {field.kind}:{field.name} cannot be compared directly")

    def _order_keys(self, table: Table, sort: Sequence[SortKey]) -> list[tuple[ColumnElement[Any], bool]]:
        keys = [(self._field_expression(table, key.field), key.descending) for key in sort]
        if not any(key.field.kind == "id" for key in sort):
            keys.append((table.c.id, False))
        return keys

    def _conditions(self, table: Table, conditions: Sequence[Condition]) -> list[ColumnElement[bool]]:
        return [self._condition(table, condition) for condition in conditions]

    def _condition(self, table: Table, condition: Condition) -> ColumnElement[bool]:
        field = condition.field
        if field.kind == "emails":
            return self._emails_condition(table, condition)
        if field.kind in ("array_attribute", "to_many"):
            return _array_condition(table, field, condition)
        expression = self._field_expression(table, field)
        return _scalar_condition(expression, condition)

    def _emails_condition(self, table: Table, condition: Condition) -> ColumnElement[bool]:
        owners = select(self.emails.c.prospect_id)
        match condition.op:
            case "in":
                lowered = [str(value).lower() for value in condition.values]
                return table.c.id.in_(owners.where(self.emails.c.email.in_(lowered)))
            case "null":
                return table.c.id.not_in(owners)
            case "not_null":
                return table.c.id.in_(owners)
        return table.c.id.in_(owners.where(_range(self.emails.c.email, condition.low, condition.high)))


def json_path(column: Any, key: str) -> ColumnElement[Any]:
    """`json_extract(column, '$.key')` with the path inlined, so SQLite can match expression indexes.

    `key` always comes from the OpenAPI spec (plain identifiers), never from a client.
    """
    if not key.isidentifier():
        raise ValueError(f"not a JSON key the sandbox knows: {key!r}")
    return func.json_extract(column, literal_column(f"'$.{key}'"))


def _scalar_condition(expression: ColumnElement[Any], condition: Condition) -> ColumnElement[bool]:
    match condition.op:
        case "in":
            return expression.in_(condition.values)
        case "null":
            return expression.is_(null())
        case "not_null":
            return expression.is_not(null())
    return _range(expression, condition.low, condition.high)


def _range(expression: ColumnElement[Any], low: Any, high: Any) -> ColumnElement[bool]:
    parts = []
    if low is not None:
        parts.append(expression >= low)
    if high is not None:
        parts.append(expression <= high)
    return and_(true(), *parts) if parts else expression.is_not(null())


def _array_condition(table: Table, field: FieldRef, condition: Condition) -> ColumnElement[bool]:
    column = table.c.attributes if field.kind == "array_attribute" else table.c.relationships
    elements = func.json_each(column, f"$.{field.name}").table_valued("value")
    match condition.op:
        case "in":
            return exists(
                select(literal(1)).select_from(elements).where(elements.c.value.in_(condition.values))
            )
        case "null":
            return ~exists(select(literal(1)).select_from(elements))
        case "not_null":
            return exists(select(literal(1)).select_from(elements))
    matching = _range(elements.c.value, condition.low, condition.high)
    return exists(select(literal(1)).select_from(elements).where(matching))


def _keyset_after(keys: Sequence[tuple[ColumnElement[Any], bool]], values: list[Any]) -> ColumnElement[bool]:
    """Rows strictly after `values` in the order given by `keys`, NULL-aware.

    SQLite orders NULL before every value ascending and after every value descending; the predicate
    mirrors that so that records with unset sort attributes are neither skipped nor repeated.
    """
    if not keys:
        return false()
    (expression, descending), rest = keys[0], keys[1:]
    value, rest_values = values[0], values[1:]
    if value is None:
        strictly_after = expression.is_not(null()) if not descending else false()
        equal = expression.is_(null())
    elif descending:
        strictly_after = or_(expression < value, expression.is_(null()))
        equal = expression == value
    else:
        strictly_after = expression > value
        equal = expression == value
    if not rest:
        return strictly_after
    return or_(strictly_after, and_(equal, _keyset_after(rest, rest_values)))


def _merged(current: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(current)
    for name, value in changes.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged


def _timestamp_ms(value: Any, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, datetime):
        return to_epoch_ms(value)
    return int(value)


def _bulk_row(row: Mapping[str, Any], stamp: int) -> dict[str, Any]:
    created = _timestamp_ms(row.get("created_at"), stamp)
    attributes = {k: v for k, v in (row.get("attributes") or {}).items() if v is not None}
    relationships = {k: v for k, v in (row.get("relationships") or {}).items() if v is not None}
    return {
        "created_at": created,
        "updated_at": _timestamp_ms(row.get("updated_at"), created),
        "attributes": _dumps(attributes),
        "relationships": _dumps(relationships),
        "_emails": attributes.get("emails") or [],
    }


def _record_from_row(resource_type: str, row: Any) -> OutreachRecord:
    # Rows come from our own tables, so re-validating every field would only cost time on 1,000-row pages.
    return OutreachRecord.model_construct(
        type=resource_type,
        id=row.id,
        created_at=row.created_at,
        updated_at=row.updated_at,
        attributes=json.loads(row.attributes),
        relationships=json.loads(row.relationships),
    )
