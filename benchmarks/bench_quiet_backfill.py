"""Quiet-window benchmark: one single-run backfill of the scheduled sync job over N days where nothing changed.

    .venv/bin/python benchmarks/bench_quiet_backfill.py [--days 30]
        [--instance sqlite|postgres|postgres-dagster|both] [--profile] [--floor]

Setup (not timed): an in-process sandbox seeded with a small day of records (the harness's way: in memory,
fields installed, the Outreach clock pinned), and one initial sync of that day. Timed: one run of
`outreach_to_workbooks_job` over the `--days` x 24 hourly windows after it, in which neither system changed.
What a quiet window costs is Dagster's bookkeeping and the window store's files, not the APIs.

Instances: `sqlite` is a DAGSTER_HOME holding the project's dagster.yaml (SQLite storage under it, the
default); `postgres` is the same settings with the production profile's storage (dagster-postgres', check
evaluations stored in batches) in a throw-away database created on 127.0.0.1:5432 (trust auth;
OUTREACH_PIPELINE_TEST_POSTGRES overrides the server) and dropped afterwards; `postgres-dagster` the same with
Dagster's own `storage: postgres`. The maintenance connection that creates and drops the database uses
`template1`, never the `postgres` database.

`--floor` times Dagster alone: trivial partitioned assets with the real job's asset keys, dependencies and
checks (partitioned checks evaluated once per window, as the loads' `failure_rate` is), no IO manager and no work, over
the same windows. That is the least a window of this graph can cost on the instance.

Printed: wall time, time per window, events the run wrote to the event log (by type), window-store files
written, SQLAlchemy connections opened and commits (instance and ledger), requests both APIs served; with
`--profile`, cProfile's top functions by cumulative and by own time. BENCHMARKS.md ("Quiet windows") records
the figures with these commands.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import resource
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as sa
import yaml
from bench_pipeline import install_fields  # the script's directory is on sys.path, as for bench_engagement

from outreach_pipeline.definitions import build_definitions as build_code_location
from outreach_pipeline.defs.io_manager import WindowedParquetIOManager
from outreach_pipeline.defs.jobs import SYNC_JOB
from outreach_pipeline.defs.resources import LedgerResource, OutreachResource, SyncSettings, WorkbooksResource
from outreach_pipeline.profiles import Profile, instance_config_source
from outreach_pipeline.sandbox.runtime import RunningSandbox, SandboxConfig, start_sandbox
from outreach_pipeline.settings import WINDOW_KEY_FORMAT, PipelineSettings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
POSTGRES_SERVER = os.environ.get("OUTREACH_PIPELINE_TEST_POSTGRES", "postgresql+psycopg2://postgres@127.0.0.1:5432")
WINDOW = timedelta(hours=1)
SEED = {"prospects": 60, "accounts": 10, "opportunities": 15, "seed_days": 1}
QUIET_LOGS = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
TARGET_SECONDS_30_DAYS = 60.0


@dataclass
class DatabaseCounter:
    """SQLAlchemy connections opened and commits made in this process while counting."""

    connections: int = 0
    commits: int = 0
    counting: bool = False

    def install(self) -> None:
        sa.event.listen(sa.engine.Engine, "connect", self._on_connect)
        sa.event.listen(sa.engine.Engine, "commit", self._on_commit)

    def _on_connect(self, *_: Any) -> None:
        if self.counting:
            self.connections += 1

    def _on_commit(self, *_: Any) -> None:
        if self.counting:
            self.commits += 1


COUNTER = DatabaseCounter()


@dataclass
class Figures:
    """What one timed run cost."""

    instance: str
    windows: int
    wall_seconds: float
    cpu_seconds: float
    success: bool
    events: Counter[str] = field(default_factory=Counter)
    files_written: int = 0
    connections: int = 0
    commits: int = 0
    requests: int | None = None
    profile: str = ""

    def lines(self) -> list[str]:
        per_window_ms = 1000 * self.wall_seconds / self.windows
        lines = [
            f"[{self.instance}] success={self.success}; {self.windows} windows: wall {self.wall_seconds:.1f} s, "
            f"{per_window_ms:.0f} ms per window; CPU (user+sys, this process) {self.cpu_seconds:.1f} s, "
            f"{1000 * self.cpu_seconds / self.windows:.0f} ms per window",
            f"[{self.instance}] events written: {sum(self.events.values())} "
            + ", ".join(f"{name}={count}" for name, count in self.events.most_common()),
            f"[{self.instance}] window-store files written: {self.files_written}; SQLAlchemy connections opened: "
            f"{self.connections}, commits: {self.commits}"
            + ("" if self.requests is None else f"; API requests: {self.requests}"),
        ]
        if self.profile:
            lines.append(self.profile)
        return lines


# ----------------------------------------------------------------------------- instances


def instance_yaml(storage: dict[str, Any] | None) -> str:
    """The project's dagster.yaml, with `storage` set when given."""
    config = yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text())
    if storage is not None:
        config["storage"] = storage
    return yaml.safe_dump(config)


@contextmanager
def postgres_database() -> Iterator[str]:
    """A throw-away database on the Postgres server, dropped afterwards."""
    name = f"bench_quiet_{uuid.uuid4().hex[:12]}"
    # template0 as the template, so the maintenance connection to template1 cannot block the copy.
    admin = sa.create_engine(f"{POSTGRES_SERVER}/template1", isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE template0')
        yield f"{POSTGRES_SERVER}/{name}"
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@contextmanager
def open_instance(kind: str, root: Path) -> Iterator[dg.DagsterInstance]:
    """A fresh instance of `kind` (``sqlite``, ``postgres`` or ``postgres-dagster``) under `root`, with the project's
    settings."""
    home = root / f"dagster_{kind}"
    home.mkdir(parents=True)
    os.environ["DAGSTER_HOME"] = str(home)  # the project's SQLite storage lives under it
    if kind == "sqlite":
        (home / "dagster.yaml").write_text(instance_yaml(None))
        with dg.DagsterInstance.from_config(str(home)) as instance:
            yield instance
        return
    with postgres_database() as url:
        if kind == "postgres":  # the production profile's storage class, on the throw-away database
            storage = yaml.safe_load(instance_config_source(Profile.PRODUCTION).read_text())["storage"]
            storage["custom"]["config"]["postgres_url"] = url
        else:  # postgres-dagster: Dagster's own `storage: postgres`
            storage = {"postgres": {"postgres_url": url}}
        (home / "dagster.yaml").write_text(instance_yaml(storage))
        with dg.DagsterInstance.from_config(str(home)) as instance:
            yield instance


# ----------------------------------------------------------------------------- the sandbox and the real job


@dataclass(frozen=True)
class Span:
    """The seeded day and the quiet days after it, all complete hours before now."""

    seed_end: datetime  # end of the seeded day = first quiet window
    days: int

    @classmethod
    def before_now(cls, days: int) -> Span:
        last_complete = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - WINDOW
        return cls(seed_end=last_complete - timedelta(days=days) + WINDOW, days=days)

    @property
    def partitions_start(self) -> str:
        return (self.seed_end - timedelta(days=SEED["seed_days"])).strftime(WINDOW_KEY_FORMAT)

    @property
    def seeded(self) -> tuple[str, str]:
        first = self.seed_end - timedelta(days=SEED["seed_days"])
        return first.strftime(WINDOW_KEY_FORMAT), (self.seed_end - WINDOW).strftime(WINDOW_KEY_FORMAT)

    @property
    def quiet(self) -> tuple[str, str]:
        last = self.seed_end + timedelta(days=self.days) - WINDOW
        return self.seed_end.strftime(WINDOW_KEY_FORMAT), last.strftime(WINDOW_KEY_FORMAT)


def start_seeded_sandbox(span: Span) -> RunningSandbox:
    """An in-memory sandbox seeded over the day before `span.seed_end`, Outreach's clock pinned just before it
    (so whatever the initial sync writes back to Outreach stays out of the quiet days), fields installed."""
    sandbox = start_sandbox(SandboxConfig(data_dir=None, outreach_port=0, workbooks_port=0, seed_now=span.seed_end,
                                          workbooks_people=0, **SEED))
    pinned = span.seed_end - timedelta(seconds=1)
    sandbox.outreach_store.now = lambda: pinned
    install_fields(sandbox.workbooks_url)
    return sandbox


def pipeline_definitions(sandbox: RunningSandbox, span: Span, files: Path) -> dg.Definitions:
    """The production code location, pointed at the sandbox, with files under `files`."""
    return build_code_location(
        PipelineSettings(partitions_start=span.partitions_start),
        resources={
            "outreach": OutreachResource(base_url=sandbox.outreach_url, token_store_path=str(files / "tokens.json")),
            "workbooks": WorkbooksResource(base_url=sandbox.workbooks_url),
            "ledger": LedgerResource(url=f"sqlite:///{files / 'ledger.db'}"),
            "sync_settings": SyncSettings(),
            "window_io_manager": WindowedParquetIOManager(base_dir=str(files / "windows")),
        },
    )


def run_range(defs: dg.Definitions, instance: dg.DagsterInstance, keys: tuple[str, str],
              job: str = SYNC_JOB) -> dg.ExecuteInProcessResult:
    """One run of `job` over the windows `keys[0]..keys[1]`, as a single-run backfill launches it."""
    return defs.resolve_job_def(job).execute_in_process(
        instance=instance,
        tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[1]},
        raise_on_error=False,
        run_config=QUIET_LOGS,
    )


def files_written_since(directory: Path, since_ns: int) -> int:
    """Files under `directory` last written at or after `since_ns`."""
    if not directory.exists():
        return 0
    return sum(1 for path in directory.rglob("*") if path.is_file() and path.stat().st_mtime_ns >= since_ns)


def timed(kind: str, windows: int, instance: dg.DagsterInstance, run: Callable[[], dg.ExecuteInProcessResult],
          *, profile: bool) -> tuple[Figures, dg.ExecuteInProcessResult]:
    """Time `run`, counting database round trips, and read its events back from the instance."""
    profiler = cProfile.Profile() if profile else None
    COUNTER.connections = COUNTER.commits = 0
    COUNTER.counting = True
    started, cpu_before = time.perf_counter(), _cpu_seconds()
    if profiler is not None:
        profiler.enable()
    try:
        result = run()
    finally:
        if profiler is not None:
            profiler.disable()
        COUNTER.counting = False
    wall, cpu = time.perf_counter() - started, _cpu_seconds() - cpu_before
    for event in result.all_events:
        if event.is_failure:
            print(f"FAILURE: {(event.message or '')[:2000]}", file=sys.stderr)
    events = Counter(
        entry.dagster_event_type.value if entry.dagster_event_type else "log_message"
        for entry in instance.all_logs(result.run_id)
    )
    figures = Figures(instance=kind, windows=windows, wall_seconds=wall, cpu_seconds=cpu, success=result.success, events=events,
                      connections=COUNTER.connections, commits=COUNTER.commits)
    if profiler is not None:
        figures.profile = profile_text(profiler)
    return figures, result


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def profile_text(profiler: cProfile.Profile, top: int = 35) -> str:
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats("outreach_pipeline", top)  # the project's own share
    return out.getvalue()


def measure_quiet_backfill(kind: str, span: Span, root: Path, *, profile: bool) -> Figures:
    """Seed, sync the seeded day, then time the quiet days on a fresh instance of `kind`."""
    files = root / f"files_{kind}"
    files.mkdir()
    sandbox = start_seeded_sandbox(span)
    try:
        defs = pipeline_definitions(sandbox, span, files)
        with open_instance(kind, root) as instance:
            started = time.perf_counter()
            initial = run_range(defs, instance, span.seeded)
            print(f"[{kind}] initial sync of {span.seeded[0]}..{span.seeded[1]}: success={initial.success} in "
                  f"{time.perf_counter() - started:.1f} s", flush=True)
            sandbox.outreach_middleware.stats.reset()
            sandbox.workbooks_middleware.stats.reset()
            since_ns = time.time_ns()
            figures, _ = timed(kind, span.days * 24, instance, lambda: run_range(defs, instance, span.quiet),
                               profile=profile)
            figures.files_written = files_written_since(files / "windows", since_ns)
            figures.requests = sum(sandbox.outreach_middleware.stats.snapshot()["requests"].values()) + sum(
                sandbox.workbooks_middleware.stats.snapshot()["requests"].values())
            return figures
    finally:
        sandbox.stop()


# ----------------------------------------------------------------------------- Dagster's floor


def floor_definitions(real: dg.Definitions, windows: dg.TimeWindowPartitionsDefinition) -> dg.Definitions:
    """Trivial stand-ins for the real job's assets: same keys, dependencies, check specs and windows, no work,
    no IO manager. Checks defined inside an asset pass once per run (as the staged checks do); partitioned
    checks defined on their own report one evaluation per window (as the loads' `failure_rate` does), unpartitioned
    ones one per run (as the writes' does)."""
    graph = real.resolve_job_def(SYNC_JOB).asset_layer.asset_graph
    stand_ins: list[dg.AssetsDefinition | dg.AssetChecksDefinition] = []
    for assets_def in graph.assets_defs:  # an asset check definition is one without asset keys
        if assets_def.keys:
            stand_ins.append(_stand_in_assets(assets_def, windows))
        elif assets_def.check_specs:
            stand_ins.append(_stand_in_checks(assets_def, windows))
    return dg.Definitions(assets=stand_ins, jobs=[dg.define_asset_job(SYNC_JOB, executor_def=dg.in_process_executor)])


def _stand_in_assets(assets_def: dg.AssetsDefinition, windows: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    specs = [dg.AssetSpec(spec.key, deps=[dep.asset_key for dep in spec.deps], partitions_def=windows)
             for spec in assets_def.specs]
    check_specs = [dg.AssetCheckSpec(spec.name, asset=spec.asset_key) for spec in assets_def.check_specs]

    @dg.multi_asset(specs=specs, check_specs=check_specs, backfill_policy=dg.BackfillPolicy.single_run(),
                    name=f"floor_{assets_def.node_def.name}")
    def stand_in(context):  # no annotation: Dagster reads it at definition time (postponed here)
        for spec in specs:
            yield dg.MaterializeResult(asset_key=spec.key)
        for check in check_specs:
            yield dg.AssetCheckResult(asset_key=check.asset_key, check_name=check.name, passed=True)

    return stand_in


def _stand_in_checks(checks_def: dg.AssetsDefinition, windows: dg.TimeWindowPartitionsDefinition) -> dg.AssetChecksDefinition:
    specs = list(checks_def.check_specs)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        # As the real spec: partitioned (the loads' failure_rate) or not (the writes', once per run).
        stand_in_specs = [dg.AssetCheckSpec(spec.name, asset=spec.asset_key,
                                            partitions_def=windows if spec.partitions_def is not None else None)
                          for spec in specs]

    @dg.multi_asset_check(specs=stand_in_specs, name=f"floor_{checks_def.node_def.name}")
    def stand_in(context):  # no annotation: Dagster reads it at definition time (postponed here)
        tags = context.run.tags
        keys = windows.get_partition_keys_in_range(dg.PartitionKeyRange(
            tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]))
        for spec in stand_in_specs:
            for key in (keys if spec.partitions_def is not None else [None]):
                yield dg.AssetCheckEvaluation(asset_key=spec.asset_key, check_name=spec.name, passed=True,
                                              partition=key)
            yield dg.Output(None, output_name=spec.get_python_identifier())

    return stand_in


def measure_floor(kind: str, span: Span, root: Path, *, profile: bool) -> Figures:
    """Time the stand-in graph over the quiet days on a fresh instance of `kind`."""
    files = root / f"floor_files_{kind}"
    files.mkdir()
    sandbox = start_seeded_sandbox(span)  # only to build the real definitions the stand-ins copy
    try:
        real = pipeline_definitions(sandbox, span, files)
    finally:
        sandbox.stop()
    from outreach_pipeline.defs.partitions import sync_windows
    defs = floor_definitions(real, sync_windows(span.partitions_start))
    with open_instance(kind, root) as instance:
        figures, _ = timed(f"{kind} floor", span.days * 24, instance, lambda: run_range(defs, instance, span.quiet),
                           profile=profile)
    return figures


# ----------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run the chosen measurements and print the figures; exit 1 if a run failed."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=30, help="quiet days to backfill (24 windows each)")
    parser.add_argument("--instance", choices=("sqlite", "postgres", "postgres-dagster", "both"), default="both")
    parser.add_argument("--profile", action="store_true", help="print cProfile's top functions of the timed run")
    parser.add_argument("--floor", action="store_true",
                        help="time trivial stand-ins of the job's assets and checks (Dagster's own cost) instead")
    args = parser.parse_args(argv)
    COUNTER.install()
    span = Span.before_now(args.days)
    kinds = ("sqlite", "postgres") if args.instance == "both" else (args.instance,)
    print(f"quiet windows {span.quiet[0]}..{span.quiet[1]} ({args.days * 24}); load average {os.getloadavg()}",
          flush=True)
    measure = measure_floor if args.floor else measure_quiet_backfill
    ok = True
    for kind in kinds:
        root = Path(tempfile.mkdtemp(prefix=f"bench_quiet_{kind}_"))
        try:
            figures = measure(kind, span, root, profile=args.profile)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        print("\n".join(figures.lines()), flush=True)
        if kind == "sqlite" and not args.floor and args.days == 30:
            met = figures.wall_seconds < TARGET_SECONDS_30_DAYS
            print(f"target: 30 quiet days under {TARGET_SECONDS_30_DAYS:.0f} s on the default instance: "
                  f"{'MET' if met else 'NOT MET'}")
        ok = ok and figures.success
    print(f"load average after: {os.getloadavg()}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
