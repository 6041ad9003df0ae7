"""Acceptance: failed records can be found (ledger, CLI, materialization table), count their streak, and back off.

Bad records (legacy data the API never validated) go in through the Outreach store in one window of 2026-11-01,
which the seed leaves empty. Three runs with retries on every run (backoff 0) fail them three times in a row:
the window's own run, then two quiet windows whose runs retry them. Then two quiet runs are compared on the
same sandbox: one with the default backoff (the failed records wait) and one retrying every run; the sandboxes'
request counters give what re-reading the failed records costs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from click.testing import CliRunner

from outreach_pipeline.cli import main
from outreach_pipeline.defs.resources import SyncSettings
from outreach_pipeline.engine.ledger import SyncLedger
from outreach_pipeline.mapping.personal import MASK
from outreach_pipeline_tests.pipeline.harness import (
    WINDOW,
    Pipeline,
    build_definitions,
    outreach_clock_at,
    outreach_records,
    pipeline,
    step_failures,
)

BAD_WINDOW = datetime(2026, 11, 1, 12, tzinfo=UTC)
TOO_LONG = 32_768
LOAD_NODES = {name: dg.AssetKey(["workbooks", name]).to_python_identifier()
              for name in ("organisations", "people", "opportunities")}
EXTRACT_PROSPECTS = dg.AssetKey(["outreach", "prospects"]).to_python_identifier()


@dataclass
class Runs:
    pipe: Pipeline
    ledger: SyncLedger
    ids: dict[str, int]
    failing: list[dg.ExecuteInProcessResult]  # the bad window's run, then two quiet runs retrying every run
    backed_off: dg.ExecuteInProcessResult  # a quiet run with the default backoff
    retrying: dg.ExecuteInProcessResult  # the same quiet run with retries on every run
    requests: dict[str, dict[str, int]]  # per quiet run: sandbox requests per API


def _plant(pipe: Pipeline) -> dict[str, int]:
    store = pipe.sandbox.outreach_store
    stage = outreach_records(pipe.sandbox, "opportunityStage")[0].id
    good_account = store.create("account", {"name": "Good Ltd"}, {}).id
    ids = {"good_account": good_account}
    for name, attributes in (
        ("long_title_1", {"title": "T" * TOO_LONG, "emails": ["long.one@bad.example"]}),
        ("long_title_2", {"title": "T" * TOO_LONG, "emails": ["long.two@bad.example"]}),
        ("shared_email_1", {"emails": ["shared@bad.example"]}),
        ("shared_email_2", {"emails": ["shared@bad.example"]}),
        ("good_prospect", {"emails": ["fine@good.example"]}),
    ):
        row = {"attributes": {"firstName": "Bad", "lastName": name, **attributes}, "relationships": {}}
        ids[name] = store.bulk_insert("prospect", [row])[0]
    ids["nameless_account"] = store.bulk_insert("account", [{"attributes": {"domain": "x.example"},
                                                            "relationships": {}}])[0]
    ids["bad_close_date"] = store.bulk_insert("opportunity", [{
        "attributes": {"name": "Bad date deal", "amount": 10, "currencyType": "GBP", "closeDate": "not a date"},
        "relationships": {"account": good_account, "opportunityStage": stage},
    }])[0]
    return ids


def _requests(pipe: Pipeline) -> dict[str, int]:
    return {"outreach": pipe.sandbox.outreach_middleware.stats.snapshot()["total"],
            "workbooks": pipe.sandbox.workbooks_middleware.stats.snapshot()["total"]}


def _run(pipe: Pipeline, window: datetime) -> tuple[dg.ExecuteInProcessResult, dict[str, int]]:
    before = _requests(pipe)
    result = pipe.run(window, raise_on_error=False)
    after = _requests(pipe)
    assert result.success, step_failures(result)
    return result, {api: after[api] - before[api] for api in after}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runs]:
    home: Path = tmp_path_factory.mktemp("failures_audit")
    with pipeline(home, prospects=5, accounts=2, opportunities=2, seed_days=1) as retry_every_run:
        with outreach_clock_at(retry_every_run.sandbox, BAD_WINDOW + timedelta(minutes=5)):
            ids = _plant(retry_every_run)
        failing = [_run(retry_every_run, BAD_WINDOW)[0]]
        # A good record edited in the second window, for the history's old -> new.
        with outreach_clock_at(retry_every_run.sandbox, BAD_WINDOW + WINDOW + timedelta(minutes=1)):
            retry_every_run.sandbox.outreach_store.update("prospect", ids["good_prospect"], {"title": "Head of Things"})
        failing += [_run(retry_every_run, BAD_WINDOW + WINDOW * hour)[0] for hour in (1, 2)]
        assert retry_every_run.ledger_url is not None
        # The same sandbox, instance and ledger with the default settings: retries back off.
        backing_off = Pipeline(
            sandbox=retry_every_run.sandbox, instance=retry_every_run.instance, ledger_url=retry_every_run.ledger_url,
            defs=build_definitions(retry_every_run.sandbox, home, retry_every_run.ledger_url, SyncSettings()),
        )
        backed_off, backed_off_requests = _run(backing_off, BAD_WINDOW + WINDOW * 3)
        retrying, retrying_requests = _run(retry_every_run, BAD_WINDOW + WINDOW * 4)
        ledger = retry_every_run.open_ledger()
        try:
            yield Runs(retry_every_run, ledger, ids, failing, backed_off, retrying,
                       {"backed_off": backed_off_requests, "retrying": retrying_requests})
        finally:
            ledger.dispose()


BAD = ("long_title_1", "long_title_2", "shared_email_1", "shared_email_2", "nameless_account", "bad_close_date")


def _table_rows(result: dg.ExecuteInProcessResult) -> tuple[list[dict[str, Any]], int]:
    """Every row of the run's load materializations' failed_records tables, and the count not shown."""
    rows: list[dict[str, Any]] = []
    not_shown = 0
    for node in LOAD_NODES.values():
        for materialization in result.asset_materializations_for_node(node):
            rows += [record.data for record in materialization.metadata["failed_records"].value.records]
            not_shown += materialization.metadata["failed_records_not_shown"].value
    return rows, not_shown


def _cli_failures(ledger_url: str, *args: str) -> list[dict[str, Any]]:
    outcome = CliRunner().invoke(main, ["failures", "--json", "--ledger-url", ledger_url, *args])
    assert outcome.exit_code == 0, outcome.output
    return [json.loads(line) for line in outcome.output.splitlines() if line.strip()]


def test_every_bad_record_fails_three_runs_in_a_row_with_field_and_kind(runs: Runs) -> None:
    failing = {(f.entity, f.outreach_id): f for f in runs.ledger.failures(run_id=runs.failing[-1].run_id)}
    expected = {("prospects", runs.ids[n]) for n in BAD[:4]} | {("accounts", runs.ids["nameless_account"]),
                                                              ("opportunities", runs.ids["bad_close_date"])}
    assert failing.keys() == expected
    assert {f.streak for f in failing.values()} == {3}
    long_title = failing[("prospects", runs.ids["long_title_1"])]
    assert (long_title.field, long_title.kind) == ("person_job_title", "too_long")
    assert failing[("prospects", runs.ids["shared_email_1"])].kind == "duplicate"
    first_run_at = {f.outreach_id: f.first_failed_at for f in runs.ledger.failures(run_id=runs.failing[0].run_id)}
    assert all(f.first_failed_at == first_run_at[f.outreach_id] for f in failing.values())
    # Failing now: the backed-off quiet run left them alone, the retrying one failed them a fourth time.
    assert {(f.entity, f.outreach_id): f.streak for f in runs.ledger.failures()} == dict.fromkeys(expected, 4)
    assert {(f.entity, f.outreach_id) for f in runs.ledger.stuck_records(4)} == expected
    assert runs.ledger.stuck_records(5) == []


def test_failures_cli_and_materialization_tables_list_every_failed_record_of_a_run(runs: Runs) -> None:
    assert runs.pipe.ledger_url is not None
    for number, result in enumerate(runs.failing, start=1):
        in_ledger = {(f.entity, f.outreach_id) for f in runs.ledger.failures(run_id=result.run_id)}
        assert len(in_ledger) == len(BAD)
        listed = _cli_failures(runs.pipe.ledger_url, "--run", result.run_id)
        assert {(f["entity"], f["outreach_id"]) for f in listed} == in_ledger
        assert {f["streak"] for f in listed} == {number}
        rows, not_shown = _table_rows(result)
        assert not_shown == 0
        assert {(r["entity"], r["outreach_id"]) for r in rows} == in_ledger
        assert {r["runs_failed_in_row"] for r in rows} == {number}
    # The CLI filters by entity, and reads the records failing now without --run.
    assert {f["outreach_id"] for f in _cli_failures(runs.pipe.ledger_url, "--entity", "accounts")} == {
        runs.ids["nameless_account"]}


def test_a_record_that_keeps_failing_is_stuck_not_new(runs: Runs) -> None:
    first, _, third = runs.failing
    people_first = first.asset_materializations_for_node(LOAD_NODES["people"])[0].metadata
    people_third = third.asset_materializations_for_node(LOAD_NODES["people"])[0].metadata
    assert (people_first["records_newly_failed"].value, people_first["records_stuck"].value) == (4, 0)
    assert (people_third["records_newly_failed"].value, people_third["records_stuck"].value) == (0, 4)


def test_messages_in_the_event_store_mask_emails(runs: Runs) -> None:
    rows, _ = _table_rows(runs.failing[0])
    duplicate = [r["message"] for r in rows if r["kind"] == "duplicate"]
    assert duplicate and all(MASK in message and "@" not in message for message in duplicate)
    assert not any("@" in str(r["message"]) for r in rows)


def test_a_quiet_run_does_not_reread_records_waiting_for_their_retry(runs: Runs) -> None:
    extract = runs.backed_off.asset_materializations_for_node(EXTRACT_PROSPECTS)[0].metadata
    assert extract["range_retried_records"].value == 0
    assert extract["range_failed_waiting_for_retry"].value == 4
    # Not read, so not failed again: no failure of the backed-off run in the ledger.
    assert runs.ledger.failures(run_id=runs.backed_off.run_id) == []
    assert len(runs.ledger.failures(run_id=runs.retrying.run_id)) == len(BAD)
    retried = runs.retrying.asset_materializations_for_node(EXTRACT_PROSPECTS)[0].metadata
    assert retried["range_retried_records"].value == 4
    backed_off, retrying = runs.requests["backed_off"], runs.requests["retrying"]
    print(f"quiet run requests: with backoff {backed_off}, retrying every run {retrying}")
    assert sum(backed_off.values()) < sum(retrying.values())


def test_history_prints_old_and_new_values_of_changed_fields(runs: Runs) -> None:
    assert runs.pipe.ledger_url is not None
    outcome = CliRunner().invoke(main, ["history", "prospects", str(runs.ids["good_prospect"]),
                                        "--ledger-url", runs.pipe.ledger_url])
    assert outcome.exit_code == 0, outcome.output
    assert 'person_job_title: blank -> "Head of Things"' in outcome.output, outcome.output
    failed = CliRunner().invoke(main, ["history", "prospects", "--failed", "--ledger-url", runs.pipe.ledger_url])
    assert failed.exit_code == 0, failed.output
    assert all(f"prospects {runs.ids[name]}" in failed.output for name in BAD[:4])
    assert "too_long person_job_title, run 3 in a row" in failed.output
    assert "too_long person_job_title, run 4 in a row" in failed.output
