"""Acceptance: Outreach's request budget across assets and runs (real HTTP, real Dagster runs).

* Every asset that calls an API holds that API's pool, and no asset calls both.
* With the sandbox's per-user budget set so it runs out part way through a multi-window sync, the run ends
  partial with one clear message; after the budget is raised, a rerun of the same windows leaves Workbooks
  and the ledger equal to a fault-free run on the same seed, with nothing created twice.
* Two overlapping runs on one instance with the project's pool limits never have two requests in flight at
  either API.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import requests

from outreach_pipeline.defs.assets import (
    FLOWS,
    OUTREACH_POOL,
    OUTREACH_PREFLIGHT_KEY,
    PREFLIGHT_KEY,
    WORKBOOKS_POOL,
    build_assets,
)
from outreach_pipeline.defs.partitions import sync_windows
from outreach_pipeline.sandbox.faults import parse_fault_spec
from outreach_pipeline.sandbox.outreach.ratelimit import WINDOW_SECONDS
from outreach_pipeline.sandbox.runtime import RunningSandbox
from outreach_pipeline.settings import PipelineSettings
from outreach_pipeline_tests.pipeline.harness import (
    REFERENCE_FIELDS,
    Pipeline,
    content_differences,
    outreach_records,
    partition_key,
    pipeline,
    seeded_windows,
    step_failures,
    workbooks_content,
)

#: The Outreach -> Workbooks steps of the seeded record types, and the engagement extracts (and pulled tasks) that
#: outreach/referenced_prospects reads (the prospects they point at are pulled in): the budget arithmetic below
#: orders their Outreach requests (the holders step is their last), which the Workbooks -> Outreach steps of the
#: same job would reorder.
CORE = ("accounts", "prospects", "opportunities")
TO_WORKBOOKS = [OUTREACH_PREFLIGHT_KEY, PREFLIGHT_KEY,
                *(key for flow in FLOWS if flow.entity in CORE for key in flow.keys),
                *(key for flow in FLOWS if flow.entity not in CORE
                  for key in (flow.extract_key, *filter(None, [flow.referenced_key])))]
SEED = {"prospects": 60, "accounts": 12, "opportunities": 20, "seed_days": 1}
WINDOWS = seeded_windows(1)[:6]  # six hourly windows (each run writes one file per window and asset)
ENTITY_KINDS = {"accounts": "account", "prospects": "prospect", "opportunities": "opportunity"}
API_POOLS = {"outreach": OUTREACH_POOL, "workbooks": WORKBOOKS_POOL}  # resource key -> pool
HOLDERS_STEP = dg.AssetKey(["outreach", "prospect_email_holders"]).to_python_identifier()
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_every_api_calling_asset_holds_the_pool_of_the_one_api_it_calls() -> None:
    seen = set()
    for asset in build_assets(sync_windows(PipelineSettings().partitions_start)):
        apis = sorted(API_POOLS.keys() & asset.required_resource_keys)
        name = ", ".join(key.to_user_string() for key in asset.keys)
        assert len(apis) <= 1, f"{name} calls {apis}: split it so each asset calls one API"
        assert asset.op.pool == (API_POOLS[apis[0]] if apis else None), (name, apis, asset.op.pool)
        seen.update(apis)
    assert seen == set(API_POOLS)


# ----------------------------------------------------------------------------- budget runs out, then resumes


@dataclass
class Synced:
    pipe: Pipeline
    content: dict[str, Any]
    ledger: dict[str, dict[int, tuple]]
    creates: dict[str, set[int]]
    outreach_requests: int  # requests counted against the budget (the token endpoint is not)
    step_requests: dict[str, int]  # per Outreach step that reports them
    step_order: list[str]  # the steps in the order the run started them


def _outreach_api_requests(sandbox: RunningSandbox) -> int:
    """Requests the hourly budget counts: the API's, less the schema document (public, not rate-limited)."""
    counts = sandbox.outreach_middleware.stats.snapshot()["requests"]
    return sum(n for endpoint, n in counts.items() if " /api/" in endpoint and "/api/v2/schema/" not in endpoint)


def _ledger_snapshot(pipe: Pipeline) -> tuple[dict[str, dict[int, tuple]], dict[str, set[int]]]:
    """Per entity and Outreach id: what the ledger knows (without Workbooks ids), and the records created.

    A record written in an earlier run reads `unchanged` in the run that finishes the job, so created,
    updated and unchanged all read as written. Creates are counted from the append-only history: a record
    created twice shows twice.
    """
    ledger = pipe.open_ledger()
    try:
        states: dict[str, dict[int, tuple]] = {}
        creates: dict[str, set[int]] = {}
        for entity, kind in ENTITY_KINDS.items():
            ids = [record.id for record in outreach_records(pipe.sandbox, kind)]
            known = ledger.get_states(entity, ids)
            states[entity] = {
                outreach_id: (
                    "written" if state.last_outcome in ("created", "updated", "unchanged") else state.last_outcome,
                    state.needs_retry, state.outreach_updated_at, state.window_start, state.last_error,
                    {k: v for k, v in (state.values or {}).items() if k not in REFERENCE_FIELDS},
                )
                for outreach_id, state in known.items()
            }
            creates[entity] = set()
            for outreach_id in known:
                created = [e for e in ledger.history(entity, outreach_id) if e.outcome == "created"]
                assert len(created) <= 1, f"{entity} {outreach_id} created {len(created)} times"
                if created:
                    creates[entity].add(outreach_id)
        return states, creates
    finally:
        ledger.dispose()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synced]:
    with pipeline(tmp_path_factory.mktemp("reference"), **SEED) as pipe:
        result = pipe.run(WINDOWS[0], WINDOWS[-1], asset_selection=TO_WORKBOOKS)
        outreach_steps = [key.to_python_identifier() for key in TO_WORKBOOKS if key.path[0] == "outreach"
                          and key != OUTREACH_PREFLIGHT_KEY]
        step_requests = {step: result.asset_materializations_for_node(step)[0].metadata["range_api_requests"].value
                         for step in outreach_steps}
        step_order = [event.step_key for event in result.all_events if event.event_type_value == "STEP_START"]
        states, creates = _ledger_snapshot(pipe)
        yield Synced(pipe, workbooks_content(pipe), states, creates, _outreach_api_requests(pipe.sandbox),
                     step_requests, step_order)


def _pin_budget_hour(sandbox: RunningSandbox) -> datetime:
    """Hold the sandbox's rate-limit clock inside an hour that ends 10 to 70 minutes from now.

    The budget is per clock hour; a test crossing the top of the hour would otherwise see it refilled half
    way. Returns the reset time the sandbox reports.
    """
    hour_start = int((time.time() + 600) // WINDOW_SECONDS) * WINDOW_SECONDS
    limiter = sandbox.outreach_middleware.app.state.sandbox.rate_limiter
    limiter.clock = lambda: float(hour_start)
    return datetime.fromtimestamp(hour_start + WINDOW_SECONDS, UTC)


def _set_budget(sandbox: RunningSandbox, per_hour: int) -> None:
    response = requests.post(f"{sandbox.outreach_url}/_sandbox/outreach/settings",
                             json={"rate_limit_per_hour": per_hour}, timeout=5)
    response.raise_for_status()


@dataclass(frozen=True)
class Exhaustion:
    """Where the budget runs out, and what the partial run must have done by then."""

    name: str
    failing_step: str
    left: str  # the message's pattern for what is left
    loaded: frozenset[str]  # load steps that still ran

    def budget(self, reference: Synced) -> int:
        if self.failing_step == HOLDERS_STEP:  # everything but the lookup (the last Outreach step)
            return reference.outreach_requests - reference.step_requests[HOLDERS_STEP]
        # The preflight's one request and every Outreach step the run starts before the failing one.
        before = reference.step_order[:reference.step_order.index(self.failing_step)]
        return 1 + sum(reference.step_requests.get(step, 0) for step in before)


EXHAUSTIONS = (
    # Organisations load and are recorded; people and opportunities (which link to people) wait.
    Exhaustion("at_the_duplicate_lookup", HOLDERS_STEP, r"\d+ prospects records \(and what links to them\) are",
               frozenset({dg.AssetKey(["workbooks", "organisations"]).to_python_identifier()})),
    # Nothing is handed on from a failed extract: no load runs.
    Exhaustion("in_the_extracts", dg.AssetKey(["outreach", "prospects"]).to_python_identifier(),
               rf"prospects changed in {len(WINDOWS)} window\(s\) {partition_key(WINDOWS[0])}\.\."
               rf"{partition_key(WINDOWS[-1])} \(and \d+ records to retry\) are", frozenset()),
)


@pytest.mark.parametrize("exhaustion", EXHAUSTIONS, ids=lambda e: e.name)
def test_spent_budget_ends_the_run_partial_and_the_next_run_completes_it(
    reference: Synced, exhaustion: Exhaustion, tmp_path: Path
) -> None:
    budget = exhaustion.budget(reference)
    step = exhaustion.failing_step
    with pipeline(tmp_path, **SEED) as pipe:
        reset_at = _pin_budget_hour(pipe.sandbox)
        _set_budget(pipe.sandbox, budget)
        started = time.monotonic()
        partial = pipe.run(WINDOWS[0], WINDOWS[-1], raise_on_error=False, asset_selection=TO_WORKBOOKS)
        assert time.monotonic() - started < 120  # ended, rather than waiting for the reset

        assert not partial.success
        failures = step_failures(partial)
        # The step that met the spent budget fails first; Outreach steps started after it meet it too.
        assert failures and failures[0].startswith(f"{step}: "), failures
        later = [failure.split(": ", 1)[0] for failure in failures[1:]]
        assert all(name.startswith("outreach__") and "budget exhausted" in failure
                   for name, failure in zip(later, failures[1:], strict=True)), failures
        message = failures[0].removeprefix(f"{step}: ").removeprefix(f"{dg.Failure.__module__}.Failure: ")
        assert re.fullmatch(
            rf"Outreach request budget exhausted until {reset_at:%H:%M} UTC; {exhaustion.left} left for the next "
            r"run \(run the same windows again after the reset\)", message,
        ), message
        assert "sandbox-" not in message and "Bearer" not in message
        loaded = {node for node in (dg.AssetKey(["workbooks", "organisations"]).to_python_identifier(), dg.AssetKey(["workbooks", "people"]).to_python_identifier(), dg.AssetKey(["workbooks", "opportunities"]).to_python_identifier())
                  if partial.asset_materializations_for_node(node)}
        assert loaded == exhaustion.loaded
        states, _ = _ledger_snapshot(pipe)
        organisation_writes = pipe.workbooks_writes().get("PUT /crm/organisations.api", 0)
        if dg.AssetKey(["workbooks", "organisations"]).to_python_identifier() in loaded:
            assert states["accounts"] == reference.ledger["accounts"]  # what was written is in the ledger
            assert organisation_writes > 0
        else:
            assert states["accounts"] == {} and organisation_writes == 0
        assert states["prospects"] == states["opportunities"] == {}

        _set_budget(pipe.sandbox, 10_000)
        resumed = pipe.run(WINDOWS[0], WINDOWS[-1], raise_on_error=False, asset_selection=TO_WORKBOOKS)
        assert resumed.success, step_failures(resumed)
        if organisation_writes:  # organisations the partial run wrote are not written again
            assert pipe.workbooks_writes().get("PUT /crm/organisations.api", 0) == organisation_writes
        states, creates = _ledger_snapshot(pipe)
        actual = workbooks_content(pipe)  # asserts one Workbooks record per link key
    assert actual == reference.content, content_differences(reference.content, actual)
    assert states == reference.ledger
    assert creates == reference.creates


# ----------------------------------------------------------------------------- two runs, one request at a time


def test_overlapping_runs_on_one_instance_keep_one_request_in_flight_per_api(
    reference: Synced, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs in two processes on one instance configured by the project's dagster.yaml (its pools)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    halves = [(WINDOWS[0], WINDOWS[2]), (WINDOWS[3], WINDOWS[-1])]
    with pipeline(tmp_path, **SEED) as pipe:
        # The project's storage lives under $DAGSTER_HOME ({env: DAGSTER_HOME}), which the harness's test
        # instance points elsewhere: this test's own reads of `home` say where.
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        # Storage created once beforehand, as `dagster dev` or a first sync would: two processes creating the
        # same SQLite tables at once race on the schema, which is not what this test is about.
        with dg.DagsterInstance.from_config(str(home)):
            pass
        pipe.open_ledger().dispose()
        # Slow answers keep each request in flight long enough that two runs' requests would meet without pools.
        pipe.sandbox.outreach_middleware.injector.add(parse_fault_spec("slow:delay_ms=1500:path=/api/v2"))
        pipe.sandbox.workbooks_middleware.injector.add(parse_fault_spec("slow:delay_ms=1000:methods=PUT"))
        runs = [
            subprocess.Popen(
                [sys.executable, "-m", "outreach_pipeline_tests.pipeline.run_range", pipe.sandbox.outreach_url,
                 pipe.sandbox.workbooks_url, str(tmp_path), partition_key(first), partition_key(last)],
                env={**os.environ, "DAGSTER_HOME": str(home)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True, cwd=PROJECT_ROOT,
            )
            for first, last in halves
        ]
        outputs = [run.communicate(timeout=300)[0] for run in runs]
        assert [run.returncode for run in runs] == [0, 0], outputs
        with dg.DagsterInstance.from_config(str(home)) as instance:
            records = instance.get_run_records()
        assert len(records) == 2
        starts = [record.start_time for record in records]
        ends = [record.end_time for record in records]
        assert None not in starts and None not in ends and max(starts) < min(ends)  # the runs overlapped
        peaks = {api: middleware.stats.snapshot()["peak_in_flight"]
                 for api, middleware in (("outreach", pipe.sandbox.outreach_middleware),
                                         ("workbooks", pipe.sandbox.workbooks_middleware))}
        actual = workbooks_content(pipe)
    assert peaks == {"outreach": 1, "workbooks": 1}
    assert actual == reference.content, content_differences(reference.content, actual)
