"""The executor settings: which executor the jobs get, and the Celery broker, backend and queue."""

import pytest

from outreach_pipeline.defs.scaleout import (
    DEFAULT_BROKER,
    CelerySettings,
    ExecutorKind,
    ExecutorSettingError,
    executor_kind,
    job_executor,
)


def test_in_process_is_the_default_and_celery_is_chosen_by_name():
    assert executor_kind({}) is ExecutorKind.IN_PROCESS
    assert job_executor({}).name == "in_process"
    assert job_executor({"OUTREACH_PIPELINE_EXECUTOR": "celery"}).name == "celery"


def test_an_unknown_executor_names_the_variable_and_the_choices():
    with pytest.raises(ExecutorSettingError, match=r"OUTREACH_PIPELINE_EXECUTOR='multiprocess' .* in_process or celery"):
        executor_kind({"OUTREACH_PIPELINE_EXECUTOR": "multiprocess"})


def test_celery_settings_default_to_the_local_rabbitmq_and_refuse_odd_queue_names():
    settings = CelerySettings.from_env({})
    assert (settings.broker, settings.backend, settings.queue) == (DEFAULT_BROKER, "rpc://", "dagster")
    assert settings.celery_config_source()["task_acks_late"] is True
    with pytest.raises(ExecutorSettingError, match="OUTREACH_PIPELINE_CELERY_QUEUE"):
        CelerySettings.from_env({"OUTREACH_PIPELINE_CELERY_QUEUE": "a queue/with spaces"})
