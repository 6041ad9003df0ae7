"""Deterministic seed data for the Outreach sandbox, from a handful to a million prospects.

Legacy oddities are planted on purpose, as real orgs have them: non-ASCII names, prospects without
emails or with another prospect's email, values at and over length limits, prospects without accounts,
and a "bulk import" instant that many records share as their updatedAt.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from outreach_pipeline.sandbox.outreach.lifecycle import SEQUENCE_STATES, TASK_STATES
from outreach_pipeline.sandbox.outreach.store import OutreachStore, format_timestamp, to_epoch_ms

DAY_MS = 86_400_000
FIRST_NAMES = (
    "Alice",
    "Bob",
    "Chloé",
    "Dmitri",
    "Émilie",
    "Farah",
    "Günther",
    "Hana",
    "Ibrahim",
    "José",
    "Kofi",
    "Łukasz",
    "Mia",
    "Nuño",
    "Olivia",
    "Priya",
    "Quentin",
    "Renée",
    "Søren",
    "Tomás",
    "Uma",
    "Wei",
    "Zoë",
)
LAST_NAMES = (
    "Anderson",
    "Brown",
    "Çelik",
    "Dubois",
    "Eriksson",
    "Fernández",
    "García",
    "Håkansson",
    "Ivanova",
    "Jones",
    "Kowalski",
    "Lefèvre",
    "Müller",
    "Nakamura",
    "O'Brien",
    "Patel",
    "Rossi",
    "Smith",
    "Søndergaard",
    "Taylor",
    "Wright",
    "Zhang",
    "李",
)
COMPANY_WORDS = (
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Vandelay",
    "Stark",
    "Wayne",
    "Tyrell",
    "Nordström",
)
COMPANY_SUFFIXES = ("Ltd", "plc", "Inc", "GmbH", "LLP", "S.A.", "Group")
INDUSTRIES = ("Software", "Manufacturing", "Retail", "Healthcare", "Finance", "Education", "Logistics")
TITLES = ("CEO", "CTO", "Head of Sales", "Marketing Manager", "Operations Director", "Engineer", "Buyer")
CITIES = ("London", "Manchester", "München", "Paris", "Zürich", "København", "New York", "São Paulo")
TAGS = ("Interested", "2017 Expo", "Webinar", "Partner", "VIP")
STAGE_NAMES = ("Cold", "Approaching", "Replied", "Interested", "Not Interested", "Unresponsive")
OPPORTUNITY_STAGES = (
    ("Prospecting", False),
    ("Qualification", False),
    ("Proposal", False),
    ("Negotiation", False),
    ("Closed Won", True),
    ("Closed Lost", True),
)
TASK_ACTIONS = ("action_item", "call", "email", "in_person")
ROLES = ("Decision Maker", "Economic Buyer", "Influencer", "Technical Buyer", "Champion")
STEP_TYPES = ("auto_email", "manual_email", "call", "task")
CALL_OUTCOMES = ("Answered", "Not Answered")
# Every Nth prospect is shaped by a planted edge case.
NO_EMAIL_EVERY = 20
DUPLICATE_EMAIL_EVERY = 97
NO_ACCOUNT_EVERY = 7
SHARED_UPDATED_AT_EVERY = 11


class _Clock:
    """Random created/updated instants within the last `days` days before `now_ms`."""

    def __init__(self, rng: random.Random, now_ms: int, days: int) -> None:
        self.rng = rng
        self.now_ms = now_ms
        self.start_ms = now_ms - days * DAY_MS
        # The instant a pretend bulk import touched many records at once.
        self.shared_ms = self.start_ms + (now_ms - self.start_ms) // 2

    def stamps(self) -> tuple[int, int]:
        created = self.rng.randint(self.start_ms, self.now_ms)
        return created, self.rng.randint(created, self.now_ms)

    def text(self) -> str:
        return format_timestamp(self.rng.randint(self.start_ms, self.now_ms))


def _row(
    clock: _Clock, attributes: dict[str, Any], relationships: dict[str, Any] | None = None
) -> dict[str, Any]:
    created, updated = clock.stamps()
    return {
        "created_at": created,
        "updated_at": updated,
        "attributes": attributes,
        "relationships": relationships or {},
    }


def _users(rng: random.Random, clock: _Clock, count: int) -> Iterator[dict[str, Any]]:
    for index in range(count):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        yield _row(
            clock,
            {
                "firstName": first,
                "lastName": last,
                "name": f"{first} {last}",
                "email": f"user{index + 1}@sandbox.example",
                "username": f"user{index + 1}",
                "title": rng.choice(TITLES),
                "locked": False,
            },
        )


def _accounts(rng: random.Random, clock: _Clock, count: int, users: list[int]) -> Iterator[dict[str, Any]]:
    for index in range(count):
        name = f"{rng.choice(COMPANY_WORDS)} {rng.choice(COMPANY_SUFFIXES)} {index + 1}"
        attributes = {
            "name": name,
            "domain": f"company{index + 1}.example",
            "industry": rng.choice(INDUSTRIES),
            "numberOfEmployees": rng.randint(1, 50_000),
            "locality": rng.choice(CITIES),
            "named": True,
            "websiteUrl": f"https://company{index + 1}.example",
            "tags": rng.sample(TAGS, rng.randint(0, 2)),
            "custom1": f"WB-ORG-{index + 1}" if index % 3 else None,
            "externalSource": "outreach-seed",
        }
        yield _row(clock, attributes, {"owner": rng.choice(users)})


def _prospect_email(rng: random.Random, index: int, issued: list[str]) -> list[str]:
    if index % NO_EMAIL_EVERY == NO_EMAIL_EVERY - 1:
        return []
    if index % DUPLICATE_EMAIL_EVERY == DUPLICATE_EMAIL_EVERY - 1 and issued:
        return [rng.choice(issued)]
    email = f"prospect{index + 1}@mail{index % 50}.example"
    issued.append(email)
    return [email]


def _prospects(
    rng: random.Random, clock: _Clock, count: int, accounts: list[int], users: list[int], stages: list[int]
) -> Iterator[dict[str, Any]]:
    issued: list[str] = []
    for index in range(count):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        attributes: dict[str, Any] = {
            "firstName": first,
            "lastName": last,
            "name": f"{first} {last}",
            "emails": _prospect_email(rng, index, issued),
            "title": rng.choice(TITLES),
            "company": None,
            "addressCity": rng.choice(CITIES),
            "workPhones": [f"+44 20 7{rng.randint(100, 999)} {rng.randint(1000, 9999)}"],
            "tags": rng.sample(TAGS, rng.randint(0, 2)),
            "optedOut": rng.random() < 0.03,
            "custom2": rng.choice(("Decision Maker", "Influencer", "User", "Champion")),
            "engagedAt": clock.text() if rng.random() < 0.4 else None,
            "externalSource": "outreach-seed",
        }
        relationships: dict[str, Any] = {"owner": rng.choice(users), "stage": rng.choice(stages)}
        if accounts and index % NO_ACCOUNT_EVERY:
            relationships["account"] = rng.choice(accounts)
        row = _row(clock, attributes, relationships)
        if index % SHARED_UPDATED_AT_EVERY == 0:
            row["created_at"] = min(row["created_at"], clock.shared_ms)
            row["updated_at"] = clock.shared_ms
        yield row


def _length_edge_prospects(clock: _Clock) -> list[dict[str, Any]]:
    """One prospect exactly at the 255-character limits and one legacy row beyond them."""
    at_limit = {
        "firstName": "A" * 255,
        "lastName": "Limit",
        "name": "A" * 255 + " Limit",
        "title": "T" * 255,
        "emails": ["at.limit@edge.example"],
        "custom1": "c" * 32_000,
    }
    over_limit = {
        "firstName": "Über" * 70,
        "lastName": "Legacy",
        "name": "Über" * 70 + " Legacy",
        "addressCity": "C" * 300,
        "emails": ["over.limit@edge.example"],
    }
    return [_row(clock, at_limit), _row(clock, over_limit)]


def _seed_people(
    store: OutreachStore, rng: random.Random, clock: _Clock, counts: dict[str, int]
) -> dict[str, list[int]]:
    ids: dict[str, list[int]] = {}
    ids["user"] = store.bulk_insert("user", _users(rng, clock, counts["user"]))
    ids["mailbox"] = store.bulk_insert(
        "mailbox",
        (
            _row(
                clock,
                {
                    "email": f"user{n + 1}@sandbox.example",
                    "userId": user_id,
                    "sendMethod": "smtp",
                    "password": "not-a-real-password",
                },
                {"user": user_id},
            )
            for n, user_id in enumerate(ids["user"])
        ),
    )
    ids["stage"] = store.bulk_insert(
        "stage",
        (
            _row(clock, {"name": name, "order": order, "color": "#3366ff"})
            for order, name in enumerate(STAGE_NAMES, 1)
        ),
    )
    ids["opportunityStage"] = store.bulk_insert(
        "opportunityStage",
        (
            _row(clock, {"name": name, "order": order, "isClosed": closed, "color": "#22aa66"})
            for order, (name, closed) in enumerate(OPPORTUNITY_STAGES, 1)
        ),
    )
    ids["account"] = store.bulk_insert("account", _accounts(rng, clock, counts["account"], ids["user"]))
    ids["prospect"] = store.bulk_insert(
        "prospect", _prospects(rng, clock, counts["prospect"], ids["account"], ids["user"], ids["stage"])
    )
    ids["prospect"] += store.bulk_insert("prospect", _length_edge_prospects(clock))
    return ids


def _seed_opportunities(
    store: OutreachStore, rng: random.Random, clock: _Clock, ids: dict[str, list[int]], count: int
) -> None:
    rows = []
    for index in range(count):
        attributes = {
            "name": f"Deal {index + 1}",
            "amount": rng.randint(1_000, 250_000),
            "probability": rng.randint(0, 100),
            "closeDate": clock.text(),
            "currencyType": "GBP",
            "opportunityType": rng.choice(("New", "Renewal", "Upsell")),
            "custom2": "true" if rng.random() < 0.2 else "false",  # custom fields are strings on the wire
        }
        relationships = {
            "opportunityStage": rng.choice(ids["opportunityStage"]),
            "owner": rng.choice(ids["user"]),
        }
        if ids["account"]:
            relationships["account"] = rng.choice(ids["account"])
        rows.append(_row(clock, attributes, relationships))
    ids["opportunity"] = store.bulk_insert("opportunity", rows)
    role_rows = []
    for opportunity_id in ids["opportunity"]:
        members = rng.sample(ids["prospect"], min(len(ids["prospect"]), rng.randint(1, 4)))
        for position, prospect_id in enumerate(members):
            role_rows.append(
                _row(
                    clock,
                    {"role": rng.choice(ROLES), "primary": position == 0},
                    {"opportunity": opportunity_id, "prospect": prospect_id},
                )
            )
    ids["opportunityProspectRole"] = store.bulk_insert("opportunityProspectRole", role_rows)


def _seed_engagement(
    store: OutreachStore, rng: random.Random, clock: _Clock, ids: dict[str, list[int]], prospects: int,
    tasks: int | None = None, calls: int | None = None,
) -> None:
    sequence_count = max(3, min(40, prospects // 5000))
    ids["sequence"] = store.bulk_insert(
        "sequence",
        (
            _row(
                clock,
                {
                    "name": f"Sequence {n + 1}",
                    "description": f"Outreach sequence number {n + 1}" if n % 3 else None,
                    "sequenceType": rng.choice(("date", "interval")),
                    "enabled": n % 4 != 3,
                    "shareType": rng.choice(("private", "read_only", "shared")),
                    "sequenceStepCount": _step_count(n),
                },
                {"owner": rng.choice(ids["user"])},
            )
            for n in range(sequence_count)
        ),
    )
    ids["sequenceStep"] = store.bulk_insert(
        "sequenceStep",
        (
            _row(
                clock,
                {
                    "order": order,
                    "stepType": STEP_TYPES[(order + n) % len(STEP_TYPES)],
                    "interval": 86_400 * order,
                },
                {"sequence": sequence_id},
            )
            for n, sequence_id in enumerate(ids["sequence"])
            for order in range(1, 1 + _step_count(n))
        ),
    )
    steps: dict[int, list[int]] = {}
    step_owners = (sequence_id for n, sequence_id in enumerate(ids["sequence"]) for _ in range(_step_count(n)))
    for step_id, sequence_id in zip(ids["sequenceStep"], step_owners, strict=True):
        steps.setdefault(sequence_id, []).append(step_id)
    state_count = max(len(SEQUENCE_STATES), prospects // 4)
    state_rows = [_sequence_state_row(rng, clock, ids, steps, n) for n in range(state_count)]
    ids["sequenceState"] = store.bulk_insert("sequenceState", state_rows)
    # Opting out of a sequence opts the prospect out of email in Outreach too; seeded data agrees with that.
    opted_out = [row["relationships"]["prospect"] for row in state_rows if row["attributes"]["state"] == "opted_out"]
    store.set_attributes_unstamped("prospect", opted_out, {"emailOptedOut": True})
    task_count = max(len(TASK_ACTIONS) * len(TASK_STATES), prospects // 5) if tasks is None else tasks
    task_rows = [_task_row(rng, clock, ids, n) for n in range(task_count)]
    ids["task"] = store.bulk_insert("task", task_rows)
    call_tasks = [
        (task_id, row["relationships"]["prospect"])
        for task_id, row in zip(ids["task"], task_rows, strict=True)
        if row["attributes"]["action"] == "call"
    ]
    ids["call"] = store.bulk_insert(
        "call", (_call_row(rng, clock, ids, call_tasks, n) for n in range(max(3, prospects // 10) if calls is None else calls))
    )


def _step_count(sequence_index: int) -> int:
    return 2 + sequence_index % 4


def _sequence_state_row(
    rng: random.Random, clock: _Clock, ids: dict[str, list[int]], steps: dict[int, list[int]], n: int
) -> dict[str, Any]:
    attributes = {
        "state": SEQUENCE_STATES[n % len(SEQUENCE_STATES)],
        "stateChangedAt": clock.text(),
        "replyCount": rng.randint(0, 3),
        "openCount": rng.randint(0, 10),
    }
    prospect = rng.choice(ids["prospect"])
    sequence = rng.choice(ids["sequence"])
    relationships = {"prospect": prospect, "sequence": sequence, "mailbox": rng.choice(ids["mailbox"])}
    sequence_steps = steps.get(sequence) or []
    if sequence_steps:  # the step the prospect is at, derived without drawing from `rng` (keeps later data stable)
        relationships["sequenceStep"] = sequence_steps[n % len(sequence_steps)]
    return _row(clock, attributes, relationships)


def _task_row(rng: random.Random, clock: _Clock, ids: dict[str, list[int]], n: int) -> dict[str, Any]:
    state = TASK_STATES[(n // len(TASK_ACTIONS)) % len(TASK_STATES)]
    prospect_id = rng.choice(ids["prospect"])
    # Every fifth task belongs to a sequence step; a tenth of those complete ones were skipped (complete but not
    # completed), which Workbooks shows as Cancelled.
    sequence_task = n % 5 == 0 and bool(ids.get("sequenceState"))
    skipped = sequence_task and state == "complete" and n % 2 == 0
    attributes = {
        "action": TASK_ACTIONS[n % len(TASK_ACTIONS)],
        "state": state,
        "taskType": f"sequence_step_{TASK_ACTIONS[n % len(TASK_ACTIONS)]}" if sequence_task else "manual",
        "dueAt": clock.text(),
        "completed": state == "complete" and not skipped,
        "completedAt": clock.text() if state == "complete" else None,
        "note": f"Follow up #{n + 1}",
    }
    if skipped:
        attributes["completedAt"] = None
    relationships = {
        "prospect": prospect_id,
        "owner": rng.choice(ids["user"]),
        "subject": {"type": "prospect", "id": prospect_id},
    }
    if sequence_task:
        relationships["sequenceState"] = ids["sequenceState"][n % len(ids["sequenceState"])]
    return _row(clock, attributes, relationships)


def _call_row(
    rng: random.Random, clock: _Clock, ids: dict[str, list[int]], call_tasks: list[tuple[int, int]], n: int
) -> dict[str, Any]:
    dialed = rng.randint(clock.start_ms, clock.now_ms)
    answered = rng.random() < 0.6
    attributes = {
        "direction": rng.choice(("inbound", "outbound")),
        "outcome": "Answered" if answered else rng.choice(CALL_OUTCOMES),
        "from": "+442070000000",
        "to": f"+4420{rng.randint(10_000_000, 99_999_999)}",
        "state": "completed",
        "dialedAt": format_timestamp(dialed),
        "answeredAt": format_timestamp(dialed + 15_000) if answered else None,
        "completedAt": format_timestamp(dialed + rng.randint(20_000, 900_000)),
        "note": "Left a voicemail." if n % 3 == 0 else None,
    }
    relationships = {"prospect": rng.choice(ids["prospect"]), "user": rng.choice(ids["user"])}
    if call_tasks and n % 4 == 0:  # a call that completed a call task: same prospect, linked to the task
        task_id, prospect_id = call_tasks[(n // 4) % len(call_tasks)]
        relationships |= {"task": task_id, "prospect": prospect_id}
    return _row(clock, attributes, relationships)


def seed_outreach(
    store: OutreachStore,
    *,
    prospects: int,
    accounts: int | None = None,
    opportunities: int | None = None,
    tasks: int | None = None,
    calls: int | None = None,
    seed: int = 42,
    days: int = 30,
    now: datetime | None = None,
) -> dict[str, int]:
    """Fill `store` with a realistic, deterministic Outreach org.

    Args:
        store: an empty (or append-only) store.
        prospects: number of regular prospects (two extra length-limit edge-case prospects are added).
        accounts: defaults to prospects / 5.
        opportunities: defaults to prospects / 10.
        tasks: defaults to prospects / 5 (at least 12: every action in every state).
        calls: defaults to prospects / 10 (at least 3).
        seed: `random.Random` seed; the same seed, counts and `now` give identical data.
        days: updatedAt values spread over this many days before `now`.
        now: end of the time span (default: the store clock).

    Returns:
        Row counts per resource type after seeding.
    """
    rng = random.Random(seed)
    clock = _Clock(rng, to_epoch_ms(now) if now is not None else store.now_ms(), days)
    counts = {
        "user": max(3, min(50, prospects // 2000)),
        "account": prospects // 5 if accounts is None else accounts,
        "prospect": prospects,
    }
    ids = _seed_people(store, rng, clock, counts)
    _seed_opportunities(store, rng, clock, ids, prospects // 10 if opportunities is None else opportunities)
    _seed_engagement(store, rng, clock, ids, prospects, tasks, calls)
    return store.count_all()
