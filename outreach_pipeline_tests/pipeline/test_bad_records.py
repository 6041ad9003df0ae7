"""Acceptance: legacy bad records fail one by one, named with their field, and never hold back their window.

Bad data goes in through the Outreach store (as legacy data would: the API's own validation never saw it).
Window 1 syncs good originals; window 2 makes some of them bad and adds new bad records beside good ones:
a blank required field, a 32 KB string, an invalid date and one email held by two prospects (a prospect
without an email, or whose email is removed, is not bad: the email is a match key only when present). Windows are
on 2026-11-01, which the seed leaves empty, so each holds only this module's records.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
from dagster_shared.serdes import serialize_value

from outreach_pipeline.defs.assets import FLOWS
from outreach_pipeline.defs.resources import SyncSettings
from outreach_pipeline.engine.ledger import SyncLedger
from outreach_pipeline.mapping.personal import MASK
from outreach_pipeline.sandbox.outreach.store import format_timestamp, to_epoch_ms
from outreach_pipeline_tests.pipeline.harness import (
    CONTROLLERS,
    WINDOW,
    Pipeline,
    outreach_clock_at,
    outreach_records,
    pipeline,
    step_failures,
)

FIRST_WINDOW = datetime(2026, 11, 1, 12, tzinfo=UTC)
SECOND_WINDOW = FIRST_WINDOW + WINDOW
TOO_LONG = 32_768
ENTITY_OF = {"account": "accounts", "prospect": "prospects", "opportunity": "opportunities"}
LOAD_NODE = {"account": dg.AssetKey(["workbooks", "organisations"]).to_python_identifier(), "prospect": dg.AssetKey(["workbooks", "people"]).to_python_identifier(),
             "opportunity": dg.AssetKey(["workbooks", "opportunities"]).to_python_identifier()}
SYNC_ERROR = {"account": ("cf_organisation_outreach_sync_error", "cf_organisation_outreach_sync_error_message"),
              "prospect": ("cf_person_outreach_sync_error", "cf_person_outreach_sync_error_message"),
              "opportunity": ("cf_opportunity_outreach_sync_error", "cf_opportunity_outreach_sync_error_message")}
CLOSE_DATE = format_timestamp(to_epoch_ms(datetime(2026, 12, 1, tzinfo=UTC)))


@dataclass(frozen=True)
class BadCase:
    """One record expected to fail: its kind, how it was made bad, and the field its message must name."""

    name: str
    kind: str
    field: str  # Workbooks or Outreach name of the field; either is accepted in the message
    alternative: str
    existed: bool  # synced with good data in window 1, made bad in window 2


BAD_CASES = (
    BadCase("account_without_name", "account", "name", "name", existed=False),
    BadCase("account_name_removed", "account", "name", "name", existed=True),
    BadCase("prospect_32k_title", "prospect", "person_job_title", "title", existed=False),
    BadCase("prospect_title_grown_to_32k", "prospect", "person_job_title", "title", existed=True),
    BadCase("opportunity_bad_close_date", "opportunity", "predicted_close_date", "closeDate", existed=False),
    BadCase("opportunity_close_date_broken", "opportunity", "predicted_close_date", "closeDate", existed=True),
    BadCase("prospect_duplicate_email_new", "prospect", "main_location[email]", "emails", existed=False),
    BadCase("prospect_duplicate_email_synced", "prospect", "main_location[email]", "emails", existed=True),
)
BAD_NAMES = {case.name for case in BAD_CASES}


@dataclass
class BadRecords:
    pipe: Pipeline
    ledger: SyncLedger
    ids: dict[str, int]
    kinds: dict[str, str]
    first: dg.ExecuteInProcessResult
    second: dg.ExecuteInProcessResult
    before: dict[str, dict[int, dict[str, Any]]]  # Workbooks rows after window 1, per entity

    def row(self, name: str) -> dict[str, Any] | None:
        return self.pipe.synced_rows(ENTITY_OF[self.kinds[name]]).get(self.ids[name])


class _Planter:
    """Writes records through the store at a pinned instant and remembers them by name."""

    def __init__(self, pipe: Pipeline) -> None:
        self.pipe = pipe
        self.ids: dict[str, int] = {}
        self.kinds: dict[str, str] = {}
        self.stage = outreach_records(pipe.sandbox, "opportunityStage")[0].id

    def create(self, name: str, kind: str, attributes: dict[str, Any], relationships: dict[str, Any]) -> None:
        self.ids[name] = self.pipe.sandbox.outreach_store.create(kind, attributes, relationships).id
        self.kinds[name] = kind

    def insert_legacy(self, name: str, kind: str, attributes: dict[str, Any], relationships: dict[str, Any]) -> None:
        """Straight into the table: no email uniqueness or any other rule, as legacy data was written."""
        row = {"attributes": attributes, "relationships": relationships}
        self.ids[name] = self.pipe.sandbox.outreach_store.bulk_insert(kind, [row])[0]
        self.kinds[name] = kind

    def update(self, name: str, attributes: dict[str, Any]) -> None:
        self.pipe.sandbox.outreach_store.update(self.kinds[name], self.ids[name], attributes)

    def opportunity(self, name: str, account: str, close_date: str = CLOSE_DATE, *, legacy: bool = False) -> None:
        attributes = {"name": name.replace("_", " "), "amount": 5000, "currencyType": "GBP", "closeDate": close_date}
        relationships = {"account": self.ids[account], "opportunityStage": self.stage}
        (self.insert_legacy if legacy else self.create)(name, "opportunity", attributes, relationships)

    def prospect(self, name: str, email: str | None, *, legacy: bool = False, **attributes: Any) -> None:
        values = {"firstName": "Bad", "lastName": name, "emails": [email] if email else [], **attributes}
        (self.insert_legacy if legacy else self.create)(name, "prospect", values, {})


def _plant_first_window(planter: _Planter) -> None:
    planter.create("account_name_removed", "account", {"name": "Soon Nameless Ltd"}, {})
    planter.create("good_account", "account", {"name": "Good Ltd"}, {})
    # An email is a match key when present, not required: these sync (they were bad cases while it was).
    planter.prospect("good_prospect_email_removed", "soon.blank@good.example")
    planter.prospect("prospect_title_grown_to_32k", "soon.long@bad.example", title="Buyer")
    planter.prospect("prospect_duplicate_email_synced", "shared@bad.example")
    planter.prospect("good_prospect_later_edited", "edited@good.example", title="Engineer")
    planter.opportunity("opportunity_close_date_broken", "good_account")
    planter.opportunity("good_opportunity", "good_account")


def _plant_second_window(planter: _Planter) -> None:
    planter.update("account_name_removed", {"name": None})
    planter.update("good_prospect_email_removed", {"emails": None})
    planter.update("prospect_title_grown_to_32k", {"title": "T" * TOO_LONG})
    planter.update("opportunity_close_date_broken", {"closeDate": "2026-13-45T99:00:00.000Z"})
    planter.update("prospect_duplicate_email_synced", {"title": "Touched"})  # read again with its new twin
    planter.update("good_prospect_later_edited", {"title": "Principal Engineer"})
    planter.insert_legacy("account_without_name", "account", {"domain": "nameless.example"}, {})
    planter.insert_legacy("good_new_account", "account", {"name": "Also Good plc"}, {})
    planter.prospect("good_prospect_without_email", None, legacy=True)
    planter.prospect("prospect_32k_title", "long.title@bad.example", legacy=True, title="T" * TOO_LONG)
    planter.prospect("prospect_duplicate_email_new", "shared@bad.example", legacy=True)
    for number in range(3):
        planter.prospect(f"good_new_prospect_{number}", f"new{number}@good.example")
    planter.opportunity("opportunity_bad_close_date", "good_new_account", "not a date", legacy=True)
    planter.opportunity("good_new_opportunity", "good_new_account")


JUDGE_EVERY_WINDOW = SyncSettings(retry_backoff_hours=0, failure_rate_min_records=1)


@pytest.fixture(scope="module")
def bad_records(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BadRecords]:
    home: Path = tmp_path_factory.mktemp("bad_records")
    # A few planted records per window: the failure rate is judged at ERROR from one record (the default needs 20).
    with pipeline(home, sync_settings=JUDGE_EVERY_WINDOW, prospects=5, accounts=2, opportunities=2, seed_days=1) as pipe:
        planter = _Planter(pipe)
        with outreach_clock_at(pipe.sandbox, FIRST_WINDOW + timedelta(minutes=5)):
            _plant_first_window(planter)
        first = pipe.run(FIRST_WINDOW, raise_on_error=False)
        before = {entity: pipe.synced_rows(entity) for entity in CONTROLLERS}
        with outreach_clock_at(pipe.sandbox, SECOND_WINDOW + timedelta(minutes=5)):
            _plant_second_window(planter)
        second = pipe.run(SECOND_WINDOW, raise_on_error=False)
        ledger = pipe.open_ledger()
        try:
            yield BadRecords(pipe, ledger, planter.ids, planter.kinds, first, second, before)
        finally:
            ledger.dispose()


#: The steps the bad window fails: the failure_rate checks at ERROR, after every load ran (defs/failure_rate.py).
RATE_STEPS = sorted(f"{LOAD_NODE[kind]}_failure_rate" for kind in ("account", "prospect", "opportunity"))


def test_window_one_succeeds_window_two_fails_only_its_rate_checks_and_window_one_syncs_every_original(
        bad_records: BadRecords) -> None:
    assert bad_records.first.success, step_failures(bad_records.first)
    failed = sorted(failure.split(":")[0] for failure in step_failures(bad_records.second))
    assert failed == RATE_STEPS, step_failures(bad_records.second)
    for name, outreach_id in bad_records.ids.items():
        case = next((c for c in BAD_CASES if c.name == name), None)
        if case is not None and case.existed:
            assert outreach_id in bad_records.before[ENTITY_OF[case.kind]], name


@pytest.mark.parametrize("case", BAD_CASES, ids=lambda case: case.name)
def test_bad_record_fails_alone_with_a_message_naming_record_and_field(bad_records: BadRecords, case: BadCase) -> None:
    outreach_id = bad_records.ids[case.name]
    state = bad_records.ledger.get_states(ENTITY_OF[case.kind], [outreach_id]).get(outreach_id)
    assert state is not None, f"{case.name}: no ledger state"
    assert (state.last_outcome, state.last_run_id) == ("failed", bad_records.second.run_id), (case.name, state)
    message = state.last_error or ""
    assert f"{case.kind} {outreach_id}" in message, (case.name, message)
    assert case.field in message or case.alternative in message, (case.name, message)
    outcomes = _load_outcomes(bad_records.second, LOAD_NODE[case.kind])
    row = outcomes.loc[outcomes["outreach_id"] == outreach_id].iloc[0]
    assert (row["outcome"], row["error"]) == ("failed", message), case.name


@pytest.mark.parametrize("case", [c for c in BAD_CASES if c.existed], ids=lambda case: case.name)
def test_existing_workbooks_record_keeps_its_values_and_gets_the_sync_error(
    bad_records: BadRecords, case: BadCase
) -> None:
    row = bad_records.row(case.name)
    assert row is not None, f"{case.name}: its Workbooks record is gone"
    flag, message_field = SYNC_ERROR[case.kind]
    state = bad_records.ledger.get_states(ENTITY_OF[case.kind], [bad_records.ids[case.name]])[bad_records.ids[case.name]]
    assert row[flag] is True, (case.name, row[flag], row[message_field])
    assert row[message_field] == state.last_error, case.name
    earlier = bad_records.before[ENTITY_OF[case.kind]][bad_records.ids[case.name]]
    assert row[case.field] == earlier[case.field], f"{case.name}: the bad value reached Workbooks"


def test_new_bad_records_create_nothing_and_duplicates_never_share_a_person(bad_records: BadRecords) -> None:
    for case in BAD_CASES:
        if not case.existed:
            assert bad_records.row(case.name) is None, case.name
    people = bad_records.pipe.workbooks_rows("prospects")
    holders = [row for row in people if row["main_location[email]"] == "shared@bad.example"]
    assert len(holders) == 1, holders
    assert holders[0]["cf_person_outreach_id"] == bad_records.ids["prospect_duplicate_email_synced"]


def test_every_other_record_of_the_window_syncs(bad_records: BadRecords) -> None:
    good = {name: outreach_id for name, outreach_id in bad_records.ids.items() if name.startswith("good_")}
    assert len(good) == 10
    for name, outreach_id in good.items():
        entity = ENTITY_OF[bad_records.kinds[name]]
        state = bad_records.ledger.get_states(entity, [outreach_id])[outreach_id]
        expected = "updated" if name in ("good_prospect_later_edited", "good_prospect_email_removed") else "created"
        if name in ("good_account", "good_opportunity"):
            expected = "created" if state.last_run_id == bad_records.first.run_id else "unchanged"
        assert state.last_outcome == expected, (name, state)
        assert outreach_id in bad_records.pipe.synced_rows(entity), name
    edited = bad_records.pipe.synced_rows("prospects")[good["good_prospect_later_edited"]]
    assert edited["person_job_title"] == "Principal Engineer"
    assert bad_records.pipe.synced_rows("prospects")[good["good_prospect_email_removed"]]["main_location[email]"] is None
    metadata = bad_records.pipe.load_metadata(bad_records.second)
    assert metadata["people"]["records_failed"] == sum(1 for c in BAD_CASES if c.kind == "prospect")
    assert metadata["organisations"]["records_failed"] == sum(1 for c in BAD_CASES if c.kind == "account")
    assert metadata["opportunities"]["records_failed"] == sum(1 for c in BAD_CASES if c.kind == "opportunity")


def _load_outcomes(result: dg.ExecuteInProcessResult, node: str) -> pd.DataFrame:
    """The load asset's per-record outcomes, as the run handed them to its IO manager."""
    output = result.output_for_node(node)
    frames = list(output.values()) if isinstance(output, dict) else [output]
    return pd.concat(frames, ignore_index=True)


def _failure_rate_checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    """The run's Outreach -> Workbooks `failure_rate` evaluations, per Workbooks asset name (one window per run
    here; the Workbooks -> Outreach writes' checks are test_to_outreach_failure_rate.py's)."""
    loads = {flow.load_key for flow in FLOWS}
    return {evaluation.asset_key.path[-1]: evaluation for evaluation in result.get_asset_check_evaluations()
            if evaluation.check_name == "failure_rate" and evaluation.asset_key in loads}


def test_failure_rate_check_reports_error_for_the_bad_window_and_passes_the_clean_one(bad_records: BadRecords) -> None:
    clean = _failure_rate_checks(bad_records.first)
    assert set(clean) == {flow.workbooks_name for flow in FLOWS}  # every load asset has the check
    assert all(evaluation.passed for evaluation in clean.values()), clean
    bad = _failure_rate_checks(bad_records.second)
    assert set(bad) == set(clean)
    seeded_with_bad_records = {"organisations", "people", "opportunities"}
    # The engagement loads of the bad window hold no bad records: their checks still pass.
    assert all(bad[name].passed for name in set(bad) - seeded_with_bad_records), bad
    metadata = bad_records.pipe.load_metadata(bad_records.second)
    for name, evaluation in ((name, bad[name]) for name in sorted(seeded_with_bad_records)):
        failed, extracted = metadata[name]["records_failed"], metadata[name]["records_extracted"]
        assert failed / extracted > 0.10, (name, failed, extracted)  # every entity is over the ERROR threshold
        assert (evaluation.passed, evaluation.severity) == (False, dg.AssetCheckSeverity.ERROR), (name, evaluation)
        assert evaluation.metadata["failure_rate"].value == pytest.approx(failed / extracted), name
    # At ERROR the check step fails the run, after the load stored every good record (the other tests here).
    assert not bad_records.second.success
    assert sorted(failure.split(":")[0] for failure in step_failures(bad_records.second)) == RATE_STEPS


def test_no_email_reaches_dagsters_event_store_and_the_preview_masks_personal_fields(bad_records: BadRecords) -> None:
    """Emails and phones stay in the two systems and the ledger: Dagster's events (logs, metadata) hold none."""
    instance = bad_records.pipe.instance
    for result in (bad_records.first, bad_records.second):
        stored = serialize_value(instance.all_logs(result.run_id))
        assert "@good.example" not in stored and "@bad.example" not in stored, result.run_id
    people = bad_records.first.asset_materializations_for_node(LOAD_NODE["prospect"])[0]
    changes = [row["changes"] for row in people.metadata["preview"].value]
    emails = [change["main_location[email]"] for change in changes if change.get("main_location[email]")]
    assert emails and set(emails) == {MASK}, changes
