"""OAuth code flow, expiry, refresh rotation (lenient and strict), scopes, rate-limit headers and 429."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlparse

import requests

from outreach_pipeline.sandbox.credentials import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    SANDBOX_REDIRECT_URI,
)


def _authorize(sandbox, scope: str) -> dict:
    redirect = requests.get(
        f"{sandbox.url}/oauth/authorize",
        params={
            "client_id": SANDBOX_CLIENT_ID,
            "redirect_uri": SANDBOX_REDIRECT_URI,
            "response_type": "code",
            "scope": scope,
            "state": "xyz",
        },
        allow_redirects=False,
        timeout=10,
    )
    assert redirect.status_code == 302
    query = parse_qs(urlparse(redirect.headers["location"]).query)
    assert query["state"] == ["xyz"]
    token = requests.post(
        f"{sandbox.url}/oauth/token",
        timeout=10,
        data={
            "grant_type": "authorization_code",
            "code": query["code"][0],
            "redirect_uri": SANDBOX_REDIRECT_URI,
            "client_id": SANDBOX_CLIENT_ID,
            "client_secret": SANDBOX_CLIENT_SECRET,
        },
    )
    assert token.status_code == 200, token.text
    return token.json()


def test_code_flow_and_token_shape(sandbox) -> None:
    token = _authorize(sandbox, "prospects.read accounts.all")
    assert token["token_type"] == "bearer" and token["expires_in"] == 7200
    assert token["scope"] == "accounts.all prospects.read"
    assert isinstance(token["created_at"], int) and token["refresh_token"]


def test_scopes_are_not_additive(sandbox) -> None:
    session = sandbox.session(_authorize(sandbox, "prospects.write accounts.all")["access_token"])
    denied = session.get(f"{sandbox.api}/prospects")
    assert denied.status_code == 403
    assert denied.json()["errors"][0] == {
        "id": "unauthorizedOauthScope",
        "title": "Unauthorized OAuth Scope",
        "detail": "Your authorization does not include the required scope 'prospects.read'.",
    }
    assert session.get(f"{sandbox.api}/accounts").status_code == 200
    assert session.delete(f"{sandbox.api}/prospects/1").status_code == 403


def test_expiry_and_lenient_rotation(sandbox) -> None:
    first = sandbox.token()
    session = sandbox.session(first["access_token"])
    assert session.get(f"{sandbox.api}/users").status_code == 200
    later = time.time() + 7201  # past the 2 h access token, well within the 14-day refresh token
    sandbox.state.oauth.clock = lambda: later
    expired = session.get(f"{sandbox.api}/users")
    assert expired.status_code == 401 and expired.json()["errors"][0]["id"] == "unauthorized"
    second = sandbox.token(first["refresh_token"])
    assert second["refresh_token"] != first["refresh_token"]
    # Lenient mode: the previous refresh token still works until 100 newer tokens exist.
    assert sandbox.token(first["refresh_token"])["access_token"]
    assert sandbox.session(second["access_token"]).get(f"{sandbox.api}/users").status_code == 200
    assert (
        requests.get(f"{sandbox.api}/users", headers={"Authorization": "Bearer nope"}, timeout=10).status_code
        == 401
    )
    sandbox.state.oauth.clock = lambda: later + 15 * 86_400
    stale = requests.post(
        f"{sandbox.url}/oauth/token",
        timeout=10,
        data={
            "grant_type": "refresh_token",
            "refresh_token": second["refresh_token"],
            "client_id": SANDBOX_CLIENT_ID,
            "client_secret": SANDBOX_CLIENT_SECRET,
        },
    )
    assert stale.status_code == 400, "refresh tokens live 14 days"


def test_old_refresh_token_dies_after_100_newer_tokens(sandbox) -> None:
    old = sandbox.token()["refresh_token"]
    for _ in range(101):
        sandbox.token()
    rejected = requests.post(
        f"{sandbox.url}/oauth/token",
        timeout=10,
        data={
            "grant_type": "refresh_token",
            "refresh_token": old,
            "client_id": SANDBOX_CLIENT_ID,
            "client_secret": SANDBOX_CLIENT_SECRET,
        },
    )
    assert rejected.status_code == 400 and rejected.json()["error"] == "invalid_grant"


def test_strict_rotation_and_admin_expiry(sandbox) -> None:
    changed = requests.post(
        f"{sandbox.url}/_sandbox/outreach/settings", json={"strict_refresh_rotation": True}, timeout=10
    )
    assert changed.status_code == 200 and changed.json()["client_secret"] == "**********"
    first = sandbox.token()
    sandbox.token(first["refresh_token"])
    reuse = requests.post(
        f"{sandbox.url}/oauth/token",
        timeout=10,
        data={
            "grant_type": "refresh_token",
            "refresh_token": first["refresh_token"],
            "client_id": SANDBOX_CLIENT_ID,
            "client_secret": SANDBOX_CLIENT_SECRET,
        },
    )
    assert reuse.status_code == 400
    session = sandbox.session()
    assert requests.post(f"{sandbox.url}/_sandbox/oauth/expire", timeout=10).json()["expired"] >= 1
    assert session.get(f"{sandbox.api}/users").status_code == 401
    bad = requests.post(
        f"{sandbox.url}/_sandbox/outreach/settings", json={"access_token_ttl_seconds": 0}, timeout=10
    )
    assert bad.status_code == 422 and "access_token_ttl_seconds" in bad.text


def test_rate_limit_headers_and_429(sandbox, client) -> None:
    first = client.get(f"{sandbox.api}/users")
    assert first.headers["X-RateLimit-Limit"] == "10000"
    remaining = int(first.headers["X-RateLimit-Remaining"])
    assert int(client.get(f"{sandbox.api}/users").headers["X-RateLimit-Remaining"]) == remaining - 1
    assert int(first.headers["X-RateLimit-Reset"]) % 3600 == 0
    # Two requests used so far: a limit of 3 leaves exactly one.
    requests.post(
        f"{sandbox.url}/_sandbox/outreach/settings",
        timeout=10,
        json={"rate_limit_per_hour": 3, "rate_limit_remaining_two_values": True},
    )
    two = client.get(f"{sandbox.api}/users").headers["X-RateLimit-Remaining"]
    user_left, org_left = (int(part) for part in two.split(", "))
    assert user_left == 0 and org_left > user_left
    limited = client.get(f"{sandbox.api}/users")
    assert limited.status_code == 429
    error = limited.json()["errors"][0]
    assert error["id"] == "rateLimitExceeded"
    assert error["detail"].startswith(
        "You have exceeded your permitted rate limit of 3; please try again at "
    )
    assert int(limited.headers["Retry-After"]) >= 1 and "X-RateLimit-Reset" in limited.headers
