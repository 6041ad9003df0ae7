"""Progress of a long extract or load, reported while it runs (Dagster shows a step's events as they come).

Rules:
* A reporter calls `report` (the asset passes `context.log.info`) with one line when at least `every_records`
  more records are done, or `interval_seconds` have passed, since its last line, and only when something new
  was done; a step that ends before either says nothing more than its own summary.
* A line says what was done of what: records (of how many, for a load), and windows, so an operator watching
  a 48-window backfill sees how far it is. A load's window is complete when every record of it has an outcome
  (records are planned and written in batches across windows). An extract reads the range in `updatedAt`
  order, so the windows whose end is at or before the latest `updatedAt` read are complete.
* Lines carry counts only: no record values (personal data stays out of Dagster's event store).
* Extract reads report per page through `page_read`, which finds the reporter of the running read in a
  context variable (`reporting_pages`): the page reads sit several calls deep in every extractor, and the
  variable spares each of them a callback parameter. Without a reporter, `page_read` does nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta

Report = Callable[[str], None]
Clock = Callable[[], float]

#: Defaults of `SyncSettings.progress_every_records` and `progress_interval_seconds`.
EVERY_RECORDS = 5000
INTERVAL_SECONDS = 10.0
WINDOW_LENGTH = timedelta(hours=1)


@dataclass
class _Pace:
    """When the next line is due: after `every_records` more records or `interval_seconds`."""

    every_records: int
    interval_seconds: float
    clock: Clock
    last_count: int = 0
    last_time: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.last_time = self.clock()

    def due(self, count: int) -> bool:
        if count <= self.last_count:
            return False
        now = self.clock()
        if count - self.last_count >= self.every_records or now - self.last_time >= self.interval_seconds:
            self.last_count, self.last_time = count, now
            return True
        return False


class LoadProgress:
    """Counts the records of one load that have their outcome, and the windows all of whose records do.

    `window_of` maps each record (Outreach id) to its window, `windows` names every window of the range (those
    without records are complete from the start); records are counted once however many reconcile rounds
    they take.
    """

    def __init__(self, report: Report, label: str, window_of: Mapping[int, Hashable], *,
                 windows: Iterable[Hashable] = (), every_records: int = EVERY_RECORDS,
                 interval_seconds: float = INTERVAL_SECONDS, clock: Clock = time.monotonic) -> None:
        self.report = report
        self.label = label
        self.window_of = window_of
        self.started = clock()
        self.clock = clock
        self.pace = _Pace(every_records, interval_seconds, clock)
        self.done: set[int] = set()
        self.left_in_window: dict[Hashable, int] = dict.fromkeys(windows, 0)
        for window in window_of.values():
            self.left_in_window[window] = self.left_in_window.get(window, 0) + 1
        self.windows_done = sum(left == 0 for left in self.left_in_window.values())  # those without records

    def advance(self, ids: Iterable[int]) -> None:
        """Records whose outcome is now known (repeats are ignored); reports when a line is due."""
        for outreach_id in ids:
            if outreach_id in self.done:
                continue
            self.done.add(outreach_id)
            window = self.window_of.get(outreach_id)
            if window in self.left_in_window:
                self.left_in_window[window] -= 1
                self.windows_done += self.left_in_window[window] == 0
        if self.pace.due(len(self.done)):
            self.report(self.line())

    def line(self) -> str:
        total = len(self.window_of)
        share = f" ({len(self.done) / total:.0%})" if total else ""
        return (f"{self.label}: {len(self.done):,} of {total:,} records done{share}, {self.windows_done} of "
                f"{len(self.left_in_window)} windows complete, {self.clock() - self.started:.0f} s")


class ExtractProgress:
    """Counts the records and pages a read of the range [start, end) has received."""

    def __init__(self, report: Report, label: str, start: datetime, end: datetime, *,
                 every_records: int = EVERY_RECORDS, interval_seconds: float = INTERVAL_SECONDS,
                 clock: Clock = time.monotonic) -> None:
        self.report = report
        self.label = label
        self.start = start
        self.end = end
        self.started = clock()
        self.clock = clock
        self.pace = _Pace(every_records, interval_seconds, clock)
        self.records = 0
        self.pages = 0
        self.latest: datetime | None = None

    @property
    def windows(self) -> int:
        return max(1, round((self.end - self.start) / WINDOW_LENGTH))

    @property
    def windows_done(self) -> int:
        """Windows ending at or before the latest `updatedAt` read (a range is read in that order)."""
        if self.latest is None:
            return 0
        return max(0, min(self.windows, int((self.latest - self.start) / WINDOW_LENGTH)))

    def page(self, records: int, latest: datetime | None) -> None:
        """One page of `records` records, the latest of them changed at `latest`."""
        self.records += records
        self.pages += 1
        if latest is not None and (self.latest is None or latest > self.latest):
            self.latest = latest
        if self.pace.due(self.records):
            self.report(self.line())

    def line(self) -> str:
        return (f"{self.label}: {self.records:,} records read in {self.pages} pages, {self.windows_done} of "
                f"{self.windows} windows read through, {self.clock() - self.started:.0f} s")


_PAGES: ContextVar[ExtractProgress | None] = ContextVar("outreach_pipeline_extract_progress", default=None)


@contextmanager
def reporting_pages(progress: ExtractProgress) -> Iterator[ExtractProgress]:
    """Pages read in this context (by `engine.extract`'s readers) are counted by `progress`."""
    token = _PAGES.set(progress)
    try:
        yield progress
    finally:
        _PAGES.reset(token)


def page_read(records: int, latest: datetime | None) -> None:
    """Count a page for the reporter of the running read, if any."""
    if (progress := _PAGES.get()) is not None:
        progress.page(records, latest)
