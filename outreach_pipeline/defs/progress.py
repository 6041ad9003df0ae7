"""Progress lines of the extract and load assets, in the run's event log as the step runs (`engine.progress`)."""

from __future__ import annotations

from contextlib import AbstractContextManager

import dagster as dg
import pandas as pd

from outreach_pipeline.defs.partitions import WINDOW_COLUMN
from outreach_pipeline.defs.resources import SyncSettings
from outreach_pipeline.engine.progress import ExtractProgress, LoadProgress, reporting_pages


def load_progress(context: dg.AssetExecutionContext, key: dg.AssetKey, staged: pd.DataFrame,
                  settings: SyncSettings, *, id_column: str = "outreach_id") -> LoadProgress:
    """The reporter of a load of `staged` (each record, by `id_column`, in its `sync_window`), logging at INFO.
    The Workbooks -> Outreach steps count by `id` (the Workbooks id: a record to create has no Outreach id)."""
    window_of = dict(zip(staged[id_column].astype(int), staged[WINDOW_COLUMN], strict=True)) if len(staged) else {}
    span = context.partition_time_window
    windows = pd.date_range(span.start, span.end, freq="h", inclusive="left", tz="UTC")
    return LoadProgress(context.log.info, key.to_user_string(), window_of, windows=windows,
                        every_records=settings.progress_every_records,
                        interval_seconds=settings.progress_interval_seconds)


def reporting_extract(context: dg.AssetExecutionContext, key: dg.AssetKey,
                      settings: SyncSettings) -> AbstractContextManager[ExtractProgress]:
    """Within it, the pages the extract readers read for the run's range of windows are reported at INFO."""
    window = context.partition_time_window
    return reporting_pages(ExtractProgress(context.log.info, key.to_user_string(), window.start, window.end,
                                           every_records=settings.progress_every_records,
                                           interval_seconds=settings.progress_interval_seconds))
