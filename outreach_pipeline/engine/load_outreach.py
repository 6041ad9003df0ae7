"""Workbooks -> Outreach at the edges: read the window's Workbooks changes, write Outreach, link back.

Three steps, each speaking to one API (so each asset holds one API pool):

1. ``read_workbooks_changes`` (Workbooks): the records selected for the window: Sync to Outreach = TRUE,
   Outreach Sync Error = FALSE, Outreach Duplicate = FALSE, and Updated At in ``[start, end)`` or Outreach Id
   blank. A flagged record is not read at all until a person clears its flag; the next window then has it.
2. ``OutreachWriter`` (Outreach): reads the current Outreach twins, plans (``engine.plan_outreach``) and
   writes one record per request (Outreach has no batch create). Outcomes:
   * a create whose reply was lost (timeout, dropped connection, 5xx) is never retried blind: the record is
     looked up by the key written on create (``externalId``/``customId`` = ``object_ref``, among records
     created since the attempt), then by email; only a definite not-found allows one more attempt.
   * a 422 on a prospect with an email: Outreach is asked who holds the email. Nobody else: the refusal is
     reported as it is. A prospect no Person is linked to: it is adopted (linked, then merged as a record
     without a base). One linked to another Person: Outreach Duplicate is set on this Person.
   * any other refusal: Outreach Sync Error and the message are set on the Workbooks record.
   Each failure is data: the Workbooks field (from the JSON:API pointer of the member Outreach refused, or the
   email for a duplicate; None for the whole record), its ``ErrorKind`` and message. The ledger keeps every
   failure by Workbooks id with its streak (``SyncLedger.record_to_outreach``); the flag keeps the record out of
   later reads until a person clears it, so a refused record is never re-read every run (no backoff needed).
   The ledger records, per linked record, the agreed values (the merge's new base) and the Outreach
   ``updatedAt`` of the write, so a read of Outreach taken before the write is skipped as stale by the
   Outreach -> Workbooks direction and the value read back later is equal to the base: 0 writes.
3. ``write_links`` (Workbooks, ``engine/link_back.py``): the Outreach Id of created and adopted records, and
   the flags, written back.

Progress (the assets' progress lines): step 1 reads in Updated At order and counts each page it reads for the
running step's reporter (``engine.progress.page_read``, as the Outreach extracts do), so the lines say how many
windows are read through; steps 2 and 3 tell an ``on_done`` callback the Workbooks ids whose outcome is known
(per record, per batch).

Writer lock: the Outreach writes of step 2 and the Workbooks writes of step 3 belong under the sync's writer
lock (``engine/writer_lock.py`` after the merge), as the Outreach -> Workbooks load's writes do.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import pandas as pd

from outreach_pipeline.clients.formats import format_wb_date
from outreach_pipeline.clients.http import ApiError, NotFoundError, ValidationFailed, WriteOutcomeUnknown
from outreach_pipeline.clients.outreach import API_PREFIX, OutreachClient
from outreach_pipeline.clients.outreach_records import OutreachRecord, ResourceRef
from outreach_pipeline.clients.workbooks import LOOKUP_BATCH_SIZE, Filter, WorkbooksClient
from outreach_pipeline.engine.extract import WINDOW_COLUMN, extract_entity, opportunity_lookups
from outreach_pipeline.engine.ledger import TO_OUTREACH_REASON, RecordOutcome, SyncLedger, SyncWindow
from outreach_pipeline.engine.ledger_failures import ToOutreachAttempt
from outreach_pipeline.engine.merge import record_time
from outreach_pipeline.engine.outcome import Outcome
from outreach_pipeline.engine.plan import ERROR_MESSAGE_LIMIT
from outreach_pipeline.engine.plan_outreach import (
    OBJECT_REF,
    UPDATED_AT,
    OutreachAction,
    OutreachDecision,
    OutreachMemberAction,
    OutreachTwin,
    outreach_link,
    plan_to_outreach,
)
from outreach_pipeline.engine.progress import page_read
from outreach_pipeline.mapping.errors import ErrorKind
from outreach_pipeline.mapping.models import EntityMapping, LinkTransform, MappingSet
from outreach_pipeline.mapping.transform import stage_records

#: Columns of the written asset's output: what the link-back step writes to Workbooks.
RESULT_COLUMNS = ["workbooks_id", "outreach_id", "outcome", "reason", "error", "error_field", "error_kind", "link",
                  "flag", "fields"]
#: Create keys Outreach filters on (its OpenAPI document badges account and opportunity ``customId`` filterable;
#: prospect ``externalId`` is not).
FILTERABLE_CREATE_KEYS = frozenset({"customId"})
#: Newest records scanned for a lost create whose key cannot be filtered on and that has no email: one page,
#: as the create is among the last made unless this many were created since.
NEWEST_SCAN = 1000
#: The lower bound of a read from the beginning.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: JSON:API pointer prefixes of a refused attribute or relationship (``/data/attributes/title``).
ATTRIBUTE_POINTER, RELATIONSHIP_POINTER = "/data/attributes/", "/data/relationships/"
#: The order of the window read: by Updated At, so the pages go through the windows in turn.
READ_ORDER: tuple[tuple[str, Literal["ASC", "DESC"]], ...] = ((UPDATED_AT, "ASC"), ("id", "ASC"))
#: The result outcome of an adopted prospect (linked and merged): an update in the ledger's vocabulary.
ADOPTED = "adopted"

OnDone = Callable[[Iterable[int]], None]


class Flag:
    """Which Workbooks flag a result sets."""

    SYNC_ERROR = "sync_error"
    DUPLICATE = "duplicate"


def workbooks_columns(entity: EntityMapping) -> list[str]:
    """What the read returns: ids, update time, link key, flags, every field written to Outreach."""
    columns = ["id", "lock_version", UPDATED_AT, OBJECT_REF, entity.match.link_key, *entity.flag_fields()]
    columns += [f.workbooks for f in entity.fields if f.writes_outreach]
    return list(dict.fromkeys(columns))


def read_workbooks_changes(
    client: WorkbooksClient, entity: EntityMapping, window: SyncWindow, also_ids: Sequence[int] = (),
    *, from_beginning: bool = False,
) -> pd.DataFrame:
    """The window's selected Workbooks records (see the module docstring), one row per record.

    ``also_ids``: records the Outreach -> Workbooks direction wrote for this window (its write moved their
    Updated At out of it), read when their flags select them. ``from_beginning`` drops the lower bound of
    Updated At (the first sync: linked records last changed before the first window).
    """
    flags = entity.flags
    assert flags is not None, f"{entity.name} has no selection flags"
    selected = [Filter(field=flags.sync_to_outreach, op="true"), Filter(field=flags.sync_error, op="false")]
    if flags.duplicate is not None:
        selected.append(Filter(field=flags.duplicate, op="false"))
    flag_terms = " AND ".join(str(i + 1) for i in range(len(selected)))
    n = len(selected)
    filters = [
        *selected,
        Filter(field=UPDATED_AT, op="ge", value=EPOCH if from_beginning else window.start),
        Filter(field=UPDATED_AT, op="lt", value=window.end),
        Filter(field=entity.match.link_key, op="blank"),
    ]
    expression = f"{flag_terms} AND (({n + 1} AND {n + 2}) OR {n + 3})"
    columns = workbooks_columns(entity)
    rows: dict[int, dict[str, Any]] = {}
    # Oldest change first (id breaks ties, so offset paging stays stable): each page tells the progress reporter
    # how far through the range's windows the read is, as the Outreach extracts' pages do.
    for page in client.iter_pages(entity.workbooks_controller, filters, columns, sort=READ_ORDER, match=expression):
        rows.update((int(r["id"]), r) for r in page)
        _page_read(page)
    extra = sorted({int(i) for i in also_ids} - rows.keys())
    for offset in range(0, len(extra), LOOKUP_BATCH_SIZE):
        by_id = [*selected, Filter(field="id", op="eq", value=extra[offset : offset + LOOKUP_BATCH_SIZE])]
        for page in client.iter_pages(entity.workbooks_controller, by_id, columns, count_total=True):
            rows.update((int(r["id"]), r) for r in page)
            _page_read(page, read_through=window.end)  # after the range's read: every window is read through
    ordered = [rows[i] for i in sorted(rows)]
    return pd.DataFrame(ordered) if ordered else pd.DataFrame(columns=columns)


def _page_read(page: Sequence[dict[str, Any]], *, read_through: datetime | None = None) -> None:
    """Count a page of the read for the running step's progress reporter (`engine.progress`), if any."""
    if page:
        times = [moment for row in page if (moment := record_time(row.get(UPDATED_AT))) is not None]
        page_read(len(page), read_through or max(times, default=None))


def read_outreach_twins(
    client: OutreachClient, resource: str, entity: EntityMapping, ids: Sequence[int]
) -> dict[int, OutreachTwin]:
    """Current Outreach records by id, each staged into Workbooks form by the mapping."""
    if not ids:
        return {}
    # An empty window at the epoch: only the records asked for by id (plus, for opportunities, stages and roles).
    never = datetime(1970, 1, 1, tzinfo=UTC)
    extract = extract_entity(client, resource, never, never + timedelta(seconds=1), retry_ids=ids)
    frame = extract.frame[extract.frame["updatedAt"].notna()].reset_index(drop=True)
    if frame.empty:
        return {}
    lookups = opportunity_lookups(frame) if resource == "opportunities" else None
    staged = stage_records(frame, entity, lookups=lookups)
    twins: dict[int, OutreachTwin] = {}
    for raw, staged_row in zip(frame.to_dict("records"), staged.to_dict("records"), strict=True):
        outreach_id = int(raw["id"])
        updated = raw.get("updatedAt")
        twins[outreach_id] = OutreachTwin(
            outreach_id=outreach_id,
            updated_at=None if pd.isna(updated) else pd.Timestamp(updated).to_pydatetime(),
            attributes={k: v for k, v in raw.items() if isinstance(k, str)},
            staged={k: v for k, v in staged_row.items() if isinstance(k, str)},
        )
    return twins


@dataclass
class WriteResult:
    """Outcome of one entity's Outreach writes."""

    results: pd.DataFrame
    counts: dict[str, int]
    conflicts: int = 0
    preview: list[dict[str, Any]] = field(default_factory=list)


class OutreachWriter:
    """Writes one window's Workbooks changes of one entity to Outreach."""

    result_columns = RESULT_COLUMNS  # of the results frame (a dry run adds its changes)

    def __init__(
        self, *, client: OutreachClient, ledger: SyncLedger, mappings: MappingSet, entity: EntityMapping,
        resource: str, run_id: str, window: SyncWindow, on_done: OnDone | None = None,
    ) -> None:
        self.on_done = on_done or (lambda ids: None)
        self.client = client
        self.ledger = ledger
        self.mappings = mappings
        self.entity = entity
        self.resource = resource
        self.run_id = run_id
        self.window = window

    def write(self, changes: pd.DataFrame) -> WriteResult:
        records = [{k: _plain(v) for k, v in row.items()} for row in changes.to_dict("records")]
        linked = [link for r in records if (link := outreach_link(self.entity, r.get(self.entity.match.link_key)))]
        twins = self._read_twins(linked)
        states = self.ledger.states_by_workbooks_id(self.entity.name, [int(r["id"]) for r in records])
        to_outreach, to_workbooks = self.id_maps()
        decisions = plan_to_outreach(self.entity, records, twins, states, to_outreach, to_workbooks)
        self._records = {int(r["id"]): r for r in records}
        self._id_maps_now = (to_outreach, to_workbooks)
        # Outreach id -> Workbooks id of the records this write linked: the ledger has them only at its end.
        self._linked_now: dict[int, int] = {}
        results: list[dict[str, Any]] = []
        outcomes: list[RecordOutcome] = []
        conflicts = 0
        self.ledger.start_run(self.run_id, self.entity.name, self.window)
        try:
            for decision in decisions:
                result, outcome = self._apply(decision)
                results.append(result)
                if result.get("link") and result.get("outreach_id") is not None:
                    self._linked_now[int(result["outreach_id"])] = decision.workbooks_id
                self.on_done((decision.workbooks_id,))
                if outcome is not None:
                    outcomes.append(outcome)
                    if outcome.outcome.wrote:
                        self.ledger.record_conflicts(self.run_id, decision.conflicts)
                        conflicts += len(decision.conflicts)
        finally:
            # One outcome per Outreach record per batch, each in the window of its Workbooks change.
            windows = _windows_by_workbooks_id(changes)
            by_id = {o.outreach_id: _in_window(o, windows) for o in outcomes}
            if by_id:
                self.ledger.record_outcomes(self.run_id, self.window, list(by_id.values()))
            # Every attempt by Workbooks id: failures (a refused create has no Outreach id) and the end of streaks.
            self.ledger.record_to_outreach(self.run_id, [self._attempt(r, windows) for r in results])
            self.ledger.finish_run(self.run_id, self.entity.name)
        frame = pd.DataFrame(results, columns=list(self.result_columns))
        counts = {str(k): int(v) for k, v in frame["outcome"].value_counts().items()} if len(frame) else {}
        preview = [
            {"workbooks_id": d.workbooks_id, "outreach_id": d.outreach_id, "action": d.action.value,
             "fields": sorted({*d.attributes, *d.relationships})}
            for d in decisions if d.action in (OutreachAction.CREATE, OutreachAction.UPDATE)
        ][:10]
        return WriteResult(results=frame, counts=counts, conflicts=conflicts, preview=preview)

    def _read_twins(self, linked: Sequence[int]) -> dict[int, OutreachTwin]:
        """The current Outreach records the window's linked records point at (kept by a dry run)."""
        return read_outreach_twins(self.client, self.resource, self.entity, linked)

    def id_maps(self) -> tuple[dict[str, dict[int, int]], dict[str, dict[int, int]]]:
        """Workbooks id <-> Outreach id of every link target, from the ledger (targets sync first)."""
        to_outreach: dict[str, dict[int, int]] = {}
        to_workbooks: dict[str, dict[int, int]] = {}
        for mapping in self.entity.fields:
            if isinstance(mapping.transform, LinkTransform) and not mapping.transform.many:
                pairs = self.ledger.linked_ids(mapping.transform.entity)
                to_workbooks[mapping.transform.entity] = dict(pairs)
                to_outreach[mapping.transform.entity] = {w: o for o, w in pairs}
        return to_outreach, to_workbooks

    # --- one record --------------------------------------------------------------------------------------

    def _apply(self, decision: OutreachDecision) -> tuple[dict[str, Any], RecordOutcome | None]:
        base = {"workbooks_id": decision.workbooks_id, "outreach_id": decision.outreach_id, "reason": decision.reason,
                "error": None, "error_field": None, "error_kind": None, "link": False, "flag": None, "fields": None}
        if decision.action in (OutreachAction.SKIP, OutreachAction.FAILED):
            return {**base, "outcome": Outcome.SKIPPED if decision.action is OutreachAction.SKIP else Outcome.FAILED}, None
        if decision.action is OutreachAction.UNCHANGED:
            # Nothing written: the ledger keeps the other direction's outcome and Outreach version for it.
            return {**base, "outcome": Outcome.UNCHANGED}, None
        try:
            if decision.action is OutreachAction.CREATE:
                record, adopted = self._create(decision)
                if adopted:
                    return self._adopt(decision, record, base)
                record = self._run_actions(decision, record.id, record) or record
                result = {**base, "outcome": Outcome.CREATED, "outreach_id": record.id, "link": True}
                return result, self._outcome(decision, Outcome.CREATED, record.id, record, values=decision.values)
            assert decision.outreach_id is not None
            updated: OutreachRecord | None = None
            if decision.attributes or decision.relationships:
                updated = self.client.update(
                    self.resource, decision.outreach_id, decision.attributes, decision.relationships or None
                )
            updated = self._run_actions(decision, decision.outreach_id, updated)
            return {**base, "outcome": Outcome.UPDATED}, self._outcome(decision, Outcome.UPDATED, decision.outreach_id, updated)
        except _DuplicateHolder as exc:
            message = f"{self.entity.outreach_type} of Workbooks #{decision.workbooks_id}: {exc}"
            return {**base, "outcome": Outcome.FAILED, "error": message, "error_kind": ErrorKind.DUPLICATE.value,
                    "error_field": self._email_field(), "flag": Flag.DUPLICATE}, None
        except NotFoundError:
            return {**base, "outcome": Outcome.SKIPPED, "reason": "outreach_missing"}, None
        except (ValidationFailed, _NotConfirmed) as exc:
            message = f"Workbooks #{decision.workbooks_id}: Outreach refused the write: {_reason(exc)}"
            kind = ErrorKind.NOT_CONFIRMED if isinstance(exc, _NotConfirmed) else ErrorKind.REFUSED_BY_OUTREACH
            return {**base, "outcome": Outcome.FAILED, "error": message[:ERROR_MESSAGE_LIMIT], "error_kind": kind.value,
                    "error_field": self._refused_field(exc), "flag": Flag.SYNC_ERROR}, None

    def _adopt(
        self, decision: OutreachDecision, holder: OutreachRecord, base: dict[str, Any]
    ) -> tuple[dict[str, Any], RecordOutcome | None]:
        """Link an unlinked prospect holding this Person's email and merge them as records without a base:
        the fields Workbooks wins are written to Outreach here, those Outreach wins by the link-back."""
        record = {**self._records[decision.workbooks_id], self.entity.match.link_key: holder.id}
        twins = read_outreach_twins(self.client, self.resource, self.entity, [holder.id])
        (merged,) = plan_to_outreach(self.entity, [record], twins, {}, *self._id_maps_now)
        updated = holder
        if merged.action is OutreachAction.UPDATE:
            updated = self.client.update(self.resource, holder.id, merged.attributes, merged.relationships or None)
        values = {**(merged.values or {}), **merged.outreach_won}
        to_workbooks = {name: workbooks_form(self.entity, name, value) for name, value in merged.outreach_won.items()}
        result = {**base, "outcome": ADOPTED, "outreach_id": holder.id, "link": True,
                  "fields": json.dumps(to_workbooks) if to_workbooks else None}
        return result, self._outcome(merged, Outcome.UPDATED, holder.id, updated, values=values)

    def _run_actions(
        self, decision: OutreachDecision, outreach_id: int, record: OutreachRecord | None
    ) -> OutreachRecord | None:
        """Member actions after the write (markComplete); a lost reply is checked by fetching the record."""
        for action in decision.actions:
            if action is OutreachMemberAction.MARK_COMPLETE:
                try:
                    record = self.client.mark_task_complete(outreach_id)
                except WriteOutcomeUnknown:
                    record = self.client.get(self.resource, outreach_id)
                    if record.attributes.get("state") != "complete":
                        raise _NotConfirmed(f"markComplete of task {outreach_id} not confirmed") from None
        return record

    def _create(self, decision: OutreachDecision) -> tuple[OutreachRecord, bool]:
        """Create, finding a create whose reply was lost instead of repeating it; (record, adopted)."""
        for _attempt in range(2):
            try:
                return self.client.create(self.resource, decision.attributes, decision.relationships or None), False
            except WriteOutcomeUnknown:
                found = self._find_created(decision)
                if found is not None:
                    return found, False
            except ValidationFailed:
                holder = self._email_holder(decision)
                if holder is None:
                    raise
                return holder, True
        raise _NotConfirmed("the create was not confirmed after a lost reply and one more attempt")

    def _find_created(self, decision: OutreachDecision) -> OutreachRecord | None:
        """The record a lost create made: by its create key where Outreach filters on it (``customId``), else by
        email, else among the newest records (sorted by createdAt on Outreach's clock, so no clock skew)."""
        if decision.create_key is not None and decision.create_key[0] in FILTERABLE_CREATE_KEYS:
            attribute, value = decision.create_key
            params = {f"filter[{attribute}]": value, "count": "false"}
            return next(iter(self.client.iter_records(f"{API_PREFIX}/{self.resource}", params)), None)
        if decision.email:
            found = self.client.find_prospects_by_email(decision.email)
            if found:
                return found[0]
            # An email is unique in Outreach: no holder means the create did not land.
            return None
        params = {"sort": "-createdAt", "page[size]": str(NEWEST_SCAN), "count": "false"}
        page = next(iter(self.client.iter_pages(f"{API_PREFIX}/{self.resource}", params)), [])
        if decision.create_key is not None:
            attribute, value = decision.create_key
            return next((r for r in page if str(r.attributes.get(attribute) or "") == value), None)
        # No key Outreach keeps (tasks): the newest record holding exactly what was sent.
        return next((r for r in page if _holds(r, decision)), None)

    def _email_holder(self, decision: OutreachDecision) -> OutreachRecord | None:
        """The prospect holding this Person's email, when that is why Outreach refused; raises when it is
        linked to another Person (a duplicate), None when nobody holds it (another refusal)."""
        if not decision.email:
            return None
        holders = self.client.find_prospects_by_email(decision.email)
        if not holders:
            return None
        holder = holders[0]
        state = self.ledger.get_states(self.entity.name, [holder.id]).get(holder.id)
        # Linked in the ledger, or by this same write (two People of one window with one email).
        linked_to = state.workbooks_id if state is not None and state.workbooks_id is not None else (
            self._linked_now.get(holder.id))
        if linked_to is not None and linked_to != decision.workbooks_id:
            raise _DuplicateHolder(
                f"email is held by Outreach {self.entity.outreach_type} {holder.id}, linked to Workbooks "
                f"#{linked_to} (Outreach duplicate)"
            )
        return holder

    def _refused_field(self, exc: Exception) -> str | None:
        """The Workbooks field whose Outreach attribute or relationship Outreach refused (its JSON:API pointer);
        None when the refusal names no member this entity's mapping writes."""
        pointer = exc.pointer if isinstance(exc, ApiError) else None
        if not pointer:
            return None
        member = pointer.removeprefix(ATTRIBUTE_POINTER).removeprefix(RELATIONSHIP_POINTER).split("/")[0]
        for mapping in self.entity.to_outreach_fields():
            if mapping.source.column in (member, f"{member}Id"):
                return mapping.workbooks
        return None

    def _email_field(self) -> str | None:
        """The Workbooks field holding the email a duplicate is about (the entity's first natural key)."""
        return self.entity.match.natural_keys[0] if self.entity.match.natural_keys else None

    def _attempt(self, result: dict[str, Any], windows: dict[int, datetime]) -> ToOutreachAttempt:
        """One result as the ledger's record of the attempt (its own window: that of its Workbooks change)."""
        outcome = Outcome.UPDATED if result["outcome"] == ADOPTED else Outcome(result["outcome"])
        failed = outcome is Outcome.FAILED
        return ToOutreachAttempt(
            entity=self.entity.name, workbooks_id=int(result["workbooks_id"]), outcome=outcome,
            outreach_id=None if result.get("outreach_id") is None else int(result["outreach_id"]),
            error=result.get("error") if failed else None, error_field=result.get("error_field") if failed else None,
            error_kind=ErrorKind(result["error_kind"]) if failed and result.get("error_kind") else None,
            window_start=windows.get(int(result["workbooks_id"])),
        )

    def _outcome(
        self, decision: OutreachDecision, outcome: Outcome, outreach_id: int | None, record: OutreachRecord | None,
        *, values: dict[str, Any] | None = None,
    ) -> RecordOutcome | None:
        if outreach_id is None:
            return None
        return RecordOutcome(
            entity=self.entity.name, outreach_id=outreach_id, outcome=outcome,
            workbooks_id=decision.workbooks_id,
            outreach_updated_at=record.updated_at if record is not None else None,
            values=values if values is not None or outcome is Outcome.CREATED else decision.values,
            diff={**decision.attributes, **{f"{k}Id": v for k, v in decision.relationships.items()}} or None,
            reason=TO_OUTREACH_REASON,
            workbooks_lock_version=decision.workbooks_lock_version,
        )


def _windows_by_workbooks_id(changes: pd.DataFrame) -> dict[int, datetime]:
    """Each read record's own window (the window-aware read sets WINDOW_COLUMN), by Workbooks id."""
    if WINDOW_COLUMN not in changes.columns or not len(changes):
        return {}
    return {int(i): pd.Timestamp(w).to_pydatetime()
            for i, w in zip(changes["id"], changes[WINDOW_COLUMN], strict=True) if not pd.isna(w)}


def _in_window(outcome: RecordOutcome, windows: dict[int, datetime]) -> RecordOutcome:
    window = windows.get(outcome.workbooks_id) if outcome.workbooks_id is not None else None
    return outcome if window is None else outcome.model_copy(update={"window_start": window})


def _holds(record: OutreachRecord, decision: OutreachDecision) -> bool:
    """Whether a record has every attribute and relationship a create sent."""
    for name, value in decision.attributes.items():
        if record.attributes.get(name) != value:
            return False
    for name, value in decision.relationships.items():
        wanted = value.id if isinstance(value, ResourceRef) else value
        if record.relationships.get(name) != wanted:
            return False
    return True


def workbooks_form(entity: EntityMapping, name: str, value: Any) -> Any:
    """A canonical value as Workbooks takes it (dates in its format; the rest as they are)."""
    if value is not None and entity.field(name).transform.kind == "wb_date":
        return format_wb_date(date.fromisoformat(str(value)))
    return value


class _DuplicateHolder(Exception):
    """The email is held by a prospect linked to another Person."""


class _NotConfirmed(Exception):
    """A create still unconfirmed after its lookups."""


def _reason(exc: Exception) -> str:
    if isinstance(exc, ApiError):
        return exc.detail or str(exc)
    return str(exc)


def _plain(value: Any) -> Any:
    if isinstance(value, list | tuple | dict):
        return value
    if hasattr(value, "tolist") and not isinstance(value, pd.Timestamp):
        return value.tolist()
    try:
        return None if pd.isna(value) else value
    except (TypeError, ValueError):
        return value
