"""Failures as data in the ledger (streak, first failure, field and kind, old values) and the retry backoff, on a
real SQLite file and a real PostgreSQL server; plus the masking of personal data in messages."""

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from outreach_pipeline.engine.extract import ids_to_pull
from outreach_pipeline.engine.ledger import RecordOutcome, SyncLedger, SyncWindow
from outreach_pipeline.engine.ledger_failures import DUE_EARLY, NO_BACKOFF, RetryBackoff, ToOutreachAttempt
from outreach_pipeline.engine.outcome import SyncDirection
from outreach_pipeline.mapping.personal import MASK, mask_personal_text

T0 = datetime(2026, 11, 1, tzinfo=UTC)
RANGE = SyncWindow(start=T0, end=T0 + timedelta(hours=48))


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request, tmp_path: Path) -> Iterator[SyncLedger]:
    url = (f"sqlite:///{tmp_path / 'sync_ledger.db'}" if request.param == "sqlite"
           else request.getfixturevalue("postgres_database_url"))
    instance = SyncLedger(url)
    yield instance
    instance.dispose()


@pytest.fixture
def entity() -> str:
    return f"prospects_{uuid.uuid4().hex[:8]}"


def _failed(entity: str, outreach_id: int, **extra) -> RecordOutcome:
    return RecordOutcome(entity=entity, outreach_id=outreach_id, outcome="failed", error="too long",
                         error_field="person_job_title", error_kind="too_long", **extra)


def test_backoff_doubles_from_the_first_wait_up_to_the_cap() -> None:
    backoff = RetryBackoff(first=timedelta(hours=1), cap=timedelta(hours=24))
    assert [backoff.delay(streak) / timedelta(hours=1) for streak in range(1, 8)] == [1, 2, 4, 8, 16, 24, 24]
    assert NO_BACKOFF.delay(5) == timedelta(0)
    failed_at = T0
    assert not backoff.due(2, failed_at, failed_at + timedelta(hours=2) - DUE_EARLY - timedelta(seconds=1))
    assert backoff.due(2, failed_at, failed_at + timedelta(hours=2) - DUE_EARLY)


def test_streak_counts_failed_runs_in_a_row_and_a_success_resets_it(ledger: SyncLedger, entity: str) -> None:
    for run in range(3):
        ledger.record_outcomes(f"run-{run}", RANGE, [_failed(entity, 1, window_start=T0 + timedelta(hours=5))])
    (failure,) = ledger.failures(entity=entity)
    assert (failure.streak, failure.field, failure.kind, failure.run_id) == (3, "person_job_title", "too_long", "run-2")
    assert failure.window_start == T0 + timedelta(hours=5)  # its own hour, not the run's 48-hour range
    assert failure.first_failed_at == ledger.failures(run_id="run-0")[0].failed_at
    assert [f.streak for f in ledger.failures(run_id="run-1")] == [2]
    # An old window reloaded (stale version) says nothing about the failure: the streak stays.
    ledger.record_outcomes("stale", RANGE, [RecordOutcome(entity=entity, outreach_id=1, outcome="skipped",
                                                          reason="stale_version")])
    assert ledger.get_states(entity, [1])[1].fail_streak == 3
    ledger.record_outcomes("fixed", RANGE, [RecordOutcome(entity=entity, outreach_id=1, outcome="created",
                                                          workbooks_id=9, values={"person_job_title": "ok"})])
    state = ledger.get_states(entity, [1])[1]
    assert (state.fail_streak, state.first_failed_at, state.error_kind) == (0, None, None)
    assert ledger.failures(entity=entity) == [] and ledger.stuck_records(1) == []
    ledger.record_outcomes("again", RANGE, [_failed(entity, 1)])
    assert [f.streak for f in ledger.failures(entity=entity)] == [1]


def test_history_keeps_the_old_value_of_each_changed_field(ledger: SyncLedger, entity: str) -> None:
    ledger.record_outcomes("r1", RANGE, [RecordOutcome(
        entity=entity, outreach_id=1, outcome="created", workbooks_id=9, values={"a": "x", "b": None},
        diff={"a": "x"})])
    ledger.record_outcomes("r2", RANGE, [RecordOutcome(
        entity=entity, outreach_id=1, outcome="updated", workbooks_id=9, values={"a": "y", "b": "z"},
        diff={"a": "y", "b": "z"})])
    created, updated = ledger.history(entity, 1)
    assert created.old is None
    assert (updated.old, updated.diff) == ({"a": "x", "b": None}, {"a": "y", "b": "z"})


def test_failed_records_wait_for_their_backoff_unless_their_window_brings_them(
    ledger: SyncLedger, entity: str
) -> None:
    ledger.record_outcomes("r1", RANGE, [_failed(entity, 1), _failed(entity, 2)])
    ledger.record_outcomes("r2", RANGE, [_failed(entity, 2)])
    backoff = RetryBackoff()
    due, waiting = ledger.retry_schedule(entity, backoff)
    assert (due, waiting) == (set(), {1, 2})
    now = datetime.now(UTC)
    assert ledger.retry_schedule(entity, backoff, now + timedelta(hours=1)) == ({1}, {2})
    assert ledger.retry_schedule(entity, backoff, now + timedelta(hours=2)) == ({1, 2}, set())
    # Records others point at are not read either while they wait; a never-synced one without failures is.
    pull = ids_to_pull(ledger, entity, {1, 3}, backoff)
    assert (pull.retry, pull.referenced, pull.waiting) == (set(), {3}, {1, 2})
    assert ids_to_pull(ledger, entity, {1, 3}, NO_BACKOFF).all == {1, 2, 3}


def _refused(entity: str, workbooks_id: int, **extra) -> ToOutreachAttempt:
    return ToOutreachAttempt(entity=entity, workbooks_id=workbooks_id, outcome="failed", error="refused",
                             error_field="main_location[email]", error_kind="refused_by_outreach", **extra)


def test_a_refused_create_is_one_row_by_workbooks_id_that_counts_its_streak_and_is_linked_once_created(
    ledger: SyncLedger, entity: str
) -> None:
    hour = T0 + timedelta(hours=5)
    for run in range(3):
        ledger.record_to_outreach(f"run-{run}", [_refused(entity, 11, window_start=hour),
                                                 ToOutreachAttempt(entity=entity, workbooks_id=12, outcome="created",
                                                                   outreach_id=70)])
    (failure,) = ledger.failures(run_id="run-2")
    assert (failure.direction, failure.outreach_id, failure.workbooks_id, failure.streak) == (
        SyncDirection.TO_OUTREACH, None, 11, 3)
    assert (failure.field, failure.kind, failure.window_start) == ("main_location[email]", "refused_by_outreach", hour)
    assert failure.first_failed_at == ledger.failures(run_id="run-0")[0].failed_at
    assert [f.workbooks_id for f in ledger.stuck_records(3)] == [11]
    assert ledger.failures(entity=entity, direction=SyncDirection.TO_WORKBOOKS) == []
    # The other direction's failure of the same entity is listed beside it, each with its own key.
    ledger.record_outcomes("run-2", RANGE, [_failed(entity, 5)])
    assert {(f.direction, f.outreach_id, f.workbooks_id) for f in ledger.failures(entity=entity)} == {
        (SyncDirection.TO_OUTREACH, None, 11), (SyncDirection.TO_WORKBOOKS, 5, None)}
    # Created at last: the same row is linked, its streak ends, and its failures stay in its history.
    ledger.record_to_outreach("run-3", [ToOutreachAttempt(entity=entity, workbooks_id=11, outcome="created",
                                                          outreach_id=71)])
    assert ledger.failures(entity=entity, direction=SyncDirection.TO_OUTREACH) == []
    assert [f.streak for f in ledger.to_outreach_failures_of(entity, outreach_id=71)] == [1, 2, 3]
    assert ledger.to_outreach_failures_of(entity, workbooks_ids=[12]) == []  # never failed: nothing kept
    ledger.record_to_outreach("run-4", [_refused(entity, 11, outreach_id=71)])
    (again,) = ledger.failures(run_id="run-4")
    assert (again.outreach_id, again.streak) == (71, 1)


def test_messages_lose_emails_and_phone_numbers_but_keep_ids_and_dates() -> None:
    message = ("prospect 42: main_location[email] 'ann.lee@example.com' is also held by Outreach prospect 7; "
               "phone +44 20 7946 0958 at 2026-11-29T10:00:00Z (Workbooks #9001)")
    masked = mask_personal_text(message)
    assert masked == (f"prospect 42: main_location[email] '{MASK}' is also held by Outreach prospect 7; "
                      f"phone {MASK} at 2026-11-29T10:00:00Z (Workbooks #9001)")
    assert mask_personal_text(None) is None
