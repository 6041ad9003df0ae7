"""The sync window: one hourly partition in UTC, [start, end)."""

from __future__ import annotations

import dagster as dg

# Every windowed DataFrame carries the start of the window a row is synced in; the engine names the column.
from outreach_pipeline.engine.extract import WINDOW_COLUMN

__all__ = ["WINDOW_COLUMN", "sync_windows"]


def sync_windows(start: str) -> dg.HourlyPartitionsDefinition:
    """Hourly windows from `start` (a key like ``2026-11-01-00:00``, the `partitions_start` setting).

    UTC always: non-UTC hourly partitions break across DST changes. Records last changed before the first
    window are covered by the full-sync job.
    """
    return dg.HourlyPartitionsDefinition(start_date=start, timezone="UTC")
