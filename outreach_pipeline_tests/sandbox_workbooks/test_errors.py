"""Malformed requests get a clear JSON error, never a 500 with a traceback."""

from __future__ import annotations

import pytest
import requests


def test_unknown_controller_is_404(shared_sandbox):
    sandbox = shared_sandbox
    response = sandbox.client.get("crm/unicorns")
    assert response.status_code == 404
    assert response.json()["success"] is False and "crm/unicorns" in response.json()["flash"]


@pytest.mark.parametrize(
    ("params", "filters", "expected"),
    [
        ({}, [("shoe_size", "eq", "9")], "unknown field 'shoe_size'"),
        ({}, [("name", "sounds_like", "x")], "unknown filter type 'sounds_like'"),
        ({}, [("created_at", "gt", "yesterday-ish")], "filter 1 (created_at gt 'yesterday-ish')"),
        ({}, [("id", "between", "[1")], "JSON array"),
        ({"_fm": "1 AND (2"}, [("name", "eq", "a"), ("name", "eq", "b")], "missing ')'"),
        ({"_fm": "1 AND 3"}, [("name", "eq", "a"), ("name", "eq", "b")], "refers to filter 3"),
        ({"_fm": "1 NAND 2"}, [("name", "eq", "a"), ("name", "eq", "b")], "unexpected 'NAND'"),
        ({"_fm": "1; drop table people"}, [("name", "eq", "a")], "unexpected character ';'"),
        ({"_start": "first"}, [], "_start must be an integer"),
        ({"_sort": "shoe_size"}, [], "unknown field 'shoe_size'"),
        ({"_sort": "name", "_dir": "SIDEWAYS"}, [], "must be ASC or DESC"),
        ({"_select_columns[]": ["name", "nope"]}, [], "nope"),
        ({"_filter_json": '[["name"'}, [], "_filter_json is not valid JSON"),
    ],
)
def test_bad_read_parameters_are_406_naming_the_problem(shared_sandbox, params, filters, expected):
    sandbox = shared_sandbox
    response = sandbox.client.get("crm/people", params, filters)
    assert response.status_code == 406, response.text
    assert expected in response.json()["flash"]
    assert "Traceback" not in response.text


def test_uneven_filter_arrays(shared_sandbox):
    sandbox = shared_sandbox
    response = requests.post(
        f"{sandbox.url}/crm/people.api",
        data=[("api_key", "sandbox-api-key"), ("_method", "GET"), ("_ff[]", "name"), ("_ft[]", "blank")],
    )
    assert response.status_code == 406 and "value-less types still need an _fc[]" in response.json()["flash"]


def test_unsupported_method_and_bad_flag(shared_sandbox):
    sandbox = shared_sandbox
    response = requests.post(
        f"{sandbox.url}/crm/people.api", data={"api_key": "sandbox-api-key", "_method": "PATCH"}
    )
    assert response.status_code == 405
    response = sandbox.client.get("crm/people", {"__skip_total_rows": "perhaps"})
    assert response.status_code == 406 and "__skip_total_rows" in response.json()["flash"]
