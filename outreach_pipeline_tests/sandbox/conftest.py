"""Fixtures: both sandboxes started through `start_sandbox`, and small HTTP helpers speaking each wire format."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pytest
import requests

from outreach_pipeline.sandbox.credentials import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    SANDBOX_REFRESH_TOKEN,
)
from outreach_pipeline.sandbox.runtime import RunningSandbox, SandboxConfig, start_sandbox
from outreach_pipeline.sandbox.workbooks.app import SANDBOX_API_KEY

JSON_API = "application/vnd.api+json"
HTTP_TIMEOUT = 10
SMALL_SEED = {"prospects": 20, "workbooks_people": 10}


def small_config(**overrides: Any) -> SandboxConfig:
    """An in-memory, any-port sandbox with a small seed; `overrides` set e.g. `faults`."""
    return SandboxConfig(data_dir=None, outreach_port=0, workbooks_port=0, **(SMALL_SEED | overrides))


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    with start_sandbox(small_config()) as running:
        yield running


def fetch_token(outreach_url: str, refresh_token: str = SANDBOX_REFRESH_TOKEN) -> dict[str, Any]:
    """A refresh-token grant, as the Outreach client sends it."""
    response = requests.post(
        f"{outreach_url}/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": SANDBOX_CLIENT_ID,
            "client_secret": SANDBOX_CLIENT_SECRET,
        },
        timeout=HTTP_TIMEOUT,
    )
    assert response.status_code == 200, response.text
    return response.json()


def outreach_session(outreach_url: str) -> requests.Session:
    """A session carrying a fresh bearer token."""
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {fetch_token(outreach_url)['access_token']}"
    return session


def prospect_document(first_name: str, last_name: str) -> dict[str, Any]:
    return {"data": {"type": "prospect", "attributes": {"firstName": first_name, "lastName": last_name}}}


def create_prospect(session: requests.Session, outreach_url: str, first_name: str) -> requests.Response:
    return session.post(
        f"{outreach_url}/api/v2/prospects",
        data=json.dumps(prospect_document(first_name, "Fault")),
        headers={"Content-Type": JSON_API},
        timeout=HTTP_TIMEOUT,
    )


def prospects_named(session: requests.Session, outreach_url: str, first_name: str) -> list[dict[str, Any]]:
    response = session.get(
        f"{outreach_url}/api/v2/prospects", params={"filter[firstName]": first_name}, timeout=HTTP_TIMEOUT
    )
    assert response.status_code == 200, response.text
    return response.json()["data"]


def workbooks_call(
    workbooks_url: str,
    controller: str,
    method: str,
    pairs: Sequence[tuple[str, str]] = (),
    session: requests.Session | None = None,
) -> requests.Response:
    """POST a form body with `_method`, `client=api` and the api key, as the official bindings do."""
    body = [("client", "api"), ("_method", method), ("api_key", SANDBOX_API_KEY), *pairs]
    return (session or requests).post(f"{workbooks_url}/{controller}.api", data=body, timeout=HTTP_TIMEOUT)


def workbooks_create_pairs(objects: Sequence[Mapping[str, str]]) -> list[tuple[str, str]]:
    """Square arrays creating `objects` (all with the same keys), with the working-set filter for creates."""
    pairs = [("_ff[]", "id"), ("_ft[]", "eq"), ("_fc[]", "0")]
    for obj in objects:
        pairs += [("__method[]", "POST"), ("id[]", "0"), ("lock_version[]", "0")]
        pairs += [(f"{key}[]", value) for key, value in obj.items()]
    return pairs


def workbooks_people_named(workbooks_url: str, last_name: str) -> list[dict[str, Any]]:
    filters = [("_ff[]", "person_last_name"), ("_ft[]", "eq"), ("_fc[]", last_name)]
    response = workbooks_call(workbooks_url, "crm/people", "GET", filters)
    assert response.status_code == 200, response.text
    return response.json()["data"]


def add_faults(base_url: str, rules: Any) -> requests.Response:
    """`POST /_sandbox/faults` with a JSON list of rules or `{"spec": "..."}`."""
    return requests.post(f"{base_url}/_sandbox/faults", json=rules, timeout=HTTP_TIMEOUT)


def stats(base_url: str) -> dict[str, Any]:
    response = requests.get(f"{base_url}/_sandbox/stats", timeout=HTTP_TIMEOUT)
    assert response.status_code == 200, response.text
    return response.json()


APIS = ("outreach", "workbooks")


def base_url(running: RunningSandbox, api: str) -> str:
    return running.outreach_url if api == "outreach" else running.workbooks_url


def api_reader(running: RunningSandbox, api: str) -> Callable[[], requests.Response]:
    """A zero-argument call that reads a small page of people from `api` (Outreach with a fresh token)."""
    if api == "outreach":
        session = outreach_session(running.outreach_url)
        url = f"{running.outreach_url}/api/v2/prospects"
        return lambda: session.get(url, params={"page[size]": "5"}, timeout=HTTP_TIMEOUT)
    return lambda: workbooks_call(
        running.workbooks_url, "crm/people", "GET", [("_start", "0"), ("_limit", "5")]
    )
