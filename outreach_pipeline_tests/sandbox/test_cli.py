"""`outreach-pipeline sandbox up/reset`, run as the real console script in a subprocess."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests

from outreach_pipeline_tests.sandbox.conftest import (
    HTTP_TIMEOUT,
    create_prospect,
    prospects_named,
    workbooks_call,
)

CONSOLE_SCRIPT = Path(sys.executable).with_name("outreach-pipeline")
START_TIMEOUT_SECONDS = 30
STOP_TIMEOUT_SECONDS = 5


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CONSOLE_SCRIPT), *args], capture_output=True, text=True, timeout=START_TIMEOUT_SECONDS
    )


@contextmanager
def sandbox_up(data_dir: Path, prospects: int = 50) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    """Start `sandbox up --json` on any free ports; yield the process and the JSON line it printed.

    The caller stops it (SIGINT) and checks the exit; on the way out a process still running is killed,
    so a failing test never leaves a server behind.
    """
    command = [
        str(CONSOLE_SCRIPT), "sandbox", "up", "--json", "--outreach-port", "0", "--workbooks-port", "0",
        "--data-dir", str(data_dir), "--prospects", str(prospects),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            line = pool.submit(process.stdout.readline).result(timeout=START_TIMEOUT_SECONDS)  # type: ignore[union-attr]
        assert line, f"sandbox up printed nothing; stderr: {process.stderr.read()}"  # type: ignore[union-attr]
        yield process, json.loads(line)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def stop_with_sigint(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGINT)
    return process.wait(timeout=STOP_TIMEOUT_SECONDS)


def outreach_session(info: dict[str, Any]) -> requests.Session:
    """Authenticate with exactly the credentials `sandbox up` printed."""
    outreach = info["outreach"]
    grant = requests.post(
        f"{outreach['url']}/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": outreach["refresh_token"],
            "client_id": outreach["client_id"],
            "client_secret": outreach["client_secret"],
        },
        timeout=HTTP_TIMEOUT,
    )
    assert grant.status_code == 200, grant.text
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {grant.json()['access_token']}"
    return session


def test_up_prints_working_credentials_and_stops_on_sigint(tmp_path: Path) -> None:
    data_dir = tmp_path / "sandbox-data"
    with sandbox_up(data_dir) as (process, info):
        for api in ("outreach", "workbooks"):
            port = urlsplit(info[api]["url"]).port
            assert port and port > 0
        assert info["seeded"]["outreach"]["prospect"] == 52  # 50 asked for, plus two length-limit edge cases
        session = outreach_session(info)
        listed = session.get(
            f"{info['outreach']['url']}/api/v2/prospects", params={"count": "true"}, timeout=HTTP_TIMEOUT
        )
        assert listed.status_code == 200 and listed.json()["meta"]["count"] == 52
        login = requests.post(
            f"{info['workbooks']['url']}/login.api",
            data={
                "client": "api",
                "username": info["workbooks"]["username"],
                "password": info["workbooks"]["password"],
            },
            timeout=HTTP_TIMEOUT,
        )
        assert login.status_code == 200 and login.json()["success"] is True
        people = workbooks_call(
            info["workbooks"]["url"], "crm/people", "GET", [("_start", "0"), ("_limit", "1")]
        )
        assert people.status_code == 200 and people.json()["total"] == info["seeded"]["workbooks"]["people"]
        assert requests.get(info["admin"]["outreach"], timeout=HTTP_TIMEOUT).json()["total"] >= 1
        assert stop_with_sigint(process) == 0
    assert (data_dir / "outreach.db").is_file() and (data_dir / "workbooks.db").is_file()


def test_second_up_keeps_the_data_and_does_not_reseed_then_reset_removes_it(tmp_path: Path) -> None:
    data_dir = tmp_path / "kept"
    with sandbox_up(data_dir, prospects=20) as (process, info):
        assert info["seeded"]
        created = create_prospect(outreach_session(info), info["outreach"]["url"], "Survivor")
        assert created.status_code == 201
        assert stop_with_sigint(process) == 0
    with sandbox_up(data_dir, prospects=20) as (process, info):
        assert info["seeded"] == {}
        assert len(prospects_named(outreach_session(info), info["outreach"]["url"], "Survivor")) == 1
        assert stop_with_sigint(process) == 0

    reset = run_cli("sandbox", "reset", "--data-dir", str(data_dir))
    assert reset.returncode == 0 and f"removed {data_dir}" in reset.stdout
    assert not data_dir.exists()
    again = run_cli("sandbox", "reset", "--data-dir", str(data_dir))
    assert again.returncode == 0 and "nothing to remove" in again.stdout


def test_bad_faults_spec_exits_non_zero_with_a_clear_message(tmp_path: Path) -> None:
    data_dir = tmp_path / "never-created"
    result = run_cli(
        "sandbox", "up", "--json", "--outreach-port", "0", "--workbooks-port", "0",
        "--data-dir", str(data_dir), "--faults", "rate_limit:count=2,explode:rate=1",
    )  # fmt: skip
    assert result.returncode != 0
    assert "Invalid value for '--faults'" in result.stderr and "explode" in result.stderr
    assert result.stdout == "" and not data_dir.exists()


@contextmanager
def _taken_port() -> Iterator[int]:
    """A loopback port another process (this one) listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def _one_line_naming(result: subprocess.CompletedProcess[str], port: int, option: str) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"port {port}" in lines[0] and "already in use" in lines[0] and option in lines[0], lines[0]
    return lines[0]


def test_a_taken_port_is_one_line_naming_the_port_and_the_option(tmp_path: Path) -> None:
    with _taken_port() as port:
        up = run_cli("sandbox", "up", "--outreach-port", "0", "--workbooks-port", str(port),
                     "--data-dir", str(tmp_path / "up"), "--prospects", "5")
        assert "Workbooks sandbox" in _one_line_naming(up, port, "--workbooks-port")

        # `dev` moves both sandboxes and the UI; each taken port stops it before anything starts.
        dev = ("dev", "--dagster-home", str(tmp_path / "home"), "--data-dir", str(tmp_path / "dev"),
               "--prospects", "5", "--no-simulate")
        taken_outreach = run_cli(*dev, "--outreach-port", str(port), "--workbooks-port", "0")
        assert "Outreach sandbox" in _one_line_naming(taken_outreach, port, "--outreach-port")
        taken_ui = run_cli(*dev, "--port", str(port), "--outreach-port", "0", "--workbooks-port", "0")
        assert "Dagster UI" in _one_line_naming(taken_ui, port, "--port")
