"""Deterministic seed data for the Workbooks sandbox.

People and Organisations that already exist in Workbooks before the integration starts: some share
emails with the Outreach seed (`shared_email(i)` is the address of the i-th shared contact, so the
pipeline's match-by-email step has something to find), two pairs share an email (one differing
only in case) so de-duplication has something to flag, and names include non-ASCII characters.
"""

from __future__ import annotations

import random
import unicodedata
from datetime import UTC, datetime, timedelta

from outreach_pipeline.sandbox.workbooks.store import WorkbooksStore

FIRST_NAMES = (
    "Zoë",
    "José",
    "Ángel",
    "Søren",
    "Łukasz",
    "Françoise",
    "Aoife",
    "Mei",
    "Olu",
    "Priya",
    "Tom",
    "Anna",
)
LAST_NAMES = (
    "Müller",
    "Nguyễn",
    "O'Brien",
    "García",
    "Kowalski",
    "Smith",
    "Okafor",
    "Dubois",
    "Tanaka",
    "Jones",
)
COMPANY_WORDS = (
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Hooli",
    "Stark",
    "Wayne",
    "Tyrell",
    "Soylent",
    "Vandelay",
)
INDUSTRIES = ("Software", "Manufacturing", "Retail", "Finance", "Healthcare")
JOB_TITLES = ("CEO", "CTO", "Head of Sales", "Account Executive", "Marketing Manager", "Engineer")
SHARED_EMAIL_DOMAIN = "shared.example.com"


def ascii_slug(text: str) -> str:
    """`Łukasz O'Brien` -> `lukasz.obrien`: the ASCII local part used in seeded emails."""
    decomposed = unicodedata.normalize("NFKD", text.replace("Ł", "L").replace("ł", "l").replace("ø", "o"))
    ascii_text = decomposed.encode("ascii", "ignore").decode().lower()
    return ".".join("".join(ch for ch in word if ch.isalnum()) for word in ascii_text.split())


def shared_email(index: int) -> str:
    """Email of the `index`-th contact meant to exist in both Workbooks and Outreach seeds."""
    return f"contact{index}@{SHARED_EMAIL_DOMAIN}"


def _organisations(rng: random.Random, count: int, now: datetime) -> list[dict[str, object]]:
    records = []
    for index in range(count):
        name = f"{COMPANY_WORDS[index % len(COMPANY_WORDS)]} {('Ltd', 'GmbH', 'SAS', 'Inc')[index % 4]} {index + 1}"
        created = now - timedelta(days=rng.randint(30, 900))
        records.append(
            {
                "name": name,
                "industry": rng.choice(INDUSTRIES),
                "website": f"https://{ascii_slug(name).replace('.', '-')}.example.com",
                "organisation_num_employees": rng.randint(5, 5000),
                "main_location[town]": rng.choice(("London", "Kraków", "München", "Lyon", "Dublin")),
                "created_at": created,
                "updated_at": created + timedelta(days=rng.randint(0, 20)),
            }
        )
    return records


def _people(
    rng: random.Random, count: int, organisation_ids: list[int], now: datetime
) -> list[dict[str, object]]:
    records = []
    for index in range(count):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        # Every third person is also a prospect in Outreach (same email).
        email = (
            shared_email(index // 3)
            if index % 3 == 0
            else f"{ascii_slug(first)}.{ascii_slug(last)}{index}@wb.example.com"
        )
        created = now - timedelta(days=rng.randint(1, 700))
        records.append(
            {
                "person_first_name": first,
                "person_last_name": last,
                "person_job_title": rng.choice(JOB_TITLES),
                "main_location[email]": email,
                "main_location[telephone]": f"+44 20 7946 {rng.randint(0, 9999):04d}",
                "employer_link": rng.choice(organisation_ids) if organisation_ids else None,
                "created_at": created,
                "updated_at": created + timedelta(days=rng.randint(0, 30)),
            }
        )
    _add_duplicate_emails(records)
    return records


def _add_duplicate_emails(records: list[dict[str, object]]) -> None:
    """Give two pairs of people the same email (the second pair differing only in case)."""
    if len(records) >= 4:
        records[-1]["main_location[email]"] = records[1]["main_location[email]"]
        records[-2]["main_location[email]"] = str(records[2]["main_location[email]"]).upper()


def seed_workbooks(
    store: WorkbooksStore, *, people: int = 50, seed: int = 42, now: datetime | None = None
) -> dict[str, int]:
    """Fill `store` with deterministic People, Organisations, Opportunities and Tasks.

    Args:
        store: the sandbox database (normally empty).
        people: how many People to create; Organisations are a fifth of that (at least 3).
        seed: random seed; the same seed gives the same records.
        now: the reference time for created_at/updated_at (defaults to the store's clock).

    Returns:
        How many records of each type were created, e.g. `{"people": 50, "organisations": 10, ...}`.
    """
    rng = random.Random(seed)
    reference = (
        (now or store.now()).astimezone(UTC).replace(tzinfo=None)
        if now and now.tzinfo
        else (now or store.now())
    )
    organisation_ids = store.bulk_insert(
        "crm/organisations", _organisations(rng, max(3, people // 5), reference)
    )
    person_ids = store.bulk_insert("crm/people", _people(rng, people, organisation_ids, reference))
    opportunities = [
        {
            "description": f"Deal {index + 1}",
            "amount": f"{rng.randint(1, 500) * 100} GBP 0",
            "predicted_close_date": (reference + timedelta(days=rng.randint(5, 120))).date(),
            "probability": rng.choice((10, 25, 50, 75)),
            "opportunity_stage": rng.choice(("Prospecting", "Proposal", "Negotiation")),
            "organisation_id": organisation_id,
        }
        for index, organisation_id in enumerate(organisation_ids[: max(1, len(organisation_ids) // 2)])
    ]
    opportunity_ids = store.bulk_insert("crm/opportunities", opportunities)
    tasks = [
        {
            "name": f"Call {rng.choice(FIRST_NAMES)}",
            "activity_type": "Phone call",
            "due_date": (reference + timedelta(days=rng.randint(-5, 14))).date(),
            "primary_contact_id": person_id,
            "primary_contact_type": "Private::Crm::Person",
        }
        for person_id in person_ids[: max(1, len(person_ids) // 10)]
    ]
    task_ids = store.bulk_insert("activity/tasks", tasks)
    return {
        "organisations": len(organisation_ids),
        "people": len(person_ids),
        "opportunities": len(opportunity_ids),
        "tasks": len(task_ids),
    }
