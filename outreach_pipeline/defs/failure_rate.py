"""The `failure_rate` check of each load: new failures / records per window, and a run that fails at ERROR.

The check runs in its own step after the load, so:

* a rate at ERROR fails that step and therefore the run (red in the UI, exit 1 from `sync`), after the load's
  materialization, its metadata and its ledger records are stored: the audit is intact, nothing is undone;
* no other asset waits on it, so the other loads of the run (and later windows' downstream loads) still run:
  per-record failures stay per record, and a bad hour of one entity leaves no gap in the others;
* it reports one evaluation per window of the run (a partitioned check), from the load's outcomes of that
  window, tied to the window's materialization. Dagster plans one check row per partition of a ranged run; a check inside the load's step
  could only report one evaluation for the whole range (it has no partition key), which left every other
  planned row "Skipped" (77 of 78 after a 78-window backfill).

The rate of a window judges new failures: failed / all of its records, leaving out on both sides the stuck
records (failed `SyncSettings.stuck_after_runs` runs in a row, this one included: `failed_retried`, reported). A record failing every run until its
source is fixed would otherwise keep every quiet hour at ERROR (392 old failures of 395 records in a rerun of
one hour of the 20,000-prospect backfill); such records are the stuck-records alert's (`defs.alerts`).
"""


# No `from __future__ import annotations`: Dagster reads the `context` annotation at definition time.
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import dagster as dg
import pandas as pd
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from outreach_pipeline.defs.partitions import WINDOW_COLUMN
from outreach_pipeline.defs.resources import LedgerResource, SyncSettings
from outreach_pipeline.engine.ledger import SyncLedger
from outreach_pipeline.engine.outcome import Outcome

CHECK_NAME = "failure_rate"
PAGE = 1000  # materialisation records read at a time


def failure_rate_result(failed: int, extracted: int, settings: SyncSettings, *,
                        failed_retried: int = 0, run_total: tuple[int, int] | None = None) -> dg.AssetCheckResult:
    """WARN above `failure_rate_warn`, ERROR above `failure_rate_error` ("above": a rate equal to a threshold is
    on the lower side); an empty window passes. ERROR needs volume: the window holds at least
    `failure_rate_min_records` records, or the run's windows together (`run_total`: failed, records) hold that many
    and their pooled rate is above the threshold too; otherwise a window fails at WARN at most. `failed_retried`
    (stuck records that failed again) is reported, not judged."""
    rate = failed / extracted if extracted else 0.0
    pooled_failed, pooled = run_total or (failed, extracted)
    judged = extracted >= settings.failure_rate_min_records or (
        pooled >= settings.failure_rate_min_records and pooled_failed / pooled > settings.failure_rate_error)
    severity = (dg.AssetCheckSeverity.ERROR if judged and rate > settings.failure_rate_error
                else dg.AssetCheckSeverity.WARN)
    return dg.AssetCheckResult(
        check_name=CHECK_NAME,
        passed=rate <= settings.failure_rate_warn,
        severity=severity,
        metadata={"failure_rate": rate, "failed": failed, "extracted": extracted, "failed_retried": failed_retried,
                  "warn_above": settings.failure_rate_warn, "error_above": settings.failure_rate_error,
                  "error_from_records": settings.failure_rate_min_records},
    )


def at_error(result: dg.AssetCheckResult | dg.AssetCheckEvaluation) -> bool:
    """Whether a check result failed at ERROR severity."""
    return not result.passed and result.severity == dg.AssetCheckSeverity.ERROR


class FailureRateAtError(dg.Failure):
    """A load's failure rate is above `failure_rate_error` in at least one window of the run."""


@dataclass(frozen=True)
class WindowRate:
    """One window's failure rate, as the check reported it."""

    window: str | None
    failed: int
    extracted: int

    @property
    def rate(self) -> float:
        return self.failed / self.extracted if self.extracted else 0.0


def failure_rate_message(asset: dg.AssetKey, windows: list[WindowRate], error_above: float) -> str:
    """`workbooks/people: failure rate 22.0% (11 of 50) above the ERROR threshold 10.0% in window ...`."""
    worst = max(windows, key=lambda window: window.rate)
    where = (f" in window {worst.window}" if len(windows) == 1 else
             f" in {len(windows)} windows, worst {worst.window}") if worst.window else ""
    return (f"{asset.to_user_string()}: failure rate {worst.rate:.1%} ({worst.failed} of {worst.extracted} records)"
            f" above the ERROR threshold {error_above:.1%}{where}")


@dataclass(frozen=True)
class WindowCounts:
    """A window's judged records (all but those that had failed before), their failures, and the failures of
    records that had failed before."""

    judged: int
    failed: int
    failed_retried: int


def window_counts(outcomes: pd.DataFrame, start: pd.Timestamp, failed_before: set[int]) -> WindowCounts:
    """Counts of the window starting at `start` from the load's outcomes of the run."""
    rows = outcomes[outcomes[WINDOW_COLUMN] == start] if len(outcomes) else outcomes
    ids = set(rows["outreach_id"]) if len(rows) else set()
    failed = set(rows.loc[rows["outcome"] == Outcome.FAILED.value, "outreach_id"]) if len(rows) else set()
    return WindowCounts(judged=len(ids - failed_before), failed=len(failed - failed_before),
                        failed_retried=len(failed & failed_before))


def failed_before(ledger: SyncLedger, entities: Iterable[str], outreach_ids: set[int], stuck_after_runs: int) -> set[int]:
    """Those of `outreach_ids` that the run left failing `stuck_after_runs` runs or more in a row (each record
    under the entity it went through: a routed task may be a meeting)."""
    before: set[int] = set()
    for entity in entities:
        states = ledger.get_states(entity, outreach_ids - before)
        before |= {i for i, state in states.items()
                   if state.last_outcome is Outcome.FAILED and state.fail_streak >= stuck_after_runs}
    return before


def run_materializations(instance: dg.DagsterInstance, run_id: str, key: dg.AssetKey) -> Iterator[dg.EventLogRecord]:
    """The run's materialisations of `key`, oldest first: read by asset key (indexed), not through every event of
    the run, which a long backfill makes large."""
    run = instance.get_run_record_by_id(run_id)
    since = run.create_timestamp.timestamp() if run is not None else None
    cursor = None
    while True:
        page = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key, after_timestamp=since),
                                               limit=PAGE, cursor=cursor, ascending=True)
        yield from (record for record in page.records if record.run_id == run_id)
        if not page.has_more:
            return
        cursor = page.cursor


def build_failure_rate_check(entity: str, load_key: dg.AssetKey,
                             windows: dg.TimeWindowPartitionsDefinition) -> dg.AssetChecksDefinition:
    """The `failure_rate` check of the load asset `load_key` of `entity` (the ledger's name), reading the load's
    outcomes: one evaluation per window the run materialised."""
    # A partitioned check spec is what lets each window keep its own evaluation; labelled preview in 1.13.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        spec = dg.AssetCheckSpec(
            CHECK_NAME, asset=load_key, partitions_def=windows,
            description=("New failures / records of each window (records that had failed before are counted apart), "
                         "against the WARN and ERROR thresholds "
                         "(SyncSettings failure_rate_warn, failure_rate_error). ERROR needs at least "
                         "failure_rate_min_records records in the window, or in the run's windows together with their "
                         "pooled rate above it too. At ERROR this step fails, so the run "
                         "fails, after the load's records are stored; the other loads still run."),
        )

    @dg.multi_asset_check(specs=[spec], name=f"{load_key.to_python_identifier()}_{CHECK_NAME}",
                          ins={"outcomes": dg.AssetIn(load_key)})
    def failure_rate(context: dg.AssetCheckExecutionContext, outcomes: pd.DataFrame, ledger: LedgerResource,
                     sync_settings: SyncSettings):
        at_error_windows: list[WindowRate] = []
        failed_ids = set(outcomes.loc[outcomes["outcome"] == Outcome.FAILED.value, "outreach_id"]) if len(outcomes) else set()
        with ledger.open() as sync_ledger:
            known = failed_before(sync_ledger, sync_settings.mappings().route_entities(entity), failed_ids,
                                  sync_settings.stuck_after_runs)
        materialized = [
            (record, window_counts(outcomes, pd.Timestamp(windows.time_window_for_partition_key(
                record.partition_key).start), known))
            for record in run_materializations(context.instance, context.run.run_id, load_key)
        ]
        run_total = (sum(c.failed for _, c in materialized), sum(c.judged for _, c in materialized))
        for record, counts in materialized:
            partition = record.partition_key
            window = WindowRate(window=partition, failed=counts.failed, extracted=counts.judged)
            result = failure_rate_result(counts.failed, counts.judged, sync_settings,
                                         failed_retried=counts.failed_retried, run_total=run_total)
            yield dg.AssetCheckEvaluation(
                asset_key=load_key, check_name=CHECK_NAME, passed=result.passed, severity=result.severity,
                metadata=result.metadata, partition=partition, blocking=False,
                target_materialization_data=AssetCheckEvaluationTargetMaterializationData(
                    storage_id=record.storage_id, run_id=context.run.run_id, timestamp=record.timestamp),
            )
            if at_error(result):
                at_error_windows.append(window)
        if not at_error_windows:
            # The check's output (no value): each window's evaluation was reported above.
            yield dg.Output(None, output_name=spec.get_python_identifier())
            return
        raise FailureRateAtError(
            description=failure_rate_message(load_key, at_error_windows, sync_settings.failure_rate_error),
            metadata={"windows_at_error": [w.window or "" for w in at_error_windows],
                      "worst_rate": max(w.rate for w in at_error_windows)},
            allow_retries=False,
        )

    return failure_rate
