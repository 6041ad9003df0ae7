"""Apply staged records to Workbooks: look up, plan, write, reconcile, and record every outcome.

The loop per entity and range of windows:

1. Look up the Workbooks twins of up to 100 staged records in one request: link key IN (...) OR natural
   key IN (...) (`_fm=1 OR 2`). A lookup that fails raises: a failed lookup never leads to a create.
2. Plan with the pure planner (`engine.plan`), resolving links through the ledger (the targets were synced
   earlier in the same run) and, for ids the ledger does not know, through Workbooks. The Outreach records
   sharing each record's natural key (`outreach_sharers`) are asked of Outreach before the load, by a step
   that holds Outreach's pool, and handed in as data: the loader itself calls Workbooks only.
3. Write in batches of at most 100 with per-object transactions, one batch ahead: Workbooks commits the next
   batch while the client records the last (`engine.one_ahead`; still one request in flight, in order).
4. Reconcile what is uncertain: a batch whose reply was lost (the server may have committed it) and
   objects refused for a stale lock_version are looked up afresh and re-planned, so a create that did
   land is found by its link key instead of being created twice. Bounded rounds; what is still uncertain
   after them fails with that reason and is retried by a later run.
5. Record one outcome per staged record in the ledger (state + history) and return them as a frame. The
   outcomes of each written batch are recorded as soon as Workbooks confirms it, so the creates of a run
   killed half way are in the history; the rest (unchanged, skipped, failed) are recorded at the end.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote_plus

import pandas as pd

from outreach_pipeline.clients.http import WriteOutcomeUnknown
from outreach_pipeline.clients.outreach import API_PREFIX, OutreachClient
from outreach_pipeline.clients.workbooks import (
    LOOKUP_BATCH_SIZE,
    MAX_OBJECTS_PER_WRITE,
    Filter,
    ObjectOutcome,
    WorkbooksClient,
    WriteOp,
)
from outreach_pipeline.engine.chunks import key_sharing_chunks
from outreach_pipeline.engine.extract import WINDOW_COLUMN
from outreach_pipeline.engine.ledger import PendingRelation, RecordOutcome, SyncLedger, SyncWindow
from outreach_pipeline.engine.one_ahead import sent_one_ahead
from outreach_pipeline.engine.outcome import Outcome
from outreach_pipeline.engine.plan import (
    ERROR_MESSAGE_LIMIT,
    SHARERS_COLUMN,
    Decision,
    FlagWrite,
    SyncPlan,
    plan_sync,
)
from outreach_pipeline.mapping.errors import ErrorKind
from outreach_pipeline.mapping.models import EntityMapping, LinkTransform, MappingSet
from outreach_pipeline.mapping.normalise import normalise_natural_key

#: URL-encoded characters of the `filter[emails][]=a&filter[emails][]=b...` pairs per Outreach request: with the
#: rest of the URL it stays under the 8 KB request-line limit common to web servers (about 115 emails of 30 characters).
SHARER_QUERY_CHARS = 7000
RECONCILE_ROUNDS = 3
#: Staged rows looked up, planned, written and recorded at a time (50 lookups and write batches of 100): the
#: load's working memory is bounded by this, not by the size of the range.
LOAD_CHUNK_ROWS = 5_000
PREVIEW_ROWS = 10
OUTCOME_COLUMNS = ["outreach_id", "workbooks_id", "outcome", "reason", "error", "fields_written"]


@dataclass
class LoadResult:
    """Outcome of one entity over one range of windows."""

    outcomes: pd.DataFrame
    counts: dict[str, int]
    preview: list[dict[str, Any]] = field(default_factory=list)
    pending_relations: int = 0


def select_columns(entity: EntityMapping) -> list[str]:
    """What a lookup must return for the planner: ids, keys, flags and every mapped field."""
    # updated_at: the record's update time decides latest_wins conflicts of the three-way merge.
    columns = ["id", "lock_version", "updated_at", entity.match.link_key, *entity.match.natural_keys, *entity.flag_fields()]
    columns += [f.workbooks for f in entity.to_workbooks_fields()]
    return list(dict.fromkeys(columns))


def lookup_twins(client: WorkbooksClient, entity: EntityMapping, staged: pd.DataFrame) -> list[dict[str, Any]]:
    """Workbooks records matching the staged rows by link key, or by the first natural key."""
    columns = select_columns(entity)
    link_key = entity.match.link_key
    natural = entity.match.natural_keys[0] if entity.match.natural_keys else None
    found: dict[int, dict[str, Any]] = {}
    for offset in range(0, len(staged), LOOKUP_BATCH_SIZE):
        chunk = staged.iloc[offset : offset + LOOKUP_BATCH_SIZE]
        links = _distinct(chunk[link_key])
        filters = [Filter(field=link_key, op="eq", value=links)]
        if natural is not None and natural in chunk.columns and (keys := _distinct(chunk[natural])):
            filters.append(Filter(field=natural, op="eq", value=keys))
        # The reply's total proves the answer complete: one request unless more than 100 records match.
        rows = client.iter_records(
            entity.workbooks_controller, filters, columns, match="or" if len(filters) > 1 else "and", count_total=True
        )
        for row in rows:
            found[int(row["id"])] = row
    return list(found.values())


def _distinct(values: pd.Series) -> list[Any]:
    """Distinct non-blank values as plain Python objects (the wire encoder knows no numpy types)."""
    return list(dict.fromkeys(v for v in values.astype(object).tolist() if v is not None and not pd.isna(v) and str(v).strip()))


def outreach_holders(
    client: OutreachClient, resource: str, entity: EntityMapping, values: Iterable[str]
) -> dict[Hashable, set[int]]:
    """Outreach ids holding each natural-key value (normalised), asked of Outreach in batches.

    A value held by two Outreach records must not be matched or created from either, whichever window each
    is synced in; the run alone cannot know that, only Outreach can. Several values are asked for in the
    form Outreach documents for them, `newFilterSyntax=true&filter[emails][]=a&filter[emails][]=b`: a comma
    list is documented for ids only, and an Outreach reading `a,b` as one address would find no holder and
    let the check pass in silence. The array form also takes values holding `,` or `..` literally.
    """
    filter_name = entity.match.outreach_duplicate_filter
    assert filter_name is not None
    source = entity.field(entity.match.natural_keys[0]).source
    filter_key = f"filter[{filter_name}][]"
    holders: dict[Hashable, set[int]] = {}
    for batch in _batches_by_url_length(filter_key, sorted(set(values)), SHARER_QUERY_CHARS):
        params = {"newFilterSyntax": "true", filter_key: batch, "page[size]": "1000", "count": "false",
                  f"fields[{entity.outreach_type}]": source.column}
        for record in client.iter_records(f"{API_PREFIX}/{resource}", params):
            value = record.attributes.get(source.column)
            if source.index is not None:
                value = value[source.index] if isinstance(value, list) and len(value) > source.index else None
            if (key := normalise_natural_key(value)) is not None:
                holders.setdefault(key, set()).add(record.id)
    return holders


def outreach_sharers(client: OutreachClient, resource: str, entity: EntityMapping, staged: pd.DataFrame) -> pd.DataFrame:
    """For each staged record, the other Outreach ids holding its natural key, asked of Outreach itself.

    Returns:
        ``outreach_id`` and ``SHARERS_COLUMN`` (a sorted list of ids), one row per staged row, in order;
        empty lists when the entity has no Outreach duplicate filter.
    """
    ids = [int(i) for i in staged["outreach_id"]]
    if not entity.match.outreach_duplicate_filter:
        return pd.DataFrame({"outreach_id": ids, SHARERS_COLUMN: [[] for _ in ids]})
    key_field = entity.match.natural_keys[0]
    holders = outreach_holders(client, resource, entity, _distinct(staged[key_field]))
    sharers = [
        sorted(holders.get(normalise_natural_key(value), set()) - {outreach_id})
        for outreach_id, value in zip(ids, staged[key_field], strict=True)
    ]
    return pd.DataFrame({"outreach_id": ids, SHARERS_COLUMN: sharers})


def _batches_by_url_length(key: str, values: list[str], budget: int) -> Iterable[list[str]]:
    """Split values into batches whose `key=value&...` pairs, URL-encoded as the client sends them, fit `budget`."""
    batch: list[str] = []
    used = 0
    key_size = len(quote_plus(key)) + 1  # `key=`: urlencode's quoting of the pair, key once for every value
    for value in values:
        size = key_size + len(quote_plus(value)) + 1  # and the `&` before the next pair
        if batch and used + size > budget:
            yield batch
            batch, used = [], 0
        batch.append(value)
        used += size
    if batch:
        yield batch


def resolve_id_maps(
    client: WorkbooksClient,
    ledger: SyncLedger,
    mappings: MappingSet,
    entity: EntityMapping,
    staged: pd.DataFrame,
) -> dict[str, dict[int, int]]:
    """Outreach id -> Workbooks id for every link target the staged rows mention.

    The ledger knows the targets synced by this integration (accounts are loaded before prospects in the
    same run); the rest are looked up in Workbooks by the target's link key, 100 per request.
    """
    wanted: dict[str, set[int]] = {}
    for mapping in entity.to_workbooks_fields():
        if not isinstance(mapping.transform, LinkTransform):
            continue
        ids = wanted.setdefault(mapping.transform.entity, set())
        for value in staged[mapping.workbooks]:
            items = value if isinstance(value, list | tuple) else [value]
            ids.update(int(item) for item in items if item is not None and not pd.isna(item))
    id_maps: dict[str, dict[int, int]] = {}
    for target_name, ids in wanted.items():
        states = ledger.get_states(target_name, ids)
        id_map = {i: s.workbooks_id for i, s in states.items() if s.workbooks_id is not None}
        missing = sorted(ids - id_map.keys())
        if missing:
            target = mappings.entity(target_name)
            prefix = target.match.link_prefix or ""
            for row in client.lookup(
                target.workbooks_controller, target.match.link_key, [f"{prefix}{i}" for i in missing],
                ["id", target.match.link_key],
            ):
                key = str(row.get(target.match.link_key) or "").removeprefix(prefix)
                if key.isdigit():
                    id_map.setdefault(int(key), int(row["id"]))
        id_maps[target_name] = id_map
    return id_maps


def _op_for(decision: Decision) -> WriteOp | None:
    if not decision.fields:
        return None
    if decision.action == "create":
        return WriteOp(action="create", fields=decision.fields)
    return WriteOp(action="update", id=decision.workbooks_id, lock_version=decision.lock_version, fields=decision.fields)


def _flag_op(flag: FlagWrite) -> WriteOp:
    return WriteOp(action="update", id=flag.workbooks_id, lock_version=flag.lock_version, fields=flag.fields)


def _describe(outcome: ObjectOutcome) -> str:
    parts = [f"{name}: {'; '.join(messages)}" for name, messages in outcome.errors.items()]
    return "Workbooks refused the write: " + ("; ".join(parts) or "no reason given")


class EntityLoader:
    """Loads one entity's staged rows for one run and range of windows."""

    def __init__(
        self,
        *,
        client: WorkbooksClient,
        ledger: SyncLedger,
        mappings: MappingSet,
        entity: EntityMapping,
        run_id: str,
        window: SyncWindow,
        sharers: pd.DataFrame | None = None,
        on_done: Callable[[Iterable[int]], None] | None = None,
    ) -> None:
        """`sharers` (from `outreach_sharers`) enables the Outreach-side duplicate check; `on_done` is told the
        Outreach ids whose outcome is known as the load goes (after each batch: `engine.progress`)."""
        self.sharers = sharers
        self.on_done = on_done or (lambda ids: None)
        self.client = client
        self.ledger = ledger
        self.mappings = mappings
        self.entity = entity
        self.run_id = run_id
        self.window = window
        self._recorded: set[int] = set()  # outreach ids whose outcome is already in the ledger
        self._windows: dict[int, datetime] = {}  # each record's own window (staged WINDOW_COLUMN), when known

    def load(self, staged: pd.DataFrame) -> LoadResult:
        """Load the staged rows; every row ends with exactly one outcome in the ledger and the result.

        The rows go through in chunks of about `LOAD_CHUNK_ROWS` (`engine.chunks`: rows sharing a key stay
        together, so each chunk is decided as the whole would be), each looked up, planned, written and recorded
        before the next: what the load holds besides the staged frame and the outcomes (twins, plans, ledger
        states, outcome objects) is bounded by the chunk, not by the range.
        """
        staged = staged.reset_index(drop=True)
        self.ledger.start_run(self.run_id, self.entity.name, self.window)
        frames: list[pd.DataFrame] = []
        preview: list[dict[str, Any]] = []
        pending = 0
        try:
            for rows in key_sharing_chunks(staged, self.entity, LOAD_CHUNK_ROWS):
                chunk = self._load_chunk(rows)
                frames.append(chunk.outcomes)
                preview.extend(chunk.preview[: PREVIEW_ROWS - len(preview)])
                pending += chunk.pending_relations
        finally:
            self.ledger.finish_run(self.run_id, self.entity.name)
        frame = (pd.concat(frames).sort_values("outreach_id", ignore_index=True) if len(frames) > 1
                 else frames[0] if frames else pd.DataFrame(columns=OUTCOME_COLUMNS))
        counts = frame["outcome"].value_counts().to_dict() if len(frame) else {}
        return LoadResult(outcomes=frame, counts={str(k): int(v) for k, v in counts.items()}, preview=preview,
                          pending_relations=pending)

    def _load_chunk(self, staged: pd.DataFrame) -> LoadResult:
        """Look up, plan, write and record one chunk of staged rows."""
        ids = [int(i) for i in staged["outreach_id"]]
        self._recorded = set()
        self._windows = {}
        if WINDOW_COLUMN in staged.columns:
            self._windows = {
                int(i): pd.Timestamp(w).to_pydatetime()
                for i, w in zip(staged["outreach_id"], staged[WINDOW_COLUMN], strict=True) if not pd.isna(w)
            }
        states = self.ledger.get_states(self.entity.name, ids)
        final: dict[int, RecordOutcome] = {}
        try:
            self._load_rounds(staged, states, final)
        finally:
            # Whatever was written is recorded even when the load stops half way (an API down for longer
            # than the retries), so the audit trail and the stale-version guard hold for those records.
            self._record(final, final.keys())
        self.on_done(final.keys())
        outcomes = [final[i] for i in sorted(final)]
        frame = pd.DataFrame(
            [
                {
                    "outreach_id": o.outreach_id,
                    "workbooks_id": o.workbooks_id,
                    "outcome": o.outcome,
                    "reason": o.reason,
                    "error": o.error,
                    "fields_written": sorted(o.diff) if o.diff else [],
                }
                for o in outcomes
            ],
            columns=OUTCOME_COLUMNS,
        )
        preview = [
            {"outreach_id": o.outreach_id, "outcome": o.outcome, "changes": o.diff}
            for o in outcomes
            if o.outcome.wrote and o.diff
        ][:PREVIEW_ROWS]
        return LoadResult(outcomes=frame, counts={}, preview=preview,
                          pending_relations=sum(len(o.pending_relations) for o in outcomes))

    def _with_outreach_holders(self, staged: pd.DataFrame) -> pd.DataFrame:
        """Add, for each record, the other Outreach ids holding its natural key (as Outreach answered them).

        Raises:
            ValueError: A record Outreach was not asked about: it must not be matched or created unchecked.
        """
        if self.sharers is None or not self.entity.match.outreach_duplicate_filter:
            return staged
        answered = dict(zip(self.sharers["outreach_id"].astype(int), self.sharers[SHARERS_COLUMN], strict=True))
        unasked = [int(i) for i in staged["outreach_id"] if int(i) not in answered]
        if unasked:
            raise ValueError(
                f"{self.entity.outreach_type} {unasked[0]} (and {len(unasked) - 1} more) has no answer from Outreach "
                "on who else holds its natural key; run its windows again with the duplicate lookup"
            )
        return staged.assign(**{SHARERS_COLUMN: [list(answered[int(i)]) for i in staged["outreach_id"]]})

    def _load_rounds(self, staged: pd.DataFrame, states: Mapping[int, Any], final: dict[int, RecordOutcome]) -> None:
        """Plan and write; re-plan the records whose write is uncertain, a bounded number of times."""
        id_maps = resolve_id_maps(self.client, self.ledger, self.mappings, self.entity, staged)
        staged = self._with_outreach_holders(staged)
        intended: dict[int, str] = {}  # the first write planned per record, for reporting after a reconcile
        todo = staged
        uncertain: dict[int, str] = {}
        for _round in range(RECONCILE_ROUNDS):
            twins = lookup_twins(self.client, self.entity, todo)
            plan = plan_sync(todo, self.entity, twins, states, id_maps)
            uncertain = self._apply(plan, final, intended)
            if not uncertain:
                return
            todo = staged[staged["outreach_id"].astype(int).isin(uncertain)]
        for outreach_id, reason in uncertain.items():
            final[outreach_id] = RecordOutcome(
                entity=self.entity.name, outreach_id=outreach_id, outcome=Outcome.FAILED,
                error=f"{self.entity.outreach_type} {outreach_id}: write not confirmed after {RECONCILE_ROUNDS} "
                f"attempts ({reason}); retried next run", error_kind=ErrorKind.NOT_CONFIRMED,
            )

    def _apply(self, plan: SyncPlan, final: dict[int, RecordOutcome], intended: dict[int, str]) -> dict[int, str]:
        """Write the plan; fill `final`; return the records whose result is uncertain (id -> why)."""
        writes: list[tuple[Decision, WriteOp]] = []
        for decision in plan.decisions:
            intended.setdefault(decision.outreach_id, decision.action)
            op = _op_for(decision)
            if op is None or decision.action == "skip":
                final[decision.outreach_id] = self._outcome(decision, applied=None, intended=intended)
            else:
                writes.append((decision, op))
        self.on_done(decision.outreach_id for decision in plan.decisions if decision.outreach_id in final)
        uncertain: dict[int, str] = {}
        refused: list[Decision] = []
        batches = [writes[offset : offset + MAX_OBJECTS_PER_WRITE] for offset in range(0, len(writes), MAX_OBJECTS_PER_WRITE)]

        def send(batch: list[tuple[Decision, WriteOp]]) -> list[ObjectOutcome]:
            return self.client.write_batch(self.entity.workbooks_controller, [op for _, op in batch])

        # Workbooks commits the next batch while this one's outcomes are recorded (engine/one_ahead.py).
        for reply in sent_one_ahead(batches, send, carry_on=(WriteOutcomeUnknown,)):
            if isinstance(reply.error, WriteOutcomeUnknown):
                for decision, _ in reply.item:
                    uncertain[decision.outreach_id] = f"reply lost: {reply.error}"
                continue
            for (decision, _), result in zip(reply.item, reply.result(), strict=True):
                if result.ok:
                    final[decision.outreach_id] = self._outcome(decision, applied=result, intended=intended)
                    self.ledger.record_conflicts(self.run_id, decision.conflicts)
                elif result.stale_lock_version:
                    uncertain[decision.outreach_id] = "record changed in Workbooks during the run (stale lock_version)"
                else:
                    message = f"{self.entity.outreach_type} {decision.outreach_id}: {_describe(result)}"
                    final[decision.outreach_id] = self._outcome(decision, applied=result, error=message)
                    if decision.workbooks_id is not None and decision.action != "failed":
                        refused.append(decision.model_copy(update={"error": message}))
            self._record(final, (decision.outreach_id for decision, _ in reply.item))
            self.on_done(decision.outreach_id for decision, _ in reply.item if decision.outreach_id in final)
        # After the batches, not between them: one request at a time, and the refused records are failed in the
        # ledger already (a flag lost to a stop here is set again by their retry).
        self._flag_refused(refused)
        if plan.duplicate_flags:
            # A lost reply is harmless: the flag is re-planned from the same duplicates on the next run.
            with contextlib.suppress(WriteOutcomeUnknown):
                self.client.write_batch(self.entity.workbooks_controller, [_flag_op(f) for f in plan.duplicate_flags])
        return uncertain

    def _record(self, final: Mapping[int, RecordOutcome], ids: Iterable[int]) -> None:
        """Record the final outcomes of `ids` not recorded yet (each record once per load)."""
        outcomes = [self._in_own_window(final[i]) for i in sorted(set(ids) - self._recorded) if i in final]
        if outcomes:
            self.ledger.record_outcomes(self.run_id, self.window, outcomes)
            self._recorded.update(o.outreach_id for o in outcomes)

    def _in_own_window(self, outcome: RecordOutcome) -> RecordOutcome:
        window = self._windows.get(outcome.outreach_id)
        return outcome if window is None else outcome.model_copy(update={"window_start": window})

    def _flag_refused(self, refused: list[Decision]) -> None:
        """Set Outreach Sync Error and its message on existing records Workbooks refused to update."""
        flags = self.entity.flags
        if not refused or flags is None:
            return
        ops = [
            WriteOp(
                action="update", id=d.workbooks_id, lock_version=d.lock_version,
                fields={flags.sync_error: True, flags.sync_error_message: (d.error or "")[:ERROR_MESSAGE_LIMIT]},
            )
            for d in refused
        ]
        # A lost reply is harmless: the record stays failed in the ledger and its retry sets the flag again.
        with contextlib.suppress(WriteOutcomeUnknown):
            self.client.write_batch(self.entity.workbooks_controller, ops)

    def _outcome(
        self,
        decision: Decision,
        *,
        applied: ObjectOutcome | None,
        error: str | None = None,
        intended: Mapping[int, str] | None = None,
    ) -> RecordOutcome:
        outcome = decision.ledger_outcome
        earlier = (intended or {}).get(decision.outreach_id)
        if outcome is Outcome.UNCHANGED and earlier in ("create", "update"):
            # An earlier round's write landed though its reply was lost: report what this run did.
            outcome = Outcome.CREATED if earlier == "create" else Outcome.UPDATED
        workbooks_id = decision.workbooks_id
        if applied is not None and applied.ok and applied.id is not None:
            workbooks_id = applied.id
        if error is not None:
            # Workbooks refused the write: its errors name the fields (the first is recorded as the field).
            refused_field = next(iter(applied.errors), None) if applied is not None else None
            return RecordOutcome(
                entity=self.entity.name, outreach_id=decision.outreach_id, outcome=Outcome.FAILED,
                workbooks_id=workbooks_id, outreach_updated_at=decision.outreach_updated_at, error=error,
                error_field=refused_field if refused_field not in (None, "", "base", "[]") else None,
                error_kind=ErrorKind.REFUSED_BY_WORKBOOKS,
            )
        pending: list[PendingRelation] = list(decision.pending_relations)
        return RecordOutcome(
            entity=self.entity.name,
            outreach_id=decision.outreach_id,
            outcome=outcome,
            workbooks_id=workbooks_id,
            outreach_updated_at=decision.outreach_updated_at,
            values=decision.values if outcome.applied else None,
            diff=decision.fields or None,
            reason=decision.reason,
            error=decision.error,
            pending_relations=pending,
            # A record failing validation: its first error's field and kind (the message joins them all).
            error_field=decision.errors[0].field if decision.errors else None,
            error_kind=decision.errors[0].kind if decision.errors else None,
            # The Workbooks version these values are: the write's, or the twin's when nothing was written.
            workbooks_lock_version=applied.lock_version if applied is not None and applied.ok else decision.lock_version,
        )
