"""The pipeline's settings: one typed object for everything read from the environment but credentials.

Every setting is an environment variable named ``OUTREACH_PIPELINE_<NAME>`` (``OUTREACH_PIPELINE_SCHEDULE_MINUTE``
for ``schedule_minute``). Credentials are not settings: the resources read them through ``dg.EnvVar`` so they
never enter Dagster's config or logs. A bad value fails with one message naming the variable and what it
accepts (``SettingsError``), wherever the settings are first read: the code location, ``sync`` or ``install``.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "OUTREACH_PIPELINE_"
WINDOW_KEY_FORMAT = "%Y-%m-%d-%H:%M"


class Profile(StrEnum):
    """Which Dagster instance configuration and state databases a sync uses (`outreach_pipeline.profiles`)."""

    SANDBOX = "sandbox"
    PRODUCTION = "production"


class ExecutorKind(StrEnum):
    """Where a run's steps execute (`outreach_pipeline.defs.scaleout`)."""

    IN_PROCESS = "in_process"
    CELERY = "celery"


class WebhookFormat(StrEnum):
    """The body an alert webhook receives (`outreach_pipeline.defs.alerts`)."""

    JSON = "json"  # {kind, run_id, job, assets, message, rate, dagster_url, ...}
    SLACK = "slack"  # a Slack incoming webhook: {"text": ...}


class SettingsError(ValueError):
    """One or more settings are invalid; the message names each variable and the value it needs."""


class PipelineSettings(BaseSettings):
    """Where the pipeline keeps its state and when it runs."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    schedule_minute: int = Field(
        default=10, ge=0, le=59,
        description="minutes past the hour the schedule syncs the last complete window (late writes get this long)",
    )
    partitions_start: str = Field(
        default="2026-11-01-00:00",
        description="first hourly sync window, as YYYY-MM-DD-HH:00 (UTC); older records come with a full sync",
    )
    ledger_url: SecretStr | None = Field(
        default=None, description="SQLAlchemy URL of the sync ledger; default: SQLite under DAGSTER_HOME",
    )
    allow_mixed: bool = Field(
        default=False, description="allow one real service with the other's sandbox (normally refused)",
    )
    mapping_path: Path | None = Field(
        default=None, description="mapping YAML; default: the packaged default.yaml",
    )
    profile: Profile = Field(
        default=Profile.SANDBOX,
        description="instance profile written into $DAGSTER_HOME/dagster.yaml: sandbox (SQLite) or production (Postgres)",
    )
    first_sync_on_start: bool = Field(
        default=True,
        description="the first_sync sensor starts on (it launches the first sync of a new instance); off: the sensor "
                    "is there, stopped, for the UI's Automation page or `outreach-pipeline first-sync`",
    )
    executor: ExecutorKind = Field(
        default=ExecutorKind.IN_PROCESS, description="where steps run: in_process, or celery (workers over a broker)",
    )
    window_store: str | None = Field(
        default=None,
        description="path or fsspec URL of the window files, reachable by every worker; default DAGSTER_HOME/windows",
    )
    celery_broker: SecretStr | None = Field(
        default=None, description="Celery broker URL; default RabbitMQ on 127.0.0.1:5672 (may hold a password)",
    )
    celery_backend: SecretStr | None = Field(
        default=None, description="Celery result backend; default rpc:// over the broker",
    )
    max_rate_limit_wait: float = Field(
        default=60.0, ge=0,
        description="seconds a sync may wait for Outreach's hourly request budget to reset before it ends partial",
    )
    celery_queue: str = Field(
        default="dagster", pattern=r"^[A-Za-z0-9_.-]+$",
        description="Celery queue the steps go to and the workers serve (letters, digits, '-', '_', '.')",
    )
    low_latency_minutes: int | None = Field(
        default=None, ge=1, le=59,
        description="the low-latency lane: every this many minutes, sync the changes of the open hour in both "
                    "directions (accounts, prospects, opportunities); unset: off, the hourly schedule alone",
    )
    low_latency_lag_seconds: float = Field(
        default=10.0, ge=0, le=600,
        description="the lane reads changes up to this long before now, so writes still committing are not passed",
    )

    alert_webhook_url: SecretStr | None = Field(
        default=None,
        description="URL alerts are POSTed to (failure rate at ERROR, failed run, growing stuck list); unset: no alerts",
    )
    alert_webhook_format: WebhookFormat = Field(
        default=WebhookFormat.JSON, description="json (generic JSON body), or slack (a Slack incoming webhook)",
    )
    alert_dagster_url: str | None = Field(
        default=None, description="the Dagster UI's base URL, for links to the run in alerts (e.g. http://127.0.0.1:3000)",
    )
    alert_email_to: str | None = Field(
        default=None, description="comma-separated addresses mailed on a failed run (Dagster's email sensor); unset: no mail",
    )
    alert_email_from: str | None = Field(default=None, description="sender of alert mail (needed with alert_email_to)")
    alert_smtp_host: str = Field(default="localhost", description="SMTP server of alert mail")
    alert_smtp_port: int = Field(default=587, ge=1, le=65535, description="SMTP port of alert mail (STARTTLS)")
    alert_smtp_user: str | None = Field(default=None, description="SMTP login of alert mail; default: the sender")
    alert_smtp_password: SecretStr | None = Field(default=None, description="SMTP password of alert mail")

    webhook_receiver_host: str = Field(
        default="127.0.0.1", description="interface the Outreach webhook receiver binds (keep it loopback behind a proxy)",
    )
    webhook_receiver_port: int = Field(default=8704, ge=0, le=65535, description="port of the webhook receiver (0: any)")
    webhook_public_url: str | None = Field(
        default=None,
        description="URL Outreach delivers webhooks to (a tunnel or proxy in front of the receiver); default: "
                    "http://<host>:<port>/outreach/webhooks, which only a local sandbox can reach",
    )
    webhook_secret: SecretStr | None = Field(
        default=None, description="secret Outreach signs deliveries with; default: a new random one per start",
    )
    webhook_heartbeat_seconds: float = Field(
        default=30, gt=0, description="how often the receiver records that it is still listening",
    )
    webhook_receiver_in_dev: bool = Field(
        default=True, description="`outreach-pipeline dev` starts the webhook receiver next to the sandbox",
    )

    @field_validator("partitions_start")
    @classmethod
    def _hourly_window_key(cls, value: str) -> str:
        try:
            moment = datetime.strptime(value, WINDOW_KEY_FORMAT)
        except ValueError as exc:
            raise ValueError("must look like 2026-11-01-00:00 (YYYY-MM-DD-HH:MM, UTC)") from exc
        if moment.minute:
            raise ValueError("must start an hour (minutes 00)")
        return value

    @classmethod
    def variable(cls, name: str) -> str:
        """The environment variable of a setting."""
        if name not in cls.model_fields:
            raise KeyError(name)
        return f"{ENV_PREFIX}{name.upper()}"


def load_settings() -> PipelineSettings:
    """The settings from the process environment.

    Raises:
        SettingsError: naming every invalid variable, its value's problem and the setting's meaning.
    """
    try:
        return PipelineSettings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else "?"
            field = PipelineSettings.model_fields.get(name)
            meaning = f" ({field.description})" if field is not None and field.description else ""
            problems.append(f"{PipelineSettings.variable(name)}: {error['msg']}{meaning}")
        raise SettingsError("invalid setting: " + "; ".join(problems)) from None
