"""The executor settings: which executor the jobs get, and the Celery broker, backend and queue."""

import pytest

from outreach_pipeline.defs.scaleout import DEFAULT_BROKER, CelerySettings, job_executor
from outreach_pipeline.settings import ExecutorKind, SettingsError, load_settings


def test_in_process_is_the_default_and_celery_is_chosen_by_name(monkeypatch):
    monkeypatch.delenv("OUTREACH_PIPELINE_EXECUTOR", raising=False)
    assert load_settings().executor is ExecutorKind.IN_PROCESS
    assert job_executor(load_settings()).name == "in_process"
    monkeypatch.setenv("OUTREACH_PIPELINE_EXECUTOR", "celery")
    assert job_executor(load_settings()).name == "celery"


def test_an_unknown_executor_names_the_variable_and_the_choices(monkeypatch):
    monkeypatch.setenv("OUTREACH_PIPELINE_EXECUTOR", "multiprocess")
    with pytest.raises(SettingsError, match=r"OUTREACH_PIPELINE_EXECUTOR: Input should be 'in_process' or 'celery'"):
        load_settings()


def test_celery_settings_default_to_the_local_rabbitmq_and_refuse_odd_queue_names(monkeypatch):
    for name in ("OUTREACH_PIPELINE_CELERY_BROKER", "OUTREACH_PIPELINE_CELERY_BACKEND", "OUTREACH_PIPELINE_CELERY_QUEUE"):
        monkeypatch.delenv(name, raising=False)
    settings = CelerySettings.of(load_settings())
    assert (settings.broker, settings.backend, settings.queue) == (DEFAULT_BROKER, "rpc://", "dagster")
    assert settings.celery_config_source()["task_acks_late"] is True
    monkeypatch.setenv("OUTREACH_PIPELINE_CELERY_QUEUE", "a queue/with spaces")
    with pytest.raises(SettingsError, match="OUTREACH_PIPELINE_CELERY_QUEUE"):
        load_settings()
