"""Dry run: what a sync of a range of windows would do, per window and entity, with nothing written anywhere.

How it runs: the sync's own assets (both directions) are executed once over the range, in this process, with
`DryRunConfig(dry_run=True)` on every step that writes (`engine.dry_run`: same reads and planners, no write to
Outreach, Workbooks or the sync ledger, no writer lock), against a throw-away Dagster instance and an in-memory IO
manager. So the real assets are not materialised by a dry run: no partition looks synced after it, and the
stored window files of live runs stay as they were.

Two ways in, one function (`execute_dry_run`):

* the UI: the asset `dry_run/sync_plan` (group `dry_run`), partitioned like the sync: materialise it for a window
  or a range (one run) and its materialisation carries the plan as metadata, marked `dry_run: true`;
* the CLI: `outreach-pipeline sync --dry-run [--windows N | --from ... --to ...] [--json]`, which prints a summary
  per entity and window and creates no run in the instance at all.

The plan lists per window and entity the creates, the updates with each field's old and new value, the
unchanged, the skips with their reason and the failures with their error; personal fields (emails, phones) are
masked unless `SyncSettings.show_personal_data` (mapping/personal.py). What a plan cannot foresee is listed in
`engine/dry_run.py`.
"""


from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
import pandas as pd

from outreach_pipeline.defs.assets import BACKFILL_IN_ONE_RUN, FLOWS, OWNERS, ExtractConfig
from outreach_pipeline.defs.assets_outreach import LINK_STEP, READ_STEP, REVERSE_FLOWS, WRITE_STEP
from outreach_pipeline.defs.failure_rate import CHECK_NAME as FAILURE_RATE_CHECK
from outreach_pipeline.defs.groups import Group
from outreach_pipeline.defs.partitions import WINDOW_COLUMN
from outreach_pipeline.defs.resources import LedgerResource, OutreachResource, SyncSettings, WorkbooksResource
from outreach_pipeline.defs.run_options import DryRunConfig, WorkbooksReadConfig
from outreach_pipeline.engine.dry_run import CHANGES_COLUMN
from outreach_pipeline.engine.outcome import Outcome
from outreach_pipeline.mapping.models import MappingSet
from outreach_pipeline.mapping.personal import mask_personal

PLAN_KEY = dg.AssetKey(["dry_run", "sync_plan"])
DRY_RUN_TAG = "outreach_pipeline/dry_run"
#: Planned records listed in a plan's metadata (the counts cover every record).
MAX_LISTED = 500
TO_WORKBOOKS, TO_OUTREACH = "outreach_to_workbooks", "workbooks_to_outreach"
COUNTED = [outcome.value for outcome in Outcome]


class DryRunPlanConfig(dg.Config):
    """`from_beginning`: plan the first sync (every read without a lower bound) instead of the windows alone."""

    from_beginning: bool = False


class DryRunFailed(RuntimeError):
    """A step of the dry run failed; the message names each failed step and why."""


@dataclass
class DryRunReport:
    """A dry run's plan: one row per (direction, entity, window) with the counts, and the planned records."""

    first_window: str
    last_window: str
    counts: list[dict[str, Any]] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)

    def totals(self) -> dict[tuple[str, str], dict[str, int]]:
        """Counts per (direction, entity) over every window."""
        totals: dict[tuple[str, str], dict[str, int]] = {}
        for row in self.counts:
            total = totals.setdefault((row["direction"], row["entity"]), dict.fromkeys(COUNTED, 0))
            for name in COUNTED:
                total[name] += row[name]
        return totals


def dry_run_ops_config(*, from_beginning: bool = False) -> dict[str, Any]:
    """Run config of the steps for a dry run (and the first sync's reads when `from_beginning`)."""
    dry = {"config": DryRunConfig(dry_run=True).model_dump()}
    ops: dict[str, Any] = {flow.load_key.to_python_identifier(): dry for flow in FLOWS}
    ops |= {WRITE_STEP: dry, LINK_STEP: dry}
    if from_beginning:
        ops |= {flow.extract_key.to_python_identifier(): {"config": ExtractConfig(from_beginning=True).model_dump()}
                for flow in FLOWS}
        ops[READ_STEP] = {"config": WorkbooksReadConfig(from_beginning=True).model_dump()}
    return ops


class _MemoryIOManager(dg.IOManager):
    """Outputs kept in memory for the one run of a dry run (a range's frame as a whole)."""

    def __init__(self) -> None:
        self.values: dict[dg.AssetKey, Any] = {}

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        self.values[context.asset_key] = obj

    def load_input(self, context: dg.InputContext) -> Any:
        return self.values[context.asset_key]


def execute_dry_run(
    windows: dg.TimeWindowPartitionsDefinition, resources: Mapping[str, Any], first: str, last: str, *,
    from_beginning: bool = False,
) -> DryRunReport:
    """Plan the sync of windows [first, last] with `resources` (outreach, workbooks, ledger, sync_settings).

    Raises:
        DryRunFailed: A step failed (an API down, a preflight problem): its error, as the live run would show it.
    """
    from outreach_pipeline.defs.assets import build_assets  # the same assets as the code location's

    memory = _MemoryIOManager()
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            build_assets(windows),
            # The plan reports failures; it does not judge them (the failure_rate check steps would fail it).
            selection=dg.AssetSelection.all() - dg.AssetSelection.checks(
                *(dg.AssetCheckKey(flow.load_key, FAILURE_RATE_CHECK) for flow in FLOWS),
                *(dg.AssetCheckKey(flow.write_key, FAILURE_RATE_CHECK) for flow in REVERSE_FLOWS)),
            resources={**{name: resources[name] for name in ("outreach", "workbooks", "ledger", "sync_settings")},
                       "window_io_manager": memory},
            instance=instance,
            tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last,
                  DRY_RUN_TAG: "true"},
            run_config={"ops": dry_run_ops_config(from_beginning=from_beginning),
                        "loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
            raise_on_error=False,
        )
        if not result.success:
            failures = [f"{event.step_key}: {event.step_failure_data.error.message.strip() if event.step_failure_data.error else ''}"
                        for event in result.get_step_failure_events()]
            raise DryRunFailed("the dry run failed: " + "; ".join(failures or ["see the run's events"]))
    report = DryRunReport(first_window=first, last_window=last)
    forward = {flow.entity: memory.values.get(flow.load_key) for flow in FLOWS}
    for flow in FLOWS:
        _add(report, TO_WORKBOOKS, flow.workbooks_name, forward[flow.entity])
    for reverse in REVERSE_FLOWS:
        written = memory.values.get(reverse.write_key)
        _add(report, TO_OUTREACH, reverse.outreach_name,
             _with_read_back(written, forward.get(reverse.entity), windows.time_window_for_partition_key(last).start))
    return report


def _with_read_back(written: pd.DataFrame | None, loaded: pd.DataFrame | None, last_start: Any) -> pd.DataFrame | None:
    """The Workbooks -> Outreach results plus, as unchanged, the records the Outreach -> Workbooks direction would
    write that the Workbooks read did not return.

    A live run reads those records back for the window (the ledger's `written_in_window`: the write moved their
    Updated At out of it), and, both sides then holding the values just agreed, plans them unchanged (loop
    prevention). A dry run wrote nothing, so its read cannot return them: they are counted here, in the range's
    last window, where a live run stores a record updated after the range.
    """
    if loaded is None or loaded.empty:
        return written
    wrote = loaded[loaded["outcome"].map(lambda v: getattr(v, "value", v)).isin([Outcome.CREATED.value,
                                                                              Outcome.UPDATED.value])]
    seen = set() if written is None or written.empty else {int(i) for i in written["workbooks_id"].dropna()}
    back = wrote[~wrote["workbooks_id"].map(lambda i: i is not None and not pd.isna(i) and int(i) in seen)]
    if back.empty:
        return written
    rows = pd.DataFrame({"workbooks_id": back["workbooks_id"].to_numpy(), "outreach_id": back["outreach_id"].to_numpy(),
                         "outcome": Outcome.UNCHANGED.value, "reason": "read_back",
                         WINDOW_COLUMN: pd.Timestamp(last_start)})
    return rows if written is None or written.empty else pd.concat([written, rows], ignore_index=True)


def _add(report: DryRunReport, direction: str, entity: str, frame: pd.DataFrame | None) -> None:
    if frame is None or frame.empty:
        return
    frame = frame.assign(**{WINDOW_COLUMN: pd.to_datetime(frame[WINDOW_COLUMN], utc=True).dt.strftime("%Y-%m-%d-%H:%M")})
    outcome = frame["outcome"].map(lambda value: getattr(value, "value", value)).replace({"adopted": Outcome.UPDATED.value})
    for window, rows in frame.assign(outcome=outcome).groupby(WINDOW_COLUMN, sort=True):
        counts = rows["outcome"].value_counts().to_dict()
        report.counts.append({"direction": direction, "entity": entity, "window": window,
                              **{name: int(counts.get(name, 0)) for name in COUNTED}})
        for row in rows.to_dict("records"):
            if row["outcome"] == Outcome.UNCHANGED.value:
                continue
            report.records.append({
                "direction": direction, "entity": entity, "window": window, "outcome": row["outcome"],
                "outreach_id": _id(row.get("outreach_id")), "workbooks_id": _id(row.get("workbooks_id")),
                "reason": _text(row.get("reason")), "error": _text(row.get("error")),
                "changes": row.get(CHANGES_COLUMN) or {},
            })


def _text(value: Any) -> str | None:
    """A reason or error as text; blank and missing (None, NaN) as None."""
    return str(value) if isinstance(value, str) and value else None


def _id(value: Any) -> int | None:
    return None if value is None or pd.isna(value) else int(value)


def masked(records: list[dict[str, Any]], mappings: MappingSet, settings: SyncSettings) -> list[dict[str, Any]]:
    """The planned records with personal values masked, unless the settings show them."""
    if settings.show_personal_data:
        return records
    names = frozenset().union(*(entity.personal_fields() for entity in mappings.entities.values()))
    personal = names | {name.split("[")[0] for name in names}  # Outreach writes emails[0] as the list emails
    return [{**row, "changes": {name: mask_personal(change, frozenset({"old", "new"}))
                                if name in personal else change for name, change in row["changes"].items()}}
            for row in records]


def plan_metadata(report: DryRunReport, mappings: MappingSet, settings: SyncSettings) -> dict[str, Any]:
    """The plan as materialisation metadata: totals, counts per window, the planned records (masked, capped)."""
    totals = [{"direction": d, "entity": e, **counts} for (d, e), counts in report.totals().items()]
    return {
        "dry_run": True,
        "windows": f"{report.first_window} .. {report.last_window}",
        "totals": dg.MetadataValue.json(totals),
        "by_window": dg.MetadataValue.json(report.counts),
        **{f"records_{name}": sum(row[name] for row in totals) for name in COUNTED},
        "planned_records": dg.MetadataValue.json(masked(report.records[:MAX_LISTED], mappings, settings)),
        "planned_records_not_listed": max(0, len(report.records) - MAX_LISTED),
    }


def build_dry_run_assets(windows: dg.TimeWindowPartitionsDefinition) -> list[dg.AssetsDefinition]:
    """The `dry_run/sync_plan` asset: the UI's dry run of any window or range."""

    @dg.asset(
        key=PLAN_KEY,
        partitions_def=windows,
        backfill_policy=BACKFILL_IN_ONE_RUN,
        group_name=Group.DRY_RUN.value,
        kinds={"outreach", "workbooks"},
        owners=OWNERS,
        description=(
            "Dry run of the sync of the selected windows, both directions: the planners' decisions with nothing "
            "written to Outreach, Workbooks or the sync ledger, and no sync asset materialised (the plan runs "
            "against a throw-away instance). Its metadata lists, per window and entity, the creates, the updates "
            "with old and new values, the skips and the failures (personal fields masked unless "
            "show_personal_data). Run config from_beginning plans the first sync."
        ),
        tags={"dry_run": "true"},
    )
    def sync_plan(
        context: dg.AssetExecutionContext, config: DryRunPlanConfig, outreach: OutreachResource,
        workbooks: WorkbooksResource, ledger: LedgerResource, sync_settings: SyncSettings,
    ) -> dg.MaterializeResult:
        keys = context.partition_key_range
        resources = {"outreach": outreach, "workbooks": workbooks, "ledger": ledger, "sync_settings": sync_settings}
        try:
            report = execute_dry_run(windows, resources, keys.start, keys.end, from_beginning=config.from_beginning)
        except DryRunFailed as exc:
            raise dg.Failure(description=str(exc)) from None
        for (direction, entity), counts in report.totals().items():
            context.log.info("dry run %s %s: %s", direction, entity, counts)
        return dg.MaterializeResult(metadata=plan_metadata(report, sync_settings.mappings(), sync_settings))

    return [sync_plan]
