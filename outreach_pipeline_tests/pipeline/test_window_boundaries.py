"""Acceptance: a sync window is [start, end): a change at `start` is that window's, a change at `end` the next's.

Records are written through the Outreach store with its clock pinned to the exact boundary instants, in
windows of 2026-11-01, which the seed (the day before PINNED_NOW) leaves empty, so each window holds only
this module's records.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from outreach_pipeline.engine.ledger import HistoryEntry, SyncLedger
from outreach_pipeline.sandbox.outreach.store import format_timestamp, to_epoch_ms
from outreach_pipeline_tests.pipeline.harness import (
    WINDOW,
    Pipeline,
    outreach_clock_at,
    outreach_records,
    pipeline,
    step_failures,
)

WINDOW_START = datetime(2026, 11, 1, 10, tzinfo=UTC)
WINDOW_END = WINDOW_START + WINDOW  # the next window's start
QUIET_WINDOW = datetime(2026, 11, 1, 5, tzinfo=UTC)  # nothing changed in it
JUST_BEFORE_END = WINDOW_END - timedelta(milliseconds=1)


@dataclass
class Boundaries:
    """The records at the boundaries and the three runs: the window, the window again, the next window."""

    pipe: Pipeline
    ledger: SyncLedger
    ids: dict[str, int]
    first: dg.ExecuteInProcessResult
    again: dg.ExecuteInProcessResult
    following: dg.ExecuteInProcessResult
    synced_after_first: dict[str, set[int]]

    def history(self, entity: str, name: str) -> list[HistoryEntry]:
        return self.ledger.history(entity, self.ids[name])


def _create_at(pipe: Pipeline, moment: datetime, resource_type: str, attributes: dict, relationships: dict) -> int:
    with outreach_clock_at(pipe.sandbox, moment):
        record = pipe.sandbox.outreach_store.create(resource_type, attributes, relationships)
    assert record.updated_at == to_epoch_ms(moment)
    return record.id


def _plant_boundary_records(pipe: Pipeline) -> dict[str, int]:
    stage = outreach_records(pipe.sandbox, "opportunityStage")[0].id
    ids: dict[str, int] = {}
    for name, moment in (("start", WINDOW_START), ("end", WINDOW_END), ("last_ms", JUST_BEFORE_END)):
        ids[f"account_{name}"] = _create_at(pipe, moment, "account", {"name": f"Boundary {name} Ltd"}, {})
        ids[f"prospect_{name}"] = _create_at(
            pipe, moment, "prospect",
            {"firstName": "Edge", "lastName": name, "emails": [f"boundary.{name}@edge.example"]},
            {"account": ids[f"account_{name}"]},
        )
        ids[f"opportunity_{name}"] = _create_at(
            pipe, moment, "opportunity",
            {"name": f"Boundary deal {name}", "amount": 1000, "currencyType": "GBP",
             "closeDate": format_timestamp(to_epoch_ms(datetime(2026, 12, 1, tzinfo=UTC)))},
            {"account": ids[f"account_{name}"], "opportunityStage": stage},
        )
    return ids


@pytest.fixture(scope="module")
def boundaries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Boundaries]:
    home: Path = tmp_path_factory.mktemp("boundaries")
    with pipeline(home, prospects=5, accounts=2, opportunities=2, seed_days=1) as pipe:
        ids = _plant_boundary_records(pipe)
        first = pipe.run(WINDOW_START, raise_on_error=False)
        synced_after_first = {entity: set(pipe.synced_rows(entity)) for entity in ("accounts", "prospects",
                                                                                   "opportunities")}
        again = pipe.run(WINDOW_START, raise_on_error=False)
        following = pipe.run(WINDOW_END, raise_on_error=False)
        ledger = pipe.open_ledger()
        try:
            yield Boundaries(pipe, ledger, ids, first, again, following, synced_after_first)
        finally:
            ledger.dispose()


ENTITIES = (("accounts", "account"), ("prospects", "prospect"), ("opportunities", "opportunity"))


def test_all_three_runs_succeed(boundaries: Boundaries) -> None:
    for result in (boundaries.first, boundaries.again, boundaries.following):
        assert result.success, step_failures(result)


@pytest.mark.parametrize(("entity", "kind"), ENTITIES)
def test_a_change_at_the_window_start_is_synced_by_that_window_exactly_once(
    boundaries: Boundaries, entity: str, kind: str
) -> None:
    for name in ("start", "last_ms"):
        outreach_id = boundaries.ids[f"{kind}_{name}"]
        assert outreach_id in boundaries.synced_after_first[entity], (kind, name)
        history = boundaries.history(entity, f"{kind}_{name}")
        writes = [entry for entry in history if entry.outcome in ("created", "updated")]
        assert [(e.outcome, e.run_id) for e in writes] == [("created", boundaries.first.run_id)], (name, history)
        assert {entry.window_start for entry in history} == {WINDOW_START}, (name, history)
        # The next window's run does not read it at all.
        assert boundaries.following.run_id not in {entry.run_id for entry in history}, (name, history)
    assert boundaries.pipe.synced_rows(entity).keys() >= {boundaries.ids[f"{kind}_start"]}


@pytest.mark.parametrize(("entity", "kind"), ENTITIES)
def test_a_change_at_the_window_end_belongs_to_the_next_window(boundaries: Boundaries, entity: str, kind: str) -> None:
    outreach_id = boundaries.ids[f"{kind}_end"]
    assert outreach_id not in boundaries.synced_after_first[entity]
    history = boundaries.history(entity, f"{kind}_end")
    assert [(e.outcome, e.run_id, e.window_start) for e in history] == [
        ("created", boundaries.following.run_id, WINDOW_END)
    ], history
    assert outreach_id in boundaries.pipe.synced_rows(entity)


#: The Workbooks assets of the entities this module creates records of, two per window.
SEEDED_HERE = ("organisations", "people", "opportunities")


def test_each_run_reports_exactly_its_windows_records(boundaries: Boundaries) -> None:
    for result, created, unchanged in ((boundaries.first, 2, 0), (boundaries.again, 0, 2),
                                       (boundaries.following, 1, 0)):
        for name, values in boundaries.pipe.load_metadata(result).items():
            if name not in SEEDED_HERE:  # engagement flows: this test creates no tasks, calls or sequences
                continue
            assert values["records_extracted"] == created + unchanged, (name, values)
            assert (values["records_created"], values["records_unchanged"]) == (created, unchanged), (name, values)


def test_a_window_in_which_nothing_changed_succeeds_and_writes_nothing(boundaries: Boundaries) -> None:
    before = boundaries.pipe.workbooks_writes()
    result = boundaries.pipe.run(QUIET_WINDOW, raise_on_error=False)
    assert result.success, step_failures(result)
    for name, values in boundaries.pipe.load_metadata(result).items():
        assert values["records_extracted"] == 0, (name, values)
    assert boundaries.pipe.workbooks_writes() == before
