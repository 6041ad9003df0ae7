"""Extract Outreach records for a range of sync windows into DataFrames.

One paged read per range (a 48-hour backfill is one windowed read, not 48), plus reads by id for the
records the ledger says must be retried (failed rows, pending relationships). Every row carries the
sync window it belongs to, so the window-aware IO manager can store and reload any sub-range.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import pandas as pd

from outreach_pipeline.clients.outreach import (
    API_PREFIX,
    OutreachClient,
    OutreachPage,
    OutreachRecord,
    RejectedResource,
)
from outreach_pipeline.clients.outreach_records import AttributeMap
from outreach_pipeline.engine.ledger import SyncLedger
from outreach_pipeline.engine.ledger_failures import NO_BACKOFF, RetryBackoff
from outreach_pipeline.engine.progress import page_read

#: Ids per `filter[id]=` request: keeps URLs well under common 8 KB limits.
IDS_PER_REQUEST = 500
WINDOW_COLUMN = "sync_window"
#: Why a record could not be read from the API (None for readable ones); it fails alone at load.
EXTRACT_ERROR_COLUMN = "_extract_error"
WINDOW_LENGTH = timedelta(hours=1)


@dataclass
class Extract:
    """Records of one range, plus related records the mapping needs (by lookup name)."""

    frame: pd.DataFrame
    retried_ids: list[int] = field(default_factory=list)


def records_to_frame(records: Iterable[OutreachRecord]) -> pd.DataFrame:
    """Flatten records into the "extracted Outreach frame" of docs/ARCHITECTURE.md.

    Columns: ``id`` (int64), ``createdAt``/``updatedAt`` (tz-aware UTC), every attribute under its
    Outreach name (lists stay lists), and each to-one relationship as ``<name>Id`` (nullable Int64).
    To-many relationships are dropped.

    Args:
        records: Records of one type.

    Returns:
        The frame (with at least ``id``, ``createdAt`` and ``updatedAt`` even when empty).
    """
    records = list(records)
    # Built column by column: a DataFrame from one dict per row briefly needed as much memory again as
    # the records (a 100,000-prospect extract peaked above 2 GB). Only set values are written; the
    # columns start as None, which is what a null attribute reads as.
    columns: dict[str, list[Any]] = {}
    relationship_columns: set[str] = set()
    registered: set[int] = set()

    def column(name: str) -> list[Any]:
        values = columns.get(name)
        if values is None:
            values = columns[name] = [None] * len(records)
        return values

    for index, record in enumerate(records):
        attributes = record.attributes
        if isinstance(attributes, AttributeMap):
            if id(attributes.names) not in registered:
                registered.add(id(attributes.names))
                for name in attributes.names.ordered:
                    column(name)
            items: Iterable[tuple[str, Any]] = attributes.set_items()
        else:
            items = attributes.items()
        for name, value in items:
            column(name)[index] = value
        column("id")[index] = record.id
        column("createdAt")[index] = record.created_at
        column("updatedAt")[index] = record.updated_at
        for name, value in record.relationships.items():
            if isinstance(value, list):
                continue
            relationship_columns.add(f"{name}Id")
            column(f"{name}Id")[index] = value
    frame = pd.DataFrame(columns)
    for column in ("id", "createdAt", "updatedAt"):
        if column not in frame.columns:
            frame[column] = pd.Series(dtype="object")
    frame["id"] = frame["id"].astype("int64")
    for column in ("createdAt", "updatedAt"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    for column in relationship_columns:
        frame[column] = frame[column].astype("Int64")
    leading = ["id", "createdAt", "updatedAt"]
    return frame[leading + [column for column in frame.columns if column not in leading]]


def window_of(timestamps: pd.Series, start: datetime, end: datetime) -> pd.Series:
    """Each timestamp's hourly window start, clamped into the range [start, end - 1h].

    A retried record changed before the range lands in its first window, one changed after it in its last,
    and one without a readable timestamp in its last.
    """
    last = pd.Timestamp(end - WINDOW_LENGTH)
    floored = pd.to_datetime(timestamps, utc=True).dt.floor("h")
    return floored.clip(lower=pd.Timestamp(start), upper=last).fillna(last)


@dataclass
class _Read:
    """What a read collected. Primary records become one small frame per page as they arrive, so a range of
    100,000 records is never held as record objects and as a frame at once; `keep` keeps, instead, only what a
    related read (roles, stages) uses of each record, not the whole typed records."""

    keep: Callable[[OutreachRecord], Any] | None = None
    frames: list[pd.DataFrame] = field(default_factory=list)
    ids: set[int] = field(default_factory=set)
    records: list[Any] = field(default_factory=list)  # what `keep` kept of each record
    included: list[OutreachRecord] = field(default_factory=list)
    rejected: list[RejectedResource] = field(default_factory=list)

    def add(self, page: OutreachPage) -> None:
        self.ids.update(record.id for record in page.records)
        if self.keep is not None:
            self.records.extend(map(self.keep, page.records))
        elif page.records:
            self.frames.append(records_to_frame(page.records))
            page_read(len(page.records), max((r.updated_at for r in page.records if r.updated_at), default=None))
        self.included.extend(page.included)
        self.rejected.extend(page.rejected)


def _frame(read: _Read, start: datetime, end: datetime) -> pd.DataFrame:
    frames = read.frames or [records_to_frame(read.records)]
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    read.frames = []  # the pages are in `frame` now
    frame[EXTRACT_ERROR_COLUMN] = None
    unreadable = [r for r in {r.id: r for r in read.rejected}.values() if r.id not in read.ids]
    if unreadable:
        rows = pd.DataFrame({"id": [r.id for r in unreadable], EXTRACT_ERROR_COLUMN: [r.error for r in unreadable]})
        frame = pd.concat([frame, rows], ignore_index=True)
    frame[WINDOW_COLUMN] = window_of(frame["updatedAt"], start, end)
    return frame


def _read_by_ids(
    client: OutreachClient, read: _Read, resource: str, ids: Iterable[int], params: Mapping[str, str] | None = None,
    *, relationship: str = "id",
) -> None:
    """Records whose id (or `relationship` id) is in `ids`, a few hundred ids per request."""
    unique = sorted({int(i) for i in ids})
    key = "filter[id]" if relationship == "id" else f"filter[{relationship}][id]"
    for offset in range(0, len(unique), IDS_PER_REQUEST):
        chunk = unique[offset : offset + IDS_PER_REQUEST]
        query = {key: ",".join(map(str, chunk)), "page[size]": "1000", "count": "false", **(params or {})}
        for page in client.iter_documents(f"{API_PREFIX}/{resource}", query):
            read.add(page)


@dataclass(frozen=True)
class WindowReadPlan:
    """Whether the window read happens, and from when (engine/webhook_hints.py decides): a window the webhook
    hints prove quiet is not read, a sweep reads from before its start. The default reads [start, end)."""

    read: bool = True
    read_from: datetime | None = None


READ_WINDOW = WindowReadPlan()


def _read_window(client: OutreachClient, read: _Read, resource: str, start: datetime, end: datetime, *,
                 lower_open: bool, include: Iterable[str] = (), params: Mapping[str, str] | None = None,
                 plan: WindowReadPlan = READ_WINDOW) -> None:
    """Records of `resource` changed in [start, end) (or before `end` when `lower_open`, or from `plan.read_from`);
    nothing when the plan skips the read."""
    if not plan.read and not lower_open:
        return
    read_from = datetime(1970, 1, 1, tzinfo=start.tzinfo) if lower_open else (plan.read_from or start)
    for page in client.iter_window(resource, read_from, end, include=include, extra_params=params):
        read.add(page)


def extract_records(
    client: OutreachClient,
    resource: str,
    start: datetime,
    end: datetime,
    *,
    retry_ids: Iterable[int] = (),
    from_beginning: bool = False,
    fields: Mapping[str, str] | None = None,
    window: WindowReadPlan = READ_WINDOW,
) -> Extract:
    """Records of `resource` (plural, e.g. `prospects`) changed in [start, end), plus `retry_ids`.

    `from_beginning` opens the lower bound: the full-sync job uses it for the first window so records last
    changed before it are covered. A record the API returns unreadable is kept as a row with only its id
    and `_extract_error`, so it fails alone instead of failing the window. `fields` are sparse fieldsets
    (`{"fields[prospect]": "firstName,..."}`): only what the mapping reads is transferred.
    """
    read = _Read()
    _read_window(client, read, resource, start, end, lower_open=from_beginning, params=fields, plan=window)
    seen = read.ids | {r.id for r in read.rejected}
    retry = sorted(i for i in set(retry_ids) if i not in seen)
    _read_by_ids(client, read, resource, retry, fields)
    return Extract(frame=_dedupe(_frame(read, start, end)), retried_ids=retry)


STAGE_NAME_COLUMN = "_opportunity_stage_name"
ROLES_COLUMN = "_prospect_roles"


def extract_opportunities(
    client: OutreachClient,
    start: datetime,
    end: datetime,
    *,
    retry_ids: Iterable[int] = (),
    from_beginning: bool = False,
    fields: Mapping[str, str] | None = None,
    window: WindowReadPlan = READ_WINDOW,
) -> Extract:
    """Opportunities changed in the range, and those whose prospect roles changed in it.

    Adding a prospect to an opportunity creates an opportunityProspectRole without bumping the
    opportunity's updatedAt, so role changes are read too. Each opportunity row carries its stage's name
    and every one of its prospect roles (the contact list is replaced as a whole), so one stored frame
    per window holds all the mapping needs; `opportunity_lookups` turns them into lookup frames.
    """
    params = {**(fields or {}), "fields[opportunityStage]": "name"} if fields else None
    read = _Read()
    _read_window(client, read, "opportunities", start, end, lower_open=from_beginning, include=("opportunityStage",),
                 params=params, plan=window)
    roles_changed = _Read(keep=lambda role: role.relationships.get("opportunity"))
    _read_window(client, roles_changed, "opportunityProspectRoles", start, end, lower_open=from_beginning, plan=window)
    seen = read.ids | {r.id for r in read.rejected}
    extra = set(roles_changed.records) | set(retry_ids)
    extra_ids = sorted(i for i in extra if isinstance(i, int) and i not in seen)
    _read_by_ids(client, read, "opportunities", extra_ids, {"include": "opportunityStage", **(params or {})})
    frame = _dedupe(_frame(read, start, end))

    stages = {r.id: r.attributes.get("name") for r in read.included if r.type == "opportunityStage"}
    stage_ids = frame["opportunityStageId"].dropna().astype(int) if "opportunityStageId" in frame else pd.Series(dtype=int)
    if missing := set(stage_ids) - stages.keys():
        stage_read = _Read(keep=lambda stage: (stage.id, stage.attributes.get("name")))
        _read_by_ids(client, stage_read, "opportunityStages", missing)
        stages |= dict(stage_read.records)
    frame[STAGE_NAME_COLUMN] = stage_ids.map(stages).reindex(frame.index)

    role_read = _Read(keep=lambda role: (role.relationships.get("opportunity"), {
        "id": role.id, "prospectId": role.relationships.get("prospect"), "role": role.attributes.get("role"),
        "primary": role.attributes.get("primary")}))
    _read_by_ids(client, role_read, "opportunityProspectRoles", frame["id"].tolist(), relationship="opportunity")
    roles: dict[int, list[dict[str, object]]] = {}
    for opportunity_id, role in role_read.records:
        if isinstance(opportunity_id, int):
            roles.setdefault(opportunity_id, []).append(role)
    frame[ROLES_COLUMN] = frame["id"].map(lambda i: sorted(roles.get(i, []), key=lambda r: r["id"]))
    return Extract(frame=frame, retried_ids=sorted(set(retry_ids) - seen))


def extract_entity(
    client: OutreachClient,
    resource: str,
    start: datetime,
    end: datetime,
    *,
    retry_ids: Iterable[int] = (),
    from_beginning: bool = False,
    fields: Mapping[str, str] | None = None,
    window: WindowReadPlan = READ_WINDOW,
) -> Extract:
    """Extract one resource: opportunities with their stage and prospect roles, the others as they are."""
    read = extract_opportunities if resource == "opportunities" else partial(extract_records, resource=resource)
    return read(client, start=start, end=end, retry_ids=retry_ids, from_beginning=from_beginning, fields=fields,
                window=window)


@dataclass
class PullIds:
    """Records a run reads by id besides its window, by why: ``retry`` because the ledger says so (failed ones
    whose backoff has passed, pending links and their targets), ``referenced`` because this run's records point
    at them and they were never synced. ``waiting``: failed records left alone until their backoff passes."""

    retry: set[int] = field(default_factory=set)
    referenced: set[int] = field(default_factory=set)
    waiting: set[int] = field(default_factory=set)

    @property
    def all(self) -> set[int]:
        return self.retry | self.referenced

    def __ior__(self, other: PullIds) -> PullIds:
        self.retry |= other.retry
        self.referenced |= other.referenced
        self.waiting |= other.waiting
        return self


def ids_to_pull(
    ledger: SyncLedger, entity: str, referenced: set[int], backoff: RetryBackoff = NO_BACKOFF
) -> PullIds:
    """Records to read besides the window: failed ones whose retry is due, links waiting for a target and those
    targets, and the records this run's other records point at that were never synced (so their links resolve
    in this run). A failed record whose backoff has not passed is read only if its window brings it (a change
    of its source), whatever else points at it."""
    due, waiting = ledger.retry_schedule(entity, backoff)
    retry = set(due)
    retry |= {relation.outreach_id for relation in ledger.pending_relations(entity)}
    # A target that last changed before the first window would otherwise never be read.
    retry |= {relation.target_outreach_id for relation in ledger.pending_relations(target_entity=entity)}
    states = ledger.get_states(entity, referenced)
    never_synced = {i for i in referenced if (state := states.get(i)) is None or state.workbooks_id is None}
    return PullIds(retry=retry - waiting, referenced=never_synced - retry - waiting, waiting=waiting)


def referenced_ids(frame: pd.DataFrame, column: str) -> set[int]:
    """Outreach ids a frame refers to through `column`: a `<relationship>Id` column, or the prospects of the
    opportunities' role lists (`_prospect_roles`)."""
    if column not in frame.columns:
        return set()
    if column == ROLES_COLUMN:
        return {
            int(role["prospectId"])
            for roles in frame[column]
            if isinstance(roles, list)
            for role in roles
            if isinstance(role, dict) and role.get("prospectId") is not None
        }
    return {int(value) for value in frame[column].dropna()}


def opportunity_lookups(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The lookup frames the opportunity mapping reads, rebuilt from the extracted columns."""
    stages = frame[["opportunityStageId", STAGE_NAME_COLUMN]].dropna() if "opportunityStageId" in frame else frame.iloc[:0]
    stage_frame = pd.DataFrame({"id": stages.get("opportunityStageId", []), "name": stages.get(STAGE_NAME_COLUMN, [])})
    role_rows = [
        {"opportunityId": int(opportunity_id), **role}
        for opportunity_id, roles in zip(frame["id"], frame[ROLES_COLUMN], strict=True)
        for role in (roles if isinstance(roles, list) else [])
    ]
    role_frame = pd.DataFrame(role_rows, columns=["opportunityId", "id", "prospectId", "role", "primary"])
    role_frame["prospectId"] = role_frame["prospectId"].astype("Int64")
    role_frame["opportunityId"] = role_frame["opportunityId"].astype("Int64")
    return {"opportunityStage": stage_frame, "opportunityProspectRole": role_frame}


def _dedupe(frame: pd.DataFrame) -> pd.DataFrame:
    """A record edited during a paged read can appear twice; keep its latest version."""
    if frame["id"].is_unique:  # the usual case: no sorted copy of a large frame
        return frame
    return frame.sort_values(["updatedAt", "id"]).drop_duplicates("id", keep="last").reset_index(drop=True)
