"""Failures as data in the sync ledger: which records fail, why, since when, how many runs in a row, and when
each is read again.

Rules:

* A failed outcome records the error's field and kind (``mapping.errors.ErrorKind``) besides its message, on
  the record's state and on its history row. ``fail_streak`` counts the runs in a row that failed the record
  (an applied outcome resets it to 0; a stale-version skip of an old window leaves it as it was) and
  ``first_failed_at`` is when that streak began.
* A record failing for a reason of its own (a bad value) fails the same way every run. It is not read again
  every run: its next retry is due ``RetryBackoff.delay(streak)`` after its last failure (1 h, 2 h, 4 h, ...
  capped at 24 h by default). A record whose source changes is read anyway by the window it changed in, so a
  fix is picked up by the next run whatever the backoff. A retry is due a few minutes early
  (``DUE_EARLY``) so an hourly schedule does not miss it by the seconds its runs drift.
* Both directions. Outreach -> Workbooks failures are keyed by the Outreach id (``sync_record_state``,
  ``sync_history``). Workbooks -> Outreach failures are keyed by the Workbooks id (a record Outreach refused to
  create has no Outreach id): ``sync_to_outreach_state`` holds one row per Workbooks record that ever failed,
  ``sync_to_outreach_failure`` every failure of every run. A later attempt that does not fail ends the streak
  and records the Outreach id on the same row (a failed create, once created, is linked). That direction reads
  a refused record again only once a person clears the flag the failure set on it (``engine/load_outreach.py``),
  so it is never re-read every run and the backoff does not apply to it; its streak counts the attempts in a
  row that failed.
* ``failures`` lists the failed records of one run (from the history, as they were then) or the records
  failing now (from the states), of one direction or both; ``stuck_records`` those failing now with a streak
  of at least ``min_streak``.

The tables live in ``engine/ledger_schema.py``; this module is mixed into ``SyncLedger``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, field_validator

from outreach_pipeline.engine.ledger_schema import (
    history,
    record_state,
    to_outreach_failure,
    to_outreach_state,
    upsert,
)
from outreach_pipeline.engine.outcome import Outcome, SyncDirection
from outreach_pipeline.engine.utc_datetime import to_utc
from outreach_pipeline.mapping.errors import ErrorKind

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

#: A retry is due this much before its backoff ends, so an hourly run that starts a few seconds earlier than
#: the last one does not postpone it by an hour.
DUE_EARLY = timedelta(minutes=5)


@dataclass(frozen=True)
class RetryBackoff:
    """How long a failed record waits before it is read again: ``first * 2 ** (streak - 1)``, at most ``cap``.

    ``first`` of zero retries every failed record on every run (the behaviour before backoff existed).
    """

    first: timedelta = timedelta(hours=1)
    cap: timedelta = timedelta(hours=24)

    def delay(self, streak: int) -> timedelta:
        """The wait after the ``streak``-th failure in a row."""
        if self.first <= timedelta(0) or streak <= 0:
            return timedelta(0)
        return min(self.first * 2 ** min(streak - 1, 30), self.cap)

    def due(self, streak: int, failed_at: datetime, now: datetime) -> bool:
        """Whether a record that failed last at ``failed_at`` is due for a retry at ``now``."""
        wait = self.delay(streak)
        return wait == timedelta(0) or failed_at + wait - DUE_EARLY <= now


NO_BACKOFF = RetryBackoff(first=timedelta(0))


class FailedRecord(BaseModel):
    """One failed record: which way it was going, what it is, why it failed and for how long.

    ``streak`` is the number of runs in a row that failed it (as of ``failed_at``); ``window_start`` the
    record's own sync window in the failing run. ``outreach_id`` is None for a Workbooks record Outreach refused
    to create.
    """

    model_config = ConfigDict(frozen=True)

    direction: SyncDirection = SyncDirection.TO_WORKBOOKS
    entity: str
    outreach_id: int | None
    workbooks_id: int | None
    field: str | None
    kind: str | None
    message: str | None
    first_failed_at: datetime | None
    failed_at: datetime
    streak: int
    run_id: str
    window_start: datetime | None


class ToOutreachAttempt(BaseModel):
    """What one Workbooks -> Outreach run did with one Workbooks record (input to ``record_to_outreach``).

    A failure carries its field (the Workbooks field, None for the whole record), kind and message; any other
    outcome ends the record's streak. ``window_start`` is the record's own window (one hour long).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    entity: str
    workbooks_id: int
    outcome: Outcome
    outreach_id: int | None = None
    error: str | None = None
    error_field: str | None = None
    error_kind: ErrorKind | None = None
    window_start: datetime | None = None

    @field_validator("window_start", mode="after")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("datetimes must be timezone-aware")
        return None if value is None else to_utc(value)


class FailureQueries:
    """The failure queries of ``SyncLedger`` (see the module docstring)."""

    _engine: Engine

    _write: Callable[[str], AbstractContextManager[Connection]]  # SyncLedger's (the per-entity writer lock)

    def failures(
        self, *, run_id: str | None = None, entity: str | None = None, since: datetime | None = None,
        limit: int | None = None, direction: SyncDirection | None = None,
    ) -> list[FailedRecord]:
        """Failed records, newest failure first.

        With ``run_id``: every record that run failed, as recorded then (its history rows). Without: every
        record failing now (its last outcome failed). ``entity`` keeps one entity's, ``since`` those that
        failed at or after it, ``direction`` one direction's (both by default).
        """
        found: list[FailedRecord] = []
        with self._engine.connect() as connection:
            for way in (SyncDirection.TO_WORKBOOKS, SyncDirection.TO_OUTREACH):
                if direction is None or direction is way:
                    query = _failures_query(way, run_id=run_id, entity=entity, since=since)
                    if limit is not None:
                        query = query.limit(limit)
                    found += [_failed_record(way, row) for row in connection.execute(query).mappings()]
        found.sort(key=lambda f: (-f.failed_at.timestamp(), f.entity, f.outreach_id or 0, f.workbooks_id or 0))
        return found[:limit] if limit is not None else found

    def stuck_records(self, min_streak: int, direction: SyncDirection | None = None) -> list[FailedRecord]:
        """Records failing now that failed at least ``min_streak`` runs in a row, longest streak first."""
        stuck = [failure for failure in self.failures(direction=direction) if failure.streak >= min_streak]
        return sorted(stuck, key=lambda f: (-f.streak, f.entity, f.direction, f.outreach_id or 0, f.workbooks_id or 0))

    def to_outreach_failures_of(
        self, entity: str, *, workbooks_ids: Iterable[int] = (), outreach_id: int | None = None
    ) -> list[FailedRecord]:
        """Every Workbooks -> Outreach failure of the given records (by Workbooks id, or by the Outreach id they
        had or got), oldest first: what ``history`` shows of that direction's failures."""
        table = to_outreach_failure
        keys = [table.c.workbooks_id.in_(sorted({int(i) for i in workbooks_ids}))]
        if outreach_id is not None:
            linked = sa.select(to_outreach_state.c.workbooks_id).where(
                to_outreach_state.c.entity == entity, to_outreach_state.c.outreach_id == outreach_id)
            keys += [table.c.outreach_id == outreach_id, table.c.workbooks_id.in_(linked)]
        query = sa.select(*_TO_OUTREACH_FAILURE_COLUMNS).where(table.c.entity == entity, sa.or_(*keys))
        with self._engine.connect() as connection:
            rows = connection.execute(query.order_by(table.c.id)).mappings()
            return [_failed_record(SyncDirection.TO_OUTREACH, row) for row in rows]

    def record_to_outreach(self, run_id: str, attempts: Sequence[ToOutreachAttempt]) -> None:
        """Record one run's Workbooks -> Outreach attempts of one entity (see the module docstring), atomically:
        each failure's state and history row; for records that failed before, the end of their streak."""
        if not attempts:
            return
        entity = attempts[0].entity
        if any(attempt.entity != entity for attempt in attempts):
            raise ValueError("record_to_outreach takes one entity per batch")
        now = datetime.now(UTC)
        with self._write(entity) as connection:
            previous = _to_outreach_states(connection, entity, [a.workbooks_id for a in attempts])
            states: list[dict[str, Any]] = []
            failures: list[dict[str, Any]] = []
            for attempt in attempts:
                before = previous.get(attempt.workbooks_id)
                failed = attempt.outcome is Outcome.FAILED
                if not failed and before is None:
                    continue  # never failed: nothing of it to keep here
                streak = (int(before["fail_streak"]) if before is not None else 0) + 1 if failed else 0
                first = (before["first_failed_at"] if before is not None and before["fail_streak"] else None) or now
                window_end = attempt.window_start + _HOUR if attempt.window_start is not None else None
                state = {
                    "entity": entity, "workbooks_id": attempt.workbooks_id,
                    "outreach_id": attempt.outreach_id if attempt.outreach_id is not None
                    else (before["outreach_id"] if before is not None else None),
                    "last_outcome": attempt.outcome.value, "last_error": attempt.error if failed else None,
                    "error_field": attempt.error_field if failed else None,
                    "error_kind": attempt.error_kind.value if failed and attempt.error_kind else None,
                    "first_failed_at": first if failed else None, "fail_streak": streak,
                    "window_start": attempt.window_start, "window_end": window_end,
                    "last_run_id": run_id, "recorded_at": now,
                }
                states.append(state)
                if failed:
                    failures.append({
                        "run_id": run_id, "entity": entity, "workbooks_id": attempt.workbooks_id,
                        "outreach_id": state["outreach_id"], "error": attempt.error, "error_field": attempt.error_field,
                        "error_kind": state["error_kind"], "fail_streak": streak, "first_failed_at": first,
                        "window_start": attempt.window_start, "window_end": window_end, "recorded_at": now,
                    })
            if states:
                connection.execute(upsert(connection, to_outreach_state, ["entity", "workbooks_id"]), states)
            if failures:
                connection.execute(to_outreach_failure.insert(), failures)

    def retry_schedule(
        self, entity: str, backoff: RetryBackoff, now: datetime | None = None
    ) -> tuple[set[int], set[int]]:
        """(due, waiting): the records of ``entity`` to retry, split by whether their backoff has passed."""
        now = now or datetime.now(UTC)
        query = sa.select(record_state.c.outreach_id, record_state.c.fail_streak, record_state.c.recorded_at).where(
            record_state.c.entity == entity, record_state.c.needs_retry.is_(True)
        )
        due: set[int] = set()
        waiting: set[int] = set()
        with self._engine.connect() as connection:
            for outreach_id, streak, failed_at in connection.execute(query):
                (due if backoff.due(int(streak or 0), failed_at, now) else waiting).add(int(outreach_id))
        return due, waiting


_HOUR = timedelta(hours=1)
_IN_CLAUSE_CHUNK = 500
_TO_OUTREACH_FAILURE_COLUMNS = tuple(to_outreach_failure.c[name] for name in (
    "entity", "outreach_id", "workbooks_id", "error_field", "error_kind", "error", "recorded_at", "fail_streak",
    "run_id", "window_start", "first_failed_at"))


def _failures_query(
    direction: SyncDirection, *, run_id: str | None, entity: str | None, since: datetime | None
) -> sa.Select:
    """The failed rows of one direction: of one run (its history) or failing now (the states)."""
    if direction is SyncDirection.TO_WORKBOOKS:
        if run_id is not None:
            table, time_column, key = history, history.c.recorded_at, history.c.outreach_id
            query = sa.select(
                history.c.entity, history.c.outreach_id, history.c.workbooks_id, history.c.error_field,
                history.c.error_kind, history.c.error, history.c.recorded_at, history.c.fail_streak,
                history.c.run_id, history.c.window_start, history.c.first_failed_at,
            ).where(history.c.run_id == run_id, history.c.outcome == Outcome.FAILED.value)
        else:
            table, time_column, key = record_state, record_state.c.recorded_at, record_state.c.outreach_id
            query = sa.select(
                record_state.c.entity, record_state.c.outreach_id, record_state.c.workbooks_id,
                record_state.c.error_field, record_state.c.error_kind, record_state.c.last_error.label("error"),
                record_state.c.recorded_at, record_state.c.fail_streak, record_state.c.last_run_id.label("run_id"),
                record_state.c.window_start, record_state.c.first_failed_at,
            ).where(record_state.c.last_outcome == Outcome.FAILED.value)
    elif run_id is not None:
        table, time_column, key = to_outreach_failure, to_outreach_failure.c.recorded_at, to_outreach_failure.c.workbooks_id
        query = sa.select(*_TO_OUTREACH_FAILURE_COLUMNS).where(table.c.run_id == run_id)
    else:
        table, time_column, key = to_outreach_state, to_outreach_state.c.recorded_at, to_outreach_state.c.workbooks_id
        query = sa.select(
            table.c.entity, table.c.outreach_id, table.c.workbooks_id, table.c.error_field, table.c.error_kind,
            table.c.last_error.label("error"), table.c.recorded_at, table.c.fail_streak,
            table.c.last_run_id.label("run_id"), table.c.window_start, table.c.first_failed_at,
        ).where(table.c.last_outcome == Outcome.FAILED.value)
    if entity is not None:
        query = query.where(table.c.entity == entity)
    if since is not None:
        query = query.where(time_column >= since)
    return query.order_by(time_column.desc(), table.c.entity, key)


def _to_outreach_states(connection: Connection, entity: str, workbooks_ids: Iterable[int]) -> dict[int, Any]:
    ids = sorted({int(i) for i in workbooks_ids})
    found: dict[int, Any] = {}
    for start in range(0, len(ids), _IN_CLAUSE_CHUNK):
        query = sa.select(to_outreach_state).where(
            to_outreach_state.c.entity == entity,
            to_outreach_state.c.workbooks_id.in_(ids[start : start + _IN_CLAUSE_CHUNK]))
        found.update({int(row["workbooks_id"]): row for row in connection.execute(query).mappings()})
    return found


def _failed_record(direction: SyncDirection, row: Any) -> FailedRecord:
    return FailedRecord(
        direction=direction, entity=row["entity"],
        outreach_id=None if row["outreach_id"] is None else int(row["outreach_id"]),
        workbooks_id=None if row["workbooks_id"] is None else int(row["workbooks_id"]),
        field=row["error_field"], kind=row["error_kind"], message=row["error"],
        first_failed_at=row["first_failed_at"], failed_at=row["recorded_at"],
        streak=int(row["fail_streak"] or 1), run_id=row["run_id"], window_start=row["window_start"],
    )
