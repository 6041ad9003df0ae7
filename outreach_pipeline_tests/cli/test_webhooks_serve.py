"""`outreach-pipeline webhooks serve`: the receiver as its own process, against a sandbox, over real HTTP.

It registers its webhook, records a listening span and a hint per delivery in the ledger under DAGSTER_HOME,
never prints the secret, and stops on Ctrl-C with exit code 0.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import sqlalchemy as sa

from outreach_pipeline.sandbox.outreach.store import StoreQuery
from outreach_pipeline.sandbox.runtime import SandboxConfig, start_sandbox

CLI = str(Path(sys.executable).with_name("outreach-pipeline"))
SECRET = "serve-test-secret-value"


def test_serve_subscribes_records_hints_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    with start_sandbox(SandboxConfig(data_dir=None, outreach_port=0, workbooks_port=0, prospects=3)) as sandbox:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("OUTREACH_", "WORKBOOKS_"))}
        env |= {"DAGSTER_HOME": str(tmp_path), "OUTREACH_BASE_URL": sandbox.outreach_url,
                "OUTREACH_PIPELINE_WEBHOOK_RECEIVER_PORT": "0", "OUTREACH_PIPELINE_WEBHOOK_SECRET": SECRET,
                "OUTREACH_PIPELINE_WEBHOOK_HEARTBEAT_SECONDS": "0.5"}
        serve = subprocess.Popen([CLI, "webhooks", "serve"], env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
        try:
            deadline = time.monotonic() + 60
            while not (hooks := sandbox.outreach_store.query("webhook", StoreQuery(limit=10))):
                assert serve.poll() is None and time.monotonic() < deadline, "serve registered no webhook"
                time.sleep(0.3)
            (hook,) = hooks
            assert hook.attributes["url"].startswith("http://127.0.0.1:") and hook.attributes["secret"] == SECRET
            time.sleep(1)  # a heartbeat or two
            sandbox.outreach_store.update("prospect", 1, {"title": "Delivered"})
            assert sandbox.webhooks is not None and sandbox.webhooks.wait_idle(10)
        finally:
            serve.send_signal(signal.SIGINT)
            output, _ = serve.communicate(timeout=30)
        assert serve.returncode == 0, output
        assert "listening on http://127.0.0.1:" in output and "webhook receiver stopped" in output
        assert SECRET not in output
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'sync_ledger.db'}")
    try:
        with engine.connect() as conn:
            hints = conn.execute(sa.text("SELECT resource_type, count FROM sync_webhook_hint")).all()
            spans = conn.execute(sa.text(
                "SELECT resource, action, listening_from, listening_until FROM sync_webhook_listening")).all()
    finally:
        engine.dispose()
    assert [tuple(row) for row in hints] == [("prospect", 1)]
    ((resource, action, listening_from, listening_until),) = spans
    assert (resource, action) == ("*", "*") and listening_until > listening_from
