"""The Dagster UI in a real browser: the project started as the README's run command starts it, a backfill of
three windows launched from the asset graph, and a partition of `workbooks/people` read back on its page.

Playwright drives Debian's Chromium (`dagster_ui.chromium_executable`). The sandbox's three windows hold known
prospects (`planted`): the middle window has three valid ones and one whose first name is too long for
Workbooks. Screenshots of each step go to `$OUTREACH_PIPELINE_UI_SCREENSHOTS` when it is set (the docs' are
made with `OUTREACH_PIPELINE_UI_SCREENSHOTS=docs/screenshots`), else under the test's temporary directory; a
failing step leaves `failed-<step>.png` and the page's text there too.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, expect, sync_playwright

from outreach_pipeline_tests.browser.dagster_ui import (
    LOAD_JOB,
    UI_TIMEOUT_MS,
    chromium_executable,
    expand_graph,
    fill_backfill_dialog,
    hide_navigation,
    launch_backfill,
    metadata_int,
    metadata_row,
    metadata_table_rows,
    open_asset_graph,
    open_job_graph,
    open_partition,
    screenshot_on_failure,
    select_assets,
    skip_community_dialog,
    wait_for_backfill_success,
)
from outreach_pipeline_tests.browser.dev_process import dev_server
from outreach_pipeline_tests.browser.planted import TOO_LONG_MESSAGE, PlantedWindows, plant_windows

PROSPECTS = 150
SCREENSHOTS_VARIABLE = "OUTREACH_PIPELINE_UI_SCREENSHOTS"
PEOPLE = "workbooks/people"
OUTCOME_KEYS = ("records_created", "records_updated", "records_unchanged", "records_skipped", "records_failed")


@dataclass(frozen=True)
class LaunchedBackfill:
    page: Page
    base_url: str
    planted: PlantedWindows
    backfill_id: str
    shots: Path  # the docs' screenshots
    failures: Path  # a failed step's screenshot and page text

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(self.shots / f"{name}.png"))


@pytest.fixture(scope="module")
def launched(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LaunchedBackfill]:
    """`outreach-pipeline dev` on the planted sandbox, and a backfill of its three windows launched from the
    load job's asset graph and waited for in the UI until it succeeded."""
    executable = chromium_executable()
    root = tmp_path_factory.mktemp("browser")
    shots = Path(os.environ.get(SCREENSHOTS_VARIABLE) or root / "screenshots").resolve()
    shots.mkdir(parents=True, exist_ok=True)
    failures = root / "failures"
    planted = plant_windows(root / "sandbox", PROSPECTS)
    expect.set_options(timeout=UI_TIMEOUT_MS)
    with dev_server(root, root / "sandbox", PROSPECTS, planted.partitions_start) as server, \
            sync_playwright() as playwright:
        skip_community_dialog(server.url)
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            # Wide enough for the failed_records table beside the metadata keys.
            page = browser.new_page(viewport={"width": 1920, "height": 1000})
            page.set_default_timeout(UI_TIMEOUT_MS)
            with screenshot_on_failure(page, failures, "asset-graph"):
                # The lineage of workbooks/people: what the backfill will run.
                open_asset_graph(page, server.url)
                select_assets(page, f'+key:"{PEOPLE}"')
                expand_graph(page)
                # Expanded, the graph shows the assets themselves: Outreach's accounts among them.
                expect(page.get_by_text("accounts", exact=True)).to_be_visible()
                page.screenshot(path=str(shots / "asset-graph.png"))
            with screenshot_on_failure(page, failures, "launch-backfill"):
                # From the load job's asset graph: its runs use the job's executor (README: Backfill).
                open_job_graph(page)
                fill_backfill_dialog(page, planted.partition_range, len(planted.keys))
                page.screenshot(path=str(shots / "backfill-dialog.png"))
                backfill_id = launch_backfill(page)
            with screenshot_on_failure(page, failures, "backfill-success"):
                wait_for_backfill_success(page, server.url, backfill_id)
                page.screenshot(path=str(shots / "backfill-succeeded.png"))
                hide_navigation(page)  # the partition pages' tables need the room
            yield LaunchedBackfill(page, server.url, planted, backfill_id, shots, failures)
        finally:
            browser.close()


def _backfill_runs(base_url: str, backfill_id: str, partitions: int) -> list[dict]:
    """The backfill's runs (job and status), read over the UI's GraphQL endpoint."""
    query = """query ($id: String!) { partitionBackfillOrError(backfillId: $id) {
        ... on PartitionBackfill { numPartitions runs(limit: 10) { jobName status } } } }"""
    answer = requests.post(f"{base_url}/graphql", json={"query": query, "variables": {"id": backfill_id}}, timeout=30)
    backfill = answer.json()["data"]["partitionBackfillOrError"]
    assert backfill["numPartitions"] == partitions, backfill
    return backfill["runs"]


def test_a_backfill_launched_from_the_asset_graph_fills_each_window_of_people(launched: LaunchedBackfill) -> None:
    """The three windows ran as one successful run of the load job, and the middle window's partition of
    workbooks/people shows its counts, which add up."""
    page, planted = launched.page, launched.planted
    runs = _backfill_runs(launched.base_url, launched.backfill_id, len(planted.keys))
    assert runs == [{"jobName": LOAD_JOB, "status": "SUCCESS"}]  # BackfillPolicy.single_run
    with screenshot_on_failure(page, launched.failures, "partition-counts"):
        open_partition(page, launched.base_url, PEOPLE, planted.failing_window)
        counts = {key: metadata_int(page, key) for key in (*OUTCOME_KEYS, "records_extracted")}
        # Every extracted record has exactly one outcome, the planted window's valid prospects were created and
        # its too-long one failed.
        assert sum(counts[key] for key in OUTCOME_KEYS) == counts["records_extracted"], counts
        assert counts["records_created"] >= planted.valid[planted.failing_window], counts
        assert counts["records_failed"] >= 1, counts
        metadata_row(page, "records_created").first.scroll_into_view_if_needed()
        launched.shot("partition-counts")


def test_a_partition_of_people_shows_its_own_window_and_its_failed_record(launched: LaunchedBackfill) -> None:
    """Per-window audit (issue 10, items 1 and 2): each partition carries its own window's counts, and a table
    `failed_records` of its failed records with their messages."""
    page, planted = launched.page, launched.planted
    with screenshot_on_failure(page, launched.failures, "window-counts"):
        for key in planted.keys:
            open_partition(page, launched.base_url, PEOPLE, key)
            failed = 1 if key == planted.failing_window else 0
            expected = {"records_created": planted.valid[key], "records_updated": 0, "records_unchanged": 0,
                        "records_skipped": 0, "records_failed": failed, "records_extracted": planted.valid[key] + failed}
            assert {name: metadata_int(page, name) for name in expected} == expected, key
    with screenshot_on_failure(page, launched.failures, "failed-record"):
        open_partition(page, launched.base_url, PEOPLE, planted.failing_window)
        rows = metadata_table_rows(page, "failed_records")
        expect(rows).to_have_count(1)  # the window's only failure
        cells = [cell.inner_text().strip() for cell in rows.first.get_by_role("cell").all()]
        direction, entity, outreach_id, _workbooks_id, field, kind, message, _first_failed_at, streak = cells
        assert (direction, entity, outreach_id, field, kind, streak) == (
            "to_workbooks", "prospects", str(planted.failing_outreach_id), "person_first_name", "too_long", "1"), cells
        assert TOO_LONG_MESSAGE in message, cells
        metadata_row(page, "failed_records").first.scroll_into_view_if_needed()
        launched.shot("partition-failed-record")
