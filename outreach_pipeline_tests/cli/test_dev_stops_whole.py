"""`outreach-pipeline dev` stopped by SIGTERM (a service manager, `kill`) takes everything it started with it:
the UI, the daemon, the code servers and a run in progress, as Ctrl-C does. Nothing may outlive it on the ports
or the Dagster home a next start needs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from outreach_pipeline_tests.browser.dev_process import free_port

CLI = str(Path(sys.executable).with_name("outreach-pipeline"))


def _processes_naming(text: str) -> list[int]:
    """Pids of the processes whose command line holds `text` (the test's own directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:  # gone meanwhile
                continue
    return found


def test_sigterm_stops_dev_and_everything_it_started(tmp_path: Path) -> None:
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OUTREACH_", "WORKBOOKS_"))}
    dev = subprocess.Popen(
        [CLI, "dev", "--port", str(port), "--dagster-home", str(tmp_path / "home"), "--data-dir",
         str(tmp_path / "sandbox"), "--outreach-port", "0", "--workbooks-port", "0", "--prospects", "60",
         "--no-simulate"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert dev.poll() is None and time.monotonic() < deadline, "dev did not serve the UI"
            try:
                if requests.get(f"http://127.0.0.1:{port}/server_info", timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(1)
        assert len(_processes_naming(str(tmp_path))) >= 3  # dev, dg dev's UI, daemon and code servers

        dev.send_signal(signal.SIGTERM)  # to dev alone, as `kill` would
        dev.wait(90)
        deadline = time.monotonic() + 10
        while (left := _processes_naming(str(tmp_path))) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not left, f"processes outlived dev: {left}"
    finally:
        for pid in _processes_naming(str(tmp_path)):
            os.kill(pid, signal.SIGKILL)
