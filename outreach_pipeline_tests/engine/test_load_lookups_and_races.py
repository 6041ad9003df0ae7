"""The loader when Workbooks changes or fails under it, over real HTTP against the Workbooks sandbox.

* A record edited in Workbooks between the loader's lookup and its write: the write is refused for a stale
  lock_version, and the loader looks the record up again and re-plans, so the Outreach change lands and the
  other user's edit is kept (neither a failure nor an overwrite).
* A lookup that fails (5xx past the client's retries) stops the load: nothing is created, since "no twin
  found" would be a guess. The same holds for the look-again after a create batch whose reply was lost: the
  records it did create are not created a second time.

The edit between lookup and write is made the way a user makes it: a save through the API by a second client,
of a record the user read earlier, landing while the sandbox's `slow` fault rule holds the loader's write back.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from outreach_pipeline.clients.http import RetryPolicy, ServerError
from outreach_pipeline.clients.workbooks import WorkbooksClient, WriteOp
from outreach_pipeline.engine.install import install
from outreach_pipeline.engine.ledger import SyncLedger, SyncWindow
from outreach_pipeline.engine.load import EntityLoader
from outreach_pipeline.mapping.models import load_mapping_set
from outreach_pipeline.mapping.transform import stage_records
from outreach_pipeline.sandbox.faults import FaultInjector, SandboxMiddleware, parse_fault_spec
from outreach_pipeline.sandbox.server import serve_in_thread
from outreach_pipeline.sandbox.workbooks.app import WorkbooksSettings, create_workbooks_app
from outreach_pipeline.sandbox.workbooks.store import WorkbooksStore
from outreach_pipeline_tests.engine.frames import extracted_prospects

MAPPINGS = load_mapping_set()
PROSPECTS = MAPPINGS.entity("prospects")
T0 = datetime(2026, 11, 20, 5, tzinfo=UTC)
WINDOW = SyncWindow(start=T0, end=T0 + timedelta(hours=1))
PEOPLE_WRITE = "PUT /crm/people.api"
PEOPLE_READ = "GET /crm/people.api"
#: How long the sandbox holds the loader's write back; the user's save is one request of a few milliseconds.
WRITE_HELD_MS = 2000
FAST_RETRIES = RetryPolicy(max_attempts=3, base_delay=0.02)


@dataclass
class Workbooks:
    url: str
    client: WorkbooksClient
    app: SandboxMiddleware

    def requests(self) -> dict[str, int]:
        return dict(self.app.stats.snapshot()["requests"])

    def person(self, outreach_id: int) -> dict:
        [row] = self.client.lookup("crm/people", "cf_person_outreach_id", [outreach_id], [
            "id", "lock_version", "person_job_title", "person_job_role", "cf_person_outreach_sync_error"])
        return row


@pytest.fixture(scope="module")
def served() -> Iterator[Workbooks]:
    """One installed sandbox for the module (installing takes seconds); tests use distinct Outreach ids."""
    app = SandboxMiddleware(create_workbooks_app(WorkbooksStore("sqlite://"), WorkbooksSettings()), injector=FaultInjector())
    with serve_in_thread(app) as server:
        client = WorkbooksClient(server.url, api_key="sandbox-api-key", retry=FAST_RETRIES)
        install(client, MAPPINGS)
        yield Workbooks(server.url, client, app)
        client.close()


@pytest.fixture
def workbooks(served: Workbooks) -> Iterator[Workbooks]:
    yield served
    served.app.injector.clear()


def _load(workbooks: Workbooks, ledger: SyncLedger, frame: pd.DataFrame, run: str):
    loader = EntityLoader(client=workbooks.client, ledger=ledger, mappings=MAPPINGS, entity=PROSPECTS, run_id=run,
                          window=WINDOW)
    return loader.load(stage_records(frame, PROSPECTS))


def _slow_faults(workbooks: Workbooks) -> int:
    return int(workbooks.app.stats.snapshot()["faults"].get("slow", 0))


def _wait_until_a_write_is_held(workbooks: Workbooks, held_before: int) -> None:
    """Return once the sandbox has started holding a write back (its `slow` fault count went up)."""
    deadline = datetime.now(UTC) + timedelta(seconds=30)
    while _slow_faults(workbooks) <= held_before:
        assert datetime.now(UTC) < deadline, "the loader's write never reached the sandbox"
        threading.Event().wait(0.01)


def _save_once_the_write_is_held(
    workbooks: Workbooks, held_before: int, user: WorkbooksClient, op: WriteOp, done: threading.Event
) -> None:
    """A Workbooks user's save (of a record read before the sync), landing while the loader's write waits."""
    _wait_until_a_write_is_held(workbooks, held_before)
    [outcome] = user.write_batch("crm/people", [op])
    assert outcome.ok, outcome
    done.set()


def test_a_record_edited_in_workbooks_between_lookup_and_write_is_looked_up_again_and_updated(
    workbooks: Workbooks, tmp_path: Path
) -> None:
    ledger = SyncLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    assert _load(workbooks, ledger, extracted_prospects({"id": 7, "title": "Buyer"}, updated_at=T0), "run-1").counts \
        == {"created": 1}
    created = workbooks.person(7)

    # Outreach changes the title. A user who opened the same Person earlier saves a change of their own while
    # the loader's write to People is held: the loader looked the Person up before the save, writes after it.
    workbooks.app.injector.add(parse_fault_spec(f"slow:delay_ms={WRITE_HELD_MS}:count=1:methods=PUT:path=/crm/people"))
    user = WorkbooksClient(workbooks.url, api_key="sandbox-api-key")
    save = WriteOp(action="update", id=int(created["id"]), lock_version=int(created["lock_version"]),
                   fields={"person_job_role": "Decision maker"})
    saved = threading.Event()
    saver = threading.Thread(target=_save_once_the_write_is_held, args=(workbooks, _slow_faults(workbooks), user, save, saved),
                             daemon=True)
    writes_before = workbooks.requests().get(PEOPLE_WRITE, 0)
    saver.start()
    try:
        result = _load(workbooks, ledger, extracted_prospects(
            {"id": 7, "title": "Lead"}, updated_at=T0 + timedelta(minutes=1)), "run-2")
    finally:
        saver.join(30)
        user.close()
    assert saved.is_set(), "the user's save failed"

    # The loader's stale write, the user's save, the loader's re-planned write: the race really happened.
    assert workbooks.requests()[PEOPLE_WRITE] - writes_before == 3, "the save did not land while the write was held"
    assert result.counts == {"updated": 1}, result.outcomes.to_dict("records")
    [outcome] = result.outcomes.to_dict("records")
    assert (outcome["workbooks_id"], outcome["fields_written"]) == (created["id"], ["person_job_title"])
    person = workbooks.person(7)
    assert (person["person_job_title"], person["person_job_role"]) == ("Lead", "Decision maker")
    assert person["cf_person_outreach_sync_error"] is False
    assert int(person["lock_version"]) == int(created["lock_version"]) + 2
    assert [entry.outcome for entry in ledger.history("prospects", 7)] == ["created", "updated"]
    ledger.dispose()


def test_a_failed_lookup_stops_the_load_and_creates_nothing(workbooks: Workbooks, tmp_path: Path) -> None:
    ledger = SyncLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    workbooks.app.injector.add(parse_fault_spec("status:status=500:methods=GET:path=/crm/people"))

    before = workbooks.requests()
    with pytest.raises(ServerError) as raised:
        _load(workbooks, ledger, extracted_prospects({"id": 1}, {"id": 2}, updated_at=T0), "run-1")

    assert (raised.value.method, raised.value.path, raised.value.status) == ("GET", "/crm/people.api", 500)
    after = workbooks.requests()
    # The lookup was retried until the client gave up, and nothing was written: no create, no flag.
    assert after.get(PEOPLE_READ, 0) - before.get(PEOPLE_READ, 0) == FAST_RETRIES.max_attempts
    assert after.get(PEOPLE_WRITE, 0) == before.get(PEOPLE_WRITE, 0)
    workbooks.app.injector.clear()
    assert workbooks.client.lookup("crm/people", "cf_person_outreach_id", [1, 2], ["id"]) == []
    assert ledger.get_states("prospects", [1, 2]) == {}
    assert ledger.history("prospects", 1) == []
    ledger.dispose()


def _fail_reads_once_the_write_is_held(workbooks: Workbooks, held_before: int, done: threading.Event) -> None:
    """Turn People reads into 500s while the loader's (soon lost) write is held, before it looks again."""
    _wait_until_a_write_is_held(workbooks, held_before)
    workbooks.app.injector.add(parse_fault_spec("status:status=500:methods=GET:path=/crm/people"))
    done.set()


def test_a_failed_lookup_after_a_lost_reply_stops_the_load_rather_than_creating_again(
    workbooks: Workbooks, tmp_path: Path
) -> None:
    ledger = SyncLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    # The create batch is committed, its reply lost; by the time the loader looks again, lookups fail.
    workbooks.app.injector.add(parse_fault_spec(
        f"slow:delay_ms={WRITE_HELD_MS}:count=1:methods=PUT:path=/crm/people,"
        "drop_after_write:count=1:methods=PUT:path=/crm/people"))
    armed = threading.Event()
    arming = threading.Thread(target=_fail_reads_once_the_write_is_held, args=(workbooks, _slow_faults(workbooks), armed),
                              daemon=True)
    before = workbooks.requests()
    arming.start()
    try:
        with pytest.raises(ServerError):
            _load(workbooks, ledger, extracted_prospects({"id": 21}, {"id": 22}, updated_at=T0), "run-1")
    finally:
        arming.join(30)
    assert armed.is_set()
    assert workbooks.requests()[PEOPLE_WRITE] - before.get(PEOPLE_WRITE, 0) == 1  # the lost create, never redone

    workbooks.app.injector.clear()
    landed = workbooks.client.lookup("crm/people", "cf_person_outreach_id", [21, 22], ["id", "cf_person_outreach_id"])
    assert sorted(row["cf_person_outreach_id"] for row in landed) == [21, 22]  # one Person each
    # The next run finds them by link key and creates nothing.
    again = _load(workbooks, ledger, extracted_prospects({"id": 21}, {"id": 22}, updated_at=T0), "run-2")
    assert again.counts == {"unchanged": 2}, again.outcomes.to_dict("records")
    ledger.dispose()
