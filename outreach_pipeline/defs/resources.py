"""Dagster resources: the API clients, the sync ledger and sync settings.

With no credentials in the environment every resource points at the local sandbox (the embedded
default). Given `OUTREACH_CLIENT_ID` (and the other Outreach variables) or `WORKBOOKS_API_KEY` /
`WORKBOOKS_USERNAME`, the same code talks to the real services; secrets only ever come from `dg.EnvVar`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
from pydantic import Field

from outreach_pipeline.clients.outreach import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    SANDBOX_OUTREACH_URL,
    SANDBOX_REDIRECT_URI,
    SANDBOX_REFRESH_TOKEN,
    FileTokenStore,
    OutreachClient,
)
from outreach_pipeline.clients.workbooks import SANDBOX_WORKBOOKS_URL, WorkbooksClient
from outreach_pipeline.engine.ledger import SyncLedger
from outreach_pipeline.mapping.models import MappingSet, load_mapping_set


def dagster_home() -> Path:
    """Where per-installation state lives (ledger, tokens, window files): `$DAGSTER_HOME`, else `./.dagster_home`."""
    return Path(os.environ.get("DAGSTER_HOME") or ".dagster_home").resolve()


class OutreachResource(dg.ConfigurableResource):
    """Outreach API v2 over OAuth 2. Rotated refresh tokens are persisted under DAGSTER_HOME."""

    base_url: str = SANDBOX_OUTREACH_URL
    client_id: str = SANDBOX_CLIENT_ID
    client_secret: str = SANDBOX_CLIENT_SECRET
    redirect_uri: str = SANDBOX_REDIRECT_URI
    refresh_token: str = Field(default=SANDBOX_REFRESH_TOKEN, description="initial grant; rotated ones are stored")
    token_store_path: str | None = Field(default=None, description="default: DAGSTER_HOME/outreach_tokens/<app>.json")

    def _token_path(self) -> Path:
        if self.token_store_path:
            return Path(self.token_store_path)
        # One file per (service, app), so switching between the sandbox and the real API never mixes tokens.
        app = hashlib.sha256(f"{self.base_url}|{self.client_id}".encode()).hexdigest()[:16]
        return dagster_home() / "outreach_tokens" / f"{app}.json"

    @contextmanager
    def open(self) -> Iterator[OutreachClient]:
        client = OutreachClient(
            self.base_url,
            client_id=self.client_id,
            client_secret=self.client_secret,
            redirect_uri=self.redirect_uri,
            refresh_token=self.refresh_token,
            token_store=FileTokenStore(self._token_path()),
        )
        try:
            yield client
        finally:
            client.close()


class WorkbooksResource(dg.ConfigurableResource):
    """Workbooks API by api_key, or by a login session (re-login on `session_expired`)."""

    base_url: str = SANDBOX_WORKBOOKS_URL
    api_key: str | None = "sandbox-api-key"
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

    def open(self) -> SyncLedger:
        url = self.url or f"sqlite:///{dagster_home() / 'sync_ledger.db'}"
        return SyncLedger(url)


class SyncSettings(dg.ConfigurableResource):
    """Mapping file and failure thresholds."""

    mapping_path: str | None = Field(default=None, description="YAML mapping file; default: the packaged default.yaml")
    failure_rate_warn: float = Field(default=0.01, ge=0, le=1, description="failed/extracted above this warns")
    failure_rate_error: float = Field(default=0.10, ge=0, le=1, description="failed/extracted above this fails the check")

    def mappings(self) -> MappingSet:
        return load_mapping_set(Path(self.mapping_path) if self.mapping_path else None)


def build_resources() -> dict[str, dg.ConfigurableResource]:
    """Real services when their credentials are in the environment, else the sandbox defaults."""
    # Without credentials the base URLs may still move (a sandbox on other ports or another host).
    outreach = OutreachResource(base_url=os.environ.get("OUTREACH_BASE_URL", SANDBOX_OUTREACH_URL))
    if os.environ.get("OUTREACH_CLIENT_ID"):
        outreach = OutreachResource(
            base_url=os.environ.get("OUTREACH_BASE_URL", "https://api.outreach.io"),
            client_id=dg.EnvVar("OUTREACH_CLIENT_ID"),
            client_secret=dg.EnvVar("OUTREACH_CLIENT_SECRET"),
            redirect_uri=dg.EnvVar("OUTREACH_REDIRECT_URI"),
            refresh_token=dg.EnvVar("OUTREACH_REFRESH_TOKEN"),
        )
    workbooks = WorkbooksResource(base_url=os.environ.get("WORKBOOKS_BASE_URL", SANDBOX_WORKBOOKS_URL))
    if os.environ.get("WORKBOOKS_API_KEY"):
        workbooks = WorkbooksResource(
            base_url=os.environ.get("WORKBOOKS_BASE_URL", "https://secure.workbooks.com"),
            api_key=dg.EnvVar("WORKBOOKS_API_KEY"),
        )
    elif os.environ.get("WORKBOOKS_USERNAME"):
        workbooks = WorkbooksResource(
            base_url=os.environ.get("WORKBOOKS_BASE_URL", "https://secure.workbooks.com"),
            api_key=None,
            username=dg.EnvVar("WORKBOOKS_USERNAME"),
            password=dg.EnvVar("WORKBOOKS_PASSWORD"),
        )
    ledger = LedgerResource(url=dg.EnvVar("OUTREACH_PIPELINE_LEDGER_URL")) if os.environ.get(
        "OUTREACH_PIPELINE_LEDGER_URL"
    ) else LedgerResource()
    return {"outreach": outreach, "workbooks": workbooks, "ledger": ledger, "sync_settings": SyncSettings()}
