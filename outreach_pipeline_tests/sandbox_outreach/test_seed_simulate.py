"""Seeder determinism and planted edge cases; the activity simulator's creates and edits."""

from __future__ import annotations

import random
from collections import Counter

from outreach_pipeline.sandbox.outreach.seed import seed_outreach
from outreach_pipeline.sandbox.outreach.simulate import simulate_outreach_step
from outreach_pipeline.sandbox.outreach.store import OutreachStore, StoreQuery

from .conftest import PINNED_NOW


def _dump(store: OutreachStore, resource_type: str) -> list:
    records = store.query(resource_type, StoreQuery(limit=100_000))
    return [record.model_dump() for record in records]


def test_seed_is_deterministic_and_defaults_ratios() -> None:
    first, second = OutreachStore(), OutreachStore()
    counts = seed_outreach(first, prospects=200, seed=9, now=PINNED_NOW)
    seed_outreach(second, prospects=200, seed=9, now=PINNED_NOW)
    assert counts["account"] == 40 and counts["opportunity"] == 20 and counts["prospect"] == 202
    for resource_type in ("prospect", "opportunityProspectRole", "task", "sequenceState"):
        assert _dump(first, resource_type) == _dump(second, resource_type)
    other = OutreachStore()
    seed_outreach(other, prospects=200, seed=10, now=PINNED_NOW)
    assert _dump(other, "prospect") != _dump(first, "prospect")


def test_seed_plants_edge_cases() -> None:
    store = OutreachStore()
    seed_outreach(store, prospects=300, seed=1, now=PINNED_NOW, days=30)
    prospects = store.query("prospect", StoreQuery(limit=10_000))
    emails = Counter(email for p in prospects for email in p.attributes.get("emails", []))
    assert any(count > 1 for count in emails.values()), "no duplicate emails"
    assert any(not p.attributes.get("emails") for p in prospects), "no prospect without email"
    assert any("account" not in p.relationships for p in prospects), "no prospect without account"
    assert any(not p.attributes.get("firstName", "").isascii() for p in prospects), "no non-ASCII names"
    assert any(len(p.attributes.get("firstName", "")) == 255 for p in prospects)
    assert any(len(p.attributes.get("addressCity") or "") > 255 for p in prospects)
    shared = Counter(p.updated_at for p in prospects).most_common(1)[0][1]
    assert shared >= 20
    span_days = (max(p.updated_at for p in prospects) - min(p.updated_at for p in prospects)) / 86_400_000
    assert 20 < span_days <= 30
    states = {s.attributes["state"] for s in store.query("sequenceState", StoreQuery(limit=10_000))}
    assert {"active", "paused", "finished", "pending"} <= states
    tasks = store.query("task", StoreQuery(limit=10_000))
    assert {t.attributes["action"] for t in tasks} == {"action_item", "call", "email", "in_person"}


def test_simulator_creates_and_edits() -> None:
    store = OutreachStore()
    seed_outreach(store, prospects=50, seed=2, now=PINNED_NOW)
    before = store.count_all()["prospect"]
    result = simulate_outreach_step(store, random.Random(4), creates=5, edits=12)
    assert store.count_all()["prospect"] == before + 5 == before + result.created["prospect"]
    assert sum(result.edited.values()) == 12
    edited = store.query("prospect", StoreQuery(limit=10_000))
    assert sum(1 for p in edited if p.updated_at > store.now_ms() - 60_000) >= 5
