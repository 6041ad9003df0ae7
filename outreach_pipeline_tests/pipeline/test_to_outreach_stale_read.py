"""Two Workbooks -> Outreach writers overlapping over real HTTP: the one whose Workbooks read is older than what
the other synced since writes nothing from it (`stale_read`), so Outreach keeps the newer values; a create from
a read taken before the other's create adopts that prospect instead of making a second."""

from __future__ import annotations

from pathlib import Path

from outreach_pipeline.engine.ledger import SyncLedger, SyncWindow
from outreach_pipeline.engine.load_outreach import OutreachWriter, read_workbooks_changes
from outreach_pipeline.mapping.models import load_mapping_set
from outreach_pipeline_tests.pipeline.harness import pipeline
from outreach_pipeline_tests.pipeline.two_way import (
    FIRST_EDIT_WINDOW,
    HOUR,
    SMALL_SEED,
    create_workbooks,
    edit_workbooks,
    outreach_by_id,
    outreach_client,
    read_workbooks,
    set_clocks,
    workbooks_client,
)

PEOPLE = load_mapping_set().entity("prospects")
WINDOW = SyncWindow(start=FIRST_EDIT_WINDOW, end=FIRST_EDIT_WINDOW + HOUR)


def _write(pipe, ledger: SyncLedger, changes, run_id: str):
    with outreach_client(pipe) as client:
        return OutreachWriter(client=client, ledger=ledger, mappings=load_mapping_set(), entity=PEOPLE,
                              resource="prospects", run_id=run_id, window=WINDOW).write(changes)


def _read(pipe):
    with workbooks_client(pipe) as client:
        return read_workbooks_changes(client, PEOPLE, WINDOW)


def test_an_older_read_writes_neither_old_values_nor_a_second_prospect(tmp_path: Path) -> None:
    with pipeline(tmp_path, **SMALL_SEED) as pipe:
        ledger = SyncLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
        set_clocks(pipe, FIRST_EDIT_WINDOW + HOUR / 6)
        person = create_workbooks(pipe, "crm/people", {
            "person_first_name": "Ada", "person_last_name": "Lovelace", "person_job_title": "Analyst",
            "main_location[email]": "ada@stale.example", "cf_person_sync_to_outreach": True})

        # Run A reads the unlinked person; run B reads it too, creates the prospect and links it back.
        read_by_a = _read(pipe)
        written = _write(pipe, ledger, _read(pipe), "run-b")
        assert written.counts == {"created": 1}
        prospect_id = int(written.results["outreach_id"].iloc[0])
        edit_workbooks(pipe, "crm/people", person["id"], {"cf_person_outreach_id": prospect_id})

        # A writes from its older read (same version, before the link-back): it finds B's prospect by the key
        # written on create and adopts it, rather than creating a second one.
        assert _write(pipe, ledger, read_by_a, "run-a").counts == {"adopted": 1}
        prospects = [p for p in outreach_by_id(pipe, "prospect").values() if p.attributes.get("lastName") == "Lovelace"]
        assert [p.id for p in prospects] == [prospect_id]

        # A reads the linked person; a user retitles them; B syncs the new title.
        set_clocks(pipe, FIRST_EDIT_WINDOW + HOUR / 3)
        read_by_a = _read(pipe)
        edit_workbooks(pipe, "crm/people", person["id"], {"person_job_title": "Engineer"})
        assert _write(pipe, ledger, _read(pipe), "run-b2").counts == {"updated": 1}
        assert outreach_by_id(pipe, "prospect")[prospect_id].attributes["title"] == "Engineer"

        # A writes from its older read: the title Outreach holds stays the newer one, and the ledger says why.
        stale = _write(pipe, ledger, read_by_a, "run-a2")
        assert stale.counts == {"skipped": 1}
        assert stale.results["reason"].tolist() == ["stale_read"]
        assert outreach_by_id(pipe, "prospect")[prospect_id].attributes["title"] == "Engineer"
        state = ledger.get_states("prospects", [prospect_id])[prospect_id]
        assert state.values["person_job_title"] == "Engineer"
        assert state.workbooks_lock_version == read_workbooks(pipe, "crm/people", person["id"])["lock_version"]

        # A fresh read of the same version is not stale: with nothing changed it writes nothing.
        assert _write(pipe, ledger, _read(pipe), "run-c").counts == {"unchanged": 1}
        ledger.dispose()
