"""The low-latency lane: the open hour's changes of the core entities, every few minutes, through the sync's engine.

The hourly runs sync the last complete hour at ten past, so a change waits up to 70 minutes. The lane runs every
N minutes (the `low_latency_minutes` setting) and syncs what changed since its last run, in both directions,
for accounts/organisations, prospects/people and opportunities, with the hourly runs' own functions: the same
extract (sparse fieldsets), link targets, staging, Outreach duplicate lookup, planners, loaders and Outreach
writer, the same ledger and the same writer locks (`engine/writer_lock.py`). Engagement (tasks, calls,
sequences, sequence states) and retries of failed records stay with the hourly runs.

Rules:
* Range: a run reads update times in ``[since, until)``. ``until`` is now less a lag (writes still committing
  when the run starts are left to the next run); ``since`` is the cursor (``engine/ledger_lane.py``: the latest
  ``until`` of a finished lane run) less an overlap of the same length, so a write that committed up to a lag
  late is read again by the next run; never earlier than the start of the hour before ``until``'s (older hours
  are the hourly runs'). The first run starts there too. ``since`` is inclusive; the reads themselves have no
  upper bound (``LaneRange.read_window``): a record changed before ``until`` and again since carries only its
  latest update time, and a busy record (edited every few seconds) would otherwise be left out run after run.
  One row per record id; a record read twice (overlap, two runs at once, a rerun, read ahead of ``until``)
  plans as unchanged against the ledger's values hash and is not written again.
* Window attribution: every record is planned and recorded in its own hourly window (the hour of its update
  time), exactly as an hourly run of that hour records it, so that run finds it unchanged (0 writes) and its
  partition reports the lane's writes as ``records_synced_by_lane`` (`defs/audit.py`).
* Order within a run: Outreach -> Workbooks (accounts, prospects, opportunities), then Workbooks -> Outreach
  (organisations, people, opportunities), then the links written back, as an hourly run orders them.
* Concurrency: each entity's writes hold the writer lock of (target, entity) as the hourly loads do, so a lane
  run and an hourly run (or two lane runs) never write one entity at once; the later one plans against what the
  earlier one recorded (values hash; Outreach -> Workbooks also skips an Outreach version older than the
  ledger's). The Workbooks -> Outreach merge has no such guard for a Workbooks read taken before another run's
  write, so the lane reads Workbooks under the Outreach writer lock, and `defs/lane.py` starts no lane run while
  a sync run of the instance is queued or running.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pandas as pd

from outreach_pipeline.clients.outreach import OutreachClient
from outreach_pipeline.clients.workbooks import WorkbooksClient
from outreach_pipeline.engine.extract import ROLES_COLUMN, WINDOW_COLUMN, extract_entity, opportunity_lookups
from outreach_pipeline.engine.ledger import SyncLedger, SyncWindow
from outreach_pipeline.engine.link_back import write_links
from outreach_pipeline.engine.link_targets import never_synced, read_targets, targets, with_targets
from outreach_pipeline.engine.load import EntityLoader, outreach_sharers
from outreach_pipeline.engine.load_outreach import OutreachWriter, read_workbooks_changes
from outreach_pipeline.engine.merge import record_time
from outreach_pipeline.engine.plan_outreach import UPDATED_AT
from outreach_pipeline.engine.routing import stage_extracted
from outreach_pipeline.engine.writer_lock import LockSettings, hold_writer_lock
from outreach_pipeline.mapping.models import MappingSet
from outreach_pipeline.mapping.transform import outreach_fields

HOUR = timedelta(hours=1)
#: How far past `until` the reads reach (LaneRange.read_window): beyond any update a run can see.
READ_AHEAD = timedelta(days=1)
#: The writer locks' first keys: the system written (as the hourly assets name them).
WORKBOOKS_TARGET, OUTREACH_TARGET = "workbooks", "outreach"


@dataclass(frozen=True)
class LaneFlow:
    """One core entity as the lane syncs it, in both directions."""

    entity: str  # the mapping's entity name (and the ledger's)
    outreach_name: str  # the Outreach collection
    workbooks_name: str  # the hourly assets' Workbooks name (the Workbooks writer lock's entity)
    # (Outreach collection, column) of the lane's other extracts pointing at this entity: never-synced targets
    # are read by id so the links resolve in the same run (engine/link_targets.py).
    referenced_by: tuple[tuple[str, str], ...] = ()
    lookups: Callable[[pd.DataFrame], dict[str, pd.DataFrame]] | None = None
    asks_outreach_for_sharers: bool = False  # prospects: who else holds the email, asked of Outreach


#: In link order: organisations before the people employed there, both before opportunities.
LANE_FLOWS = (
    LaneFlow("accounts", "accounts", "organisations",
             referenced_by=(("prospects", "accountId"), ("opportunities", "accountId"))),
    LaneFlow("prospects", "prospects", "people", referenced_by=(("opportunities", ROLES_COLUMN),),
             asks_outreach_for_sharers=True),
    LaneFlow("opportunities", "opportunities", "opportunities", lookups=opportunity_lookups),
)


@dataclass(frozen=True)
class LaneRange:
    """The update times one lane run reads, ``[since, until)``."""

    since: datetime
    until: datetime

    @property
    def window(self) -> SyncWindow:
        return SyncWindow(start=self.since, end=self.until)

    @property
    def read_window(self) -> SyncWindow:
        """What the reads ask for: from `since`, with no upper bound in practice. A record changed before `until`
        and again since (a busy record) carries its latest update time only: bounded by `until` it would be
        left out until it stops changing; it is read now, and read again by the next run as unchanged."""
        return SyncWindow(start=self.since, end=self.until + READ_AHEAD)


def lane_range(cursor: datetime | None, now: datetime, lag: timedelta) -> LaneRange:
    """The range of the next lane run (see the module's rules): ``[cursor - lag, now - lag)``, never before the
    start of the hour before ``until``'s; from there when there is no cursor yet."""
    until = now - lag
    floor = until.replace(minute=0, second=0, microsecond=0) - HOUR
    since = floor if cursor is None else max(cursor - lag, floor)
    return LaneRange(since=min(since, until), until=until)


def own_hours(timestamps: pd.Series, fallback: datetime) -> pd.Series:
    """Each update time's hourly window start (the record's own window); `fallback`'s hour when unreadable."""
    hours = pd.to_datetime(timestamps, utc=True).dt.floor("h")
    return hours.fillna(pd.Timestamp(fallback).floor("h"))


@dataclass
class LaneResult:
    """Counts of one lane run: per direction and entity, outcome -> records."""

    to_workbooks: dict[str, dict[str, int]] = field(default_factory=dict)
    to_outreach: dict[str, dict[str, int]] = field(default_factory=dict)
    read: dict[str, int] = field(default_factory=dict)

    def writes(self) -> int:
        """Records created or updated, both directions."""
        return sum(counts.get(name, 0) for direction in (self.to_workbooks, self.to_outreach)
                   for counts in direction.values() for name in ("created", "updated"))


@dataclass
class Lane:
    """What one lane run uses: both clients, the ledger, the mapping, the run id and the lock settings."""

    outreach: OutreachClient
    workbooks: WorkbooksClient
    ledger: SyncLedger
    mappings: MappingSet
    run_id: str
    locks: LockSettings
    on_wait: Callable[[str], None] = lambda message: None

    def sync(self, span: LaneRange) -> LaneResult:
        """Both directions over `span`, Outreach -> Workbooks first."""
        result = LaneResult()
        if span.since >= span.until:  # nothing new to read (a zero lag and two runs in the same instant)
            return result
        self.to_workbooks(span, result)
        self.to_outreach(span, result)
        return result

    def _extract(self, flow: LaneFlow, span: LaneRange) -> pd.DataFrame:
        entity = self.mappings.entity(flow.entity)
        fields = {f"fields[{entity.outreach_type}]": ",".join(outreach_fields(entity))}
        read = span.read_window
        frame = extract_entity(self.outreach, flow.outreach_name, read.start, read.end, fields=fields).frame
        frame[WINDOW_COLUMN] = own_hours(frame["updatedAt"], span.until)
        return frame

    def _pull_targets(self, flow: LaneFlow, span: LaneRange, extracted: dict[str, pd.DataFrame],
                      pulled: dict[str, pd.DataFrame]) -> pd.DataFrame | None:
        """Never-synced records of `flow` the run's other records point at (transitively through what was pulled)."""
        referencing = [(frame, column) for name, column in flow.referenced_by
                       for frame in (extracted[name], pulled.get(name)) if frame is not None]
        ids = sorted(never_synced(self.ledger, flow.entity, targets(referencing, extracted[flow.outreach_name])))
        if not ids:
            return None
        entity = self.mappings.entity(flow.entity)
        fields = {f"fields[{entity.outreach_type}]": ",".join(outreach_fields(entity))}
        frame = read_targets(self.outreach, flow.outreach_name, ids, span.since, span.until, fields=fields)
        frame[WINDOW_COLUMN] = own_hours(frame["updatedAt"], span.until)
        return frame

    def to_workbooks(self, span: LaneRange, result: LaneResult) -> None:
        """Outreach -> Workbooks: read every core entity's range, pull link targets, then stage and load in link
        order, each load under its Workbooks writer lock."""
        extracted = {flow.outreach_name: self._extract(flow, span) for flow in LANE_FLOWS}
        pulled: dict[str, pd.DataFrame] = {}
        for flow in reversed(LANE_FLOWS):  # opportunities point at prospects, prospects (and those) at accounts
            if flow.referenced_by and (frame := self._pull_targets(flow, span, extracted, pulled)) is not None:
                pulled[flow.outreach_name] = frame
        for flow in LANE_FLOWS:
            frame = with_targets(extracted[flow.outreach_name], pulled.get(flow.outreach_name))
            result.read[flow.outreach_name] = len(frame)
            if frame.empty:
                continue
            entity = self.mappings.entity(flow.entity)
            staged = stage_extracted(frame, self.mappings, entity,
                                     lookups=flow.lookups(frame) if flow.lookups is not None else None)
            sharers = (outreach_sharers(self.outreach, flow.outreach_name, entity, staged)
                       if flow.asks_outreach_for_sharers else None)
            with hold_writer_lock(self.ledger.engine, target=WORKBOOKS_TARGET, entity=flow.workbooks_name,
                                  run_id=self.run_id, settings=self.locks, on_wait=self.on_wait):
                loaded = EntityLoader(client=self.workbooks, ledger=self.ledger, mappings=self.mappings, entity=entity,
                                      run_id=self.run_id, window=span.window, sharers=sharers).load(staged)
            result.to_workbooks[flow.workbooks_name] = loaded.counts

    def to_outreach(self, span: LaneRange, result: LaneResult) -> None:
        """Workbooks -> Outreach: each record type's selected changes in the range (and never-linked selected
        records) read, written to Outreach and the links written back, all under its Outreach writer lock."""
        for flow in LANE_FLOWS:
            entity = self.mappings.entity(flow.entity)
            # Read, write and link back under the lock: no other writer's Outreach write of the entity lands
            # between this read and the plan made from it (a read older than another run's sync would only be
            # skipped as `stale_read`, leaving the lane's change to that run), and the next writer reads the
            # Outreach ids this one created.
            with hold_writer_lock(self.ledger.engine, target=OUTREACH_TARGET, entity=flow.outreach_name,
                                  run_id=self.run_id, settings=self.locks, on_wait=self.on_wait):
                changes = read_workbooks_changes(self.workbooks, entity, span.read_window)
                times = pd.Series([record_time(v) for v in changes[UPDATED_AT]], index=changes.index, dtype=object)
                changes[WINDOW_COLUMN] = own_hours(times, span.until)
                result.read[flow.workbooks_name] = len(changes)
                if changes.empty:
                    continue
                written = OutreachWriter(client=self.outreach, ledger=self.ledger, mappings=self.mappings,
                                         entity=entity, resource=flow.outreach_name, run_id=self.run_id,
                                         window=span.window).write(changes)
                write_links(self.workbooks, entity, written.results)
            result.to_outreach[flow.outreach_name] = {str(k): int(v) for k, v in written.counts.items()}
