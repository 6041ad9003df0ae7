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
* ``failures`` lists the failed records of one run (from the history, as they were then) or the records
  failing now (from the states); ``stuck_records`` those failing now with a streak of at least ``min_streak``.

The tables live in ``engine/ledger_schema.py``; this module is mixed into ``SyncLedger``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict

from outreach_pipeline.engine.ledger_schema import history, record_state

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

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
    """One failed record: what it is, why it failed and for how long.

    ``streak`` is the number of runs in a row that failed it (as of ``failed_at``); ``window_start`` the
    record's own sync window in the failing run.
    """

    model_config = ConfigDict(frozen=True)

    entity: str
    outreach_id: int
    workbooks_id: int | None
    field: str | None
    kind: str | None
    message: str | None
    first_failed_at: datetime | None
    failed_at: datetime
    streak: int
    run_id: str
    window_start: datetime | None


class FailureQueries:
    """The failure queries of ``SyncLedger`` (see the module docstring)."""

    _engine: Engine

    def failures(
        self, *, run_id: str | None = None, entity: str | None = None, since: datetime | None = None,
        limit: int | None = None,
    ) -> list[FailedRecord]:
        """Failed records, newest failure first.

        With ``run_id``: every record that run failed, as recorded then (its history rows). Without: every
        record failing now (its last outcome failed). ``entity`` keeps one entity's, ``since`` those that
        failed at or after it.
        """
        if run_id is not None:
            table = history
            query = sa.select(
                history.c.entity, history.c.outreach_id, history.c.workbooks_id, history.c.error_field,
                history.c.error_kind, history.c.error, history.c.recorded_at, history.c.fail_streak,
                history.c.run_id, history.c.window_start, history.c.first_failed_at,
            ).where(history.c.run_id == run_id, history.c.outcome == "failed")
            time_column = history.c.recorded_at
        else:
            table = record_state
            query = sa.select(
                record_state.c.entity, record_state.c.outreach_id, record_state.c.workbooks_id,
                record_state.c.error_field, record_state.c.error_kind, record_state.c.last_error.label("error"),
                record_state.c.recorded_at, record_state.c.fail_streak, record_state.c.last_run_id.label("run_id"),
                record_state.c.window_start, record_state.c.first_failed_at,
            ).where(record_state.c.last_outcome == "failed")
            time_column = record_state.c.recorded_at
        if entity is not None:
            query = query.where(table.c.entity == entity)
        if since is not None:
            query = query.where(time_column >= since)
        query = query.order_by(time_column.desc(), table.c.entity, table.c.outreach_id)
        if limit is not None:
            query = query.limit(limit)
        with self._engine.connect() as connection:
            return [_failed_record(row) for row in connection.execute(query).mappings()]

    def stuck_records(self, min_streak: int) -> list[FailedRecord]:
        """Records failing now that failed at least ``min_streak`` runs in a row, longest streak first."""
        stuck = [failure for failure in self.failures() if failure.streak >= min_streak]
        return sorted(stuck, key=lambda failure: (-failure.streak, failure.entity, failure.outreach_id))

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


def _failed_record(row: Any) -> FailedRecord:
    return FailedRecord(
        entity=row["entity"], outreach_id=int(row["outreach_id"]),
        workbooks_id=None if row["workbooks_id"] is None else int(row["workbooks_id"]),
        field=row["error_field"], kind=row["error_kind"], message=row["error"],
        first_failed_at=row["first_failed_at"], failed_at=row["recorded_at"],
        streak=int(row["fail_streak"] or 1), run_id=row["run_id"], window_start=row["window_start"],
    )
