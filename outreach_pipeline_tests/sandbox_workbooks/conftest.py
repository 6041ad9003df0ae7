"""Fixtures: a fresh in-memory Workbooks sandbox served over real HTTP, and a binding-style client."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime

import pytest
import requests

from outreach_pipeline.sandbox.server import ServedApp, serve_in_thread
from outreach_pipeline.sandbox.workbooks import (
    SANDBOX_API_KEY,
    WorkbooksSettings,
    WorkbooksStore,
    create_workbooks_app,
)

FIXED_NOW = datetime(2024, 3, 15, 12, 0, 0, tzinfo=UTC)


class BindingClient:
    """Sends requests exactly as the official client_lib bindings do (python/workbooks_api.py).

    POST with a form-urlencoded body holding `_method`, `client=api`, `api_key`, `_api_version`,
    `_dc=<ms>` in the query string, and writes as square arrays ordered by sorted key, with
    `:no_value:` for keys an object lacks and `:null_value:` for None.
    """

    def __init__(self, base_url: str, api_key: str | None = SANDBOX_API_KEY) -> None:
        self.base_url = base_url
        self.api_key = api_key
        self.http = requests.Session()
        self.authenticity_token: str | None = None

    def _post(
        self, endpoint: str, method: str, params: Mapping[str, object], ordered: Sequence[str]
    ) -> requests.Response:
        body = dict(params)
        if self.api_key:
            body.setdefault("api_key", self.api_key)
            body.setdefault("_api_version", 1)
        body.setdefault("_method", method.upper())
        body.setdefault("client", "api")
        if method != "get" and self.authenticity_token:
            body.setdefault("_authenticity_token", self.authenticity_token)
        encoded = urllib.parse.urlencode(body)
        if ordered:
            encoded += "&" + "&".join(ordered)
        url = f"{self.base_url}/{endpoint}.api?_dc={int(time.time() * 1000)}"
        return self.http.post(
            url,
            data=encoded,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            allow_redirects=False,
        )

    def get(
        self, endpoint: str, params: Mapping[str, object] | None = None, filters: Sequence[Sequence] = ()
    ):
        ordered = []
        for field, operator, criteria in filters:
            ordered += [
                "_ff[]=" + urllib.parse.quote(field),
                "_ft[]=" + urllib.parse.quote(operator),
                "_fc[]=" + urllib.parse.quote(str(criteria)),
            ]
        scalar = {k: v for k, v in (params or {}).items() if not isinstance(v, list)}
        for key, values in (params or {}).items():
            if isinstance(values, list):
                ordered += [f"{urllib.parse.quote(key)}={urllib.parse.quote(str(v))}" for v in values]
        return self._post(endpoint, "get", scalar, ordered)

    def batch(
        self, endpoint: str, objs: Sequence[dict], method: str, params: Mapping[str, object] | None = None
    ):
        objs = [dict(obj) for obj in objs]
        filter_ids = []
        for obj in objs:
            if method == "create":
                obj.update(__method="POST", id=0, lock_version=0)
                filter_ids.append(0)
            else:
                obj["__method"] = "PUT" if method == "update" else "DELETE"
                filter_ids.append(obj["id"])
        filter_ids = list(dict.fromkeys(filter_ids))
        filters = ["_fm=or"] if len(filter_ids) > 1 else []
        for filter_id in filter_ids:
            filters += ["_ff[]=id", "_ft[]=eq", f"_fc[]={filter_id}"]
        return self._post(endpoint, "put", dict(params or {}), filters + full_square(objs))

    def login(self, **params: object) -> requests.Response:
        body = {"client": "api", "api_version": 1, "_strict_attribute_checking": True, **params}
        response = self.http.post(f"{self.base_url}/login.api", data=body, allow_redirects=False)
        if response.status_code == 200:
            self.authenticity_token = response.json()["authenticity_token"]
        return response


def unnest_key(key: str) -> str:
    if key.endswith("]]"):
        parts = key.split("[")
        return parts[0] + "[" + "][".join(parts[1:])
    return key


def full_square(objs: Sequence[dict]) -> list[str]:
    keys = sorted(set().union(*(obj.keys() for obj in objs)))
    encoded = []
    for obj in objs:
        for key in keys:
            value = obj.get(key, ":no_value:") if key in obj else ":no_value:"
            if value is None:
                value = ":null_value:"
            if isinstance(value, list):
                value = "[" + ",".join(map(str, value)) + "]"
            encoded.append(f"{urllib.parse.quote(unnest_key(key))}[]={urllib.parse.quote(str(value))}")
    return encoded


class Sandbox:
    """A served sandbox: its store, settings, base URL and a binding-style client."""

    def __init__(self, store: WorkbooksStore, settings: WorkbooksSettings, served: ServedApp) -> None:
        self.store = store
        self.settings = settings
        self.url = served.url
        self.client = BindingClient(served.url)

    def admin(self, route: str, body: Mapping[str, object] | None = None) -> requests.Response:
        return requests.post(f"{self.url}/_sandbox/workbooks/{route}", json=body or {})

    def create(self, endpoint: str, objs: Sequence[dict], **params: object) -> dict:
        response = self.client.batch(endpoint, objs, "create", params)
        assert response.status_code == 200, response.text
        return response.json()

    def ids(self, endpoint: str, filters: Sequence[Sequence] = (), **params: object) -> list[int]:
        response = self.client.get(endpoint, params, filters)
        assert response.status_code == 200, response.text
        return [record["id"] for record in response.json()["data"]]


def _serve_fresh_sandbox() -> Iterator[Sandbox]:
    store = WorkbooksStore("sqlite://", clock=lambda: FIXED_NOW)
    settings = WorkbooksSettings()
    with serve_in_thread(create_workbooks_app(store, settings)) as served:
        yield Sandbox(store, settings, served)
    store.dispose()


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """A fresh sandbox for a test that changes data or settings."""
    yield from _serve_fresh_sandbox()


@pytest.fixture(scope="module")
def shared_sandbox() -> Iterator[Sandbox]:
    """One sandbox per module, for read-only tests (saves a server start per test)."""
    yield from _serve_fresh_sandbox()
