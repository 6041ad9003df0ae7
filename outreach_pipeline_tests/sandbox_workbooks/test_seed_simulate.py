"""Seeding is deterministic and gives the pipeline matches and duplicates; simulation really edits."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from outreach_pipeline.sandbox.workbooks import (
    ReadQuery,
    WorkbooksStore,
    seed_workbooks,
    shared_email,
    simulate_workbooks_step,
)

NOW = datetime(2024, 3, 15, tzinfo=UTC)


def _people(store):
    return store.read("crm/people", ReadQuery()).data


def test_seed_is_deterministic_with_duplicates_and_shared_emails():
    first, second = (
        WorkbooksStore("sqlite://", clock=lambda: NOW),
        WorkbooksStore("sqlite://", clock=lambda: NOW),
    )
    counts = seed_workbooks(first, people=30, seed=7, now=NOW)
    assert counts == seed_workbooks(second, people=30, seed=7, now=NOW)
    assert counts["people"] == 30 and counts["organisations"] == 6
    people = _people(first)
    assert people == _people(second)
    emails = [str(p["main_location[email]"]).lower() for p in people]
    assert len(emails) - len(set(emails)) == 2
    assert shared_email(0) in emails
    assert any(not p["name"].isascii() for p in people)
    assert all(p["employer_link"] for p in people)


def test_simulation_creates_and_edits_through_batches():
    store = WorkbooksStore("sqlite://", clock=lambda: NOW)
    seed_workbooks(store, people=20, now=NOW)
    before = len(_people(store))
    result = simulate_workbooks_step(store, random.Random(3), creates=6, edits=6)
    assert result["created"] == 6 and result["edited"] == 6
    people = _people(store)
    assert len(people) >= before
    edited = [p for p in people if p["lock_version"] > 0]
    orgs = store.read("crm/organisations", ReadQuery()).data
    tasks = store.read("activity/tasks", ReadQuery()).data
    assert edited or any(o["lock_version"] > 0 for o in orgs) or any(t["lock_version"] > 0 for t in tasks)
