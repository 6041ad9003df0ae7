"""First sync and dry run, over real HTTP against a small sandbox seeded over the two days before PINNED_NOW, with
the first partition three hours before it (2026-11-02-21:00), so most records are older than every window (three
windows keep the run short).

* The `first_sync` sensor's run (full_sync_job over every complete window, both directions from the beginning)
  leaves every Outreach record linked in Workbooks (read over HTTP and in the ledger) except the ones the ledger
  holds as failed, the Workbooks records selected for Outreach (older than the first window included) linked in
  Outreach, and every window it covered materialised. The sensor then launches nothing more.
* A dry run (the UI's `dry_run/sync_plan` asset and the CLI's `sync --dry-run --json`) of a window with changes
  in both systems makes 0 write requests to either sandbox, leaves the ledger byte for byte as it was and
  materialises no sync asset; the live run straight after gives the same counts per entity.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from outreach_pipeline.clients.workbooks import Filter, WorkbooksClient
from outreach_pipeline.definitions import build_definitions as build_code_location
from outreach_pipeline.defs.assets import FLOWS
from outreach_pipeline.defs.assets_outreach import REVERSE_FLOWS, REVERSE_KEYS
from outreach_pipeline.defs.dry_run import PLAN_KEY, TO_OUTREACH, TO_WORKBOOKS
from outreach_pipeline.defs.first_sync import build_first_sync_sensor
from outreach_pipeline.defs.headless import sync_windows_of
from outreach_pipeline.defs.jobs import FULL_SYNC_JOB
from outreach_pipeline.engine.outcome import Outcome
from outreach_pipeline.mapping.personal import MASK
from outreach_pipeline.sandbox.credentials import SANDBOX_WORKBOOKS_AUTH
from outreach_pipeline.settings import PipelineSettings
from outreach_pipeline_tests.pipeline.harness import (
    LINK_KEYS,
    OUTREACH_KINDS,
    PINNED_NOW,
    QUIET_LOGS,
    Pipeline,
    outreach_records,
    partition_key,
    pipeline,
    step_failures,
    updated_at,
)
from outreach_pipeline_tests.pipeline.two_way import (
    create_workbooks,
    edit_prospect,
    edit_workbooks,
    outreach_writes,
    read_workbooks,
    set_clocks,
    workbooks_writes,
)

FIRST_PARTITION = datetime(2026, 11, 2, 21, tzinfo=UTC)
EDIT_WINDOW = datetime(2026, 11, 3, 2, tzinfo=UTC)  # after the first sync's last window (2026-11-02-23:00)
OLD = datetime(2026, 10, 20, 9, tzinfo=UTC)  # a Workbooks change before the first partition
CONTROLLERS = {"accounts": "crm/organisations", "prospects": "crm/people", "opportunities": "crm/opportunities"}
COUNTED = [outcome.value for outcome in Outcome]


def _ledger_dump(pipe: Pipeline) -> list[str]:
    assert pipe.ledger_url is not None
    with sqlite3.connect(pipe.ledger_url.removeprefix("sqlite:///")) as connection:
        return list(connection.iterdump())


def _linked_over_http(pipe: Pipeline, entity: str) -> dict[int, int]:
    """Outreach id -> Workbooks id of every Workbooks record carrying an Outreach link key, read over HTTP."""
    link_key = LINK_KEYS[entity]
    client = WorkbooksClient(pipe.sandbox.workbooks_url, **SANDBOX_WORKBOOKS_AUTH)
    try:
        rows = list(client.iter_records(CONTROLLERS[entity], [Filter(field="id", op="ge", value=0)], ["id", link_key]))
    finally:
        client.close()
    return {int(row[link_key]): int(row["id"]) for row in rows if row.get(link_key) not in (None, "")}


def _materialisations(pipe: Pipeline) -> int:
    keys = [*(flow.load_key for flow in FLOWS), *REVERSE_KEYS]
    return sum(len(pipe.instance.get_materialized_partitions(key)) for key in keys)


def _live_counts(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str], dict[str, int]]:
    counts: dict[tuple[str, str], dict[str, int]] = {}
    names = {flow.load_key: (TO_WORKBOOKS, flow.workbooks_name) for flow in FLOWS}
    names |= {flow.write_key: (TO_OUTREACH, flow.outreach_name) for flow in REVERSE_FLOWS}
    for event in result.get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        assert materialization is not None
        if materialization.asset_key not in names:
            continue
        metadata = {k: v.value for k, v in materialization.metadata.items()}
        row = {name: int(metadata.get(f"records_{name}", 0)) for name in COUNTED}
        row[Outcome.UPDATED.value] += int(metadata.get("records_adopted", 0))
        counts[names[materialization.asset_key]] = row
    return counts


@contextmanager
def _pipeline(home: Path, **config: Any) -> Iterator[Pipeline]:
    """`harness.pipeline` with the first partition at FIRST_PARTITION."""
    with pipeline(home, **config) as pipe:
        settings = PipelineSettings(partitions_start=partition_key(FIRST_PARTITION))
        yield dataclasses.replace(pipe, defs=build_code_location(settings, resources=pipe.defs.resources))


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory):
    home: Path = tmp_path_factory.mktemp("first_sync")
    with _pipeline(home, prospects=24, accounts=6, opportunities=5, seed_days=2) as pipe:
        set_clocks(pipe, OLD)
        old_org = create_workbooks(pipe, "crm/organisations", {
            "name": "Old Workbooks Org", "website": "https://old.example", "cf_organisation_sync_to_outreach": True})
        set_clocks(pipe, PINNED_NOW)
        windows = sync_windows_of(pipe.defs)
        sensor = build_first_sync_sensor(windows, [flow.load_key for flow in FLOWS], clock=lambda: PINNED_NOW)
        context = dg.build_sensor_context(instance=pipe.instance)
        request = sensor(context)
        assert isinstance(request, dg.RunRequest), request
        result = pipe.defs.resolve_job_def(FULL_SYNC_JOB).execute_in_process(
            instance=pipe.instance, tags=request.tags, raise_on_error=False,
            run_config={**request.run_config, **QUIET_LOGS},
        )
        assert result.success, step_failures(result)
        yield pipe, sensor, context, old_org


def test_first_sync_links_every_record_however_old_and_materialises_every_window(synced) -> None:
    pipe, sensor, context, old_org = synced
    ledger = pipe.open_ledger()
    try:
        for entity, kind in OUTREACH_KINDS.items():
            records = outreach_records(pipe.sandbox, kind)
            assert any(updated_at(r) < FIRST_PARTITION for r in records), f"no {entity} older than the partitions"
            failed = set(ledger.failed_ids(entity))
            expected = {r.id for r in records} - failed
            assert len(failed) <= len(records) // 4, (entity, failed)
            linked = _linked_over_http(pipe, entity)
            assert expected <= linked.keys(), (entity, sorted(expected - linked.keys()))
            states = ledger.get_states(entity, expected)
            assert {i: s.workbooks_id for i, s in states.items()} == {i: linked[i] for i in expected}
    finally:
        ledger.dispose()
    # The Workbooks -> Outreach direction read from the beginning too: the organisation changed before the first
    # partition is linked to a new Outreach account.
    assert read_workbooks(pipe, "crm/organisations", old_org["id"]).get("cf_organisation_outreach_id")
    first, last = partition_key(FIRST_PARTITION), "2026-11-02-23:00"  # the last complete window at PINNED_NOW
    expected_keys = set(sync_windows_of(pipe.defs).get_partition_keys_in_range(dg.PartitionKeyRange(first, last)))
    for key in [*(flow.load_key for flow in FLOWS), *REVERSE_KEYS]:
        assert pipe.instance.get_materialized_partitions(key) == expected_keys, key
    # Launched once: the cursor, and then the tagged run, stop the sensor.
    assert isinstance(sensor(dg.build_sensor_context(instance=pipe.instance, cursor=context.cursor)), dg.SkipReason)
    assert isinstance(sensor(dg.build_sensor_context(instance=pipe.instance)), dg.SkipReason)


def test_dry_run_writes_nothing_and_predicts_the_live_counts(synced, capsys: pytest.CaptureFixture[str]) -> None:
    pipe, _, _, old_org = synced
    set_clocks(pipe, EDIT_WINDOW.replace(minute=10))
    prospect = next(r for r in outreach_records(pipe.sandbox, "prospect") if r.attributes.get("emails"))
    edit_prospect(pipe, prospect.id, {"firstName": "Dryrun", "emails": ["dry.run.person@example.com"]})
    edit_workbooks(pipe, "crm/organisations", old_org["id"], {"name": "Old Workbooks Org Renamed"})
    create_workbooks(pipe, "crm/people", {"person_first_name": "New", "person_last_name": "In Workbooks",
                                          "cf_person_sync_to_outreach": True})
    set_clocks(pipe, PINNED_NOW)
    key = partition_key(EDIT_WINDOW)
    writes = (outreach_writes(pipe), workbooks_writes(pipe))
    ledger, materialised = _ledger_dump(pipe), _materialisations(pipe)

    # The UI's way: materialise dry_run/sync_plan for the window.
    plan_run = pipe.defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=pipe.instance, asset_selection=[PLAN_KEY], partition_key=key, raise_on_error=False,
        run_config=QUIET_LOGS,
    )
    assert plan_run.success, step_failures(plan_run)
    (plan,) = plan_run.asset_materializations_for_node(PLAN_KEY.to_python_identifier())
    metadata = {k: v.value for k, v in plan.metadata.items()}
    assert metadata["dry_run"] is True
    # The CLI's way (`sync --dry-run --json`).
    from outreach_pipeline.cli_runs import print_dry_run

    capsys.readouterr()
    assert print_dry_run(pipe.defs, key, key, as_json=True, from_beginning=False) == 0
    printed = json.loads(capsys.readouterr().out)

    assert (outreach_writes(pipe), workbooks_writes(pipe)) == writes, "the dry run wrote to a sandbox"
    assert _ledger_dump(pipe) == ledger, "the dry run wrote to the ledger"
    assert _materialisations(pipe) == materialised, "the dry run materialised a sync asset"
    assert printed["counts"] == metadata["by_window"]

    updates = [r for r in printed["records"] if r["entity"] == "people" and r["outreach_id"] == prospect.id]
    assert [r["outcome"] for r in updates] == ["updated"], updates
    assert updates[0]["changes"]["person_first_name"]["new"] == "Dryrun"
    assert updates[0]["changes"]["person_first_name"]["old"] == prospect.attributes["firstName"]
    assert updates[0]["changes"]["main_location[email]"] == {"old": MASK, "new": MASK}
    assert "dry.run.person@example.com" not in json.dumps(metadata["planned_records"])
    dry: dict[tuple[str, str], dict[str, Any]] = {
        (row["direction"], row["entity"]): {name: row[name] for name in COUNTED} for row in metadata["totals"]
    }
    assert dry[(TO_OUTREACH, "prospects")]["created"] == 1 and dry[(TO_OUTREACH, "accounts")]["updated"] == 1, dry

    live = pipe.run(EDIT_WINDOW, raise_on_error=False)
    assert live.success, step_failures(live)
    live_counts = {name: counts for name, counts in _live_counts(live).items() if any(counts.values())}
    assert dry == live_counts
