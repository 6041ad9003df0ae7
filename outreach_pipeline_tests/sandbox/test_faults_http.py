"""Every injected fault, over real HTTP, configured at start-up (`SandboxConfig.faults`) or at run time
(`POST /_sandbox/faults`), against both APIs."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
import requests

from outreach_pipeline.sandbox.runtime import RunningSandbox, start_sandbox
from outreach_pipeline_tests.sandbox.conftest import (
    APIS,
    HTTP_TIMEOUT,
    add_faults,
    api_reader,
    base_url,
    create_prospect,
    fetch_token,
    outreach_session,
    prospects_named,
    small_config,
    stats,
    workbooks_call,
    workbooks_create_pairs,
    workbooks_people_named,
)


def assert_burst_then_normal(read: Callable[[], requests.Response], count: int, retry_after: int) -> None:
    """Exactly `count` 429s carrying Retry-After, then normal answers."""
    answers = [read() for _ in range(count + 2)]
    assert [a.status_code for a in answers] == [429] * count + [200, 200]
    assert {a.headers["Retry-After"] for a in answers[:count]} == {str(retry_after)}
    assert "Retry-After" not in answers[-1].headers


def test_rate_limit_burst_from_start_config_hits_each_api_separately() -> None:
    # One rule for both APIs (the token request is a POST, so it is spared): each API serves its own burst.
    with start_sandbox(small_config(faults="rate_limit:count=3:retry_after=7:methods=GET")) as running:
        assert_burst_then_normal(api_reader(running, "outreach"), 3, 7)
        assert_burst_then_normal(api_reader(running, "workbooks"), 3, 7)
        assert stats(running.outreach_url)["faults"] == {"rate_limit": 3}
        assert stats(running.workbooks_url)["faults"] == {"rate_limit": 3}


def test_rate_limit_burst_added_at_run_time_uses_each_api_error_shape(sandbox: RunningSandbox) -> None:
    for api in APIS:
        read = api_reader(sandbox, api)
        assert read().status_code == 200
        assert (
            add_faults(base_url(sandbox, api), {"spec": "rate_limit:count=2:retry_after=5"}).status_code
            == 200
        )
        limited = read()
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "5"
        if api == "outreach":
            assert limited.json()["errors"][0]["id"] == "rateLimitExceeded"
        else:
            assert limited.headers["Content-Type"].startswith("text/html")
        assert [read().status_code for _ in range(3)] == [429, 200, 200]


def test_status_rule_fails_only_the_listed_methods(sandbox: RunningSandbox) -> None:
    session = outreach_session(sandbox.outreach_url)
    rule = {"kind": "status", "status": 502, "rate": 1.0, "methods": ["GET"], "path": "/api/v2"}
    assert add_faults(sandbox.outreach_url, [rule]).status_code == 200
    failed = session.get(f"{sandbox.outreach_url}/api/v2/prospects", timeout=HTTP_TIMEOUT)
    assert failed.status_code == 502
    assert failed.json()["errors"][0]["id"] == "badGateway"
    assert create_prospect(session, sandbox.outreach_url, "Unfaulted").status_code == 201


def test_status_rule_on_workbooks_uses_the_effective_method(sandbox: RunningSandbox) -> None:
    # Both calls are HTTP POSTs; only the `_method=PUT` write matches the rule.
    assert add_faults(sandbox.workbooks_url, {"spec": "status:status=503:methods=PUT"}).status_code == 200
    write = workbooks_call(
        sandbox.workbooks_url,
        "crm/people",
        "PUT",
        workbooks_create_pairs([{"person_first_name": "Never", "person_last_name": "Saved"}]),
    )
    assert write.status_code == 503 and "<h1>503</h1>" in write.text
    assert workbooks_people_named(sandbox.workbooks_url, "Saved") == []


@pytest.mark.parametrize("api", APIS)
def test_status_rate_fails_a_share_of_requests(sandbox: RunningSandbox, api: str) -> None:
    read = api_reader(sandbox, api)
    add_faults(base_url(sandbox, api), {"spec": "status:status=500:rate=0.5:path=/"})
    statuses = [read().status_code for _ in range(40)]
    assert set(statuses) == {200, 500}
    assert 8 <= statuses.count(500) <= 32
    assert stats(base_url(sandbox, api))["faults"]["status"] == statuses.count(500)


def test_slow_rule_delays_matching_requests(sandbox: RunningSandbox) -> None:
    session = outreach_session(sandbox.outreach_url)
    add_faults(sandbox.outreach_url, {"spec": "slow:delay_ms=400:path=/api/v2/prospects"})
    started = time.perf_counter()
    response = session.get(f"{sandbox.outreach_url}/api/v2/prospects", timeout=HTTP_TIMEOUT)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200 and elapsed >= 0.4
    assert session.get(f"{sandbox.outreach_url}/api/v2/accounts", timeout=HTTP_TIMEOUT).status_code == 200
    assert stats(sandbox.outreach_url)["faults"] == {"slow": 1}


def test_slow_rule_from_start_config_delays_workbooks() -> None:
    with start_sandbox(small_config(faults="slow:delay_ms=300:path=/crm")) as running:
        read = api_reader(running, "workbooks")
        started = time.perf_counter()
        assert read().status_code == 200
        assert time.perf_counter() - started >= 0.3


def test_outreach_connection_dropped_after_the_create_was_committed(sandbox: RunningSandbox) -> None:
    session = outreach_session(sandbox.outreach_url)
    add_faults(sandbox.outreach_url, {"spec": "drop_after_write:count=1"})
    # Reads are never dropped, even with the rule active.
    assert prospects_named(session, sandbox.outreach_url, "Dropped") == []
    with pytest.raises(requests.ConnectionError):
        create_prospect(session, sandbox.outreach_url, "Dropped")
    saved = prospects_named(session, sandbox.outreach_url, "Dropped")
    assert len(saved) == 1 and saved[0]["attributes"]["lastName"] == "Fault"
    assert sandbox.outreach_store.get("prospect", int(saved[0]["id"])).attributes["firstName"] == "Dropped"
    assert create_prospect(session, sandbox.outreach_url, "Answered").status_code == 201


def test_workbooks_connection_dropped_after_the_batch_was_committed() -> None:
    with start_sandbox(small_config(faults="drop_after_write:path=/crm/people")) as running:
        people = [
            {"person_first_name": "Ada", "person_last_name": "Dropwrite"},
            {"person_first_name": "Bo", "person_last_name": "Dropwrite"},
        ]
        with pytest.raises(requests.ConnectionError):
            workbooks_call(running.workbooks_url, "crm/people", "PUT", workbooks_create_pairs(people))
        # The read is an HTTP POST too, but `_method=GET` is not a write, so it is answered.
        saved = workbooks_people_named(running.workbooks_url, "Dropwrite")
        assert sorted(p["person_first_name"] for p in saved) == ["Ada", "Bo"]
        assert stats(running.workbooks_url)["faults"] == {"drop_after_write": 1}


@pytest.mark.parametrize("api", APIS)
def test_malformed_json_body_fails_to_parse(sandbox: RunningSandbox, api: str) -> None:
    read = api_reader(sandbox, api)
    add_faults(base_url(sandbox, api), [{"kind": "malformed_json", "count": 1}])
    broken = read()
    assert broken.status_code == 200
    assert int(broken.headers["Content-Length"]) == len(broken.content)
    with pytest.raises(json.JSONDecodeError):
        json.loads(broken.content)
    assert read().json()["data"]


def test_token_expiry_mid_run_then_refresh(sandbox: RunningSandbox) -> None:
    url = f"{sandbox.outreach_url}/api/v2/prospects"
    grant = fetch_token(sandbox.outreach_url)
    headers = {"Authorization": f"Bearer {grant['access_token']}"}
    assert requests.get(url, headers=headers, timeout=HTTP_TIMEOUT).status_code == 200
    expired = requests.post(f"{sandbox.outreach_url}/_sandbox/oauth/expire", timeout=HTTP_TIMEOUT)
    assert expired.status_code == 200 and expired.json()["expired"] >= 1
    rejected = requests.get(url, headers=headers, timeout=HTTP_TIMEOUT)
    assert rejected.status_code == 401
    renewed = fetch_token(sandbox.outreach_url, refresh_token=grant["refresh_token"])
    assert renewed["access_token"] != grant["access_token"]
    renewed_headers = {"Authorization": f"Bearer {renewed['access_token']}"}
    assert requests.get(url, headers=renewed_headers, timeout=HTTP_TIMEOUT).status_code == 200


def test_admin_actions_of_the_apps_are_never_faulted_nor_counted(sandbox: RunningSandbox) -> None:
    add_faults(sandbox.outreach_url, {"spec": "status:status=503"})
    add_faults(sandbox.workbooks_url, {"spec": "status:status=503"})
    assert requests.post(f"{sandbox.outreach_url}/_sandbox/oauth/expire", timeout=HTTP_TIMEOUT).ok
    assert requests.post(
        f"{sandbox.workbooks_url}/_sandbox/workbooks/expire_sessions", timeout=HTTP_TIMEOUT
    ).ok
    assert stats(sandbox.outreach_url)["total"] == 0
    assert stats(sandbox.workbooks_url)["total"] == 0
