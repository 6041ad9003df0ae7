"""Acceptance: a 24-window backfill on two real Celery workers over RabbitMQ equals the in-process result.

The Celery side is the production set-up end to end: `outreach-pipeline sync --profile production` as a
subprocess, with the Dagster instance and the ledger on a fresh Postgres database, its steps sent through
RabbitMQ (127.0.0.1:5672; `.ci/services` starts it) on a queue of its own to two `outreach-pipeline worker`
processes, and the window files in a store named by URL. The reference is the same command with its steps in its
own process, on an identically seeded sandbox (both syncs run at once, to keep the test short). The sandbox's own request accounting (`/_sandbox/stats`) then shows whether
the pools held across the workers: at most one request in flight per API.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import requests
import sqlalchemy as sa

from outreach_pipeline.defs.resources import sandbox_only_environment
from outreach_pipeline.defs.scaleout import CelerySettings, worker_app
from outreach_pipeline.engine import ledger
from outreach_pipeline.settings import PipelineSettings
from outreach_pipeline_tests.pipeline.harness import (
    Pipeline,
    content_differences,
    partition_key,
    seeded_windows,
    start_pinned_sandbox,
    workbooks_content,
)

SEED = {"prospects": 200, "accounts": 30, "opportunities": 40, "seed_days": 1}
WORKERS = 2
#: The production profile's limit for each API pool.
POOL_LIMIT = 1
#: Every request answered 150 ms late, so two steps calling one API at once would surely overlap in flight.
SLOW = "slow:delay_ms=150"
CLI = str(Path(sys.executable).with_name("outreach-pipeline"))
#: Ledger columns that name a run, a time of writing or a Workbooks id (numbered per sandbox).
LEDGER_VOLATILE = {"last_run_id", "recorded_at", "workbooks_id", "first_failed_at"}  # stamps and ids of each run


def ledger_state(url: str) -> dict[str, Any]:
    """Per-record state (less run ids and stamps), history outcomes counted, and pending links, of a ledger."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            state = connection.execute(sa.select(ledger.record_state)).mappings().all()
            outcomes = connection.execute(
                sa.select(ledger.history.c.entity, ledger.history.c.outcome, sa.func.count())
                .group_by(ledger.history.c.entity, ledger.history.c.outcome)).all()
            pending = connection.execute(sa.select(*(
                ledger.pending_relation.c[name]
                for name in ("entity", "outreach_id", "field", "target_entity", "target_outreach_id")))).all()
    finally:
        engine.dispose()
    return {
        "records": {
            (row["entity"], row["outreach_id"]): {
                **{k: _utc(v) for k, v in row.items() if k not in LEDGER_VOLATILE},
                "linked": row["workbooks_id"] is not None,
            }
            for row in state
        },
        "history_outcomes": {(entity, outcome): count for entity, outcome, count in outcomes},
        "pending": {tuple(row) for row in pending},
    }


def _utc(value: Any) -> Any:
    """SQLite hands timestamps back naive (stored as UTC), Postgres aware: compare both as aware UTC."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def ledger_differences(expected: dict[str, Any], actual: dict[str, Any], limit: int = 10) -> list[str]:
    differences = [f"{part}: (expected, actual) {expected[part]!r:.300} != {actual[part]!r:.300}"
                   for part in ("history_outcomes", "pending") if expected[part] != actual[part]]
    want, got = expected["records"], actual["records"]
    differences += [f"ledger {key}: missing" for key in sorted(want.keys() - got.keys())]
    differences += [f"ledger {key}: unexpected" for key in sorted(got.keys() - want.keys())]
    for key in sorted(want.keys() & got.keys()):
        changed = {name: (want[key][name], got[key][name]) for name in want[key] if want[key][name] != got[key][name]}
        if changed:
            differences.append(f"ledger {key}: (expected, actual) {changed}")
    return differences[:limit]


def _celery(environ: dict[str, str]) -> CelerySettings:
    """The Celery settings an environment gives (as the worker command reads them)."""
    queue = environ.get("OUTREACH_PIPELINE_CELERY_QUEUE") or PipelineSettings().celery_queue
    return CelerySettings.of(PipelineSettings(celery_queue=queue))


def wait_for_workers(settings: CelerySettings, names: list[str], processes: list[subprocess.Popen[bytes]],
                     timeout: float = 90) -> None:
    """Until every named worker answers a ping over the broker (so both can take the first steps)."""
    app = worker_app(settings)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            dead = [p.args for p in processes if p.poll() is not None]
            assert not dead, f"a worker exited before it answered: {dead}"
            replies = app.control.ping(destination=names, timeout=1.0) or []
            if {name for reply in replies for name in reply} >= set(names):
                return
        raise AssertionError(f"the Celery workers {names} did not answer within {timeout}s")
    finally:
        app.close()


@pytest.fixture
def celery_workers(tmp_path: Path, postgres_database_url: str) -> Iterator[dict[str, Any]]:
    """Two `outreach-pipeline worker` processes on a fresh queue, with the environment a sync needs.

    The caller fills in the sandbox URLs before starting them (`start(...)`); the finalizer stops every
    process group it started, by id.
    """
    home = tmp_path / "celery_home"
    home.mkdir()
    queue = f"outreach-pipeline-test-{uuid.uuid4().hex[:10]}"
    environment = {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_URL": postgres_database_url,
        "OUTREACH_PIPELINE_LEDGER_URL": postgres_database_url,
        "OUTREACH_PIPELINE_PROFILE": "production",
        "OUTREACH_PIPELINE_EXECUTOR": "celery",
        "OUTREACH_PIPELINE_CELERY_QUEUE": queue,
        # A URL, as an object store would be given; both workers and the orchestrator read and write it.
        "OUTREACH_PIPELINE_WINDOW_STORE": (tmp_path / "shared_windows").as_uri(),
    }
    names = [f"{queue}-{index}" for index in range(WORKERS)]
    processes: list[subprocess.Popen[bytes]] = []
    logs: list[Path] = []

    def start(outreach_url: str, workbooks_url: str) -> dict[str, str]:
        env = {**sandbox_only_environment(os.environ, outreach_url=outreach_url, workbooks_url=workbooks_url),
               **environment}
        for name in names:
            log = tmp_path / f"{name}.log"
            logs.append(log)
            with log.open("wb") as stream:
                processes.append(subprocess.Popen(
                    [CLI, "worker", "--name", name, "--concurrency", "1", "--loglevel", "INFO"],
                    env=env, stdout=stream, stderr=subprocess.STDOUT, start_new_session=True,
                ))
        wait_for_workers(_celery(env), [f"{name}@{os.uname().nodename}" for name in names],
                         processes)
        return env

    try:
        yield {"start": start, "home": home, "names": names, "logs": logs}
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        # The queue is durable: remove it, or every test run would leave one on the shared broker.
        app = worker_app(_celery({"OUTREACH_PIPELINE_CELERY_QUEUE": queue}))
        try:
            with app.connection_for_write() as connection:
                connection.default_channel.queue_delete(queue)
        finally:
            app.close()


@pytest.mark.slow
def test_a_24_window_backfill_on_two_celery_workers_equals_the_in_process_run(
    tmp_path: Path, postgres_database_url: str, celery_workers: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    windows = seeded_windows(1)
    assert len(windows) == 24
    first, last = partition_key(windows[0]), partition_key(windows[-1])

    # The reference: the same command on an identical sandbox, its steps in its own process (the sandbox
    # profile: SQLite instance and ledger). Both syncs run at once; each sandbox counts only its own requests.
    reference_home = tmp_path / "in_process_home"
    reference = start_pinned_sandbox(**SEED)
    sandbox = start_pinned_sandbox(**SEED, faults=SLOW)
    try:
        env = celery_workers["start"](sandbox.outreach_url, sandbox.workbooks_url)
        reference_env = {
            **sandbox_only_environment(os.environ, outreach_url=reference.outreach_url,
                                       workbooks_url=reference.workbooks_url),
            "DAGSTER_HOME": str(reference_home), "OUTREACH_PIPELINE_PROFILE": "sandbox",
            "OUTREACH_PIPELINE_EXECUTOR": "in_process",
        }
        for url in (sandbox.outreach_url, sandbox.workbooks_url):
            requests.post(f"{url}/_sandbox/stats/reset", timeout=10).raise_for_status()
        started = time.monotonic()
        syncs = {name: subprocess.Popen([CLI, "sync", "--from", first, "--to", last], env=sync_env, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for name, sync_env in (("celery", env), ("in_process", reference_env))}
        outputs = {name: process.communicate(timeout=300) for name, process in syncs.items()}
        elapsed = time.monotonic() - started
        worker_logs = "\n".join(log.read_text(errors="replace")[-3000:] for log in celery_workers["logs"])
        for name, process in syncs.items():
            assert process.returncode == 0, f"{name}: {outputs[name]}\n--- workers ---\n{worker_logs}"
        stats = {name: requests.get(f"{url}/_sandbox/stats", timeout=10).json()
                 for name, url in (("outreach", sandbox.outreach_url), ("workbooks", sandbox.workbooks_url))}
        expected_content = workbooks_content(Pipeline(sandbox=reference, instance=None, defs=dg.Definitions()))  # type: ignore[arg-type]
        actual_content = workbooks_content(Pipeline(sandbox=sandbox, instance=None, defs=dg.Definitions()))  # type: ignore[arg-type]
    finally:
        sandbox.stop()
        reference.stop()

    assert sum(len(records) for records in expected_content.values()) > SEED["prospects"]
    expected_ledger = ledger_state(f"sqlite:///{reference_home / 'sync_ledger.db'}")
    assert len(expected_ledger["records"]) > SEED["prospects"]
    differences = content_differences(expected_content, actual_content)
    assert not differences, differences
    ledger_diff = ledger_differences(expected_ledger, ledger_state(postgres_database_url))
    assert not ledger_diff, ledger_diff

    # The run is in the Postgres instance, and its steps ran on both workers.
    monkeypatch.setenv("DAGSTER_PG_URL", postgres_database_url)
    with dg.DagsterInstance.from_config(str(celery_workers["home"])) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        runs = instance.get_runs()
        assert len(runs) == 1 and runs[0].status == dg.DagsterRunStatus.SUCCESS, runs
        run_id = runs[0].run_id
        hosts = {
            str(entry.dagster_event.engine_event_data.metadata["Celery worker"].value)
            for entry in instance.all_logs(run_id)
            if entry.dagster_event and entry.dagster_event.is_engine_event
            and "Celery worker" in (entry.dagster_event.engine_event_data.metadata or {})
        }
        limits = {pool: instance.event_log_storage.get_concurrency_info(pool).slot_count
                  for pool in ("outreach_api", "workbooks_api")}
    assert hosts == {f"{name}@{os.uname().nodename}" for name in celery_workers["names"]}, hosts
    assert f"run {run_id}" in outputs["celery"][0]

    # The pools held across both workers: never more requests in flight per API than the pool's limit.
    peaks = {name: stats[name]["peak_in_flight"] for name in stats}
    assert peaks["outreach"] <= POOL_LIMIT and peaks["workbooks"] <= POOL_LIMIT, (
        f"requests in flight at once per API {peaks} exceed the pool limit {POOL_LIMIT}: a step called an API "
        "without holding that API's pool, or the executor did not honour the pools")
    assert limits == {"outreach_api": POOL_LIMIT, "workbooks_api": POOL_LIMIT}, limits
    print(f"24-window backfills, in process and on Celery at once: {elapsed:.1f}s, peaks {peaks}, requests "
          f"{ {name: stats[name]['total'] for name in stats} }")
