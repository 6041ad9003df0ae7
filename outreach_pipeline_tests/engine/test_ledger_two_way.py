"""The ledger's two-way records: conflict rows, what a direction updated for a window, unlinking (real SQLite)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from outreach_pipeline.engine.ledger import (
    TO_OUTREACH_REASON,
    FieldConflict,
    RecordOutcome,
    SyncLedger,
    SyncWindow,
)
from outreach_pipeline.engine.outcome import Outcome

START = datetime(2026, 11, 3, 5, tzinfo=UTC)
WINDOW = SyncWindow(start=START, end=START + timedelta(hours=1))
NEXT = SyncWindow(start=WINDOW.end, end=WINDOW.end + timedelta(hours=1))


def _outcome(outreach_id: int, outcome: str, workbooks_id: int, reason: str | None = None) -> RecordOutcome:
    return RecordOutcome(entity="prospects", outreach_id=outreach_id, outcome=outcome, workbooks_id=workbooks_id,
                         values={"person_first_name": "Ann"}, reason=reason)


def test_conflicts_keep_both_values_the_base_and_the_winner(tmp_path: Path) -> None:
    ledger = SyncLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    conflict = FieldConflict(entity="prospects", outreach_id=7, workbooks_id=70, field="person_job_title",
                             base="CTO", had_base=True, outreach_value="CEO", workbooks_value="COO",
                             winner="workbooks", policy="latest_wins")
    ledger.record_conflicts("run-1", [conflict])
    assert ledger.conflicts("prospects", 7) == [conflict]
    assert ledger.conflicts("prospects", 8) == []
    ledger.dispose()


def test_each_direction_sees_only_what_the_other_updated_for_the_window(tmp_path: Path) -> None:
    ledger = SyncLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.record_outcomes("run-1", WINDOW, [_outcome(1, "updated", 10), _outcome(2, "created", 20),
                                            _outcome(3, "unchanged", 30)])
    ledger.record_outcomes("run-2", WINDOW, [_outcome(4, "updated", 40, TO_OUTREACH_REASON),
                                            _outcome(5, "created", 50, TO_OUTREACH_REASON)])
    ledger.record_outcomes("run-3", NEXT, [_outcome(6, "updated", 60)])
    assert ledger.written_in_window("prospects", WINDOW, to_outreach=False) == [(1, 10)]
    assert ledger.written_in_window("prospects", WINDOW, to_outreach=True) == [(4, 40)]
    assert sorted(ledger.linked_ids("prospects")) == [(1, 10), (2, 20), (3, 30), (4, 40), (5, 50), (6, 60)]
    assert ledger.states_by_workbooks_id("prospects", [40])[40].outreach_id == 4

    ledger.unlink("prospects", [4])
    state = ledger.get_states("prospects", [4])[4]
    assert (state.workbooks_id, state.values, state.last_reason) == (None, None, "unlinked")
    assert (4, 40) not in ledger.linked_ids("prospects")
    ledger.dispose()


def test_the_workbooks_version_only_grows_and_starts_afresh_with_a_new_twin(tmp_path) -> None:
    ledger = SyncLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    window = SyncWindow(start=datetime(2026, 11, 20, 5, tzinfo=UTC), end=datetime(2026, 11, 20, 6, tzinfo=UTC))

    def record(outcome: Outcome, workbooks_id: int, version: int | None) -> int | None:
        ledger.record_outcomes("run", window, [RecordOutcome(
            entity="prospects", outreach_id=1, outcome=outcome, workbooks_id=workbooks_id,
            values={"person_last_name": "Lee"} if outcome.applied else None, workbooks_lock_version=version)])
        return ledger.get_states("prospects", [1])[1].workbooks_lock_version

    assert record(Outcome.CREATED, 10, 0) == 0
    assert record(Outcome.UPDATED, 10, 4) == 4
    assert record(Outcome.UNCHANGED, 10, 3) == 4  # an older version seen later does not lower it
    assert record(Outcome.FAILED, 10, 9) == 4  # nothing applied: the values are still version 4's
    assert record(Outcome.CREATED, 11, 0) == 0  # the twin was deleted and made again: its versions start over
    ledger.dispose()
