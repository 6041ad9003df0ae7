"""The three-way merge of one field, and the Workbooks -> Outreach planner that applies it (pure, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime

from outreach_pipeline.engine.ledger import RecordState
from outreach_pipeline.engine.merge import NO_BASE, Side, record_time, resolve_field
from outreach_pipeline.engine.plan_outreach import OutreachAction, OutreachTwin, plan_to_outreach
from outreach_pipeline.mapping import load_mapping_set

MAPPING = load_mapping_set()
PROSPECTS = MAPPING.entity("prospects")
TITLE = PROSPECTS.field("person_job_title")
EARLY, LATE = datetime(2026, 11, 3, 1, tzinfo=UTC), datetime(2026, 11, 3, 2, tzinfo=UTC)


def _resolve(field=TITLE, *, base, outreach, workbooks, outreach_at=EARLY, workbooks_at=LATE):
    return resolve_field(field, base=base, outreach=outreach, workbooks=workbooks,
                         outreach_updated_at=outreach_at, workbooks_updated_at=workbooks_at)


def test_only_the_side_that_changed_wins_whatever_the_times() -> None:
    assert _resolve(base="A", outreach="A", workbooks="W", workbooks_at=EARLY, outreach_at=LATE).winner is Side.WORKBOOKS
    assert _resolve(base="A", outreach="O", workbooks="A").winner is Side.OUTREACH
    same = _resolve(base="A", outreach="B", workbooks="B")
    assert (same.winner, same.agreed, same.conflict) == (None, "B", False)


def test_both_changed_goes_by_policy_and_is_a_conflict() -> None:
    latest = _resolve(base="A", outreach="O", workbooks="W")
    assert (latest.winner, latest.value, latest.conflict) == (Side.WORKBOOKS, "W", True)
    assert _resolve(base="A", outreach="O", workbooks="W", outreach_at=LATE, workbooks_at=EARLY).winner is Side.OUTREACH
    # A tie goes to Outreach, so the choice never depends on which direction evaluates it.
    assert _resolve(base="A", outreach="O", workbooks="W", workbooks_at=EARLY).winner is Side.OUTREACH
    owner = TITLE.model_copy(update={"conflict": "outreach_wins"})
    assert _resolve(owner, base="A", outreach="O", workbooks="W").winner is Side.OUTREACH
    owner = TITLE.model_copy(update={"conflict": "workbooks_wins"})
    assert _resolve(owner, base="A", outreach="O", workbooks="W", outreach_at=LATE, workbooks_at=EARLY).winner is Side.WORKBOOKS
    # No base (never synced): a conflict too.
    assert _resolve(base=NO_BASE, outreach="O", workbooks="W").conflict


def test_one_way_fields_and_skip_blank() -> None:
    to_workbooks = TITLE.model_copy(update={"direction": "to_workbooks"})
    assert _resolve(to_workbooks, base="A", outreach="A", workbooks="W").winner is Side.OUTREACH
    to_outreach = TITLE.model_copy(update={"direction": "to_outreach"})
    assert _resolve(to_outreach, base="A", outreach="O", workbooks="A").winner is Side.WORKBOOKS
    skip = TITLE.model_copy(update={"skip_blank": True})
    kept = _resolve(skip, base="A", outreach="A", workbooks=None)
    assert (kept.winner, kept.agreed) == (None, NO_BASE)
    assert _resolve(TITLE, base="A", outreach="A", workbooks=None).winner is Side.WORKBOOKS


def test_workbooks_datetimes_are_read_as_update_times() -> None:
    assert record_time("Tue Nov 03 02:00:00 UTC 2026") == LATE
    assert record_time("2026-11-03T02:00:00.000Z") == LATE
    assert record_time("") is None


def _state(values: dict) -> dict[int, RecordState]:
    return {900: RecordState(
        entity="prospects", outreach_id=17, workbooks_id=900, outreach_updated_at=EARLY, values_hash=None,
        values=values, last_outcome="updated", last_reason=None, last_error=None, window_start=None,
        window_end=None, last_run_id="r", needs_retry=False, recorded_at=EARLY)}


def _person(**fields) -> dict:
    return {"id": 900, "updated_at": "Tue Nov 03 02:00:00 UTC 2026", "object_ref": "PERS-900",
            "cf_person_outreach_id": 17, "cf_person_sync_to_outreach": True, "cf_person_outreach_sync_error": False,
            "cf_person_outreach_duplicate": False, **fields}


def _twin(**staged) -> dict[int, OutreachTwin]:
    return {17: OutreachTwin(outreach_id=17, updated_at=EARLY, attributes={"emails": ["a@x.com"]}, staged=staged)}


def test_planner_writes_only_what_workbooks_wins_and_keeps_the_base_of_what_outreach_wins() -> None:
    base = {"person_first_name": "Ann", "person_job_title": "CTO", "main_location[email]": "a@x.com"}
    record = _person(person_first_name="Ann", person_job_title="CEO", **{"main_location[email]": "a@x.com",
                                                                        "main_location[alternate_email]": "b@x.com"})
    twins = _twin(person_first_name="Anna", person_job_title="CTO", **{"main_location[email]": "a@x.com"})
    (decision,) = plan_to_outreach(PROSPECTS, [record], twins, _state(base), {}, {})
    assert decision.action is OutreachAction.UPDATE
    assert decision.attributes == {"title": "CEO", "emails": ["a@x.com", "b@x.com"]}
    # Outreach won the first name: the base stays "Ann" so the other direction still writes "Anna".
    assert decision.values["person_first_name"] == "Ann"
    assert decision.values["person_job_title"] == "CEO"


def test_a_to_workbooks_field_is_never_written_to_outreach_and_skip_blank_holds() -> None:
    fields = [f.model_copy(update={"direction": "to_workbooks"}) if f.workbooks == "person_job_title"
              else f.model_copy(update={"skip_blank": True}) if f.workbooks == "person_last_name" else f
              for f in PROSPECTS.fields]
    entity = PROSPECTS.model_copy(update={"fields": fields})
    base = {"person_job_title": "CTO", "person_last_name": "Lee"}
    record = _person(person_job_title="CEO", person_last_name=None)
    twins = _twin(person_job_title="CTO", person_last_name="Lee")
    (decision,) = plan_to_outreach(entity, [record], twins, _state(base), {}, {})
    assert decision.action is OutreachAction.UNCHANGED, decision.attributes
    (created,) = plan_to_outreach(entity, [_person(cf_person_outreach_id=None, person_job_title="CEO")], {}, {}, {}, {})
    assert "title" not in created.attributes
    assert created.attributes["externalId"] == "PERS-900"  # the create key, on create only


def test_flagged_records_are_left_alone() -> None:
    for flag in ("cf_person_outreach_sync_error", "cf_person_outreach_duplicate"):
        (decision,) = plan_to_outreach(PROSPECTS, [_person(**{flag: True})], _twin(), {}, {}, {})
        assert (decision.action, decision.reason) == (OutreachAction.SKIP, "flagged")
