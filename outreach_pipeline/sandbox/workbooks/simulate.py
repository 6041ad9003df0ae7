"""Simulated user activity in the Workbooks sandbox: new and edited People, Organisations and Tasks.

Changes go through the same batch-write path as API requests, so lock_version and updated_at move
exactly as they would for a real user's edit.
"""

from __future__ import annotations

import random

from outreach_pipeline.sandbox.workbooks.seed import FIRST_NAMES, JOB_TITLES, LAST_NAMES, ascii_slug
from outreach_pipeline.sandbox.workbooks.store import BatchObject, ReadQuery, WorkbooksStore

SIMULATED_USER = "Simulated User"


def _new_objects(rng: random.Random, controller: str, serial: int) -> BatchObject:
    if controller == "crm/organisations":
        attributes = {"name": f"Simulated Org {serial}", "industry": "Software"}
    elif controller == "activity/tasks":
        attributes = {
            "name": f"Follow up {serial}",
            "activity_type": rng.choice(("Phone call", "Email", "To-do")),
        }
    else:
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        attributes = {
            "person_first_name": first,
            "person_last_name": last,
            "main_location[email]": f"{ascii_slug(first)}.{ascii_slug(last)}.sim{serial}@wb.example.com",
        }
    return BatchObject(method="POST", attributes=attributes)


def _edit(rng: random.Random, controller: str, record: dict[str, object]) -> BatchObject:
    if controller == "crm/organisations":
        attributes = {"organisation_num_employees": str(rng.randint(5, 5000))}
    elif controller == "activity/tasks":
        attributes = {"activity_status": rng.choice(("In progress", "Complete"))}
    else:
        attributes = {"person_job_title": rng.choice(JOB_TITLES)}
    return BatchObject(
        method="PUT", id=str(record["id"]), lock_version=str(record["lock_version"]), attributes=attributes
    )


def _random_live_record(
    store: WorkbooksStore, rng: random.Random, controller: str
) -> dict[str, object] | None:
    newest = store.read(controller, ReadQuery(sort=(("id", "DESC"),), start=0, limit=1, skip_total=True)).data
    if not newest:
        return None
    for _attempt in range(5):
        record = store.get_record(controller, rng.randint(1, int(newest[0]["id"])))
        if record is not None and not record["is_deleted"]:
            return record
    return None


def simulate_workbooks_step(
    store: WorkbooksStore, rng: random.Random, *, creates: int, edits: int
) -> dict[str, int]:
    """Create `creates` and edit `edits` records spread over People, Organisations and Tasks.

    Args:
        store: the sandbox database.
        rng: the random source (seed it for reproducible runs).
        creates: number of new records.
        edits: number of edits of existing records (fewer when a type has no records yet).

    Returns:
        Counts of `created` and `edited` records.
    """
    controllers = ("crm/people", "crm/people", "crm/organisations", "activity/tasks")
    created = edited = 0
    for serial in range(creates):
        controller = rng.choice(controllers)
        outcome = store.apply_batch(
            controller, [_new_objects(rng, controller, rng.randint(1, 10**9) + serial)], actor=SIMULATED_USER
        )
        created += outcome[0].success
    for _ in range(edits):
        controller = rng.choice(controllers)
        record = _random_live_record(store, rng, controller)
        if record is None:
            continue
        outcome = store.apply_batch(controller, [_edit(rng, controller, record)], actor=SIMULATED_USER)
        edited += outcome[0].success
    return {"created": created, "edited": edited}
