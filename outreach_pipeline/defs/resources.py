"""Dagster resources: the API clients, the sync ledger and sync settings.

With no credentials in the environment every resource points at the local sandbox (its published
credentials, from `sandbox.credentials`). Given the Outreach variables (`OUTREACH_CLIENT_ID` and the rest) and the Workbooks ones
(`WORKBOOKS_API_KEY`, or `WORKBOOKS_USERNAME` and `WORKBOOKS_PASSWORD`), the same code talks to the real
services; secrets only ever come from `dg.EnvVar`, and never show in a resource's repr.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import dagster as dg
from pydantic import Field
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from outreach_pipeline.clients.credentials import MissingCredentials
from outreach_pipeline.clients.http import RetryPolicy
from outreach_pipeline.clients.outreach import REAL_OUTREACH_URL, OutreachClient
from outreach_pipeline.clients.tokens import FileTokenStore
from outreach_pipeline.clients.workbooks import REAL_WORKBOOKS_URL, WorkbooksClient
from outreach_pipeline.engine.ledger import SyncLedger
from outreach_pipeline.engine.ledger_failures import RetryBackoff
from outreach_pipeline.engine.progress import EVERY_RECORDS, INTERVAL_SECONDS
from outreach_pipeline.engine.writer_lock import LockPolicy, LockSettings
from outreach_pipeline.mapping.models import MappingSet, load_mapping_set
from outreach_pipeline.sandbox.credentials import (
    SANDBOX_API_KEY,
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    SANDBOX_OUTREACH_URL,
    SANDBOX_REDIRECT_URI,
    SANDBOX_REFRESH_TOKEN,
    SANDBOX_WORKBOOKS_URL,
)
from outreach_pipeline.settings import PipelineSettings, load_settings

#: The Outreach app; an account is connected with `outreach-pipeline auth connect` (its grant is stored), or
#: given as OUTREACH_REFRESH_TOKEN where nothing can be stored (CI, containers).
OUTREACH_APP_VARIABLES = ("OUTREACH_CLIENT_ID", "OUTREACH_CLIENT_SECRET", "OUTREACH_REDIRECT_URI")
OUTREACH_REFRESH_TOKEN_VARIABLE = "OUTREACH_REFRESH_TOKEN"
OUTREACH_CREDENTIAL_VARIABLES = (*OUTREACH_APP_VARIABLES, OUTREACH_REFRESH_TOKEN_VARIABLE)
WORKBOOKS_CREDENTIAL_VARIABLES = ("WORKBOOKS_API_KEY", "WORKBOOKS_USERNAME", "WORKBOOKS_PASSWORD")
LEDGER_URL_VARIABLE = PipelineSettings.variable("ledger_url")
ALLOW_MIXED_VARIABLE = PipelineSettings.variable("allow_mixed")
REAL_SERVICE_VARIABLES = (*OUTREACH_CREDENTIAL_VARIABLES, *WORKBOOKS_CREDENTIAL_VARIABLES, LEDGER_URL_VARIABLE)
"""Every variable that points the pipeline at real services or production state."""
REDACTED = "<redacted>"


class ResourceConfigError(ValueError):
    """The environment configures the services inconsistently; the message names the variables."""


class OutreachNotConnected(ResourceConfigError):
    """No Outreach account is connected for this app and service: no stored grant, no refresh token."""


def dagster_home() -> Path:
    """Where per-installation state lives (ledger, tokens, window files): `$DAGSTER_HOME`, else `./.dagster_home`."""
    return Path(os.environ.get("DAGSTER_HOME") or ".dagster_home").resolve()


class _SecretMaskingResource(dg.ConfigurableResource):
    """A resource whose ``repr()``/``str()`` mask the fields named in ``_secret_fields``.

    Pydantic builds both from ``__repr_args__``, and Dagster logs and error messages print resources.
    """

    _secret_fields: ClassVar[frozenset[str]] = frozenset()

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, REDACTED if name in self._secret_fields and value else value


class OutreachResource(_SecretMaskingResource):
    """Outreach API v2 over OAuth 2. Rotated refresh tokens and the current access token are persisted
    under DAGSTER_HOME, so the clients every asset opens share one access token."""

    _secret_fields: ClassVar[frozenset[str]] = frozenset({"client_secret", "refresh_token"})

    base_url: str = SANDBOX_OUTREACH_URL
    client_id: str = SANDBOX_CLIENT_ID
    client_secret: str = SANDBOX_CLIENT_SECRET
    redirect_uri: str = SANDBOX_REDIRECT_URI
    refresh_token: str | None = Field(
        default=SANDBOX_REFRESH_TOKEN,
        description="a grant to start from when none is stored (`auth connect` stores one); rotated ones are stored",
    )
    token_store_path: str | None = Field(default=None, description="default: DAGSTER_HOME/outreach_tokens/<app>.json")
    max_rate_limit_wait_seconds: float = Field(
        default=RetryPolicy().max_rate_limit_wait, ge=0,
        description="longest wait for the hourly request budget to reset; a later reset ends the run partial",
    )

    def token_store(self) -> FileTokenStore:
        """Where this app's grant for this service is kept (written by `auth connect` and every refresh)."""
        return FileTokenStore(self._token_path())

    def _token_path(self) -> Path:
        if self.token_store_path:
            return Path(self.token_store_path)
        # One file per (service, app), so switching between the sandbox and the real API never mixes tokens.
        app = hashlib.sha256(f"{self.base_url}|{self.client_id}".encode()).hexdigest()[:16]
        return dagster_home() / "outreach_tokens" / f"{app}.json"

    @contextmanager
    def open(self) -> Iterator[OutreachClient]:
        try:
            client = OutreachClient(
                self.base_url,
                client_id=self.client_id,
                client_secret=self.client_secret,
                redirect_uri=self.redirect_uri,
                refresh_token=self.refresh_token,
                token_store=self.token_store(),
                retry=RetryPolicy(max_rate_limit_wait=self.max_rate_limit_wait_seconds),
            )
        except MissingCredentials as exc:
            if exc.missing != ("refresh_token",):
                raise
            raise OutreachNotConnected(
                f"no Outreach account is connected for {self.base_url}: run `outreach-pipeline auth connect` "
                f"(or set {OUTREACH_REFRESH_TOKEN_VARIABLE} where no grant can be stored)"
            ) from None
        try:
            yield client
        finally:
            client.close()


class WorkbooksResource(_SecretMaskingResource):
    """Workbooks API by api_key, or by a login session (re-login on `session_expired`)."""

    _secret_fields: ClassVar[frozenset[str]] = frozenset({"api_key", "password"})

    base_url: str = SANDBOX_WORKBOOKS_URL
    api_key: str | None = SANDBOX_API_KEY
    username: str | None = None
    password: str | None = None
    logical_database_id: int | None = None

    @contextmanager
    def open(self) -> Iterator[WorkbooksClient]:
        client = WorkbooksClient(
            self.base_url,
            api_key=self.api_key if not self.username else None,
            username=self.username,
            password=self.password,
            logical_database_id=self.logical_database_id,
        )
        try:
            yield client
        finally:
            client.close()


class LedgerResource(dg.ConfigurableResource):
    """The sync ledger: SQLite under DAGSTER_HOME by default, a Postgres URL in production."""

    url: str | None = Field(default=None, description="SQLAlchemy URL; default sqlite:///$DAGSTER_HOME/sync_ledger.db")

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, _without_password(value) if name == "url" and value else value

    @contextmanager
    def open(self) -> Iterator[SyncLedger]:
        """The ledger, its connections released when the block ends."""
        ledger = SyncLedger(self.url or f"sqlite:///{dagster_home() / 'sync_ledger.db'}")
        try:
            yield ledger
        finally:
            ledger.dispose()


class SyncSettings(dg.ConfigurableResource):
    """Mapping file, failure thresholds and how a load waits for the writer lock of its entity."""

    mapping_path: str | None = Field(default=None, description="YAML mapping file; default: the packaged default.yaml")
    failure_rate_warn: float = Field(default=0.01, ge=0, le=1, description="failed/extracted above this warns")
    failure_rate_error: float = Field(default=0.10, ge=0, le=1, description="failed/extracted above this fails the check")
    failure_rate_min_records: int = Field(
        default=20, ge=1,
        description="records a window (or, pooled, a run's windows) must hold for its failure rate to be judged at "
                    "ERROR: one failure in a quiet hour of 3 records is not a broken sync; below it, WARN at most",
    )
    required_missing_block_share: float = Field(
        default=0.5, ge=0, le=1,
        description="share of a window's rows lacking a required field above which the load is blocked",
    )
    required_missing_block_min_rows: int = Field(
        default=20, ge=1,
        description="rows a window must have before that share can block it (a few bad rows fail alone)",
    )
    show_personal_data: bool = Field(
        default=False,
        description="show the values of the mapping's personal fields (emails, phones) in run metadata, which "
                    "Dagster keeps in its event store; masked by default",
    )
    retry_backoff_hours: float = Field(
        default=1.0, ge=0,
        description="a failed record is read again this long after its first failure, twice as long after each "
                    "further one (0: every run); a change of its source brings it back at once",
    )
    retry_backoff_max_hours: float = Field(default=24.0, gt=0, description="the longest wait between retries")
    failed_records_shown: int = Field(
        default=200, ge=0, description="failed records listed per window in a load's metadata (the rest are counted)",
    )
    stuck_after_runs: int = Field(
        default=2, ge=2,
        description="runs a record must fail in a row to count as stuck: reported apart from new failures "
                    "(records_stuck), left out of the failure rate's judgement, and on the stuck-list alert"
    )
    writer_lock_policy: LockPolicy = Field(
        default=LockPolicy.WAIT, description="wait for another run writing the same entity, or fail_fast"
    )
    writer_lock_max_wait_seconds: float = Field(default=1800, ge=0, description="then the load fails, naming the holder")
    writer_lock_lease_seconds: float = Field(
        default=60, gt=0, description="SQLite ledger: a holder silent this long is dead and its lock is taken over"
    )
    progress_every_records: int = Field(
        default=EVERY_RECORDS, ge=1, description="a long extract or load logs its progress after this many more records"
    )
    progress_interval_seconds: float = Field(
        default=INTERVAL_SECONDS, gt=0, description="... or after this many seconds, whichever comes first"
    )

    preflight_max_age_minutes: float = Field(
        default=360, ge=0,
        description="a passing field preflight of the same mapping and API is reused this long instead of fetching "
                    "both schemas again (0: check on every run); a failed check is never reused",
    )

    webhook_hints: bool = Field(
        default=True,
        description="skip an Outreach window read the webhook receiver proves quiet (engine/webhook_hints.py); "
                    "with no receiver listening every window is read",
    )
    webhook_delivery_grace_minutes: float = Field(
        default=2, ge=0, description="how long after a window ends a delivery of its changes may still arrive",
    )
    webhook_sweep_hours: int = Field(
        default=24, ge=1,
        description="a window starting on a multiple of this many hours (UTC) always reads, back to the previous one: "
                    "what bounds a delivery Outreach never made",
    )

    def webhook_grace(self) -> timedelta:
        return timedelta(minutes=self.webhook_delivery_grace_minutes)

    def mappings(self) -> MappingSet:
        # load_mapping_set parses and validates a file's content once (mapping/models.py): asking per step is cheap.
        return load_mapping_set(Path(self.mapping_path) if self.mapping_path else None)

    def backoff(self) -> RetryBackoff:
        return RetryBackoff(first=timedelta(hours=self.retry_backoff_hours),
                            cap=timedelta(hours=max(self.retry_backoff_max_hours, self.retry_backoff_hours)))

    def lock_settings(self) -> LockSettings:
        return LockSettings(policy=LockPolicy(self.writer_lock_policy), max_wait=self.writer_lock_max_wait_seconds,
                            lease_seconds=self.writer_lock_lease_seconds)


def _without_password(url: str) -> str:
    """``url`` with its password masked; entirely masked when it does not parse as a URL."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return REDACTED


def _set_variables(names: tuple[str, ...], environ: Mapping[str, str]) -> list[str]:
    return [name for name in names if environ.get(name)]


def _require_variables(names: tuple[str, ...], needed_by: str, environ: Mapping[str, str]) -> None:
    missing = [name for name in names if not environ.get(name)]
    if missing:
        raise ResourceConfigError(f"{', '.join(missing)} must be set too when {needed_by} is set")


def outreach_resource_from_env(
    base_url: str | None = None, settings: PipelineSettings | None = None
) -> OutreachResource:
    """The Outreach resource the environment configures: the real service when any Outreach credential
    variable is set (then the app's three are required; the refresh token is optional, as a connected
    account's grant is stored), else the sandbox.

    Args:
        base_url: Overrides ``$OUTREACH_BASE_URL`` and the default URL.
        settings: The pipeline settings (default: read from the environment); `max_rate_limit_wait` is
            the longest wait for the hourly request budget to reset.

    Raises:
        ResourceConfigError: When only some of the Outreach credential variables are set.
        SettingsError: A setting is invalid.
    """
    environ = os.environ
    base_url = base_url or environ.get("OUTREACH_BASE_URL")
    budget = {"max_rate_limit_wait_seconds": (settings or load_settings()).max_rate_limit_wait}
    present = _set_variables(OUTREACH_CREDENTIAL_VARIABLES, environ)
    if not present:
        # Without credentials the base URL may still move (a sandbox on other ports or another host).
        return OutreachResource(base_url=base_url or SANDBOX_OUTREACH_URL, **budget)
    _require_variables(OUTREACH_APP_VARIABLES, present[0], environ)
    return OutreachResource(
        base_url=base_url or REAL_OUTREACH_URL,
        **budget,
        client_id=dg.EnvVar("OUTREACH_CLIENT_ID"),
        client_secret=dg.EnvVar("OUTREACH_CLIENT_SECRET"),
        redirect_uri=dg.EnvVar("OUTREACH_REDIRECT_URI"),
        refresh_token=dg.EnvVar(OUTREACH_REFRESH_TOKEN_VARIABLE) if environ.get(OUTREACH_REFRESH_TOKEN_VARIABLE) else None,
    )


def workbooks_resource_from_env(base_url: str | None = None) -> WorkbooksResource:
    """The Workbooks resource the environment configures: by ``WORKBOOKS_API_KEY``, else by
    ``WORKBOOKS_USERNAME`` and ``WORKBOOKS_PASSWORD``, else the sandbox.

    Args:
        base_url: Overrides ``$WORKBOOKS_BASE_URL`` and the default URL.

    Raises:
        ResourceConfigError: When only one of the username and the password is set.
    """
    environ = os.environ
    base_url = base_url or environ.get("WORKBOOKS_BASE_URL")
    if environ.get("WORKBOOKS_API_KEY"):
        return WorkbooksResource(base_url=base_url or REAL_WORKBOOKS_URL, api_key=dg.EnvVar("WORKBOOKS_API_KEY"))
    login = _set_variables(("WORKBOOKS_USERNAME", "WORKBOOKS_PASSWORD"), environ)
    if not login:
        return WorkbooksResource(base_url=base_url or SANDBOX_WORKBOOKS_URL)
    _require_variables(("WORKBOOKS_USERNAME", "WORKBOOKS_PASSWORD"), login[0], environ)
    return WorkbooksResource(
        base_url=base_url or REAL_WORKBOOKS_URL,
        api_key=None,
        username=dg.EnvVar("WORKBOOKS_USERNAME"),
        password=dg.EnvVar("WORKBOOKS_PASSWORD"),
    )


def check_services_not_mixed(environ: Mapping[str, str], *, allow_mixed: bool) -> None:
    """Refuse a real Outreach with the sandbox Workbooks or the other way round.

    A sync would otherwise load sandbox records into a real Workbooks (or real Outreach records into
    the sandbox) because one set of credentials was missing. ``OUTREACH_PIPELINE_ALLOW_MIXED=1`` allows it.

    Args:
        environ: The environment whose credential variables are judged (``os.environ`` in production).
        allow_mixed: The `allow_mixed` setting.

    Raises:
        ResourceConfigError: Naming the variables that are set and the ones that are missing.
    """
    if allow_mixed:
        return
    outreach_set = _set_variables(OUTREACH_CREDENTIAL_VARIABLES, environ)
    workbooks_set = _set_variables(WORKBOOKS_CREDENTIAL_VARIABLES, environ)
    if bool(outreach_set) == bool(workbooks_set):
        return
    workbooks_wanted = "WORKBOOKS_API_KEY (or WORKBOOKS_USERNAME and WORKBOOKS_PASSWORD)"
    outreach_wanted = f"{', '.join(OUTREACH_APP_VARIABLES)} (then `outreach-pipeline auth connect`)"
    if outreach_set:
        real, present, sandbox, wanted = "Outreach", outreach_set, "Workbooks", workbooks_wanted
    else:
        real, present, sandbox, wanted = "Workbooks", workbooks_set, "Outreach", outreach_wanted
    raise ResourceConfigError(
        f"{real} would be the real service ({', '.join(present)} set) but {sandbox} the sandbox "
        f"({wanted} not set), so a sync would mix sandbox and real data. Set {wanted} for the real "
        f"{sandbox}, unset {', '.join(present)} to use both sandboxes, or set {ALLOW_MIXED_VARIABLE}=1 "
        "if the mix is intended."
    )


def sandbox_only_environment(environ: Mapping[str, str], *, outreach_url: str, workbooks_url: str) -> dict[str, str]:
    """A copy of ``environ`` that can only reach the given sandboxes: every credential and production
    variable removed and the base URLs pinned.

    Args:
        environ: The environment to start from.
        outreach_url: The Outreach sandbox's base URL.
        workbooks_url: The Workbooks sandbox's base URL.

    Returns:
        The environment for a process that must not touch real services.
    """
    dropped = {*REAL_SERVICE_VARIABLES, ALLOW_MIXED_VARIABLE}
    kept = {name: value for name, value in environ.items() if name not in dropped}
    return {**kept, "OUTREACH_BASE_URL": outreach_url, "WORKBOOKS_BASE_URL": workbooks_url}


def build_resources(settings: PipelineSettings | None = None) -> dict[str, dg.ConfigurableResource]:
    """Real services when their credentials are in the environment, else the sandbox defaults.

    Args:
        settings: The pipeline settings (default: read from the environment).

    Raises:
        ResourceConfigError: When one service is real and the other the sandbox (see
            :func:`check_services_not_mixed`), or a service's credentials are incomplete.
    """
    settings = settings or load_settings()
    check_services_not_mixed(os.environ, allow_mixed=settings.allow_mixed)
    # The URL may hold a password: the resource reads it through EnvVar, so it stays out of run config.
    ledger_url = dg.EnvVar(LEDGER_URL_VARIABLE) if settings.ledger_url is not None else None
    mapping_path = str(settings.mapping_path) if settings.mapping_path is not None else None
    return {
        "outreach": outreach_resource_from_env(settings=settings),
        "workbooks": workbooks_resource_from_env(),
        "ledger": LedgerResource(url=ledger_url),
        "sync_settings": SyncSettings(mapping_path=mapping_path),
    }
