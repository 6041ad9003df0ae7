"""Per-window audit of the sync's materializations: each partition carries its own counts and failed records.

A backfill of many windows is one run (one extract, one load per entity), so the step's output metadata
would give every partition of the range the range's totals. Instead:

* Each partition of the range gets metadata of its own window through ``context.add_asset_metadata(...,
  partition_key=key)``: the counts of the records whose ``sync_window`` is that window (a retried record is in
  the window its change belongs to, clamped into the range). Dagster merges these over the output's metadata
  (partition-scoped values win), and the output's metadata holds only range-wide facts under ``range*`` keys,
  so no range total can be mistaken for a window's.
* Load keys per window: ``records_created``, ``records_updated``, ``records_unchanged``, ``records_skipped``,
  ``records_failed`` (of which ``records_stuck``: failed in earlier runs too, and ``records_newly_failed``),
  ``records_extracted``, ``dagster/row_count``, and ``failed_records``: a table of the window's failed records
  (direction, entity, Outreach id, Workbooks id, field, kind, message, first failed at, runs failed in a row), at most
  ``SyncSettings.failed_records_shown`` of them, the rest counted in ``failed_records_not_shown``.
* Messages may quote the refused value: emails and phone numbers in them are masked unless
  ``SyncSettings.show_personal_data`` (``mapping.personal.mask_personal_text``).
* ``records_synced_by_lane`` (load and Outreach-write keys, per window): records of the window that the
  low-latency lane (`engine/lane.py`) created or updated before this run, in this direction. The hourly run reads
  them with its window and finds them unchanged, so they are in ``records_unchanged`` and the counts still add
  up (created + updated + unchanged + skipped + failed = the window's rows); the window's records written by
  either are ``records_created + records_updated + records_synced_by_lane`` (a record the lane wrote and the
  hourly run wrote again after a later change the lane had not yet read counts in both).
* Requests cannot be attributed to a window (one paged read serves the range): they stay range-wide
  (``range_api_requests``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import pandas as pd

from outreach_pipeline.defs.partitions import WINDOW_COLUMN
from outreach_pipeline.defs.resources import SyncSettings
from outreach_pipeline.engine.extract import PullIds
from outreach_pipeline.engine.ledger import RecordState, SyncLedger
from outreach_pipeline.engine.ledger_lane import lane_writes_per_window
from outreach_pipeline.engine.outcome import Outcome, SyncDirection
from outreach_pipeline.mapping.personal import mask_personal_text
from outreach_pipeline.settings import WINDOW_KEY_FORMAT

FAILED_RECORD_COLUMNS = [
    dg.TableColumn("direction", "string", description="to_workbooks (Outreach -> Workbooks) or to_outreach"),
    dg.TableColumn("entity", "string", description="the mapping's entity (meetings for routed tasks)"),
    dg.TableColumn("outreach_id", "int", description="Outreach record id (blank: a record never created there)"),
    dg.TableColumn("workbooks_id", "int", description="Workbooks record id (blank: none yet)"),
    dg.TableColumn("field", "string", description="the field the error concerns (blank: the whole record)"),
    dg.TableColumn("kind", "string", description="error kind (mapping.errors.ErrorKind)"),
    dg.TableColumn("message", "string", description="what went wrong; emails and phones masked by default"),
    dg.TableColumn("first_failed_at", "string", description="when the record's current run of failures began"),
    dg.TableColumn("runs_failed_in_row", "int", description="runs in a row that failed it (1: new failure)"),
]
FAILED_RECORDS_SCHEMA = dg.TableSchema(columns=FAILED_RECORD_COLUMNS)


@dataclass(frozen=True)
class FailedRow:
    """One failed record of one window, as the materialization table shows it."""

    entity: str
    outreach_id: int | None
    workbooks_id: int | None
    field: str | None
    kind: str | None
    message: str | None
    first_failed_at: datetime | None
    streak: int
    direction: SyncDirection = SyncDirection.TO_WORKBOOKS


def window_keys(windows: pd.Series) -> pd.Series:
    """The partition key of each row's ``sync_window`` (its hourly window start, UTC)."""
    return pd.to_datetime(windows, utc=True).dt.strftime(WINDOW_KEY_FORMAT)


def range_label(keys: Sequence[str]) -> str:
    """``first..last (N windows)``: the range a run's range-wide metadata covers."""
    return f"{keys[0]}..{keys[-1]} ({len(keys)} window{'s' if len(keys) != 1 else ''})" if keys else ""


def rows_per_window(frame: pd.DataFrame, keys: Sequence[str]) -> dict[str, int]:
    """Rows of ``frame`` per partition key (0 for a window without rows)."""
    counts = window_keys(frame[WINDOW_COLUMN]).value_counts().to_dict() if len(frame) else {}
    return {key: int(counts.get(key, 0)) for key in keys}


def add_window_metadata(
    context: dg.AssetExecutionContext, per_key: Mapping[str, Mapping[str, Any]], asset_key: dg.AssetKey | None = None
) -> None:
    """Attach each window's own metadata to its partition (merged over the output's range-wide metadata)."""
    for key, metadata in per_key.items():
        context.add_asset_metadata(dict(metadata), asset_key=asset_key, partition_key=key)


def row_counts_per_window(
    context: dg.AssetExecutionContext, frame: pd.DataFrame, asset_key: dg.AssetKey | None = None, **extra: Mapping[str, int]
) -> None:
    """``dagster/row_count`` per window (plus ``extra`` named counts per window) on each partition."""
    keys = list(context.partition_keys)
    rows = rows_per_window(frame, keys)
    add_window_metadata(
        context, {key: {"dagster/row_count": rows[key], **{name: counts.get(key, 0) for name, counts in extra.items()}}
                  for key in keys}, asset_key,
    )


def ids_per_window(frame: pd.DataFrame, ids: Iterable[int], id_column: str, keys: Sequence[str]) -> dict[str, int]:
    """How many of ``ids`` each window's rows hold."""
    wanted = {int(i) for i in ids}
    if not wanted or not len(frame):
        return dict.fromkeys(keys, 0)
    mask = frame[id_column].astype("Int64").isin(wanted).fillna(False).astype(bool)
    return rows_per_window(frame[mask], keys)


def failed_rows_from_ledger(
    ledger: SyncLedger, entities: Iterable[str], run_id: str, failed_ids: Iterable[int]
) -> dict[int, FailedRow]:
    """The failed records of this run, by Outreach id, with the field, kind, first failure and streak the ledger
    recorded (each record under the entity it went through: a routed task may be a meeting)."""
    ids = {int(i) for i in failed_ids}
    found: dict[int, FailedRow] = {}
    for entity in entities:
        states: dict[int, RecordState] = ledger.get_states(entity, ids - found.keys())
        for outreach_id, state in states.items():
            if state.last_run_id == run_id and state.last_outcome is Outcome.FAILED:
                found[outreach_id] = FailedRow(
                    entity=entity, outreach_id=outreach_id, workbooks_id=state.workbooks_id, field=state.error_field,
                    kind=state.error_kind, message=state.last_error, first_failed_at=state.first_failed_at,
                    streak=max(state.fail_streak, 1),
                )
    return found


def failed_records_metadata(rows: Sequence[FailedRow], settings: SyncSettings) -> dict[str, Any]:
    """``failed_records`` (a table, the longest-failing first, up to the cap) and the failure counts."""
    ordered = sorted(rows, key=lambda row: (-row.streak, row.entity, row.outreach_id or 0, row.workbooks_id or 0))
    shown = ordered[: settings.failed_records_shown]
    records = [
        dg.TableRecord({
            "direction": row.direction.value,
            "entity": row.entity,
            "outreach_id": row.outreach_id,
            "workbooks_id": row.workbooks_id,
            "field": row.field,
            "kind": row.kind,
            "message": row.message if settings.show_personal_data else mask_personal_text(row.message),
            "first_failed_at": row.first_failed_at.isoformat(timespec="seconds") if row.first_failed_at else None,
            "runs_failed_in_row": row.streak,
        })
        for row in shown
    ]
    stuck = sum(1 for row in rows if row.streak >= settings.stuck_after_runs)
    return {
        "failed_records": dg.MetadataValue.table(records, schema=FAILED_RECORDS_SCHEMA),
        "failed_records_not_shown": len(ordered) - len(shown),
        "records_stuck": stuck,
        "records_newly_failed": len(rows) - stuck,
    }


def load_metadata_per_window(
    keys: Sequence[str], staged: pd.DataFrame, outcomes: pd.DataFrame, failed: Mapping[int, FailedRow],
    settings: SyncSettings, *, id_column: str = "outreach_id",
) -> dict[str, dict[str, Any]]:
    """Each window's own load metadata (see the module docstring) from the load's outcome frame."""
    staged_rows = rows_per_window(staged, keys)
    by_window: dict[str, pd.DataFrame] = (
        dict(tuple(outcomes.groupby(window_keys(outcomes[WINDOW_COLUMN])))) if len(outcomes) else {}
    )
    metadata: dict[str, dict[str, Any]] = {}
    for key in keys:
        rows = by_window.get(key, outcomes.iloc[:0])
        counts = rows["outcome"].astype(str).value_counts().to_dict() if len(rows) else {}
        failed_ids = rows.loc[rows["outcome"].astype(str) == Outcome.FAILED.value, id_column]
        window_failed = [failed[int(i)] for i in failed_ids if not pd.isna(i) and int(i) in failed]
        metadata[key] = {
            **{f"records_{outcome.value}": int(counts.get(outcome.value, 0)) for outcome in Outcome},
            "records_extracted": staged_rows[key],
            "dagster/row_count": len(rows),
            **failed_records_metadata(window_failed, settings),
        }
    return metadata


def reverse_failed_rows(ledger: SyncLedger, entity: str, run_id: str, results: pd.DataFrame) -> dict[int, FailedRow]:
    """The Workbooks -> Outreach direction's failed records of one run, by Workbooks id: as the ledger recorded
    them (field, kind, first failure, attempts failed in a row), else (a dry run records nothing) from the write
    results as failures of this run alone."""
    failed = results[results["outcome"].astype(str) == Outcome.FAILED.value] if len(results) else results
    if not len(failed):
        return {}
    recorded = {f.workbooks_id: f for f in ledger.failures(run_id=run_id, entity=entity,
                                                           direction=SyncDirection.TO_OUTREACH)}
    now = datetime.now(UTC)
    rows: dict[int, FailedRow] = {}
    for row in failed.to_dict("records"):
        workbooks_id = int(row["workbooks_id"])
        known = recorded.get(workbooks_id)
        rows[workbooks_id] = FailedRow(
            entity=entity, workbooks_id=workbooks_id, direction=SyncDirection.TO_OUTREACH,
            outreach_id=None if pd.isna(row.get("outreach_id")) else int(row["outreach_id"]),
            field=known.field if known else _text(row.get("error_field")), kind=_text(row.get("error_kind")),
            message=_text(row.get("error")), first_failed_at=known.first_failed_at if known else now,
            streak=known.streak if known else 1,
        )
    return rows


def _text(value: Any) -> str | None:
    return None if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


def extract_audit(
    context: dg.AssetExecutionContext, frame: pd.DataFrame, read_by_id: Iterable[int], pull: PullIds, requests: int
) -> dict[str, Any]:
    """Per window: rows, and of those read by id, ``retried_records`` (the ledger's retries: failed records whose
    backoff passed, pending links) and ``referenced_records`` (pulled in because this run's records point at
    them). Returns the range-wide metadata."""
    keys = list(context.partition_keys)
    read = {int(i) for i in read_by_id}
    retried, referenced = read & pull.retry, read & pull.referenced
    row_counts_per_window(context, frame, retried_records=ids_per_window(frame, retried, "id", keys),
                          referenced_records=ids_per_window(frame, referenced, "id", keys))
    context.log.info("read %d records by id: %d retried, %d referenced by other records; %d failed records wait for "
                     "their retry", len(read), len(retried), len(referenced), len(pull.waiting))
    return {"range": range_label(keys), "range_api_requests": requests, "range_retried_records": len(retried),
            "range_referenced_records": len(referenced), "range_failed_waiting_for_retry": len(pull.waiting)}


def lane_writes_per_key(ledger: SyncLedger, entities: Iterable[str], keys: Sequence[str], *,
                        to_outreach: bool) -> dict[str, int]:
    """``records_synced_by_lane`` per partition key (see the module docstring)."""
    starts = {key: datetime.strptime(key, WINDOW_KEY_FORMAT).replace(tzinfo=UTC) for key in keys}
    counts = lane_writes_per_window(ledger, entities, list(starts.values()), to_outreach=to_outreach)
    return {key: counts[start] for key, start in starts.items()}


def load_audit(
    context: dg.AssetExecutionContext, ledger: SyncLedger, entities: Iterable[str], staged: pd.DataFrame,
    outcomes: pd.DataFrame, settings: SyncSettings,
) -> dict[str, Any]:
    """Attach each window's load metadata to its partition; return the range-wide counts (``range_records``)."""
    keys = list(context.partition_keys)
    failed_ids = outcomes.loc[outcomes["outcome"].astype(str) == Outcome.FAILED.value, "outreach_id"]
    failed = failed_rows_from_ledger(ledger, entities, context.run.run_id, failed_ids)
    per_window = load_metadata_per_window(keys, staged, outcomes, failed, settings)
    by_lane = lane_writes_per_key(ledger, entities, keys, to_outreach=False)
    add_window_metadata(context, {key: {**metadata, "records_synced_by_lane": by_lane[key]}
                                  for key, metadata in per_window.items()})
    counts = outcomes["outcome"].astype(str).value_counts().to_dict() if len(outcomes) else {}
    return {"range": range_label(keys),
            "range_records": dg.MetadataValue.json({o.value: int(counts.get(o.value, 0)) for o in Outcome}),
            "range_records_extracted": len(staged)}
