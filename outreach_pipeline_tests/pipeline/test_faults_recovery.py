"""Acceptance: under API faults the sync converges to a fault-free run's Workbooks content, with no duplicates.

A reference sandbox syncs one seeded day in one fault-free run. Each fault scenario syncs the same seed in a
fresh sandbox with the fault on; then, as a user would, the failed windows are re-run with the faults off
until the ledger is clean (a bounded, counted number of extra runs). The final Workbooks content must equal
the reference's, ignoring ids, stamps and lock versions. Retries sleep for real, so Retry-After is 0-1 s.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import requests

from outreach_pipeline.engine.ledger import SyncLedger
from outreach_pipeline.sandbox.faults import parse_fault_spec
from outreach_pipeline.sandbox.runtime import RunningSandbox
from outreach_pipeline_tests.pipeline.harness import (
    Pipeline,
    content_differences,
    expected_links,
    linked_ids,
    outreach_records,
    pipeline,
    seeded_windows,
    step_failures,
    updated_at,
    window_start,
    workbooks_content,
)

SEED = {"prospects": 150, "accounts": 25, "opportunities": 40, "seed_days": 1}
WINDOWS = seeded_windows(1)
MAX_RECOVERY_RUNS = 2
ENTITY_KINDS = {"accounts": "account", "prospects": "prospect", "opportunities": "opportunity"}


@dataclass
class Synced:
    pipe: Pipeline
    result: dg.ExecuteInProcessResult
    content: dict[str, Any]
    failed: dict[str, set[int]]  # per entity, records failed in the ledger after the run
    expected: dict[str, set[int]]  # per entity, the Outreach ids the day changed, bar the failed ones


def _assert_reference_holds_the_day(reference: Synced) -> None:
    """The fault-free content that the other runs are compared with links every record the day changed."""
    assert reference.result.success, step_failures(reference.result)
    assert linked_ids(reference.content) == reference.expected, {e: len(i) for e, i in linked_ids(reference.content).items()}


def _failed_ids(pipe: Pipeline) -> dict[str, set[int]]:
    ledger = pipe.open_ledger()
    try:
        return {entity: set(ledger.failed_ids(entity)) for entity in ENTITY_KINDS}
    finally:
        ledger.dispose()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synced]:
    with pipeline(tmp_path_factory.mktemp("reference"), **SEED) as pipe:
        result = pipe.run(WINDOWS[0], WINDOWS[-1])
        yield Synced(pipe, result, workbooks_content(pipe), _failed_ids(pipe), expected_links(pipe, WINDOWS[0]))


# ----------------------------------------------------------------------------- E: re-runs write nothing


def _windows_changing_every_entity(sandbox: RunningSandbox) -> list[datetime]:
    """Windows in which accounts, prospects and opportunities all changed (the re-runs that could write)."""
    per_kind = [{window_start(updated_at(r)) for r in outreach_records(sandbox, kind)} for kind in ENTITY_KINDS.values()]
    return sorted(set.intersection(*per_kind))


def test_rerunning_windows_after_a_full_backfill_writes_nothing(reference: Synced) -> None:
    _assert_reference_holds_the_day(reference)
    windows = _windows_changing_every_entity(reference.pipe.sandbox)
    picked = [windows[0], windows[len(windows) // 2], windows[-1]]
    before = reference.pipe.workbooks_writes()
    for window in picked:
        result = reference.pipe.run(window, raise_on_error=False)
        assert result.success, (window, step_failures(result))
        for name, values in reference.pipe.load_metadata(result).items():
            # The picked windows change every core record type; engagement may be quiet in one of them.
            assert values["records_extracted"] > 0 or name not in ("organisations", "people", "opportunities"), (
                window, name)
            assert values["records_created"] == values["records_updated"] == 0, (window, name, values)
    assert reference.pipe.workbooks_writes() == before
    assert workbooks_content(reference.pipe) == reference.content


# ----------------------------------------------------------------------------- C: faults


@dataclass(frozen=True)
class FaultScenario:
    """Faults for a run: rules per API (fault-spec text) and an optional action while the run is going."""

    name: str
    outreach: str = ""
    workbooks: str = ""
    outreach_settings: dict[str, Any] | None = None
    during_run: Callable[[RunningSandbox, threading.Event], None] | None = None
    runs: int = 1  # the day is synced in this many consecutive ranges (token expiry between them)
    recovery_runs: int = 0  # re-runs with faults off a user needs (retries absorb every other fault)


def _expire_tokens_until(sandbox: RunningSandbox, stop: threading.Event) -> None:
    """Expire every Outreach access token through the admin route every 0.7 s until told to stop."""
    while not stop.wait(0.7):
        requests.post(f"{sandbox.outreach_url}/_sandbox/oauth/expire", timeout=5).raise_for_status()


SCENARIOS = (
    # The opportunities burst outlasts the client's 5 attempts per request: that step fails (deterministically),
    # the rest of the run goes on under random 429s, and one re-run of the range recovers.
    FaultScenario(
        "rate_limit_storm",
        outreach=("rate_limit:count=6:retry_after=0:path=/api/v2/opportunities,"
                  "rate_limit:rate=0.3:count=40:retry_after=0,rate_limit:count=1:retry_after=1"),
        workbooks="rate_limit:count=2:retry_after=1,rate_limit:rate=0.3:count=40:retry_after=0",
        recovery_runs=1,
    ),
    FaultScenario(
        "server_errors_on_reads",
        outreach="status:status=502:rate=0.08:methods=GET,status:status=503:rate=0.05:methods=GET",
        workbooks="status:status=503:rate=0.08:methods=GET,status:status=502:rate=0.05:methods=GET",
    ),
    FaultScenario("dropped_after_committed_writes", workbooks="drop_after_write:rate=0.4:methods=PUT"),
    FaultScenario(
        "token_expiry_with_strict_rotation",
        outreach_settings={"strict_refresh_rotation": True, "access_token_ttl_seconds": 2},
        during_run=_expire_tokens_until,
        runs=4,
    ),
)


def _token_grants(sandbox: RunningSandbox) -> int:
    requests_seen = sandbox.outreach_middleware.stats.snapshot()["requests"]
    return sum(count for endpoint, count in requests_seen.items() if endpoint.endswith("/oauth/token"))


def _apply_faults(sandbox: RunningSandbox, scenario: FaultScenario) -> None:
    sandbox.outreach_middleware.injector.add(parse_fault_spec(scenario.outreach))
    sandbox.workbooks_middleware.injector.add(parse_fault_spec(scenario.workbooks))
    if scenario.outreach_settings:
        response = requests.post(f"{sandbox.outreach_url}/_sandbox/outreach/settings",
                                 json=scenario.outreach_settings, timeout=5)
        response.raise_for_status()


def _faults_off(sandbox: RunningSandbox) -> None:
    sandbox.outreach_middleware.injector.clear()
    sandbox.workbooks_middleware.injector.clear()


def _ranges(runs: int) -> list[tuple[datetime, datetime]]:
    size = len(WINDOWS) // runs
    return [(WINDOWS[i], WINDOWS[min(i + size, len(WINDOWS)) - 1]) for i in range(0, len(WINDOWS), size)]


def _faulty_sync(pipe: Pipeline, scenario: FaultScenario) -> list[dg.ExecuteInProcessResult]:
    _apply_faults(pipe.sandbox, scenario)
    stop = threading.Event()
    helper = None
    if scenario.during_run is not None:
        helper = threading.Thread(target=scenario.during_run, args=(pipe.sandbox, stop), daemon=True)
        helper.start()
    try:
        return [pipe.run(first, last, raise_on_error=False) for first, last in _ranges(scenario.runs)]
    finally:
        stop.set()
        if helper is not None:
            helper.join(5)
        _faults_off(pipe.sandbox)


def _windows_to_rerun(pipe: Pipeline, ledger: SyncLedger, results: list[dg.ExecuteInProcessResult],
                      expected_failures: dict[str, set[int]]) -> tuple[datetime, datetime] | None:
    """The span of windows a user re-runs: everything if a run failed, else the windows of surplus failures."""
    if not all(result.success for result in results):
        return WINDOWS[0], WINDOWS[-1]
    windows = []
    for entity, expected in expected_failures.items():
        surplus = set(ledger.failed_ids(entity)) - expected
        windows += [state.window_start for state in ledger.get_states(entity, surplus).values()]
    if not windows:
        return None
    return min(windows), max(windows)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda scenario: scenario.name)
def test_faulty_sync_recovers_to_the_fault_free_content(
    reference: Synced, scenario: FaultScenario, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    _assert_reference_holds_the_day(reference)
    with pipeline(tmp_path, **SEED) as pipe:
        results = _faulty_sync(pipe, scenario)
        faults_seen = (pipe.sandbox.outreach_middleware.stats.snapshot()["faults"],
                       pipe.sandbox.workbooks_middleware.stats.snapshot()["faults"])
        token_grants = _token_grants(pipe.sandbox)
        if scenario.during_run is None:
            assert any(sum(seen.values()) for seen in faults_seen), faults_seen
        else:
            # Each expiry forces a refresh, and strict rotation retires the refresh token each time.
            assert token_grants > scenario.runs, token_grants
        ledger = pipe.open_ledger()
        recovery_runs: list[str] = []
        try:
            while (span := _windows_to_rerun(pipe, ledger, results, reference.failed)) is not None:
                assert len(recovery_runs) < MAX_RECOVERY_RUNS, (
                    f"still not clean after re-running {recovery_runs}: {[step_failures(r) for r in results]}")
                results = [pipe.run(*span, raise_on_error=False)]
                recovery_runs.append(f"{span[0]:%H:%M}..{span[1]:%H:%M}")
        finally:
            ledger.dispose()
        record_property("recovery_runs", recovery_runs)
        record_property("faults_injected", faults_seen)
        record_property("token_grants", token_grants)
        assert len(recovery_runs) == scenario.recovery_runs, (recovery_runs, faults_seen)
        assert _failed_ids(pipe) == reference.failed
        actual = workbooks_content(pipe)  # asserts one record per link key
    assert actual == reference.content, content_differences(reference.content, actual)
