"""The `failure_rate` check's thresholds at their boundaries, through the check function the failure_rate check step calls.

The README promises WARN above 1 % and ERROR above 10 % ("above": a rate equal to a threshold is on the
lower side). A real run that reports ERROR is in pipeline/test_bad_records.py (the Workbooks -> Outreach writes':
pipeline/test_to_outreach_failure_rate.py). The writes' check judges a run's windows in one evaluation
(`judge_run`), each window as above.
"""

from __future__ import annotations

import dagster as dg
import pytest

from outreach_pipeline.defs.failure_rate import (
    FLAGGED_ROWS,
    WindowCounts,
    WindowRate,
    error_windows,
    failure_rate_message,
    judge_run,
)
from outreach_pipeline.defs.failure_rate import failure_rate_result as _failure_rate_check
from outreach_pipeline.defs.resources import SyncSettings

PASS = (True, dg.AssetCheckSeverity.WARN)
WARN = (False, dg.AssetCheckSeverity.WARN)
ERROR = (False, dg.AssetCheckSeverity.ERROR)
PROSPECTS = dg.AssetKey(["outreach", "prospects_written"])


def _verdict(result: dg.AssetCheckResult) -> tuple[bool, dg.AssetCheckSeverity]:
    return result.passed, result.severity


@pytest.mark.parametrize(
    ("failed", "extracted", "expected"),
    [
        (0, 0, PASS),  # an empty window fails nothing
        (0, 500, PASS),
        (1, 100, PASS),  # exactly 1 %
        (2, 199, WARN),  # 1.005 %: just above 1 %
        (10, 100, WARN),  # exactly 10 %
        (11, 109, ERROR),  # 10.09 %: just above 10 %
        (20, 20, ERROR),
    ],
    ids=["empty", "none_failed", "exactly_1pc", "just_above_1pc", "exactly_10pc", "just_above_10pc", "all_failed"],
)
def test_failure_rate_thresholds_at_their_boundaries(failed: int, extracted: int, expected: tuple) -> None:
    result = _failure_rate_check(failed, extracted, SyncSettings())
    assert _verdict(result) == expected, (failed, extracted, result.metadata)
    assert result.check_name == "failure_rate"
    assert result.metadata["failed"].value == failed
    assert result.metadata["extracted"].value == extracted


def test_failure_rate_thresholds_come_from_the_settings() -> None:
    strict = SyncSettings(failure_rate_warn=0.0, failure_rate_error=0.05)
    assert _verdict(_failure_rate_check(1, 100, strict)) == WARN
    assert _verdict(_failure_rate_check(6, 100, strict)) == ERROR
    lenient = SyncSettings(failure_rate_warn=0.5, failure_rate_error=0.9)
    assert _verdict(_failure_rate_check(50, 100, lenient)) == PASS
    assert _verdict(_failure_rate_check(90, 100, lenient)) == WARN


def test_a_small_window_is_judged_at_error_only_when_the_run_as_a_whole_is() -> None:
    settings = SyncSettings()  # ERROR above 10 % from 20 records
    assert _verdict(_failure_rate_check(1, 3, settings)) == WARN  # a quiet hour's one failure is not a broken sync
    assert _verdict(_failure_rate_check(3, 19, settings)) == WARN
    assert _verdict(_failure_rate_check(3, 20, settings)) == ERROR
    # Pooled over the run's windows: enough records and a rate above the threshold make each bad window ERROR.
    assert _verdict(_failure_rate_check(1, 3, settings, run_total=(5, 30))) == ERROR
    assert _verdict(_failure_rate_check(1, 3, settings, run_total=(2, 30))) == WARN
    assert _verdict(_failure_rate_check(1, 3, settings, run_total=(5, 19))) == WARN
    assert _verdict(_failure_rate_check(1, 3, SyncSettings(failure_rate_min_records=1))) == ERROR


def _window(hour: int) -> str:
    return f"2026-11-02-{hour:02d}:00"


def test_the_per_run_write_check_judges_each_window_and_reports_the_worst() -> None:
    """The Workbooks -> Outreach writes' check: one result for the run's windows, each judged as above."""
    counts = [
        (_window(0), WindowCounts(judged=0, failed=0, failed_retried=0)),  # quiet
        (_window(1), WindowCounts(judged=3, failed=1, failed_retried=2)),  # 33 %, too few records for ERROR
        (_window(2), WindowCounts(judged=40, failed=6, failed_retried=0)),  # 15 %: ERROR
        (_window(3), WindowCounts(judged=100, failed=2, failed_retried=0)),  # 2 %: WARN
        (_window(4), WindowCounts(judged=50, failed=0, failed_retried=0)),
    ]
    result, errors = judge_run(counts, SyncSettings())  # pooled 9 / 196 = 4.6 %: small windows stay WARN
    values = {key: value.value for key, value in result.metadata.items()}

    assert _verdict(result) == ERROR
    assert [w.window for w in errors] == [_window(2)]
    assert (values["worst_window"], values["failed"], values["extracted"]) == (_window(2), 6, 40)
    assert values["failure_rate"] == pytest.approx(0.15)
    assert (values["windows_judged"], values["windows_at_warn"], values["windows_at_error"]) == (5, 2, 1)
    assert values["failed_retried"] == 2
    assert values["windows_flagged"] == [  # ERROR first, then WARN by rate
        {"window": _window(2), "failed": 6, "selected": 40, "rate": 0.15, "severity": "ERROR"},
        {"window": _window(1), "failed": 1, "selected": 3, "rate": 0.3333, "severity": "WARN"},
        {"window": _window(3), "failed": 2, "selected": 100, "rate": 0.02, "severity": "WARN"},
    ]
    windows, count = error_windows(values)
    assert (windows, count) == ([WindowRate(_window(2), 6, 40)], 1)
    assert failure_rate_message(PROSPECTS, windows, 0.1, count=count).endswith(f"in window {_window(2)}")


def test_the_per_run_write_check_passes_quiet_runs_and_pools_small_windows() -> None:
    quiet = [(_window(hour), WindowCounts(judged=0, failed=0, failed_retried=0)) for hour in range(24)]
    result, errors = judge_run(quiet, SyncSettings())
    assert _verdict(result) == PASS and errors == []
    assert (result.metadata["windows_judged"].value, result.metadata["windows_flagged"].value) == (24, [])
    # Small windows bad together: the pooled rate (8 / 24) makes each bad one ERROR, as per window.
    small = [(_window(hour), WindowCounts(judged=3, failed=1, failed_retried=0)) for hour in range(8)]
    result, errors = judge_run(small, SyncSettings())
    assert _verdict(result) == ERROR and len(errors) == 8
    assert result.metadata["windows_at_error"].value == 8
    # The table lists the worst FLAGGED_ROWS; the count covers them all, and so does the alert's message.
    many = [(_window(hour % 24).replace("-02-", f"-{2 + hour // 24:02d}-"), WindowCounts(judged=20, failed=5,
                                                                                          failed_retried=0))
            for hour in range(FLAGGED_ROWS + 6)]
    result, errors = judge_run(many, SyncSettings())
    values = {key: value.value for key, value in result.metadata.items()}
    assert len(values["windows_flagged"]) == FLAGGED_ROWS and values["windows_at_error"] == FLAGGED_ROWS + 6
    windows, count = error_windows(values)
    assert f"in {FLAGGED_ROWS + 6} windows, worst" in failure_rate_message(PROSPECTS, windows, 0.1, count=count)
    # A per-window evaluation (the loads') has no table.
    assert error_windows({"failed": 1, "extracted": 3}) is None
