"""Acceptance: running a day's windows one by one newest-first ends in the same Workbooks content as oldest-first.

Two fresh sandboxes hold the same seed. Newest-first is what an operator does when catching up on recent
changes first: prospects then arrive before their accounts (employer links wait as pending relations) and
of two prospects sharing an email the later one is seen first; neither may change the end result.
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


def _sync_window_by_window(home: Path, newest_first: bool) -> tuple[dict, list[str], dict[str, set[int]]]:
    windows = sorted(seeded_windows(1), reverse=newest_first)
    with pipeline(home, **SEED) as pipe:
        failures = []
        for window in windows:
            result = pipe.run(window, raise_on_error=False)
            if not result.success:
                failures.append(f"{window:%H:%M}: {step_failures(result)}")
        return workbooks_content(pipe), failures, expected_links(pipe, min(windows))


def test_newest_first_gives_the_same_workbooks_content_as_oldest_first(tmp_path: Path) -> None:
    oldest_first, oldest_failures, oldest_expected = _sync_window_by_window(tmp_path / "oldest_first", newest_first=False)
    newest_first, newest_failures, newest_expected = _sync_window_by_window(tmp_path / "newest_first", newest_first=True)
    assert not oldest_failures, oldest_failures[:3]
    assert not newest_failures, newest_failures[:3]
    # Each order linked every record the day changed, bar the ones its ledger holds as failed.
    assert linked_ids(oldest_first) == oldest_expected, {e: len(ids) for e, ids in linked_ids(oldest_first).items()}
    assert linked_ids(newest_first) == newest_expected, {e: len(ids) for e, ids in linked_ids(newest_first).items()}
    assert newest_first == oldest_first, content_differences(oldest_first, newest_first)
