"""One step of simulated user activity: new prospects and edits of existing records, through the store."""

from __future__ import annotations

import random
from typing import Any

from pydantic import BaseModel

from outreach_pipeline.sandbox.outreach.lifecycle import create_attributes, update_attributes
from outreach_pipeline.sandbox.outreach.seed import CITIES, FIRST_NAMES, LAST_NAMES, TITLES
from outreach_pipeline.sandbox.outreach.store import (
    DuplicateEmailError,
    FieldRef,
    OutreachStore,
    RecordNotFoundError,
    SortKey,
    StoreQuery,
    format_timestamp,
)

EDITABLE_TYPES = ("prospect", "account", "opportunity")
SAMPLE_SIZE = 200


class SimulationResult(BaseModel):
    """What one step did, per resource type."""

    created: dict[str, int]
    edited: dict[str, int]


def _recent_ids(store: OutreachStore, resource_type: str) -> list[int]:
    """Ids of the most recently updated records: real users mostly touch what they touched lately."""
    newest_first = [SortKey(field=FieldRef(kind="updated_at"), descending=True)]
    return [
        record.id for record in store.query(resource_type, StoreQuery(sort=newest_first, limit=SAMPLE_SIZE))
    ]


def _new_prospect(store: OutreachStore, rng: random.Random) -> dict[str, Any]:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    serial = rng.randrange(10**12)
    attributes = {
        "firstName": first,
        "lastName": last,
        "title": rng.choice(TITLES),
        "addressCity": rng.choice(CITIES),
        "emails": [f"sim{serial}@activity.example"],
    }
    return create_attributes("prospect", attributes, format_timestamp(store.now_ms()))


def _edit_for(resource_type: str, rng: random.Random) -> dict[str, Any]:
    match resource_type:
        case "prospect":
            return rng.choice(
                (
                    {"title": rng.choice(TITLES)},
                    {"addressCity": rng.choice(CITIES)},
                    {"lastName": rng.choice(LAST_NAMES)},
                )
            )
        case "account":
            return {"numberOfEmployees": rng.randint(1, 50_000)}
    return {"probability": rng.randint(0, 100), "amount": rng.randint(1_000, 250_000)}


def simulate_outreach_step(
    store: OutreachStore, rng: random.Random, *, creates: int, edits: int
) -> SimulationResult:
    """Create `creates` prospects (linked to existing accounts) and apply `edits` edits to recent records.

    Args:
        store: the sandbox store (the app serving it sees the changes at once).
        rng: source of randomness; a seeded one makes the step reproducible.
        creates: prospects to create.
        edits: attribute edits spread over prospects, accounts and opportunities.

    Returns:
        Counts of created and edited records per type.
    """
    created = {"prospect": 0}
    edited = dict.fromkeys(EDITABLE_TYPES, 0)
    account_ids = _recent_ids(store, "account")
    for _ in range(creates):
        relationships = {"account": rng.choice(account_ids)} if account_ids and rng.random() < 0.85 else {}
        try:
            store.create("prospect", _new_prospect(store, rng), relationships)
        except DuplicateEmailError:
            continue
        created["prospect"] += 1
    candidates = {resource_type: _recent_ids(store, resource_type) for resource_type in EDITABLE_TYPES}
    available = [resource_type for resource_type in EDITABLE_TYPES if candidates[resource_type]]
    for _ in range(edits if available else 0):
        resource_type = rng.choice(available)
        record_id = rng.choice(candidates[resource_type])
        try:
            current = store.get(resource_type, record_id)
            store.update(
                resource_type,
                record_id,
                update_attributes(resource_type, current, _edit_for(resource_type, rng)),
            )
        except RecordNotFoundError:
            continue  # deleted through the API since we sampled it
        edited[resource_type] += 1
    return SimulationResult(created=created, edited=edited)
