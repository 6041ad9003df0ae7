"""One object of a Workbooks batch write, applied inside the caller's transaction (sandbox/workbooks/store.py).

The wire-level vocabulary of a write (`BatchObject` in, `ObjectOutcome` out, the `:no_value:` / `:null_value:`
markers, the stale lock_version message) and `BatchWriter`, which coerces an object's attribute strings through
the field specs, checks required fields and lock versions, derives the attributes Workbooks computes (a person's
name) and inserts or updates the row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.engine import Connection

from outreach_pipeline.sandbox.workbooks.schema import RecordTypeSpec
from outreach_pipeline.sandbox.workbooks.tables import admin_hook
from outreach_pipeline.sandbox.workbooks.values import FieldValueError, parse_value

if TYPE_CHECKING:
    from collections.abc import Mapping

    from outreach_pipeline.sandbox.workbooks.store import WorkbooksStore

MAX_OBJECTS_PER_REQUEST = 100
STALE_LOCK_MESSAGE = "This record cannot be saved since it has already been updated elsewhere."
NO_VALUE = ":no_value:"
NULL_VALUE = ":null_value:"


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


PERSON_NAME_PARTS = ("person_first_name", "person_middle_name", "person_last_name")


def derive(
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


_RECORD_ID = "_record_id"  # the bound id of `BatchWriter.update_by_id` (not a column name)


class BatchWriter:
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
            return failed_outcome({"__method": f"__method '{obj.method}' must be POST, PUT or DELETE"})
        try:
            record_id = int(obj.id or 0)
            lock_version = int(obj.lock_version or 0)
        except ValueError:
            return failed_outcome({"id": f"id '{obj.id}' and lock_version '{obj.lock_version}' must be integers"})
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
            return failed_outcome({"id": f"id must be 0 to create a record (got {record_id})"})
        values, errors, warnings = self._coerce(obj.attributes, creating=True)
        defaults = {
            f.name: f.default_value
            for f in self.spec.fields
            if f.default_value is not None and f.is_createable
        }
        merged = {**defaults, **values}
        # Required fields are checked before derivation: a derived name does not satisfy "name required".
        _merge_missing(errors, self._missing_required(merged))
        derive(self.spec, merged, values, creating=True)
        if not errors:
            errors.update(admin_hook(self.store, conn, self.spec, merged))
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
            return failed_outcome({"id": f"{self.spec.human_class_name} with id {record_id} does not exist"})
        if current["lock_version"] != lock_version:
            return failed_outcome({"lock_version": STALE_LOCK_MESSAGE})
        stamp = {"lock_version": lock_version + 1, "updated_at": self.store.now(), "updated_by": self.actor}
        if method == "DELETE":
            conn.execute(self.update_by_id, {_RECORD_ID: record_id, "is_deleted": True, **stamp})
            return ObjectOutcome(success=True, affected={"id": record_id, "lock_version": lock_version + 1})
        values, errors, warnings = self._coerce(obj.attributes, creating=False)
        merged = {**current, **values}
        _merge_missing(errors, self._missing_required(merged))
        derive(self.spec, merged, values, creating=False)
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


def failed_outcome(errors: dict[str, str]) -> ObjectOutcome:
    return ObjectOutcome(success=False, affected={}, errors=errors)


# ---------------------------------------------------------------- admin hooks
