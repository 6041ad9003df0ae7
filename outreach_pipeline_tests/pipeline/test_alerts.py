"""Acceptance: a failure rate at ERROR fails the run (after the load is stored) and the alert sensor POSTs one
message per run, naming the run, the asset and the rate, to a local receiver; a failed run gives one message too.

The sensor is evaluated as the daemon does (`evaluate_tick` with the instance and the cursor of its previous
tick), so "once per run" is Dagster's cursor at work, not the test's bookkeeping.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import dagster as dg
import pytest
from dagster_shared.serdes import serialize_value

from outreach_pipeline.definitions import build_definitions as build_code_location
from outreach_pipeline.defs.alerts import AlertKind, AlertWebhook, run_failure_sensor
from outreach_pipeline.defs.failure_rate import CHECK_NAME
from outreach_pipeline.defs.resources import SyncSettings, WorkbooksResource
from outreach_pipeline.settings import PipelineSettings
from outreach_pipeline_tests.pipeline.harness import PINNED_NOW, WINDOW, Pipeline, pipeline

PEOPLE = dg.AssetKey(["workbooks", "people"])
#: The seed's people fail about 2.5 % (duplicate emails): above this, ERROR.
STRICT = SyncSettings(failure_rate_warn=0.0, failure_rate_error=0.02, failure_rate_min_records=1, retry_backoff_hours=0)
SECRET_PATH = "/hooks/T000-s3cr3t-webhook-token"
WRONG_API_KEY = "not-the-key-7f3e9d2c"


class Receiver:
    """A webhook receiver on 127.0.0.1 (random port) that keeps every JSON body it is sent."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                receiver.bodies.append({"path": self.path, **json.loads(self.rfile.read(length))})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{SECRET_PATH}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Sensor:
    """The run failure sensor, ticked as the daemon ticks it: each tick starts from the last tick's cursor."""

    instance: dg.DagsterInstance
    webhook: AlertWebhook
    cursor: str | None = None

    def tick(self) -> None:
        definition = run_failure_sensor()
        with dg.build_sensor_context(instance=self.instance, cursor=self.cursor,
                                     resources={"alert_webhook": self.webhook}) as context:
            data = definition.evaluate_tick(context)
        for reaction in data.dagster_run_reactions or []:
            assert reaction.error is None, reaction.error
        self.cursor = data.cursor


@dataclass
class Alerted:
    pipe: Pipeline
    receiver: Receiver
    sensor: Sensor


@pytest.fixture(scope="module")
def alerted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Alerted]:
    receiver = Receiver()
    try:
        with pipeline(tmp_path_factory.mktemp("alerts")) as pipe:
            sensor = Sensor(pipe.instance, AlertWebhook(url=receiver.url, dagster_url="http://127.0.0.1:3000"))
            sensor.tick()  # the first tick only sets the cursor (a new sensor does not replay old runs)
            yield Alerted(pipe, receiver, sensor)
    finally:
        receiver.close()


def _definitions(pipe: Pipeline, **replaced: Any) -> dg.Definitions:
    return build_code_location(PipelineSettings(), resources={**pipe.defs.resources, **replaced})


def _run(defs: dg.Definitions, pipe: Pipeline, first: Any, last: Any) -> dg.ExecuteInProcessResult:
    return Pipeline(sandbox=pipe.sandbox, instance=pipe.instance, defs=defs).run(first, last, raise_on_error=False)


def _event_log_text(instance: dg.DagsterInstance, run_id: str) -> str:
    return "\n".join(serialize_value(record.event_log_entry) for record in instance.get_records_for_run(run_id).records)


def test_an_error_failure_rate_fails_the_run_after_the_load_and_alerts_once(alerted: Alerted) -> None:
    pipe, receiver, sensor = alerted.pipe, alerted.receiver, alerted.sensor
    result = _run(_definitions(pipe, sync_settings=STRICT), pipe, PINNED_NOW - 2 * WINDOW, PINNED_NOW - WINDOW)

    assert not result.success
    failed = [event for event in result.all_events if event.is_step_failure]
    assert [event.step_key for event in failed] == [f"{PEOPLE.to_python_identifier()}_{CHECK_NAME}"]
    assert "workbooks/people: failure rate" in failed[0].step_failure_data.error.message
    # The load itself was stored, with its counts, and the loads after people still ran.
    people = result.asset_materializations_for_node(PEOPLE.to_python_identifier())
    assert len(people) == 2 and people[0].metadata["records_failed"].value > 0
    for name in ("opportunities", "tasks", "sequence_states"):
        assert result.asset_materializations_for_node(dg.AssetKey(["workbooks", name]).to_python_identifier())
    # One evaluation per window, none left planned (the "Skipped" rows of a ranged run).
    evaluations = [e for e in result.get_asset_check_evaluations() if e.asset_key == PEOPLE]
    assert sorted(e.partition for e in evaluations) == sorted(m.partition for m in people)
    history = pipe.instance.event_log_storage.get_asset_check_execution_history(
        dg.AssetCheckKey(PEOPLE, CHECK_NAME), limit=10)
    this_run = [record for record in history if record.run_id == result.run_id]
    assert sorted(record.partition for record in this_run) == sorted(m.partition for m in people)
    assert {record.status.value for record in this_run} <= {"FAILED", "SUCCEEDED"}  # none left planned
    rate = max(e.metadata["failure_rate"].value for e in evaluations)

    sensor.tick()
    sensor.tick()  # a later tick (or a restarted daemon, which resumes from the stored cursor) sends nothing more

    assert len(receiver.bodies) == 1, receiver.bodies
    body = receiver.bodies[0]
    assert body["kind"] == AlertKind.FAILURE_RATE
    assert body["run_id"] == result.run_id and result.run_id in body["dagster_url"]
    assert body["assets"] == ["workbooks/people"]
    assert body["rate"] == pytest.approx(rate)
    assert body["failed_steps"] == [f"{PEOPLE.to_python_identifier()}_{CHECK_NAME}"]
    assert "workbooks/people" in body["message"] and f"{rate:.1%}" in body["message"]
    assert SECRET_PATH not in _event_log_text(pipe.instance, result.run_id)
    receiver.bodies.clear()

    # The same records failing again in the next run are not new failures: reported, not judged (they are the
    # stuck-records alert's), so the rerun passes and sends nothing.
    failed_first = sum(e.metadata["failed"].value for e in evaluations)
    rerun = _run(_definitions(pipe, sync_settings=STRICT), pipe, PINNED_NOW - 2 * WINDOW, PINNED_NOW - WINDOW)
    assert rerun.success, [e.step_key for e in rerun.all_events if e.is_step_failure]
    again = [e for e in rerun.get_asset_check_evaluations() if e.asset_key == PEOPLE]
    assert sum(e.metadata["failed_retried"].value for e in again) == failed_first
    assert sum(e.metadata["failed"].value for e in again) == 0
    sensor.tick()
    assert receiver.bodies == []


def test_a_failed_run_alerts_once_naming_its_steps_and_assets(alerted: Alerted) -> None:
    pipe, receiver, sensor = alerted.pipe, alerted.receiver, alerted.sensor
    refused = WorkbooksResource(base_url=pipe.sandbox.workbooks_url, api_key=WRONG_API_KEY)
    # A preflight that passed earlier would be reused (same mapping, same URL): this run checks again, so the
    # refused key fails the preflight step itself.
    checking = SyncSettings(**{**pipe.defs.resources["sync_settings"].model_dump(), "preflight_max_age_minutes": 0})
    result = _run(_definitions(pipe, workbooks=refused, sync_settings=checking), pipe, PINNED_NOW - 3 * WINDOW,
                  PINNED_NOW - 3 * WINDOW)
    assert not result.success

    sensor.tick()
    sensor.tick()

    assert len(receiver.bodies) == 1, receiver.bodies
    body = receiver.bodies[0]
    assert body["kind"] == AlertKind.RUN_FAILED and body["run_id"] == result.run_id
    assert "workbooks__field_preflight" in body["failed_steps"], body
    assert "workbooks/people" in body["assets"] and "workbooks__field_preflight" in body["message"]
    events = _event_log_text(pipe.instance, result.run_id)
    assert WRONG_API_KEY not in events and SECRET_PATH not in events
