"""OutreachClient protocol tests over real HTTP against a small app emitting Outreach's wire format."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from outreach_pipeline.clients.http import (
    AuthenticationError,
    MalformedResponse,
    RateBudgetExhausted,
    ServerError,
    ValidationFailed,
    WriteOutcomeUnknown,
    parse_retry_after,
)
from outreach_pipeline.clients.outreach import OutreachClient, OutreachRecord
from outreach_pipeline.clients.tokens import FileTokenStore
from outreach_pipeline.engine.extract import records_to_frame
from outreach_pipeline.sandbox.credentials import SANDBOX_OUTREACH_AUTH
from outreach_pipeline_tests.clients.conftest import dropping_server, form_pairs

JSON_API = "application/vnd.api+json"
WINDOW_START = datetime(2024, 1, 1, tzinfo=UTC)
WINDOW_END = datetime(2024, 1, 2, tzinfo=UTC)


def prospect(record_id: int, updated: str, **relationships) -> dict:
    return {
        "type": "prospect",
        "id": record_id,
        "attributes": {"firstName": f"P{record_id}", "emails": [f"p{record_id}@x.io"],
                       "createdAt": "2023-12-01T00:00:00.000Z", "updatedAt": updated},
        "relationships": relationships,
    }


class FakeOutreach:
    """Token endpoint with rotating refresh tokens, plus a prospects collection; records what it saw."""

    def __init__(self, token_file: str | None = None) -> None:
        self.token_file = token_file
        self.issued_refresh = "bootstrap-refresh"
        self.valid_access: set[str] = set()
        self.token_requests: list[dict] = []
        self.api_requests: list[Request] = []
        self.query_log: list[dict] = []
        self.bodies: list[dict] = []
        self.script: list[Response] = []  # responses to return first, before normal handling
        self.records = [prospect(i, f"2024-01-01T0{i}:00:00.000Z") for i in range(1, 6)]
        self.records.append(prospect(6, "2024-01-02T00:00:00.000Z"))  # exactly at the window end
        self.persisted_before_use = True

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/oauth/token", self.token, methods=["POST"]),
            Route("/api/v2/prospects", self.collection, methods=["GET", "POST"]),
            Route("/api/v2/prospects/{id:int}", self.one, methods=["GET", "PATCH", "DELETE"]),
        ])

    async def token(self, request: Request) -> Response:
        form = dict(await form_pairs(request))
        self.token_requests.append(form)
        if form.get("refresh_token") != self.issued_refresh or form.get("client_secret") != "s3cret-value":
            return JSONResponse({"error": "invalid_grant", "error_description": "bad refresh token"}, 400)
        number = len(self.token_requests)
        self.issued_refresh = f"refresh-{number}"
        access = f"access-{number}"
        self.valid_access.add(access)
        return JSONResponse({"access_token": access, "token_type": "bearer", "expires_in": 7200,
                             "refresh_token": self.issued_refresh, "scope": "prospects.all", "created_at": 0})

    def _authorised(self, request: Request) -> bool:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if self.token_file is not None:
            stored = json.loads(Path(self.token_file).read_text())["refresh_token"]
            self.persisted_before_use &= stored == self.issued_refresh
        return token in self.valid_access

    async def _gate(self, request: Request) -> Response | None:
        self.api_requests.append(request)
        self.query_log.append(dict(request.query_params))
        if not self._authorised(request):
            return JSONResponse({"errors": [{"id": "unauthorized", "title": "Unauthorized"}]}, 401)
        if self.script:
            return self.script.pop(0)
        return None

    async def collection(self, request: Request) -> Response:
        if (early := await self._gate(request)) is not None:
            return early
        if request.method == "POST":
            if request.headers.get("content-type") != JSON_API:
                return JSONResponse({"errors": [{"id": "unsupportedMediaType"}]}, 415)
            body = json.loads(await request.body())
            self.bodies.append(body)
            created = {**body["data"], "id": 99}
            created["attributes"] = {**created["attributes"], "createdAt": "2024-02-01T00:00:00.000Z",
                                     "updatedAt": "2024-02-01T00:00:00.000Z"}
            return JSONResponse({"data": created}, 201, media_type=JSON_API)
        query = request.query_params
        size = int(query.get("page[size]", "50"))
        after = int(query.get("page[after]", "0"))
        page = [r for r in self.records if r["id"] > after][:size]
        body: dict = {"data": page}
        if page and page[-1]["id"] < self.records[-1]["id"]:
            params = dict(query) | {"page[after]": str(page[-1]["id"])}
            next_url = str(request.url.replace_query_params(**params))
            body["links"] = {"next": next_url}
        return JSONResponse(body, media_type=JSON_API)

    async def one(self, request: Request) -> Response:
        if (early := await self._gate(request)) is not None:
            return early
        if request.method == "DELETE":
            return Response(status_code=204)
        return JSONResponse({"data": prospect(request.path_params["id"], "2024-01-01T00:00:00.000Z")})


def make_client(url: str, clock, fast_retry, store=None) -> OutreachClient:
    return OutreachClient(url, client_id="cid", client_secret=SecretStr("s3cret-value"),
                          redirect_uri="https://app.example/oauth/callback", refresh_token="bootstrap-refresh", token_store=store,
                          retry=fast_retry, sleep=clock.sleep, clock=clock)


def test_rotated_refresh_token_is_persisted_0600_before_use_and_preferred_on_restart(serve, clock, fast_retry, tmp_path):
    token_path = tmp_path / "state" / "outreach-token.json"
    fake = FakeOutreach(token_file=str(token_path))
    url = serve(fake.app())
    client = make_client(url, clock, fast_retry, FileTokenStore(token_path))

    client.get("prospects", 1)

    assert fake.persisted_before_use
    assert stat.S_IMODE(os.stat(token_path).st_mode) == 0o600
    assert FileTokenStore(token_path).load().refresh_token.get_secret_value() == "refresh-1"
    # A restart after the access token expired, with the stale configured token, must use the persisted one.
    clock.now += 7200
    restarted = make_client(url, clock, fast_retry, FileTokenStore(token_path))
    restarted.get("prospects", 1)
    assert len(fake.token_requests) == 2
    assert fake.token_requests[-1]["refresh_token"] == "refresh-1"
    assert fake.token_requests[-1]["redirect_uri"]
    assert "s3cret-value" not in repr(restarted) and "refresh-1" not in repr(FileTokenStore(token_path))


def test_access_token_refreshed_before_expiry_and_once_on_401(serve, clock, fast_retry):
    fake = FakeOutreach()
    client = make_client(serve(fake.app()), clock, fast_retry)
    client.get("prospects", 1)
    client.get("prospects", 1)
    assert len(fake.token_requests) == 1
    clock.now += 7200 - 200  # inside the refresh margin
    client.get("prospects", 1)
    assert len(fake.token_requests) == 2
    fake.valid_access.clear()  # server revokes: next call gets 401, refreshes once, resends
    client.get("prospects", 1)
    assert len(fake.token_requests) == 3
    assert len(fake.api_requests) == 5


def test_rejected_refresh_raises_auth_error_without_secrets(serve, clock, fast_retry):
    fake = FakeOutreach()
    fake.issued_refresh = "something-else"
    client = make_client(serve(fake.app()), clock, fast_retry)
    with pytest.raises(AuthenticationError) as caught:
        client.get("prospects", 1)
    message = str(caught.value)
    assert "re-authorised" in message and "invalid_grant" in message
    assert "s3cret-value" not in message and "bootstrap-refresh" not in message


def test_window_wire_params_paging_and_exclusive_end(serve, clock, fast_retry):
    fake = FakeOutreach()
    client = make_client(serve(fake.app()), clock, fast_retry)
    pages = list(client.iter_window("prospects", WINDOW_START, WINDOW_END, page_size=2))
    assert [len(page.records) for page in pages] == [2, 2, 1]
    ids = [record.id for page in pages for record in page.records]
    assert ids == [1, 2, 3, 4, 5]  # id 6 sits exactly on the exclusive end
    first = fake.query_log[0]
    assert first["filter[updatedAt]"] == "2024-01-01T00:00:00.000Z..2024-01-02T00:00:00.000Z"
    assert first["sort"] == "updatedAt" and first["count"] == "false" and first["page[size]"] == "2"
    assert fake.query_log[1]["page[after]"] == "2"


def test_502_halves_page_size_until_it_passes(serve, clock, fast_retry):
    fake = FakeOutreach()
    bad_gateway = JSONResponse({"errors": [{"id": "badGateway"}]}, 502)
    fake.script = [bad_gateway, bad_gateway]
    client = make_client(serve(fake.app()), clock, fast_retry)
    records = [r for page in client.iter_window("prospects", WINDOW_START, WINDOW_END) for r in page.records]
    assert len(records) == 5
    assert [q["page[size]"] for q in fake.query_log[:3]] == ["1000", "500", "250"]


def test_429_retry_after_seconds_and_5xx_backoff_are_bounded(serve, clock, fast_retry):
    fake = FakeOutreach()
    fake.script = [
        JSONResponse({"errors": [{"id": "rateLimitExceeded"}]}, 429, headers={"Retry-After": "7"}),
        JSONResponse({"errors": [{"id": "internal"}]}, 500),
    ]
    client = make_client(serve(fake.app()), clock, fast_retry)
    assert client.get("prospects", 3).id == 3
    assert clock.sleeps[0] == 7
    assert 0.25 <= clock.sleeps[1] <= 1.0  # jittered first backoff of base 0.5 x 2
    assert client.stats.rate_limited == 1 and client.stats.retries == 2
    assert client.stats.requests[("GET", "/api/v2/prospects/{id}")] == 3
    fake.script = [JSONResponse({"errors": [{"id": "internal"}]}, 503)] * 10
    with pytest.raises(ServerError) as caught:
        client.get("prospects", 3)
    assert "status=503" in str(caught.value) and "GET /api/v2/prospects/3" in str(caught.value)


def test_two_value_remaining_waits_for_reset_instead_of_429(serve, clock, fast_retry):
    fake = FakeOutreach()
    reset_at = int(clock.now) + 30
    fake.script = [JSONResponse({"data": prospect(1, "2024-01-01T00:00:00.000Z")},
                                headers={"X-RateLimit-Remaining": "0, 19988", "X-RateLimit-Reset": str(reset_at)})]
    client = make_client(serve(fake.app()), clock, fast_retry)
    client.get("prospects", 1)
    assert clock.sleeps == []
    client.get("prospects", 2)
    assert clock.sleeps == [30]
    assert client.stats.waits == 1 and client.stats.rate_limited == 0


def test_spent_budget_resetting_beyond_the_wait_limit_raises_before_sending(serve, clock, fast_retry):
    fake = FakeOutreach()
    reset_at = int(clock.now) + fast_retry.max_rate_limit_wait + 1
    fake.script = [JSONResponse({"data": prospect(1, "2024-01-01T00:00:00.000Z")},
                                headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset_at)})]
    client = make_client(serve(fake.app()), clock, fast_retry)
    client.get("prospects", 1)
    with pytest.raises(RateBudgetExhausted) as caught:
        list(client.iter_records("prospects"))
    assert caught.value.reset_at == datetime.fromtimestamp(reset_at, UTC)
    assert caught.value.path == "/api/v2/prospects" and "s3cret" not in str(caught.value)
    assert clock.sleeps == [] and len(fake.api_requests) == 1  # no sleeping, and no request burned on a 429


def test_429_whose_retry_after_is_beyond_the_wait_limit_raises_at_once_even_on_a_write(serve, clock, fast_retry):
    fake = FakeOutreach()
    far = fast_retry.max_rate_limit_wait + 1
    limited = JSONResponse({"errors": [{"id": "rateLimitExceeded"}]}, 429, headers={"Retry-After": str(int(far))})
    fake.script = [limited]
    client = make_client(serve(fake.app()), clock, fast_retry)
    with pytest.raises(RateBudgetExhausted) as caught:
        client.get("prospects", 1)
    assert caught.value.status == 429 and caught.value.reset_at == datetime.fromtimestamp(clock.now + far, UTC)
    fake.script = [limited]
    with pytest.raises(RateBudgetExhausted):
        client.create("prospects", {"firstName": "Ada"})
    assert clock.sleeps == [] and len(fake.api_requests) == 2 and fake.bodies == []


def test_malformed_body_is_retried_then_reported(serve, clock, fast_retry):
    fake = FakeOutreach()
    fake.script = [Response('{"data": [', media_type=JSON_API)]
    client = make_client(serve(fake.app()), clock, fast_retry)
    assert len(list(client.iter_records("prospects"))) == 6
    fake.script = [JSONResponse({"meta": {}})] * 5
    with pytest.raises(MalformedResponse, match=r"GET /api/v2/prospects.*'data'"):
        list(client.iter_records("prospects"))


def test_write_sends_json_api_and_never_retries_5xx(serve, clock, fast_retry):
    fake = FakeOutreach()
    client = make_client(serve(fake.app()), clock, fast_retry)
    created = client.create("prospects", {"firstName": "Ada"}, {"account": 5, "owner": 2, "stage": None})
    assert created.id == 99
    sent = fake.bodies[0]["data"]
    assert sent["type"] == "prospect"
    assert sent["relationships"]["account"] == {"data": {"type": "account", "id": 5}}
    assert sent["relationships"]["owner"] == {"data": {"type": "user", "id": 2}}
    assert sent["relationships"]["stage"] == {"data": None}
    before = len(fake.api_requests)
    fake.script = [JSONResponse({"errors": [{"id": "internal"}]}, 500)]
    with pytest.raises(WriteOutcomeUnknown):
        client.create("prospects", {"firstName": "Bob"})
    assert len(fake.api_requests) == before + 1
    fake.script = [JSONResponse({"errors": [{"id": "rateLimitExceeded"}]}, 429, headers={"Retry-After": "1"})]
    assert client.create("prospects", {"firstName": "Cy"}).id == 99  # 429 = rejected before work: retried
    fake.script = [JSONResponse({"errors": [{"id": "validationError", "detail": "Contacts email hash has already been taken.",
                                             "source": {"pointer": "/data"}}]}, 422)]
    with pytest.raises(ValidationFailed, match="email hash has already been taken"):
        client.create("prospects", {"emails": ["a@b.c"]})
    client.delete("prospects", 4)


def test_dropped_connection_on_write_is_outcome_unknown_but_read_is_retried(clock, fast_retry):
    with dropping_server() as (url, received):
        client = OutreachClient(url, **SANDBOX_OUTREACH_AUTH, retry=fast_retry, sleep=clock.sleep, clock=clock)
        client._access_token = SecretStr("pre-seeded")  # skip the token endpoint: this server never replies
        client._access_expires_at = clock.now + 7200
        with pytest.raises(WriteOutcomeUnknown, match="POST /api/v2/prospects"):
            client.create("prospects", {"firstName": "Ada"})
        assert len(received) == 1
        with pytest.raises(Exception, match="no usable reply after 4 attempt"):
            client.get("prospects", 1)
        assert len(received) == 5


def test_relationship_shapes_and_frame_contract():
    record = OutreachRecord.from_resource({
        "type": "prospect", "id": "7",
        "attributes": {"emails": ["a@b.c"], "createdAt": "2024-01-01T00:00:00.000Z", "updatedAt": "2024-01-03T10:00:00.000Z"},
        "relationships": {
            "account": {"data": {"type": "account", "id": 3}},
            "stage": {"data": None},
            "opportunities": {"data": [{"type": "opportunity", "id": 1}, {"type": "opportunity", "id": 2}],
                              "links": {"related": "x"}, "meta": {"count": 2}},
            "mailings": {"links": {"related": "https://api.outreach.io/api/v2/mailings?filter[prospect][id]=7"}},
            "sequenceStates": {"meta": {"count": 0}},
        },
    })
    assert record.relationships == {"account": 3, "stage": None, "opportunities": [1, 2]}
    assert record.relationship_types == {"account": "account"}
    other = record.model_copy(update={"id": 8, "relationships": {"account": None}})
    frame = records_to_frame([record, other])
    assert list(frame.columns[:3]) == ["id", "createdAt", "updatedAt"]
    assert str(frame["updatedAt"].dt.tz) == "UTC"
    assert frame["accountId"].dtype == "Int64" and pd.isna(frame["accountId"].iloc[1])
    assert frame["stageId"].isna().all() and "opportunitiesId" not in frame
    assert frame["emails"].iloc[0] == ["a@b.c"]
    empty = records_to_frame([])
    assert list(empty.columns) == ["id", "createdAt", "updatedAt"] and len(empty) == 0
    with pytest.raises(ValueError, match="prospect 1: field 'updatedAt'"):
        OutreachRecord.from_resource({"type": "prospect", "id": 1, "attributes": {"updatedAt": "yesterday"}})


def test_parse_retry_after_forms():
    now = datetime(2024, 1, 1, 12, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after("12", now=now) == 12
    assert parse_retry_after("Mon, 01 Jan 2024 12:00:30 GMT", now=now) == 30
    assert parse_retry_after("2024-01-01T12:01:00", now=now) == 60
    assert parse_retry_after("2024-01-01T11:00:00Z", now=now) == 0
    assert parse_retry_after("soon", now=now) is None and parse_retry_after(None, now=now) is None


def test_window_rejects_naive_or_empty_bounds():
    client = OutreachClient("http://127.0.0.1:9", **SANDBOX_OUTREACH_AUTH)
    with pytest.raises(ValueError, match="timezone-aware"):
        next(client.iter_window("prospects", datetime(2024, 1, 1), datetime(2024, 1, 2)))
    with pytest.raises(ValueError, match="empty window"):
        next(client.iter_window("prospects", WINDOW_END, WINDOW_END - timedelta(seconds=1)))
