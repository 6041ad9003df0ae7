"""The duplicate-email check asks Outreach in its documented form, through the real client, over real HTTP.

The Outreach sandbox reads an undocumented comma list of emails as one address (matching nothing, see
`sandbox/outreach/query.py`), so a check that sent one would find no holder and pass in silence; these tests
would then fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest

from outreach_pipeline.clients.outreach import OutreachClient
from outreach_pipeline.clients.workbooks import WorkbooksClient
from outreach_pipeline.engine.install import install
from outreach_pipeline.engine.ledger import SyncLedger, SyncWindow
from outreach_pipeline.engine.load import SHARER_QUERY_CHARS, EntityLoader, outreach_holders, outreach_sharers
from outreach_pipeline.mapping.models import load_mapping_set
from outreach_pipeline.mapping.transform import stage_records
from outreach_pipeline.sandbox.credentials import SANDBOX_OUTREACH_AUTH, SANDBOX_WORKBOOKS_AUTH
from outreach_pipeline.sandbox.outreach.app import create_outreach_app
from outreach_pipeline.sandbox.outreach.settings import OutreachSettings
from outreach_pipeline.sandbox.outreach.store import OutreachStore
from outreach_pipeline.sandbox.server import serve_in_thread
from outreach_pipeline.sandbox.workbooks.app import WorkbooksSettings, create_workbooks_app
from outreach_pipeline.sandbox.workbooks.store import WorkbooksStore
from outreach_pipeline_tests.engine.frames import extracted_prospects

MAPPINGS = load_mapping_set()
PROSPECTS = MAPPINGS.entity("prospects")
T0 = datetime(2026, 11, 20, 5, tzinfo=UTC)
#: The request-line limit the batching keeps under (SHARER_QUERY_CHARS leaves room for the rest of the URL).
REQUEST_LINE_LIMIT = 8192


class _QueryRecorder:
    """ASGI wrapper keeping the query string of every prospects read, as the server received it."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.queries: list[str] = []

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/api/v2/prospects" and scope["method"] == "GET":
            self.queries.append(scope["query_string"].decode())
        await self.app(scope, receive, send)


@pytest.fixture
def outreach() -> Iterator[tuple[OutreachStore, OutreachClient, _QueryRecorder]]:
    store = OutreachStore("sqlite://")
    recorder = _QueryRecorder(create_outreach_app(store, OutreachSettings()))
    with serve_in_thread(recorder) as served:
        client = OutreachClient(served.url, **SANDBOX_OUTREACH_AUTH)
        yield store, client, recorder
        client.close()


def test_holders_of_many_emails_are_found_in_batches_that_fit_a_request_line(outreach):
    store, client, recorder = outreach
    # Long addresses, so the values need several requests; two prospects share one (legacy data).
    emails = [f"{'someone.with.a.long.name' * 2}.{n}@example.com" for n in range(300)]
    ids = store.bulk_insert("prospect", [{"attributes": {"emails": [email]}} for email in emails])
    sharer = store.bulk_insert("prospect", [{"attributes": {"emails": ["Someone.With.A.Long.Name" * 2 + ".7@Example.com"]}}])

    holders = outreach_holders(client, "prospects", PROSPECTS, emails)

    assert holders[emails[7]] == {ids[7], sharer[0]}
    assert {email: held for email, held in holders.items() if email != emails[7]} == {
        email: {record_id} for email, record_id in zip(emails, ids, strict=True) if email != emails[7]
    }
    assert len(recorder.queries) >= 3
    for query in recorder.queries:
        pairs = parse_qsl(query)
        assert ("newFilterSyntax", "true") in pairs
        assert {key for key, _ in pairs if key.startswith("filter")} == {"filter[emails][]"}
        assert len(f"GET /api/v2/prospects?{query} HTTP/1.1") < REQUEST_LINE_LIMIT
        assert sum(len(pair) + 1 for pair in query.split("&") if pair.startswith("filter")) <= SHARER_QUERY_CHARS + 1


def test_the_loader_fails_a_prospect_whose_email_another_outreach_prospect_holds(outreach, tmp_path: Path):
    store, outreach_client, _ = outreach
    held_twice, other, alone = store.bulk_insert("prospect", [
        {"attributes": {"firstName": "Ann", "emails": ["ann@dup.example"]}},
        {"attributes": {"firstName": "Anne", "emails": ["ANN@dup.example"]}},
        {"attributes": {"firstName": "Cat", "emails": ["cat@solo.example"]}},
    ])
    # Only two of them changed in the window: the duplicate is known to Outreach alone.
    staged = stage_records(extracted_prospects(
        {"id": held_twice, "emails": ["ann@dup.example"]}, {"id": alone, "emails": ["cat@solo.example"]},
        updated_at=T0,
    ), PROSPECTS)
    with serve_in_thread(create_workbooks_app(WorkbooksStore("sqlite://"), WorkbooksSettings())) as workbooks_app:
        workbooks = WorkbooksClient(workbooks_app.url, **SANDBOX_WORKBOOKS_AUTH)
        ledger = SyncLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
        try:
            install(workbooks, MAPPINGS)
            loader = EntityLoader(
                client=workbooks, ledger=ledger, mappings=MAPPINGS, entity=PROSPECTS, run_id="run-1",
                window=SyncWindow(start=T0, end=T0 + timedelta(hours=1)),
                sharers=outreach_sharers(outreach_client, "prospects", PROSPECTS, staged),
            )
            outcomes = loader.load(staged).outcomes.set_index("outreach_id")
        finally:
            ledger.dispose()
            workbooks.close()

    assert outcomes.loc[held_twice, "outcome"] == "failed"
    assert f"is also held by Outreach prospect {other}" in outcomes.loc[held_twice, "error"]
    assert "main_location[email]" in outcomes.loc[held_twice, "error"]
    assert outcomes.loc[alone, "outcome"] == "created"
