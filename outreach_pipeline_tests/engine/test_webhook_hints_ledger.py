"""The ledger's hint and listening rows (revision 0006) on real SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from outreach_pipeline.engine.ledger import SyncLedger
from outreach_pipeline.engine.webhook_hints import ReadReason, WebhookHints

WINDOW = datetime(2026, 11, 1, 13, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger(request, tmp_path: Path) -> Iterator[SyncLedger]:
    url = (f"sqlite:///{tmp_path / 'ledger.db'}" if request.param == "sqlite"
           else request.getfixturevalue("postgres_database_url"))
    ledger = SyncLedger(url)
    yield ledger
    ledger.dispose()


def test_hints_count_per_window_and_spans_decide_the_read(ledger: SyncLedger) -> None:
    hints = WebhookHints(ledger.engine)
    span = hints.start_listening("http://127.0.0.1:1/outreach/webhooks", "*", "*", WINDOW - timedelta(minutes=1))
    hints.heartbeat(span, WINDOW + timedelta(minutes=63))
    hints.heartbeat(span, WINDOW)  # never backwards
    decide = {"grace": timedelta(minutes=2), "sweep_hours": 24, "enabled": True, "from_beginning": False}
    quiet = hints.window_read(("prospect",), WINDOW, WINDOW + timedelta(hours=1), **decide)
    assert quiet.reason is ReadReason.QUIET

    for minute in (5, 59):
        hints.record_hint("prospect", WINDOW + timedelta(minutes=minute), WINDOW + timedelta(minutes=minute + 1))
    assert hints.hint_counts("prospect") == {WINDOW: 2}
    assert hints.hinted(("prospect", "account"), WINDOW, WINDOW + timedelta(hours=1)) == {"prospect"}
    hinted = hints.window_read(("prospect",), WINDOW, WINDOW + timedelta(hours=1), **decide)
    assert hinted.reason is ReadReason.HINTED
    later = hints.window_read(("prospect",), WINDOW + timedelta(hours=1), WINDOW + timedelta(hours=2), **decide)
    assert later.reason is ReadReason.NOT_LISTENING  # the span ends before that window's grace


def test_a_delivery_later_than_the_grace_makes_the_next_run_read_back_to_its_window(ledger: SyncLedger) -> None:
    hints = WebhookHints(ledger.engine)
    span = hints.start_listening("http://127.0.0.1:1/outreach/webhooks", "*", "*", WINDOW - timedelta(minutes=1))
    hints.heartbeat(span, WINDOW + timedelta(hours=3, minutes=5))
    decide = {"grace": timedelta(minutes=2), "sweep_hours": 24, "enabled": True, "from_beginning": False}
    assert hints.window_read(("prospect",), WINDOW, WINDOW + timedelta(hours=1), **decide).reason is ReadReason.QUIET
    # A change of 13:30 delivered at 14:20, after the 13:00 window's run skipped its read.
    hints.record_hint("prospect", WINDOW + timedelta(minutes=30), WINDOW + timedelta(minutes=80))
    next_run = hints.window_read(("prospect",), WINDOW + timedelta(hours=1), WINDOW + timedelta(hours=2), **decide)
    assert (next_run.reason, next_run.read_from) == (ReadReason.LATE_HINT, WINDOW)
    # Read once: the run after it sees no late delivery in its own receiving span, and is quiet again.
    after = hints.window_read(("prospect",), WINDOW + timedelta(hours=2), WINDOW + timedelta(hours=3), **decide)
    assert after.reason is ReadReason.QUIET
    assert hints.window_read(("account",), WINDOW + timedelta(hours=1), WINDOW + timedelta(hours=2),
                             **decide).reason is ReadReason.QUIET  # other types are not read back
