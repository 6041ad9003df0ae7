"""The ledger's records: what a run gives the ledger and what it reads back (pydantic, immutable, UTC)."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from outreach_pipeline.engine.outcome import Outcome
from outreach_pipeline.engine.utc_datetime import to_utc
from outreach_pipeline.mapping.errors import ErrorKind

HOUR = timedelta(hours=1)


def _aware_in_utc(value: datetime) -> datetime:
    # A naive datetime is refused where it enters, naming the field, rather than at the database.
    if value.tzinfo is None:
        raise ValueError("datetimes must be timezone-aware")
    return to_utc(value)


#: A datetime field of a ledger record: aware, stored in UTC. Only these fields run the check (a validator on
#: every field ran for every value of every record: a few percent of a bulk load's client CPU).
UtcDatetime = Annotated[datetime, AfterValidator(_aware_in_utc)]


class LedgerModel(BaseModel):
    """Base of ledger records: immutable, unknown keys rejected, datetimes (`UtcDatetime`) aware and in UTC."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class SyncWindow(LedgerModel):
    """A half-open sync window ``[start, end)`` in UTC."""

    start: UtcDatetime
    end: UtcDatetime


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
    outreach_updated_at: UtcDatetime | None = None
    values: dict[str, Any] | None = None
    diff: dict[str, Any] | None = None
    reason: str | None = None
    error: str | None = None
    pending_relations: list[PendingRelation] = Field(default_factory=list)
    window_start: UtcDatetime | None = None
    window_end: UtcDatetime | None = None
    error_field: str | None = None
    error_kind: ErrorKind | None = None
    workbooks_lock_version: int | None = None

    def own_window(self, run_window: SyncWindow) -> SyncWindow:
        """The record's own window if it has one, else the run's."""
        if self.window_start is None:
            return run_window
        # Both ends are this record's validated UTC datetimes: nothing left to validate (called twice per record).
        return SyncWindow.model_construct(start=self.window_start, end=self.window_end or self.window_start + HOUR)


class RecordState(LedgerModel):
    """The ledger's latest knowledge of one record."""

    entity: str
    outreach_id: int
    workbooks_id: int | None
    outreach_updated_at: UtcDatetime | None
    values_hash: str | None
    values: dict[str, Any] | None
    last_outcome: Outcome
    last_reason: str | None
    last_error: str | None
    window_start: UtcDatetime | None
    window_end: UtcDatetime | None
    last_run_id: str
    needs_retry: bool
    recorded_at: UtcDatetime
    error_field: str | None = None
    error_kind: str | None = None
    first_failed_at: UtcDatetime | None = None
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
    outreach_updated_at: UtcDatetime | None
    window_start: UtcDatetime | None
    window_end: UtcDatetime | None
    values_hash: str | None
    diff: dict[str, Any] | None
    recorded_at: UtcDatetime
    old: dict[str, Any] | None = None
    error_field: str | None = None
    error_kind: str | None = None
    fail_streak: int | None = None


class RunSummary(LedgerModel):
    """Counts per outcome of one run of one entity."""

    run_id: str
    entity: str
    window_start: UtcDatetime | None
    window_end: UtcDatetime | None
    counts: dict[str, int]
    started_at: UtcDatetime
    finished_at: UtcDatetime | None


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
    return json_hash(to_json(values))


def json_hash(text: str | None) -> str | None:
    """`values_hash` of values already serialised by `to_json`."""
    return None if text is None else hashlib.sha256(text.encode()).hexdigest()


def to_json(value: Any) -> str | None:
    """Canonical JSON of a stored value (sorted keys, compact); None stays None."""
    return None if value is None else json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))


def from_json(text: str | None) -> Any:
    return None if text is None else json.loads(text)
