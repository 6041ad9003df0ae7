"""The reconcile job (not partitioned) and its daily schedule: every linked record compared in both systems.

It repairs what the hourly windows cannot see (changes that do not bump ``updatedAt``, records deleted on one
side) and refuses to run, changing nothing, when its planned changes exceed ``max_change_share`` of an
entity's linked records (run config). Organisations first, then People, then Opportunities, as in the windows.
"""

import dagster as dg

from outreach_pipeline.defs.resources import LedgerResource, OutreachResource, SyncSettings, WorkbooksResource
from outreach_pipeline.engine.reconcile import (
    DEFAULT_MAX_CHANGE_SHARE,
    ReconcileAborted,
    Reconciler,
    reconcile_all,
)

RECONCILE_JOB = "reconcile_job"
RECONCILE_SCHEDULE = "daily_reconcile"
#: Daily, away from the hourly windows' minute.
RECONCILE_CRON = "40 2 * * *"
#: (entity, Outreach collection), in link order.
RECONCILED = (("accounts", "accounts"), ("prospects", "prospects"), ("opportunities", "opportunities"))


class ReconcileConfig(dg.Config):
    """`max_change_share`: above this share of an entity's linked records to change, reconcile aborts."""

    max_change_share: float = DEFAULT_MAX_CHANGE_SHARE


@dg.op(description="Compares every linked record in Outreach and Workbooks and repairs drift; aborts, changing "
                   "nothing, when the changes exceed max_change_share of an entity's linked records.")
def reconcile_linked_records(
    context: dg.OpExecutionContext,
    config: ReconcileConfig,
    outreach: OutreachResource,
    workbooks: WorkbooksResource,
    ledger: LedgerResource,
    sync_settings: SyncSettings,
) -> dg.Output[dict]:
    mappings = sync_settings.mappings()
    with outreach.open() as outreach_client, workbooks.open() as workbooks_client, ledger.open() as sync_ledger:
        reconcilers = [
            Reconciler(
                outreach=outreach_client, workbooks=workbooks_client, ledger=sync_ledger, mappings=mappings,
                entity=mappings.entity(entity_name), resource=resource, run_id=context.run.run_id,
            )
            for entity_name, resource in RECONCILED
        ]
        try:
            reports = reconcile_all(reconcilers, config.max_change_share)
        except ReconcileAborted as exc:
            raise dg.Failure(description=str(exc), metadata={"entity": exc.entity, "planned": exc.planned,
                                                             "linked": exc.linked}) from None
    summary = {
        report.entity: {
            "linked": report.linked, "repaired_in_workbooks": len(set(report.to_workbooks)),
            "repaired_in_outreach": len(set(report.to_outreach)),
            "deleted_in_outreach": len(report.deleted_in_outreach),
            "deleted_in_workbooks": len(report.deleted_in_workbooks),
        }
        for report in reports
    }
    context.log.info("reconciled: %s", summary)
    return dg.Output(summary, metadata={name: dg.MetadataValue.json(counts) for name, counts in summary.items()})


@dg.job(name=RECONCILE_JOB, description="Daily reconcile of every linked record in both systems.",
        executor_def=dg.in_process_executor)
def reconcile_job() -> None:
    reconcile_linked_records()


reconcile_schedule = dg.ScheduleDefinition(
    name=RECONCILE_SCHEDULE, job=reconcile_job, cron_schedule=RECONCILE_CRON,
    default_status=dg.DefaultScheduleStatus.RUNNING, execution_timezone="UTC",
    description="Daily at 02:40 UTC: reconcile every linked record.",
)
