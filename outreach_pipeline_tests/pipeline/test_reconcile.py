"""Acceptance, reconcile job through Dagster over real HTTP: a removed opportunity role (no updatedAt bump) and
a record deleted on each side are caught and repaired, nothing hard-deleted; above its change share it aborts
with a clear message, changing nothing."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from outreach_pipeline.clients.workbooks import WriteOp
from outreach_pipeline.defs.reconcile import RECONCILE_JOB
from outreach_pipeline.engine.ledger import SyncLedger
from outreach_pipeline_tests.pipeline.harness import (
    QUIET_LOGS,
    outreach_records,
    seeded_windows,
    step_failures,
)
from outreach_pipeline_tests.pipeline.two_way import (
    SMALL_SEED,
    outreach_client,
    read_workbooks,
    two_way_pipeline,
    workbooks_client,
)


def _reconcile(pipe, share: float | None = None) -> dg.ExecuteInProcessResult:
    ops = {"reconcile_linked_records": {"config": {"max_change_share": share}}} if share is not None else {}
    return pipe.defs.resolve_job_def(RECONCILE_JOB).execute_in_process(
        instance=pipe.instance, raise_on_error=False,
        run_config={"ops": ops, "loggers": QUIET_LOGS["loggers"]},
    )


def test_reconcile_repairs_a_removed_role_and_deletions_on_each_side_and_aborts_above_its_share(
    tmp_path: Path,
) -> None:
    with two_way_pipeline(tmp_path, **SMALL_SEED) as pipe:
        windows = seeded_windows(1)
        result = pipe.run(windows[0], windows[-1], raise_on_error=False)
        assert result.success, step_failures(result)
        opportunities = pipe.synced_rows("opportunities")
        people = pipe.synced_rows("prospects")
        organisations = pipe.synced_rows("accounts")
        roles = [r for r in outreach_records(pipe.sandbox, "opportunityProspectRole")
                 if r.relationships.get("opportunity") in opportunities and r.relationships.get("prospect") in people]
        role = roles[0]
        opportunity_id, removed_prospect = role.relationships["opportunity"], role.relationships["prospect"]
        assert people[removed_prospect]["id"] in _contacts(opportunities[opportunity_id])
        deleted_prospect = next(i for i in people if i != removed_prospect)
        deleted_organisation_account = next(iter(organisations))
        deleted_organisation = organisations[deleted_organisation_account]
        with outreach_client(pipe) as client:
            client.delete("opportunityProspectRoles", role.id)
            client.delete("prospects", deleted_prospect)
        with workbooks_client(pipe) as client:
            client.write_one("crm/organisations", WriteOp(action="delete", id=deleted_organisation["id"],
                                                          lock_version=int(deleted_organisation["lock_version"])))

        aborted = _reconcile(pipe, share=0.01)
        assert not aborted.success
        message = " ".join(step_failures(aborted))
        assert "reconcile of accounts aborted, nothing changed" in message, message
        assert people[removed_prospect]["id"] in _contacts(read_workbooks(pipe, "crm/opportunities",
                                                                          opportunities[opportunity_id]["id"]))
        assert read_workbooks(pipe, "crm/people", people[deleted_prospect]["id"])["cf_person_outreach_id"]

        # A seed this small changes a third of its opportunities: allowed for this run.
        repaired = _reconcile(pipe, share=0.5)
        assert repaired.success, step_failures(repaired)
        contacts = _contacts(read_workbooks(pipe, "crm/opportunities", opportunities[opportunity_id]["id"]))
        assert people[removed_prospect]["id"] not in contacts
        orphan = read_workbooks(pipe, "crm/people", people[deleted_prospect]["id"])
        assert orphan["cf_person_outreach_id"] in (None, "")
        assert orphan["cf_person_outreach_sync_error"] is True
        assert "deleted in Outreach" in orphan["cf_person_outreach_sync_error_message"]
        # The account of the deleted organisation stays in Outreach, unlinked in the ledger.
        assert deleted_organisation_account in {r.id for r in outreach_records(pipe.sandbox, "account")}
        ledger = SyncLedger(pipe.ledger_url)
        try:
            state = ledger.get_states("accounts", [deleted_organisation_account])[deleted_organisation_account]
            assert state.workbooks_id is None
        finally:
            ledger.dispose()

        # Nothing left to repair: a second reconcile writes nothing.
        before = (pipe.workbooks_writes(), pipe.sandbox.outreach_middleware.stats.snapshot()["requests"])
        again = _reconcile(pipe, share=0.5)
        assert again.success, step_failures(again)
        after = (pipe.workbooks_writes(), pipe.sandbox.outreach_middleware.stats.snapshot()["requests"])
        assert after[0] == before[0]
        assert {k: v for k, v in after[1].items() if not k.startswith("GET")} == \
               {k: v for k, v in before[1].items() if not k.startswith("GET")}


def _contacts(row: dict) -> list[int]:
    value = row.get("opportunity_contact_ids")
    if value in (None, ""):
        return []
    if isinstance(value, list):
        return [int(v) for v in value]
    return [int(v) for v in str(value).strip("[]").split(",") if v.strip()]
