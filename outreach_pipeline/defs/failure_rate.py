"""The `failure_rate` check of each load (and of the Workbooks -> Outreach writes, below): new failures / records
per window, and a run that fails at ERROR.

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

Both directions judge a window the same way, with the same settings and the same stuck rule:

* Outreach -> Workbooks: one check per load asset (`workbooks/<records>`), each in its own step after its load
  (the loads are steps of their own), over the load's outcomes by Outreach id, one evaluation per window (above);
* Workbooks -> Outreach: one check step for the write step's assets (`outreach/<resource>_written`: one step
  writes every record type), over the write's outcomes by Workbooks id: refused records / records the window
  selected. A refused record is flagged and not read again until a person clears the flag; one refused
  `stuck_after_runs` times in a row (flag cleared, source not fixed) is counted apart like a stuck record of the
  other direction. Its spec is NOT partitioned: ONE evaluation per asset and run, which judges every window of
  the run inside (`judge_run`) and names the worst one, the counts and the windows at WARN or ERROR in its
  metadata. Each evaluation costs Dagster about three instance connections and commits: per window, four
  evaluations made a quiet window ~30-60 % dearer (BENCHMARKS.md). The price: no per-window check status in the
  UI for the writes (the failed records of each window are on its materialisation, as before). An unpartitioned
  check may not take the partitioned asset as a loaded input (Dagster would map it to every window of the
  asset), so the step depends on the writes without loading them and reads the run's windows of their
  outcomes through the IO manager that stored them.

A check's step runs after the step it judges and nothing waits on it, so the link-back of refused records
(their flags) still runs when the write's rate is at ERROR.
"""


# No `from __future__ import annotations`: Dagster reads the `context` annotation at definition time.
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
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
#: Windows at WARN or ERROR listed in a per-run evaluation's `windows_flagged` (worst first; the counts cover all).
FLAGGED_ROWS = 24
IO_MANAGER_KEY = "window_io_manager"  # stores the write's outcomes, which the write check reads


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


def failure_rate_message(asset: dg.AssetKey, windows: list[WindowRate], error_above: float, *,
                         count: int | None = None) -> str:
    """`workbooks/people: failure rate 22.0% (11 of 50) above the ERROR threshold 10.0% in window ...`; `count`:
    the windows at ERROR when `windows` lists only some of them."""
    worst = max(windows, key=lambda window: window.rate)
    at_error_count = len(windows) if count is None else max(count, len(windows))
    where = (f" in window {worst.window}" if at_error_count == 1 else
             f" in {at_error_count} windows, worst {worst.window}") if worst.window else ""
    return (f"{asset.to_user_string()}: failure rate {worst.rate:.1%} ({worst.failed} of {worst.extracted} records)"
            f" above the ERROR threshold {error_above:.1%}{where}")


@dataclass(frozen=True)
class WindowCounts:
    """A window's judged records (all but those that had failed before), their failures, and the failures of
    records that had failed before."""

    judged: int
    failed: int
    failed_retried: int


def window_counts(outcomes: pd.DataFrame, start: pd.Timestamp, failed_before: set[int], *,
                  id_column: str = "outreach_id") -> WindowCounts:
    """Counts of the window starting at `start` from the outcomes of the run (each record by `id_column`)."""
    rows = outcomes[outcomes[WINDOW_COLUMN] == start] if len(outcomes) else outcomes
    ids = set(rows[id_column]) if len(rows) else set()
    failed = set(rows.loc[rows["outcome"] == Outcome.FAILED.value, id_column]) if len(rows) else set()
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


# ----------------------------------------------------------------------------- Workbooks -> Outreach writes


@dataclass(frozen=True)
class RateTarget:
    """A write asset the Workbooks -> Outreach `failure_rate` check judges, and the ledger's entity of its records."""

    asset: dg.AssetKey
    entity: str


@dataclass(frozen=True)
class JudgedWindow:
    """One window of a run, as the per-run check judged it."""

    window: str
    counts: WindowCounts
    result: dg.AssetCheckResult

    @property
    def rate(self) -> WindowRate:
        return WindowRate(window=self.window, failed=self.counts.failed, extracted=self.counts.judged)

    def row(self) -> dict[str, object]:
        return {"window": self.window, "failed": self.counts.failed, "selected": self.counts.judged,
                "rate": round(self.rate.rate, 4),
                "severity": self.result.severity.value if not self.result.passed else "PASS"}


def judge_run(counts_by_window: Sequence[tuple[str, WindowCounts]], settings: SyncSettings
              ) -> tuple[dg.AssetCheckResult, list[JudgedWindow]]:
    """One result for a run's windows of an asset: each window judged as `failure_rate_result` judges it (same
    thresholds, same pooled run total), the result as bad as its worst window (passed when every window passed,
    ERROR when one is at ERROR). Metadata: the worst window's `failure_rate`, `failed` and `extracted` (its
    selected records) and `worst_window`; `windows_judged`, `windows_at_warn`, `windows_at_error`; the run's
    `failed_retried`; `windows_flagged`, the windows at WARN or ERROR (window, failed, selected, rate, severity),
    worst first, at most `FLAGGED_ROWS`. Also returns the windows at ERROR, in window order."""
    run_total = (sum(c.failed for _, c in counts_by_window), sum(c.judged for _, c in counts_by_window))
    judged = [JudgedWindow(window, counts, failure_rate_result(counts.failed, counts.judged, settings,
                                                               failed_retried=counts.failed_retried,
                                                               run_total=run_total))
              for window, counts in counts_by_window]
    # Worst: a window at ERROR before one at WARN (a small window's higher rate may be WARN only), then the rate.
    ranked = sorted(judged, key=lambda w: (at_error(w.result), not w.result.passed, w.rate.rate), reverse=True)
    worst = ranked[0] if ranked else None
    flagged = [w for w in ranked if not w.result.passed]
    errors = [w for w in judged if at_error(w.result)]
    base = worst.result if worst is not None else failure_rate_result(0, 0, settings)
    metadata = {
        **{key: value for key, value in base.metadata.items()},
        "worst_window": worst.window if worst is not None else "",
        "windows_judged": len(judged),
        "windows_at_warn": len(flagged) - len(errors),
        "windows_at_error": len(errors),
        "failed_retried": sum(c.failed_retried for _, c in counts_by_window),
        "windows_flagged": dg.MetadataValue.json([w.row() for w in flagged[:FLAGGED_ROWS]]),
    }
    result = dg.AssetCheckResult(
        check_name=CHECK_NAME, passed=not flagged,
        severity=dg.AssetCheckSeverity.ERROR if errors else dg.AssetCheckSeverity.WARN, metadata=metadata)
    return result, errors


def error_windows(metadata: Mapping[str, object]) -> tuple[list[WindowRate], int] | None:
    """The windows at ERROR a per-run evaluation lists in `windows_flagged` and how many there were; None for a
    per-window evaluation (no such table)."""
    rows = metadata.get("windows_flagged")
    if not isinstance(rows, list):
        return None
    return ([WindowRate(window=str(row["window"]), failed=int(row["failed"]), extracted=int(row["selected"]))
             for row in rows if row.get("severity") == dg.AssetCheckSeverity.ERROR.value],
            int(metadata.get("windows_at_error", 0)))  # type: ignore[call-overload]


WRITE_DESCRIPTION = (
    "Evaluated once per run: Outreach's refusals / records selected, judged per window of the run (a record "
    "refused stuck_after_runs times in a row is counted apart), against the WARN and ERROR thresholds "
    "(SyncSettings failure_rate_warn, failure_rate_error; ERROR needs failure_rate_min_records records in the "
    "window, or in the run's windows together with their pooled rate above it too). Metadata: the worst window "
    "and its rate, windows judged and at ERROR, the windows at WARN or ERROR. At ERROR this step fails, so the "
    "run fails, after the writes are stored; the link-back still runs.")


def build_write_failure_rate_check(targets: Sequence[RateTarget], windows: dg.TimeWindowPartitionsDefinition, *,
                                   name: str) -> dg.AssetChecksDefinition:
    """The `failure_rate` check of the Workbooks -> Outreach write assets `targets`, one step named `name`: ONE
    evaluation per asset and run (an unpartitioned check spec on the partitioned asset), judging each window the
    run materialised inside it (`judge_run`)."""
    specs = [dg.AssetCheckSpec(CHECK_NAME, asset=target.asset, description=WRITE_DESCRIPTION) for target in targets]

    # No `ins`: an unpartitioned check's input would be mapped to EVERY window of the asset. The spec's asset is
    # still the check's dependency (lineage, and the step runs after the write); the run's windows of the
    # write's outcomes are read through the IO manager that stored them.
    # Resources by key (Dagster takes them either all by key or all as typed arguments; the IO manager by key).
    @dg.multi_asset_check(specs=specs, name=name, required_resource_keys={"ledger", "sync_settings", IO_MANAGER_KEY})
    def failure_rate(context: dg.AssetCheckExecutionContext):
        ledger: LedgerResource = context.resources.ledger
        sync_settings: SyncSettings = context.resources.sync_settings
        run_id = context.run.run_id
        at_error_windows: dict[dg.AssetKey, list[WindowRate]] = {}
        with ledger.open() as sync_ledger:
            for target, spec in zip(targets, specs, strict=True):
                records = list(run_materializations(context.instance, run_id, target.asset))
                if not records:  # not written by this run (an asset selection without it): nothing to judge
                    yield dg.Output(None, output_name=spec.get_python_identifier())
                    continue
                outcomes = _run_outcomes(context, target.asset, sorted({r.partition_key for r in records}), windows)
                known = refused_before(sync_ledger, target.entity, run_id, sync_settings.stuck_after_runs)
                counts = [(record.partition_key, window_counts(
                    outcomes, pd.Timestamp(windows.time_window_for_partition_key(record.partition_key).start), known,
                    id_column="workbooks_id")) for record in records]
                result, errors = judge_run(counts, sync_settings)
                last = records[-1]  # oldest first
                yield dg.AssetCheckEvaluation(
                    asset_key=target.asset, check_name=CHECK_NAME, passed=result.passed, severity=result.severity,
                    metadata=result.metadata, blocking=False,
                    # Tied to the run's last materialisation of the asset (its newest window).
                    target_materialization_data=AssetCheckEvaluationTargetMaterializationData(
                        storage_id=last.storage_id, run_id=run_id, timestamp=last.timestamp),
                )
                if errors:
                    at_error_windows[target.asset] = [w.rate for w in errors]
                else:
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


def _run_outcomes(context: dg.AssetCheckExecutionContext, key: dg.AssetKey, partition_keys: Sequence[str],
                  windows: dg.TimeWindowPartitionsDefinition) -> pd.DataFrame:
    """The write's stored outcomes of the run's windows `partition_keys` (oldest first; a run's windows are one
    range), read as a partitioned input of that range would be."""
    io_manager: dg.IOManager = getattr(context.resources, IO_MANAGER_KEY)
    frames = []
    for first, last in _ranges(partition_keys, windows):
        frames.append(io_manager.load_input(dg.build_input_context(
            asset_key=key, asset_partition_key_range=dg.PartitionKeyRange(first, last),
            asset_partitions_def=windows, instance=context.instance)))
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def _ranges(keys: Sequence[str], windows: dg.TimeWindowPartitionsDefinition) -> list[tuple[str, str]]:
    """`keys` (sorted) as contiguous ranges of `windows`."""
    all_keys = windows.get_partition_keys_in_range(dg.PartitionKeyRange(keys[0], keys[-1]))
    if len(all_keys) == len(keys):
        return [(keys[0], keys[-1])]
    return [(key, key) for key in keys]
