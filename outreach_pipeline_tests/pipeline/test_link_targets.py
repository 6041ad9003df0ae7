"""Acceptance: a relationship whose target is not synced yet is resolved in the same run.

A prospect and an opportunity change in one window; the account they point at last changed long before the
first partition, so no window ever reads it. One run of the window must still create the Organisation and
link both to it, and a second run must write nothing.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from outreach_pipeline_tests.pipeline.harness import (
    outreach_clock_at,
    outreach_records,
    pipeline,
    step_failures,
)

WINDOW_START = datetime(2026, 11, 1, 14, tzinfo=UTC)  # a window the seed leaves empty
LONG_AGO = datetime(2025, 3, 1, 9, tzinfo=UTC)  # before the first partition


def test_an_account_outside_every_window_is_pulled_in_and_linked_in_the_same_run(tmp_path: Path) -> None:
    with pipeline(tmp_path, prospects=30, accounts=5, opportunities=5, seed_days=1) as pipe:
        store = pipe.sandbox.outreach_store
        stage = outreach_records(pipe.sandbox, "opportunityStage")[0].id
        with outreach_clock_at(pipe.sandbox, LONG_AGO):
            account = store.create("account", {"name": "Old Account Ltd", "websiteUrl": "https://old.example"}, {}).id
            # Pulled in twice over: an old prospect only the new opportunity points at, and its old account.
            older_account = store.create("account", {"name": "Older Account Ltd"}, {}).id
            old_prospect = store.create(
                "prospect", {"firstName": "Ola", "lastName": "Berg", "emails": ["ola@older.example"]},
                {"account": older_account},
            ).id
        with outreach_clock_at(pipe.sandbox, WINDOW_START.replace(minute=20)):
            prospect = store.create(
                "prospect", {"firstName": "Nia", "lastName": "Okafor", "emails": ["nia@old.example"]},
                {"account": account},
            ).id
            opportunity = store.create(
                "opportunity", {"name": "Renewal", "amount": 1200, "currencyType": "EUR"},
                {"account": account, "opportunityStage": stage},
            ).id
            store.create("opportunityProspectRole", {"role": "Buyer"}, {"opportunity": opportunity, "prospect": prospect})
            store.create("opportunityProspectRole", {"role": "Champion"},
                         {"opportunity": opportunity, "prospect": old_prospect})

        first = pipe.run(WINDOW_START, raise_on_error=False)
        assert first.success, step_failures(first)
        organisations = pipe.synced_rows("accounts")
        people = pipe.synced_rows("prospects")
        opportunities = pipe.synced_rows("opportunities")
        assert organisations[account]["name"] == "Old Account Ltd"
        assert people[prospect]["employer_link"] == organisations[account]["id"]
        assert opportunities[opportunity]["organisation_id"] == organisations[account]["id"]
        assert set(json.loads(opportunities[opportunity]["opportunity_contact_ids"])) == \
            {people[prospect]["id"], people[old_prospect]["id"]}
        assert people[old_prospect]["employer_link"] == organisations[older_account]["id"]
        pulled = {key: result[0].metadata["range_row_count"].value for key in ("accounts", "prospects")
                  if (result := first.asset_materializations_for_node(f"outreach__referenced_{key}"))}
        assert pulled == {"accounts": 2, "prospects": 1}
        assert not pipe.open_ledger().pending_relations()

        writes = pipe.workbooks_writes()
        again = pipe.run(WINDOW_START, raise_on_error=False)
        assert again.success, step_failures(again)
        assert pipe.workbooks_writes() == writes


def test_the_full_sync_job_covers_records_last_changed_before_the_first_window(tmp_path: Path) -> None:
    with pipeline(tmp_path, prospects=30, accounts=5, opportunities=5, seed_days=1) as pipe:
        with outreach_clock_at(pipe.sandbox, LONG_AGO):
            account = pipe.sandbox.outreach_store.create("account", {"name": "Dormant Ltd"}, {}).id

        hourly = pipe.run(WINDOW_START, raise_on_error=False)
        assert hourly.success, step_failures(hourly)
        assert account not in pipe.synced_rows("accounts")  # no window ever holds it

        full = pipe.run(WINDOW_START, raise_on_error=False, job="full_sync_job")
        assert full.success, step_failures(full)
        assert pipe.synced_rows("accounts")[account]["name"] == "Dormant Ltd"
