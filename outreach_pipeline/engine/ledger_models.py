"""The ledger's records: what a run gives the ledger and what it reads back (pydantic, immutable, UTC)."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from outreach_pipeline.engine.outcome import Outcome
from outreach_pipeline.engine.utc_datetime import to_utc
from outreach_pipeline.mapping.errors import ErrorKind

HOUR = timedelta(hours=1)


class LedgerModel(BaseModel):
    """Base of ledger records: immutable, unknown keys rejected, datetimes aware and in UTC."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _datetimes_in_utc(cls, value: Any) -> Any:
        # A naive datetime is refused where it enters, naming the field, rather than at the database.
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise ValueError("datetimes must be timezone-aware")
            return to_utc(value)
        return value


class SyncWindow(LedgerModel):
    """A half-open sync window ``[start, end)`` in UTC."""

    start: datetime
    end: datetime


class PendingRelation(LedgerModel):
    """A link from ``entity``/``outreach_id`` that could not be resolved because its target is not synced yet."""

    entity: str
    outreach_id: int
    field: str
    target_entity: str
    target_outreach_id: int


class RecordOutcome(LedgerModel):
    """What happened to one record in one run (input to :meth:`SyncLedger.record_outcomes`).

    Attributes:
        values: the full set of normalised values now in Workbooks (applied outcomes only); hashed.
        diff: what was written (fields -> new values), kept in the history with each field's previous value
            (from the ledger's last applied values; absent when the ledger had none).
        pending_relations: the record's complete set of unresolved links after this run (replaces the old set).
        window_start: the record's own sync window (the hour its change belongs to); ``window_end`` defaults to
            one hour later. Without it the record is stored with the whole window the run was given.
        error_field, error_kind: what a failure concerns (``mapping.errors.ErrorKind``); None when unknown.
        workbooks_lock_version: the Workbooks record's lock_version that ``values`` correspond to (after an
            Outreach -> Workbooks write, or as read for a Workbooks -> Outreach write); the ledger keeps the highest.
    """

    entity: str
    outreach_id: int
    outcome: Outcome
    workbooks_id: int | None = None
    outreach_updated_at: datetime | None = None
    values: dict[str, Any] | None = None
    diff: dict[str, Any] | None = None
    reason: str | None = None
    error: str | None = None
    pending_relations: list[PendingRelation] = Field(default_factory=list)
    window_start: datetime | None = None
    window_end: datetime | None = None
    error_field: str | None = None
    error_kind: ErrorKind | None = None
    workbooks_lock_version: int | None = None

    def own_window(self, run_window: SyncWindow) -> SyncWindow:
        """The record's own window if it has one, else the run's."""
        if self.window_start is None:
            return run_window
        return SyncWindow(start=self.window_start, end=self.window_end or self.window_start + HOUR)


class RecordState(LedgerModel):
    """The ledger's latest knowledge of one record."""

    entity: str
    outreach_id: int
    workbooks_id: int | None
    outreach_updated_at: datetime | None
    values_hash: str | None
    values: dict[str, Any] | None
    last_outcome: Outcome
    last_reason: str | None
    last_error: str | None
    window_start: datetime | None
    window_end: datetime | None
    last_run_id: str
    needs_retry: bool
    recorded_at: datetime
    error_field: str | None = None
    error_kind: str | None = None
    first_failed_at: datetime | None = None
    fail_streak: int = 0
    workbooks_lock_version: int | None = None


class HistoryEntry(LedgerModel):
    """One row of the append-only history."""

    run_id: str
    entity: str
    outreach_id: int
    workbooks_id: int | None
    outcome: Outcome
    reason: str | None
    error: str | None
    outreach_updated_at: datetime | None
    window_start: datetime | None
    window_end: datetime | None
    values_hash: str | None
    diff: dict[str, Any] | None
    recorded_at: datetime
    old: dict[str, Any] | None = None
    error_field: str | None = None
    error_kind: str | None = None
    fail_streak: int | None = None


class RunSummary(LedgerModel):
    """Counts per outcome of one run of one entity."""

    run_id: str
    entity: str
    window_start: datetime | None
    window_end: datetime | None
    counts: dict[str, int]
    started_at: datetime
    finished_at: datetime | None


class FieldConflict(LedgerModel):
    """A field changed on both sides since they last agreed: both values, the base, and who won."""

    entity: str
    outreach_id: int
    workbooks_id: int | None
    field: str
    base: Any
    had_base: bool
    outreach_value: Any
    workbooks_value: Any
    winner: str
    policy: str


def values_hash(values: dict[str, Any] | None) -> str | None:
    """Stable SHA-256 of a values dict (sorted keys, JSON)."""
    if values is None:
        return None
    return hashlib.sha256(to_json(values).encode()).hexdigest()


def to_json(value: Any) -> str | None:
    """Canonical JSON of a stored value (sorted keys, compact); None stays None."""
    return None if value is None else json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))


def from_json(text: str | None) -> Any:
    return None if text is None else json.loads(text)
