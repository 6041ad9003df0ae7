"""The `failure_rate` check of each Outreach -> Workbooks load and of the Workbooks -> Outreach writes: new
failures / records per window, and a run that fails at ERROR.

The check runs in its own step after the step it judges, so:

* a rate at ERROR fails that step and therefore the run (red in the UI, exit 1 from `sync`), after the judged
  step's materializations, their metadata and its ledger records are stored: the audit is intact, nothing is
  undone;
* no other asset waits on it, so the other loads of the run (and the link-back of refused writes) still run:
  per-record failures stay per record, and a bad hour of one entity leaves no gap in the others;
* it reports one evaluation per window of the run (a partitioned check), from the judged asset's outcomes of
  that window, tied to the window's materialization. Dagster plans one check row per window of a ranged run,
  whether or not the check is partitioned; an evaluation without a partition would leave every one of those
  rows "Skipped" (77 of 78 after a 78-window backfill). Dagster stores evaluations one by one, three
  transactions each; the sandbox profile's storage holds a step's evaluations and stores them as one batch
  (`outreach_pipeline.instance_storage`), so a quiet window's eleven (seven loads, four writes) cost little.

The rate of a window judges new failures: failed / all of its records, leaving out on both sides the stuck
records (failed `SyncSettings.stuck_after_runs` runs in a row, this one included: `failed_retried`, reported). A
record failing every run until its source is fixed would otherwise keep every quiet hour at ERROR (392 old
failures of 395 records in a rerun of one hour of the 20,000-prospect backfill); such records are the
stuck-records alert's (`defs.alerts`). ERROR needs volume: `failure_rate_result`.

Both directions judge a window the same way, with the same settings and the same stuck rule (`build_failure_rate_check`):

* Outreach -> Workbooks: one check step per load asset (`workbooks/<records>`; the loads are steps of their
  own), over the load's outcomes by Outreach id;
* Workbooks -> Outreach: one check step for the write step's assets (`outreach/<resource>_written`: one step
  writes every record type), over the write's outcomes by Workbooks id: refused records / records the window
  selected. A refused record is flagged and not read again until a person clears the flag; one refused
  `stuck_after_runs` times in a row (flag cleared, source not fixed) is counted apart like a stuck record.
"""


# No `from __future__ import annotations`: Dagster reads the `context` annotation at definition time.
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import dagster as dg
import pandas as pd
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from outreach_pipeline.defs.partitions import WINDOW_COLUMN
from outreach_pipeline.defs.resources import LedgerResource, SyncSettings
from outreach_pipeline.engine.ledger import SyncLedger
from outreach_pipeline.engine.outcome import Outcome, SyncDirection

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
    """`workbooks/people: failure rate 22.0% (11 of 50) above the ERROR threshold 10.0% in window ...` (the
    windows at ERROR)."""
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


QUIET = WindowCounts(judged=0, failed=0, failed_retried=0)


def counts_by_window(outcomes: pd.DataFrame, failed_before: set[int], *, id_column: str) -> dict[pd.Timestamp, WindowCounts]:
    """Each window's counts (by its start) from the outcomes of a run, each record known by `id_column`; a window
    without outcomes is absent (`QUIET`)."""
    counts: dict[pd.Timestamp, WindowCounts] = {}
    if not len(outcomes):
        return counts
    for start, rows in outcomes.groupby(WINDOW_COLUMN, sort=False):
        ids = set(rows[id_column])
        failed = set(rows.loc[rows["outcome"] == Outcome.FAILED.value, id_column])
        counts[pd.Timestamp(start)] = WindowCounts(judged=len(ids - failed_before), failed=len(failed - failed_before),
                                                   failed_retried=len(failed & failed_before))
    return counts


def failed_before(ledger: SyncLedger, entities: Iterable[str], outreach_ids: set[int], stuck_after_runs: int) -> set[int]:
    """Those of `outreach_ids` that the run left failing `stuck_after_runs` runs or more in a row (each record
    under the entity it went through: a routed task may be a meeting)."""
    before: set[int] = set()
    for entity in entities:
        states = ledger.get_states(entity, outreach_ids - before)
        before |= {i for i, state in states.items()
                   if state.last_outcome is Outcome.FAILED and state.fail_streak >= stuck_after_runs}
    return before


def refused_before(ledger: SyncLedger, entity: str, run_id: str, stuck_after_runs: int) -> set[int]:
    """Workbooks ids of the records of `entity` the run's Workbooks -> Outreach write refused for the
    `stuck_after_runs`-th time in a row or more (the streak the run recorded)."""
    return {failure.workbooks_id for failure in ledger.failures(run_id=run_id, entity=entity,
                                                                direction=SyncDirection.TO_OUTREACH)
            if failure.workbooks_id is not None and failure.streak >= stuck_after_runs}


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


@dataclass(frozen=True)
class RateTarget:
    """An asset a `failure_rate` check judges, and the ledger's entity of its records."""

    asset: dg.AssetKey
    entity: str


_THRESHOLDS = ("against the WARN and ERROR thresholds (SyncSettings failure_rate_warn, failure_rate_error). ERROR "
               "needs at least failure_rate_min_records records in the window, or in the run's windows together "
               "with their pooled rate above it too. ")
DESCRIPTIONS = {
    SyncDirection.TO_WORKBOOKS: (
        "New failures / records of each window (records that had failed stuck_after_runs runs in a row are counted "
        "apart), " + _THRESHOLDS + "At ERROR this step fails, so the run fails, after the load's records are "
        "stored; the other loads still run."),
    SyncDirection.TO_OUTREACH: (
        "Outreach's refusals / records selected in each window (a record refused stuck_after_runs times in a row "
        "is counted apart), " + _THRESHOLDS + "At ERROR this step fails, so the run fails, after the writes are "
        "stored; the link-back still runs."),
}
#: The column that names a record in each direction's outcomes (the ledger keys the directions' failures so).
ID_COLUMN = {SyncDirection.TO_WORKBOOKS: "outreach_id", SyncDirection.TO_OUTREACH: "workbooks_id"}


def build_failure_rate_check(targets: Sequence[RateTarget], windows: dg.TimeWindowPartitionsDefinition, *,
                             name: str, direction: SyncDirection) -> dg.AssetChecksDefinition:
    """The `failure_rate` check of the assets `targets` (loads or writes of `direction`), one step named `name`
    that loads their outcomes of the run's windows: one evaluation per asset and window the run materialised."""
    # A partitioned check spec is what lets each window keep its own evaluation; labelled preview in 1.13.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        specs = [dg.AssetCheckSpec(CHECK_NAME, asset=target.asset, partitions_def=windows,
                                   description=DESCRIPTIONS[direction]) for target in targets]
    ins = {target.asset.to_python_identifier(): dg.AssetIn(target.asset) for target in targets}

    @dg.multi_asset_check(specs=specs, name=name, ins=ins)
    def failure_rate(context: dg.AssetCheckExecutionContext, ledger: LedgerResource, sync_settings: SyncSettings,
                     **outcomes: pd.DataFrame):
        run_id = context.run.run_id
        at_error_windows: dict[dg.AssetKey, list[WindowRate]] = {}
        with ledger.open() as sync_ledger:
            for target, spec in zip(targets, specs, strict=True):
                frame = outcomes[target.asset.to_python_identifier()]
                known = _failed_before(direction, sync_ledger, target, frame, run_id, sync_settings)
                by_start = counts_by_window(frame, known, id_column=ID_COLUMN[direction])
                materialized = [
                    (record, by_start.get(pd.Timestamp(windows.time_window_for_partition_key(
                        record.partition_key).start), QUIET))
                    for record in run_materializations(context.instance, run_id, target.asset)]
                run_total = (sum(c.failed for _, c in materialized), sum(c.judged for _, c in materialized))
                errors: list[WindowRate] = []
                for record, counts in materialized:
                    result = failure_rate_result(counts.failed, counts.judged, sync_settings,
                                                 failed_retried=counts.failed_retried, run_total=run_total)
                    yield dg.AssetCheckEvaluation(
                        asset_key=target.asset, check_name=CHECK_NAME, passed=result.passed,
                        severity=result.severity, metadata=result.metadata, partition=record.partition_key,
                        blocking=False,
                        target_materialization_data=AssetCheckEvaluationTargetMaterializationData(
                            storage_id=record.storage_id, run_id=run_id, timestamp=record.timestamp),
                    )
                    if at_error(result):
                        errors.append(WindowRate(window=record.partition_key, failed=counts.failed,
                                                 extracted=counts.judged))
                if errors:
                    at_error_windows[target.asset] = errors
                else:  # the check's output (no value): each window's evaluation was reported above
                    yield dg.Output(None, output_name=spec.get_python_identifier())
        if at_error_windows:
            raise FailureRateAtError(
                description="; ".join(failure_rate_message(key, rates, sync_settings.failure_rate_error)
                                      for key, rates in at_error_windows.items()),
                metadata={"windows_at_error": [w.window or "" for rates in at_error_windows.values() for w in rates],
                          "worst_rate": max(w.rate for rates in at_error_windows.values() for w in rates)},
                allow_retries=False,
            )

    return failure_rate


def _failed_before(direction: SyncDirection, ledger: SyncLedger, target: RateTarget, outcomes: pd.DataFrame,
                   run_id: str, settings: SyncSettings) -> set[int]:
    """The ids (`ID_COLUMN[direction]`) of the records of the run's outcomes of `target` that had failed before:
    stuck."""
    if direction is SyncDirection.TO_OUTREACH:
        return refused_before(ledger, target.entity, run_id, settings.stuck_after_runs)
    failed_ids = set(outcomes.loc[outcomes["outcome"] == Outcome.FAILED.value, "outreach_id"]) if len(outcomes) else set()
    return failed_before(ledger, settings.mappings().route_entities(target.entity), failed_ids,
                         settings.stuck_after_runs)
