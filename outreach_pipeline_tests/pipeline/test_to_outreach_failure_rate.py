"""Acceptance: a Workbooks -> Outreach write whose refused records are above the ERROR rate fails its
`failure_rate` check, so the run fails, after the writes and the link-back (the refused records' flags) are
stored; the alert sensor POSTs one message naming the run, the asset, the rate and the window. The check is
evaluated per write asset and window, and leaves none of the check rows Dagster plans for the run's windows
unresolved (they would show as "Skipped").

Four People selected for Outreach in one window, three of which Outreach refuses (two invalid email
addresses, and the email of the first, whose prospect the same write creates first; as in
test_to_outreach_failures.py): 75 % refused, with `failure_rate_min_records` at 4 so the window is judged.
Then an operator clears the three flags without fixing anything: refused a second time in a row they are
stuck (counted apart, the stuck-records alert's), so the next run passes and sends nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import dagster as dg
import pytest

from outreach_pipeline.defs.alerts import AlertKind, AlertWebhook
from outreach_pipeline.defs.assets_outreach import LINK_STEP, REVERSE_FLOWS, WRITE_STEP
from outreach_pipeline.defs.failure_rate import CHECK_NAME
from outreach_pipeline.defs.resources import SyncSettings
from outreach_pipeline_tests.pipeline.harness import Pipeline, partition_key
from outreach_pipeline_tests.pipeline.test_alerts import Receiver, Sensor
from outreach_pipeline_tests.pipeline.two_way import (
    CLEARED_FLAGS,
    FIRST_EDIT_WINDOW,
    HOUR,
    TO_OUTREACH,
    create_refused_people,
    edit_workbooks,
    person_fields,
    run_assets,
    set_clocks,
    two_way_pipeline,
)

PROSPECTS_WRITTEN = dg.AssetKey(["outreach", "prospects_written"])
RATE_STEP = f"{WRITE_STEP}_{CHECK_NAME}"
#: The default thresholds (WARN above 1 %, ERROR above 10 %), judged from 4 records a window.
SETTINGS = SyncSettings(failure_rate_min_records=4)


@dataclass
class Refused:
    pipe: Pipeline
    receiver: Receiver
    sensor: Sensor
    ids: dict[str, int]  # Workbooks ids of the refused People


def _run(pipe: Pipeline, window: datetime) -> dg.ExecuteInProcessResult:
    """The Workbooks -> Outreach steps of the scheduled job over one window, as the schedule runs it."""
    return run_assets(pipe, window, TO_OUTREACH, expect_success=False)


def _rates(result: dg.ExecuteInProcessResult, window: str) -> dict[dg.AssetKey, dg.AssetCheckEvaluation]:
    """The run's `failure_rate` evaluations by asset: one per asset and window (the run has one, `window`)."""
    evaluations = [e for e in result.get_asset_check_evaluations() if e.check_name == CHECK_NAME]
    assert len(evaluations) == len({e.asset_key for e in evaluations}), evaluations
    assert {e.partition for e in evaluations} == {window}
    return {evaluation.asset_key: evaluation for evaluation in evaluations}


def _unresolved_check_rows(pipe: Pipeline, run_id: str) -> list[tuple[str, str | None, str]]:
    """The write checks' execution rows of the run that are not SUCCEEDED or FAILED (planned, never evaluated)."""
    rows = [(flow.write_key.to_user_string(), record.partition, record.status.value)
            for flow in REVERSE_FLOWS
            for record in pipe.instance.event_log_storage.get_asset_check_execution_history(
                dg.AssetCheckKey(flow.write_key, CHECK_NAME), limit=20)
            if record.run_id == run_id]
    assert rows, run_id
    return [row for row in rows if row[2] not in {"SUCCEEDED", "FAILED"}]


@pytest.fixture(scope="module")
def refused(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Refused]:
    receiver = Receiver()
    try:
        with two_way_pipeline(tmp_path_factory.mktemp("to_outreach_rate"), sync_settings=SETTINGS, prospects=5,
                              accounts=2, opportunities=0, seed_days=1) as pipe:
            sensor = Sensor(pipe.instance, AlertWebhook(url=receiver.url, dagster_url="http://127.0.0.1:3000"))
            sensor.tick()  # the first tick only sets the cursor
            set_clocks(pipe, FIRST_EDIT_WINDOW + HOUR / 6)
            ids = create_refused_people(pipe)
            yield Refused(pipe, receiver, sensor, ids)
    finally:
        receiver.close()


def test_refused_records_above_the_error_rate_fail_the_run_after_the_writes_and_alert_once(refused: Refused) -> None:
    pipe, receiver, sensor = refused.pipe, refused.receiver, refused.sensor
    result = _run(pipe, FIRST_EDIT_WINDOW)

    assert not result.success
    failed = [event for event in result.all_events if event.is_step_failure]
    assert [event.step_key for event in failed] == [RATE_STEP]
    assert "outreach/prospects_written: failure rate 75.0% (3 of 4 records)" in failed[0].step_failure_data.error.message
    # One evaluation per write asset and window: prospects at ERROR, the record types without records pass.
    window = partition_key(FIRST_EDIT_WINDOW)
    rates = _rates(result, window)
    assert set(rates) == {flow.write_key for flow in REVERSE_FLOWS}
    prospects = rates[PROSPECTS_WRITTEN]
    assert (prospects.passed, prospects.severity) == (False, dg.AssetCheckSeverity.ERROR)
    assert {name: prospects.metadata[name].value for name in ("failed", "extracted", "failed_retried")} == {
        "failed": 3, "extracted": 4, "failed_retried": 0}
    assert prospects.metadata["failure_rate"].value == pytest.approx(0.75)
    assert "window " + window in failed[0].step_failure_data.error.message
    assert _unresolved_check_rows(pipe, result.run_id) == []
    assert all(evaluation.passed for key, evaluation in rates.items() if key != PROSPECTS_WRITTEN)
    # The writes were stored and the link-back still ran: the refused People carry their flags.
    assert [m.asset_key for m in result.asset_materializations_for_node(WRITE_STEP)].count(PROSPECTS_WRITTEN) == 1
    assert dg.AssetKey(["workbooks", "people_linked"]) in {
        m.asset_key for m in result.asset_materializations_for_node(LINK_STEP)}
    people = {name: person_fields(pipe, workbooks_id) for name, workbooks_id in refused.ids.items()}
    assert people["bad_email_1"]["cf_person_outreach_sync_error"] is True
    assert people["duplicate"]["cf_person_outreach_duplicate"] is True

    sensor.tick()
    sensor.tick()  # once per run: a later tick sends nothing more

    assert len(receiver.bodies) == 1, receiver.bodies
    body = receiver.bodies[0]
    assert body["kind"] == AlertKind.FAILURE_RATE
    assert body["run_id"] == result.run_id and result.run_id in body["dagster_url"]
    assert body["assets"] == ["outreach/prospects_written"]
    assert body["rate"] == pytest.approx(0.75)
    assert body["failed_steps"] == [RATE_STEP]
    assert "outreach/prospects_written: failure rate 75.0%" in body["message"]
    assert body["message"].endswith(f"in window {window}")
    assert body["windows"] == {"outreach/prospects_written": {window: 0.75}}
    assert "also failed" not in body["message"]  # the check's own step is the rate's, not another failure
    receiver.bodies.clear()


def test_records_refused_again_after_their_flags_are_cleared_are_stuck_not_judged(refused: Refused) -> None:
    pipe, receiver, sensor = refused.pipe, refused.receiver, refused.sensor
    window = FIRST_EDIT_WINDOW + HOUR
    set_clocks(pipe, window + HOUR / 6)
    for workbooks_id in refused.ids.values():
        edit_workbooks(pipe, "crm/people", workbooks_id, CLEARED_FLAGS)

    result = _run(pipe, window)

    assert result.success, [event.step_key for event in result.all_events if event.is_step_failure]
    prospects = _rates(result, partition_key(window))[PROSPECTS_WRITTEN]
    assert prospects.passed
    assert {name: prospects.metadata[name].value for name in ("failed", "extracted", "failed_retried")} == {
        "failed": 0, "extracted": 0, "failed_retried": 3}
    assert _unresolved_check_rows(pipe, result.run_id) == []
    sensor.tick()
    assert receiver.bodies == []
