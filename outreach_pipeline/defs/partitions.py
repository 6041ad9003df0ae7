"""The sync window: one hourly partition in UTC, [start, end)."""

from __future__ import annotations

import os

import dagster as dg

# Every windowed DataFrame carries the start of the window a row is synced in; the engine names the column.
from outreach_pipeline.engine.extract import WINDOW_COLUMN

__all__ = ["PARTITIONS_START", "SYNC_WINDOWS", "WINDOW_COLUMN"]

#: First sync window. Records last changed before it are covered by the full-sync job.
PARTITIONS_START = os.environ.get("OUTREACH_PIPELINE_PARTITIONS_START", "2026-11-01-00:00")

#: UTC always: non-UTC hourly partitions break across DST changes.
SYNC_WINDOWS = dg.HourlyPartitionsDefinition(start_date=PARTITIONS_START, timezone="UTC")

