"""Request accounting (`/_sandbox/stats`) and the fault admin API (`/_sandbox/faults`), over real HTTP."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from outreach_pipeline.sandbox.runtime import RunningSandbox
from outreach_pipeline.sandbox.workbooks.app import SANDBOX_API_KEY
from outreach_pipeline_tests.sandbox.conftest import (
    APIS,
    HTTP_TIMEOUT,
    add_faults,
    api_reader,
    base_url,
    create_prospect,
    outreach_session,
    stats,
    workbooks_call,
    workbooks_create_pairs,
)


def test_outreach_requests_are_counted_per_method_and_endpoint(sandbox: RunningSandbox) -> None:
    session = outreach_session(sandbox.outreach_url)
    requests.post(f"{sandbox.outreach_url}/_sandbox/stats/reset", timeout=HTTP_TIMEOUT)
    url = f"{sandbox.outreach_url}/api/v2/prospects"
    first_id = session.get(url, timeout=HTTP_TIMEOUT).json()["data"][0]["id"]
    session.get(url, timeout=HTTP_TIMEOUT)
    session.get(f"{url}/{first_id}", timeout=HTTP_TIMEOUT)
    create_prospect(session, sandbox.outreach_url, "Counted")
    counted = stats(sandbox.outreach_url)
    assert counted["requests"] == {
        "GET /api/v2/prospects": 2,
        "GET /api/v2/prospects/{id}": 1,
        "POST /api/v2/prospects": 1,
    }
    assert counted["total"] == 4 and counted["in_flight"] == 0


def test_workbooks_requests_are_counted_by_their_effective_method(sandbox: RunningSandbox) -> None:
    url = sandbox.workbooks_url
    workbooks_call(url, "crm/people", "GET")
    workbooks_call(url, "crm/people", "PUT", workbooks_create_pairs([{"person_last_name": "Counted"}]))
    # The `_method` may also travel in the query string; a plain HTTP GET counts as itself.
    requests.post(f"{url}/crm/organisations.api?_method=GET", data={"api_key": SANDBOX_API_KEY}, timeout=10)
    requests.get(f"{url}/crm/organisations.api", params={"api_key": SANDBOX_API_KEY}, timeout=HTTP_TIMEOUT)
    assert stats(url)["requests"] == {
        "GET /crm/organisations.api": 2,
        "GET /crm/people.api": 1,
        "PUT /crm/people.api": 1,
    }


@pytest.mark.parametrize("api", APIS)
def test_peak_in_flight_counts_concurrent_requests(sandbox: RunningSandbox, api: str) -> None:
    read = api_reader(sandbox, api)
    add_faults(base_url(sandbox, api), {"spec": "slow:delay_ms=400"})
    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = list(pool.map(lambda _: read().status_code, range(4)))
    assert statuses == [200] * 4
    counted = stats(base_url(sandbox, api))
    assert counted["peak_in_flight"] >= 2
    assert counted["in_flight"] == 0 and counted["faults"]["slow"] == 4


def test_stats_reset_clears_counts(sandbox: RunningSandbox) -> None:
    read = api_reader(sandbox, "workbooks")
    read()
    assert stats(sandbox.workbooks_url)["total"] == 1
    reset = requests.post(f"{sandbox.workbooks_url}/_sandbox/stats/reset", timeout=HTTP_TIMEOUT).json()
    assert reset["total"] == 0 and reset["requests"] == {} and reset["peak_in_flight"] == 0


def test_fault_rules_are_listed_added_and_cleared(sandbox: RunningSandbox) -> None:
    faults_url = f"{sandbox.outreach_url}/_sandbox/faults"
    read = api_reader(sandbox, "outreach")
    assert requests.get(faults_url, timeout=HTTP_TIMEOUT).json() == {"rules": []}
    add_faults(sandbox.outreach_url, {"spec": "rate_limit:count=2"})
    added = add_faults(sandbox.outreach_url, [{"kind": "slow", "delay_ms": 50, "path": "/api/v2/accounts"}])
    assert added.status_code == 200
    listed = requests.get(faults_url, timeout=HTTP_TIMEOUT).json()["rules"]
    assert [(r["kind"], r["count"], r["delay_ms"], r["path"]) for r in listed] == [
        ("rate_limit", 2, 0, ""),
        ("slow", None, 50, "/api/v2/accounts"),
    ]
    # The listing shows a burst being used up.
    assert read().status_code == 429
    assert requests.get(faults_url, timeout=HTTP_TIMEOUT).json()["rules"][0]["count"] == 1
    cleared = requests.delete(faults_url, timeout=HTTP_TIMEOUT)
    assert cleared.status_code == 200 and cleared.json() == {"rules": []}
    assert read().status_code == 200


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"spec": "explode:rate=1"}, "kind"),
        ({"spec": "status:status=200"}, "status"),
        ([{"kind": "slow", "delay_ms": -5}], "delay_ms"),
        ({"kind": "status", "colour": "red"}, "colour"),
        (None, "FaultRule"),
    ],
)
def test_invalid_fault_rules_get_400_naming_the_problem(
    sandbox: RunningSandbox, body: object, named: str
) -> None:
    answer = add_faults(sandbox.workbooks_url, body)
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("invalid fault rules")
    assert named in answer.json()["error"]
    assert requests.get(f"{sandbox.workbooks_url}/_sandbox/faults", timeout=HTTP_TIMEOUT).json() == {
        "rules": []
    }


def test_fault_body_that_is_not_json_gets_400(sandbox: RunningSandbox) -> None:
    answer = requests.post(f"{sandbox.outreach_url}/_sandbox/faults", data=b"{not json", timeout=HTTP_TIMEOUT)
    assert answer.status_code == 400 and "invalid fault rules" in answer.json()["error"]
