"""Access tokens are shared through the token store, so clients of one app mint once, not once each.

Over real HTTP against a small token server that, like Outreach, answers 429 to a second mint for the
same user within 60 s.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from pathlib import Path

import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from outreach_pipeline.clients.outreach import TOKEN_REFRESH_MARGIN_SECONDS, OutreachClient
from outreach_pipeline.clients.tokens import FileTokenStore, MemoryTokenStore, StoredTokens
from outreach_pipeline_tests.clients.conftest import FakeClock, form_pairs

CLIENT_SECRET = "app-secret-9f2"
BOOTSTRAP_REFRESH = "bootstrap-refresh"
ACCESS_TTL_SECONDS = 7200
MINT_INTERVAL_SECONDS = 60
TOKEN_FILE_KEYS = {"refresh_token", "access_token", "access_token_expires_at", "scopes"}  # scopes: no secret


class MintLimitedOutreach:
    """Rotating refresh tokens, a 60 s mint limit, and one prospect behind bearer auth."""

    def __init__(self, clock: FakeClock, mint_delay_seconds: float = 0.0) -> None:
        self.clock = clock
        self.mint_delay_seconds = mint_delay_seconds
        self.current_refresh = BOOTSTRAP_REFRESH
        self.valid_access: set[str] = set()
        self.mints: list[str] = []  # access tokens issued
        self.throttled_mints = 0
        self.last_mint_at: float | None = None
        self.bearers_seen: list[str] = []
        self._lock = threading.Lock()

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/oauth/token", self.token, methods=["POST"]),
            Route("/api/v2/prospects/{id:int}", self.prospect, methods=["GET"]),
        ])

    async def token(self, request: Request) -> Response:
        form = dict(await form_pairs(request))
        if form.get("client_secret") != CLIENT_SECRET or form.get("refresh_token") != self.current_refresh:
            return JSONResponse({"error": "invalid_grant", "error_description": "bad refresh token"}, 400)
        if self.mint_delay_seconds:
            time.sleep(self.mint_delay_seconds)  # widens the window in which a second client could mint too
        with self._lock:
            if self.last_mint_at is not None and self.clock.now - self.last_mint_at < MINT_INTERVAL_SECONDS:
                self.throttled_mints += 1
                return JSONResponse({"error": "rate_limited", "error_description": "one token per minute"}, 429,
                                    headers={"Retry-After": "60"})
            self.last_mint_at = self.clock.now
            serial = len(self.mints) + 1
            access = f"access-{serial}"
            self.mints.append(access)
            self.valid_access.add(access)
            self.current_refresh = f"refresh-{serial}"
        return JSONResponse({"access_token": access, "token_type": "bearer", "expires_in": ACCESS_TTL_SECONDS,
                             "refresh_token": self.current_refresh, "scope": "prospects.all", "created_at": 0})

    async def prospect(self, request: Request) -> Response:
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        self.bearers_seen.append(bearer)
        if bearer not in self.valid_access:
            return JSONResponse({"errors": [{"id": "unauthorized", "title": "Unauthorized"}]}, 401)
        record_id = request.path_params["id"]
        return JSONResponse({"data": {"type": "prospect", "id": record_id, "attributes": {"firstName": "Ada"}}})


@pytest.fixture
def outreach(serve, clock) -> tuple[MintLimitedOutreach, str]:
    fake = MintLimitedOutreach(clock)
    return fake, serve(fake.app())


def client_for(url: str, store, clock: FakeClock, fast_retry) -> OutreachClient:
    return OutreachClient(url, client_id="cid", client_secret=SecretStr(CLIENT_SECRET),
                          redirect_uri="https://app.example/oauth/callback", refresh_token=BOOTSTRAP_REFRESH, token_store=store,
                          retry=fast_retry, sleep=clock.sleep, clock=clock)


def assert_token_file_holds_only_tokens(path: Path, fake: MintLimitedOutreach) -> dict:
    content = json.loads(path.read_text(encoding="utf-8"))
    assert set(content) == TOKEN_FILE_KEYS
    assert content["refresh_token"] == fake.current_refresh
    assert content["access_token"] == fake.mints[-1]
    assert CLIENT_SECRET not in path.read_text(encoding="utf-8")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    return content


def test_two_clients_on_one_file_store_mint_exactly_one_token(outreach, clock, fast_retry, tmp_path):
    fake, url = outreach
    token_path = tmp_path / "tokens" / "app.json"

    first = client_for(url, FileTokenStore(token_path), clock, fast_retry)
    first.get("prospects", 1)
    assert_token_file_holds_only_tokens(token_path, fake)
    clock.now += 5  # the next asset of the run opens its client seconds later
    second = client_for(url, FileTokenStore(token_path), clock, fast_retry)
    second.get("prospects", 2)

    assert fake.mints == ["access-1"] and fake.throttled_mints == 0
    assert fake.bearers_seen == ["access-1", "access-1"]
    content = assert_token_file_holds_only_tokens(token_path, fake)
    assert content["access_token_expires_at"] == pytest.approx(clock.now - 5 + ACCESS_TTL_SECONDS)


def test_clients_starting_together_mint_once(serve, clock, fast_retry, tmp_path):
    fake = MintLimitedOutreach(clock, mint_delay_seconds=0.3)
    url = serve(fake.app())
    token_path = tmp_path / "app.json"
    clients = [client_for(url, FileTokenStore(token_path), clock, fast_retry) for _ in range(3)]
    start = threading.Barrier(len(clients))
    failures: list[BaseException] = []

    def fetch(client: OutreachClient) -> None:
        start.wait()
        try:
            client.get("prospects", 1)
        except BaseException as exc:  # reported below: a thread's exception would otherwise vanish
            failures.append(exc)

    threads = [threading.Thread(target=fetch, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)

    assert not failures
    assert fake.mints == ["access-1"] and fake.throttled_mints == 0
    assert_token_file_holds_only_tokens(token_path, fake)


def test_stored_token_near_expiry_is_refreshed_and_saved(outreach, clock, fast_retry, tmp_path):
    fake, url = outreach
    token_path = tmp_path / "app.json"
    client_for(url, FileTokenStore(token_path), clock, fast_retry).get("prospects", 1)
    clock.now += ACCESS_TTL_SECONDS - TOKEN_REFRESH_MARGIN_SECONDS  # inside the margin: too close to expiry

    client_for(url, FileTokenStore(token_path), clock, fast_retry).get("prospects", 1)

    assert fake.mints == ["access-1", "access-2"]
    assert fake.bearers_seen[-1] == "access-2"
    content = assert_token_file_holds_only_tokens(token_path, fake)
    assert content["refresh_token"] == "refresh-2"
    assert content["access_token_expires_at"] == pytest.approx(clock.now + ACCESS_TTL_SECONDS)


def test_401_on_a_stored_token_forces_one_refresh_that_the_next_client_reuses(outreach, clock, fast_retry, tmp_path):
    fake, url = outreach
    token_path = tmp_path / "app.json"
    client_for(url, FileTokenStore(token_path), clock, fast_retry).get("prospects", 1)
    fake.valid_access.clear()  # revoked server-side while still unexpired in the store
    clock.now += MINT_INTERVAL_SECONDS

    client_for(url, FileTokenStore(token_path), clock, fast_retry).get("prospects", 2)
    client_for(url, FileTokenStore(token_path), clock, fast_retry).get("prospects", 3)

    assert fake.mints == ["access-1", "access-2"]
    assert fake.bearers_seen == ["access-1", "access-1", "access-2", "access-2"]
    assert_token_file_holds_only_tokens(token_path, fake)


def test_token_file_with_only_a_refresh_token_still_loads(outreach, clock, fast_retry, tmp_path):
    fake, url = outreach
    token_path = tmp_path / "app.json"
    fake.current_refresh = "refresh-from-an-older-version"
    token_path.write_text(json.dumps({"refresh_token": fake.current_refresh, "saved_at": "2024-01-01T00:00:00+00:00"}))

    client_for(url, FileTokenStore(token_path), clock, fast_retry).get("prospects", 1)

    assert fake.mints == ["access-1"]
    assert_token_file_holds_only_tokens(token_path, fake)


def test_malformed_token_file_names_the_field_but_not_the_token(tmp_path):
    token_path = tmp_path / "app.json"
    token_path.write_text(json.dumps({"refresh_token": "rt-secret-77", "access_token": "at-secret-88",
                                      "access_token_expires_at": "tomorrow"}))

    with pytest.raises(ValueError) as caught:
        FileTokenStore(token_path).load()

    message = str(caught.value)
    assert "access_token_expires_at" in message and str(token_path) in message
    assert "rt-secret-77" not in message and "at-secret-88" not in message


def test_memory_store_shares_the_access_token_between_clients(outreach, clock, fast_retry):
    fake, url = outreach
    store = MemoryTokenStore()

    client_for(url, store, clock, fast_retry).get("prospects", 1)
    client_for(url, store, clock, fast_retry).get("prospects", 2)

    assert fake.mints == ["access-1"]
    stored = store.load()
    assert isinstance(stored, StoredTokens)
    assert stored.access_token is not None and stored.access_token.get_secret_value() == "access-1"
    assert "access-1" not in repr(store) and "access-1" not in repr(stored)
