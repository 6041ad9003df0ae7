"""`outreach/referenced_<entity>`: the never-synced records this run's other records point at
(`engine.link_targets`), as assets downstream of the extracts that point at them.

So the lineage graph reads in data-flow order: `outreach/accounts` has no upstream but the preflight, and
`outreach/prospects -> outreach/referenced_accounts -> staged/organisations` says where an old account pulled
in for a new prospect comes from. Each asset reads the frames of the extracts that point at its entity (and
the records pulled for them, so pulls are transitive: calls -> tasks -> prospects -> accounts), and its own
entity's extract, whose records need no second read.
"""


import dagster as dg
import pandas as pd

from outreach_pipeline.defs.assets import FLOWS, EntityFlow, outreach_frame_asset
from outreach_pipeline.defs.audit import range_label, row_counts_per_window
from outreach_pipeline.defs.budget import outreach_budget
from outreach_pipeline.defs.io_manager import INPUT_COLUMNS
from outreach_pipeline.defs.progress import reporting_extract
from outreach_pipeline.defs.resources import LedgerResource, OutreachResource, SyncSettings
from outreach_pipeline.engine.link_targets import never_synced, no_targets, read_targets, targets
from outreach_pipeline.mapping.transform import outreach_fields

_BY_NAME = {flow.outreach_name: flow for flow in FLOWS}


def _referencing_input(name: str) -> str:
    return f"referencing_{name}"


def _pulled_input(name: str) -> str:
    return f"pulled_{name}"


def referenced_ins(flow: EntityFlow) -> dict[str, dg.AssetIn]:
    """The asset's inputs: its entity's extract, each referencing extract, and what was pulled for those."""
    # Only the columns the pull reads: the whole frames of the range's extracts were most of this step's memory.
    ins = {"extracted": dg.AssetIn(flow.extract_key, metadata={INPUT_COLUMNS: ["id"]})}
    for name, column in flow.referenced_by:
        ins[_referencing_input(name)] = dg.AssetIn(_BY_NAME[name].extract_key, metadata={INPUT_COLUMNS: [column]})
        if (pulled := _BY_NAME[name].referenced_key) is not None:
            ins[_pulled_input(name)] = dg.AssetIn(pulled, metadata={INPUT_COLUMNS: [column]})
    return ins


def build_referenced(flow: EntityFlow, windows: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """The `outreach/referenced_<entity>` asset of `flow` (one with `referenced_by`)."""
    assert flow.referenced_key is not None
    pointing = ", ".join(name for name, _ in flow.referenced_by)

    @dg.asset(
        key=flow.referenced_key,
        ins=referenced_ins(flow),
        **outreach_frame_asset(windows),
        description=(
            f"Outreach {flow.outreach_name} that this run's {pointing} point at and that were never synced (no "
            f"Workbooks twin in the ledger, not in outreach/{flow.outreach_name}), read by id so their links "
            f"resolve in the same run; staged/{flow.workbooks_name} stages them with the window's own records."
        ),
    )
    def referenced(
        context: dg.AssetExecutionContext,
        extracted: pd.DataFrame,
        outreach: OutreachResource,
        ledger: LedgerResource,
        sync_settings: SyncSettings,
        **frames: pd.DataFrame,
    ) -> dg.MaterializeResult:
        window = context.partition_time_window
        entity = sync_settings.mappings().entity(flow.entity)
        referencing = [(frame, column) for name, column in flow.referenced_by
                       for frame in (frames[_referencing_input(name)], frames.get(_pulled_input(name)))
                       if frame is not None]
        candidates = targets(referencing, extracted)
        with ledger.open() as sync_ledger:
            # A failed record waiting for its retry is not read because something points at it (its own window
            # brings it back when its source changes).
            _, waiting = sync_ledger.retry_schedule(flow.entity, sync_settings.backoff())
            ids = sorted(never_synced(sync_ledger, flow.entity, candidates) - waiting)
        fields = {f"fields[{entity.outreach_type}]": ",".join(outreach_fields(entity))}
        frame, requests_used = no_targets(flow.outreach_name, window.start, window.end), 0
        if ids:
            with outreach_budget(f"{len(ids)} never-synced {flow.outreach_name} records that this run's {pointing} "
                                 "point at are"), outreach.open() as client, \
                    reporting_extract(context, flow.referenced_key, sync_settings):
                frame = read_targets(client, flow.outreach_name, ids, window.start, window.end, fields=fields)
                requests_used = client.stats.total_requests
        context.log.info("pulled %d never-synced %s that this run's %s point at (%d referenced)", len(frame),
                         flow.outreach_name, pointing, len(candidates))
        row_counts_per_window(context, frame)
        return dg.MaterializeResult(
            value=frame,
            metadata={"range": range_label(list(context.partition_keys)), "range_row_count": len(frame),
                      "range_referenced_records": len(candidates), "range_waiting_for_retry": len(waiting),
                      "range_api_requests": requests_used},
        )

    return referenced
