"""Pure planner, Workbooks -> Outreach: one decision per selected Workbooks record, no I/O.

Inputs are what the caller read: the Workbooks records of a window (selected by their flags), the current
Outreach twins of the linked ones, staged into Workbooks form by the same mapping the other direction uses,
the ledger states by Workbooks id (the base of the three-way merge) and id maps for links.

Rules per record:

1. Flags: Sync to Outreach must be TRUE, Outreach Sync Error and Outreach Duplicate FALSE (``flagged``).
1a. A stale read: the record's lock_version is older than the one the ledger's values came from (another run,
   overlapping this one, synced a newer version either way since this read): ``skip`` (``stale_read``), so
   an older read never writes its values back over a newer sync, nor creates a second twin of a record that
   run linked.
2. Unlinked (blank Outreach Id): ``create`` with every non-blank field the mapping writes to Outreach
   (``to_outreach`` and ``both``), including the key written on create (``externalId``/``customId`` =
   ``object_ref``) by which a create whose reply was lost is found again. The key is written on create only:
   records linked from the Outreach side are not patched for it.
3. Linked, but Outreach no longer has the record: ``skip`` (``outreach_missing``; reconcile flags it).
4. Linked: per field the three-way merge (``engine.merge``) decides; the fields Workbooks wins are written
   (``update``), else ``unchanged``. The values recorded as the new base are the agreed ones; where Outreach
   wins, the old base stays, so the Outreach -> Workbooks direction still writes it.

Fields the Outreach API cannot take from a Workbooks value (attributes of related records such as the stage
name, the prospect-role lists) are left to the Outreach -> Workbooks direction.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from outreach_pipeline.clients.outreach_records import ResourceRef
from outreach_pipeline.engine.ledger import FieldConflict, RecordState
from outreach_pipeline.engine.merge import NO_BASE, Side, conflict_of, ledger_base, record_time, resolve_field
from outreach_pipeline.engine.plan import read_field
from outreach_pipeline.mapping.models import (
    EntityMapping,
    FieldMapping,
    LinkTransform,
    PicklistTransform,
    WbCurrencyTransform,
)
from outreach_pipeline.mapping.normalise import is_blank, normalise_link_key, normalise_value

#: The Workbooks column read back as each record's update time (latest_wins).
UPDATED_AT = "updated_at"
#: The Workbooks field whose value is written as the Outreach record's key on create.
OBJECT_REF = "object_ref"


class OutreachMemberAction(enum.StrEnum):
    """Outreach member actions a decision may need after its write (a read-only attribute changes only so)."""

    MARK_COMPLETE = "markComplete"


#: (Outreach type, attribute) -> {value: action}: attributes written only through a member action.
ACTION_ATTRIBUTES: dict[tuple[str, str], dict[str, OutreachMemberAction]] = {
    ("task", "state"): {"complete": OutreachMemberAction.MARK_COMPLETE},
}
#: (Outreach type, read-only relationship) -> the writable relationship that sets it (a task's `prospect` is
#: read-only; its polymorphic `subject` is written with the prospect as target).
WRITTEN_THROUGH: dict[tuple[str, str], str] = {("task", "prospect"): "subject"}


class OutreachAction(enum.StrEnum):
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    SKIP = "skip"
    FAILED = "failed"


class OutreachDecision(BaseModel):
    """What to do in Outreach for one Workbooks record.

    Attributes:
        attributes / relationships: what to send (all for a create, the Workbooks-won fields for an update).
        values: the agreed base to record after the write (canonical Workbooks form), None when not applied.
        create_key: (Outreach attribute, value) written on create, to find a create whose reply was lost.
        outreach_won: fields Outreach wins (canonical values), which the Outreach -> Workbooks direction writes;
            for an adopted prospect the link-back writes them, as no Outreach change brings it to that direction.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    workbooks_id: int
    action: OutreachAction
    outreach_id: int | None = None
    reason: str | None = None
    error: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    relationships: dict[str, Any] = Field(default_factory=dict)
    actions: list[OutreachMemberAction] = Field(default_factory=list)
    values: dict[str, Any] | None = None
    conflicts: list[FieldConflict] = Field(default_factory=list)
    create_key: tuple[str, str] | None = None
    email: str | None = None
    outreach_won: dict[str, Any] = Field(default_factory=dict)
    workbooks_lock_version: int | None = None  # of the Workbooks record as read


class OutreachTwin(BaseModel):
    """The current Outreach record of a linked Workbooks record, staged into Workbooks form."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    outreach_id: int
    updated_at: datetime | None
    attributes: dict[str, Any]
    staged: dict[str, Any]


def plan_to_outreach(
    entity: EntityMapping,
    records: list[Mapping[str, Any]],
    twins: Mapping[int, OutreachTwin],
    states: Mapping[int, RecordState],
    to_outreach_ids: Mapping[str, Mapping[int, int]],
    to_workbooks_ids: Mapping[str, Mapping[int, int]],
) -> list[OutreachDecision]:
    """Decisions in Workbooks-id order.

    Args:
        records: Workbooks records (id, updated_at, link key, flags, mapped fields, object_ref).
        twins: current Outreach records by Outreach id.
        states: ledger states by Workbooks id.
        to_outreach_ids: per link-target entity, Workbooks id -> Outreach id (writing links to Outreach).
        to_workbooks_ids: per link-target entity, Outreach id -> Workbooks id (reading Outreach links).
    """
    planner = _OutreachPlanner(entity, twins, states, to_outreach_ids, to_workbooks_ids)
    return [planner.decide(dict(r)) for r in sorted(records, key=lambda r: int(r["id"]))]


class _OutreachPlanner:
    def __init__(
        self,
        entity: EntityMapping,
        twins: Mapping[int, OutreachTwin],
        states: Mapping[int, RecordState],
        to_outreach_ids: Mapping[str, Mapping[int, int]],
        to_workbooks_ids: Mapping[str, Mapping[int, int]],
    ) -> None:
        self.entity = entity
        self.twins = twins
        self.states = states
        self.to_outreach_ids = to_outreach_ids
        self.to_workbooks_ids = to_workbooks_ids
        self.fields = [f for f in entity.to_outreach_fields() if writable_to_outreach(f)]

    def decide(self, record: dict[str, Any]) -> OutreachDecision:
        workbooks_id = int(record["id"])
        flags = self.entity.flags
        if flags is not None and (
            not _truthy(read_field(record, flags.sync_to_outreach))
            or _truthy(read_field(record, flags.sync_error))
            or (flags.duplicate is not None and _truthy(read_field(record, flags.duplicate)))
        ):
            return OutreachDecision(workbooks_id=workbooks_id, action=OutreachAction.SKIP, reason="flagged")
        outreach_id = outreach_link(self.entity, read_field(record, self.entity.match.link_key))
        if outreach_id is None:
            if read_is_stale(record, self.states.get(workbooks_id)):
                # Another run linked it since this read: creating from the read would make a second record.
                return OutreachDecision(workbooks_id=workbooks_id, action=OutreachAction.SKIP, reason="stale_read")
            return self._create(record, workbooks_id).model_copy(
                update={"workbooks_lock_version": _lock_version(record)})
        twin = self.twins.get(outreach_id)
        if twin is None:
            return OutreachDecision(
                workbooks_id=workbooks_id, outreach_id=outreach_id, action=OutreachAction.SKIP,
                reason="outreach_missing",
            )
        state = self.states.get(workbooks_id)
        if read_is_stale(record, state):
            return OutreachDecision(workbooks_id=workbooks_id, outreach_id=outreach_id, action=OutreachAction.SKIP,
                                    reason="stale_read")
        return self._update(record, workbooks_id, twin, state).model_copy(
            update={"workbooks_lock_version": _lock_version(record)})

    def _create(self, record: dict[str, Any], workbooks_id: int) -> OutreachDecision:
        attributes: dict[str, Any] = {}
        relationships: dict[str, Any] = {}
        actions: list[OutreachMemberAction] = []
        values: dict[str, Any] = {}
        for field in self.fields:
            value = self.canonical_workbooks(field, record)
            if value is None or value == ():
                if field.required:
                    return OutreachDecision(workbooks_id=workbooks_id, action=OutreachAction.SKIP,
                                            reason="required_blank")
                if field.direction == "both":
                    # Blank on both sides once created: the agreed base, so a later change of the field on one side
                    # is that side's change, not a conflict decided by the records' update times.
                    values[field.workbooks] = None
                continue
            try:
                self._write(field, value, attributes, relationships, actions)
            except _Unresolved:
                if field.required:
                    # e.g. a task whose contact is not a synced Person: read again every window until it is.
                    return OutreachDecision(workbooks_id=workbooks_id, action=OutreachAction.SKIP,
                                            reason="link_not_synced")
                continue  # the target is not in Outreach yet: the link is written once it is
            if field.direction == "both":
                values[field.workbooks] = _jsonable(value)
        key = self._create_key(record)
        if key is not None:
            attributes[key[0]] = key[1]
        return OutreachDecision(
            workbooks_id=workbooks_id, action=OutreachAction.CREATE, attributes=attributes,
            relationships=relationships, actions=actions, values=values, create_key=key, email=self._email(record),
        )

    def _update(
        self, record: dict[str, Any], workbooks_id: int, twin: OutreachTwin, state: RecordState | None
    ) -> OutreachDecision:
        attributes: dict[str, Any] = {}
        relationships: dict[str, Any] = {}
        actions: list[OutreachMemberAction] = []
        values: dict[str, Any] = dict(state.values or {}) if state is not None else {}
        conflicts: list[FieldConflict] = []
        outreach_won: dict[str, Any] = {}
        for field in self.fields:
            if field.workbooks == OBJECT_REF:
                continue  # the create key: written on create only (a PATCH per linked record would cost more)
            workbooks_value = self.canonical_workbooks(field, record)
            try:
                outreach_value = self.canonical_outreach(field, twin)
            except _Unresolved:
                continue  # Outreach points at a record Workbooks does not have: the other direction's pending link
            resolution = resolve_field(
                field, base=ledger_base(state, field.workbooks), outreach=outreach_value, workbooks=workbooks_value,
                outreach_updated_at=twin.updated_at, workbooks_updated_at=record_time(record.get(UPDATED_AT)),
            )
            if resolution.winner is Side.OUTREACH:
                outreach_won[field.workbooks] = _jsonable(outreach_value)
            if resolution.winner is Side.WORKBOOKS:
                try:
                    self._write(field, workbooks_value, attributes, relationships, actions, current=twin.attributes)
                except _Unresolved:
                    continue
                if resolution.conflict:
                    conflicts.append(conflict_of(
                        self.entity.name, twin.outreach_id, workbooks_id, field, state,
                        outreach=outreach_value, workbooks=workbooks_value, winner=Side.WORKBOOKS,
                    ))
            if field.direction != "both":
                continue
            if resolution.winner is Side.WORKBOOKS or (resolution.winner is None and resolution.agreed is not NO_BASE):
                values[field.workbooks] = _jsonable(resolution.value)
        action = OutreachAction.UPDATE if attributes or relationships or actions else OutreachAction.UNCHANGED
        return OutreachDecision(
            workbooks_id=workbooks_id, outreach_id=twin.outreach_id, action=action, attributes=attributes,
            relationships=relationships, actions=actions, values=values, conflicts=conflicts,
            outreach_won=outreach_won,
        )

    # --- values ------------------------------------------------------------------------------------------

    def canonical_workbooks(self, field: FieldMapping, record: Mapping[str, Any]) -> Hashable:
        value = read_field(record, field.workbooks)
        if field.workbooks == OBJECT_REF:
            return None if is_blank(value) else str(value).strip()
        return normalise_value(value, field.transform)

    def canonical_outreach(self, field: FieldMapping, twin: OutreachTwin) -> Hashable:
        """The Outreach record's value in canonical Workbooks form (links as Workbooks ids)."""
        if field.workbooks == OBJECT_REF:
            value = twin.attributes.get(field.source.column)
            return None if is_blank(value) else str(value).strip()
        value = twin.staged.get(field.workbooks)
        transform = field.transform
        if isinstance(transform, LinkTransform) and not transform.many:
            if is_blank(value):
                return None
            mapped = self.to_workbooks_ids.get(transform.entity, {}).get(int(value))
            if mapped is None:
                raise _Unresolved
            return mapped
        return normalise_value(value, transform)

    def _write(
        self,
        field: FieldMapping,
        value: Hashable,
        attributes: dict[str, Any],
        relationships: dict[str, Any],
        actions: list[OutreachMemberAction],
        *,
        current: Mapping[str, Any] | None = None,
    ) -> None:
        """Add the Outreach form of a canonical Workbooks value to a write (the reverse transform)."""
        source = field.source
        transform = field.transform
        outreach_type = self.entity.outreach_type
        if isinstance(transform, LinkTransform):
            relation = source.column.removesuffix("Id")
            through = WRITTEN_THROUGH.get((outreach_type, relation))
            if value is None:
                relationships[through or relation] = None
                return
            target = self.to_outreach_ids.get(transform.entity, {}).get(int(value))  # type: ignore[arg-type]
            if target is None:
                raise _Unresolved
            relationships[through or relation] = ResourceRef(relation, target) if through else target
            return
        outreach_value = to_outreach_value(field, value)
        if (outreach_type, source.column) in ACTION_ATTRIBUTES:
            # Read-only in Outreach: only the values an action sets are reached, the others are left.
            if (action := ACTION_ATTRIBUTES[(outreach_type, source.column)].get(str(outreach_value))) is not None:
                actions.append(action)
            return
        if isinstance(transform, WbCurrencyTransform):
            amount, code = outreach_value if outreach_value is not None else (None, None)
            attributes[source.column] = amount
            if code is not None:
                attributes[transform.currency_source] = code
            return
        if source.kind == "element":
            assert source.index is not None
            items = list(attributes.get(source.column) or (current or {}).get(source.column) or [])
            items += [None] * (source.index + 1 - len(items))
            items[source.index] = outreach_value
            while items and items[-1] is None:
                items.pop()
            attributes[source.column] = [item for item in items if item is not None]
            return
        attributes[source.column] = outreach_value

    def _create_key(self, record: Mapping[str, Any]) -> tuple[str, str] | None:
        for field in self.entity.to_outreach_fields():
            if field.workbooks == OBJECT_REF and not is_blank(record.get(OBJECT_REF)):
                return field.source.column, str(record[OBJECT_REF]).strip()
        return None

    def _email(self, record: Mapping[str, Any]) -> str | None:
        if not self.entity.match.outreach_duplicate_filter or not self.entity.match.natural_keys:
            return None
        value = read_field(record, self.entity.match.natural_keys[0])
        return None if is_blank(value) else str(value).strip()


class _Unresolved(Exception):
    """A link whose target is not synced on the side it must be written to."""


def read_is_stale(record: Mapping[str, Any], state: RecordState | None) -> bool:
    """Whether this Workbooks read is older than the version the ledger's values came from.

    Another run wrote the record since it was read (its Workbooks -> Outreach write of a newer version, or an
    Outreach -> Workbooks write into Workbooks): planning from the read would write the older values back over
    what that run synced. The newer version is synced already; a later change is read by its own window.
    """
    read = _lock_version(record)
    known = state.workbooks_lock_version if state is not None else None
    return read is not None and known is not None and read < known


def _lock_version(record: Mapping[str, Any]) -> int | None:
    value = record.get("lock_version")
    return None if value is None or value != value else int(value)  # value != value: NaN from a frame


def outreach_link(entity: EntityMapping, value: Any) -> int | None:
    """The Outreach id in a Workbooks link-key value (``17``, ``"17"``, ``"task:17"``), None when blank."""
    if is_blank(value):
        return None
    link = normalise_link_key(str(value).strip().removeprefix(entity.match.link_prefix))
    return int(link) if link is not None and link.isdigit() else None


def writable_to_outreach(field: FieldMapping) -> bool:
    """Whether a Workbooks value can be written back to the Outreach source of ``field``.

    Attributes of related records (``opportunityStage.name``) and collections (prospect roles) are not a
    field of the record in Outreach, so the Workbooks -> Outreach direction leaves them alone.
    """
    return field.source.kind in {"column", "element"} and not (
        isinstance(field.transform, LinkTransform) and field.transform.many
    )


def to_outreach_value(field: FieldMapping, value: Hashable) -> Any:
    """The reverse transform: a canonical Workbooks value as Outreach takes it."""
    if value is None:
        return None
    transform = field.transform
    kind = transform.kind
    if kind == "wb_date":
        return f"{value}T00:00:00.000Z"
    if kind == "wb_datetime":
        return str(value).replace("+00:00", ".000Z")
    if kind == "wb_currency":
        amount, _, code = str(value).partition(" ")
        return int(Decimal(amount)), (code or None)
    if isinstance(transform, PicklistTransform):
        reverse = {str(mapped): source for source, mapped in transform.values.items()}
        return reverse.get(str(value), value)
    return value


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() in {"1", "true", "t", "yes"}) or value == 1


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
