"""The low-latency lane's part of the ledger: its runs, its cursor, and what it wrote per hourly window.

Rules:
* A lane run is recorded (``sync_lane_run``) with the range of update times it reads before it writes anything,
  and marked finished only after both directions completed. The cursor is the latest ``until`` of a finished run:
  a run that crashed, was killed or failed leaves the cursor where it was, so the next run reads its range again
  (the ledger's values hashes make that re-read write nothing twice). Two runs finishing in any order leave the
  cursor at the later ``until`` (a maximum, never an overwrite).
* What the lane wrote stays in the ledger's history like any run's writes, in each record's own hourly window;
  ``lane_writes_per_window`` counts the records a lane run created or updated per window, which the hourly run of
  that window reports as ``records_synced_by_lane`` (it finds them unchanged).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import sqlalchemy as sa

from outreach_pipeline.engine.ledger import TO_OUTREACH_REASON, SyncLedger
from outreach_pipeline.engine.ledger_schema import history, lane_run
from outreach_pipeline.engine.outcome import Outcome

WRITES = (Outcome.CREATED.value, Outcome.UPDATED.value)


def start_lane_run(ledger: SyncLedger, run_id: str, since: datetime, until: datetime) -> None:
    """Record that lane run `run_id` reads update times in [since, until) (a rerun of the same id starts over)."""
    with ledger.engine.begin() as connection:
        connection.execute(lane_run.delete().where(lane_run.c.run_id == run_id))
        connection.execute(lane_run.insert().values(run_id=run_id, since=since, until=until,
                                                    started_at=datetime.now(UTC), finished_at=None))


def finish_lane_run(ledger: SyncLedger, run_id: str) -> None:
    """Mark lane run `run_id` complete: its `until` may now be the cursor."""
    with ledger.engine.begin() as connection:
        connection.execute(lane_run.update().where(lane_run.c.run_id == run_id).values(finished_at=datetime.now(UTC)))


def lane_cursor(ledger: SyncLedger) -> datetime | None:
    """The latest `until` of a finished lane run (None before the first)."""
    query = sa.select(sa.func.max(lane_run.c.until)).where(lane_run.c.finished_at.is_not(None))
    with ledger.engine.connect() as connection:
        value = connection.execute(query).scalar()
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def lane_run_ids(ledger: SyncLedger) -> set[str]:
    """Every run id the lane recorded (finished or not: a killed run's writes are still its writes)."""
    with ledger.engine.connect() as connection:
        return {str(row[0]) for row in connection.execute(sa.select(lane_run.c.run_id))}


def lane_writes_per_window(
    ledger: SyncLedger, entities: Iterable[str], windows: Sequence[datetime], *, to_outreach: bool
) -> dict[datetime, int]:
    """Per hourly window start of `windows`: how many records of `entities` lane runs created or updated in one
    direction (to_outreach: Workbooks -> Outreach) in that window (0 for a window without any)."""
    counts = dict.fromkeys(windows, 0)
    if not windows:
        return counts
    direction = (history.c.reason == TO_OUTREACH_REASON if to_outreach
                 else sa.or_(history.c.reason.is_(None), history.c.reason != TO_OUTREACH_REASON))
    query = (
        sa.select(history.c.window_start,
                  sa.func.count(sa.distinct(history.c.entity + ":" + sa.cast(history.c.outreach_id, sa.String))))
        .where(history.c.entity.in_(list(entities)), history.c.outcome.in_(WRITES), direction,
               history.c.window_start >= min(windows), history.c.window_start <= max(windows),
               history.c.run_id.in_(sa.select(lane_run.c.run_id)))
        .group_by(history.c.window_start)
    )
    with ledger.engine.connect() as connection:
        for start, count in connection.execute(query):
            start = start if start.tzinfo else start.replace(tzinfo=UTC)
            if start in counts:
                counts[start] = int(count)
    return counts
