"""`outreach-pipeline auth connect | status | disconnect` end to end: real subprocesses, the sandbox's OAuth
server over HTTP, and a real loopback redirect.

The environment names the sandbox as if it were the real service (app credentials, base URLs, no
OUTREACH_REFRESH_TOKEN), so the sandbox's bootstrap grant is never used: the only grant is the one
`connect` stores.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml

from outreach_pipeline.mapping.models import load_mapping_set
from outreach_pipeline.mapping.scopes import required_scopes
from outreach_pipeline.sandbox.credentials import SANDBOX_API_KEY, SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET
from outreach_pipeline.sandbox.runtime import RunningSandbox
from outreach_pipeline_tests.pipeline.harness import start_pinned_sandbox

CLI = str(Path(sys.executable).with_name("outreach-pipeline"))
DEFAULT_MAPPING = Path(__file__).resolve().parents[2] / "outreach_pipeline" / "mapping" / "default.yaml"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Connection:
    sandbox: RunningSandbox
    home: Path
    redirect_uri: str
    env: dict[str, str]

    def run(self, *args: str, stdin: str | None = None, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CLI, *args], env={**self.env, **extra_env}, input=stdin, capture_output=True,
                              text=True, timeout=240, check=False)

    def token_files(self) -> list[Path]:
        return sorted((self.home / "outreach_tokens").glob("*.json"))

    def connect(self, *extra: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        """`auth connect` with an HTTP client standing in for the browser: it follows the sandbox's
        authorize redirect to the command's loopback listener."""
        process = subprocess.Popen([CLI, "auth", "connect", "--no-browser", *extra],
                                   env={**self.env, **extra_env}, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        try:
            assert process.stderr is not None
            seen = []
            for line in process.stderr:
                seen.append(line)
                if line.startswith("http"):
                    requests.get(line.strip(), timeout=30)
                    break
            stdout, stderr = process.communicate(timeout=60)
        finally:
            process.kill()
        return subprocess.CompletedProcess(process.args, process.returncode, stdout, "".join(seen) + stderr)


@pytest.fixture
def connection(tmp_path: Path) -> Iterator[Connection]:
    redirect_uri = f"http://127.0.0.1:{_free_port()}/oauth/callback"
    sandbox = start_pinned_sandbox(prospects=5, accounts=2, opportunities=1, seed_days=1,
                                   outreach_settings={"redirect_uri": redirect_uri})
    drop = ("OUTREACH_", "WORKBOOKS_", "DAGSTER_HOME")
    env = {name: value for name, value in os.environ.items() if not name.startswith(drop)}
    env |= {
        "DAGSTER_HOME": str(tmp_path),
        "OUTREACH_BASE_URL": sandbox.outreach_url,
        "OUTREACH_CLIENT_ID": SANDBOX_CLIENT_ID,
        "OUTREACH_CLIENT_SECRET": SANDBOX_CLIENT_SECRET,
        "OUTREACH_REDIRECT_URI": redirect_uri,
        "WORKBOOKS_BASE_URL": sandbox.workbooks_url,
        "WORKBOOKS_API_KEY": SANDBOX_API_KEY,
    }
    try:
        yield Connection(sandbox=sandbox, home=tmp_path, redirect_uri=redirect_uri, env=env)
    finally:
        sandbox.stop()


def _stored(connection: Connection) -> dict:
    (path,) = connection.token_files()
    return json.loads(path.read_text())


def _secrets(connection: Connection) -> list[str]:
    stored = _stored(connection)
    return [value for value in (stored["refresh_token"], stored["access_token"], SANDBOX_CLIENT_SECRET) if value]


def test_connect_stores_the_mapping_scopes_with_mode_0600_and_a_sync_then_runs_on_the_grant(
    connection: Connection,
) -> None:
    connected = connection.connect()
    assert connected.returncode == 0, connected.stderr
    (path,) = connection.token_files()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    needed = required_scopes(load_mapping_set())
    assert _stored(connection)["scopes"] == needed  # exactly what the mapping needs, not every scope
    assert "prospects.write" in needed and "prospects.delete" not in needed
    assert f"Granted scopes: {' '.join(needed)}" in connected.stdout

    synced = connection.run("sync", "--windows", "1")
    assert synced.returncode == 0, synced.stdout + synced.stderr
    secrets = _secrets(connection)  # the sync refreshed the grant: these are the newest tokens
    for output in (connected.stdout, connected.stderr, synced.stdout, synced.stderr):
        assert not any(secret in output for secret in secrets)
    # Nor in Dagster's storage (run and event logs, compute logs) or any other file but the token store.
    stored_elsewhere = [
        path for path in connection.home.rglob("*")
        if path.is_file() and "outreach_tokens" not in path.parts
        and any(secret.encode() in path.read_bytes() for secret in secrets)
    ]
    assert stored_elsewhere == []
    assert any(connection.home.rglob("*.db")), "the sync wrote no Dagster storage to search"


def test_status_shows_scopes_and_expiry_and_disconnect_makes_a_sync_ask_for_a_connection(
    connection: Connection,
) -> None:
    assert connection.connect().returncode == 0
    status = connection.run("auth", "status")
    assert status.returncode == 0, status.stderr
    assert "Missing: none" in status.stdout and "Access token expires: 20" in status.stdout
    assert "mode 0600" in status.stdout
    secrets = _secrets(connection)
    assert not any(secret in status.stdout + status.stderr for secret in secrets)

    disconnected = connection.run("auth", "disconnect")
    assert disconnected.returncode == 0 and "Deleted the stored Outreach grant" in disconnected.stdout
    assert connection.token_files() == []
    assert "no stored grant" in connection.run("auth", "status").stdout

    synced = connection.run("sync", "--windows", "1")
    assert synced.returncode != 0
    assert "outreach-pipeline auth connect" in synced.stderr
    assert "Traceback" not in synced.stderr


def test_a_wrong_state_stores_nothing(connection: Connection) -> None:
    forged = f"{connection.redirect_uri}?code=abc&state=not-the-one-we-sent"
    result = connection.run("auth", "connect", "--headless", stdin=forged + "\n")
    assert result.returncode == 1
    assert "state does not match" in result.stderr and "Traceback" not in result.stderr
    assert connection.token_files() == []


def test_a_denied_consent_stores_nothing(connection: Connection) -> None:
    response = requests.post(f"{connection.sandbox.outreach_url}/_sandbox/outreach/settings",
                             json={"consent": "deny"}, timeout=10)
    assert response.status_code == 200, response.text
    result = connection.connect()
    assert result.returncode == 1
    assert "consent was denied" in result.stderr and "Traceback" not in result.stderr
    assert connection.token_files() == []


def test_a_port_in_use_stores_nothing(connection: Connection) -> None:
    port = int(connection.redirect_uri.split(":")[2].split("/")[0])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        result = connection.run("auth", "connect", "--no-browser")
    assert result.returncode == 1
    assert f"port {port}" in result.stderr and "in use" in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 3
    assert connection.token_files() == []


def test_a_grant_without_the_write_scope_fails_preflight_naming_it(connection: Connection, tmp_path: Path) -> None:
    # Connect with a mapping that only reads prospects: the grant holds prospects.read, not .write.
    read_only = yaml.safe_load(DEFAULT_MAPPING.read_text())
    for entity in read_only["entities"].values():
        entity["fields"] = [{**field, "direction": "to_workbooks"} for field in entity["fields"]
                            if field.get("direction") != "to_outreach"]
    # An entity only written to Outreach (Workbooks tasks) has nothing left to read.
    read_only["entities"] = {name: entity for name, entity in read_only["entities"].items() if entity["fields"]}
    mapping_file = tmp_path / "read_only.yaml"
    mapping_file.write_text(yaml.safe_dump(read_only))
    assert connection.connect(OUTREACH_PIPELINE_MAPPING_PATH=str(mapping_file)).returncode == 0
    assert "prospects.write" not in _stored(connection)["scopes"]

    installed = connection.run("install")  # the default mapping writes prospects to Outreach
    assert installed.returncode == 1
    assert "not granted scope prospects.write" in installed.stdout + installed.stderr
