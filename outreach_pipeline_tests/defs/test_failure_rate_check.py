"""The `failure_rate` check's thresholds at their boundaries, through the check function the failure_rate check step calls.

The README promises WARN above 1 % and ERROR above 10 % ("above": a rate equal to a threshold is on the
lower side). A real run that reports ERROR is in pipeline/test_bad_records.py (the Workbooks -> Outreach writes':
pipeline/test_to_outreach_failure_rate.py).
"""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest

from outreach_pipeline.defs.failure_rate import (
    WindowCounts,
    WindowRate,
    counts_by_window,
    failure_rate_message,
)
from outreach_pipeline.defs.failure_rate import failure_rate_result as _failure_rate_check
from outreach_pipeline.defs.partitions import WINDOW_COLUMN
from outreach_pipeline.defs.resources import SyncSettings
from outreach_pipeline.engine.outcome import Outcome

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


def test_each_window_is_counted_from_its_own_outcomes_and_stuck_records_apart() -> None:
    """The check step's counts: per window start, records by id (a record with two outcomes counts once),
    failures of records that had failed before counted apart on both sides."""
    first, second = pd.Timestamp("2026-11-02 00:00", tz="UTC"), pd.Timestamp("2026-11-02 01:00", tz="UTC")
    outcomes = pd.DataFrame({
        WINDOW_COLUMN: [first, first, first, first, second, second],
        "workbooks_id": [1, 2, 3, 3, 4, 5],
        "outcome": [Outcome.CREATED.value, Outcome.FAILED.value, Outcome.FAILED.value, Outcome.FAILED.value,
                    Outcome.FAILED.value, Outcome.UNCHANGED.value],
    })
    counts = counts_by_window(outcomes, {2}, id_column="workbooks_id")
    assert counts == {first: WindowCounts(judged=2, failed=1, failed_retried=1),
                      second: WindowCounts(judged=2, failed=1, failed_retried=0)}
    assert counts_by_window(outcomes.iloc[0:0], set(), id_column="workbooks_id") == {}


def test_the_message_names_the_worst_window_and_how_many_are_at_error() -> None:
    one = [WindowRate(_window(2), 6, 40)]
    assert failure_rate_message(PROSPECTS, one, 0.1) == (
        f"outreach/prospects_written: failure rate 15.0% (6 of 40 records) above the ERROR threshold 10.0% "
        f"in window {_window(2)}")
    several = [WindowRate(_window(hour), hour, 20) for hour in range(3, 6)]
    assert failure_rate_message(PROSPECTS, several, 0.1).endswith(f"25.0% (5 of 20 records) above the ERROR "
                                                                   f"threshold 10.0% in 3 windows, worst {_window(5)}")
