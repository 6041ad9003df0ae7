"""The `outreach-pipeline` command."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

import click

from outreach_pipeline.sandbox.faults import FaultSpecError, parse_fault_spec


@click.group()
def main() -> None:
    """Sync Outreach and Workbooks with Dagster, and run local sandboxes of both APIs."""


@main.group()
def sandbox() -> None:
    """The local Outreach and Workbooks API sandbox."""


def _validate_faults(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        parse_fault_spec(value)
    except FaultSpecError as exc:
        raise click.BadParameter(str(exc)) from exc
    return value


@sandbox.command("up")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind (keep it loopback).")
@click.option("--outreach-port", default=8701, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workbooks-port", default=8702, show_default=True, type=click.IntRange(0, 65535))
@click.option("--data-dir", default=".sandbox", show_default=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--prospects", default=200, show_default=True, type=click.IntRange(0, 1_000_000),
              help="Prospects to seed when the data dir is empty (accounts and opportunities scale with it).")
@click.option("--seed", default=42, show_default=True, help="Seed of the deterministic data generator.")
@click.option("--simulate/--no-simulate", default=False, help="Keep creating and editing records in both systems.")
@click.option("--simulate-interval", default=5.0, show_default=True, help="Seconds between simulator steps.")
@click.option("--faults", default="", callback=_validate_faults,
              help="Fault rules, e.g. 'rate_limit:count=20,status:status=502:rate=0.05,drop_after_write:rate=0.01'.")
@click.option("--json", "as_json", is_flag=True, help="Print URLs and credentials as one JSON object.")
def sandbox_up(
    host: str,
    outreach_port: int,
    workbooks_port: int,
    data_dir: Path,
    prospects: int,
    seed: int,
    simulate: bool,
    simulate_interval: float,
    faults: str,
    as_json: bool,
) -> None:
    """Start both sandbox APIs and serve until Ctrl-C."""
    from outreach_pipeline.sandbox.runtime import SandboxConfig, start_sandbox

    config = SandboxConfig(
        host=host,
        outreach_port=outreach_port,
        workbooks_port=workbooks_port,
        data_dir=data_dir,
        prospects=prospects,
        seed=seed,
        simulate=simulate,
        simulate_interval_seconds=simulate_interval,
        faults=faults,
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with start_sandbox(config) as running:
        info = running.credentials()
        if as_json:
            click.echo(json.dumps(info), nl=True)
        else:
            click.echo(f"Outreach API sandbox:  {info['outreach']['url']}/api/v2  (OAuth: {info['outreach']['url']}/oauth/token)")
            click.echo(f"  client_id={info['outreach']['client_id']} client_secret={info['outreach']['client_secret']}")
            click.echo(f"  refresh_token={info['outreach']['refresh_token']}")
            click.echo(f"Workbooks API sandbox: {info['workbooks']['url']}  api_key={info['workbooks']['api_key']}")
            click.echo(f"  username={info['workbooks']['username']} password={info['workbooks']['password']}")
            click.echo(f"Admin: {info['admin']['outreach']} , {info['admin']['workbooks']}")
            if info["seeded"]:
                click.echo(f"Seeded: {json.dumps(info['seeded'])}")
            click.echo(f"Simulator: {'on' if simulate else 'off'}. These are sandbox-only credentials. Ctrl-C stops.")
        stop.wait()
    click.echo("sandbox stopped", err=True)


@sandbox.command("reset")
@click.option("--data-dir", default=".sandbox", show_default=True, type=click.Path(file_okay=False, path_type=Path))
def sandbox_reset(data_dir: Path) -> None:
    """Delete the sandbox's data; the next `sandbox up` seeds afresh."""
    from outreach_pipeline.sandbox.runtime import reset_sandbox

    removed = reset_sandbox(data_dir)
    click.echo(f"removed {data_dir}" if removed else f"nothing to remove at {data_dir}")


@main.command("dev")
@click.option("--port", default=3000, show_default=True, help="Dagster UI port (on 127.0.0.1).")
@click.option("--dagster-home", default=".dagster_home", show_default=True,
              type=click.Path(file_okay=False, path_type=Path))
@click.option("--data-dir", default=".sandbox", show_default=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--prospects", default=2000, show_default=True, type=click.IntRange(0, 1_000_000))
@click.option("--simulate/--no-simulate", default=True, show_default=True)
def dev(port: int, dagster_home: Path, data_dir: Path, prospects: int, simulate: bool) -> None:
    """Start the sandbox (with its activity simulator) and `dagster dev` (UI and daemon, schedule on)."""
    import os
    import shutil
    import subprocess
    import sys

    from outreach_pipeline.sandbox.runtime import SandboxConfig, start_sandbox

    dagster_home = dagster_home.resolve()
    dagster_home.mkdir(parents=True, exist_ok=True)
    project_root = Path(__file__).resolve().parent.parent
    shutil.copyfile(project_root / "dagster.yaml", dagster_home / "dagster.yaml")
    config = SandboxConfig(data_dir=data_dir, prospects=prospects, simulate=simulate)
    with start_sandbox(config) as running:
        click.echo(f"sandbox: Outreach {running.outreach_url}, Workbooks {running.workbooks_url}; simulator {'on' if simulate else 'off'}")
        env = {**os.environ, "DAGSTER_HOME": str(dagster_home)}
        command = [
            str(Path(sys.executable).with_name("dagster")), "dev",
            "-h", "127.0.0.1", "-p", str(port), "-w", str(project_root / "workspace.yaml"),
        ]
        process = subprocess.Popen(command, env=env, cwd=project_root)
        try:
            process.wait()
        except KeyboardInterrupt:
            process.terminate()
            process.wait(30)


if __name__ == "__main__":
    main()
