"""Sync engine: extract (extract.py), the pure planner (plan.py), the loader (load.py), the ledger (ledger.py)."""

from outreach_pipeline.engine.ledger import (
    PendingRelation,
    RecordOutcome,
    RecordState,
    SyncLedger,
    SyncWindow,
)
from outreach_pipeline.engine.plan import Decision, FlagWrite, SyncPlan, plan_sync

__all__ = [
    "Decision",
    "FlagWrite",
    "PendingRelation",
    "RecordOutcome",
    "RecordState",
    "SyncLedger",
    "SyncPlan",
    "SyncWindow",
    "plan_sync",
]
