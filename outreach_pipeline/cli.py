"""The `outreach-pipeline` command."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import click

from outreach_pipeline.cli_auth import auth
from outreach_pipeline.cli_ledger import failures, history
from outreach_pipeline.cli_runs import dev_partitions_start, first_sync_command
from outreach_pipeline.cli_webhooks import dev_receiver, webhooks
from outreach_pipeline.sandbox.credentials import (
    DEFAULT_OUTREACH_PORT,
    DEFAULT_WORKBOOKS_PORT,
    SANDBOX_OUTREACH_URL,
    SANDBOX_WORKBOOKS_AUTH,
    SANDBOX_WORKBOOKS_URL,
)
from outreach_pipeline.sandbox.faults import FaultSpecError, parse_fault_spec
from outreach_pipeline.sandbox.server import PortInUse


@click.group()
def main() -> None:
    """Sync Outreach and Workbooks with Dagster, and run local sandboxes of both APIs."""


main.add_command(auth)
main.add_command(failures)
main.add_command(history)
main.add_command(webhooks)


@main.group()
def sandbox() -> None:
    """The local Outreach and Workbooks API sandbox."""


#: The option that moves each server a command starts, for the message about a taken port.
PORT_OPTIONS = {"the Outreach sandbox": "--outreach-port", "the Workbooks sandbox": "--workbooks-port",
                "the Dagster UI": "--port"}


def _port_in_use(exc: PortInUse) -> click.ClickException:
    """One line: which port, held by what, and what to do."""
    option = PORT_OPTIONS.get(exc.service, "another port")
    return click.ClickException(
        f"port {exc.port} for {exc.service} is already in use on {exc.host}: stop the process holding it (an "
        f"earlier `make run` or `sandbox up`?) or pass {option} with another port (0 picks a free one)."
    )


def _validate_faults(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        parse_fault_spec(value)
    except FaultSpecError as exc:
        raise click.BadParameter(str(exc)) from exc
    return value


@sandbox.command("up")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind (keep it loopback).")
@click.option("--outreach-port", default=DEFAULT_OUTREACH_PORT, show_default=True, type=click.IntRange(0, 65535))
@click.option("--workbooks-port", default=DEFAULT_WORKBOOKS_PORT, show_default=True, type=click.IntRange(0, 65535))
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
    try:
        running = start_sandbox(config)
    except PortInUse as exc:
        raise _port_in_use(exc) from None
    with running:
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


def _profile_option(function):
    return click.option(
        "--profile", type=click.Choice(["sandbox", "production"]), default=None,
        help="Instance profile written into $DAGSTER_HOME/dagster.yaml: sandbox (SQLite) or production "
             "(instance and ledger on Postgres, run monitoring, retries, pools; see docs/PRODUCTION.md) "
             "[default: the profile setting, OUTREACH_PIPELINE_PROFILE, else sandbox].",
    )(function)


def _settings():
    from outreach_pipeline.settings import SettingsError, load_settings

    try:
        return load_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from exc


def _apply_profile(name: str | None, home: Path):
    """Check the profile's environment and write its instance configuration (a hand-written one stays)."""
    from outreach_pipeline.profiles import Profile, ProfileError, check_environment, write_instance_config

    profile = Profile(name) if name else _settings().profile
    name = profile.value
    try:
        check_environment(profile)
    except ProfileError as exc:
        raise click.ClickException(str(exc)) from exc
    config = write_instance_config(home, profile)
    if not config.written:
        click.echo(f"{config.path} was not written by a profile: using it as it is, not the {name} profile", err=True)
    return profile


@main.command("sync")
@click.option("--windows", type=click.IntRange(1, 24 * 90), help="The N most recent complete hourly windows.")
@click.option("--from", "from_", help="First window: a key like 2026-11-27-05:00 or an ISO datetime.")
@click.option("--to", help="Last window (inclusive); default: the last complete one.")
@click.option("--max-wait", default=1800.0, show_default=True, type=click.FloatRange(0),
              help="Seconds to wait for a pool slot held by another run before giving up (exit 3).")
@click.option("--verbose", is_flag=True, help="Show the traceback of a failure.")
@click.option("--dry-run", is_flag=True, help="Plan only: print what the run would do, write nothing (defs/dry_run.py).")
@click.option("--json", "as_json", is_flag=True, help="With --dry-run: print the plan as JSON.")
@click.option("--first-sync", is_flag=True, hidden=True, help="Run as `first-sync` (full_sync_job, from the beginning).")
@_profile_option
def sync(
    windows: int | None, from_: str | None, to: str | None, max_wait: float, verbose: bool, profile: str | None,
    dry_run: bool = False, as_json: bool = False, first_sync: bool = False,
) -> None:
    """Materialise complete sync windows through Dagster (one run) and print a summary table.

    Uses the instance in $DAGSTER_HOME (default ./.dagster_home; given the profile's dagster.yaml unless one
    was written by hand), so the run shows in the UI, and the systems configured in the environment (the sandbox when
    none are). Runs of earlier syncs whose process died are marked failed and their pool slots freed first.
    Exits 0 when the run succeeded, 1 when it failed or a failure_rate check is at ERROR, 3 when it gave up
    waiting for a pool slot, 130 on Ctrl-C/SIGTERM.
    """
    import logging
    import uuid
    import warnings

    import dagster as dg
    from dagster._core.errors import DagsterExecutionInterruptedError
    from tabulate import tabulate

    from outreach_pipeline.cli_runs import first_sync_options
    from outreach_pipeline.clients.http import Service
    from outreach_pipeline.definitions import build_definitions
    from outreach_pipeline.defs import failures
    from outreach_pipeline.defs.first_sync import first_sync_range
    from outreach_pipeline.defs.headless import last_complete_windows, parse_window, run_sync, sync_windows_of
    from outreach_pipeline.defs.resources import (
        ResourceConfigError,
        SyncSettings,
        dagster_home,
        outreach_resource_from_env,
        workbooks_resource_from_env,
    )
    from outreach_pipeline.defs.run_guard import ExitCode, RunWatch, process_tags, recover_dead_runs
    from outreach_pipeline.mapping.models import MappingError
    from outreach_pipeline.settings import SettingsError

    if windows is None and from_ is None and not first_sync:
        raise click.UsageError("give --windows N, or --from (and optionally --to)")
    if as_json and not dry_run:
        raise click.UsageError("--json goes with --dry-run")
    if windows is not None and from_ is not None:
        raise click.UsageError("--windows and --from are alternatives")
    home = dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("DAGSTER_HOME", str(home))
    _apply_profile(profile, home)
    settings = _settings()
    if not verbose:
        warnings.filterwarnings("ignore")
    # Our own progress lines (the writer lock's waits) reach the terminal; Dagster's console logger does not.
    progress = logging.StreamHandler()
    progress.setFormatter(logging.Formatter("%(message)s"))
    logging.getLogger("outreach_pipeline.engine.writer_lock").addHandler(progress)
    try:
        defs = build_definitions(settings)
        SyncSettings(mapping_path=str(settings.mapping_path) if settings.mapping_path else None).mappings()
        base_urls = {Service.OUTREACH: outreach_resource_from_env().base_url,
                     Service.WORKBOOKS: workbooks_resource_from_env().base_url}
    except (ResourceConfigError, SettingsError, MappingError) as exc:  # e.g. a real Workbooks with the sandbox Outreach
        raise click.ClickException(str(exc)) from exc
    partitions = sync_windows_of(defs)
    try:
        if first_sync and windows is None and from_ is None:
            first, last = first_sync_range(partitions)
        elif windows is not None:
            first, last = last_complete_windows(partitions, windows)
        else:
            first = parse_window(partitions, from_ or "")
            last = parse_window(partitions, to) if to else last_complete_windows(partitions, 1)[1]
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc

    if dry_run:  # no run in the instance: nothing of it may look synced
        from outreach_pipeline.cli_runs import print_dry_run

        raise SystemExit(print_dry_run(defs, first, last, as_json=as_json, from_beginning=first_sync))
    run_options = first_sync_options(first, last) if first_sync else {}
    run_id = str(uuid.uuid4())
    with dg.DagsterInstance.get() as instance:
        for action in recover_dead_runs(instance):
            click.echo(action, err=True)
        try:
            with RunWatch(instance, run_id, max_wait=max_wait, echo=lambda line: click.echo(line, err=True)):
                summary = run_sync(defs, instance, first, last, executor=settings.executor, run_id=run_id,
                                   tags={**process_tags(), **run_options.get("tags", {})},
                                   hooks=frozenset({failures.keep_step_exception}),
                                   **{k: v for k, v in run_options.items() if k != "tags"})
            if summary.interrupted:
                instance.event_log_storage.free_concurrency_slots_for_run(run_id)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from exc
        except (KeyboardInterrupt, DagsterExecutionInterruptedError):  # reached a step: the run is marked failed
            instance.event_log_storage.free_concurrency_slots_for_run(run_id)
            click.echo(f"interrupted: run {run_id} stopped and its pool slots freed", err=True)
            raise SystemExit(ExitCode.INTERRUPTED) from None
    if summary.interrupted:
        click.echo(f"interrupted: run {run_id} stopped (marked failed, pool slots freed); its writes so far are in "
                   "the ledger", err=True)
        raise SystemExit(ExitCode.INTERRUPTED)
    click.echo(f"windows {summary.first_window} .. {summary.last_window}  run {summary.run_id}")
    if any(row["extracted"] != "-" for row in summary.rows):  # a run that loaded nothing has no table to show
        click.echo(tabulate(summary.rows, headers="keys", tablefmt="github"))
    code = ExitCode.OK
    step_failures = failures.step_failures(run_id)
    # The same cause (say, refused credentials) fails several steps: one paragraph per cause.
    for message, steps in failures.explain_all(step_failures, base_urls=base_urls).items():
        click.echo(f"{message}\n(failed steps: {', '.join(steps)})", err=True)
        code = ExitCode.FAILED
    if verbose:
        for failure in step_failures:
            click.echo(failures.formatted_traceback(failure.exception), err=True)
    for check in summary.error_checks:
        click.echo(f"failed check at ERROR severity: {check}", err=True)
        code = ExitCode.FAILED
    if not summary.success:
        code = ExitCode.FAILED
        if not step_failures:
            click.echo(f"the run failed: see run {summary.run_id} in the Dagster UI for every step's events", err=True)
    raise SystemExit(code)


@main.command("dev")
@click.option("--port", default=3000, show_default=True, help="Dagster UI port (on 127.0.0.1).")
@click.option("--dagster-home", default=".dagster_home", show_default=True,
              type=click.Path(file_okay=False, path_type=Path))
@click.option("--data-dir", default=".sandbox", show_default=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--outreach-port", default=DEFAULT_OUTREACH_PORT, show_default=True, type=click.IntRange(0, 65535),
              help="Outreach sandbox port (0: any free port).")
@click.option("--workbooks-port", default=DEFAULT_WORKBOOKS_PORT, show_default=True, type=click.IntRange(0, 65535),
              help="Workbooks sandbox port (0: any free port).")
@click.option("--prospects", default=2000, show_default=True, type=click.IntRange(0, 1_000_000))
@click.option("--simulate/--no-simulate", default=True, show_default=True)
@click.option("--webhook-port", default=0, show_default=True, type=click.IntRange(0, 65535),
              help="Port of the Outreach webhook receiver (0: any free port; the sandbox is told its URL).")
@click.option("--low-latency-minutes", type=click.IntRange(1, 59), default=None,
              help="Turn the low-latency lane on: sync the open hour's changes every N minutes (sets "
                   "OUTREACH_PIPELINE_LOW_LATENCY_MINUTES for the code location; default: that variable, else off).")
@_profile_option
def dev(port: int, dagster_home: Path, data_dir: Path, outreach_port: int, workbooks_port: int, prospects: int,
        simulate: bool, webhook_port: int, low_latency_minutes: int | None, profile: str | None) -> None:
    """Start the sandbox (with its activity simulator) and `dg dev` (UI and daemon, schedule on)."""
    import sys

    from outreach_pipeline.defs.resources import LEDGER_URL_VARIABLE, sandbox_only_environment
    from outreach_pipeline.sandbox.runtime import SandboxConfig, start_sandbox
    from outreach_pipeline.sandbox.server import LOOPBACK, ensure_port_free
    from outreach_pipeline.settings import PipelineSettings

    dagster_home = dagster_home.resolve()
    dagster_home.mkdir(parents=True, exist_ok=True)
    project_root = Path(__file__).resolve().parent.parent
    applied = _apply_profile(profile, dagster_home)
    config = SandboxConfig(data_dir=data_dir, outreach_port=outreach_port, workbooks_port=workbooks_port,
                           prospects=prospects, simulate=simulate)
    try:
        ensure_port_free(LOOPBACK, port, "the Dagster UI")
        running = start_sandbox(config)
    except PortInUse as exc:
        raise _port_in_use(exc) from None
    with running:
        click.echo(f"sandbox: Outreach {running.outreach_url}, Workbooks {running.workbooks_url}; simulator {'on' if simulate else 'off'}")
        # The sandbox starts as a fresh Workbooks database would: install the integration's fields first.
        from outreach_pipeline.clients.workbooks import WorkbooksClient
        from outreach_pipeline.engine.install import install
        from outreach_pipeline.mapping.models import load_mapping_set

        workbooks_client = WorkbooksClient(running.workbooks_url, **SANDBOX_WORKBOOKS_AUTH)
        try:
            report = install(workbooks_client, load_mapping_set())
        finally:
            workbooks_client.close()
        click.echo(f"install: {len(report.created)} created, {len(report.present)} already present")
        if _settings().first_sync_on_start:
            click.echo("first sync: on a new instance the first_sync sensor launches it within a minute (every "
                       "record, every complete window, one run; see Runs); `outreach-pipeline first-sync` runs it "
                       "by hand")
        # Only the sandbox: credentials in the caller's shell must not turn this into a real sync.
        env = sandbox_only_environment(
            os.environ, outreach_url=running.outreach_url, workbooks_url=running.workbooks_url
        )
        env["DAGSTER_HOME"] = str(dagster_home)
        start_variable = PipelineSettings.variable("partitions_start")
        if start_variable not in os.environ:
            env[start_variable] = dev_partitions_start(dagster_home, config.seed_days)
            click.echo(f"partitions: hourly from {env[start_variable]} (the sandbox's seeded span; "
                       f"{start_variable} moves it)")
        lane_variable = PipelineSettings.variable("low_latency_minutes")
        if low_latency_minutes is not None:
            env[lane_variable] = str(low_latency_minutes)
        if env.get(lane_variable):
            click.echo(f"low-latency lane: on, every {env[lane_variable]} minute(s) (sensor low_latency_lane)")
        if applied.value == "production" and os.environ.get(LEDGER_URL_VARIABLE):
            env[LEDGER_URL_VARIABLE] = os.environ[LEDGER_URL_VARIABLE]  # the profile's ledger, not an API's
        # `dg dev` serves this dg project (pyproject's [tool.dg]) from its root, in this virtualenv.
        env["VIRTUAL_ENV"] = sys.prefix
        command = [str(Path(sys.executable).with_name("dg")), "dev", "--host", "127.0.0.1", "--port", str(port)]
        # Its own process group, so stopping it reaches everything it starts (UI, daemon, code servers, runs).
        with dev_receiver(_settings(), running.outreach_url, dagster_home, env, webhook_port) as receiver_url:
            if receiver_url:
                click.echo(f"webhook receiver: {receiver_url} (quiet windows skip their Outreach reads)")
            process = subprocess.Popen(command, env=env, cwd=project_root, start_new_session=True)
            _stop_child_with_us(process)


def _stop_child_with_us(process: subprocess.Popen, grace_seconds: float = 30) -> None:
    """Wait for `dg dev` (leader of its own process group); on Ctrl-C or SIGTERM (a service manager, `kill`)
    interrupt the whole group as Ctrl-C would, and kill what is left after `grace_seconds`, so neither the UI,
    the daemon, the code servers nor a run in progress outlives this process (the next start's run monitoring
    marks a killed run failed, and the ledger resumes it)."""

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupted)
    try:
        process.wait()
    except KeyboardInterrupt:
        _signal_group(process.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(grace_seconds)
        time.sleep(1)  # its children end just after it
        _signal_group(process.pid, signal.SIGKILL)
        process.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)


def _signal_group(group: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signum)


@main.command("install")
@click.option("--workbooks-url", default=None,
              help="Workbooks base URL [default: $WORKBOOKS_BASE_URL, else the real service when Workbooks "
                   f"credentials are set, else the sandbox at {SANDBOX_WORKBOOKS_URL}].")
@click.option("--outreach-url", default=None,
              help="Outreach base URL for the preflight [default: $OUTREACH_BASE_URL, else the real service when "
                   f"the Outreach credentials are set, else the sandbox at {SANDBOX_OUTREACH_URL}].")
@click.option("--mapping", "mapping_path", default=None, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Mapping YAML [default: the packaged default.yaml].")
@click.option("--skip-preflight", is_flag=True, help="Only create the Workbooks fields; do not check the mapping.")
def install_command(
    workbooks_url: str | None, outreach_url: str | None, mapping_path: Path | None, skip_preflight: bool
) -> None:
    """Create the Workbooks custom fields and record types the mapping needs, then preflight the mapping.

    Credentials come from the environment as for the Dagster resources: WORKBOOKS_API_KEY, or
    WORKBOOKS_USERNAME and WORKBOOKS_PASSWORD; OUTREACH_CLIENT_ID, OUTREACH_CLIENT_SECRET,
    OUTREACH_REDIRECT_URI and OUTREACH_REFRESH_TOKEN. Without them the sandbox defaults are used. A real
    Workbooks with the sandbox Outreach is allowed here (unlike for a sync): install only creates fields
    and the preflight only reads. Exits 1 when an item conflicts or the preflight of accounts, prospects and opportunities finds problems.
    """
    from outreach_pipeline.clients.http import ApiError
    from outreach_pipeline.defs.resources import (
        ResourceConfigError,
        outreach_resource_from_env,
        workbooks_resource_from_env,
    )
    from outreach_pipeline.engine.install import format_install_report, install
    from outreach_pipeline.engine.preflight import OUTREACH_TO_WORKBOOKS_CORE_ENTITIES, run_preflight
    from outreach_pipeline.mapping.models import MappingError, load_mapping_set

    try:
        # Resolved here as Dagster would at run time: the resources read their secrets through dg.EnvVar.
        workbooks = workbooks_resource_from_env(workbooks_url).process_config_and_initialize()
        outreach = outreach_resource_from_env(outreach_url).process_config_and_initialize()
    except ResourceConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    try:
        mapping_set = load_mapping_set(mapping_path)
    except MappingError as exc:
        raise click.ClickException(str(exc)) from exc
    problems: list[str] = []
    try:
        with workbooks.open() as workbooks_client:
            click.echo(f"Installing into Workbooks at {workbooks_client.base_url}")
            report = install(workbooks_client, mapping_set)
            click.echo(format_install_report(report))
            if not skip_preflight:
                entities = [name for name in OUTREACH_TO_WORKBOOKS_CORE_ENTITIES if name in mapping_set.entities]
                with outreach.open() as outreach_client:
                    problems = run_preflight(workbooks_client, outreach_client, mapping_set, entities)
                verdict = "OK" if not problems else f"{len(problems)} problem(s)"
                click.echo(f"Preflight of {', '.join(entities)}: {verdict}")
                for problem in problems:
                    click.echo(f"  - {problem}")
    except ApiError as exc:
        # ApiError messages name the request and the server's reason, never credentials.
        raise click.ClickException(str(exc)) from exc
    if report.conflicts or problems:
        raise SystemExit(1)

@main.command("worker")
@click.option("--concurrency", "-c", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Steps this worker runs at once (the instance's pools still cap each API).")
@click.option("--name", default="outreach-pipeline", show_default=True, help="Worker name (before @host).")
@click.option("--loglevel", default="INFO", show_default=True)
def worker(concurrency: int, name: str, loglevel: str) -> None:
    """Start a Celery worker that runs sync steps (OUTREACH_PIPELINE_EXECUTOR=celery; docs/PRODUCTION.md).

    Broker, result backend and queue come from OUTREACH_PIPELINE_CELERY_BROKER (default RabbitMQ on
    127.0.0.1:5672), OUTREACH_PIPELINE_CELERY_BACKEND and OUTREACH_PIPELINE_CELERY_QUEUE. The worker
    needs the environment of the process that launches the runs: DAGSTER_HOME, the services, the ledger
    URL and a window store it reaches (OUTREACH_PIPELINE_WINDOW_STORE).
    """
    from outreach_pipeline.defs.resources import ResourceConfigError
    from outreach_pipeline.defs.scaleout import CelerySettings, run_worker

    try:
        run_worker(CelerySettings.of(_settings()), concurrency=concurrency, name=name, loglevel=loglevel)
    except ResourceConfigError as exc:
        raise click.ClickException(str(exc)) from exc


main.add_command(first_sync_command)

if __name__ == "__main__":
    main()
