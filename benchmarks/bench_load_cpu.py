"""Client CPU of the load path, per 1,000 prospects: staging, planning, batch and form encoding, ledger records.

    .venv/bin/python benchmarks/bench_load_cpu.py [--prospects 5000] [--profile]

No sandbox and no Dagster: synthetic extracted prospects are staged with the default mapping, half of them
get a linked Workbooks twin (a changed first name, a ledger base) so the planner merges as well as creates,
and the write ops are encoded as 100-object batches and form bodies; the outcomes are then recorded, 100 at a
time as the load records each confirmed batch, in a fresh SQLite ledger in a temporary directory. CPU time (`time.process_time`) of each
part, so the figure does not depend on what else the machine runs. BENCHMARKS.md ("Client CPU") records it.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from outreach_pipeline.clients.workbooks_wire import MAX_OBJECTS_PER_WRITE, encode_batch, encode_form
from outreach_pipeline.engine.ledger import RecordOutcome, RecordState, SyncLedger, SyncWindow
from outreach_pipeline.engine.load import _op_for
from outreach_pipeline.engine.plan import Decision, plan_sync
from outreach_pipeline.mapping.models import EntityMapping, load_mapping_set
from outreach_pipeline.mapping.transform import stage_records

UPDATED_AT = pd.Timestamp("2026-01-01T10:00:00Z")
BLANK_ATTRIBUTES = ("middleName", "addressStreet", "addressState", "addressZip", "addressCountry", "linkedInUrl",
                    "twitterUrl", "facebookUrl", "websiteUrl1", "emailOptedOut", "externalId", "mobilePhones")


def extracted_prospects(count: int) -> pd.DataFrame:
    """An extracted prospect frame (docs/ARCHITECTURE.md) of `count` valid prospects."""
    frame = pd.DataFrame({
        "id": range(1, count + 1), "createdAt": UPDATED_AT, "updatedAt": UPDATED_AT,
        "firstName": "Ann", "lastName": [f"Lee{i}" for i in range(count)], "title": "Head of Sales",
        "addressCity": "Leeds", "emails": [[f"p{i}@example.com"] for i in range(1, count + 1)],
        "workPhones": [["0113 496 0000"]] * count, "accountId": [i % 50 + 1 for i in range(count)],
    })
    for column in BLANK_ATTRIBUTES:
        frame[column] = None
    frame["accountId"] = frame["accountId"].astype("Int64")
    return frame


def twins_and_states(count: int) -> tuple[list[dict[str, Any]], dict[int, RecordState]]:
    """Workbooks people linked to the first half of the prospects, and their ledger states."""
    twins, states = [], {}
    for outreach_id in range(1, count // 2 + 1):
        twins.append({
            "id": 100_000 + outreach_id, "lock_version": 3, "cf_person_outreach_id": outreach_id,
            "cf_person_sync_to_outreach": True, "cf_person_outreach_sync_error": False,
            "cf_person_outreach_duplicate": False, "person_first_name": "Bob" if outreach_id % 2 else "Ann",
            "person_last_name": f"Lee{outreach_id - 1}", "main_location[email]": f"p{outreach_id}@example.com",
        })
        states[outreach_id] = RecordState(
            entity="prospects", outreach_id=outreach_id, workbooks_id=100_000 + outreach_id, outreach_updated_at=None,
            values_hash=None, values={"person_first_name": "Ann"}, last_outcome="created", last_reason=None,
            last_error=None, window_start=None, window_end=None, last_run_id="r0", needs_retry=False,
            recorded_at=datetime(2026, 1, 1, tzinfo=UTC),
        )
    return twins, states


def record_in_ledger(decisions: list[Decision]) -> None:
    """Each decision's outcome built and recorded as the loader does it, one write batch (100) at a time."""
    window = SyncWindow(start=UPDATED_AT.to_pydatetime(), end=UPDATED_AT.to_pydatetime() + timedelta(hours=1))
    with tempfile.TemporaryDirectory() as directory:
        ledger = SyncLedger(f"sqlite:///{directory}/ledger.db")
        ledger.start_run("bench", "prospects", window)
        for offset in range(0, len(decisions), MAX_OBJECTS_PER_WRITE):
            outcomes = [
                RecordOutcome(entity="prospects", outreach_id=d.outreach_id, outcome=d.ledger_outcome,
                              workbooks_id=d.workbooks_id or 200_000 + d.outreach_id,
                              outreach_updated_at=d.outreach_updated_at,
                              values=d.values if d.ledger_outcome.applied else None, diff=d.fields or None,
                              reason=d.reason, error=d.error, window_start=window.start, workbooks_lock_version=1)
                for d in decisions[offset:offset + MAX_OBJECTS_PER_WRITE]
            ]
            ledger.record_outcomes("bench", window, outcomes)
        ledger.dispose()


def timed(label: str, count: int, work: Callable[[], Any]) -> Any:
    started = time.process_time()
    result = work()
    seconds = time.process_time() - started
    print(f"{label:<28} {seconds:7.3f} s CPU = {seconds * 1000 / count:.3f} s per 1,000 prospects")
    return result


def run(entity: EntityMapping, count: int) -> None:
    frame = extracted_prospects(count)
    twins, states = twins_and_states(count)
    id_maps = {"accounts": {account: 9_000 + account for account in range(1, 40)}}
    staged = timed("stage_records", count, lambda: stage_records(frame, entity))
    plan = timed("plan_sync", count, lambda: plan_sync(staged, entity, twins, states, id_maps))
    ops = [op for decision in plan.decisions if (op := _op_for(decision)) is not None]
    batches = timed("encode_batch", count, lambda: [
        encode_batch(ops[offset:offset + MAX_OBJECTS_PER_WRITE]) for offset in range(0, len(ops), MAX_OBJECTS_PER_WRITE)
    ])
    timed("encode_form (request body)", count, lambda: [encode_form(batch) for batch in batches])
    timed("record_outcomes (ledger)", count, lambda: record_in_ledger(plan.decisions))
    print(f"decisions: {plan.counts()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prospects", type=int, default=5000)
    parser.add_argument("--profile", action="store_true", help="also print a CPU-time profile of a second pass")
    args = parser.parse_args(argv)
    entity = load_mapping_set().entity("prospects")
    run(entity, args.prospects)
    if args.profile:
        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
        run(entity, args.prospects)
        profiler.disable()
        pstats.Stats(profiler, stream=sys.stdout).strip_dirs().sort_stats("tottime").print_stats(30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
