"""The planner's vocabulary: the decision per staged record, flag writes and the plan (engine/plan.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from outreach_pipeline.engine.ledger import FieldConflict, PendingRelation
from outreach_pipeline.engine.outcome import Outcome
from outreach_pipeline.mapping.errors import ValidationError

Action = Literal["create", "update", "unchanged", "skip", "failed"]
SkipReason = Literal[
    "stale_version",
    "superseded",
    "duplicate_match",
    "sync_disabled",
    "duplicate_flag",
    "sync_error_flag",
    "no_match",
]
IdMaps = Mapping[str, Mapping[int, int]]
#: Optional staged column: other Outreach ids holding the row's natural key, as found in Outreach by the caller.
SHARERS_COLUMN = "natural_key_sharers"
ERROR_MESSAGE_LIMIT = 4000

_OUTCOME_OF_ACTION: dict[str, Outcome] = {
    "create": Outcome.CREATED,
    "update": Outcome.UPDATED,
    "unchanged": Outcome.UNCHANGED,
    "skip": Outcome.SKIPPED,
    "failed": Outcome.FAILED,
}


class PlanModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)


class Decision(PlanModel):
    """What to do with one staged record.

    Attributes:
        fields: what to write: every non-blank field for a create, only the changed ones for an update,
            the error flag and message for a failure on an existing record; empty otherwise.
        values: the canonical values Workbooks holds after the write (for the ledger's hash), or None when
            nothing is applied.
        error: the message written to Outreach Sync Error Message (failed decisions).
    """

    outreach_id: int
    action: Action
    reason: SkipReason | None = None
    workbooks_id: int | None = None
    lock_version: int | None = None
    fields: dict[str, Any] = Field(default_factory=dict)
    values: dict[str, Any] | None = None
    errors: list[ValidationError] = Field(default_factory=list)
    error: str | None = None
    pending_relations: list[PendingRelation] = Field(default_factory=list)
    outreach_updated_at: datetime | None = None
    conflicts: list[FieldConflict] = Field(default_factory=list)

    @property
    def ledger_outcome(self) -> Outcome:
        """The ledger outcome this decision records once applied."""
        return _OUTCOME_OF_ACTION[self.action]


class FlagWrite(PlanModel):
    """An update of one Workbooks record's flags outside any decision (Outreach Duplicate = TRUE)."""

    workbooks_id: int
    lock_version: int | None
    fields: dict[str, Any]


class SyncPlan(PlanModel):
    """The plan of one entity for one window: decisions in outreach-id order, flag writes in id order."""

    entity: str
    decisions: list[Decision]
    duplicate_flags: list[FlagWrite] = Field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Number of decisions per action."""
        return dict(Counter(decision.action for decision in self.decisions))

    @property
    def pending_relations(self) -> list[PendingRelation]:
        """Every unresolved link of the plan."""
        return [relation for decision in self.decisions for relation in decision.pending_relations]
