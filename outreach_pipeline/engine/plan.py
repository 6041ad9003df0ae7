"""Pure sync planner, Outreach -> Workbooks: one decision per staged record, no I/O.

Inputs are what the caller fetched: the staged frame of a window, the Workbooks records matched to it (by link
key, and by natural key for unlinked rows), the ledger states of those records and id maps for resolving links.
The same inputs give the same plan whatever their order.

Rules, in order, for each staged record:

1. ``stale_version``: the ledger already applied a newer ``updatedAt``; a backfill of an old window changes nothing.
2. ``superseded``: an update-only entity (sequence states) has several staged rows for one Workbooks record;
   the latest ``updatedAt`` wins.
3. ``duplicate_match``: several Workbooks records carry the link key or share the natural key. Those Workbooks
   records get Outreach Duplicate = TRUE (when the record type has the flag) and a human resolves them; nothing
   else is written. An unlinked record whose natural key another Outreach record also has (in this run, or as the
   link of an existing Workbooks twin) fails with a message naming the field: every record sharing it fails, so
   the result does not depend on the order in which windows run.
4. Flags of the matched record: Sync to Outreach = FALSE -> ``sync_disabled``; Outreach Duplicate -> ``duplicate_flag``;
   Outreach Sync Error -> ``sync_error_flag``, *unless this integration set it* (the ledger's last outcome was a
   failure with the very message the record shows): then the error is ours to clear once the record is valid,
   so a fixed record heals itself while an error flagged by a person or another process stays until they clear it.
5. ``failed``: validation errors. An existing record gets Outreach Sync Error = TRUE and the message.
6. ``create`` (no match; Sync to Outreach = TRUE, link key set), else ``update`` with only the fields Outreach
   wins in the three-way merge against the ledger's base (``engine.merge``: a Workbooks-side edit is kept and
   left to the Workbooks -> Outreach direction), plus the link key when matched by natural key, plus clearing
   our own error flag; else ``unchanged``.

Links whose target is not synced yet are withheld from the write (the existing Workbooks value is kept) and
reported as pending relations, which the ledger stores and later runs retry; the record itself is still written,
because holding back a person until their organisation syncs would delay every other field for no benefit.

The decision, flag write and plan models are in `engine.plan_models`; how cells and record fields are read, in
`engine.plan_values` (both re-exported here where callers use them).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Mapping
from datetime import datetime
from typing import Any

import pandas as pd

from outreach_pipeline.engine.ledger import FieldConflict, PendingRelation, RecordState
from outreach_pipeline.engine.merge import (
    NO_BASE,
    Side,
    conflict_of,
    keep_base,
    ledger_base,
    record_time,
    resolve_field,
)
from outreach_pipeline.engine.plan_models import (
    ERROR_MESSAGE_LIMIT,
    SHARERS_COLUMN,
    Action,
    Decision,
    FlagWrite,
    IdMaps,
    SkipReason,
    SyncPlan,
)
from outreach_pipeline.engine.plan_values import (
    as_datetime,
    as_dicts,
    blank_value,
    error_set_by_us,
    flag_transform,
    is_stale,
    jsonable,
    optional_int,
    read_field,
    timestamp_key,
    truthy,
)
from outreach_pipeline.mapping.errors import ErrorKind, ValidationError, read_errors
from outreach_pipeline.mapping.models import (
    EntityMapping,
    FieldMapping,
    LinkTransform,
)
from outreach_pipeline.mapping.normalise import (
    normalise_link_key,
    normalise_natural_key,
    normalise_value,
    normaliser_for,
)

__all__ = ["ERROR_MESSAGE_LIMIT", "SHARERS_COLUMN", "Decision", "FlagWrite", "SyncPlan", "plan_sync", "read_field"]


def plan_sync(
    staged: pd.DataFrame,
    entity: EntityMapping,
    workbooks_records: Iterable[Mapping[str, Any]] | pd.DataFrame,
    states: Mapping[int, RecordState] | None = None,
    id_maps: IdMaps | None = None,
) -> SyncPlan:
    """Plan the Outreach -> Workbooks writes of one window.

    Args:
        staged: output of ``stage_records`` for this entity.
        entity: the entity mapping.
        workbooks_records: Workbooks records matched to the staged rows (by link key, and by natural key for
            unlinked rows), each with ``id``, ``lock_version``, the mapped fields and the flag fields.
        states: ledger states by outreach id (``SyncLedger.get_states``).
        id_maps: per target entity, Outreach id -> Workbooks id, for link fields.

    Returns:
        The SyncPlan.
    """
    records = as_dicts(workbooks_records)
    planner = _Planner(entity, records, states or {}, id_maps or {})
    rows = sorted(as_dicts(staged), key=lambda row: int(row["outreach_id"]))
    return planner.plan(rows)


class _Planner:
    def __init__(
        self,
        entity: EntityMapping,
        records: list[dict[str, Any]],
        states: Mapping[int, RecordState],
        id_maps: IdMaps,
    ) -> None:
        self.entity = entity
        self.states = states
        self.id_maps = id_maps
        # What the per-record rules ask of the mapping, looked up once per plan instead of once per record.
        self.fields_to_workbooks = entity.to_workbooks_fields()
        self.field_by_name = {name: entity.field(name) for name in dict.fromkeys(f.workbooks for f in entity.fields)}
        self.aligned_fields = [
            field for field in self.fields_to_workbooks
            if field.source.kind == "collection" and not isinstance(field.transform, LinkTransform)
        ]
        self.normalisers: dict[str, Callable[[Any], Hashable]] = {}  # per field name, built on first use
        self.by_link: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.by_natural: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
        # Records already linked to some Outreach record, by natural key: an unlinked Outreach record with the
        # same key must not get a twin of its own (that would be a second Person with one email).
        self.linked_by_natural: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
        for record in sorted(records, key=lambda record: int(record["id"])):
            link = normalise_link_key(read_field(record, entity.match.link_key))
            if link is not None:
                self.by_link[link].append(record)
            elif (natural := self._natural_key(record)) is not None:
                self.by_natural[natural].append(record)
            if link is not None and (natural := self._natural_key(record)) is not None:
                self.linked_by_natural[natural].append(record)
        self.duplicate_flags: dict[int, FlagWrite] = {}

    def plan(self, rows: list[dict[str, Any]]) -> SyncPlan:
        superseded = self._superseded_ids(rows)
        natural_holders: dict[tuple, set[int]] = defaultdict(set)
        for row in rows:
            if self._natural_key_must_be_unique(row) and (key := self._natural_key(row)) is not None:
                natural_holders[key].add(int(row["outreach_id"]))
        decisions = [self._decide(row, superseded, natural_holders) for row in rows]
        flags = [self.duplicate_flags[workbooks_id] for workbooks_id in sorted(self.duplicate_flags)]
        return SyncPlan(entity=self.entity.name, decisions=decisions, duplicate_flags=flags)

    # --- matching ----------------------------------------------------------------------------------------

    def _natural_key(self, values: Mapping[str, Any]) -> tuple | None:
        if not self.entity.match.natural_keys:
            return None
        parts = tuple(
            normalise_natural_key(read_field(values, name)) for name in self.entity.match.natural_keys
        )
        # A blank component never matches: two records without a website are not the same organisation.
        return None if any(part is None for part in parts) else parts

    def _natural_key_must_be_unique(self, row: Mapping[str, Any]) -> bool:
        """Whether sharing its natural key with another Outreach record fails this row.

        Always for an unlinked row (its match would be ambiguous). For a linked one only where the key is an
        identity in Outreach too (a prospect's email, `outreach_duplicate_filter`): otherwise the record that
        happened to sync first would keep the email and the outcome would depend on the order of windows.
        """
        return not self._link_matches(row) or self.entity.match.outreach_duplicate_filter is not None

    def _link_matches(self, row: Mapping[str, Any]) -> list[dict[str, Any]]:
        link = normalise_link_key(row.get(self.entity.match.link_key))
        return self.by_link.get(link, []) if link is not None else []

    def _superseded_ids(self, rows: list[dict[str, Any]]) -> set[int]:
        if self.entity.match.outreach_key == "id":
            return set()
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            if (link := normalise_link_key(row.get(self.entity.match.link_key))) is not None:
                groups[link].append(row)
        superseded: set[int] = set()
        for group in groups.values():
            latest = max(
                group, key=lambda row: (timestamp_key(row.get("outreach_updated_at")), row["outreach_id"])
            )
            superseded.update(int(row["outreach_id"]) for row in group if row is not latest)
        return superseded

    # --- decisions ---------------------------------------------------------------------------------------

    def _decide(
        self, row: dict[str, Any], superseded: set[int], natural_holders: Mapping[tuple, set[int]]
    ) -> Decision:
        outreach_id = int(row["outreach_id"])
        updated_at = as_datetime(row.get("outreach_updated_at"))
        base = {"outreach_id": outreach_id, "outreach_updated_at": updated_at}
        state = self.states.get(outreach_id)
        if is_stale(updated_at, state):
            return Decision(action="skip", reason="stale_version", **base)
        if outreach_id in superseded:
            return Decision(action="skip", reason="superseded", **base)

        candidates = self._link_matches(row)
        natural = None if candidates else self._natural_key(row)
        if natural is not None:
            candidates = self.by_natural.get(natural, [])
        if len(candidates) > 1:
            self._flag_duplicates(candidates)
            return Decision(action="skip", reason="duplicate_match", **base)

        target = candidates[0] if candidates else None
        errors = read_errors(row.get("validation_errors"))
        if self._natural_key_must_be_unique(row) and (own_key := self._natural_key(row)) is not None:
            errors += self._natural_key_conflicts(row, own_key, natural_holders)
        if target is not None:
            base |= {
                "workbooks_id": int(target["id"]),
                "lock_version": optional_int(target.get("lock_version")),
            }
            if (reason := self._flag_skip_reason(target, state)) is not None:
                return Decision(action="skip", reason=reason, **base)
        if errors:
            return self._failed(target, errors, base)
        if target is None:
            if not self.entity.create:
                return Decision(action="skip", reason="no_match", **base)
            return self._create(row, base)
        return self._update(row, target, state, matched_by_natural=natural is not None, base=base)

    def _natural_key_conflicts(
        self, row: Mapping[str, Any], natural: tuple, natural_holders: Mapping[tuple, set[int]]
    ) -> list[ValidationError]:
        """Why a record may not take its natural key: another Outreach record holds it too.

        Holders are the other staged rows of this run and those the caller found in Outreach itself
        (``SHARERS_COLUMN``). Every holder fails, rather than the first one processed winning, so the outcome
        does not depend on the order in which windows run; a person resolves the duplicate in Outreach.
        """
        outreach_id = int(row["outreach_id"])
        label = f"{self.entity.outreach_type} {outreach_id}"
        fields = " + ".join(self.entity.match.natural_keys)
        value = " / ".join(str(read_field(row, name)) for name in self.entity.match.natural_keys)
        holders = set(natural_holders.get(natural, set())) | {int(i) for i in (row.get(SHARERS_COLUMN) or [])}
        holders.discard(outreach_id)
        problems = []
        key_field = self.entity.match.natural_keys[0]
        if holders:
            others = ", ".join(str(i) for i in sorted(holders))
            problems.append(ValidationError(
                field=key_field, kind=ErrorKind.DUPLICATE,
                message=f"{label}: {fields} {value!r} is also held by Outreach {self.entity.outreach_type} {others} "
                "(Outreach duplicate)",
            ))
        own_link = normalise_link_key(row.get(self.entity.match.link_key))
        others = [
            r for r in self.linked_by_natural.get(natural, [])
            if normalise_link_key(read_field(r, self.entity.match.link_key)) != own_link
        ]
        owners = sorted({str(read_field(r, self.entity.match.link_key)) for r in others})
        if owners:
            ids = ", ".join(f"#{r['id']}" for r in others)
            problems.append(ValidationError(
                field=key_field, kind=ErrorKind.DUPLICATE,
                message=f"{label}: {fields} {value!r} already belongs to Workbooks record {ids} linked to "
                f"{self.entity.outreach_type} {', '.join(owners)} (Outreach duplicate)",
            ))
        return problems

    def _flag_skip_reason(self, target: Mapping[str, Any], state: RecordState | None) -> SkipReason | None:
        flags = self.entity.flags
        if flags is None:
            return None
        if not truthy(read_field(target, flags.sync_to_outreach)):
            return "sync_disabled"
        if flags.duplicate and truthy(read_field(target, flags.duplicate)):
            return "duplicate_flag"
        if truthy(read_field(target, flags.sync_error)) and not error_set_by_us(
            read_field(target, flags.sync_error_message), state, self.entity.outreach_type
        ):
            return "sync_error_flag"
        return None

    def _flag_duplicates(self, candidates: list[dict[str, Any]]) -> None:
        field = self.entity.flags.duplicate if self.entity.flags else None
        if field is None:
            return
        for record in candidates:
            if not truthy(read_field(record, field)):
                workbooks_id = int(record["id"])
                self.duplicate_flags[workbooks_id] = FlagWrite(
                    workbooks_id=workbooks_id,
                    lock_version=optional_int(record.get("lock_version")),
                    fields={field: True},
                )

    def _failed(
        self, target: Mapping[str, Any] | None, errors: list[ValidationError], base: dict[str, Any]
    ) -> Decision:
        message = "; ".join(error.message for error in errors)[:ERROR_MESSAGE_LIMIT]
        fields: dict[str, Any] = {}
        flags = self.entity.flags
        if target is not None and flags is not None:
            wanted = {flags.sync_error: True, flags.sync_error_message: message}
            fields = {
                name: value
                for name, value in wanted.items()
                if normalise_value(read_field(target, name), flag_transform(name, flags.sync_error))
                != normalise_value(value, flag_transform(name, flags.sync_error))
            }
        return Decision(action="failed", errors=errors, error=message, fields=fields, **base)

    def _create(self, row: dict[str, Any], base: dict[str, Any]) -> Decision:
        desired, pending = self._desired_values(row)
        fields = {name: value for name, value in desired.items() if not blank_value(value)}
        for name, value in self.entity.create_defaults.items():
            fields.setdefault(name, value)
        fields[self.entity.match.link_key] = row[self.entity.match.link_key]
        if self.entity.flags is not None:
            fields[self.entity.flags.sync_to_outreach] = True
        return Decision(
            action="create",
            fields=fields,
            values=self._canonical(desired, row),
            pending_relations=pending,
            **base,
        )

    def _update(
        self,
        row: dict[str, Any],
        target: Mapping[str, Any],
        state: RecordState | None,
        *,
        matched_by_natural: bool,
        base: dict[str, Any],
    ) -> Decision:
        desired, pending = self._desired_values(row)
        canonical = self._canonical_values(desired)
        values = self._canonical(desired, row, canonical)
        changed, conflicts = self._merge(desired, canonical, values, target, state, row, base["outreach_updated_at"])
        if matched_by_natural:
            changed[self.entity.match.link_key] = row[self.entity.match.link_key]
        flags = self.entity.flags
        if flags is not None and truthy(read_field(target, flags.sync_error)):
            # Reaching here with the flag set means we set it (rule 4); the record is valid now.
            changed |= {flags.sync_error: False, flags.sync_error_message: None}
        action: Action = "update" if changed else "unchanged"
        return Decision(
            action=action, fields=changed, values=values, pending_relations=pending, conflicts=conflicts, **base
        )

    def _merge(
        self,
        desired: Mapping[str, Any],
        canonical: Mapping[str, Hashable],
        values: dict[str, Any],
        target: Mapping[str, Any],
        state: RecordState | None,
        row: Mapping[str, Any],
        outreach_updated_at: datetime | None,
    ) -> tuple[dict[str, Any], list[FieldConflict]]:
        """Three-way merge (``engine.merge``): the fields Outreach wins are written; where Workbooks wins, the
        base in ``values`` stays what it was, so the Workbooks -> Outreach direction still sees the change.
        `canonical` holds the canonical form of each desired value (``_canonical_values``)."""
        changed: dict[str, Any] = {}
        conflicts: list[FieldConflict] = []
        workbooks_updated_at = record_time(target.get("updated_at"))
        for name, value in desired.items():
            field = self.field_by_name[name]
            workbooks = self._canonical_value(name, read_field(target, name))
            resolution = resolve_field(
                field,
                base=ledger_base(state, name),
                outreach=canonical[name],
                workbooks=workbooks,
                outreach_updated_at=outreach_updated_at,
                workbooks_updated_at=workbooks_updated_at,
            )
            if resolution.winner is Side.OUTREACH:
                changed[name] = value
                if resolution.conflict:
                    conflicts.append(conflict_of(
                        self.entity.name, int(row["outreach_id"]), int(target["id"]), field, state,
                        outreach=resolution.value, workbooks=workbooks, winner=Side.OUTREACH,
                    ))
            elif resolution.winner is Side.WORKBOOKS or resolution.agreed is NO_BASE:
                keep_base(values, state, name)
        return changed, conflicts

    # --- values ------------------------------------------------------------------------------------------

    def _desired_values(self, row: Mapping[str, Any]) -> tuple[dict[str, Any], list[PendingRelation]]:
        """Staged values to hold in Workbooks, with links resolved.

        An unresolvable to-one link is withheld (the Workbooks value is kept). For a to-many link the resolvable
        part is written, and the unresolved targets are pending relations, so a contact list is never held back
        as a whole by one prospect that fails; lists aligned with it (contact roles) keep the same positions.
        """
        desired: dict[str, Any] = {}
        pending: list[PendingRelation] = []
        kept_positions: dict[str, list[bool]] = {}
        for field in self.fields_to_workbooks:
            value = row.get(field.workbooks)
            if isinstance(field.transform, LinkTransform):
                value, missing = self._resolve_link(field, value)
                if missing:
                    pending.extend(self._pending(row, field, missing))
                    if not field.transform.many:
                        continue
                if field.transform.many:
                    kept = [item is not None for item in value]
                    kept_positions[field.source.relation or ""] = kept
                    value = [item for item in value if item is not None]
            if field.skip_blank and blank_value(value):
                continue
            desired[field.workbooks] = value
        for field in self.aligned_fields if kept_positions else ():
            relation = field.source.relation or ""
            if relation in kept_positions and isinstance(desired.get(field.workbooks), list):
                aligned = desired[field.workbooks]
                desired[field.workbooks] = [v for v, keep in zip(aligned, kept_positions[relation], strict=False) if keep]
        return desired, pending

    def _resolve_link(self, field: FieldMapping, value: Any) -> tuple[Any, list[int]]:
        transform = field.transform
        assert isinstance(transform, LinkTransform)
        id_map = self.id_maps.get(transform.entity, {})
        if transform.many:
            outreach_ids = [int(item) for item in (value or [])]
            missing = sorted({item for item in outreach_ids if item not in id_map})
            return [id_map.get(item) for item in outreach_ids], missing
        if blank_value(value):
            return None, []
        outreach_id = int(value)
        return (id_map[outreach_id], []) if outreach_id in id_map else (None, [outreach_id])

    def _pending(
        self, row: Mapping[str, Any], field: FieldMapping, missing: list[int]
    ) -> list[PendingRelation]:
        assert isinstance(field.transform, LinkTransform)
        return [
            PendingRelation(
                entity=self.entity.name,
                outreach_id=int(row["outreach_id"]),
                field=field.workbooks,
                target_entity=field.transform.entity,
                target_outreach_id=target,
            )
            for target in missing
        ]

    def _canonical_value(self, name: str, value: Any) -> Hashable:
        normalise = self.normalisers.get(name)
        if normalise is None:
            normalise = self.normalisers[name] = normaliser_for(self.entity.field(name).transform)
        return normalise(value)

    def _canonical_values(self, desired: Mapping[str, Any]) -> dict[str, Hashable]:
        return {name: self._canonical_value(name, value) for name, value in desired.items()}

    def _canonical(
        self, desired: Mapping[str, Any], row: Mapping[str, Any], canonical: Mapping[str, Hashable] | None = None
    ) -> dict[str, Any]:
        """The values the ledger records (JSON-ready); `canonical` when the caller already normalised `desired`."""
        canonical = self._canonical_values(desired) if canonical is None else canonical
        values: dict[str, Any] = {name: jsonable(value) for name, value in canonical.items()}
        values[self.entity.match.link_key] = normalise_link_key(row.get(self.entity.match.link_key))
        return values
