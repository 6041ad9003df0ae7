"""SyncLedger against a real SQLite file and a real PostgreSQL server (a throwaway database per test run)."""

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from outreach_pipeline.engine.ledger import PendingRelation, RecordOutcome, SyncLedger, SyncWindow

T0 = datetime(2024, 1, 1, tzinfo=UTC)
WINDOW = SyncWindow(start=T0, end=T0 + timedelta(hours=1))


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'dagster_home' / 'sync_ledger.db'}"
    return request.getfixturevalue("postgres_database_url")


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[SyncLedger]:
    instance = SyncLedger(ledger_url)
    yield instance
    instance.dispose()


@pytest.fixture
def entity() -> str:
    # Postgres tables are shared across tests in the module; a fresh entity name isolates each test.
    return f"prospects_{uuid.uuid4().hex[:8]}"


def _outcome(entity: str, outreach_id: int, outcome: str, **extra) -> RecordOutcome:
    return RecordOutcome(entity=entity, outreach_id=outreach_id, outcome=outcome, **extra)


def test_upsert_keeps_last_applied_version_across_failures(ledger: SyncLedger, entity: str) -> None:
    ledger.start_run("run-1", entity, WINDOW)
    ledger.record_outcomes(
        "run-1",
        WINDOW,
        [
            _outcome(entity, 1, "created", workbooks_id=10, outreach_updated_at=T0, values={"name": "Ann"}),
            _outcome(entity, 2, "failed", error="prospect 2: main_location[email] is blank (required)"),
        ],
    )
    ledger.record_outcomes("run-2", WINDOW, [_outcome(entity, 1, "failed", error="boom")])
    states = ledger.get_states(entity, [1, 2, 3])
    assert set(states) == {1, 2}
    assert states[1].workbooks_id == 10
    assert states[1].outreach_updated_at == T0
    assert states[1].values == {"name": "Ann"}
    assert (states[1].last_outcome, states[1].last_error, states[1].needs_retry) == ("failed", "boom", True)
    assert states[2].values is None
    summary = ledger.finish_run("run-1", entity)
    assert summary.counts == {"created": 1, "updated": 0, "unchanged": 0, "skipped": 0, "failed": 1}
    assert summary.finished_at is not None


def test_history_is_append_only_and_ordered(ledger: SyncLedger, entity: str) -> None:
    for run, outcome in enumerate(["created", "unchanged", "updated"]):
        ledger.record_outcomes(
            f"run-{run}",
            WINDOW,
            [
                _outcome(
                    entity,
                    7,
                    outcome,
                    workbooks_id=70,
                    outreach_updated_at=T0 + timedelta(minutes=run),
                    values={"v": run},
                    diff={"v": run},
                )
            ],
        )
    ledger.record_outcomes("run-3", WINDOW, [_outcome(entity, 7, "skipped", reason="stale_version")])
    entries = ledger.history(entity, 7)
    assert [e.outcome for e in entries] == ["created", "unchanged", "updated", "skipped"]
    assert entries[2].diff == {"v": 2}
    assert entries[3].reason == "stale_version"
    state = ledger.get_states(entity, [7])[7]
    assert state.outreach_updated_at == T0 + timedelta(minutes=2)  # a skip never moves the applied version
    assert not state.needs_retry


def test_failed_ids_clear_after_success(ledger: SyncLedger, entity: str) -> None:
    ledger.record_outcomes("r1", WINDOW, [_outcome(entity, i, "failed", error="e") for i in (3, 1, 2)])
    assert ledger.failed_ids(entity) == [1, 2, 3]
    ledger.record_outcomes(
        "r2", WINDOW, [_outcome(entity, 2, "updated", workbooks_id=20, outreach_updated_at=T0)]
    )
    assert ledger.failed_ids(entity) == [1, 3]


def test_pending_relations_replaced_when_record_is_rewritten(ledger: SyncLedger, entity: str) -> None:
    relation = PendingRelation(
        entity=entity, outreach_id=5, field="employer_link", target_entity="accounts", target_outreach_id=99
    )
    ledger.record_outcomes(
        "r1",
        WINDOW,
        [
            _outcome(
                entity, 5, "created", workbooks_id=50, outreach_updated_at=T0, pending_relations=[relation]
            )
        ],
    )
    assert ledger.pending_relations(entity) == [relation]
    assert ledger.pending_relations(target_entity="accounts") >= [relation]
    ledger.record_outcomes("r2", WINDOW, [_outcome(entity, 5, "failed", error="x")])
    assert ledger.pending_relations(entity) == [relation]  # nothing was written, still pending
    ledger.record_outcomes(
        "r3", WINDOW, [_outcome(entity, 5, "updated", workbooks_id=50, outreach_updated_at=T0)]
    )
    assert ledger.pending_relations(entity) == []


def test_large_batch_and_rejected_batches(ledger: SyncLedger, entity: str) -> None:
    outcomes = [_outcome(entity, i, "created", workbooks_id=i, outreach_updated_at=T0) for i in range(1200)]
    ledger.record_outcomes("big", WINDOW, outcomes)
    assert len(ledger.get_states(entity, range(1200))) == 1200
    with pytest.raises(ValueError, match="more than once"):
        ledger.record_outcomes("bad", WINDOW, [_outcome(entity, 1, "created"), _outcome(entity, 1, "failed")])
    with pytest.raises(ValueError, match="one entity per batch"):
        ledger.record_outcomes(
            "bad", WINDOW, [_outcome(entity, 1, "created"), _outcome("other", 2, "created")]
        )


def test_concurrent_writers_lose_nothing(ledger_url: str, entity: str) -> None:
    """Two ledgers (separate engines and connections, as two processes have) write the same records at once."""
    writers = [SyncLedger(ledger_url), SyncLedger(ledger_url)]
    errors: list[BaseException] = []

    def write(index: int, ledger: SyncLedger) -> None:
        try:
            for batch in range(10):
                ledger.record_outcomes(
                    f"run-{index}",
                    WINDOW,
                    [
                        _outcome(
                            entity,
                            record,
                            "updated",
                            workbooks_id=record,
                            outreach_updated_at=T0,
                            values={"writer": index, "batch": batch},
                        )
                        for record in range(20)
                    ],
                )
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i, w)) for i, w in enumerate(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for writer in writers:
        writer.dispose()
    assert errors == []
    ledger = SyncLedger(ledger_url)
    assert all(len(ledger.history(entity, record)) == 20 for record in range(20))
    assert ledger.run_summary("run-0", entity).counts["updated"] == 200
    assert ledger.run_summary("run-1", entity).counts["updated"] == 200
    ledger.dispose()


def test_naive_datetimes_are_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        SyncWindow(start=datetime(2024, 1, 1), end=datetime(2024, 1, 2))


def test_repr_hides_the_password(postgres_database_url: str) -> None:
    # A throwaway database: opening a ledger migrates it, which must never touch the server's own databases.
    with_password = postgres_database_url.replace("://postgres@", "://postgres:s3cret@")
    assert "s3cret" in with_password
    ledger = SyncLedger(with_password)
    assert "s3cret" not in repr(ledger)
    ledger.dispose()
