"""Outreach webhooks as change hints: when a window's Outreach read can be skipped, and the ledger rows behind it.

Outreach POSTs a delivery for every change a webhook subscribes to (``webhook_receiver.py`` receives
and verifies them, this module records them). A delivery is only a hint, never data: the extract still reads
every record it syncs from the API. The hints let an hourly run skip the read of a resource whose window was
quiet. A window read of resource types T over [start, end) is skipped only when all of these hold:

* hints are enabled (`SyncSettings.webhook_hints`) and the read is not from the beginning (a full sync);
* no window of the range is a *sweep* window (its start hour, counted from the epoch, is a multiple of
  `webhook_sweep_hours`; with 24, the 00:00 UTC window): a sweep always reads, and reads back to the previous
  sweep when a receiver was listening in between, so a delivery Outreach never made is caught within a day;
* a receiver was listening without a gap from `start` until `end + grace` (its heartbeat reached that far),
  with a subscription covering every type of T and every action ("*"), so a change in the window, delivered
  within the grace, would have been recorded;
* no hint for a type of T landed in the window: hints are counted in the window of the record's `updatedAt`
  (the delivery's time when the payload carries none), the window the read would have found it in.

A delivery later than the grace (its hour's run may have skipped the read already) is not lost: the run whose
receiving span [start + grace, end + grace) it arrived in reads back to the late hint's window (`late_hint`).
Anything else reads as before. Tables: ``sync_webhook_hint`` and ``sync_webhook_listening`` (revision 0006).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from outreach_pipeline.engine.ledger_schema import webhook_hint, webhook_listening

WINDOW = timedelta(hours=1)
EVERYTHING = "*"


class ReadReason(StrEnum):
    """Why a window read was made, or `QUIET` when it was skipped."""

    QUIET = "quiet_by_webhook"  # skipped: listening over the window, subscribed, no hint
    HINTS_OFF = "hints_off"
    FROM_BEGINNING = "from_beginning"
    SWEEP = "sweep"
    NOT_LISTENING = "receiver_not_listening"  # never, or with a gap, over the window plus the grace
    NOT_SUBSCRIBED = "subscription_does_not_cover"
    HINTED = "hinted"
    LATE_HINT = "late_hint"  # a delivery for an earlier window arrived after that window's grace: read back to it


@dataclass(frozen=True)
class ListeningSpan:
    """One receiver start: its subscription and how long it was listening."""

    resource: str
    action: str
    start: datetime
    end: datetime

    def covers(self, resource_type: str) -> bool:
        return self.resource in (EVERYTHING, resource_type) and self.action == EVERYTHING


@dataclass(frozen=True)
class WindowRead:
    """The decision for one window read: skip it, or read it from `read_from` (the window's start, or earlier
    for a sweep after listening), and why."""

    reason: ReadReason
    read_from: datetime

    @property
    def skipped(self) -> bool:
        return self.reason is ReadReason.QUIET


def _floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def is_sweep_window(window_start: datetime, sweep_hours: int) -> bool:
    """Whether the hourly window starting at `window_start` is a sweep window."""
    hours = int(window_start.astimezone(UTC).timestamp() // 3600)
    return hours % max(sweep_hours, 1) == 0


def listened_through(spans: Iterable[ListeningSpan], resource_type: str, start: datetime, end: datetime) -> bool:
    """Whether spans covering `resource_type` join, without a gap, into one that holds [start, end]."""
    merged: list[list[datetime]] = []
    for span in sorted((s for s in spans if s.covers(resource_type)), key=lambda s: s.start):
        if merged and span.start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], span.end)
        else:
            merged.append([span.start, span.end])
    return any(first <= start and last >= end for first, last in merged)


def decide(resource_types: Sequence[str], start: datetime, end: datetime, *, spans: Sequence[ListeningSpan],
           hinted: set[str], grace: timedelta, sweep_hours: int, enabled: bool = True,
           from_beginning: bool = False, late_from: datetime | None = None) -> WindowRead:
    """The read of `resource_types` over the windows [start, end) (pure; the rules are the module's)."""
    if not enabled:
        return WindowRead(ReadReason.HINTS_OFF, start)
    if from_beginning:
        return WindowRead(ReadReason.FROM_BEGINNING, start)
    windows = [start + WINDOW * i for i in range(max(1, int((end - start) / WINDOW)))]
    if any(is_sweep_window(window, sweep_hours) for window in windows):
        since = start - timedelta(hours=sweep_hours) + WINDOW
        listened = any(span.end > since and span.start < start for span in spans)
        return WindowRead(ReadReason.SWEEP, since if listened else start)
    if late_from is not None and late_from < start:
        return WindowRead(ReadReason.LATE_HINT, late_from)
    if not all(any(span.covers(t) for span in spans) for t in resource_types):
        covered_ever = any(spans)
        return WindowRead(ReadReason.NOT_SUBSCRIBED if covered_ever else ReadReason.NOT_LISTENING, start)
    if not all(listened_through(spans, t, start, end + grace) for t in resource_types):
        return WindowRead(ReadReason.NOT_LISTENING, start)
    if hinted & set(resource_types):
        return WindowRead(ReadReason.HINTED, start)
    return WindowRead(ReadReason.QUIET, start)


class WebhookHints:
    """The ledger's hint and listening rows (the ledger's engine; its migrations made the tables)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def _insert(self) -> type:
        return postgresql.insert if self._engine.dialect.name == "postgresql" else sqlite.insert

    def record_hint(self, resource_type: str, changed_at: datetime, received_at: datetime) -> None:
        """Count one delivery for `resource_type` in the window of `changed_at`."""
        statement = self._insert()(webhook_hint).values(
            resource_type=resource_type, window_start=_floor_hour(changed_at), count=1, last_received_at=received_at)
        statement = statement.on_conflict_do_update(
            index_elements=[webhook_hint.c.resource_type, webhook_hint.c.window_start],
            set_={"count": webhook_hint.c.count + 1, "last_received_at": statement.excluded.last_received_at})
        with self._engine.begin() as conn:
            conn.execute(statement)

    def hinted(self, resource_types: Iterable[str], start: datetime, end: datetime) -> set[str]:
        """The types among `resource_types` with a hint counted in a window of [start, end)."""
        query = (sa.select(webhook_hint.c.resource_type).distinct()
                 .where(webhook_hint.c.resource_type.in_(list(resource_types)),
                        webhook_hint.c.window_start >= start, webhook_hint.c.window_start < end))
        with self._engine.connect() as conn:
            return set(conn.execute(query).scalars())

    def late_hint_from(self, resource_types: Iterable[str], start: datetime, end: datetime,
                       grace: timedelta) -> datetime | None:
        """The earliest window before `start` with a hint for `resource_types` that arrived late (after its
        window's end plus the grace) while this run's windows were receiving ([start + grace, end + grace))."""
        query = sa.select(webhook_hint.c.window_start, webhook_hint.c.last_received_at).where(
            webhook_hint.c.resource_type.in_(list(resource_types)), webhook_hint.c.window_start < start,
            webhook_hint.c.last_received_at >= start + grace, webhook_hint.c.last_received_at < end + grace)
        with self._engine.connect() as conn:
            late = [row.window_start for row in conn.execute(query)
                    if row.last_received_at > row.window_start + WINDOW + grace]
        return min(late, default=None)

    def hint_counts(self, resource_type: str) -> dict[datetime, int]:
        """Hints per window of one type (for people and tests)."""
        query = sa.select(webhook_hint.c.window_start, webhook_hint.c.count).where(
            webhook_hint.c.resource_type == resource_type)
        with self._engine.connect() as conn:
            return {row.window_start: row.count for row in conn.execute(query)}

    def start_listening(self, webhook_url: str, resource: str, action: str, now: datetime) -> str:
        """A new listening span from `now`; its id, for the heartbeat."""
        span_id = uuid.uuid4().hex
        with self._engine.begin() as conn:
            conn.execute(sa.insert(webhook_listening).values(
                id=span_id, webhook_url=webhook_url, resource=resource, action=action, listening_from=now,
                listening_until=now))
        return span_id

    def heartbeat(self, span_id: str, now: datetime) -> None:
        """Extend a listening span to `now` (never backwards)."""
        with self._engine.begin() as conn:
            conn.execute(sa.update(webhook_listening)
                         .where(webhook_listening.c.id == span_id, webhook_listening.c.listening_until < now)
                         .values(listening_until=now))

    def spans(self, since: datetime) -> list[ListeningSpan]:
        """Listening spans that reach past `since`."""
        query = sa.select(webhook_listening).where(webhook_listening.c.listening_until > since)
        with self._engine.connect() as conn:
            return [ListeningSpan(row.resource, row.action, row.listening_from, row.listening_until)
                    for row in conn.execute(query)]

    def window_read(self, resource_types: Sequence[str], start: datetime, end: datetime, *, grace: timedelta,
                    sweep_hours: int, enabled: bool, from_beginning: bool) -> WindowRead:
        """:func:`decide` over the ledger's spans and hints."""
        if not enabled or from_beginning:
            return decide(resource_types, start, end, spans=[], hinted=set(), grace=grace, sweep_hours=sweep_hours,
                          enabled=enabled, from_beginning=from_beginning)
        spans = self.spans(start - timedelta(hours=sweep_hours))
        return decide(resource_types, start, end, spans=spans, hinted=self.hinted(resource_types, start, end),
                      grace=grace, sweep_hours=sweep_hours,
                      late_from=self.late_hint_from(resource_types, start, end, grace))
