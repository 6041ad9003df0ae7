"""Reconcile: compare every linked record in both systems and repair drift; never hard-delete.

The windows see what changed ``updatedAt``; reconcile catches what did not (a removed opportunity role, other
relationship edits) and records deleted on either side. Per entity:

1. Read every linked pair the ledger knows: the Outreach records by id (opportunities with their stage and
   prospect roles) and the Workbooks records by id. A read that fails stops the reconcile before any write.
2. Plan, with the same pure planners as the windows (so the three-way merge and its policies apply):
   Outreach -> Workbooks repairs (``engine.plan``), Workbooks -> Outreach repairs (``engine.plan_outreach``),
   and the pairs one side lost: a record deleted in Outreach gets Outreach Sync Error with a message and its
   Outreach Id cleared in Workbooks; a record deleted in Workbooks gets its key (``externalId``/``customId``)
   cleared in Outreach. Both are unlinked in the ledger; neither system loses a record.
3. Abort, changing nothing, when the planned changes of any entity exceed ``max_change_share`` of its linked
   records (every entity is planned before any is repaired): a broken mapping or a wrong credential looks like
   mass drift, and repairing it would be mass damage.
4. Apply: deletions, then the Outreach -> Workbooks repairs, then (reading Workbooks again, as those repairs
   moved the base) the Workbooks -> Outreach repairs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import pandas as pd

from outreach_pipeline.clients.outreach import OutreachClient
from outreach_pipeline.clients.workbooks import WorkbooksClient, WriteOp
from outreach_pipeline.engine.extract import extract_entity, opportunity_lookups
from outreach_pipeline.engine.ledger import SyncLedger, SyncWindow
from outreach_pipeline.engine.load import EntityLoader, lookup_twins, resolve_id_maps
from outreach_pipeline.engine.load_outreach import OutreachWriter, read_outreach_twins, workbooks_columns
from outreach_pipeline.engine.plan import plan_sync
from outreach_pipeline.engine.plan_outreach import OBJECT_REF, OutreachAction, plan_to_outreach
from outreach_pipeline.mapping.models import EntityMapping, MappingSet
from outreach_pipeline.mapping.transform import stage_records

#: Default share of linked records reconcile may change before it refuses to.
DEFAULT_MAX_CHANGE_SHARE = 0.2


class ReconcileAborted(Exception):
    """Planned changes exceed the allowed share; nothing was written."""

    def __init__(self, entity: str, planned: int, linked: int, share: float) -> None:
        self.entity, self.planned, self.linked, self.share = entity, planned, linked, share
        super().__init__(
            f"reconcile of {entity} aborted, nothing changed: it would change {planned} of {linked} linked records "
            f"({planned / linked:.0%}), above the allowed {share:.0%}. Check the mapping and credentials; if the "
            "drift is real, raise max_change_share for one run."
        )


@dataclass
class EntityReconcile:
    """What reconcile found (and, unless aborted, repaired) for one entity."""

    entity: str
    linked: int = 0
    to_workbooks: list[int] = field(default_factory=list)  # Outreach ids whose Workbooks twin is repaired
    to_outreach: list[int] = field(default_factory=list)  # Workbooks ids whose Outreach twin is repaired
    deleted_in_outreach: list[int] = field(default_factory=list)  # Workbooks ids flagged and unlinked
    deleted_in_workbooks: list[int] = field(default_factory=list)  # Outreach ids unlinked

    @property
    def planned(self) -> int:
        return (len(set(self.to_workbooks)) + len(set(self.to_outreach)) + len(self.deleted_in_outreach)
                + len(self.deleted_in_workbooks))


@dataclass
class _Snapshot:
    staged: pd.DataFrame  # linked Outreach records present in Outreach, staged into Workbooks form
    workbooks: pd.DataFrame  # linked Workbooks records present in Workbooks
    pairs: dict[int, int]  # Outreach id -> Workbooks id


class Reconciler:
    """Reconciles one entity's linked records."""

    def __init__(
        self, *, outreach: OutreachClient, workbooks: WorkbooksClient, ledger: SyncLedger, mappings: MappingSet,
        entity: EntityMapping, resource: str, run_id: str,
    ) -> None:
        self.outreach = outreach
        self.workbooks = workbooks
        self.ledger = ledger
        self.mappings = mappings
        self.entity = entity
        self.resource = resource
        self.run_id = run_id
        self.window = SyncWindow(start=datetime(1970, 1, 1, tzinfo=UTC), end=datetime.now(UTC))

    def plan(self) -> tuple[EntityReconcile, _Snapshot]:
        """Read both sides and plan, writing nothing."""
        pairs = dict(self.ledger.linked_ids(self.entity.name))
        report = EntityReconcile(entity=self.entity.name, linked=len(pairs))
        snapshot = self._read(pairs)
        present_outreach = {int(i) for i in snapshot.staged["outreach_id"]} if len(snapshot.staged) else set()
        present_workbooks = {int(i) for i in snapshot.workbooks["id"]} if len(snapshot.workbooks) else set()
        report.deleted_in_outreach = sorted(w for o, w in pairs.items() if o not in present_outreach and w in present_workbooks)
        report.deleted_in_workbooks = sorted(o for o, w in pairs.items() if w not in present_workbooks and o in present_outreach)
        both = [o for o, w in pairs.items() if o in present_outreach and w in present_workbooks]
        staged = snapshot.staged[snapshot.staged["outreach_id"].astype(int).isin(both)].reset_index(drop=True)
        if len(staged):
            twins = lookup_twins(self.workbooks, self.entity, staged)
            id_maps = resolve_id_maps(self.workbooks, self.ledger, self.mappings, self.entity, staged)
            states = self.ledger.get_states(self.entity.name, both)
            plan = plan_sync(staged, self.entity, twins, states, id_maps)
            report.to_workbooks = [d.outreach_id for d in plan.decisions if d.action == "update"]
        workbooks_ids = {pairs[o] for o in both}
        records = [r for r in snapshot.workbooks.to_dict("records") if int(r["id"]) in workbooks_ids]
        decisions = self._plan_to_outreach(records)
        report.to_outreach = [d.workbooks_id for d in decisions if d.action is OutreachAction.UPDATE]
        return report, snapshot

    def apply(self, report: EntityReconcile, snapshot: _Snapshot) -> None:
        """Repair what ``plan`` found (after ``check``)."""
        self._unlink_deleted(report)
        repair = snapshot.staged[snapshot.staged["outreach_id"].astype(int).isin(report.to_workbooks)]
        if len(repair):
            EntityLoader(client=self.workbooks, ledger=self.ledger, mappings=self.mappings, entity=self.entity,
                         run_id=self.run_id, window=self.window).load(repair.reset_index(drop=True))
        if report.to_outreach:
            fresh = self._read_workbooks(report.to_outreach)
            OutreachWriter(client=self.outreach, ledger=self.ledger, mappings=self.mappings, entity=self.entity,
                           resource=self.resource, run_id=self.run_id, window=self.window).write(fresh)


    # --- reads -------------------------------------------------------------------------------------------

    def _read(self, pairs: dict[int, int]) -> _Snapshot:
        staged = pd.DataFrame(columns=["outreach_id"])
        if pairs:
            never = self.window.start
            extract = extract_entity(self.outreach, self.resource, never, never.replace(second=1),
                                     retry_ids=sorted(pairs))
            frame = extract.frame[extract.frame["updatedAt"].notna()].reset_index(drop=True)
            if len(frame):
                lookups = opportunity_lookups(frame) if self.resource == "opportunities" else None
                staged = stage_records(frame, self.entity, lookups=lookups)
        return _Snapshot(staged=staged, workbooks=self._read_workbooks(sorted(set(pairs.values()))), pairs=pairs)

    def _read_workbooks(self, ids: list[int]) -> pd.DataFrame:
        columns = list(dict.fromkeys([*workbooks_columns(self.entity), *self._to_workbooks_columns()]))
        rows = self.workbooks.lookup(self.entity.workbooks_controller, "id", ids, columns) if ids else []
        return pd.DataFrame(rows) if rows else pd.DataFrame(columns=columns)

    def _to_workbooks_columns(self) -> list[str]:
        return [f.workbooks for f in self.entity.to_workbooks_fields()]

    def _plan_to_outreach(self, records: list[dict]) -> list:
        if not records:
            return []
        linked = [int(r[self.entity.match.link_key]) for r in records]
        twins = read_outreach_twins(self.outreach, self.resource, self.entity, linked)
        states = self.ledger.states_by_workbooks_id(self.entity.name, [int(r["id"]) for r in records])
        writer = OutreachWriter(client=self.outreach, ledger=self.ledger, mappings=self.mappings, entity=self.entity,
                                resource=self.resource, run_id=self.run_id, window=self.window)
        to_outreach, to_workbooks = writer.id_maps()
        return plan_to_outreach(self.entity, records, twins, states, to_outreach, to_workbooks)

    # --- deletions ---------------------------------------------------------------------------------------

    def _unlink_deleted(self, report: EntityReconcile) -> None:
        flags = self.entity.flags
        by_workbooks = {w: o for o, w in self.ledger.linked_ids(self.entity.name)}
        if report.deleted_in_outreach:
            current = {int(r["id"]): r for r in self.workbooks.lookup(
                self.entity.workbooks_controller, "id", report.deleted_in_outreach, ["id", "lock_version"])}
            ops = []
            for workbooks_id in report.deleted_in_outreach:
                fields: dict = {self.entity.match.link_key: None}
                if flags is not None:
                    fields |= {flags.sync_error: True, flags.sync_error_message: (
                        f"{self.entity.outreach_type} {by_workbooks.get(workbooks_id)} was deleted in Outreach; "
                        "reconcile unlinked this record. Clear Outreach Sync Error to create it in Outreach again.")}
                ops.append(WriteOp(action="update", id=workbooks_id,
                                   lock_version=int(current[workbooks_id]["lock_version"]), fields=fields))
            self.workbooks.write_batch(self.entity.workbooks_controller, ops)
            self.ledger.unlink(self.entity.name, [by_workbooks[w] for w in report.deleted_in_outreach])
        key = next((f.source.column for f in self.entity.fields if f.workbooks == OBJECT_REF), None)
        for outreach_id in report.deleted_in_workbooks:
            if key is not None:
                self.outreach.update(self.resource, outreach_id, {key: None})
        if report.deleted_in_workbooks:
            self.ledger.unlink(self.entity.name, report.deleted_in_workbooks)


def check(report: EntityReconcile, max_change_share: float) -> None:
    """Raise ReconcileAborted when the planned changes exceed the share of the entity's linked records."""
    if report.linked and report.planned / report.linked > max_change_share:
        raise ReconcileAborted(report.entity, report.planned, report.linked, max_change_share)


def reconcile_all(reconcilers: list[Reconciler], max_change_share: float) -> list[EntityReconcile]:
    """Plan every entity and check every plan, then repair in order: an abort anywhere writes nothing anywhere."""
    for reconciler in reconcilers:
        check(reconciler.plan()[0], max_change_share)
    reports = []
    for reconciler in reconcilers:
        # Planned again: the repairs of the entities before it (an unlinked prospect) change its plan.
        report, snapshot = reconciler.plan()
        reconciler.apply(report, snapshot)
        reports.append(report)
    return reports
