"""Ledger rows <-> ledger records: the state and history rows a run's outcomes become, and the records read back.

The rules a row encodes (pure functions, no database):
* a record's values and Outreach time change only when an outcome was applied; a skip or failure keeps them;
* failures count a streak and keep when the record first failed; a stale-version skip keeps the failure state;
* only failures are retried; a flag skip is terminal for this version;
* the Workbooks lock_version only grows, and starts afresh when the record gets a new Workbooks twin;
* history keeps each written field's previous value (from the ledger's last applied values).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from outreach_pipeline.engine.ledger_models import (
    HistoryEntry,
    RecordOutcome,
    RecordState,
    SyncWindow,
    from_json,
    json_hash,
    to_json,
    values_hash,
)
from outreach_pipeline.engine.outcome import Outcome


def state_row(
    outcome: RecordOutcome, previous: RecordState | None, run_id: str, window: SyncWindow, now: datetime
) -> dict[str, Any]:
    applied = outcome.outcome.applied
    keep_values = not applied and previous is not None
    own = outcome.own_window(window)
    failed = outcome.outcome is Outcome.FAILED
    # A stale-version skip (an old window reloaded) says nothing about the record's failures: it keeps them.
    keeps_failure = outcome.reason == "stale_version" and previous is not None and previous.fail_streak > 0
    streak = (previous.fail_streak if previous is not None else 0) + 1 if failed else 0
    first_failed = (previous.first_failed_at if previous is not None and previous.fail_streak > 0 else None) or now
    row = {
        "entity": outcome.entity,
        "outreach_id": outcome.outreach_id,
        "workbooks_id": outcome.workbooks_id
        if outcome.workbooks_id is not None
        else _get(previous, "workbooks_id"),
        "outreach_updated_at": outcome.outreach_updated_at
        if applied
        else _get(previous, "outreach_updated_at"),
        **_values_columns(outcome, previous if keep_values else None),
        "last_outcome": outcome.outcome,
        "last_reason": outcome.reason,
        "last_error": outcome.error,
        "window_start": own.start,
        "window_end": own.end,
        "last_run_id": run_id,
        # Only failures are retried. A flag skip is terminal for this version; a stale-version skip (an old
        # window reloaded) says nothing about the record's retry state, so it keeps it.
        "needs_retry": outcome.outcome is Outcome.FAILED
        or (outcome.reason == "stale_version" and bool(_get(previous, "needs_retry"))),
        "recorded_at": now,
        "error_field": outcome.error_field if failed else None,
        "error_kind": outcome.error_kind.value if failed and outcome.error_kind is not None else None,
        "first_failed_at": first_failed if failed else None,
        "fail_streak": streak,
        "workbooks_lock_version": _workbooks_lock_version(outcome, previous),
    }
    if keeps_failure:
        assert previous is not None
        row |= {"error_field": previous.error_field, "error_kind": previous.error_kind,
                "first_failed_at": previous.first_failed_at, "fail_streak": previous.fail_streak}
    return row


def _values_columns(outcome: RecordOutcome, kept: RecordState | None) -> dict[str, Any]:
    """`values_hash` and `values_json`: the kept record's, or the outcome's serialised once and hashed."""
    if kept is not None:
        return {"values_hash": kept.values_hash, "values_json": to_json(kept.values)}
    text = to_json(outcome.values)
    return {"values_hash": json_hash(text), "values_json": text}


def _workbooks_lock_version(outcome: RecordOutcome, previous: RecordState | None) -> int | None:
    """The highest Workbooks version the record's values are known from; a new Workbooks twin starts afresh."""
    new = outcome.workbooks_lock_version if outcome.outcome.applied else None
    if previous is None or (outcome.workbooks_id is not None and outcome.workbooks_id != previous.workbooks_id):
        return new
    return max((v for v in (previous.workbooks_lock_version, new) if v is not None), default=None)


def history_row(
    outcome: RecordOutcome, previous: RecordState | None, state: dict[str, Any], run_id: str, window: SyncWindow,
    now: datetime,
) -> dict[str, Any]:
    own = outcome.own_window(window)
    known = previous.values if previous is not None and previous.values is not None else None
    old = {name: known.get(name) for name in outcome.diff if name in known} if outcome.diff and known else None
    failed = outcome.outcome is Outcome.FAILED
    return {
        "run_id": run_id,
        "entity": outcome.entity,
        "outreach_id": outcome.outreach_id,
        "workbooks_id": outcome.workbooks_id,
        "outcome": outcome.outcome,
        "reason": outcome.reason,
        "error": outcome.error,
        "outreach_updated_at": outcome.outreach_updated_at,
        "window_start": own.start,
        "window_end": own.end,
        # The state row hashed the same values when they were applied; otherwise they are None.
        "values_hash": state["values_hash"] if outcome.outcome.applied else values_hash(outcome.values),
        "diff_json": to_json(outcome.diff),
        "recorded_at": now,
        "old_json": to_json(old),
        "error_field": state["error_field"] if failed else None,
        "error_kind": state["error_kind"] if failed else None,
        "fail_streak": state["fail_streak"] if failed else None,
        "first_failed_at": state["first_failed_at"] if failed else None,
    }


def state_from_row(row: Any) -> RecordState:
    return RecordState(
        entity=row["entity"],
        outreach_id=row["outreach_id"],
        workbooks_id=row["workbooks_id"],
        outreach_updated_at=row["outreach_updated_at"],
        values_hash=row["values_hash"],
        values=from_json(row["values_json"]),
        last_outcome=row["last_outcome"],
        last_reason=row["last_reason"],
        last_error=row["last_error"],
        window_start=row["window_start"],
        window_end=row["window_end"],
        last_run_id=row["last_run_id"],
        needs_retry=bool(row["needs_retry"]),
        recorded_at=row["recorded_at"],
        error_field=row["error_field"],
        error_kind=row["error_kind"],
        first_failed_at=row["first_failed_at"],
        fail_streak=int(row["fail_streak"] or 0),
        workbooks_lock_version=row["workbooks_lock_version"],
    )


def history_from_row(row: Any) -> HistoryEntry:
    return HistoryEntry(
        run_id=row["run_id"],
        entity=row["entity"],
        outreach_id=row["outreach_id"],
        workbooks_id=row["workbooks_id"],
        outcome=row["outcome"],
        reason=row["reason"],
        error=row["error"],
        outreach_updated_at=row["outreach_updated_at"],
        window_start=row["window_start"],
        window_end=row["window_end"],
        values_hash=row["values_hash"],
        diff=from_json(row["diff_json"]),
        recorded_at=row["recorded_at"],
        old=from_json(row["old_json"]),
        error_field=row["error_field"],
        error_kind=row["error_kind"],
        fail_streak=row["fail_streak"],
    )


def _get(state: RecordState | None, attribute: str) -> Any:
    return getattr(state, attribute) if state is not None else None
