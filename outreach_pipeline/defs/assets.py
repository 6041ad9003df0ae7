"""Outreach -> Workbooks assets: extract (`outreach/...`) -> stage (`staged/...`) -> load (`workbooks/...`).

One `EntityFlow` per entity builds its assets, so every entity reads the same way in the asset graph:
Accounts become Organisations first, then Prospects become People (their employer is the organisation synced
from the prospect's account), then Opportunities (organisation and contacts from prospect roles). Engagement
follows the People it links to: Tasks (in_person ones routed to meetings, engine/routing.py), Calls (after the
tasks they complete), Sequences, and Sequence States written onto People (engine/extract_engagement.py).

Each asset calls at most one API and holds that API's pool (see `defs.budget` for the request-budget rules):
`outreach/field_preflight` and `workbooks/field_preflight` check each side of the mapping; People's duplicate
emails are asked of Outreach by `outreach/prospect_email_holders` and handed to the load as data.
"""


import contextlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import dagster as dg
import pandas as pd

from outreach_pipeline.defs.audit import extract_audit, load_audit, row_counts_per_window
from outreach_pipeline.defs.budget import outreach_budget
from outreach_pipeline.defs.failure_rate import CHECK_NAME, RateTarget, build_failure_rate_check
from outreach_pipeline.defs.groups import Group
from outreach_pipeline.defs.partitions import WINDOW_COLUMN
from outreach_pipeline.defs.preflight_reuse import checked_or_reused, now_utc
from outreach_pipeline.defs.progress import load_progress, reporting_extract
from outreach_pipeline.defs.resources import LedgerResource, OutreachResource, SyncSettings, WorkbooksResource
from outreach_pipeline.defs.run_options import DryRunConfig
from outreach_pipeline.defs.webhook_reads import read_metadata, read_plan, window_read
from outreach_pipeline.engine.dry_run import DryRunLoader
from outreach_pipeline.engine.extract import (
    ROLES_COLUMN,
    Extract,
    extract_entity,
    opportunity_lookups,
)
from outreach_pipeline.engine.extract_engagement import (
    extract_sequence_states,
    extract_tasks,
    sequence_state_lookups,
)
from outreach_pipeline.engine.ledger import SyncWindow
from outreach_pipeline.engine.link_targets import with_targets
from outreach_pipeline.engine.load import EntityLoader, outreach_sharers
from outreach_pipeline.engine.outcome import Outcome, SyncDirection
from outreach_pipeline.engine.plan import SHARERS_COLUMN
from outreach_pipeline.engine.preflight import outreach_preflight, workbooks_preflight
from outreach_pipeline.engine.preflight_reuse import PreflightStamp, mapping_hash
from outreach_pipeline.engine.routing import RoutedLoader, ids_to_pull_routed, stage_extracted
from outreach_pipeline.engine.writer_lock import hold_writer_lock
from outreach_pipeline.mapping.errors import ErrorKind, has_kind
from outreach_pipeline.mapping.models import MappingSet
from outreach_pipeline.mapping.personal import mask_personal
from outreach_pipeline.mapping.transform import lineage_columns, outreach_fields

OWNERS = ["team:data-engineering"]
#: Dagster pools, one per API (limits in dagster.yaml): every asset calling an API holds its pool.
OUTREACH_POOL = "outreach_api"
WORKBOOKS_POOL = "workbooks_api"
# single_run() is what a range backfill needs (one extract per range); it is stable in use, only labelled beta.
warnings.filterwarnings("ignore", message=".*`backfill_policy`.*", category=dg.BetaWarning)
BACKFILL_IN_ONE_RUN = dg.BackfillPolicy.single_run()
#: An isinstance check: Dagster's default `Any` check compares values with `!=`, which pandas 3 string
#: columns refuse.
DATAFRAME = dg.PythonObjectDagsterType(pd.DataFrame, name="DataFrame")


def outreach_frame_asset(windows: dg.PartitionsDefinition) -> dict[str, Any]:
    """What every asset reading Outreach into a windowed DataFrame declares: the windows, one run per range, the
    `outreach` group, Outreach's pool, the window store and the DataFrame type."""
    return {"partitions_def": windows, "backfill_policy": BACKFILL_IN_ONE_RUN, "group_name": Group.OUTREACH.value,
            "kinds": {"outreach", "pandas"}, "owners": OWNERS, "pool": OUTREACH_POOL,
            "io_manager_key": "window_io_manager", "dagster_type": DATAFRAME}


class ExtractConfig(dg.Config):
    """`from_beginning` opens the lower bound of the read: the full-sync job's way to cover older records.
    `all_attributes` reads every attribute instead of only those the mapping uses."""

    from_beginning: bool = False
    all_attributes: bool = False


@dataclass(frozen=True)
class EntityFlow:
    """How one Outreach entity flows into Workbooks."""

    entity: str  # the mapping's entity name
    outreach_name: str  # asset name under outreach/, and the API collection
    workbooks_name: str  # asset name under staged/ and workbooks/
    loads_after: tuple[str, ...] = ()  # workbooks assets this load must follow (link targets)
    # (extract asset name, column) of other entities whose rows point at this one: the records they point at
    # that were never synced are pulled into the same run (outreach/referenced_<name>), so their links resolve.
    referenced_by: tuple[tuple[str, str], ...] = ()
    extractor: Callable[..., Extract] = extract_entity  # (client, resource, start, end, *, retry_ids, ...)
    lookups: Callable[[pd.DataFrame], dict[str, pd.DataFrame]] | None = None  # the mapping's lookup frames
    # Asset name under outreach/ of the lookup asking Outreach which records share each record's natural key
    # (the mapping's outreach_duplicate_filter); None when the entity has no such check.
    holders_name: str | None = None

    @property
    def extract_key(self) -> dg.AssetKey:
        return dg.AssetKey(["outreach", self.outreach_name])

    @property
    def staged_key(self) -> dg.AssetKey:
        return dg.AssetKey(["staged", self.workbooks_name])

    @property
    def load_key(self) -> dg.AssetKey:
        return dg.AssetKey(["workbooks", self.workbooks_name])

    @property
    def holders_key(self) -> dg.AssetKey | None:
        return dg.AssetKey(["outreach", self.holders_name]) if self.holders_name else None

    @property
    def referenced_key(self) -> dg.AssetKey | None:  # never-synced records others point at (defs/referenced.py)
        return dg.AssetKey(["outreach", f"referenced_{self.outreach_name}"]) if self.referenced_by else None

    @property
    def keys(self) -> list[dg.AssetKey]:
        """Every asset of the flow, in data-flow order."""
        return [self.extract_key, *filter(None, [self.referenced_key]), self.staged_key,
                *filter(None, [self.holders_key]), self.load_key]


FLOWS = (
    EntityFlow("accounts", "accounts", "organisations",
               referenced_by=(("prospects", "accountId"), ("opportunities", "accountId"))),
    EntityFlow("prospects", "prospects", "people", loads_after=("organisations",),
               referenced_by=(("opportunities", ROLES_COLUMN), ("tasks", "prospectId"), ("calls", "prospectId"),
                              ("sequenceStates", "prospectId")),
               holders_name="prospect_email_holders"),
    EntityFlow("opportunities", "opportunities", "opportunities", loads_after=("organisations", "people"),
               lookups=opportunity_lookups),
    # Engagement (engine/extract_engagement.py, engine/routing.py): tasks (in_person ones routed to meetings),
    # calls, sequences, and sequence states onto people.
    EntityFlow("tasks", "tasks", "tasks", loads_after=("people",), referenced_by=(("calls", "taskId"),),
               extractor=extract_tasks),
    EntityFlow("calls", "calls", "calls", loads_after=("people", "tasks")),
    EntityFlow("sequences", "sequences", "outreach_sequences"),
    EntityFlow("sequence_states", "sequenceStates", "sequence_states", loads_after=("people",),
               extractor=extract_sequence_states, lookups=sequence_state_lookups),
)
PREFLIGHT_KEY = dg.AssetKey(["workbooks", "field_preflight"])
WRITE_TARGET = "workbooks"  # the system the load assets write (the writer lock's first key)
OUTREACH_PREFLIGHT_KEY = dg.AssetKey(["outreach", "field_preflight"])


def _window(context: dg.AssetExecutionContext) -> SyncWindow:
    window = context.partition_time_window
    return SyncWindow(start=window.start, end=window.end)


def _checked_entities(mappings: MappingSet) -> list[str]:
    """Every entity mapping a sync uses: each flow's, and the ones its routes send rows to (meetings)."""
    return [name for flow in FLOWS for name in mappings.route_entities(flow.entity)]


def _preflight_failure(problems: list[str]) -> dg.Failure:
    return dg.Failure(
        description=f"{len(problems)} mapping problem(s): " + "; ".join(problems[:20]),
        metadata={"problems": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems))},
    )


def _checked_or_reused(context: dg.AssetExecutionContext, key: dg.AssetKey, api_base_url: str,
                       sync_settings: SyncSettings, check: Callable[[MappingSet, list[str]], list[str]],
                       ) -> dg.MaterializeResult:
    """Run a preflight `check`, or reuse a passing one of the same mapping and service younger than
    `preflight_max_age_minutes` (defs/preflight_reuse.py); the metadata says which, and when it ran."""
    mappings = sync_settings.mappings()
    entities = _checked_entities(mappings)
    return checked_or_reused(
        context, key, PreflightStamp(mapping_hash(mappings, entities), api_base_url, now_utc()),
        timedelta(minutes=sync_settings.preflight_max_age_minutes), lambda: check(mappings, entities),
        _preflight_failure, {"fields_checked": sum(len(mappings.entity(f.entity).fields) for f in FLOWS)},
    )


def outreach_field_preflight(
    context: dg.AssetExecutionContext, outreach: OutreachResource, sync_settings: SyncSettings
) -> dg.MaterializeResult:
    """Checks, before any read, what the mapping needs of Outreach: the scopes of the connected account's grant,
    every attribute and relationship the mapping reads (Outreach's schema) and its custom fields (/api/v2/types).

    Fails the run, naming each missing scope and each unknown or mistyped field, so a field renamed in Outreach
    stops the sync instead of failing the extract.
    """
    def check(mappings: MappingSet, entities: list[str]) -> list[str]:
        with outreach_budget("the whole run (nothing was read or written) is"), outreach.open() as client:
            return outreach_preflight(client, mappings, entities)

    return _checked_or_reused(context, OUTREACH_PREFLIGHT_KEY, outreach.base_url, sync_settings, check)


def build_preflights(windows: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    """The two preflight assets, each holding the pool of the one API it calls."""
    shared = {"partitions_def": windows, "backfill_policy": BACKFILL_IN_ONE_RUN, "owners": OWNERS}
    return [
        dg.asset(key=OUTREACH_PREFLIGHT_KEY, group_name=Group.OUTREACH.value, kinds={"outreach"},
                 pool=OUTREACH_POOL, **shared)(outreach_field_preflight),
        dg.asset(key=PREFLIGHT_KEY, group_name=Group.WORKBOOKS.value, kinds={"workbooks"},
                 pool=WORKBOOKS_POOL, **shared)(field_preflight),
    ]


def field_preflight(
    context: dg.AssetExecutionContext, workbooks: WorkbooksResource, sync_settings: SyncSettings
) -> dg.MaterializeResult:
    """Checks every mapped field against Workbooks metadata/types before any write.

    Fails the run, naming each unknown or mistyped field and the mapping file to fix, so a renamed field in a
    real Workbooks database stops the sync instead of failing every record.
    """
    def check(mappings: MappingSet, entities: list[str]) -> list[str]:
        with workbooks.open() as client:
            return workbooks_preflight(client, mappings, entities)

    return _checked_or_reused(context, PREFLIGHT_KEY, workbooks.base_url, sync_settings, check)


def build_extract(flow: EntityFlow, windows: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        key=flow.extract_key,
        deps=[OUTREACH_PREFLIGHT_KEY],
        **outreach_frame_asset(windows),
        description=(
            f"Outreach {flow.outreach_name} changed in the sync window [start, end), read in one paged pass per run "
            "(a backfill range is one read), plus the records the ledger says must be retried (failed rows once their "
            "backoff has passed, links whose target was not synced yet). Never-synced records this run's other records point at are read "
            "after them (outreach/referenced_*). Only the attributes the mapping reads are fetched "
            "(sparse fieldsets) unless the run config sets all_attributes. A window the Outreach webhook receiver "
            "proves quiet is not read (defs/webhook_reads.py; window_read says why it was or was not)."
        ),
    )
    def extract(
        context: dg.AssetExecutionContext,
        config: ExtractConfig,
        outreach: OutreachResource,
        ledger: LedgerResource,
        sync_settings: SyncSettings,
    ) -> dg.MaterializeResult:
        window = _window(context)
        entity = sync_settings.mappings().entity(flow.entity)
        fields = None if config.all_attributes else {f"fields[{entity.outreach_type}]": ",".join(outreach_fields(entity))}
        with ledger.open() as sync_ledger:
            pull = ids_to_pull_routed(sync_ledger, sync_settings.mappings(), flow.entity, set(),
                                      sync_settings.backoff())
            # What the Workbooks -> Outreach direction wrote for this window left it (its updatedAt moved on).
            pull.retry |= {o for o, _ in sync_ledger.written_in_window(flow.entity, window, to_outreach=True)}
            read = window_read(sync_ledger, sync_settings, flow.outreach_name, window,
                               from_beginning=config.from_beginning)
        retry_ids = pull.all
        windows = context.partition_keys
        left = (f"{flow.outreach_name} changed in {len(windows)} window(s) {windows[0]}..{windows[-1]} "
                f"(and {len(retry_ids)} records to retry) are")
        with outreach_budget(left), outreach.open() as client, \
                reporting_extract(context, flow.extract_key, sync_settings):
            result = flow.extractor(
                client, flow.outreach_name, window.start, window.end,
                retry_ids=retry_ids, from_beginning=config.from_beginning, fields=fields, window=read_plan(read),
            )
            requests_used = client.stats.total_requests
        context.log.info("extracted %d %s for %s..%s", len(result.frame), flow.outreach_name, window.start, window.end)
        return dg.MaterializeResult(value=result.frame, metadata={
            **extract_audit(context, result.frame, result.retried_ids, pull, requests_used),
            **read_metadata(flow.outreach_name, read, window),
            "window": f"[{window.start.isoformat()}, {window.end.isoformat()})",
        })

    return extract


def build_staged(flow: EntityFlow, windows: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        key=flow.staged_key,
        ins={"extracted": dg.AssetIn(flow.extract_key),
             **({"referenced": dg.AssetIn(flow.referenced_key)} if flow.referenced_key else {})},
        partitions_def=windows,
        backfill_policy=BACKFILL_IN_ONE_RUN,
        group_name=Group.STAGED.value,
        kinds={"pandas"},
        owners=OWNERS,
        io_manager_key="window_io_manager",
        dagster_type=DATAFRAME,
        check_specs=[
            dg.AssetCheckSpec("no_duplicate_outreach_ids", asset=flow.staged_key, blocking=True,
                              description="Each Outreach record appears once per window; a repeat would be written twice."),
            dg.AssetCheckSpec("required_fields_present", asset=flow.staged_key, blocking=True,
                              description=(
                                  "Blocks the load (ERROR) when more than `required_missing_block_share` of a "
                                  "window of at least `required_missing_block_min_rows` rows lacks a required "
                                  "field: a sign the mapping or the source broke. Otherwise it passes, and each "
                                  "such row fails alone at load.")),
        ],
        description=(
            f"Outreach {flow.outreach_name} mapped to Workbooks {flow.workbooks_name} fields through the mapping "
            "file (vectorised pandas, no I/O). Each row carries its validation errors; invalid rows are not dropped "
            "but end as per-record failures at load."
        ),
    )
    def staged(
        context: dg.AssetExecutionContext, extracted: pd.DataFrame, sync_settings: SyncSettings, **referenced: pd.DataFrame
    ) -> dg.MaterializeResult:
        extracted = with_targets(extracted, referenced.get("referenced"))  # the window's records, then those pulled
        mappings = sync_settings.mappings()
        entity = mappings.entity(flow.entity)
        lookups = flow.lookups(extracted) if flow.lookups is not None else None
        frame = stage_extracted(extracted, mappings, entity, lookups=lookups)
        invalid = int(frame["validation_errors"].map(bool).sum())
        duplicates = frame.loc[frame["outreach_id"].duplicated(keep=False), "outreach_id"].drop_duplicates().tolist()
        missing_required = frame["validation_errors"].map(lambda errors: has_kind(errors, ErrorKind.REQUIRED))
        # Only the windows' own changes judge the mapping: records pulled in to be retried (often the same few
        # bad ones, every run) or because others link to them would otherwise dominate a quiet window.
        span = context.partition_time_window
        changed = frame["outreach_updated_at"]
        own = (changed >= span.start) & (changed < span.end)
        lineage = {
            column: [dg.TableColumnDep(asset_key=flow.extract_key, column_name=source) for source in sources]
            for column, sources in lineage_columns(entity).items()
        }
        row_counts_per_window(context, frame)
        return dg.MaterializeResult(
            value=frame,
            metadata={
                "range_row_count": len(frame),
                "invalid_rows": invalid,
                "dagster/column_schema": dg.TableSchema(
                    columns=[dg.TableColumn(str(name), str(dtype)) for name, dtype in frame.dtypes.items()]
                ),
                "dagster/column_lineage": dg.TableColumnLineage(deps_by_column=lineage),
            },
            check_results=[
                dg.AssetCheckResult(
                    check_name="no_duplicate_outreach_ids", passed=not duplicates,
                    severity=dg.AssetCheckSeverity.ERROR,
                    metadata={"duplicate_ids": dg.MetadataValue.json([int(i) for i in duplicates[:50]])},
                ),
                _required_fields_check(missing_required[own.fillna(False).astype(bool)], sync_settings),
            ],
        )

    return staged


def build_holders(flow: EntityFlow, windows: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    assert flow.holders_key is not None

    @dg.asset(
        key=flow.holders_key,
        ins={"staged": dg.AssetIn(flow.staged_key)},
        **outreach_frame_asset(windows),
        description=(
            f"For each record of staged/{flow.workbooks_name}, the other Outreach {flow.outreach_name} holding its natural key (email), asked of Outreach "
            "itself (about 115 emails a request, in the documented multi-value form), so a value two Outreach records share is never matched or "
            "created from either, whichever window each is synced in. Ids only, no emails."
        ),
    )
    def holders(context: dg.AssetExecutionContext, staged: pd.DataFrame, outreach: OutreachResource,
                sync_settings: SyncSettings) -> dg.MaterializeResult:
        entity = sync_settings.mappings().entity(flow.entity)
        with outreach_budget(f"{len(staged)} {flow.outreach_name} records (and what links to them) are"), \
                outreach.open() as client:
            frame = outreach_sharers(client, flow.outreach_name, entity, staged)
            requests_used = client.stats.total_requests
        frame[WINDOW_COLUMN] = staged[WINDOW_COLUMN].to_numpy()
        return dg.MaterializeResult(
            value=frame,
            metadata={
                "dagster/row_count": len(frame),
                "records_with_sharers": int(frame[SHARERS_COLUMN].map(bool).sum()),
                "range_api_requests": requests_used,
            },
        )

    return holders


def build_load(flow: EntityFlow, windows: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    holders_in = {"holders": dg.AssetIn(flow.holders_key)} if flow.holders_key else {}

    @dg.asset(
        key=flow.load_key,
        ins={"staged": dg.AssetIn(flow.staged_key), **holders_in},
        deps=[PREFLIGHT_KEY, *(dg.AssetKey(["workbooks", name]) for name in flow.loads_after)],
        partitions_def=windows,
        backfill_policy=BACKFILL_IN_ONE_RUN,
        group_name=Group.WORKBOOKS.value,
        kinds={"workbooks", "pandas"},
        owners=OWNERS,
        pool=WORKBOOKS_POOL,
        io_manager_key="window_io_manager",
        dagster_type=DATAFRAME,
        description=(
            f"Loads staged {flow.workbooks_name} into Workbooks: matched on Outreach Id (then email, or name and "
            "website), compared before writing, written in batches of 100 with per-object transactions. Every "
            "record ends created, updated, unchanged, skipped (with reason) or failed (with error), in the output "
            "and in the sync ledger. Each partition shows its own window's counts and a table of its failed records "
            "(field, kind, message, runs failed in a row); `outreach-pipeline failures` lists them from the ledger."
        ),
    )
    def load(
        context: dg.AssetExecutionContext,
        config: DryRunConfig,
        staged: pd.DataFrame,
        workbooks: WorkbooksResource,
        ledger: LedgerResource,
        sync_settings: SyncSettings,
        **holders: pd.DataFrame,
    ) -> dg.MaterializeResult:
        mappings = sync_settings.mappings()
        with (
            workbooks.open() as client,
            ledger.open() as sync_ledger,
            # One writer per entity across runs and instances: lookups, plan, writes and records happen under it.
            hold_writer_lock(sync_ledger.engine, target=WRITE_TARGET, entity=flow.workbooks_name,
                             run_id=context.run.run_id, settings=sync_settings.lock_settings(),
                             on_wait=context.log.warning) if not config.dry_run else contextlib.nullcontext(),
        ):
            loader = RoutedLoader(
                loader_class=DryRunLoader if config.dry_run else EntityLoader,  # defs/dry_run.py
                client=client, ledger=sync_ledger, mappings=mappings, entity=mappings.entity(flow.entity),
                run_id=context.run.run_id, window=_window(context), sharers=holders.get("holders"),
                on_done=load_progress(context, flow.load_key, staged, sync_settings).advance,
            )
            result = loader.load(staged)
            requests_used = client.stats.total_requests
            window_of_record = staged.drop_duplicates("outreach_id", keep="last").set_index("outreach_id")[WINDOW_COLUMN]
            outcomes = result.outcomes.assign(**{WINDOW_COLUMN: result.outcomes["outreach_id"].map(window_of_record)})
            audit = load_audit(context, sync_ledger, mappings.route_entities(flow.entity), staged, outcomes, sync_settings)
        counts = {outcome.value: result.counts.get(outcome, 0) for outcome in Outcome}
        context.log.info("%s: %s", flow.workbooks_name, counts)
        return dg.MaterializeResult(
            value=outcomes,
            metadata={
                **audit, **({"dry_run": True} if config.dry_run else {}),
                "reconciles": sum(counts.values()) == len(staged),
                "pending_relations": result.pending_relations,
                "range_api_requests": requests_used,
                "preview": dg.MetadataValue.json(_preview(result.preview, mappings, sync_settings)),
            },
        )

    return load


def _preview(preview: list[dict[str, Any]], mappings: MappingSet, settings: SyncSettings) -> list[dict[str, Any]]:
    """The load's first written records for the run's metadata, personal values masked unless shown by setting."""
    if settings.show_personal_data:
        return preview
    # A routed entity's rows carry the entity of their route (tasks written as meetings).
    personal = frozenset().union(*(entity.personal_fields() for entity in mappings.entities.values()))
    return [{**row, "changes": mask_personal(row["changes"], personal)} for row in preview]


def _required_fields_check(missing_required: pd.Series, settings: SyncSettings) -> dg.AssetCheckResult:
    """ERROR, which blocks the load, when more than the set share of a large enough window's own rows lacks a
    required field; a few bad rows in a small window fail alone at load instead."""
    share = float(missing_required.mean()) if len(missing_required) else 0.0
    blocks = len(missing_required) >= settings.required_missing_block_min_rows and (
        share > settings.required_missing_block_share
    )
    return dg.AssetCheckResult(
        check_name="required_fields_present",
        passed=not blocks,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "rows_missing_required": int(missing_required.sum()),
            "share_missing_required": share,
            "block_above_share": settings.required_missing_block_share,
            "block_from_rows": settings.required_missing_block_min_rows,
        },
    )


def build_assets(windows: dg.PartitionsDefinition) -> list[dg.AssetsDefinition]:
    """Every asset of the sync, partitioned by `windows`, in data-flow order."""
    from outreach_pipeline.defs.assets_outreach import build_reverse_assets  # these build on this module
    from outreach_pipeline.defs.referenced import build_referenced

    assets = build_preflights(windows)
    for flow in FLOWS:
        assets += [build_extract(flow, windows), *([build_referenced(flow, windows)] if flow.referenced_by else []),
                   build_staged(flow, windows),
                   *([build_holders(flow, windows)] if flow.holders_name else []), build_load(flow, windows),
                   build_failure_rate_check([RateTarget(flow.load_key, flow.entity)], windows,
                                            name=f"{flow.load_key.to_python_identifier()}_{CHECK_NAME}",
                                            direction=SyncDirection.TO_WORKBOOKS)]
    return [*assets, *build_reverse_assets(windows)]


#: The Outreach -> Workbooks asset keys, in data-flow order (the jobs add the other direction's).
ASSET_KEYS = [OUTREACH_PREFLIGHT_KEY, PREFLIGHT_KEY, *(key for flow in FLOWS for key in flow.keys)]
