"""The Dagster resources: one Outreach token per run, secrets kept out of repr, no half-real configuration."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import pytest

from outreach_pipeline.defs.resources import (
    ALLOW_MIXED_VARIABLE,
    REAL_SERVICE_VARIABLES,
    LedgerResource,
    OutreachResource,
    ResourceConfigError,
    WorkbooksResource,
    build_resources,
    sandbox_only_environment,
)
from outreach_pipeline.sandbox.outreach.app import create_outreach_app
from outreach_pipeline.sandbox.outreach.settings import OutreachSettings
from outreach_pipeline.sandbox.outreach.store import OutreachStore
from outreach_pipeline.sandbox.server import serve_in_thread

ENVIRONMENT_VARIABLES = (*REAL_SERVICE_VARIABLES, ALLOW_MIXED_VARIABLE, "OUTREACH_BASE_URL", "WORKBOOKS_BASE_URL")
REAL_OUTREACH_ENV = {
    "OUTREACH_CLIENT_ID": "client-4711",
    "OUTREACH_CLIENT_SECRET": "outreach-secret-0815",
    "OUTREACH_REDIRECT_URI": "https://example.test/callback",
    "OUTREACH_REFRESH_TOKEN": "refresh-token-1234",
}


@pytest.fixture
def clean_env(monkeypatch) -> pytest.MonkeyPatch:
    """No service variables from the machine running the tests."""
    for name in ENVIRONMENT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# --------------------------------------------------------------------------- one token per run


@pytest.fixture
def counted_outreach_sandbox() -> Iterator[tuple[str, list[str]]]:
    """The Outreach sandbox over real HTTP; yields its URL and the list of token requests it received."""
    sandbox_app = create_outreach_app(OutreachStore("sqlite://"), OutreachSettings())
    token_requests: list[str] = []

    async def counting(scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] == "/oauth/token":
            token_requests.append(scope["method"])
        await sandbox_app(scope, receive, send)

    with serve_in_thread(counting) as served:
        yield served.url, token_requests


def _reading_asset(name: str) -> dg.AssetsDefinition:
    @dg.asset(name=name)
    def read_prospects(outreach: OutreachResource) -> int:
        with outreach.open() as client:
            return sum(len(page) for page in client.iter_pages("prospects", {"page[size]": 5}))

    return read_prospects


def test_assets_of_one_run_share_one_outreach_token(counted_outreach_sandbox, tmp_path):
    url, token_requests = counted_outreach_sandbox
    token_path = tmp_path / "tokens" / "outreach.json"
    assets = [_reading_asset(f"read_{number}") for number in range(3)]

    result = dg.materialize(
        assets, resources={"outreach": OutreachResource(base_url=url, token_store_path=str(token_path))}
    )

    assert result.success
    assert token_requests == ["POST"]
    content = json.loads(token_path.read_text(encoding="utf-8"))
    assert set(content) == {"refresh_token", "access_token", "access_token_expires_at", "scopes"}
    assert stat.S_IMODE(os.stat(token_path).st_mode) == 0o600


# --------------------------------------------------------------------------- secrets in repr


@pytest.mark.parametrize(
    ("make_resource", "secrets"),
    [
        (lambda: OutreachResource(client_secret="S3CRET", refresh_token="RT0K"), ["S3CRET", "RT0K"]),
        (lambda: WorkbooksResource(api_key="KEY123"), ["KEY123"]),
        (lambda: WorkbooksResource(api_key=None, username="ann", password="PA55W0RD"), ["PA55W0RD"]),
        (lambda: LedgerResource(url="postgresql+psycopg2://u:PASSW@h/db"), ["PASSW"]),
        (lambda: LedgerResource(url="not a url but maybe a secret"), ["maybe a secret"]),
    ],
    ids=["outreach", "workbooks-api-key", "workbooks-login", "ledger-url", "ledger-unparsable"],
)
def test_repr_and_str_never_show_secrets(make_resource: Callable, secrets: list[str]):
    resource = make_resource()
    for text in (repr(resource), str(resource), repr(resource.process_config_and_initialize())):
        assert not [secret for secret in secrets if secret in text], text


def test_masked_repr_keeps_what_is_not_secret():
    assert "client_id='cid'" in repr(OutreachResource(client_id="cid", client_secret="S3CRET"))
    assert "username='ann'" in repr(WorkbooksResource(username="ann", password="PA55W0RD"))
    assert "postgresql+psycopg2://u:***@h/db" in repr(LedgerResource(url="postgresql+psycopg2://u:PASSW@h/db"))


def test_resources_built_from_the_environment_hide_the_resolved_secrets(clean_env):
    for name, value in REAL_OUTREACH_ENV.items():
        clean_env.setenv(name, value)
    clean_env.setenv("WORKBOOKS_API_KEY", "wb-key-5150")
    clean_env.setenv("OUTREACH_PIPELINE_LEDGER_URL", "postgresql+psycopg2://sync:LEDGERPW@db/sync")

    resolved = [resource.process_config_and_initialize() for resource in build_resources().values()]

    text = " ".join(repr(resource) + str(resource) for resource in resolved)
    assert "client-4711" in text  # resolved, so the masking is what hides the rest
    for secret in ("outreach-secret-0815", "refresh-token-1234", "wb-key-5150", "LEDGERPW"):
        assert secret not in text


# --------------------------------------------------------------------------- real and sandbox never mixed


def test_no_credentials_means_both_sandboxes(clean_env):
    resources = build_resources()
    assert resources["outreach"].base_url == "http://127.0.0.1:8701"
    assert resources["workbooks"].base_url == "http://127.0.0.1:8702"


def test_both_real_services_are_accepted(clean_env):
    for name, value in REAL_OUTREACH_ENV.items():
        clean_env.setenv(name, value)
    clean_env.setenv("WORKBOOKS_API_KEY", "wb-key-5150")

    resources = build_resources()

    assert resources["outreach"].base_url == "https://api.outreach.io"
    assert resources["workbooks"].base_url == "https://secure.workbooks.com"


def test_real_workbooks_with_sandbox_outreach_is_refused_naming_the_variables(clean_env):
    clean_env.setenv("WORKBOOKS_API_KEY", "wb-key-5150")

    with pytest.raises(ResourceConfigError) as caught:
        build_resources()

    message = str(caught.value)
    assert "WORKBOOKS_API_KEY set" in message and "OUTREACH_CLIENT_ID" in message
    assert ALLOW_MIXED_VARIABLE in message and "wb-key-5150" not in message


def test_real_outreach_with_sandbox_workbooks_is_refused(clean_env):
    for name, value in REAL_OUTREACH_ENV.items():
        clean_env.setenv(name, value)

    with pytest.raises(ResourceConfigError, match=r"WORKBOOKS_API_KEY .*not set"):
        build_resources()


def test_a_mix_is_allowed_when_asked_for(clean_env):
    clean_env.setenv("WORKBOOKS_USERNAME", "ann")
    clean_env.setenv("WORKBOOKS_PASSWORD", "PA55W0RD")
    clean_env.setenv(ALLOW_MIXED_VARIABLE, "1")

    resources = build_resources()

    assert resources["workbooks"].base_url == "https://secure.workbooks.com"
    assert resources["outreach"].base_url == "http://127.0.0.1:8701"


def test_incomplete_outreach_credentials_name_the_missing_variables(clean_env):
    clean_env.setenv("OUTREACH_CLIENT_ID", "client-4711")
    clean_env.setenv("WORKBOOKS_API_KEY", "wb-key-5150")

    with pytest.raises(ResourceConfigError) as caught:
        build_resources()

    assert str(caught.value) == (
        # The refresh token is optional since `auth connect` stores a grant (issue 12).
        "OUTREACH_CLIENT_SECRET, OUTREACH_REDIRECT_URI must be set too when "
        "OUTREACH_CLIENT_ID is set"
    )


def test_dev_environment_keeps_only_the_sandbox():
    environ = {
        **REAL_OUTREACH_ENV,
        "WORKBOOKS_API_KEY": "wb-key-5150",
        "WORKBOOKS_USERNAME": "ann",
        "WORKBOOKS_PASSWORD": "PA55W0RD",
        "OUTREACH_PIPELINE_LEDGER_URL": "postgresql+psycopg2://sync:LEDGERPW@db/sync",
        ALLOW_MIXED_VARIABLE: "1",
        "OUTREACH_BASE_URL": "https://api.outreach.io",
        "WORKBOOKS_BASE_URL": "https://secure.workbooks.com",
        "PATH": "/usr/bin",
    }

    env = sandbox_only_environment(
        environ, outreach_url="http://127.0.0.1:8701", workbooks_url="http://127.0.0.1:8702"
    )

    assert env == {
        "PATH": "/usr/bin",
        "OUTREACH_BASE_URL": "http://127.0.0.1:8701",
        "WORKBOOKS_BASE_URL": "http://127.0.0.1:8702",
    }


def test_sync_command_refuses_a_mix_with_a_clear_error(tmp_path):
    environ = {name: value for name, value in os.environ.items() if name not in ENVIRONMENT_VARIABLES}
    environ.update({"WORKBOOKS_API_KEY": "wb-key-5150", "DAGSTER_HOME": str(tmp_path)})

    result = subprocess.run(
        [str(Path(sys.executable).with_name("outreach-pipeline")), "sync", "--windows", "1"],
        env=environ, capture_output=True, text=True, timeout=120,
    )

    assert result.returncode == 1
    assert "WORKBOOKS_API_KEY set" in result.stderr and ALLOW_MIXED_VARIABLE in result.stderr
    assert "Traceback" not in result.stderr and "wb-key-5150" not in result.stderr
