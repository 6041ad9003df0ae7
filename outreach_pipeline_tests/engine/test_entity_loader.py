"""The load engine against the Workbooks sandbox over real HTTP: refusals, flags, reconciling lost replies.

The staged rows come from the real staging transform; Workbooks is the sandbox app served on loopback, so
a refusal or a dropped connection is the API's own behaviour, not a mock of ours.
"""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from outreach_pipeline.clients.workbooks import WorkbooksClient
from outreach_pipeline.engine import load as load_module
from outreach_pipeline.engine.install import install
from outreach_pipeline.engine.ledger import SyncLedger, SyncWindow
from outreach_pipeline.engine.load import EntityLoader
from outreach_pipeline.engine.plan import SHARERS_COLUMN
from outreach_pipeline.mapping.models import load_mapping_set
from outreach_pipeline.mapping.transform import stage_records
from outreach_pipeline.sandbox.credentials import SANDBOX_WORKBOOKS_AUTH
from outreach_pipeline.sandbox.faults import FaultInjector, SandboxMiddleware, parse_fault_spec
from outreach_pipeline.sandbox.server import serve_in_thread
from outreach_pipeline.sandbox.workbooks.app import WorkbooksSettings, create_workbooks_app
from outreach_pipeline.sandbox.workbooks.store import WorkbooksStore
from outreach_pipeline_tests.engine.frames import extracted_prospects

MAPPINGS = load_mapping_set()
PROSPECTS = MAPPINGS.entity("prospects")
T0 = datetime(2026, 11, 20, 5, tzinfo=UTC)
WINDOW = SyncWindow(start=T0, end=T0 + timedelta(hours=1))


def _extracted(*rows: dict) -> pd.DataFrame:
    return extracted_prospects(*({"title": "Buyer", **row} for row in rows), updated_at=T0)


@pytest.fixture
def workbooks() -> Iterator[tuple[WorkbooksClient, SandboxMiddleware]]:
    app = SandboxMiddleware(create_workbooks_app(WorkbooksStore("sqlite://"), WorkbooksSettings()), injector=FaultInjector())
    with serve_in_thread(app) as server:
        client = WorkbooksClient(server.url, **SANDBOX_WORKBOOKS_AUTH)
        install(client, MAPPINGS)
        yield client, app
        client.close()


def _load(client: WorkbooksClient, ledger: SyncLedger, frame: pd.DataFrame, run: str, mapping=PROSPECTS):
    staged = stage_records(frame, mapping)
    loader = EntityLoader(client=client, ledger=ledger, mappings=MAPPINGS, entity=mapping, run_id=run, window=WINDOW)
    return loader.load(staged)


def _person(client: WorkbooksClient, outreach_id: int) -> dict:
    [row] = client.lookup("crm/people", "cf_person_outreach_id", [outreach_id],
                          ["id", "person_job_title", "cf_person_outreach_sync_error", "cf_person_outreach_sync_error_message"])
    return row


def test_a_refused_update_fails_that_record_flags_it_and_a_fix_clears_the_flag(workbooks, tmp_path: Path) -> None:
    client, _ = workbooks
    ledger = SyncLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    assert _load(client, ledger, _extracted({"id": 1}, {"id": 2}), "run-1").counts == {"created": 2}

    # A user's mapping allows longer titles than this Workbooks database does: Workbooks refuses the update.
    lenient = PROSPECTS.model_copy(update={"fields": [
        f.model_copy(update={"transform": f.transform.model_copy(update={"max_length": 5000})})
        if f.workbooks == "person_job_title" else f for f in PROSPECTS.fields
    ]})
    result = _load(client, ledger, _extracted({"id": 1, "title": "x" * 400, "updatedAt": T0 + timedelta(minutes=1)},
                                              {"id": 2, "firstName": "Bo", "updatedAt": T0 + timedelta(minutes=1)}),
                   "run-2", lenient)
    assert result.counts == {"failed": 1, "updated": 1}  # the other record of the window still syncs
    [failed] = result.outcomes[result.outcomes["outcome"] == "failed"].to_dict("records")
    assert failed["error"].startswith("prospect 1: Workbooks refused the write: person_job_title")
    flagged = _person(client, 1)
    assert flagged["cf_person_outreach_sync_error"] is True
    assert flagged["cf_person_outreach_sync_error_message"] == failed["error"]
    assert flagged["person_job_title"] == "Buyer"  # the refused value never landed

    # Fixed in Outreach: the flag is ours (the ledger's failure), so the next sync heals the record.
    healed = _load(client, ledger, _extracted({"id": 1, "title": "Lead", "updatedAt": T0 + timedelta(minutes=2)}), "run-3")
    assert healed.counts == {"updated": 1}
    person = _person(client, 1)
    assert (person["cf_person_outreach_sync_error"], person["person_job_title"]) == (False, "Lead")
    assert [entry.outcome for entry in ledger.history("prospects", 1)] == ["created", "failed", "updated"]
    assert ledger.run_summary("run-2", "prospects").counts["failed"] == 1


def test_a_create_whose_reply_is_lost_is_found_again_not_created_twice(workbooks, tmp_path: Path) -> None:
    client, app = workbooks
    ledger = SyncLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    # The first write batch is committed by Workbooks, then the connection drops before the reply.
    app.injector.add(parse_fault_spec("drop_after_write:count=1:methods=PUT:path=/crm/people"))
    result = _load(client, ledger, _extracted({"id": 1}, {"id": 2}, {"id": 3}), "run-1")
    assert result.counts == {"created": 3}  # reported as what the run did, though found on the second round
    people = client.iter_records("crm/people", select_columns=["id", "cf_person_outreach_id"])
    linked = [row["cf_person_outreach_id"] for row in people if row.get("cf_person_outreach_id")]
    assert sorted(linked) == [1, 2, 3]  # exactly one Person each


def test_holders_handed_in_fail_every_holder_and_a_record_outreach_was_not_asked_about_stops_the_load(
    workbooks, tmp_path: Path
) -> None:
    client, _ = workbooks
    ledger = SyncLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    staged = stage_records(_extracted({"id": 1}, {"id": 2}), PROSPECTS)
    sharers = pd.DataFrame({"outreach_id": [1, 2], SHARERS_COLUMN: [[7], []]})  # Outreach 7 holds 1's email too
    loader = EntityLoader(client=client, ledger=ledger, mappings=MAPPINGS, entity=PROSPECTS, run_id="run-1",
                          window=WINDOW, sharers=sharers)
    result = loader.load(staged)
    assert result.counts == {"created": 1, "failed": 1}
    [failed] = result.outcomes[result.outcomes["outcome"] == "failed"].to_dict("records")
    assert failed["outreach_id"] == 1 and "main_location[email]" in failed["error"]

    unasked = EntityLoader(client=client, ledger=ledger, mappings=MAPPINGS, entity=PROSPECTS, run_id="run-2",
                           window=WINDOW, sharers=sharers[sharers["outreach_id"] == 2])
    with pytest.raises(ValueError, match=r"^prospect 3 .*no answer from Outreach"):
        unasked.load(stage_records(_extracted({"id": 2}, {"id": 3}), PROSPECTS))
    assert not client.lookup("crm/people", "cf_person_outreach_id", [3], ["id"])  # never created unchecked


def test_a_load_in_chunks_ends_as_the_load_in_one_piece(workbooks, tmp_path: Path, monkeypatch) -> None:
    """Chunks of 4 rows: a duplicate email across chunks, a lost reply in the second chunk's write and an
    invalid record give the same outcomes, ledger and Workbooks content as one chunk does on a fresh twin."""
    rows = [{"id": i} for i in range(1, 12)]
    rows[9] = {"id": 10, "emails": ["p2@example.com"]}  # the same email as record 2, three chunks later
    rows[5] = {"id": 6, "lastName": None}  # invalid: a person needs a last name
    client, app = workbooks

    def people() -> list[tuple]:
        found = client.iter_records("crm/people", select_columns=["cf_person_outreach_id", "main_location[email]"])
        return sorted((row.get("cf_person_outreach_id"), row.get("main_location[email]")) for row in found)

    monkeypatch.setattr(load_module, "LOAD_CHUNK_ROWS", 11)
    whole = _load(client, ledger := SyncLedger(f"sqlite:///{tmp_path / 'whole.db'}"), _extracted(*rows), "run-1")
    in_one_piece = (people(), ledger.run_summary("run-1", "prospects").counts)
    client.close()

    app.app = create_workbooks_app(WorkbooksStore("sqlite://"), WorkbooksSettings())  # a fresh Workbooks
    install(client, MAPPINGS)
    monkeypatch.setattr(load_module, "LOAD_CHUNK_ROWS", 4)
    app.injector.add(parse_fault_spec("drop_after_write:count=1:methods=PUT:path=/crm/people"))
    app.injector.add(parse_fault_spec("drop_after_write:count=0:methods=PUT:path=/crm/people"))
    chunked = _load(client, ledger := SyncLedger(f"sqlite:///{tmp_path / 'chunked.db'}"), _extracted(*rows), "run-1")
    assert (people(), ledger.run_summary("run-1", "prospects").counts) == in_one_piece
    columns = ["outreach_id", "workbooks_id", "outcome"]
    assert chunked.outcomes[columns].drop(columns="workbooks_id").equals(whole.outcomes[columns].drop(columns="workbooks_id"))
    assert chunked.counts == whole.counts and whole.counts["failed"] >= 2
    assert len(ledger.history("prospects", 10)) == 1
