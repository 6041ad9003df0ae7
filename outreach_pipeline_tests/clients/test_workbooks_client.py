"""WorkbooksClient protocol tests over real HTTP against a small app emitting Workbooks' wire format."""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import UTC, date, datetime
from decimal import Decimal
from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from outreach_pipeline.clients.formats import (
    format_wb_currency,
    format_wb_date,
    format_wb_datetime,
    parse_wb_currency,
    parse_wb_date,
    parse_wb_datetime,
)
from outreach_pipeline.clients.http import AuthenticationError, WriteOutcomeUnknown
from outreach_pipeline.clients.workbooks import (
    STALE_LOCK_MESSAGE,
    Filter,
    WorkbooksClient,
    WriteOp,
    filter_params,
    parse_batch_reply,
)
from outreach_pipeline.clients.workbooks_wire import encode_form
from outreach_pipeline_tests.clients.conftest import dropping_server, form_pairs


def arrays(pairs: list[tuple[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = defaultdict(list)
    for key, value in pairs:
        grouped[key].append(value)
    return grouped


class FakeWorkbooks:
    """A people controller with lock_version, api-key and session auth; records every request."""

    def __init__(self) -> None:
        self.people: dict[int, dict] = {
            n: {"id": n, "lock_version": 1, "name": f"Person {n}", "main_location[email]": f"p{n}@x.io"}
            for n in range(1, 251)
        }
        self.next_id = 1000
        self.requests: list[tuple[str, dict, list[tuple[str, str]]]] = []
        self.sessions: set[str] = set()
        self.logins = 0
        self.fail_next_put: int | None = None

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/login.api", self.login, methods=["POST"]),
            Route("/crm/people.api", self.people_api, methods=["POST"]),
        ])

    async def login(self, request: Request) -> Response:
        form = dict(await form_pairs(request))
        if form.get("client") != "api" or form.get("api_version") != "1":
            return JSONResponse({"success": False, "failure_reason": "bad_request"}, 406)
        if (form.get("username"), form.get("password")) != ("ada", "pw"):
            return JSONResponse({"success": False, "failure_reason": "unrecognised_name_or_password"}, 401)
        self.logins += 1
        session = f"sess{self.logins}"
        self.sessions.add(session)
        response = JSONResponse({"success": True, "session_id": session, "authenticity_token": f"tok-{session}"})
        response.set_cookie("Workbooks-Session", session)
        return response

    def _authorised(self, request: Request, form: dict) -> Response | None:
        if form.get("api_key") == "k":
            return None
        session = request.cookies.get("Workbooks-Session")
        if session not in self.sessions:
            return JSONResponse({"success": False, "failure_reason": "session_expired"}, 401)
        if form["_method"] == "PUT" and form.get("_authenticity_token") != f"tok-{session}":
            return JSONResponse({"success": False, "failure_reason": "bad_authenticity_token"}, 403)
        return None

    async def people_api(self, request: Request) -> Response:
        pairs = await form_pairs(request)
        self.requests.append((request.headers.get("content-type", ""), dict(request.query_params), pairs))
        form = dict(pairs)
        if form.get("client") != "api" or form.get("_api_version") != "1" or "_dc" not in request.query_params:
            return JSONResponse({"success": False, "failure_reason": "bad_request"}, 406)
        if (denied := self._authorised(request, form)) is not None:
            return denied
        if form["_method"] == "GET":
            return self._read(arrays(pairs))
        if self.fail_next_put is not None:
            status, self.fail_next_put = self.fail_next_put, None
            return JSONResponse({"success": False}, status)
        return self._write(arrays(pairs))

    def _read(self, params: dict[str, list[str]]) -> Response:
        rows = sorted(self.people.values(), key=lambda row: row["id"])
        for field, op, criteria in zip(params["_ff[]"], params["_ft[]"], params["_fc[]"], strict=True):
            assert op == "eq"
            wanted = {value.replace("\\,", ",") for value in re.split(r"(?<!\\),", criteria)}
            rows = [row for row in rows if str(row.get(field)) in wanted]
        start, limit = int(params["_start"][0]), int(params["_limit"][0])
        return JSONResponse({"success": True, "total": 0, "data": rows[start : start + limit]})

    def _write(self, params: dict[str, list[str]]) -> Response:
        methods = params.pop("__method[]")
        ids, locks = params.pop("id[]"), params.pop("lock_version[]")
        fields = {key[:-2]: values for key, values in params.items() if key.endswith("[]") and not key.startswith("_")}
        assert all(len(values) == len(methods) for values in fields.values()), "not a square array"
        objects, infos = [], []
        for index, method in enumerate(methods):
            values = {key: column[index] for key, column in fields.items() if column[index] != ":no_value:"}
            values = {key: (None if value == ":null_value:" else value) for key, value in values.items()}
            if method == "POST":
                self.next_id += 1
                row = {"id": self.next_id, "lock_version": 0, **values}
                self.people[row["id"]] = row
            else:
                row = self.people[int(ids[index])]
                if int(locks[index]) != row["lock_version"]:
                    objects.append({})
                    infos.append({"success": False, "errors": {"lock_version": STALE_LOCK_MESSAGE}, "warnings": {}})
                    continue
                if method == "DELETE":
                    del self.people[row["id"]]
                    objects.append({"id": row["id"], "lock_version": row["lock_version"]})
                    infos.append({"success": True, "errors": {}, "warnings": {}})
                    continue
                if values.get("name") == "":
                    objects.append({})
                    infos.append({"success": False, "errors": {"name": ["can't be blank"]}, "warnings": {}})
                    continue
                row.update(values)
                row["lock_version"] += 1
            objects.append(dict(row))
            infos.append({"success": True, "errors": {}, "warnings": {}})
        return JSONResponse({"success": True, "affected_objects": objects, "affected_object_information": infos,
                             "flash": "Updated successfully", "updates": {}})


def test_reads_use_the_binding_wire_format_and_page_to_a_short_page(serve, clock, fast_retry):
    fake = FakeWorkbooks()
    client = WorkbooksClient(serve(fake.app()), api_key="k", retry=fast_retry, sleep=clock.sleep, clock=clock)
    rows = list(client.iter_records("crm/people", select_columns=["id", "main_location[email]"], page_size=100))
    assert [row["id"] for row in rows] == list(range(1, 251))
    assert len(fake.requests) == 3
    content_type, query, pairs = fake.requests[0]
    form = arrays(pairs)
    assert content_type.startswith("application/x-www-form-urlencoded")
    assert query["_dc"] == str(int(clock.now * 1000))
    assert form["_method"] == ["GET"] and form["client"] == ["api"] and form["_api_version"] == ["1"]
    assert form["_start"] == ["0"] and form["_limit"] == ["100"] and form["__skip_total_rows"] == ["true"]
    assert form["_select_columns[]"] == ["id", "main_location[email]"]
    assert arrays(fake.requests[2][2])["_start"] == ["200"]
    assert client.stats.requests[("GET", "/crm/people.api")] == 3


def test_lookup_batches_100_values_per_in_filter(serve, clock, fast_retry):
    fake = FakeWorkbooks()
    fake.people[7]["name"] = "Smith, Jane"
    client = WorkbooksClient(serve(fake.app()), api_key="k", retry=fast_retry, sleep=clock.sleep, clock=clock)
    found = client.lookup("crm/people", "id", range(1, 231))
    # Batches of 100/100/30, each asking for one row more than its values: no empty proof pages.
    assert len(found) == 230 and len(fake.requests) == 3
    assert arrays(fake.requests[0][2])["_fc[]"] == [",".join(str(n) for n in range(1, 101))]
    assert [row["id"] for row in client.lookup("crm/people", "name", ["Smith, Jane", "Person 8"])] == [7, 8]


def test_filter_builder_escapes_and_validates():
    params = filter_params([Filter(field="name", op="eq", value=["a,b", "c"]),
                            Filter(field="cf_person_sync_to_outreach", op="true"),
                            Filter(field="updated_at", op="ge", value=datetime(2009, 5, 15, 14, 36, 54, tzinfo=UTC))],
                           "(1 OR 2) AND 3")
    assert params == [("_ff[]", "name"), ("_ft[]", "eq"), ("_fc[]", "a\\,b,c"),
                      ("_ff[]", "cf_person_sync_to_outreach"), ("_ft[]", "true"), ("_fc[]", ""),
                      ("_ff[]", "updated_at"), ("_ft[]", "ge"), ("_fc[]", "Fri May 15 14:36:54 UTC 2009"),
                      ("_fm", "(1 OR 2) AND 3")]
    with pytest.raises(ValidationError, match="op"):
        Filter(field="name", op="like", value="x")
    with pytest.raises(ValidationError, match="'between' needs a"):
        Filter(field="id", op="between", value=5)
    with pytest.raises(ValueError, match=r"outside 1\.\.1"):
        filter_params([Filter(field="id", op="eq", value=1)], "1 OR 2")
    with pytest.raises(ValueError, match="invalid filter expression"):
        filter_params([Filter(field="id", op="eq", value=1)], "1; DROP")


def test_batch_write_square_arrays_outcomes_and_stale_lock(serve, clock, fast_retry):
    fake = FakeWorkbooks()
    client = WorkbooksClient(serve(fake.app()), api_key="k", retry=fast_retry, sleep=clock.sleep, clock=clock)
    ops = [
        WriteOp(action="create", fields={"name": "New One", "main_location": {"email": "n@x.io"}}),
        WriteOp(action="update", id=2, lock_version=1, fields={"person_job_title": None}),
        WriteOp(action="update", id=3, lock_version=0, fields={"name": "Late"}),  # stale
        WriteOp(action="update", id=4, lock_version=1, fields={"name": ""}),
        WriteOp(action="delete", id=5, lock_version=1),
    ]
    outcomes = client.write_batch("crm/people", ops)
    form = arrays(fake.requests[0][2])
    assert form["__method[]"] == ["POST", "PUT", "PUT", "PUT", "DELETE"]
    assert form["id[]"] == ["0", "2", "3", "4", "5"] and form["lock_version[]"] == ["0", "1", "0", "1", "1"]
    assert form["main_location[email][]"] == ["n@x.io", ":no_value:", ":no_value:", ":no_value:", ":no_value:"]
    assert form["person_job_title[]"] == [":no_value:", ":null_value:", ":no_value:", ":no_value:", ":no_value:"]
    assert form["_fc[]"] == ["0", "2", "3", "4", "5"] and form["_fm"] == ["or"]
    assert form["_per_object_transactions"] == ["true"]
    assert [outcome.ok for outcome in outcomes] == [True, True, False, False, True]
    assert outcomes[0].id == 1001 and outcomes[0].record["main_location[email]"] == "n@x.io"
    assert outcomes[1].lock_version == 2
    assert outcomes[2].stale_lock_version and outcomes[2].id == 3
    assert outcomes[3].errors == {"name": ["can't be blank"]} and not outcomes[3].stale_lock_version
    assert fake.people[2]["person_job_title"] is None and 5 not in fake.people


def test_large_batches_split_at_100_and_write_failure_is_outcome_unknown(serve, clock, fast_retry):
    fake = FakeWorkbooks()
    client = WorkbooksClient(serve(fake.app()), api_key="k", retry=fast_retry, sleep=clock.sleep, clock=clock)
    outcomes = client.write_batch("crm/people", [WriteOp(action="create", fields={"name": f"N{n}"}) for n in range(250)])
    assert [len(arrays(pairs)["__method[]"]) for _, _, pairs in fake.requests] == [100, 100, 50]
    assert [outcome.index for outcome in outcomes] == list(range(250)) and all(o.ok for o in outcomes)
    sent = len(fake.requests)
    fake.fail_next_put = 502
    with pytest.raises(WriteOutcomeUnknown, match=r"PUT /crm/people\.api") as caught:
        client.write_batch("crm/people", [WriteOp(action="create", fields={"name": "X"})])
    assert len(fake.requests) == sent + 1 and caught.value.completed == []


def test_dropped_connection_on_batch_write_is_not_resent(clock, fast_retry):
    with dropping_server() as (url, received):
        client = WorkbooksClient(url, api_key="k", retry=fast_retry, sleep=clock.sleep, clock=clock)
        with pytest.raises(WriteOutcomeUnknown):
            client.write_batch("crm/people", [WriteOp(action="create", fields={"name": "X"})])
        assert len(received) == 1 and b"api_key=k" in received[0]


def test_session_login_relogin_on_expiry_and_authenticity_token(serve, clock, fast_retry):
    fake = FakeWorkbooks()
    url = serve(fake.app())
    client = WorkbooksClient(url, username="ada", password="pw", retry=fast_retry, sleep=clock.sleep, clock=clock)
    assert len(list(client.iter_records("crm/people", [Filter(field="id", op="eq", value=[1, 2])]))) == 2
    fake.sessions.clear()  # the server forgets the session (idle timeout)
    outcome = client.write_batch("crm/people", [WriteOp(action="update", id=1, lock_version=1, fields={"name": "A"})])[0]
    assert outcome.ok and fake.logins == 2
    assert "pw" not in repr(client)
    with pytest.raises(AuthenticationError, match="unrecognised_name_or_password") as caught:
        WorkbooksClient(url, username="ada", password="wrong", retry=fast_retry).login()
    assert "wrong" not in str(caught.value)


@given(st.lists(st.tuples(st.text(max_size=12), st.text(max_size=30) | st.sampled_from([":no_value:", "0", "a b"]))))
def test_form_body_is_what_requests_would_send(pairs: list[tuple[str, str]]):
    # requests sends a list of str pairs as urlencode() of their UTF-8 bytes; the client's own encoder must agree.
    expected = urlencode([(key.encode(), value.encode()) for key, value in pairs])
    assert encode_form(pairs) == expected.encode("ascii")


def test_write_op_requires_identity_for_updates():
    with pytest.raises(ValidationError, match="needs both 'id' and 'lock_version'"):
        WriteOp(action="update", id=3)


def test_workbooks_formats_round_trip():
    assert format_wb_date(date(2009, 5, 22)) == "22 May 2009"
    assert format_wb_date(date(2009, 5, 2)) == " 2 May 2009"
    assert parse_wb_date(" 2 May 2009") == parse_wb_date("2 May 2009") == date(2009, 5, 2)
    moment = datetime(2009, 5, 15, 14, 36, 54, tzinfo=UTC)
    assert format_wb_datetime(moment) == "Fri May 15 14:36:54 UTC 2009"
    assert parse_wb_datetime("Fri May 15 14:36:54 UTC 2009") == moment
    assert format_wb_currency(100, "GBP") == "100 GBP 0"
    assert format_wb_currency(Decimal("12.50"), "EUR") == "12.5 EUR 0"
    assert parse_wb_currency("100 GBP 0").amount == Decimal(100)
    assert parse_wb_currency("12500000 GBP").code == "GBP"
    with pytest.raises(ValueError, match="naive"):
        format_wb_datetime(datetime(2009, 5, 15))
    with pytest.raises(ValueError, match="'32 Foo 2009'"):
        parse_wb_date("32 Foo 2009")
    with pytest.raises(ValueError, match="three upper-case"):
        format_wb_currency(1, "pounds")


def test_a_failure_reported_only_under_failures_is_read_for_that_object():
    ops = [WriteOp(action="update", id=5, lock_version=1, fields={"name": "A"}),
           WriteOp(action="update", id=6, lock_version=2, fields={"name": "B"})]
    reply = {
        "success": False,
        "affected_objects": [{"id": 5, "lock_version": 2}, {"id": 6, "lock_version": 2}],
        "affected_object_information": [{"success": True, "errors": {}}, {"success": False, "errors": {}}],
        "failures": {"[1]": [STALE_LOCK_MESSAGE]},
    }
    first, second = parse_batch_reply(reply, ops)
    assert first.ok and not first.stale_lock_version
    assert not second.ok and second.stale_lock_version  # reconciled by the loader, not reported as a refusal
    assert second.errors == {"base": [STALE_LOCK_MESSAGE]}
