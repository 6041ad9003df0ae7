"""Alerts: a failure rate at ERROR, a failed run, or a growing list of stuck records, POSTed to a webhook.

* `alert_on_run_failure` (a run failure sensor) sends one message per failed run. A run whose `failure_rate`
  check is at ERROR fails (`defs.failure_rate`, either direction: the Outreach -> Workbooks loads and the
  Workbooks -> Outreach writes), so that is the same message: kind `failure_rate`, naming the run, the assets
  and their worst window's rate and window (the loads' checks report one evaluation per window; the writes'
  one per run, listing its windows at ERROR in its metadata). Any other failure is kind `run_failed`, naming the failed
  steps and the assets the run did not materialise. Dagster keeps the sensor's cursor (the last run event it
  handled) in the instance, so a run is sent once however often the sensor ticks or the daemon restarts; a
  POST is tried three times, then the tick fails and shows the error (the run is not sent again).
* `alert_on_stuck_records` (every 10 minutes) sends one message when the ledger holds more stuck records
  (failed `stuck_after_runs` runs in a row, in either direction) than at its last tick; its cursor is the last
  count.
* Optionally Dagster's own e-mail sensor (`make_email_on_run_failure_sensor`) mails failed runs.

The body is generic JSON (`{kind, run_id, job, assets, message, rate, dagster_url, ...}`) or, with
`alert_webhook_format=slack`, a Slack incoming webhook's `{"text": ...}`. The webhook URL is a secret: it comes
from `OUTREACH_PIPELINE_ALERT_WEBHOOK_URL` through `dg.EnvVar`, is masked in the resource's repr and never
logged. With no webhook and no mail configured there are no alert sensors.
"""

# No `from __future__ import annotations`: Dagster reads the sensors' context and resource annotations.
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Protocol

import dagster as dg
import requests

from outreach_pipeline.defs.failure_rate import (
    CHECK_NAME,
    FailureRateAtError,
    WindowRate,
    at_error,
    failure_rate_message,
)
from outreach_pipeline.defs.resources import LedgerResource, SyncSettings, _SecretMaskingResource
from outreach_pipeline.settings import PipelineSettings, WebhookFormat

WEBHOOK_URL_VARIABLE = PipelineSettings.variable("alert_webhook_url")
RUN_FAILURE_SENSOR = "alert_on_run_failure"
STUCK_SENSOR = "alert_on_stuck_records"
EMAIL_SENSOR = "email_on_run_failure"
#: Stuck records named in one message; the count covers the rest.
STUCK_EXAMPLES = 20
POST_ATTEMPTS = 3


class AlertKind(StrEnum):
    FAILURE_RATE = "failure_rate"
    RUN_FAILED = "run_failed"
    STUCK_RECORDS = "stuck_records"


@dataclass(frozen=True)
class Alert:
    """One message to the webhook."""

    kind: AlertKind
    message: str
    run_id: str | None = None
    job: str | None = None
    assets: tuple[str, ...] = ()
    rate: float | None = None  # the worst failure rate at ERROR (failure_rate)
    dagster_url: str | None = None  # the run's page in the UI, when the UI's URL is configured
    details: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        body = {"kind": self.kind.value, "run_id": self.run_id, "job": self.job, "assets": list(self.assets),
                "message": self.message, "rate": self.rate, "dagster_url": self.dagster_url, **self.details}
        return {key: value for key, value in body.items() if value is not None}

    def as_text(self) -> str:
        """The message as one Slack text: what, which run, where to look."""
        link = f" <{self.dagster_url}|open the run>" if self.dagster_url else ""
        run = f" (run {self.run_id})" if self.run_id else ""
        return f"outreach-pipeline {self.kind.value}{run}: {self.message}{link}"


class AlertWebhook(_SecretMaskingResource):
    """Where alerts go. `url` is a secret (from the environment through dg.EnvVar); without it nothing is sent."""

    _secret_fields: ClassVar[frozenset[str]] = frozenset({"url"})

    url: str | None = None
    format: WebhookFormat = WebhookFormat.JSON
    dagster_url: str | None = None
    timeout_seconds: float = 10.0
    retry_wait_seconds: float = 2.0  # before the second attempt; doubled before the third

    def run_url(self, run_id: str) -> str | None:
        return f"{self.dagster_url.rstrip('/')}/runs/{run_id}" if self.dagster_url else None

    def send(self, alert: Alert) -> None:
        """POST the alert (up to three attempts). Raises `AlertNotDelivered` naming the status, never the URL."""
        if not self.url:
            return
        body = alert.as_json() if self.format == WebhookFormat.JSON else {"text": alert.as_text()}
        problem = ""
        for attempt in range(POST_ATTEMPTS):
            if attempt:
                time.sleep(self.retry_wait_seconds * 2 ** (attempt - 1))
            try:
                response = requests.post(self.url, data=json.dumps(body, default=str),
                                         headers={"Content-Type": "application/json"}, timeout=self.timeout_seconds)
            except requests.RequestException as exc:
                problem = type(exc).__name__  # its text holds the URL
                continue
            if response.status_code < 300:
                return
            problem = f"HTTP {response.status_code}"
        raise AlertNotDelivered(f"the alert webhook ({WEBHOOK_URL_VARIABLE}) did not take the {alert.kind.value} "
                                f"alert after {POST_ATTEMPTS} attempts: {problem}")


class AlertNotDelivered(RuntimeError):
    """The webhook refused or did not answer; the message names the variable, not the URL."""


# ----------------------------------------------------------------------------- what a failed run says


def run_failure_alert(instance: dg.DagsterInstance, run: dg.DagsterRun, failure_message: str | None,
                      webhook: AlertWebhook) -> Alert:
    """The message for a failed run: its failure-rate checks at ERROR if any, else its failed steps."""
    evaluations = [
        record.event_log_entry.dagster_event.asset_check_evaluation_data
        for record in instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
        if record.event_log_entry.dagster_event is not None
    ]
    rates: dict[dg.AssetKey, list[WindowRate]] = {}
    error_above: dict[dg.AssetKey, float] = {}
    for evaluation in evaluations:
        if evaluation.check_name != CHECK_NAME or not at_error(evaluation):
            continue
        values = {key: value.value for key, value in evaluation.metadata.items()}
        rates.setdefault(evaluation.asset_key, []).append(  # one evaluation per asset and window
            WindowRate(window=evaluation.partition, failed=int(values.get("failed", 0)),
                       extracted=int(values.get("extracted", 0))))
        error_above[evaluation.asset_key] = float(values.get("error_above", 0.0))
    common = {"run_id": run.run_id, "job": run.job_name, "dagster_url": webhook.run_url(run.run_id)}
    failures = [
        (record.event_log_entry.step_key or "?", record.event_log_entry.dagster_event)
        for record in instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records
    ]
    failed_steps = [step for step, _ in failures]
    if rates:
        # Steps that failed for another reason than a rate at ERROR are named too: one message per run. A check
        # step may judge several assets (the Workbooks -> Outreach writes'), so it is known by its error.
        rate_steps = {step for step, event in failures if _failed_with(event, FailureRateAtError)}
        others = [step for step in failed_steps if step not in rate_steps]
        return Alert(
            kind=AlertKind.FAILURE_RATE,
            message="; ".join(failure_rate_message(key, windows, error_above[key])
                              for key, windows in rates.items())
            + (f"; steps {', '.join(others)} also failed" if others else ""),
            assets=tuple(key.to_user_string() for key in rates),
            rate=max(window.rate for windows in rates.values() for window in windows),
            details={"windows": {key.to_user_string(): {w.window or "": round(w.rate, 4) for w in windows}
                                 for key, windows in rates.items()},
                     "failed_steps": failed_steps},
            **common,
        )
    return Alert(
        kind=AlertKind.RUN_FAILED,
        message=(f"run of {run.job_name} failed: steps {', '.join(failed_steps)} failed" if failed_steps
                 else (failure_message or f"run of {run.job_name} failed")),
        assets=tuple(key.to_user_string() for key in _unmaterialised(instance, run.run_id)),
        details={"failed_steps": failed_steps},
        **common,
    )


def _failed_with(event: dg.DagsterEvent | None, error: type[Exception]) -> bool:
    """Whether a step failure event's error is `error` (Dagster keeps a raised `dg.Failure`'s class name)."""
    info = event.step_failure_data.error if event is not None else None
    return info is not None and info.cls_name == error.__name__


def _unmaterialised(instance: dg.DagsterInstance, run_id: str) -> list[dg.AssetKey]:
    """Assets the run planned but did not materialise, in plan order."""
    kinds = {dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED, dg.DagsterEventType.ASSET_MATERIALIZATION}
    planned: list[dg.AssetKey] = []
    done: set[dg.AssetKey] = set()
    for record in instance.get_records_for_run(run_id, of_type=kinds).records:
        event = record.event_log_entry.dagster_event
        if event is None or event.asset_key is None:
            continue
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            done.add(event.asset_key)
        elif event.asset_key not in planned:
            planned.append(event.asset_key)
    return [key for key in planned if key not in done]


# ----------------------------------------------------------------------------- stuck records


class StuckRecord(Protocol):
    """What the alert needs of a stuck record (the ledger's `FailedRecord`, of either direction)."""

    direction: str  # SyncDirection: to_workbooks or to_outreach
    entity: str
    outreach_id: int | None  # None: a Workbooks record Outreach refused to create
    workbooks_id: int | None
    streak: int
    message: str | None


def stuck_alert(previous_count: int | None, current: Sequence[StuckRecord], stuck_after_runs: int) -> Alert | None:
    """An alert when there are more stuck records than at the last look (`None`: never looked, counts as 0).

    A list that shrinks or stays the same sends nothing; the caller keeps `len(current)` as the next baseline.
    """
    if len(current) <= (previous_count or 0):
        return None
    by_entity: dict[str, int] = {}
    for record in current:
        by_entity[record.entity] = by_entity.get(record.entity, 0) + 1
    longest = sorted(current, key=lambda r: (-r.streak, r.entity, r.outreach_id or 0, r.workbooks_id or 0))
    summary = ", ".join(f"{count} {entity}" for entity, count in sorted(by_entity.items()))
    return Alert(
        kind=AlertKind.STUCK_RECORDS,
        message=(f"{len(current)} records are stuck (failed {stuck_after_runs} or more runs in a row), "
                 f"up from {previous_count or 0}: {summary}"),
        assets=tuple(sorted(by_entity)),
        details={"stuck": len(current), "previous": previous_count or 0, "by_entity": by_entity,
                 "examples": [{"direction": str(r.direction), "entity": r.entity,
                               "outreach_id": r.outreach_id, "workbooks_id": r.workbooks_id, "streak": r.streak,
                               "message": r.message} for r in longest[:STUCK_EXAMPLES]]},
    )


def current_stuck_records(ledger: LedgerResource, settings: SyncSettings) -> list[StuckRecord]:
    """The ledger's stuck records now (the one place the sensor reads them)."""
    with ledger.open() as sync_ledger:
        return list(sync_ledger.stuck_records(settings.stuck_after_runs))


# ----------------------------------------------------------------------------- the sensors


def build_alert_sensors(settings: PipelineSettings) -> list[dg.SensorDefinition]:
    """The alert sensors the settings configure (none when neither a webhook nor mail is set), running by
    default. They watch every run of the instance, including those `outreach-pipeline sync` runs in process."""
    sensors: list[dg.SensorDefinition] = []
    if settings.alert_webhook_url is not None:
        sensors += [run_failure_sensor(), stuck_records_sensor()]
    if settings.alert_email_to:
        sensors.append(email_sensor(settings))
    return sensors


def alert_webhook_from_settings(settings: PipelineSettings) -> AlertWebhook:
    """The webhook resource: the URL read through dg.EnvVar, so it stays out of run config and logs."""
    return AlertWebhook(
        url=dg.EnvVar(WEBHOOK_URL_VARIABLE) if settings.alert_webhook_url is not None else None,
        format=settings.alert_webhook_format,
        dagster_url=settings.alert_dagster_url,
    )


def run_failure_sensor() -> dg.SensorDefinition:
    @dg.run_failure_sensor(
        name=RUN_FAILURE_SENSOR, monitor_all_code_locations=True, minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="POSTs one message per failed run to the alert webhook: the failure rates at ERROR, or the "
                    "failed steps and the assets left unmaterialised.",
    )
    def alert_on_run_failure(context: dg.RunFailureSensorContext, alert_webhook: AlertWebhook) -> None:
        alert = run_failure_alert(context.instance, context.dagster_run, context.failure_event.message, alert_webhook)
        alert_webhook.send(alert)
        context.log.info("sent the %s alert of run %s", alert.kind.value, alert.run_id)

    return alert_on_run_failure


def stuck_records_sensor() -> dg.SensorDefinition:
    @dg.sensor(
        name=STUCK_SENSOR, minimum_interval_seconds=600, default_status=dg.DefaultSensorStatus.RUNNING,
        description="POSTs a message to the alert webhook when the ledger holds more stuck records (failed "
                    "stuck_after_runs runs in a row) than at the last tick.",
    )
    def alert_on_stuck_records(context: dg.SensorEvaluationContext, alert_webhook: AlertWebhook,
                               ledger: LedgerResource, sync_settings: SyncSettings) -> dg.SkipReason:
        previous = int(context.cursor) if context.cursor else None
        current = current_stuck_records(ledger, sync_settings)
        alert = stuck_alert(previous, current, sync_settings.stuck_after_runs)
        if alert is not None:
            alert_webhook.send(alert)  # raises when undelivered: the cursor stays, the next tick tries again
        context.update_cursor(str(len(current)))
        return dg.SkipReason(f"{len(current)} stuck records (was {previous if previous is not None else 'unknown'})"
                             + ("; alert sent" if alert is not None else ""))

    return alert_on_stuck_records


def email_sensor(settings: PipelineSettings) -> dg.SensorDefinition:
    """Dagster's own e-mail on a failed run (STARTTLS), configured by the alert_email_* and alert_smtp_* settings."""
    if not settings.alert_email_from:
        raise ValueError(f"{PipelineSettings.variable('alert_email_from')} must be set with "
                         f"{PipelineSettings.variable('alert_email_to')}")
    password = settings.alert_smtp_password.get_secret_value() if settings.alert_smtp_password else ""
    return dg.make_email_on_run_failure_sensor(
        name=EMAIL_SENSOR,
        email_from=settings.alert_email_from,
        email_password=password,
        email_to=[address.strip() for address in settings.alert_email_to.split(",") if address.strip()],
        smtp_host=settings.alert_smtp_host,
        smtp_port=settings.alert_smtp_port,
        smtp_type="STARTTLS",
        smtp_user=settings.alert_smtp_user,
        webserver_base_url=settings.alert_dagster_url or "http://localhost:3000",
        monitor_all_code_locations=True,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
