"""Authentication: api_key on each request, and login.api sessions (cookie, authenticity token, expiry)."""

from __future__ import annotations

import time

import requests

from outreach_pipeline.sandbox.workbooks import SANDBOX_PASSWORD, SANDBOX_USERNAME, SESSION_COOKIE
from outreach_pipeline_tests.sandbox_workbooks.conftest import BindingClient


def test_api_key_authenticates_each_request(sandbox):
    assert sandbox.client.get("crm/people").status_code == 200
    wrong = BindingClient(sandbox.url, api_key="not-the-key").get("crm/people")
    assert wrong.status_code == 401
    assert wrong.json()["failure_reason"] == "unrecognised_api_key"
    assert "not-the-key" not in wrong.text


def test_no_credentials_is_no_session(sandbox):
    response = BindingClient(sandbox.url, api_key=None).get("crm/people")
    assert response.status_code == 401
    assert response.json()["failure_reason"] == "no_session"


def test_password_login_sets_cookie_and_session_reads_and_writes(sandbox):
    client = BindingClient(sandbox.url, api_key=None)
    login = client.login(username=SANDBOX_USERNAME, password=SANDBOX_PASSWORD)
    assert login.status_code == 200
    body = login.json()
    assert login.cookies[SESSION_COOKIE] == body["session_id"]
    assert int(body["session_id"], 16) >= 0
    for key in (
        "authenticity_token",
        "database_name",
        "logical_database_id",
        "user_id",
        "person_name",
        "login_name",
    ):
        assert key in body
    assert body["api_version"] == 1 and body["databases"]
    assert client.get("crm/people").status_code == 200
    created = client.batch("crm/people", [{"person_last_name": "Session"}], "create")
    assert created.json()["success"] is True

    client.authenticity_token = "forged"
    forged = client.batch("crm/people", [{"person_last_name": "Forged"}], "create")
    assert forged.status_code == 401
    assert forged.json()["failure_reason"] == "invalid_authenticity_token"


def test_bad_password_and_unknown_user_are_rejected(sandbox):
    client = BindingClient(sandbox.url, api_key=None)
    assert client.login(username=SANDBOX_USERNAME, password="wrong").json()["failure_reason"] == (
        "unrecognised_name_or_password"
    )
    response = client.login(username="someone@else", password=SANDBOX_PASSWORD)
    assert response.status_code == 401
    assert "wrong" not in response.text


def test_login_requires_client_api(sandbox):
    response = requests.post(f"{sandbox.url}/login.api", data={"api_key": "sandbox-api-key"})
    assert response.status_code == 406
    assert "client=api" in response.json()["flash"]


def test_session_expires_after_idle_timeout(sandbox):
    client = BindingClient(sandbox.url, api_key=None)
    client.login(api_key="sandbox-api-key")
    assert sandbox.admin("settings", {"session_idle_timeout_seconds": 0.3}).status_code == 200
    assert client.get("crm/people").status_code == 200
    time.sleep(0.4)
    expired = client.get("crm/people")
    assert expired.status_code == 401
    assert expired.json()["failure_reason"] == "session_expired"


def test_expire_sessions_route_and_logout(sandbox):
    client = BindingClient(sandbox.url, api_key=None)
    client.login(username=SANDBOX_USERNAME, password=SANDBOX_PASSWORD)
    assert sandbox.admin("expire_sessions").json()["expired"] == 1
    assert client.get("crm/people").json()["failure_reason"] == "no_session_found"

    client.login(username=SANDBOX_USERNAME, password=SANDBOX_PASSWORD)
    logout = client.http.post(f"{sandbox.url}/logout", allow_redirects=False)
    assert logout.status_code == 302
    assert client.get("crm/people").status_code == 401


def test_database_selection_required_when_configured(sandbox):
    sandbox.admin("settings", {"require_database_selection": True})
    client = BindingClient(sandbox.url, api_key=None)
    first = client.login(username=SANDBOX_USERNAME, password=SANDBOX_PASSWORD)
    assert first.status_code == 403
    assert first.json()["failure_reason"] == "no_database_selection_made"
    database_id = first.json()["databases"][0]["logical_database_id"]
    second = client.login(
        username=SANDBOX_USERNAME, password=SANDBOX_PASSWORD, logical_database_id=database_id
    )
    assert second.status_code == 200


def test_settings_route_rejects_unknown_and_invalid_values_and_hides_secrets(sandbox):
    assert sandbox.admin("settings", {"no_such_setting": 1}).status_code == 406
    assert sandbox.admin("settings", {"session_idle_timeout_seconds": -5}).status_code == 406
    response = sandbox.admin("settings", {"api_key": "rotated-key"})
    assert "rotated-key" not in response.text
    assert BindingClient(sandbox.url, api_key="rotated-key").get("crm/people").status_code == 200
    assert "rotated-key" not in repr(sandbox.settings)
