"""Workbooks -> Outreach assets: `workbooks/changed_<records>` -> `outreach/<resource>_written` -> `workbooks/<records>_linked`.

Read in data-flow order in the lineage graph: the Workbooks records the window selected, what was written to
Outreach from them, and the Outreach ids and flags written back onto them. Each stage is one step (a
multi-asset) for every record type, as a step costs Dagster's overhead on every hourly run; each step speaks to
one API and holds that API's pool. Organisations go first (a prospect's account is the Outreach account of its Person's
employer), then People, then Opportunities and Tasks (a task whose primary contact is a synced Person becomes
an Outreach task on that prospect; completing it in Workbooks runs Outreach's markComplete). The window's Workbooks read waits for the Outreach -> Workbooks
load of the same records, so within a run one direction's writes are never planned from a read taken before
the other's; the three-way merge (`engine.merge`) makes the result the same in either order.
"""


from contextlib import nullcontext
from dataclasses import dataclass

import dagster as dg
import pandas as pd

from outreach_pipeline.defs.assets import BACKFILL_IN_ONE_RUN, DATAFRAME
from outreach_pipeline.defs.audit import (
    add_window_metadata,
    lane_writes_per_key,
    load_metadata_per_window,
    range_label,
    reverse_failed_rows,
    row_counts_per_window,
)
from outreach_pipeline.defs.failure_rate import CHECK_NAME, RateTarget, build_failure_rate_check
from outreach_pipeline.defs.groups import Group
from outreach_pipeline.defs.partitions import WINDOW_COLUMN
from outreach_pipeline.defs.progress import load_progress, reporting_extract
from outreach_pipeline.defs.resources import LedgerResource, OutreachResource, SyncSettings, WorkbooksResource
from outreach_pipeline.defs.run_options import DryRunConfig, WorkbooksReadConfig
from outreach_pipeline.engine.dry_run import DryRunOutreachWriter, planned_links
from outreach_pipeline.engine.extract import window_of
from outreach_pipeline.engine.ledger import SyncWindow
from outreach_pipeline.engine.link_back import write_links
from outreach_pipeline.engine.load_outreach import OutreachWriter, read_workbooks_changes
from outreach_pipeline.engine.merge import record_time
from outreach_pipeline.engine.outcome import Outcome, SyncDirection
from outreach_pipeline.engine.plan_outreach import UPDATED_AT
from outreach_pipeline.engine.writer_lock import hold_writer_lock

OWNERS = ["team:data-engineering"]
WRITE_TARGET = "outreach"  # the system the write step writes (the writer lock's first key)
#: The three steps (multi-assets) of this direction, by name: run config is given per step.
READ_STEP, WRITE_STEP, LINK_STEP = "workbooks_changes_for_outreach", "outreach_writes_from_workbooks", "workbooks_links_from_outreach"


@dataclass(frozen=True)
class ReverseFlow:
    """How one Workbooks record type flows into Outreach."""

    entity: str  # the mapping's entity name
    workbooks_name: str  # people, organisations, opportunities
    outreach_name: str  # the Outreach collection
    writes_after: tuple[str, ...] = ()  # outreach resources whose records this one links to
    # The Outreach -> Workbooks load of the same records, which the Workbooks read waits for (None: none).
    after_load: str | None = None

    @property
    def read_key(self) -> dg.AssetKey:
        return dg.AssetKey(["workbooks", f"changed_{self.workbooks_name}"])

    @property
    def write_key(self) -> dg.AssetKey:
        return dg.AssetKey(["outreach", f"{self.outreach_name}_written"])

    @property
    def link_key(self) -> dg.AssetKey:
        return dg.AssetKey(["workbooks", f"{self.workbooks_name}_linked"])

    @property
    def keys(self) -> tuple[dg.AssetKey, ...]:
        return (self.read_key, self.write_key, self.link_key)


REVERSE_FLOWS = (
    ReverseFlow("accounts", "organisations", "accounts", after_load="organisations"),
    ReverseFlow("prospects", "people", "prospects", writes_after=("accounts",), after_load="people"),
    ReverseFlow("opportunities", "opportunities", "opportunities", writes_after=("accounts", "prospects"),
                after_load="opportunities"),
    ReverseFlow("workbooks_tasks", "tasks", "tasks", writes_after=("prospects",)),
)


def _window(context: dg.AssetExecutionContext) -> SyncWindow:
    window = context.partition_time_window
    return SyncWindow(start=window.start, end=window.end)


def _read_out(flow: ReverseFlow) -> str:
    return flow.read_key.to_python_identifier()


def _write_out(flow: ReverseFlow) -> str:
    return flow.write_key.to_python_identifier()


def build_reads(windows: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """One step reads every record type's window (a step per record type would cost Dagster's per-step
    overhead on every hourly run); each record type is still its own asset in the lineage graph."""

    @dg.multi_asset(
        name=READ_STEP,
        outs={
            _read_out(flow): dg.AssetOut(
                key=flow.read_key, group_name=Group.WORKBOOKS.value, kinds={"workbooks", "pandas"}, owners=OWNERS,
                dagster_type=DATAFRAME, io_manager_key="window_io_manager",
                description=(
                    f"Workbooks {flow.workbooks_name} selected for Outreach in the window: Sync to Outreach = TRUE, "
                    "Outreach Sync Error = FALSE, Outreach Duplicate = FALSE, and Updated At in [start, end) or "
                    "Outreach Id blank, plus those the Outreach -> Workbooks direction updated for the window. A "
                    "flagged record waits until a person clears its flag."
                ),
            )
            for flow in REVERSE_FLOWS
        },
        # After the Outreach -> Workbooks loads of the same records in the same run.
        deps=[dg.AssetKey(["workbooks", flow.after_load]) for flow in REVERSE_FLOWS if flow.after_load],
        partitions_def=windows,
        backfill_policy=BACKFILL_IN_ONE_RUN,
        pool="workbooks_api",
    )
    def reads(
        context: dg.AssetExecutionContext, config: WorkbooksReadConfig, workbooks: WorkbooksResource,
        ledger: LedgerResource, sync_settings: SyncSettings,
    ):
        window = _window(context)
        mappings = sync_settings.mappings()
        with workbooks.open() as client, ledger.open() as sync_ledger:
            for flow in REVERSE_FLOWS:
                entity = mappings.entity(flow.entity)
                written = sync_ledger.written_in_window(flow.entity, window, to_outreach=False)
                with reporting_extract(context, flow.read_key, sync_settings):  # progress lines per page read
                    frame = read_workbooks_changes(client, entity, window, [w for _, w in written if w is not None],
                                                   from_beginning=config.from_beginning)
                # Each record is stored with the window of its Updated At (a never-linked older one in the first).
                times = pd.Series([record_time(value) for value in frame[UPDATED_AT]], index=frame.index, dtype=object)
                frame[WINDOW_COLUMN] = window_of(pd.to_datetime(times, utc=True), window.start, window.end)
                row_counts_per_window(context, frame, flow.read_key)
                yield dg.Output(frame, output_name=_read_out(flow), metadata={"range_row_count": len(frame)})
            context.log.info("Workbooks requests: %d", client.stats.total_requests)

    return reads


def build_writes(windows: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """One step writes every record type to Outreach, in link order (accounts, prospects, opportunities, tasks)."""

    @dg.multi_asset(
        name=WRITE_STEP,
        ins={_read_out(flow): dg.AssetIn(flow.read_key) for flow in REVERSE_FLOWS},
        outs={
            _write_out(flow): dg.AssetOut(
                key=flow.write_key, group_name=Group.OUTREACH.value, kinds={"outreach", "pandas"}, owners=OWNERS,
                dagster_type=DATAFRAME, io_manager_key="window_io_manager",
                description=(
                    f"The window's Workbooks {flow.workbooks_name} written to Outreach {flow.outreach_name}: created "
                    "(with the Workbooks object_ref as key), or updated with the fields Workbooks wins in the "
                    "three-way merge against the ledger's base. A create whose reply is lost is looked up before any "
                    "retry; a duplicate email adopts an unlinked prospect or flags the Person. Each partition shows its "
                    "own window's counts and a table of the records Outreach refused (failed_records)."
                ),
            )
            for flow in REVERSE_FLOWS
        },
        check_specs=[
            dg.AssetCheckSpec("no_failed_writes", asset=flow.write_key,
                              description="Records Outreach refused (flagged on their Workbooks record).")
            for flow in REVERSE_FLOWS
        ],
        partitions_def=windows,
        backfill_policy=BACKFILL_IN_ONE_RUN,
        pool="outreach_api",
    )
    def writes(
        context: dg.AssetExecutionContext,
        config: DryRunConfig,
        outreach: OutreachResource,
        ledger: LedgerResource,
        sync_settings: SyncSettings,
        **changes_by_flow: pd.DataFrame,
    ):
        mappings = sync_settings.mappings()
        with outreach.open() as client, ledger.open() as sync_ledger:
            for flow in REVERSE_FLOWS:
                changes = changes_by_flow[_read_out(flow)]
                writer = (DryRunOutreachWriter if config.dry_run else OutreachWriter)(  # defs/dry_run.py
                    client=client, ledger=sync_ledger, mappings=mappings, entity=mappings.entity(flow.entity),
                    resource=flow.outreach_name, run_id=context.run.run_id, window=_window(context),
                    on_done=load_progress(context, flow.write_key, changes, sync_settings, id_column="id").advance,
                )
                # One writer per Outreach collection across runs and instances: its lookups, merge, writes and
                # ledger records happen under the lock, so two runs never both create the same prospect.
                with hold_writer_lock(sync_ledger.engine, target=WRITE_TARGET, entity=flow.outreach_name,
                                      run_id=context.run.run_id, settings=sync_settings.lock_settings(),
                                      on_wait=context.log.warning) if not config.dry_run else nullcontext():
                    result = writer.write(changes)
                windows_by_id = (dict(zip(changes["id"].astype(int), changes[WINDOW_COLUMN], strict=True))
                                 if len(changes) else {})
                result.results[WINDOW_COLUMN] = pd.to_datetime(
                    result.results["workbooks_id"].astype(int).map(windows_by_id), utc=True
                )
                # "adopted": an unlinked Outreach prospect holding the Person's email, linked and merged.
                counts = {str(name): result.counts.get(name, 0) for name in (*Outcome, "adopted")}
                context.log.info("%s: %s", flow.outreach_name, counts)
                # Each window's own counts and failed records on its partition; the range's in `range*` keys.
                per_window = load_metadata_per_window(
                    list(context.partition_keys), changes, result.results,
                    reverse_failed_rows(sync_ledger, flow.entity, context.run.run_id, result.results),
                    sync_settings, id_column="workbooks_id")
                by_lane = lane_writes_per_key(sync_ledger, [flow.entity], list(context.partition_keys), to_outreach=True)
                add_window_metadata(context, {key: {**metadata, "records_synced_by_lane": by_lane[key]}
                                              for key, metadata in per_window.items()}, flow.write_key)
                yield dg.Output(result.results, output_name=_write_out(flow), metadata={
                    "range": range_label(list(context.partition_keys)),
                    "range_records": dg.MetadataValue.json(counts),
                    "range_records_read": len(changes), **({"dry_run": True} if config.dry_run else {}),
                    "conflicts": result.conflicts,
                    "preview": dg.MetadataValue.json(result.preview),
                })
                yield dg.AssetCheckResult(
                    asset_key=flow.write_key, check_name="no_failed_writes", passed=counts[Outcome.FAILED] == 0,
                    severity=dg.AssetCheckSeverity.WARN, metadata={"failed": counts[Outcome.FAILED]},
                )
            context.log.info("Outreach requests: %d", client.stats.total_requests)

    return writes


def build_links(windows: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """One step writes the Outreach ids and flags of every record type back to Workbooks."""

    @dg.multi_asset(
        name=LINK_STEP,
        ins={_write_out(flow): dg.AssetIn(flow.write_key) for flow in REVERSE_FLOWS},
        specs=[
            dg.AssetSpec(
                flow.link_key, deps=[flow.write_key], group_name=Group.WORKBOOKS.value, kinds={"workbooks"},
                owners=OWNERS, partitions_def=windows,
                description=(
                    f"Outreach ids of the {flow.workbooks_name} created in (or adopted from) Outreach written back "
                    "onto their Workbooks records, and Outreach Duplicate / Outreach Sync Error with its message "
                    "on those Outreach refused."
                ),
            )
            for flow in REVERSE_FLOWS
        ],
        partitions_def=windows,
        backfill_policy=BACKFILL_IN_ONE_RUN,
        pool="workbooks_api",
    )
    def links(
        context: dg.AssetExecutionContext, config: DryRunConfig, workbooks: WorkbooksResource,
        sync_settings: SyncSettings, **written_by_flow: pd.DataFrame,
    ):
        mappings = sync_settings.mappings()
        with workbooks.open() as client:
            for flow in REVERSE_FLOWS:
                written = written_by_flow[_write_out(flow)]
                # Progress per batch request, over the records with something to write back (links and flags).
                to_write = written[written["link"].fillna(False).astype(bool) | written["flag"].notna()]
                progress = load_progress(context, flow.link_key, to_write.rename(columns={"workbooks_id": "id"}),
                                         sync_settings, id_column="id")
                counts = ({**planned_links(written), "dry_run": True} if config.dry_run
                          else write_links(client, mappings.entity(flow.entity), written, on_done=progress.advance))
                yield dg.MaterializeResult(asset_key=flow.link_key, metadata=counts)

    return links


def build_reverse_assets(windows: dg.TimeWindowPartitionsDefinition) -> list[dg.AssetsDefinition]:
    """Every Workbooks -> Outreach asset, partitioned by `windows`, in data-flow order, and the `failure_rate`
    check of the writes (one step for every record type, as the writes are one step; `defs.failure_rate`)."""
    rate_check = build_failure_rate_check([RateTarget(flow.write_key, flow.entity) for flow in REVERSE_FLOWS],
                                          windows, name=f"{WRITE_STEP}_{CHECK_NAME}", direction=SyncDirection.TO_OUTREACH)
    return [build_reads(windows), build_writes(windows), build_links(windows), rate_check]


REVERSE_KEYS = tuple(key for flow in REVERSE_FLOWS for key in flow.keys)
