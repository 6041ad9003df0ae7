"""A real pipeline against real sandboxes: the Dagster job over HTTP, and independent reads of both stores.

Nothing here uses the planner or the loader: the expected Workbooks values are derived from the Outreach
store with the mapping file's rules (trim, format conversion), so the acceptance tests check the pipeline
rather than restate it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg

from outreach_pipeline.clients.workbooks import WorkbooksClient
from outreach_pipeline.definitions import build_definitions as build_code_location
from outreach_pipeline.defs.assets import FLOWS
from outreach_pipeline.defs.io_manager import WindowedParquetIOManager
from outreach_pipeline.defs.jobs import FULL_SYNC_JOB, SYNC_JOB, full_sync_run_config
from outreach_pipeline.defs.resources import LedgerResource, OutreachResource, SyncSettings, WorkbooksResource
from outreach_pipeline.engine.install import install
from outreach_pipeline.engine.ledger import SyncLedger
from outreach_pipeline.mapping.models import load_mapping_set
from outreach_pipeline.sandbox.credentials import SANDBOX_WORKBOOKS_AUTH
from outreach_pipeline.sandbox.runtime import RunningSandbox, SandboxConfig, start_sandbox
from outreach_pipeline.sandbox.workbooks.store import ReadQuery
from outreach_pipeline.settings import PipelineSettings

#: End of the seeded span: two days of hourly windows after the first partition (2026-11-01-00:00).
PINNED_NOW = datetime(2026, 11, 3, tzinfo=UTC)
WINDOW = timedelta(hours=1)
PARTITION_FORMAT = "%Y-%m-%d-%H:%M"
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
JOB_NAME = SYNC_JOB
WORKBOOKS_WRITE = "PUT /crm/{}.api"
LINK_KEYS = {"accounts": "cf_organisation_outreach_id", "prospects": "cf_person_outreach_id",
             "opportunities": "cf_opportunity_outreach_id"}
OUTREACH_KINDS = {"accounts": "account", "prospects": "prospect", "opportunities": "opportunity"}
CORE_ENTITIES = ("accounts", "prospects", "opportunities")
CONTROLLERS = {"accounts": "crm/organisations", "prospects": "crm/people", "opportunities": "crm/opportunities"}


def partition_key(moment: datetime) -> str:
    """The hourly partition key of the window starting at `moment`."""
    return moment.strftime(PARTITION_FORMAT)


def seeded_windows(days: int) -> list[datetime]:
    """Starts of every hourly window covering the `days` before PINNED_NOW, oldest first."""
    first = PINNED_NOW - timedelta(days=days)
    return [first + WINDOW * hour for hour in range(days * 24)]


@dataclass
class Pipeline:
    """One sandbox, one Dagster instance and the code location's job wired to both."""

    sandbox: RunningSandbox
    instance: dg.DagsterInstance
    defs: dg.Definitions
    ledger_url: str | None = None

    def run(
        self, first: datetime, last: datetime | None = None, *, raise_on_error: bool = True, job: str = JOB_NAME,
        asset_selection: list[dg.AssetKey] | None = None,
    ) -> dg.ExecuteInProcessResult:
        """Run the sync job once over the windows `first`..`last` (inclusive starts), as a backfill does
        (only `asset_selection` of it when given)."""
        last = last or first
        return self.defs.resolve_job_def(job).execute_in_process(
            instance=self.instance,
            asset_selection=asset_selection,
            tags={"dagster/asset_partition_range_start": partition_key(first),
                  "dagster/asset_partition_range_end": partition_key(last)},
            raise_on_error=raise_on_error,
            # Per-step DEBUG lines cost about a tenth of a short run; warnings and errors still show. Run config
            # given here replaces a job's own, so the full sync's is merged back in.
            run_config=dg.RunConfig(
                ops=full_sync_run_config().ops if job == FULL_SYNC_JOB else None, loggers=QUIET_LOGS["loggers"]
            ),
        )

    def core_selection(self) -> list[dg.AssetKey]:
        """The Outreach -> Workbooks steps of accounts, prospects and opportunities and everything they read
        (the engagement extracts whose prospects are pulled in): for tests about those three entities only,
        at a fraction of the whole job's steps."""
        loads = dg.AssetSelection.assets(*(flow.load_key for flow in FLOWS if flow.entity in CORE_ENTITIES))
        return sorted(loads.upstream().resolve(self.defs.resolve_asset_graph()))

    def open_ledger(self) -> SyncLedger:
        """The sync ledger the job writes (the caller disposes of it)."""
        assert self.ledger_url is not None, "this Pipeline was built without a ledger URL"
        return SyncLedger(self.ledger_url)

    def workbooks_writes(self) -> dict[str, int]:
        """Workbooks PUT requests so far, per controller (people, organisations, activities, custom records)."""
        requests = self.sandbox.workbooks_middleware.stats.snapshot()["requests"]
        return {endpoint: count for endpoint, count in requests.items() if endpoint.startswith("PUT /")}

    def workbooks_rows(self, entity: str) -> list[dict[str, Any]]:
        """Every Workbooks record of the entity's controller, straight from the store."""
        store = self.sandbox.workbooks_store
        rows: list[dict[str, Any]] = []
        while True:
            page = store.read(CONTROLLERS[entity], ReadQuery(start=len(rows), limit=5000, skip_total=True,
                                                                sort=(("id", "ASC"),)))
            rows += page.data
            if len(page.data) < 5000:
                return rows

    def synced_rows(self, entity: str) -> dict[int, dict[str, Any]]:
        """Workbooks records carrying an Outreach link key, by Outreach id; duplicates fail the caller's test."""
        by_outreach_id: dict[int, dict[str, Any]] = {}
        for row in self.workbooks_rows(entity):
            key = row.get(LINK_KEYS[entity])
            if key in (None, ""):
                continue
            outreach_id = int(key)
            assert outreach_id not in by_outreach_id, f"two Workbooks records for Outreach {entity} {outreach_id}"
            by_outreach_id[outreach_id] = row
        return by_outreach_id

    def load_metadata(self, result: dg.ExecuteInProcessResult) -> dict[str, dict[str, Any]]:
        """The load assets' record counts of one run, per Workbooks asset name: each window's counts
        (``records_*``, ``dagster/row_count``, ``failed_records_not_shown``) summed over the run's partitions,
        the other keys as the last partition has them."""
        metadata: dict[str, dict[str, Any]] = {}
        for flow in FLOWS:
            summed: dict[str, Any] = {}
            for materialization in result.asset_materializations_for_node(flow.load_key.to_python_identifier()):
                for key, value in materialization.metadata.items():
                    if key.startswith("records_") or key in ("dagster/row_count", "failed_records_not_shown"):
                        summed[key] = summed.get(key, 0) + value.value
                    else:
                        summed[key] = value.value
            if summed:
                metadata[flow.workbooks_name] = summed
        return metadata


#: Tests retry a failed record on the very next run (seconds later), as before retries backed off; the tests of
#: the backoff itself pass their own settings.
RETRY_EVERY_RUN = SyncSettings(retry_backoff_hours=0)


def build_definitions(sandbox: RunningSandbox, home: Path, ledger_url: str | None = None,
                      sync_settings: SyncSettings = RETRY_EVERY_RUN) -> dg.Definitions:
    """The production assets and job, with resources pointed at the sandbox and files under `home`."""
    return build_code_location(
        PipelineSettings(),
        resources={
            "outreach": OutreachResource(base_url=sandbox.outreach_url, token_store_path=str(home / "tokens.json")),
            "workbooks": WorkbooksResource(base_url=sandbox.workbooks_url),
            "ledger": LedgerResource(url=ledger_url or f"sqlite:///{home / 'ledger.db'}"),
            "sync_settings": sync_settings,
            "window_io_manager": WindowedParquetIOManager(base_dir=str(home / "windows")),
        },
    )


def start_pinned_sandbox(**config: Any) -> RunningSandbox:
    """An in-memory sandbox seeded up to PINNED_NOW, with the Outreach clock pinned there and fields installed."""
    sandbox = start_sandbox(SandboxConfig(data_dir=None, outreach_port=0, workbooks_port=0, seed_now=PINNED_NOW,
                                          workbooks_people=0, **config))
    sandbox.outreach_store.now = lambda: PINNED_NOW
    client = WorkbooksClient(sandbox.workbooks_url, **SANDBOX_WORKBOOKS_AUTH)
    try:
        report = install(client, load_mapping_set())
    finally:
        client.close()
    assert not [item for item in report.items if item.status not in ("created", "present")], report
    return sandbox


@contextmanager
def pipeline(home: Path, ledger_url: str | None = None, instance: dg.DagsterInstance | None = None,
             sync_settings: SyncSettings = RETRY_EVERY_RUN, **config: Any) -> Iterator[Pipeline]:
    """A pinned sandbox plus a test Dagster instance (or the given one), torn down afterwards."""
    sandbox = start_pinned_sandbox(**config)
    ledger_url = ledger_url or f"sqlite:///{home / 'ledger.db'}"
    try:
        defs = build_definitions(sandbox, home, ledger_url, sync_settings)
        if instance is not None:
            yield Pipeline(sandbox=sandbox, instance=instance, defs=defs, ledger_url=ledger_url)
        else:
            (home / "dagster").mkdir(parents=True, exist_ok=True)
            with dg.instance_for_test(temp_dir=str(home / "dagster")) as test_instance:
                yield Pipeline(sandbox=sandbox, instance=test_instance, defs=defs, ledger_url=ledger_url)
    finally:
        sandbox.stop()


# ----------------------------------------------------------------------------- expected values


def clean_text(value: Any) -> str | None:
    """What a string mapping writes: CRLF folded, trimmed, blank as absent."""
    if value is None:
        return None
    text = str(value).replace("\r\n", "\n").strip()
    return text or None


def outreach_records(sandbox: RunningSandbox, resource_type: str) -> list[Any]:
    """Every record of an Outreach type, from the store (not the API)."""
    table = sandbox.outreach_store.table(resource_type)
    with sandbox.outreach_store.engine.connect() as conn:
        ids = [row.id for row in conn.execute(table.select().with_only_columns(table.c.id))]
    return sandbox.outreach_store.get_many(resource_type, ids)


def attributes_json(record: Any) -> str:
    """A record's attributes as stable text (for messages)."""
    return json.dumps(record.attributes, sort_keys=True, default=str)[:300]


def as_date(value: Any) -> date | None:
    """An Outreach date/datetime string as a date."""
    if value in (None, ""):
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).date()


# ----------------------------------------------------------------------------- clock, windows, run results


@contextmanager
def outreach_clock_at(sandbox: RunningSandbox, moment: datetime) -> Iterator[None]:
    """Stamp Outreach writes made inside the block with `moment`, then pin the clock back to PINNED_NOW."""
    sandbox.outreach_store.now = lambda: moment
    try:
        yield
    finally:
        sandbox.outreach_store.now = lambda: PINNED_NOW


def window_start(moment: datetime) -> datetime:
    """Start of the hourly window holding `moment`."""
    return moment.replace(minute=0, second=0, microsecond=0)


def updated_at(record: Any) -> datetime:
    """An Outreach store record's updatedAt as a UTC datetime."""
    return datetime.fromtimestamp(record.updated_at / 1000, tz=UTC)


def step_failures(result: dg.ExecuteInProcessResult) -> list[str]:
    """`step: error message` for each failed step of a run, for assertion messages."""
    return [
        f"{event.step_key}: {event.step_failure_data.error.message.strip() if event.step_failure_data.error else '?'}"
        for event in result.all_events
        if event.is_step_failure and event.step_failure_data is not None
    ]


# ----------------------------------------------------------------------------- Workbooks content snapshots

#: Fields a write stamps or numbers differently in every sandbox, whatever it wrote.
VOLATILE_FIELDS = frozenset({
    "id", "lock_version", "created_at", "updated_at", "created_by", "updated_by", "created_through",
    "created_through_reference", "object_ref",
})
#: Fields holding another Workbooks record's id, and that record's entity.
REFERENCE_FIELDS = {"employer_link": "accounts", "organisation_id": "accounts", "opportunity_contact_ids": "prospects"}

RecordKey = tuple[str, Any]


def _record_key(entity: str, row: dict[str, Any]) -> RecordKey:
    """("outreach", id) for a synced record; ("workbooks", id) for one the integration never linked (seeded)."""
    link = row.get(LINK_KEYS[entity])
    return ("outreach", int(link)) if link not in (None, "") else ("workbooks", int(row["id"]))


def _reference(keys: dict[int, RecordKey], value: Any) -> Any:
    if value in (None, ""):
        return None
    if isinstance(value, str) and value.startswith("["):
        return [keys.get(int(item), ("missing", int(item))) for item in value.strip("[]").split(",") if item]
    return keys.get(int(value), ("missing", int(value)))


def workbooks_content(pipe: Pipeline) -> dict[str, dict[RecordKey, dict[str, Any]]]:
    """Every Workbooks record per entity, keyed by its Outreach link (or Workbooks id when unlinked).

    Ids, lock versions, stamps and references are what differ between two sandboxes holding the same
    content, so references become the referenced record's key and the rest is dropped. Two records with
    one link key fail the caller (a duplicate).
    """
    rows = {entity: pipe.workbooks_rows(entity) for entity in LINK_KEYS}
    keys = {entity: {int(row["id"]): _record_key(entity, row) for row in entity_rows}
            for entity, entity_rows in rows.items()}
    content: dict[str, dict[RecordKey, dict[str, Any]]] = {}
    for entity, entity_rows in rows.items():
        by_key: dict[RecordKey, dict[str, Any]] = {}
        for row in entity_rows:
            key = keys[entity][int(row["id"])]
            assert key not in by_key, f"two Workbooks {entity} records for {key}"
            by_key[key] = {
                name: _reference(keys[REFERENCE_FIELDS[name]], value) if name in REFERENCE_FIELDS else value
                for name, value in row.items()
                if name not in VOLATILE_FIELDS and not name.startswith("_can_")
            }
        content[entity] = by_key
    return content


def linked_ids(content: dict[str, dict[RecordKey, dict[str, Any]]]) -> dict[str, set[int]]:
    """Per entity, the Outreach ids a `workbooks_content` snapshot holds a linked Workbooks record for."""
    return {entity: {key[1] for key in records if key[0] == "outreach"} for entity, records in content.items()}


def expected_links(pipe: Pipeline, first: datetime, end: datetime = PINNED_NOW) -> dict[str, set[int]]:
    """Per entity, the Outreach ids changed in [first, end) that the ledger does not hold as failed.

    What a sync of those windows must have linked in Workbooks, read from the Outreach store and the ledger
    rather than from the run. Each entity must have such records, so a snapshot compared against another
    cannot pass by being empty on both sides.
    """
    ledger = pipe.open_ledger()
    try:
        expected = {
            entity: {record.id for record in outreach_records(pipe.sandbox, kind) if first <= updated_at(record) < end}
            - set(ledger.failed_ids(entity))
            for entity, kind in OUTREACH_KINDS.items()
        }
    finally:
        ledger.dispose()
    assert all(expected.values()), {entity: len(ids) for entity, ids in expected.items()}
    return expected


def content_differences(expected: dict[str, dict[RecordKey, dict[str, Any]]],
                        actual: dict[str, dict[RecordKey, dict[str, Any]]], limit: int = 10) -> list[str]:
    """Readable differences between two `workbooks_content` snapshots (at most `limit`)."""
    differences: list[str] = []
    for entity in expected.keys() | actual.keys():
        want, got = expected.get(entity, {}), actual.get(entity, {})
        differences += [f"{entity} {key}: missing" for key in sorted(want.keys() - got.keys(), key=str)]
        differences += [f"{entity} {key}: unexpected" for key in sorted(got.keys() - want.keys(), key=str)]
        for key in sorted(want.keys() & got.keys(), key=str):
            changed = {name: (want[key].get(name), got[key].get(name))
                       for name in want[key].keys() | got[key].keys() if want[key].get(name) != got[key].get(name)}
            if changed:
                differences.append(f"{entity} {key}: (expected, actual) {changed}")
    return differences[:limit]
