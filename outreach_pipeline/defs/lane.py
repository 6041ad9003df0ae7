"""The low-latency lane in Dagster: `low_latency_lane_job` (one op, unpartitioned) and the sensor launching it.

The lane itself is `engine/lane.py`; this module only runs it. Rules:
* Off by default. With the `low_latency_minutes` setting (``OUTREACH_PIPELINE_LOW_LATENCY_MINUTES``, 1..59) the
  code location gains the job and the `low_latency_lane` sensor, running, which requests a lane run every N
  minutes. Without it neither exists: the hourly schedule alone syncs.
* Lane runs never overlap one another, nor a sync run of the same instance: the sensor requests none while a lane
  run or a sync run (schedule, first sync, UI backfill) is queued or in progress, because the Workbooks ->
  Outreach merge cannot tell a Workbooks read taken before another run's write from a newer change; the
  instance's run queue admits one run tagged `outreach-pipeline/lane` at a time (dagster.yaml), and were two to
  run anyway (launched by hand, or an hourly run started during a lane run) the writer locks serialise their
  writes, the lane reads Workbooks under its lock, and the second finds the records unchanged.
* The run's range is decided when the op starts, from the ledger's cursor (`engine/ledger_lane.py`), not by
  the sensor: a run that failed or was killed did not move the cursor, so the next run reads its range again.
  `LaneConfig.until` pins the end of the range (tests, the benchmark); by default it is now less the lag.
* Lane runs carry the tag `outreach-pipeline/lane=true` and their own job name, so the Runs page tells them
  from the hourly `outreach_to_workbooks_job` runs. They hold no API pool: a lane run makes a few requests per
  entity, and waiting behind a long hourly step would defeat its purpose; the clients honour rate limits.
"""

from datetime import UTC, datetime, timedelta

import dagster as dg
from dagster._core.storage.dagster_run import IN_PROGRESS_RUN_STATUSES

from outreach_pipeline.defs.jobs import FULL_SYNC_JOB, SYNC_JOB
from outreach_pipeline.defs.resources import LedgerResource, OutreachResource, SyncSettings, WorkbooksResource
from outreach_pipeline.engine.lane import LANE_FLOWS, Lane, lane_range
from outreach_pipeline.engine.ledger_lane import finish_lane_run, lane_cursor, start_lane_run
from outreach_pipeline.settings import PipelineSettings

LANE_JOB = "low_latency_lane_job"
LANE_SENSOR = "low_latency_lane"
LANE_OP = "low_latency_lane"
LANE_TAG = "outreach-pipeline/lane"
LANE_TAGS = {LANE_TAG: "true"}
#: Jobs that sync windows (the schedule's, the first sync's, and Dagster's implicit job of UI backfills): no lane
#: run starts while one of them is queued or running (see the module's rules).
SYNC_JOBS = (SYNC_JOB, FULL_SYNC_JOB, "__ASSET_JOB")


class LaneConfig(dg.Config):
    """`until`: the end of the range read (ISO datetime, UTC); default now less `lag_seconds`."""

    until: str | None = None
    lag_seconds: float = 10.0


def _until(config: LaneConfig) -> datetime:
    if config.until is None:
        return datetime.now(UTC) - timedelta(seconds=config.lag_seconds)
    moment = datetime.fromisoformat(config.until.replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dg.op(name=LANE_OP, out=dg.Out(dg.Nothing),
       description=("The open hour's changes of accounts, prospects and opportunities since the lane's last run, "
                    "Outreach -> Workbooks then Workbooks -> Outreach, through the hourly runs' engine "
                    "(engine/lane.py)."))
def lane_op(context: dg.OpExecutionContext, config: LaneConfig, outreach: OutreachResource,
            workbooks: WorkbooksResource, ledger: LedgerResource, sync_settings: SyncSettings):
    lag = timedelta(seconds=config.lag_seconds)
    until = _until(config)
    with ledger.open() as sync_ledger, outreach.open() as outreach_client, workbooks.open() as workbooks_client:
        # `until` is already now less the lag; lane_range takes the lag off `now`, so it is given back here.
        span = lane_range(lane_cursor(sync_ledger), until + lag, lag)
        start_lane_run(sync_ledger, context.run.run_id, span.since, span.until)
        lane = Lane(outreach=outreach_client, workbooks=workbooks_client, ledger=sync_ledger,
                    mappings=sync_settings.mappings(), run_id=context.run.run_id,
                    locks=sync_settings.lock_settings(), on_wait=context.log.warning)
        result = lane.sync(span)
        finish_lane_run(sync_ledger, context.run.run_id)
        requests = outreach_client.stats.total_requests + workbooks_client.stats.total_requests
    context.log.info("lane [%s, %s): %d records written; to Workbooks %s; to Outreach %s", span.since.isoformat(),
                     span.until.isoformat(), result.writes(), result.to_workbooks, result.to_outreach)
    yield dg.Output(None, metadata={
        "since": span.since.isoformat(), "until": span.until.isoformat(),
        "records_written": result.writes(),
        "to_workbooks": dg.MetadataValue.json(result.to_workbooks),
        "to_outreach": dg.MetadataValue.json(result.to_outreach),
        "records_read": dg.MetadataValue.json(result.read),
        "api_requests": requests,
    })


def build_lane_job(settings: PipelineSettings, executor: dg.ExecutorDefinition = dg.in_process_executor
                   ) -> dg.JobDefinition:
    """The lane's job: one op, its lag from the settings, tagged as a lane run."""

    @dg.job(name=LANE_JOB, tags=LANE_TAGS, executor_def=executor,
            config={"ops": {LANE_OP: {"config": {"lag_seconds": settings.low_latency_lag_seconds}}}},
            description=(f"Low-latency lane: {', '.join(flow.entity for flow in LANE_FLOWS)} changed since the "
                         "lane's last run, both directions; launched by the low_latency_lane sensor."))
    def low_latency_lane_job() -> None:
        lane_op()

    return low_latency_lane_job


def build_lane_sensor(minutes: int, job: dg.JobDefinition) -> dg.SensorDefinition:
    """Requests a lane run every `minutes` minutes unless one is queued or in progress."""

    @dg.sensor(name=LANE_SENSOR, job=job, minimum_interval_seconds=minutes * 60,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description=f"Every {minutes} minute(s): a low-latency lane run, unless one is still queued or running.")
    def low_latency_lane(context: dg.SensorEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        for job_name in (LANE_JOB, *SYNC_JOBS):
            busy = context.instance.get_run_records(
                dg.RunsFilter(job_name=job_name, statuses=IN_PROGRESS_RUN_STATUSES), limit=1)
            if busy:
                run = busy[0].dagster_run
                return dg.SkipReason(f"{job_name} run {run.run_id} is still {run.status.value}")
        return dg.RunRequest(tags=LANE_TAGS)

    return low_latency_lane


def build_lane(settings: PipelineSettings, executor: dg.ExecutorDefinition = dg.in_process_executor
               ) -> tuple[list[dg.JobDefinition], list[dg.SensorDefinition]]:
    """The lane's job and sensor when `low_latency_minutes` is set; nothing when it is not (the default)."""
    if settings.low_latency_minutes is None:
        return [], []
    job = build_lane_job(settings, executor)
    return [job], [build_lane_sensor(settings.low_latency_minutes, job)]
