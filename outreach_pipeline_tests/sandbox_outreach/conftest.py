"""Fixtures: an in-memory Outreach sandbox served over real HTTP, and authenticated sessions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import requests

from outreach_pipeline.sandbox.credentials import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    SANDBOX_REFRESH_TOKEN,
)
from outreach_pipeline.sandbox.outreach.app import OutreachSandbox, create_outreach_app
from outreach_pipeline.sandbox.outreach.settings import OutreachSettings
from outreach_pipeline.sandbox.outreach.store import OutreachStore
from outreach_pipeline.sandbox.server import ServedApp, serve_in_thread

JSON_API = "application/vnd.api+json"
PINNED_NOW = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)


class Sandbox:
    """A served sandbox plus helpers to talk to it the way a real client would."""

    def __init__(self, served: ServedApp, store: OutreachStore, app_state: OutreachSandbox) -> None:
        self.served = served
        self.store = store
        self.state = app_state
        self.url = served.url
        self.api = f"{served.url}/api/v2"

    def token(self, refresh_token: str = SANDBOX_REFRESH_TOKEN) -> dict:
        response = requests.post(
            f"{self.url}/oauth/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "client_id": SANDBOX_CLIENT_ID,
                "client_secret": SANDBOX_CLIENT_SECRET,
            },
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return response.json()

    def session(self, access_token: str | None = None) -> requests.Session:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {access_token or self.token()['access_token']}"
        session.headers["Content-Type"] = JSON_API
        return session


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    store = OutreachStore("sqlite://")
    app = create_outreach_app(store, OutreachSettings())
    with serve_in_thread(app) as served:
        yield Sandbox(served, store, app.state.sandbox)


@pytest.fixture
def client(sandbox: Sandbox) -> requests.Session:
    return sandbox.session()
