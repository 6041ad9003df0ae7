"""Dry run: the planners' own decisions, with no write to Outreach, Workbooks or the sync ledger.

The same lookups and planners as a live run (`EntityLoader`, `OutreachWriter`), then, instead of each write,
the outcome the write would record; nothing else differs, so a live run straight after, with no source change,
gives the same counts. What a dry run cannot know is reported as the plan says:

* a write Workbooks or Outreach would refuse (a value the API rejects) counts as created or updated;
* a create Outreach refuses because another prospect holds the email (adopted in a live run) counts as created;
* a record linking to one the same dry run would create sees that link as pending (its own outcome is the same),
  and an update-only record (a sequence state) onto a Person the dry run would create counts as skipped
  (`no_match`); a live run updates it.

Reads of the ledger are allowed; its writing methods are no-ops, and any method not classified here raises
`DryRunViolation`, so a new ledger method cannot write from a dry run unnoticed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from outreach_pipeline.engine.ledger import SyncLedger
from outreach_pipeline.engine.load import EntityLoader, LoadResult, lookup_twins, resolve_id_maps
from outreach_pipeline.engine.load_outreach import RESULT_COLUMNS, Flag, OutreachWriter
from outreach_pipeline.engine.outcome import Outcome
from outreach_pipeline.engine.plan import SyncPlan, plan_sync
from outreach_pipeline.engine.plan_outreach import OutreachAction, OutreachDecision

#: Column of a dry run's outcomes: per written field, {"old": value now, "new": value the write would set}.
CHANGES_COLUMN = "changes"
#: Ledger methods that only read (delegated) and that write (no-ops in a dry run).
LEDGER_READS = frozenset({
    "engine", "get_states", "states_by_workbooks_id", "written_in_window", "linked_ids", "failed_ids",
    "pending_relations", "history", "conflicts", "run_summary", "url", "failures", "stuck_records",
    "retry_schedule", "to_outreach_failures_of",
})
LEDGER_WRITES = frozenset({"start_run", "finish_run", "record_outcomes", "record_conflicts", "unlink",
                           "record_to_outreach"})


class DryRunViolation(RuntimeError):
    """A dry run reached a ledger method that is not known to be read-only."""


class ReadOnlyLedger:
    """A `SyncLedger` whose reads pass through and whose writes do nothing."""

    def __init__(self, ledger: SyncLedger) -> None:
        self._ledger = ledger

    def __getattr__(self, name: str) -> Any:
        if name in LEDGER_WRITES:
            return lambda *args, **kwargs: None
        if name in LEDGER_READS:
            return getattr(self._ledger, name)
        raise DryRunViolation(f"the dry run reached SyncLedger.{name}, which is not classified as a read or a write "
                              "(engine/dry_run.py LEDGER_READS / LEDGER_WRITES)")


def _plain(value: Any) -> Any:
    """A value as JSON can hold it (dates as ISO text, numpy scalars as Python ones)."""
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    try:
        return None if pd.isna(value) else value
    except (TypeError, ValueError):
        return str(value)


def field_changes(new: Mapping[str, Any], old: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Per written field, the value now (None for a create) and the value the write would set."""
    return {name: {"old": _plain((old or {}).get(name)), "new": _plain(value)} for name, value in new.items()}


class DryRunLoader(EntityLoader):
    """`EntityLoader` that plans once and records what each write would do; see the module docstring."""

    def __init__(self, *, ledger: SyncLedger, **kwargs: Any) -> None:
        super().__init__(ledger=ReadOnlyLedger(ledger), **kwargs)  # type: ignore[arg-type]
        self._twins: dict[int, dict[str, Any]] = {}
        self._changes: dict[int, dict[str, dict[str, Any]]] = {}

    def load(self, staged: pd.DataFrame) -> LoadResult:
        """The live load's outcomes and counts, plus `CHANGES_COLUMN` (old and new value per field)."""
        result = super().load(staged)
        result.outcomes[CHANGES_COLUMN] = [self._changes.get(int(i), {}) for i in result.outcomes["outreach_id"]]
        return result

    def _load_rounds(self, staged: pd.DataFrame, states: Mapping[int, Any], final: dict) -> None:
        # One round: nothing is written, so nothing is uncertain.
        id_maps = resolve_id_maps(self.client, self.ledger, self.mappings, self.entity, staged)  # type: ignore[arg-type]
        staged = self._with_outreach_holders(staged)
        twins = lookup_twins(self.client, self.entity, staged)
        self._twins = {int(twin["id"]): twin for twin in twins}
        self._apply(plan_sync(staged, self.entity, twins, states, id_maps), final, {})

    def _apply(self, plan: SyncPlan, final: dict, intended: dict[int, str]) -> dict[int, str]:
        for decision in plan.decisions:
            final[decision.outreach_id] = self._outcome(decision, applied=None)
            if decision.fields and decision.action in ("create", "update"):
                old = self._twins.get(decision.workbooks_id) if decision.workbooks_id is not None else None
                self._changes[decision.outreach_id] = field_changes(decision.fields, old)
        return {}


class DryRunOutreachWriter(OutreachWriter):
    """`OutreachWriter` that plans and reports each create and update instead of making it."""

    result_columns = (*RESULT_COLUMNS, CHANGES_COLUMN)

    def __init__(self, *, ledger: SyncLedger, **kwargs: Any) -> None:
        super().__init__(ledger=ReadOnlyLedger(ledger), **kwargs)  # type: ignore[arg-type]
        self._dry_twins: dict = {}

    def _read_twins(self, linked: Sequence[int]) -> dict:
        self._dry_twins = super()._read_twins(linked)
        return self._dry_twins

    def _apply(self, decision: OutreachDecision) -> tuple[dict[str, Any], None]:
        if decision.action not in (OutreachAction.CREATE, OutreachAction.UPDATE):
            result, _ = super()._apply(decision)  # skip, failed, unchanged: nothing is written
            return result, None
        twin = self._dry_twins.get(decision.outreach_id) if decision.outreach_id is not None else None
        new = {**decision.attributes, **{f"{k}Id": _plain(getattr(v, "id", v)) for k, v in decision.relationships.items()}}
        old = {**(twin.attributes if twin else {}), **(twin.staged if twin else {})}
        outcome = Outcome.CREATED if decision.action is OutreachAction.CREATE else Outcome.UPDATED
        return {"workbooks_id": decision.workbooks_id, "outreach_id": decision.outreach_id, "reason": decision.reason,
                "error": None, "link": decision.action is OutreachAction.CREATE, "flag": None, "fields": None,
                "outcome": outcome, CHANGES_COLUMN: field_changes(new, old if twin else None)}, None


def planned_links(results: pd.DataFrame) -> dict[str, int]:
    """What the link-back step would write for a dry run's Outreach results (it writes nothing)."""
    links = int(results["link"].fillna(False).astype(bool).sum()) if len(results) else 0
    flags = int(results["flag"].isin([Flag.DUPLICATE, Flag.SYNC_ERROR]).sum()) if len(results) else 0
    return {"links_to_write": links, "flags_to_write": flags}
