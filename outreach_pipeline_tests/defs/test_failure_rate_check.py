"""The `failure_rate` check's thresholds at their boundaries, through the check function the failure_rate check step calls.

The README promises WARN above 1 % and ERROR above 10 % ("above": a rate equal to a threshold is on the
lower side). A real run that reports ERROR is in pipeline/test_bad_records.py.
"""

from __future__ import annotations

import dagster as dg
import pytest

from outreach_pipeline.defs.failure_rate import failure_rate_result as _failure_rate_check
from outreach_pipeline.defs.resources import SyncSettings

PASS = (True, dg.AssetCheckSeverity.WARN)
WARN = (False, dg.AssetCheckSeverity.WARN)
ERROR = (False, dg.AssetCheckSeverity.ERROR)


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
