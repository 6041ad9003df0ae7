"""Helpers of the two-way tests: Workbooks records made through the API, both clocks pinned, write counts."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from outreach_pipeline.clients.workbooks import WorkbooksClient, WriteOp
from outreach_pipeline.sandbox.credentials import SANDBOX_WORKBOOKS_AUTH
from outreach_pipeline_tests.pipeline.harness import Pipeline, outreach_records

#: Windows after the Outreach seed (which ends at PINNED_NOW, 2026-11-03 00:00): Workbooks edits land here.
FIRST_EDIT_WINDOW = datetime(2026, 11, 3, 5, tzinfo=UTC)
HOUR = timedelta(hours=1)
SMALL_SEED = {"prospects": 30, "accounts": 6, "opportunities": 6, "seed_days": 1}


def set_clocks(pipe: Pipeline, moment: datetime) -> None:
    """Stamp writes in both systems with `moment`."""
    pipe.sandbox.outreach_store.now = lambda: moment
    pipe.sandbox.workbooks_store._clock = lambda: moment  # the store's clock hook (its constructor takes it)


@contextmanager
def workbooks_client(pipe: Pipeline) -> Iterator[WorkbooksClient]:
    client = WorkbooksClient(pipe.sandbox.workbooks_url, **SANDBOX_WORKBOOKS_AUTH)
    try:
        yield client
    finally:
        client.close()


def create_workbooks(pipe: Pipeline, controller: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Create one Workbooks record through the API and return it as read back."""
    with workbooks_client(pipe) as client:
        outcome = client.write_one(controller, WriteOp(action="create", fields=fields))
        return read_workbooks(pipe, controller, int(outcome.id))


def read_workbooks(pipe: Pipeline, controller: str, record_id: int) -> dict[str, Any]:
    with workbooks_client(pipe) as client:
        rows = client.lookup(controller, "id", [record_id])
    assert len(rows) == 1, rows
    return rows[0]


def edit_workbooks(pipe: Pipeline, controller: str, record_id: int, fields: dict[str, Any]) -> None:
    current = read_workbooks(pipe, controller, record_id)
    with workbooks_client(pipe) as client:
        client.write_one(controller, WriteOp(action="update", id=record_id, lock_version=int(current["lock_version"]),
                                             fields=fields))


def outreach_writes(pipe: Pipeline) -> int:
    """POST/PATCH requests to Outreach so far."""
    requests = pipe.sandbox.outreach_middleware.stats.snapshot()["requests"]
    return sum(count for endpoint, count in requests.items() if endpoint.startswith(("POST /api", "PATCH /api")))


def workbooks_writes(pipe: Pipeline) -> int:
    """Write requests to Workbooks so far."""
    return sum(pipe.workbooks_writes().values())


def outreach_by_id(pipe: Pipeline, resource_type: str) -> dict[int, Any]:
    return {record.id: record for record in outreach_records(pipe.sandbox, resource_type)}
