"""Where a run's steps execute: in the run's own process (the default) or on Celery workers over RabbitMQ.

Rules:
* The executor is a setting (`executor`: `in_process` or `celery`, `OUTREACH_PIPELINE_EXECUTOR`), read when the
  code location loads, so `outreach-pipeline sync`, `dagster dev` and the workers agree on it.
* A Celery worker loads the code location from its module (`outreach_pipeline.definitions`) with its own
  environment. Every worker therefore needs the settings of the process that launches the run: the services'
  variables, `OUTREACH_PIPELINE_LEDGER_URL`, the instance's (`DAGSTER_HOME`, `DAGSTER_PG_URL`) and a window
  store every worker reaches (`OUTREACH_PIPELINE_WINDOW_STORE`).
* API concurrency across workers comes from Dagster's pools, not from Celery: the celery executor claims a
  pool slot in the instance's storage before it submits a step and frees it when the step's result comes
  back (`dagster_celery.core_execution_loop` runs `InstanceConcurrencyContext`), so the instance's
  `pools: default_limit: 1` holds across workers, runs and machines as long as they share the instance.
* Deployments sharing a broker stay apart by queue (`OUTREACH_PIPELINE_CELERY_QUEUE`): the executor sends
  steps to it and `outreach-pipeline worker` listens on it.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dagster as dg

from outreach_pipeline.settings import ExecutorKind, PipelineSettings

BROKER_VARIABLE = PipelineSettings.variable("celery_broker")
BACKEND_VARIABLE = PipelineSettings.variable("celery_backend")
#: RabbitMQ's own default account, which RabbitMQ only accepts from loopback: not a secret.
DEFAULT_BROKER = "pyamqp://guest:guest@127.0.0.1:5672//"
#: Step results travel back over the broker (one reply queue per orchestrating process).
DEFAULT_BACKEND = "rpc://"
#: The module and attribute workers load the code location from.
CODE_LOCATION = ("outreach_pipeline.definitions", "defs")


@dataclass(frozen=True)
class CelerySettings:
    broker: str
    backend: str
    queue: str

    @classmethod
    def of(cls, settings: PipelineSettings) -> CelerySettings:
        return cls(
            broker=settings.celery_broker.get_secret_value() if settings.celery_broker else DEFAULT_BROKER,
            backend=settings.celery_backend.get_secret_value() if settings.celery_backend else DEFAULT_BACKEND,
            queue=settings.celery_queue,
        )

    def celery_config_source(self) -> dict[str, Any]:
        """Celery settings beyond broker and backend (merged over dagster_celery's defaults)."""
        # A step is acknowledged when it ends, not when it starts, so a busy worker holds no second step
        # while an idle one waits (with early acks even a prefetch of one reserves the next message).
        # RabbitMQ's consumer_timeout must therefore exceed the longest step (docs/PRODUCTION.md).
        return {"task_default_queue": self.queue, "worker_prefetch_multiplier": 1, "task_acks_late": True}


def job_executor(settings: PipelineSettings) -> dg.ExecutorDefinition:
    """The executor the jobs use: Dagster's in-process one, or `dagster_celery.celery_executor`.

    The broker URL may carry a password, so when it is set it reaches the executor's config as an
    environment reference (resolved where the run starts), never as a literal in the run's config.
    """
    if settings.executor is ExecutorKind.IN_PROCESS:
        return dg.in_process_executor
    from dagster_celery import celery_executor

    return celery_executor.configured(
        {
            "broker": {"env": BROKER_VARIABLE} if settings.celery_broker else DEFAULT_BROKER,
            "backend": {"env": BACKEND_VARIABLE} if settings.celery_backend else DEFAULT_BACKEND,
            "config_source": CelerySettings.of(settings).celery_config_source(),
        },
        name="celery",
    )


def reconstructable_job(job_name: str) -> Any:
    """The job as Celery workers rebuild it: by module and attribute, not by object."""
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    module, attribute = CODE_LOCATION
    return ReconstructableRepository.for_module(module, attribute, working_directory=os.getcwd()) \
        .get_reconstructable_job(job_name)


def execute_sync_job(
    defs: dg.Definitions,
    job_name: str,
    *,
    executor: ExecutorKind,
    instance: dg.DagsterInstance,
    tags: Mapping[str, str],
    run_config: Mapping[str, Any],
    run_id: str | None = None,
    hooks: frozenset[dg.HookDefinition] = frozenset(),
) -> dg.ExecuteInProcessResult | dg.JobExecutionResult:
    """Run a job once in this process as its orchestrator; with Celery, its steps run on the workers.

    `defs` serves the in-process executor; with Celery, this process and the workers both load the code
    location from its module, since the workers cannot be handed Python objects.
    """
    if executor is ExecutorKind.IN_PROCESS:
        job = defs.resolve_job_def(job_name)
        return execute_in_process_uncaptured(
            job.with_hooks(set(hooks)) if hooks else job, instance=instance, run_id=run_id, tags=tags,
            run_config=run_config,
        )
    # Events and materialisations are read off the result; only outputs would need it opened as a context.
    return dg.execute_job(
        reconstructable_job(job_name), instance=instance, tags=dict(tags), run_config=dict(run_config),
        raise_on_error=False,
    )


def execute_in_process_uncaptured(
    job: dg.JobDefinition,
    *,
    instance: dg.DagsterInstance,
    tags: Mapping[str, str],
    run_config: Mapping[str, Any],
    run_id: str | None = None,
) -> dg.ExecuteInProcessResult:
    """`job.execute_in_process(..., raise_on_error=False)`, without holding every step's output until the run ends.

    Dagster's `execute_in_process` keeps each output value in memory for `result.output_for_node`: a ranged run
    held every DataFrame it produced (every entity's extract, staged frame and outcomes over the whole range) at
    once, so its memory grew with the range. A run launched by the daemon or the UI keeps none; the sync reads only
    events off the result, so it keeps none either. The same Dagster calls as `execute_in_process` (1.13), with
    output capture off; `output_for_node` of the result is therefore empty.
    """
    from dagster._core.definitions.job_base import InMemoryJob
    from dagster._core.execution.execute_in_process import core_execute_in_process, merge_run_tags

    ephemeral = job.as_ephemeral_job(resource_defs={}, input_values={})
    return core_execute_in_process(
        job=InMemoryJob(job_def=ephemeral), run_config=dict(run_config), instance=instance,
        output_capturing_enabled=False, raise_on_error=False, run_id=run_id,
        run_tags=merge_run_tags(job_def=job, partition_key=None, tags=dict(tags), asset_selection=None,
                                instance=instance, run_config=dict(run_config)),
    )


def worker_app(settings: CelerySettings) -> Any:
    """The Celery app a worker serves: dagster_celery's step task, our broker, backend and queue."""
    from dagster_celery.executor import CeleryExecutor
    from dagster_celery.make_app import make_app
    from dagster_celery.tasks import create_task

    app = make_app(CeleryExecutor.for_cli(
        broker=settings.broker, backend=settings.backend, config_source=settings.celery_config_source()
    ).app_args())
    create_task(app)
    return app


def run_worker(settings: CelerySettings, *, concurrency: int, name: str, loglevel: str = "INFO") -> None:
    """Serve steps from the queue until stopped (SIGTERM finishes the running step first, as Celery does).

    The code location is imported before the worker forks its pool: an environment that cannot build it
    (mixed or incomplete credentials, a bad setting) stops the worker at once with that message rather than
    failing each step, and the pool's processes start with it loaded.
    """
    importlib.import_module(CODE_LOCATION[0])
    worker_app(settings).worker_main([
        "worker", "--queues", settings.queue, "--concurrency", str(concurrency), "--prefetch-multiplier", "1",
        "--hostname", f"{name}@%h", "--loglevel", loglevel, "--without-gossip", "--without-mingle",
    ])
