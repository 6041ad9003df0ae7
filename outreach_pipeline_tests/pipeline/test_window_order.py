"""Acceptance: running windows one by one newest-first ends in the same Workbooks content as oldest-first.

Two fresh sandboxes hold the same seed. Newest-first is what an operator does when catching up on recent
changes first: prospects then arrive before their accounts (employer links wait as pending relations) and
of two prospects sharing an email the later one is seen first; neither may change the end result. Only the
steps of those three entities run (engagement's order is covered by its own tests).
"""

from __future__ import annotations

from pathlib import Path

from outreach_pipeline_tests.pipeline.harness import (
    content_differences,
    expected_links,
    linked_ids,
    pipeline,
    seeded_windows,
    step_failures,
    workbooks_content,
)

SEED = {"prospects": 120, "accounts": 20, "opportunities": 40, "seed_days": 1}
#: The seeded day's last 12 windows, one run each per order: half the day keeps the cases the order exposes
#: (prospects before their accounts, records pointing at ones changed before the first window, shared emails
#: seen in either order) at half the runs of the whole day.
WINDOWS = seeded_windows(1)[-12:]


def _sync_window_by_window(home: Path, newest_first: bool) -> tuple[dict, list[str], dict[str, set[int]]]:
    windows = sorted(WINDOWS, reverse=newest_first)
    with pipeline(home, **SEED) as pipe:
        failures = []
        for window in windows:
            result = pipe.run(window, raise_on_error=False, asset_selection=pipe.core_selection())
            if not result.success:
                failures.append(f"{window:%H:%M}: {step_failures(result)}")
        return workbooks_content(pipe), failures, expected_links(pipe, min(windows))


def test_newest_first_gives_the_same_workbooks_content_as_oldest_first(tmp_path: Path) -> None:
    oldest_first, oldest_failures, oldest_expected = _sync_window_by_window(tmp_path / "oldest_first", newest_first=False)
    newest_first, newest_failures, newest_expected = _sync_window_by_window(tmp_path / "newest_first", newest_first=True)
    assert not oldest_failures, oldest_failures[:3]
    assert not newest_failures, newest_failures[:3]
    # Each order linked every record the windows changed, bar the ones its ledger holds as failed (and the
    # records from before the first window those point at, pulled in and linked too).
    for content, expected in ((oldest_first, oldest_expected), (newest_first, newest_expected)):
        linked = linked_ids(content)
        assert all(ids <= linked.get(entity, set()) for entity, ids in expected.items()), {
            entity: len(ids - linked.get(entity, set())) for entity, ids in expected.items()}
    assert newest_first == oldest_first, content_differences(oldest_first, newest_first)
