"""Validation errors as data: what is wrong with one staged record, by field and kind.

Staging, planning, checks and the ledger read the ``kind`` to decide and count; the ``message`` is for
people (it names the record, the source and the Workbooks field) and is never parsed. A staged frame carries
each row's errors in ``validation_errors`` as a list of plain dicts (``ValidationError.as_record()``), so the
frame stays serialisable; ``ValidationError.from_record`` reads them back.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class ErrorKind(StrEnum):
    """Why a record cannot be synced as it is."""

    REQUIRED = "required"  # a required field is blank
    TOO_LONG = "too_long"  # text longer than the target field allows
    INVALID_DATE = "invalid_date"  # not a date or date-time
    INVALID_NUMBER = "invalid_number"  # not an integer or an amount
    INVALID_BOOLEAN = "invalid_boolean"
    INVALID_CURRENCY = "invalid_currency"  # not an ISO 4217 code
    NOT_IN_PICKLIST = "not_in_picklist"  # a value the picklist map has no entry for
    INVALID_ID = "invalid_id"  # a link that is not a record id
    DUPLICATE = "duplicate"  # an id or natural key another record holds too
    UNREADABLE = "unreadable"  # the API returned a record the extractor could not read
    # Found at load, by the target system rather than by the mapping:
    REFUSED_BY_WORKBOOKS = "refused_by_workbooks"  # Workbooks refused the write (its message says why)
    REFUSED_BY_OUTREACH = "refused_by_outreach"  # Outreach refused the write (its message says why)
    NOT_CONFIRMED = "not_confirmed"  # the write's reply was lost and a lookup could not confirm it


@dataclass(frozen=True)
class ValidationError:
    """One problem of one record: the Workbooks field it concerns (None for the whole record)."""

    field: str | None
    kind: ErrorKind
    message: str

    def as_record(self) -> dict[str, str | None]:
        """The plain-dict form a DataFrame cell holds."""
        return {"field": self.field, "kind": self.kind.value, "message": self.message}

    @classmethod
    def from_record(cls, record: Mapping[str, Any] | ValidationError) -> ValidationError:
        """Read the plain-dict form back (a ValidationError is returned as it is)."""
        if isinstance(record, ValidationError):
            return record
        return cls(field=record.get("field"), kind=ErrorKind(record["kind"]), message=str(record["message"]))


def read_errors(cell: object) -> list[ValidationError]:
    """The errors of one ``validation_errors`` cell (a list of records; blank cells hold none)."""
    if not isinstance(cell, Iterable) or isinstance(cell, str | bytes | Mapping):
        return []
    return [ValidationError.from_record(record) for record in cell]


def has_kind(cell: object, kind: ErrorKind) -> bool:
    """Whether one ``validation_errors`` cell holds an error of ``kind``."""
    return any(error.kind is kind for error in read_errors(cell))


def messages(cell: object) -> list[str]:
    """The messages of one ``validation_errors`` cell, in order."""
    return [error.message for error in read_errors(cell)]
