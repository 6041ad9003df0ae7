"""`outreach-pipeline failures` and `history`: what the sync ledger knows, read from the terminal.

* ``failures`` lists failed records of both directions (``--direction`` keeps one): every record one run
  failed (``--run``), or every record failing now, with the direction, both ids (the Outreach id is blank for a
  Workbooks record Outreach refused to create), the field, error kind, message, when its current run of
  failures began and how many runs in a row failed it. ``--json`` prints one object per record for scripts.
* ``history ENTITY ID`` prints one record's outcomes run by run, both directions, with each changed field as
  ``field: old -> new`` (old values are those the ledger last applied; ``?`` where it had none, as for rows
  written before the ledger kept them); ``--workbooks`` takes ID as the Workbooks id (a record never created in
  Outreach has no other). ``history ENTITY --failed`` prints the history of every record of ENTITY failing now.

The terminal is the operator's: values are printed as the ledger holds them (personal data is masked only
where Dagster would keep it, in run metadata).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click

from outreach_pipeline.engine.outcome import SyncDirection

ENTITIES = ["accounts", "prospects", "opportunities", "tasks", "meetings", "workbooks_tasks", "calls", "sequences",
            "sequence_states"]


def _ledger_url(ledger_url: str | None) -> str | None:
    from outreach_pipeline.settings import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc
    if ledger_url is None and settings.ledger_url is not None:
        return settings.ledger_url.get_secret_value()
    return ledger_url


def _moment(value: str | None) -> datetime | None:
    """An ISO date or date-time (UTC when it names no zone)."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not an ISO date or date-time, e.g. 2026-11-29T08:00") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _text(value: Any) -> str:
    return "blank" if value is None or value == "" else json.dumps(value, default=str, ensure_ascii=False)


def changes(diff: dict[str, Any] | None, old: dict[str, Any] | None) -> list[str]:
    """``field: old -> new`` per changed field (``?`` for an old value the ledger did not have)."""
    if not diff:
        return []
    before = old or {}
    return [f"{name}: {_text(before[name]) if name in before else '?'} -> {_text(value)}"
            for name, value in sorted(diff.items())]


@click.command("failures")
@click.option("--run", "run_id", help="the records this Dagster run failed (default: every record failing now)")
@click.option("--entity", type=click.Choice(ENTITIES), help="one entity's records only")
@click.option("--direction", type=click.Choice([d.value for d in SyncDirection]),
              help="one direction's records only (default: both)")
@click.option("--since", help="failed at or after this ISO date-time (UTC unless it names a zone)")
@click.option("--limit", type=click.IntRange(1), help="at most this many, newest failure first")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line instead of a table")
@click.option("--ledger-url", help="default: the ledger_url setting, else sqlite under $DAGSTER_HOME")
def failures(run_id: str | None, entity: str | None, direction: str | None, since: str | None, limit: int | None,
             as_json: bool, ledger_url: str | None) -> None:
    """List failed records of both directions from the sync ledger: direction, Outreach and Workbooks ids, field,
    kind, message, first failure and runs failed in a row."""
    from tabulate import tabulate

    from outreach_pipeline.defs.resources import LedgerResource

    with LedgerResource(url=_ledger_url(ledger_url)).open() as ledger:
        found = ledger.failures(run_id=run_id, entity=entity, since=_moment(since), limit=limit,
                                direction=SyncDirection(direction) if direction else None)
    if as_json:
        for record in found:
            click.echo(record.model_dump_json())
        return
    if not found:
        scope = f"run {run_id}" if run_id else "the ledger"
        click.echo(f"no failed records in {scope}" + (f" for {entity}" if entity else "")
                   + (f" going {direction}" if direction else ""))
        return
    rows = [
        {
            "direction": f.direction.value, "entity": f.entity, "outreach_id": f.outreach_id or "",
            "workbooks_id": f.workbooks_id or "",
            "field": f.field or "", "kind": f.kind or "", "message": f.message or "",
            "first_failed_at": f.first_failed_at.isoformat(timespec="seconds") if f.first_failed_at else "",
            "runs_failed_in_row": f.streak, "window": f"{f.window_start:%Y-%m-%d %H:%M}" if f.window_start else "",
        }
        for f in found
    ]
    click.echo(tabulate(rows, headers="keys", tablefmt="github"))
    click.echo(f"{len(found)} failed record(s); `outreach-pipeline history ENTITY ID` shows one record's runs "
               "(`--workbooks ID` for a record without an Outreach id)")


@click.command("history")
@click.argument("entity", type=click.Choice(ENTITIES))
@click.argument("record_id", metavar="ID", type=int, required=False)
@click.option("--workbooks", "by_workbooks_id", is_flag=True, help="ID is the Workbooks id (default: the Outreach id)")
@click.option("--failed", is_flag=True, help="every record of ENTITY failing now (instead of one ID)")
@click.option("--direction", type=click.Choice([d.value for d in SyncDirection]),
              help="with --failed: the records failing in one direction only (default: both)")
@click.option("--ledger-url", help="default: the ledger_url setting, else sqlite under $DAGSTER_HOME")
def history(entity: str, record_id: int | None, by_workbooks_id: bool, failed: bool, direction: str | None,
            ledger_url: str | None) -> None:
    """Print the sync ledger's history of one record, both directions: every run, window, outcome, changed field
    (old -> new) and failure; with --failed, of every record of ENTITY failing now."""
    from tabulate import tabulate

    from outreach_pipeline.defs.resources import LedgerResource

    if (record_id is None) == (not failed):
        raise click.UsageError("give an ID or --failed (ids of failing records: `outreach-pipeline failures`)")
    with LedgerResource(url=_ledger_url(ledger_url)).open() as ledger:
        if record_id is not None:
            keys = [(None, record_id) if by_workbooks_id else (record_id, None)]
        else:
            keys = list(dict.fromkeys(
                (f.outreach_id, None) if f.outreach_id is not None else (None, f.workbooks_id)
                for f in ledger.failures(entity=entity, direction=SyncDirection(direction) if direction else None)))
        entries = {key: _record_history(ledger, entity, *key) for key in keys}
    if not any(entries.values()):
        hint = "`outreach-pipeline failures` lists the failing ones"
        what = (f"{entity} {'Workbooks #' if by_workbooks_id else ''}{record_id}" if record_id is not None
                else f"any failing {entity}")
        raise click.ClickException(f"the ledger has no history for {what}: {hint}")
    for (outreach_id, workbooks_id), rows in entries.items():
        if record_id is None:
            click.echo(f"\n{entity} {outreach_id}" if outreach_id is not None else f"\n{entity} Workbooks #{workbooks_id}")
        click.echo(tabulate(rows, headers="keys", tablefmt="github"))


def _record_history(ledger: Any, entity: str, outreach_id: int | None, workbooks_id: int | None
                    ) -> list[dict[str, Any]]:
    """One record's rows, oldest first: its outcomes (both directions) and its Workbooks -> Outreach failures
    (kept by Workbooks id, so also those from before Outreach had the record)."""
    from outreach_pipeline.engine.ledger import TO_OUTREACH_REASON

    entries = ledger.history(entity, outreach_id) if workbooks_id is None else ledger.history(
        entity, workbooks_id=workbooks_id)
    twins = {e.workbooks_id for e in entries if e.workbooks_id is not None} | (
        {workbooks_id} if workbooks_id is not None else set())
    refused = ledger.to_outreach_failures_of(entity, workbooks_ids=twins, outreach_id=outreach_id)
    rows = [
        (e.recorded_at, {
            "recorded_at": e.recorded_at.isoformat(timespec="seconds"),
            "direction": SyncDirection.TO_OUTREACH.value if e.reason == TO_OUTREACH_REASON
            else SyncDirection.TO_WORKBOOKS.value,
            "run": e.run_id[:8],
            "window": f"{e.window_start:%Y-%m-%d %H:%M}" if e.window_start else "",
            "outreach_id": e.outreach_id,
            "workbooks_id": e.workbooks_id,
            "outcome": e.outcome,
            "reason / error": (e.reason if e.reason != TO_OUTREACH_REASON else None) or _failure_text(
                e.error_kind, e.error_field, e.fail_streak, e.error),
            "changes": "; ".join(changes(e.diff, e.old)),
        })
        for e in entries
    ] + [
        (f.failed_at, {
            "recorded_at": f.failed_at.isoformat(timespec="seconds"),
            "direction": f.direction.value,
            "run": f.run_id[:8],
            "window": f"{f.window_start:%Y-%m-%d %H:%M}" if f.window_start else "",
            "outreach_id": f.outreach_id or "",
            "workbooks_id": f.workbooks_id,
            "outcome": "failed",
            "reason / error": _failure_text(f.kind, f.field, f.streak, f.message),
            "changes": "",
        })
        for f in refused
    ]
    return [row for _, row in sorted(rows, key=lambda pair: pair[0])]


def _failure_text(kind: str | None, field: str | None, streak: int | None, error: str | None) -> str:
    """``[kind field, run N in a row] message`` (what is known of it)."""
    label = f"[{kind}{' ' + field if field else ''}, run {streak} in a row]" if kind or streak else None
    return " ".join(filter(None, [label, error]))
