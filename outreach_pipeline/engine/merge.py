"""Three-way merge of one mapped field: pure, shared by both sync directions so they always agree.

Values are compared in one space, the canonical Workbooks form (``normalise_value`` of the Workbooks field's
transform): the Workbooks value as read, the Outreach value staged through the mapping, and the *base*, the
value both sides last agreed on, kept per record in the ledger's ``values_json``.

Rules for a field with direction ``both``:

* both sides equal: nothing to write; they agree on that value.
* only one side differs from the base: that side wins and is written to the other.
* both differ from the base (or there is no base: the record was never synced): the field's ``conflict``
  policy decides. ``latest_wins`` compares the records' update times; a tie goes to Outreach. Every input is
  the same whichever direction evaluates it, so the winner never depends on which direction runs first, and
  only the direction that writes the winner's value records the conflict (once).

A one-way field (``to_workbooks`` / ``to_outreach``) is always taken from its source. ``skip_blank``: a blank
winner never overwrites a non-blank value; the sides then keep their values and nothing is written.

Loop prevention follows from the base: after a write both sides hold the written value and the ledger
records it as the base, so reading it back in a later window finds nothing changed and writes nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from outreach_pipeline.clients.formats import parse_wb_datetime
from outreach_pipeline.engine.ledger import FieldConflict, RecordState
from outreach_pipeline.mapping.models import FieldMapping


class Side(enum.StrEnum):
    """A system of the sync; also the side a field's value is taken from."""

    OUTREACH = "outreach"
    WORKBOOKS = "workbooks"


#: Marks a field the ledger has no base for (never synced, or synced before the field was mapped).
NO_BASE: Any = object()


@dataclass(frozen=True)
class FieldResolution:
    """What to do with one field of one linked record.

    Attributes:
        winner: the side whose value both must hold; None when nothing is to be written (equal, or a blank
            winner under skip_blank).
        value: the winning canonical value.
        conflict: both sides changed the field since the base (a conflict row belongs in the ledger).
        agreed: the base to record after this direction's writes, or NO_BASE to keep the old one (the other
            direction still has to write the winner's value).
    """

    winner: Side | None
    value: Hashable
    conflict: bool
    agreed: Any


def _blank(value: Hashable) -> bool:
    return value is None or value == () or value == ""


def resolve_field(
    field: FieldMapping,
    *,
    base: Any,
    outreach: Hashable,
    workbooks: Hashable,
    outreach_updated_at: datetime | None,
    workbooks_updated_at: datetime | None,
) -> FieldResolution:
    """Decide which side's value a field takes (see the module docstring for the rules)."""
    if outreach == workbooks:
        return FieldResolution(winner=None, value=outreach, conflict=False, agreed=outreach)
    if field.direction == "to_workbooks":
        return _take(field, Side.OUTREACH, outreach, workbooks, conflict=False)
    if field.direction == "to_outreach":
        return _take(field, Side.WORKBOOKS, workbooks, outreach, conflict=False)
    outreach_changed = base is NO_BASE or outreach != base
    workbooks_changed = base is NO_BASE or workbooks != base
    if outreach_changed and not workbooks_changed:
        return _take(field, Side.OUTREACH, outreach, workbooks, conflict=False)
    if workbooks_changed and not outreach_changed:
        return _take(field, Side.WORKBOOKS, workbooks, outreach, conflict=False)
    winner = policy_winner(field, outreach_updated_at, workbooks_updated_at)
    if winner is Side.OUTREACH:
        return _take(field, winner, outreach, workbooks, conflict=True)
    return _take(field, winner, workbooks, outreach, conflict=True)


def policy_winner(
    field: FieldMapping, outreach_updated_at: datetime | None, workbooks_updated_at: datetime | None
) -> Side:
    """The side a conflict on ``field`` goes to under its policy."""
    if field.conflict == "outreach_wins":
        return Side.OUTREACH
    if field.conflict == "workbooks_wins":
        return Side.WORKBOOKS
    if outreach_updated_at is not None and workbooks_updated_at is not None and workbooks_updated_at > outreach_updated_at:
        return Side.WORKBOOKS
    if outreach_updated_at is None and workbooks_updated_at is not None:
        return Side.WORKBOOKS
    return Side.OUTREACH


def _take(field: FieldMapping, winner: Side, value: Hashable, other: Hashable, *, conflict: bool) -> FieldResolution:
    if field.skip_blank and _blank(value) and not _blank(other):
        return FieldResolution(winner=None, value=other, conflict=conflict, agreed=NO_BASE)
    return FieldResolution(winner=winner, value=value, conflict=conflict, agreed=value)


def ledger_base(state: RecordState | None, name: str) -> Any:
    """The base of one field: its value in the ledger's last agreed values, or NO_BASE."""
    if state is None or not state.values or name not in state.values:
        return NO_BASE
    return _hashable(state.values[name])


def keep_base(values: dict[str, Any], state: RecordState | None, name: str) -> None:
    """Record the old base of ``name`` in ``values`` (the other direction has yet to write the winner)."""
    base = ledger_base(state, name)
    if base is NO_BASE:
        values.pop(name, None)
    else:
        values[name] = state.values[name] if state is not None and state.values else None


def conflict_of(
    entity: str,
    outreach_id: int,
    workbooks_id: int | None,
    field: FieldMapping,
    state: RecordState | None,
    *,
    outreach: Hashable,
    workbooks: Hashable,
    winner: Side,
) -> FieldConflict:
    """The ledger row of a field both sides changed since they last agreed."""
    base = ledger_base(state, field.workbooks)
    return FieldConflict(
        entity=entity, outreach_id=outreach_id, workbooks_id=workbooks_id, field=field.workbooks,
        base=None if base is NO_BASE else _jsonable(base), had_base=base is not NO_BASE,
        outreach_value=_jsonable(outreach), workbooks_value=_jsonable(workbooks),
        winner=winner.value, policy=field.conflict,
    )


def _hashable(value: Any) -> Hashable:
    # values_json stores tuples (lists, link lists) as JSON arrays.
    return tuple(value) if isinstance(value, list) else value


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def record_time(value: Any) -> datetime | None:
    """A record's update time as aware UTC: a Workbooks datetime (``Fri May 15 14:36:54 UTC 2009``), an ISO
    string or a datetime; None when blank or unreadable (the policy then treats that side as older)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    text = str(value).strip()
    try:
        return parse_wb_datetime(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
