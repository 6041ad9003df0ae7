"""Reads: every filter operator, `_fm` expressions, paging, sort, column selection, deleted rows."""

from __future__ import annotations

import json
from datetime import date

import pytest

PEOPLE = [
            {"person_first_name": "Ann", "person_last_name": "Lee", "person_job_title": "CEO",
             "main_location[email]": "ann@x.com", "no_email_soliciting": True},
            {"person_first_name": "Bob", "person_last_name": "Ray", "person_job_title": "CEO",
             "main_location[email]": "bob@y.com"},
            {"person_first_name": "Amy", "person_last_name": "Poe", "person_job_title": "CTO",
             "main_location[email]": "amy@x.com"},
            {"person_first_name": "Zoë", "person_last_name": "Müller", "person_job_title": "Engineer"},
]  # fmt: skip
OPPORTUNITIES = [
            {"description": "Alpha", "amount": "100 GBP 0", "predicted_close_date": date(2024, 3, 15),
             "probability": 10, "opportunity_stage": "Won"},
            {"description": "Beta, Inc", "amount": "2500 GBP 0", "predicted_close_date": date(2024, 3, 5),
             "probability": 50},
            {"description": "Gamma", "predicted_close_date": date(2024, 3, 20), "probability": 90,
             "opportunity_stage": "Lost"},
]  # fmt: skip


def _seed(sandbox):
    sandbox.store.bulk_insert("crm/people", PEOPLE)
    sandbox.store.bulk_insert("crm/opportunities", OPPORTUNITIES)
    return sandbox


@pytest.fixture(scope="module")
def dataset(shared_sandbox):
    """Read-only tests share one seeded sandbox."""
    return _seed(shared_sandbox)


@pytest.fixture
def people(dataset):
    return dataset


opportunities = people


@pytest.fixture
def own_people(sandbox):
    """A private copy for tests that change records."""
    return _seed(sandbox)


OPPORTUNITY_CASES = [
    ("description", "eq", "Alpha", [1]),
    ("description", "eq", "alpha,Gamma", [1, 3]),
    ("description", "eq", "Beta\\, Inc", [2]),
    ("description", "ne", "Alpha", [2, 3]),
    ("probability", "gt", "10", [2, 3]),
    ("probability", "ge", "50", [2, 3]),
    ("probability", "lt", "50", [1]),
    ("probability", "le", "50", [1, 2]),
    ("description", "bg", "Al", [1]),
    ("description", "nbg", "Al", [2, 3]),
    ("description", "ct", "amm", [3]),
    ("description", "nct", "amm", [1, 2]),
    ("opportunity_stage", "blank", "", [2]),
    ("opportunity_stage", "not_blank", "", [1, 3]),
    ("predicted_close_date", "today", "", [1]),
    ("predicted_close_date", "ge_today", "", [1, 3]),
    ("predicted_close_date", "gt_today", "", [3]),
    ("predicted_close_date", "le_today", "", [1, 2]),
    ("predicted_close_date", "lt_today", "", [2]),
    ("probability", "between", "[10,50]", [1, 2]),
    ("probability", "not_between", "[10,50]", [3]),
    ("predicted_close_date", "between", '["2024-03-01","15 Mar 2024"]', [1, 2]),
    ("predicted_close_date", "gt", "10 Mar 2024", [1, 3]),
    ("amount", "gt", "500 GBP 0", [2]),
    ("amount", "le", "100", [1]),
    ("updated_at", "today", "", [1, 2, 3]),
    ("created_at", "lt", "2024-03-15T11:00:00Z", []),
]


@pytest.mark.parametrize(("field", "operator", "criteria", "expected"), OPPORTUNITY_CASES)
def test_filter_operators(opportunities, field, operator, criteria, expected):
    assert opportunities.ids("crm/opportunities", [(field, operator, criteria)]) == expected


@pytest.mark.parametrize(
    ("operator", "criteria", "expected"),
    [
        ("true", "", [1]),
        ("false", "", [2, 3, 4]),
        ("eq", "1", [1]),
        ("eq", "0", [2, 3, 4]),
        ("ne", "1", [2, 3, 4]),
    ],
)
def test_boolean_filters(people, operator, criteria, expected):
    assert people.ids("crm/people", [("no_email_soliciting", operator, criteria)]) == expected


def test_email_lookup_is_case_insensitive_and_takes_lists(people):
    assert people.ids("crm/people", [("main_location[email]", "eq", "ANN@X.COM,amy@x.com")]) == [1, 3]


FM_FILTERS = [("name", "bg", "A"), ("person_job_title", "eq", "CEO"), ("main_location[email]", "ct", "x.com")]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 AND 2", [1]),
        ("and", [1]),
        ("or", [1, 2, 3]),
        ("1 or 2", [1, 2, 3]),
        ("NOT 1", [2, 4]),
        ("!1", [2, 4]),
        ("1 XOR 2", [2, 3]),
        ("(1 OR 2) AND NOT 3", [2]),
        ("NOT (1 OR 3)", [2, 4]),
        ("NOT NOT 3", [1, 3]),
        ("2 OR 1 AND 3", [1, 2, 3]),
    ],
)
def test_filter_expressions(people, expression, expected):
    assert people.ids("crm/people", FM_FILTERS, _fm=expression) == expected


def test_filter_json(people):
    filters = json.dumps([["person_job_title", "eq", "CEO"], ["main_location[email]", "ct", "y.com"]])
    assert people.ids("crm/people", _filter_json=filters) == [2]


def test_paging_and_sorting(people):
    response = people.client.get("crm/people", {"_sort": "name", "_dir": "DESC", "_start": 1, "_limit": 2})
    body = response.json()
    assert [r["name"] for r in body["data"]] == ["Bob Ray", "Ann Lee"]
    assert body["total"] == 4 and body["success"] is True and body["flash"] == "" and body["updates"] == {}
    assert len(people.client.get("crm/people", {"_limit": 1}).json()["data"]) == 4  # _limit needs _start
    multi = people.client.get(
        "crm/people", {"_sort[]": ["person_job_title", "name"], "_dir[]": ["ASC", "DESC"]}
    )
    assert [r["id"] for r in multi.json()["data"]] == [2, 1, 3, 4]
    skipped = people.client.get("crm/people", {"_start": 0, "_limit": 2, "__skip_total_rows": "true"}).json()
    assert skipped["total"] == 2


def test_select_columns_and_rendering(people, opportunities):
    body = people.client.get("crm/people", {"_select_columns[]": ["name", "main_location[email]"]}).json()
    record = body["data"][0]
    assert {k for k in record if not k.startswith("_can")} == {
        "id",
        "lock_version",
        "name",
        "main_location[email]",
        "type",
    }
    assert record["type"] == "Private::Crm::Person" and record["_can_read"] is True
    beta = opportunities.client.get("crm/opportunities", filters=[("id", "eq", 2)]).json()["data"][0]
    assert beta["predicted_close_date"] == " 5 Mar 2024"
    assert beta["amount"] == "2500 GBP 0"
    assert beta["created_at"] == "Fri Mar 15 12:00:00 UTC 2024"
    assert beta["name"] == "Beta, Inc"


def test_deleted_rows_hidden_unless_filtered_on(own_people):
    people = own_people
    person = people.client.get("crm/people", filters=[("id", "eq", 2)]).json()["data"][0]
    deleted = people.client.batch("crm/people", [{"id": 2, "lock_version": person["lock_version"]}], "delete")
    assert deleted.json()["affected_objects"] == [{"id": 2, "lock_version": 1}]
    assert people.ids("crm/people") == [1, 3, 4]
    assert people.ids("crm/people", [("is_deleted", "true", "")]) == [2]
    delta = [("is_deleted", "eq", "1"), ("is_deleted", "eq", "0"), ("updated_at", "ge", "2024-03-15")]
    assert people.ids("crm/people", delta, _fm="(1 OR 2) AND 3") == [1, 2, 3, 4]


def test_activities_union_of_tasks_and_meetings(sandbox):
    sandbox.create("activity/tasks", [{"name": "Call Ann", "activity_type": "Phone call"}])
    sandbox.create("activity/meetings", [{"name": "Demo", "location": "Zoom"}])
    activities = sandbox.client.get("activity/activities").json()["data"]
    assert [(a["name"], a["type"]) for a in activities] == [
        ("Call Ann", "Private::Activity::Task"),
        ("Demo", "Private::Activity::Meeting"),
    ]
    assert [t["name"] for t in sandbox.client.get("activity/tasks").json()["data"]] == ["Call Ann"]
    read_only = sandbox.client.batch("activity/activities", [{"name": "x"}], "create")
    assert read_only.status_code == 406 and "read-only" in read_only.json()["flash"]
