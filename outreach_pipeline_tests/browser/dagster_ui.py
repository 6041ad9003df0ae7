"""What an operator does in the Dagster UI, as Playwright steps: roles and visible text, generous timeouts.

Debian's `chromium` package is the browser (Playwright's own browser download is not available here); a
missing one fails the test with what to install, never skips it.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Locator, Page, expect

#: The Debian package's binary; `bash .ci/services` installs it when it is missing.
CHROMIUM = "chromium"
UI_TIMEOUT_MS = 60_000
#: A backfill waits for the backfill daemon's tick (up to 30 s), its run for the run queue, then the run itself.
BACKFILL_TIMEOUT_SECONDS = 420.0
LOAD_JOB = "outreach_to_workbooks_job"


def chromium_executable() -> str:
    """The path of Debian's Chromium, or the test fails saying how to get it."""
    path = shutil.which(CHROMIUM)
    if path is None:
        pytest.fail(f"the browser test needs Debian's `{CHROMIUM}` package and there is no `{CHROMIUM}` on PATH: "
                    f"run `bash .ci/services` (it installs it) or `apt-get install -y {CHROMIUM}`", pytrace=False)
    return path


def skip_community_dialog(base_url: str) -> None:
    """Answer the UI's first-visit "Join the Dagster community" dialog as its Skip button does (the
    `setNuxSeen` mutation), before any page opens: it would otherwise open a second after some page load."""
    graphql = f"{base_url}/graphql"
    requests.post(graphql, json={"query": "mutation { setNuxSeen }"}, timeout=30).raise_for_status()
    answer = requests.post(graphql, json={"query": "{ shouldShowNux }"}, timeout=30).json()
    assert answer["data"]["shouldShowNux"] is False, answer


@contextmanager
def screenshot_on_failure(page: Page, directory: Path, step: str) -> Iterator[None]:
    """On an error inside the block, save the page as `failed-<step>.png` and its text, and name them."""
    try:
        yield
    except BaseException as error:
        directory.mkdir(parents=True, exist_ok=True)
        picture = directory / f"failed-{step}.png"
        try:
            page.screenshot(path=str(picture), full_page=True)
            (directory / f"failed-{step}.txt").write_text(page.url + "\n\n" + page.inner_text("body"))
            error.add_note(f"step {step!r} failed at {page.url}; screenshot: {picture}")
        except Exception as screenshot_error:  # the page may be gone; keep the original error
            error.add_note(f"step {step!r} failed; no screenshot: {screenshot_error}")
        raise


def open_asset_graph(page: Page, base_url: str) -> None:
    """The global lineage (asset graph), once the code location's assets are loaded into it."""
    page.goto(f"{base_url}/asset-groups")
    expect(page.get_by_text("Global asset lineage")).to_be_visible()
    expect(page.get_by_role("button", name="Materialize all")).to_be_enabled()


def hide_navigation(page: Page) -> None:
    """Fold the UI's left navigation to its icons (kept for the session): wide tables fit the screenshots."""
    page.get_by_role("button", name="Hide navigation").click()
    expect(page.get_by_role("button", name="Hide navigation")).to_be_hidden()


def select_assets(page: Page, selection: str) -> None:
    """Type an asset selection (e.g. `+key:"workbooks/people"`) into the graph's filter box."""
    editor = page.locator(".CodeMirror").first
    editor.click()
    # Typed anywhere else, the "/" of a key would open the UI's search instead.
    expect(page.locator(".CodeMirror-focused")).to_be_visible()
    page.keyboard.type(selection)
    page.keyboard.press("Enter")
    expect(editor).to_contain_text(selection)


def expand_graph(page: Page) -> None:
    """Graph settings -> Expand all groups, the group list beside the graph hidden and one step of zoom out:
    every asset of the selection shows."""
    page.get_by_role("button").filter(has=page.get_by_role("img", name="settings", exact=True)).last.click()
    toggle = page.get_by_role("menuitem", name=re.compile("(Expand|Collapse) all groups"))
    if "Expand" in toggle.inner_text():  # the choice is kept in the browser's storage
        toggle.click()
    page.keyboard.press("Escape")
    page.get_by_role("button").filter(has=page.get_by_role("img", name="panel_show_right")).filter(
        has_not_text="Hide navigation").click()
    page.get_by_role("button").filter(has=page.get_by_role("img", name="zoom_out", exact=True)).click()


def open_job_graph(page: Page) -> None:
    """Jobs -> the load job: the job's page is its asset graph, and launches from it run the job's executor."""
    page.get_by_role("link", name="Jobs").click()  # its name also holds its icon's label
    page.get_by_role("link", name=LOAD_JOB).click()
    expect(page.get_by_role("button", name="Materialize all")).to_be_enabled()


def fill_backfill_dialog(page: Page, partition_range: str, partitions: int) -> None:
    """Materialize all... -> the partition range typed into the dialog's selector, which must count `partitions`.

    Args:
        partition_range: what the partition selector takes, e.g. ``[2026-11-29-15:00...2026-11-29-17:00]``.
        partitions: how many partitions the dialog must count for the range.
    """
    page.get_by_role("button", name="Materialize all").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_text("Partition selection")).to_be_visible()
    ranges = dialog.get_by_placeholder("No matching partitions")
    ranges.fill(partition_range)
    ranges.press("Enter")
    expect(dialog.get_by_text(f"{partitions} partitions", exact=True)).to_be_visible()


def launch_backfill(page: Page) -> str:
    """Launch backfill in the open dialog; returns the id the UI's notice gives the new backfill."""
    page.get_by_role("dialog").get_by_role("button", name="Launch backfill").click()
    notice = page.get_by_text(re.compile(r"Created backfill \w+"))
    expect(notice).to_be_visible()
    return re.search(r"Created backfill (\w+)", notice.inner_text()).group(1)


def wait_for_backfill_success(page: Page, base_url: str, backfill_id: str) -> None:
    """Reload the backfill's page until every targeted partition succeeded (its Succeeded column equals its
    Partitions targeted column) or its status reads Succeeded; Failed or Canceled ends the wait.

    The partition columns follow the run; the status waits for the backfill daemon's next tick (up to 30 s).
    """
    page.goto(f"{base_url}/runs/b/{backfill_id}")
    status = page.get_by_text("Status", exact=True).locator("xpath=..")
    deadline = time.monotonic() + BACKFILL_TIMEOUT_SECONDS
    while True:
        expect(status).to_be_visible()
        text = status.inner_text()
        if any(word in text for word in ("Failed", "Canceled", "Canceling")):
            raise AssertionError(f"backfill {backfill_id}: {text!r}")
        if "Succeeded" in text or _all_partitions_succeeded(page):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"backfill {backfill_id} still {text!r} after {BACKFILL_TIMEOUT_SECONDS:.0f} s")
        page.wait_for_timeout(3000)
        page.reload()


def _all_partitions_succeeded(page: Page) -> bool:
    """The backfill page's table: Partitions targeted, In progress, Succeeded, Failed for the job."""
    headers = [header.inner_text().strip() for header in page.get_by_role("columnheader").all()]
    rows = page.get_by_role("row").filter(has=page.get_by_role("cell")).all()
    if len(rows) != 1 or "Succeeded" not in headers:
        return False
    cells = [cell.inner_text().strip() for cell in rows[0].get_by_role("cell").all()]
    column = dict(zip(headers, cells, strict=False))
    return column.get("Failed") == "0" and column.get("Succeeded") == column.get("Partitions targeted") != "0"


def open_partition(page: Page, base_url: str, asset_path: str, partition_key: str) -> None:
    """The asset's page -> Partitions tab -> filter by the key -> select it; waits for its materialization."""
    page.goto(f"{base_url}/assets/{asset_path}")
    page.get_by_role("tab", name="Partitions").click()
    page.get_by_placeholder("Filter by name").fill(partition_key)
    page.get_by_text(partition_key, exact=True).filter(visible=True).first.click()
    expect(page.get_by_text("Materialized", exact=True).first).to_be_visible()
    expect(metadata_row(page, "records_created")).to_be_visible()


def metadata_row(page: Page, key: str) -> Locator:
    """The selected partition's metadata row named `key` (a table row: key | value)."""
    return page.get_by_role("row").filter(has=page.get_by_text(key, exact=True))


def metadata_int(page: Page, key: str) -> int:
    """The integer value of the selected partition's metadata entry `key`."""
    cells = metadata_row(page, key).first.get_by_role("cell")
    return int(cells.nth(1).inner_text().strip().replace(",", ""))


def metadata_table_rows(page: Page, key: str) -> Locator:
    """The data rows of the selected partition's table-valued metadata entry `key` (shown inline, under its
    column names)."""
    table = metadata_row(page, key).first.get_by_role("table")
    expect(table).to_be_visible()
    return table.get_by_role("row").filter(has=page.get_by_role("cell"))
