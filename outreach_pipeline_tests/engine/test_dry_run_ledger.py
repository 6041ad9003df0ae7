"""The dry run's ledger: reads pass through, writes do nothing, and an unclassified method stops the dry run."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from outreach_pipeline.engine.dry_run import DryRunViolation, ReadOnlyLedger
from outreach_pipeline.engine.ledger import RecordOutcome, SyncLedger, SyncWindow
from outreach_pipeline.engine.outcome import Outcome

WINDOW = SyncWindow(start=datetime(2026, 11, 2, 5, tzinfo=UTC), end=datetime(2026, 11, 2, 6, tzinfo=UTC))


def test_writes_are_dropped_reads_pass_and_unknown_methods_raise(tmp_path: Path) -> None:
    ledger = SyncLedger(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        ledger.start_run("live", "prospects", WINDOW)
        ledger.record_outcomes("live", WINDOW, [RecordOutcome(entity="prospects", outreach_id=1, outcome=Outcome.CREATED,
                                                              workbooks_id=10)])
        ledger.finish_run("live", "prospects")
        dry = ReadOnlyLedger(ledger)
        dry.start_run("dry", "prospects", WINDOW)
        dry.record_outcomes("dry", WINDOW, [RecordOutcome(entity="prospects", outreach_id=2, outcome=Outcome.CREATED,
                                                          workbooks_id=20)])
        dry.finish_run("dry", "prospects")
        assert set(dry.get_states("prospects", [1, 2])) == {1}
        assert ledger.run_summary("dry", "prospects") is None
        with pytest.raises(DryRunViolation, match=r"SyncLedger\._write"):
            dry._write("prospects")
    finally:
        ledger.dispose()
