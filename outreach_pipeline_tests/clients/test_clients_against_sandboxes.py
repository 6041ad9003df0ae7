"""The real clients against the project's sandbox apps (served over HTTP), default credentials."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import requests

from outreach_pipeline.clients.http import ValidationFailed
from outreach_pipeline.clients.outreach import OutreachClient
from outreach_pipeline.clients.workbooks import Filter, WorkbooksClient, WriteOp
from outreach_pipeline.engine.extract import records_to_frame
from outreach_pipeline.sandbox.credentials import SANDBOX_OUTREACH_AUTH, SANDBOX_WORKBOOKS_AUTH
from outreach_pipeline.sandbox.outreach.app import create_outreach_app
from outreach_pipeline.sandbox.outreach.store import OutreachStore
from outreach_pipeline.sandbox.workbooks.app import create_workbooks_app
from outreach_pipeline.sandbox.workbooks.store import WorkbooksStore

BASE = datetime(2024, 3, 1, tzinfo=UTC)


@pytest.fixture
def outreach_client(serve):
    store = OutreachStore("sqlite://")
    for minute in range(7):
        store.now = lambda minute=minute: BASE + timedelta(minutes=minute)
        store.create("prospect", {"firstName": f"P{minute}", "emails": [f"p{minute}@example.com"]})
    store.now = lambda: BASE + timedelta(minutes=3)
    store.create("prospect", {"firstName": "Tie", "emails": ["tie@example.com"]})  # shares minute 3
    client = OutreachClient(serve(create_outreach_app(store)), **SANDBOX_OUTREACH_AUTH)
    yield client
    client.close()


def test_outreach_window_paging_and_frame(outreach_client):
    pages = list(outreach_client.iter_window("prospects", BASE + timedelta(minutes=1), BASE + timedelta(minutes=5),
                                             page_size=2))
    records = [record for page in pages for record in page.records]
    assert [record.attributes["firstName"] for record in records] == ["P1", "P2", "P3", "Tie", "P4"]
    assert len(pages) >= 3
    frame = records_to_frame(records)
    assert frame["updatedAt"].min() == BASE + timedelta(minutes=1)
    assert frame["updatedAt"].max() < BASE + timedelta(minutes=5)


def test_outreach_create_lookup_update_and_duplicate_email(outreach_client):
    created = outreach_client.create("prospects", {"firstName": "Ada", "emails": ["ada@example.com"]})
    assert [record.id for record in outreach_client.find_prospects_by_email("ada@example.com")] == [created.id]
    updated = outreach_client.update("prospects", created.id, {"title": "CTO"})
    assert updated.attributes["title"] == "CTO" and outreach_client.get("prospects", created.id).attributes["title"] == "CTO"
    with pytest.raises(ValidationFailed) as caught:
        outreach_client.create("prospects", {"firstName": "Ada2", "emails": ["ada@example.com"]})
    assert caught.value.status == 422
    assert outreach_client.stats.total_requests >= 5


@pytest.fixture
def workbooks_client(serve, tmp_path):
    store = WorkbooksStore(f"sqlite:///{tmp_path / 'wb.db'}")
    client = WorkbooksClient(serve(create_workbooks_app(store)), **SANDBOX_WORKBOOKS_AUTH)
    yield client
    client.close()
    store.dispose()


def test_workbooks_batch_write_lookup_and_stale_lock(workbooks_client):
    ops = [WriteOp(action="create", fields={"person_first_name": f"F{n}", "person_last_name": "Smith",
                                            "main_location": {"email": f"f{n}@example.com"}}) for n in range(3)]
    outcomes = workbooks_client.write_batch("crm/people", ops)
    assert all(outcome.ok for outcome in outcomes), outcomes
    ids = [outcome.id for outcome in outcomes]
    found = workbooks_client.lookup("crm/people", "main_location[email]", ["f0@example.com", "f2@example.com"],
                                    ["id", "lock_version", "main_location[email]"])
    assert sorted(row["id"] for row in found) == [ids[0], ids[2]]
    first = outcomes[0]
    fresh = workbooks_client.write_batch("crm/people", [
        WriteOp(action="update", id=first.id, lock_version=first.lock_version, fields={"person_job_title": "CEO"}),
    ])[0]
    assert fresh.ok and fresh.lock_version > first.lock_version
    stale = workbooks_client.write_batch("crm/people", [
        WriteOp(action="update", id=first.id, lock_version=first.lock_version, fields={"person_job_title": "CFO"}),
        WriteOp(action="update", id=ids[1], lock_version=outcomes[1].lock_version, fields={"person_job_title": "CTO"}),
    ])
    assert not stale[0].ok and stale[0].stale_lock_version
    assert stale[1].ok
    rows = list(workbooks_client.iter_records("crm/people", [Filter(field="id", op="eq", value=[first.id])],
                                              ["id", "person_job_title"]))
    assert rows[0]["person_job_title"] == "CEO"


def test_workbooks_session_relogin_and_admin_helpers(workbooks_client):
    client = WorkbooksClient(workbooks_client.base_url, username="sandbox@example.com", password="sandbox")
    assert list(client.iter_records("crm/people")) == []
    requests.post(f"{workbooks_client.base_url}/_sandbox/workbooks/expire_sessions", timeout=5).raise_for_status()
    outcome = client.create_custom_field("Private::Crm::Person", "Outreach Id", "integer")
    assert outcome.record.get("value_column_name") == "cf_person_outreach_id"
    assert client.stats.requests[("POST", "/login.api")] == 2
    assert any(row.get("title") == "Outreach Id" for row in client.list_custom_fields("Private::Crm::Person"))
    client.set_api_data("outreach.last_run", "2024-03-01T00:00:00Z")
    client.set_api_data("outreach.last_run", "2024-03-02T00:00:00Z")
    assert client.get_api_data("outreach.last_run") == "2024-03-02T00:00:00Z"
