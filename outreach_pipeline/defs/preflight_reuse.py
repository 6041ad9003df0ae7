"""The preflight steps' reuse of a passing check, kept in Dagster's own event store (no ledger table).

Each preflight materialization carries `preflight` (ran / reused), `mapping_hash`, `api_base_url` and
`checked_at` (when the check behind it ran) and, when reused, `reused_from_run`. A failed check logs an
observation of the asset (`preflight: failed`), which ends the reuse of every older pass. The rules are
`engine.preflight_reuse`'s; this module only reads and writes the events.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from outreach_pipeline.engine.preflight_reuse import (
    OUTCOME,
    REUSED_FROM_RUN,
    PreflightOutcome,
    PreflightStamp,
    reusable,
    stamp_from_metadata,
)


def _values(metadata: dict[str, Any]) -> dict[str, Any]:
    return {name: getattr(value, "value", value) for name, value in metadata.items()}


def _latest_pass(instance: dg.DagsterInstance, key: dg.AssetKey) -> tuple[PreflightStamp | None, str | None]:
    event = instance.get_latest_materialization_event(key)
    materialization = event.asset_materialization if event is not None else None
    if materialization is None:
        return None, None
    return stamp_from_metadata(_values(materialization.metadata)), event.run_id


def _latest_failure(instance: dg.DagsterInstance, key: dg.AssetKey) -> datetime | None:
    records = instance.fetch_observations(key, limit=1).records
    observation = records[0].asset_observation if records else None
    if observation is None:
        return None
    values = _values(observation.metadata)
    stamp = stamp_from_metadata(values)
    return stamp.checked_at if stamp is not None and values.get(OUTCOME) == PreflightOutcome.FAILED else None


def checked_or_reused(
    context: dg.AssetExecutionContext,
    key: dg.AssetKey,
    wanted: PreflightStamp,
    max_age: timedelta,
    check: Callable[[], list[str]],
    failure: Callable[[list[str]], dg.Failure],
    metadata: dict[str, Any],
) -> dg.MaterializeResult:
    """Reuse the latest passing check of `key` when the rules allow it, else run `check`.

    Args:
        context: The preflight step's context (its instance holds the earlier checks).
        key: The preflight asset.
        wanted: What this run would check, stamped now.
        max_age: `SyncSettings.preflight_max_age_minutes`.
        check: Runs the check; one message per problem.
        failure: The step's failure for those problems.
        metadata: Added to the materialization either way (e.g. `fields_checked`).

    Raises:
        dg.Failure: The check ran and found problems (an observation records the failure first).
    """
    previous, previous_run = _latest_pass(context.instance, key)
    if previous is not None and reusable(previous, _latest_failure(context.instance, key), wanted, max_age):
        context.log.info("preflight of %s reused: passed at %s (run %s)", key.to_user_string(),
                         previous.checked_at.isoformat(), previous_run)
        return dg.MaterializeResult(metadata={
            **previous.metadata(PreflightOutcome.REUSED), REUSED_FROM_RUN: previous_run or "", **metadata,
        })
    problems = check()
    if problems:
        context.log_event(dg.AssetObservation(asset_key=key, metadata=wanted.metadata(PreflightOutcome.FAILED)))
        raise failure(problems)
    return dg.MaterializeResult(metadata={**wanted.metadata(PreflightOutcome.RAN), **metadata})


def now_utc() -> datetime:
    """The preflight clock."""
    return datetime.now(UTC)
