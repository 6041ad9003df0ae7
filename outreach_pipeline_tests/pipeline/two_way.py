"""Helpers of the two-way tests: Workbooks records made through the API, both clocks pinned, write counts."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg

from outreach_pipeline.clients.outreach import OutreachClient
from outreach_pipeline.clients.workbooks import WorkbooksClient, WriteOp
from outreach_pipeline.definitions import build_definitions as build_code_location
from outreach_pipeline.defs.assets import FLOWS
from outreach_pipeline.defs.assets_outreach import REVERSE_KEYS
from outreach_pipeline.defs.io_manager import WindowedParquetIOManager
from outreach_pipeline.defs.jobs import SYNC_JOB
from outreach_pipeline.defs.resources import LedgerResource, OutreachResource, SyncSettings, WorkbooksResource
from outreach_pipeline.sandbox.credentials import SANDBOX_OUTREACH_AUTH, SANDBOX_WORKBOOKS_AUTH
from outreach_pipeline.settings import PipelineSettings
from outreach_pipeline_tests.pipeline.harness import (
    QUIET_LOGS,
    Pipeline,
    outreach_records,
    partition_key,
    start_pinned_sandbox,
    step_failures,
)

#: Windows after the Outreach seed (which ends at PINNED_NOW, 2026-11-03 00:00): Workbooks edits land here.
FIRST_EDIT_WINDOW = datetime(2026, 11, 3, 5, tzinfo=UTC)
HOUR = timedelta(hours=1)
SMALL_SEED = {"prospects": 30, "accounts": 6, "opportunities": 6, "seed_days": 1}


def set_clocks(pipe: Pipeline, moment: datetime) -> None:
    """Stamp writes in both systems with `moment`."""
    pipe.sandbox.outreach_store.now = lambda: moment
    pipe.sandbox.workbooks_store._clock = lambda: moment  # the store's clock hook (its constructor takes it)


@contextmanager
def workbooks_client(pipe: Pipeline) -> Iterator[WorkbooksClient]:
    client = WorkbooksClient(pipe.sandbox.workbooks_url, **SANDBOX_WORKBOOKS_AUTH)
    try:
        yield client
    finally:
        client.close()


def create_workbooks(pipe: Pipeline, controller: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Create one Workbooks record through the API and return it as read back."""
    with workbooks_client(pipe) as client:
        outcome = client.write_one(controller, WriteOp(action="create", fields=fields))
        return read_workbooks(pipe, controller, int(outcome.id))


def read_workbooks(pipe: Pipeline, controller: str, record_id: int) -> dict[str, Any]:
    with workbooks_client(pipe) as client:
        rows = client.lookup(controller, "id", [record_id])
    assert len(rows) == 1, rows
    return rows[0]


def edit_workbooks(pipe: Pipeline, controller: str, record_id: int, fields: dict[str, Any]) -> None:
    current = read_workbooks(pipe, controller, record_id)
    with workbooks_client(pipe) as client:
        client.write_one(controller, WriteOp(action="update", id=record_id, lock_version=int(current["lock_version"]),
                                             fields=fields))


def outreach_writes(pipe: Pipeline) -> int:
    """POST/PATCH requests to Outreach so far."""
    requests = pipe.sandbox.outreach_middleware.stats.snapshot()["requests"]
    return sum(count for endpoint, count in requests.items() if endpoint.startswith(("POST /api", "PATCH /api")))


def workbooks_writes(pipe: Pipeline) -> int:
    """Write requests to Workbooks so far."""
    return sum(pipe.workbooks_writes().values())


def outreach_by_id(pipe: Pipeline, resource_type: str) -> dict[int, Any]:
    return {record.id: record for record in outreach_records(pipe.sandbox, resource_type)}


# ----------------------------------------------------------------------------- pipelines and asset subsets



def _pulled_for(outreach_name: str) -> list[dg.AssetKey]:
    """`outreach/referenced_<name>` and what it reads (transitively): the extracts pointing at the entity
    (opportunities, tasks, calls and sequence states point at prospects, calls at tasks), the records pulled
    for them, and the entity's own extract."""
    flows = {flow.outreach_name: flow for flow in FLOWS}
    flow = flows[outreach_name]
    if flow.referenced_key is None:
        return []
    keys: list[dg.AssetKey] = []
    for key in [key for name, _ in flow.referenced_by for key in [*_pulled_for(name), flows[name].extract_key]]:
        if key not in keys:
            keys.append(key)
    return [*keys, *([flow.extract_key] if flow.extract_key not in keys else []), flow.referenced_key]


#: Outreach -> Workbooks and Workbooks -> Outreach assets of people/prospects, for runs of one direction.
TO_WORKBOOKS_PEOPLE = [*_pulled_for("prospects"), dg.AssetKey(["staged", "people"]),
                       dg.AssetKey(["outreach", "prospect_email_holders"]), dg.AssetKey(["workbooks", "people"])]
#: The Workbooks -> Outreach assets (three multi-asset steps, every record type).
TO_OUTREACH = list(REVERSE_KEYS)


@contextmanager
def two_way_pipeline(home: Path, mapping_path: Path | None = None, sync_settings: SyncSettings | None = None,
                     **config: Any) -> Iterator[Pipeline]:
    """Like `harness.pipeline`, with the sync reading `mapping_path` (the packaged mapping by default), or with
    `sync_settings` instead."""
    sandbox = start_pinned_sandbox(**config)
    ledger_url = f"sqlite:///{home / 'ledger.db'}"
    try:
        defs = build_code_location(PipelineSettings(), resources={
            "outreach": OutreachResource(base_url=sandbox.outreach_url, token_store_path=str(home / "tokens.json")),
            "workbooks": WorkbooksResource(base_url=sandbox.workbooks_url),
            "ledger": LedgerResource(url=ledger_url),
            "sync_settings": sync_settings or SyncSettings(mapping_path=str(mapping_path) if mapping_path else None),
            "window_io_manager": WindowedParquetIOManager(base_dir=str(home / "windows")),
        })
        (home / "dagster").mkdir(parents=True, exist_ok=True)
        with dg.instance_for_test(temp_dir=str(home / "dagster")) as instance:
            yield Pipeline(sandbox=sandbox, instance=instance, defs=defs, ledger_url=ledger_url)
    finally:
        sandbox.stop()


def run_assets(pipe: Pipeline, window: datetime, keys: list[dg.AssetKey], *, expect_success: bool = True
               ) -> dg.ExecuteInProcessResult:
    """Materialise only `keys` of the scheduled job for one window; fails the caller's test on a failed step
    unless `expect_success` is False."""
    result = pipe.defs.resolve_job_def(SYNC_JOB).execute_in_process(
        instance=pipe.instance, partition_key=partition_key(window), asset_selection=keys, raise_on_error=False,
        run_config=dg.RunConfig(loggers=QUIET_LOGS["loggers"]),
    )
    assert result.success or not expect_success, step_failures(result)
    return result


#: A Person whose email the "duplicate" of `REFUSED_PEOPLE` also has.
HELD_EMAIL = "held@refused.example"
#: People Outreach refuses, by last name: two invalid emails and a duplicate of `HELD_EMAIL`.
REFUSED_PEOPLE = {"bad_email_1": "not an email", "bad_email_2": "missing-at.example", "duplicate": HELD_EMAIL}
#: The flags a person clears on a refused Person so the next window reads it again.
CLEARED_FLAGS = {"cf_person_outreach_sync_error": False, "cf_person_outreach_duplicate": False}


def create_refused_people(pipe: Pipeline) -> dict[str, int]:
    """The Person holding `HELD_EMAIL`, then the `REFUSED_PEOPLE` (all to sync); their Workbooks ids by name.

    The holder is created first (a lower Workbooks id): a run creates and links it, then meets the duplicate of
    its email, which is refused, not adopted."""
    create_workbooks(pipe, "crm/people", {"person_first_name": "Holds", "person_last_name": "Email",
                                          "main_location[email]": HELD_EMAIL, "cf_person_sync_to_outreach": True})
    return {name: int(create_workbooks(pipe, "crm/people", {
        "person_first_name": "Refused", "person_last_name": name, "main_location[email]": email,
        "cf_person_sync_to_outreach": True})["id"]) for name, email in REFUSED_PEOPLE.items()}


def person_fields(pipe: Pipeline, person_id: int) -> dict[str, Any]:
    return read_workbooks(pipe, "crm/people", person_id)


def prospect(pipe: Pipeline, outreach_id: int) -> Any:
    return pipe.sandbox.outreach_store.get_many("prospect", [outreach_id])[0]


def edit_prospect(pipe: Pipeline, outreach_id: int, attributes: dict[str, Any]) -> None:
    """Edit an Outreach prospect through the API, as a user in Outreach would."""
    with outreach_client(pipe) as client:
        client.update("prospects", outreach_id, attributes)


@contextmanager
def outreach_client(pipe: Pipeline) -> Iterator[OutreachClient]:
    client = OutreachClient(pipe.sandbox.outreach_url, **SANDBOX_OUTREACH_AUTH)
    try:
        yield client
    finally:
        client.close()
