"""Which Outreach window reads an extract skips because the webhook hints prove the window quiet.

The rules are `engine.webhook_hints`'s; this module names, per extract, the Outreach types its window read
covers (a delivery of any of them means the read happens) and turns the decision into the extract's plan and
its materialization metadata: `window_read` (the reason: `quiet_by_webhook` when skipped, else why it read),
`reads_skipped_quiet_by_webhook` (window reads not made) and, for a sweep reading back, `window_read_from`.
"""

from __future__ import annotations

from typing import Any

from outreach_pipeline.defs.resources import SyncSettings
from outreach_pipeline.engine.extract import WindowReadPlan
from outreach_pipeline.engine.ledger import SyncLedger, SyncWindow
from outreach_pipeline.engine.webhook_hints import WebhookHints, WindowRead

#: Per extract (its Outreach collection), the types whose window reads it makes: opportunities also read the
#: prospect roles changed in the window.
WINDOW_READ_TYPES: dict[str, tuple[str, ...]] = {
    "accounts": ("account",),
    "prospects": ("prospect",),
    "opportunities": ("opportunity", "opportunityProspectRole"),
    "tasks": ("task",),
    "calls": ("call",),
    "sequences": ("sequence",),
    "sequenceStates": ("sequenceState",),
}


def window_read(ledger: SyncLedger, settings: SyncSettings, collection: str, window: SyncWindow,
                *, from_beginning: bool) -> WindowRead:
    """The decision for one extract's window read over `window` (a range of hourly windows)."""
    return WebhookHints(ledger.engine).window_read(
        WINDOW_READ_TYPES[collection], window.start, window.end, grace=settings.webhook_grace(),
        sweep_hours=settings.webhook_sweep_hours, enabled=settings.webhook_hints, from_beginning=from_beginning,
    )


def read_plan(decision: WindowRead) -> WindowReadPlan:
    return WindowReadPlan(read=not decision.skipped, read_from=decision.read_from)


def read_metadata(collection: str, decision: WindowRead, window: SyncWindow) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "window_read": decision.reason.value,
        "reads_skipped_quiet_by_webhook": len(WINDOW_READ_TYPES[collection]) if decision.skipped else 0,
    }
    if decision.read_from < window.start:
        metadata["window_read_from"] = decision.read_from.isoformat()
    return metadata
