"""`outreach-pipeline first-sync`, and what `sync --first-sync` and `sync --dry-run` need from the definitions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click


def first_sync_options(first: str, last: str) -> dict[str, Any]:
    """`run_sync` arguments of the first sync: full_sync_job, every read from the beginning, its tags."""
    from outreach_pipeline.defs.first_sync import first_sync_tags
    from outreach_pipeline.defs.jobs import FULL_SYNC_JOB, full_sync_run_config

    return {"job_name": FULL_SYNC_JOB, "ops_config": full_sync_run_config().to_config_dict()["ops"],
            "tags": first_sync_tags(first, last)}


def print_dry_run(defs: Any, first: str, last: str, *, as_json: bool, from_beginning: bool) -> int:
    """Plan [first, last] (defs/dry_run.py), print it, return the exit code (0, or 1 when a step failed)."""
    from tabulate import tabulate

    from outreach_pipeline.defs.dry_run import COUNTED, DryRunFailed, execute_dry_run, masked
    from outreach_pipeline.defs.headless import sync_windows_of

    resources = defs.resources
    try:
        report = execute_dry_run(sync_windows_of(defs), resources, first, last, from_beginning=from_beginning)
    except DryRunFailed as exc:
        click.echo(str(exc), err=True)
        return 1
    settings = resources["sync_settings"]
    records = masked(report.records, settings.mappings(), settings)
    if as_json:
        click.echo(json.dumps({"dry_run": True, "first_window": first, "last_window": last, "counts": report.counts,
                               "records": records}, default=str, indent=1))
        return 0
    click.echo(f"dry run: windows {first} .. {last} (nothing was written)")
    if report.counts:
        click.echo(tabulate(report.counts, headers="keys", tablefmt="github"))
        totals = [{"direction": d, "entity": e, **c} for (d, e), c in report.totals().items()]
        click.echo("\ntotals")
        click.echo(tabulate(totals, headers="keys", tablefmt="github"))
    else:
        click.echo("nothing to sync in these windows")
    shown = [row for row in records if row["outcome"] != "unchanged"][:20]
    for row in shown:
        changes = ", ".join(f"{name}: {change['old']!r} -> {change['new']!r}" for name, change in row["changes"].items())
        detail = row["error"] or row["reason"] or changes
        click.echo(f"  {row['window']} {row['entity']} outreach={row['outreach_id']} workbooks={row['workbooks_id']} "
                   f"{row['outcome']}: {detail}")
    if len(records) > len(shown):
        click.echo(f"  ... and {len(records) - len(shown)} more planned records (--json lists them all; "
                   f"counted: {', '.join(COUNTED)})")
    return 0


@click.command("first-sync")
@click.option("--max-wait", default=1800.0, show_default=True, type=click.FloatRange(0),
              help="Seconds to wait for a pool slot held by another run before giving up (exit 3).")
@click.option("--dry-run", is_flag=True, help="Plan the first sync only: print what it would do, write nothing.")
@click.option("--verbose", is_flag=True, help="Show the traceback of a failure.")
@click.pass_context
def first_sync_command(ctx: click.Context, max_wait: float, dry_run: bool, verbose: bool) -> None:
    """Sync every existing record, however old, in one run (the first thing to do for a new user).

    One run of full_sync_job over every complete window, from the first partition (partitions_start) to the last
    complete hour, with both directions reading without a lower bound; every window it covers is materialised.
    The same as the `first_sync` sensor launches by itself on a new instance. Safe to repeat: nothing already in
    sync is written again. Exit codes as `sync`.
    """
    from outreach_pipeline.cli import sync

    ctx.invoke(sync, windows=None, from_=None, to=None, max_wait=max_wait, verbose=verbose, profile=None,
               dry_run=dry_run, as_json=False, first_sync=True)


#: Where `dev` keeps the first partition it chose for its sandbox, in the Dagster home (so it never moves).
DEV_PARTITIONS_START_FILE = "dev_partitions_start"


def dev_partitions_start(dagster_home: Path, seed_days: int, now: datetime | None = None) -> str:
    """The first partition `dev` gives a sandbox instance when the environment sets none: the day its seeded data
    starts (`seed_days` before the first start), chosen once and kept in the Dagster home.

    The default (`partitions_start`, weeks back) would make the sandbox's first sync record hundreds of empty
    windows; records older than the first window are synced anyway (the first sync reads from the beginning).
    """
    kept = dagster_home / DEV_PARTITIONS_START_FILE
    if kept.exists():
        return kept.read_text().strip()
    start = ((now or datetime.now(UTC)) - timedelta(days=seed_days)).strftime("%Y-%m-%d-00:00")
    kept.write_text(start + "\n")
    return start
