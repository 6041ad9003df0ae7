"""`outreach-pipeline failures` and `history`: what the sync ledger knows, read from the terminal.

* ``failures`` lists failed records: every record one run failed (``--run``), or every record failing now,
  with the field, error kind, message, when its current run of failures began and how many runs in a row
  failed it. ``--json`` prints one object per record for scripts.
* ``history ENTITY ID`` prints one record's outcomes run by run, with each changed field as ``field: old ->
  new`` (old values are those the ledger last applied; ``?`` where it had none, as for rows written before
  the ledger kept them). ``history ENTITY --failed`` prints the history of every record of ENTITY failing now.

The terminal is the operator's: values are printed as the ledger holds them (personal data is masked only
where Dagster would keep it, in run metadata).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click

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
@click.option("--since", help="failed at or after this ISO date-time (UTC unless it names a zone)")
@click.option("--limit", type=click.IntRange(1), help="at most this many, newest failure first")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line instead of a table")
@click.option("--ledger-url", help="default: the ledger_url setting, else sqlite under $DAGSTER_HOME")
def failures(run_id: str | None, entity: str | None, since: str | None, limit: int | None, as_json: bool,
             ledger_url: str | None) -> None:
    """List failed records from the sync ledger: field, kind, message, first failure and runs failed in a row."""
    from tabulate import tabulate

    from outreach_pipeline.defs.resources import LedgerResource

    with LedgerResource(url=_ledger_url(ledger_url)).open() as ledger:
        found = ledger.failures(run_id=run_id, entity=entity, since=_moment(since), limit=limit)
    if as_json:
        for record in found:
            click.echo(record.model_dump_json())
        return
    if not found:
        scope = f"run {run_id}" if run_id else "the ledger"
        click.echo(f"no failed records in {scope}" + (f" for {entity}" if entity else ""))
        return
    rows = [
        {
            "entity": f.entity, "outreach_id": f.outreach_id, "workbooks_id": f.workbooks_id or "",
            "field": f.field or "", "kind": f.kind or "", "message": f.message or "",
            "first_failed_at": f.first_failed_at.isoformat(timespec="seconds") if f.first_failed_at else "",
            "runs_failed_in_row": f.streak, "window": f"{f.window_start:%Y-%m-%d %H:%M}" if f.window_start else "",
        }
        for f in found
    ]
    click.echo(tabulate(rows, headers="keys", tablefmt="github"))
    click.echo(f"{len(found)} failed record(s); `outreach-pipeline history ENTITY ID` shows one record's runs")


@click.command("history")
@click.argument("entity", type=click.Choice(ENTITIES))
@click.argument("outreach_id", type=int, required=False)
@click.option("--failed", is_flag=True, help="every record of ENTITY failing now (instead of one OUTREACH_ID)")
@click.option("--ledger-url", help="default: the ledger_url setting, else sqlite under $DAGSTER_HOME")
def history(entity: str, outreach_id: int | None, failed: bool, ledger_url: str | None) -> None:
    """Print the sync ledger's history of one Outreach record: every run, window, outcome and changed field
    (old -> new); with --failed, of every record of ENTITY failing now."""
    from tabulate import tabulate

    from outreach_pipeline.defs.resources import LedgerResource

    if (outreach_id is None) == (not failed):
        raise click.UsageError("give an OUTREACH_ID or --failed (ids of failing records: `outreach-pipeline failures`)")
    with LedgerResource(url=_ledger_url(ledger_url)).open() as ledger:
        ids = [outreach_id] if outreach_id is not None else [f.outreach_id for f in ledger.failures(entity=entity)]
        entries = {i: ledger.history(entity, i) for i in ids}
    if not any(entries.values()):
        hint = "`outreach-pipeline failures` lists the failing ones"
        what = f"{entity} {outreach_id}" if outreach_id is not None else f"any failing {entity}"
        raise click.ClickException(f"the ledger has no history for {what}: {hint}")
    for record_id, record_entries in entries.items():
        if outreach_id is None:
            click.echo(f"\n{entity} {record_id}")
        rows = [
            {
                "recorded_at": e.recorded_at.isoformat(timespec="seconds"),
                "run": e.run_id[:8],
                "window": f"{e.window_start:%Y-%m-%d %H:%M}" if e.window_start else "",
                "workbooks_id": e.workbooks_id,
                "outcome": e.outcome,
                "reason / error": e.reason or " ".join(filter(None, [
                    f"[{e.error_kind}{' ' + e.error_field if e.error_field else ''}, run {e.fail_streak} in a row]"
                    if e.error_kind or e.fail_streak else None, e.error])) or "",
                "changes": "; ".join(changes(e.diff, e.old)),
            }
            for e in record_entries
        ]
        click.echo(tabulate(rows, headers="keys", tablefmt="github"))
