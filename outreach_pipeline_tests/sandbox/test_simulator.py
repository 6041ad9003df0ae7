"""The activity simulator (`sandbox up --simulate`) keeps changing both systems while the sandbox runs,
and what it changes is visible through the APIs, so hourly runs have real changes to move."""

import time
from datetime import UTC, datetime

from outreach_pipeline.clients.outreach import OutreachClient
from outreach_pipeline.clients.workbooks import WorkbooksClient
from outreach_pipeline.sandbox.credentials import SANDBOX_OUTREACH_AUTH, SANDBOX_WORKBOOKS_AUTH
from outreach_pipeline.sandbox.runtime import SandboxConfig, start_sandbox


def _people(client: WorkbooksClient) -> int:
    return sum(1 for _ in client.iter_records("crm/people", select_columns=["id"]))


def test_the_simulator_creates_and_edits_records_in_both_systems_until_stopped():
    config = SandboxConfig(
        data_dir=None, outreach_port=0, workbooks_port=0, prospects=20, workbooks_people=10,
        simulate=True, simulate_interval_seconds=0.1, simulate_creates=2, simulate_edits=3,
    )
    started = datetime.now(UTC)
    with start_sandbox(config) as sandbox:
        outreach = OutreachClient(sandbox.outreach_url, **SANDBOX_OUTREACH_AUTH)
        workbooks = WorkbooksClient(sandbox.workbooks_url, **SANDBOX_WORKBOOKS_AUTH)
        prospects_before = sandbox.outreach_store.count_all()["prospect"]
        people_before = _people(workbooks)
        time.sleep(1.5)
        changed = list(outreach.iter_window("prospects", started, datetime.now(UTC)))
        assert sandbox.outreach_store.count_all()["prospect"] >= prospects_before + 4
        assert sum(len(page.records) for page in changed) >= 4  # new and edited prospects, inside the window
        assert _people(workbooks) > people_before
        outreach.close()
        workbooks.close()
    assert sandbox._simulator is not None and not sandbox._simulator.is_alive()  # joined when the sandbox stops
