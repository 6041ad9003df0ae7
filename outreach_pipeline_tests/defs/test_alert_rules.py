"""The stuck-list alert's rule (pure), the Slack body through a real local receiver, and which sensors the
settings turn on."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from outreach_pipeline.definitions import build_definitions
from outreach_pipeline.defs.alerts import (
    Alert,
    AlertKind,
    AlertNotDelivered,
    AlertWebhook,
    build_alert_sensors,
    stuck_alert,
)
from outreach_pipeline.settings import PipelineSettings, WebhookFormat


@dataclass(frozen=True)
class Stuck:
    entity: str
    outreach_id: int | None
    streak: int
    message: str | None = "name: required"
    workbooks_id: int | None = None
    direction: str = "to_workbooks"


def test_a_growing_stuck_list_alerts_and_a_steady_or_shrinking_one_does_not() -> None:
    three = [Stuck("prospects", 1, 5), Stuck("prospects", 2, 3), Stuck("accounts", 7, 4)]
    alert = stuck_alert(2, three, 3)
    assert alert is not None and alert.kind == AlertKind.STUCK_RECORDS
    assert alert.details["stuck"] == 3 and alert.details["previous"] == 2
    assert alert.details["by_entity"] == {"accounts": 1, "prospects": 2}
    assert [e["outreach_id"] for e in alert.details["examples"]] == [1, 7, 2]  # longest streak first
    assert "3 records are stuck" in alert.message and "up from 2" in alert.message
    assert stuck_alert(3, three, 3) is None
    assert stuck_alert(5, three, 3) is None
    assert stuck_alert(None, [], 3) is None
    first = stuck_alert(None, three[:1], 3)
    assert first is not None and first.details["previous"] == 0
    # A Workbooks record Outreach refused to create has no Outreach id: named by its Workbooks id and direction.
    refused = Stuck("prospects", None, 3, "refused", workbooks_id=41, direction="to_outreach")
    alert = stuck_alert(3, [*three, refused], 3)
    assert alert is not None and [e for e in alert.details["examples"] if e["workbooks_id"] == 41] == [{
        "direction": "to_outreach", "entity": "prospects", "outreach_id": None, "workbooks_id": 41, "streak": 3,
        "message": "refused"}]


@contextmanager
def receiver(status: int) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A local webhook receiver answering `status`: its URL (with a secret-looking path) and the bodies it got."""
    bodies: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/s3cr3t", bodies
    finally:
        server.shutdown()
        server.server_close()


ALERT = Alert(kind=AlertKind.FAILURE_RATE, message="workbooks/people: failure rate 22.0%", run_id="r-1", rate=0.22)


def test_the_slack_format_posts_one_text_naming_the_run() -> None:
    with receiver(200) as (url, bodies):
        webhook = AlertWebhook(url=url, format=WebhookFormat.SLACK, dagster_url="http://dagster.example:3000/")
        webhook.send(Alert(**{**ALERT.__dict__, "dagster_url": webhook.run_url("r-1")}))
    assert bodies == [{"text": "outreach-pipeline failure_rate (run r-1): workbooks/people: failure rate 22.0% "
                               "<http://dagster.example:3000/runs/r-1|open the run>"}]


def test_a_refusing_webhook_is_tried_three_times_and_the_error_names_the_variable_not_the_url() -> None:
    with receiver(500) as (url, bodies), pytest.raises(AlertNotDelivered) as error:
        AlertWebhook(url=url, retry_wait_seconds=0.01).send(ALERT)
    assert len(bodies) == 3 and bodies[0]["run_id"] == "r-1" and bodies[0]["rate"] == 0.22
    message = str(error.value)
    assert "HTTP 500" in message and "OUTREACH_PIPELINE_ALERT_WEBHOOK_URL" in message and "s3cr3t" not in message
    with pytest.raises(AlertNotDelivered) as error:  # nothing listening: the connection error's text holds the URL
        AlertWebhook(url="http://127.0.0.1:9/hooks/s3cr3t", retry_wait_seconds=0.01, timeout_seconds=2).send(ALERT)
    assert "s3cr3t" not in str(error.value)


def test_alerts_are_off_unless_configured_and_the_url_is_masked() -> None:
    assert build_alert_sensors(PipelineSettings()) == []
    configured = PipelineSettings(alert_webhook_url="http://127.0.0.1:9/hooks/secret", alert_email_to="ops@example.com",
                                  alert_email_from="sync@example.com", alert_smtp_password="smtp-secret")
    assert {sensor.name for sensor in build_alert_sensors(configured)} == {
        "alert_on_run_failure", "alert_on_stuck_records", "email_on_run_failure"}
    assert "secret" not in repr(AlertWebhook(url="http://127.0.0.1:9/hooks/secret"))
    defs = build_definitions(configured)
    assert {sensor.name for sensor in defs.sensors} >= {"alert_on_run_failure", "alert_on_stuck_records"}
