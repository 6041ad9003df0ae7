"""First sync: every existing record, however old, synced once, leaving every complete window materialised.

A new user's instance has no materialised window, and the hourly schedule only ever syncs the last hour.
The first sync is one run of `full_sync_job` over every complete window, from the first partition
(`partitions_start`) to the last complete hour, with both directions reading from the beginning:

* Outreach -> Workbooks: each extract reads `updatedAt < end of the last window` (`ExtractConfig.from_beginning`);
  a record last changed before the first window is stored with the first window (`engine.extract.window_of`).
* Workbooks -> Outreach: the Workbooks read drops its lower bound too (`WorkbooksReadConfig.from_beginning`): the
  selected records (Sync to Outreach = TRUE, no flag) changed before the end, linked or not.

Why one range and not `full_sync_job` on the first window: a from-the-beginning read still stops at the end of
the range it runs for, so the first window alone reads nothing changed after its end (on a sandbox seeded over
the last 30 days, almost nothing), and the windows after it stay Missing.

Launched by the `first_sync` sensor (on by default: it launches once per Dagster instance, when no load asset has
been materialised yet, so `make run` does it) and by `outreach-pipeline first-sync`. Rerunning it is safe: the
load compares before writing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import dagster as dg

from outreach_pipeline.defs.headless import last_complete_windows
from outreach_pipeline.defs.jobs import FULL_SYNC_JOB, full_sync_run_config

FIRST_SYNC_SENSOR = "first_sync"
#: Tag on the first sync's run: the sensor launches it once per instance.
FIRST_SYNC_TAG = "outreach_pipeline/first_sync"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def first_sync_range(windows: dg.TimeWindowPartitionsDefinition, *, now: datetime | None = None) -> tuple[str, str]:
    """The first partition's key and the last complete window's.

    Raises:
        ValueError: No window is complete yet.
    """
    keys = windows.get_partition_keys(current_time=now)
    if not keys:
        raise ValueError(f"no complete window yet: the partitions start at {windows.start:%Y-%m-%d-%H:%M}")
    last = last_complete_windows(windows, 1, now=now)[1]
    return keys[0], last


def first_sync_tags(first: str, last: str) -> dict[str, str]:
    """Tags of the first sync's run: the range (one run for all of it) and the first-sync marker."""
    return {RANGE_START_TAG: first, RANGE_END_TAG: last, FIRST_SYNC_TAG: "true"}


def build_first_sync_sensor(
    windows: dg.TimeWindowPartitionsDefinition,
    load_keys: list[dg.AssetKey],
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    running: bool = True,
) -> dg.SensorDefinition:
    """The sensor that launches the first sync once: when no run of the instance carries the first-sync tag
    and none of `load_keys` has been materialised (an instance that already syncs is left alone)."""

    @dg.sensor(
        name=FIRST_SYNC_SENSOR,
        job_name=FULL_SYNC_JOB,
        default_status=dg.DefaultSensorStatus.RUNNING if running else dg.DefaultSensorStatus.STOPPED,
        minimum_interval_seconds=30,
        description=(
            "Launches the first sync once per Dagster instance: one run of full_sync_job over every complete "
            "window, both directions reading from the beginning, so every existing record, however old, is "
            "synced and every complete window is materialised. It does nothing once a first sync was launched "
            "or any load was materialised; `outreach-pipeline first-sync` runs it again from a terminal."
        ),
    )
    def first_sync(context: dg.SensorEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        if context.cursor:
            return dg.SkipReason(f"the first sync was launched already ({context.cursor})")
        launched = context.instance.get_run_records(dg.RunsFilter(tags={FIRST_SYNC_TAG: "true"}), limit=1)
        if launched:
            context.update_cursor(f"run {launched[0].dagster_run.run_id}")
            return dg.SkipReason(f"the first sync was launched already (run {launched[0].dagster_run.run_id})")
        synced = [key for key in load_keys if context.instance.get_latest_materialization_event(key) is not None]
        if synced:
            context.update_cursor(f"{synced[0].to_user_string()} was already materialised")
            return dg.SkipReason(f"this instance syncs already: {synced[0].to_user_string()} is materialised")
        try:
            first, last = first_sync_range(windows, now=clock())
        except ValueError as exc:
            return dg.SkipReason(str(exc))
        context.update_cursor(f"windows {first} .. {last}")
        return dg.RunRequest(
            run_key=f"first-sync-{first}-{last}", run_config=full_sync_run_config(), tags=first_sync_tags(first, last),
        )

    return first_sync
