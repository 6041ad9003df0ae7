"""Requests of a quiet hourly run on a sandbox holding failed records, per endpoint, three ways.

    .venv/bin/python benchmarks/bench_quiet_run.py

Setup (not counted): the test harness's pinned sandbox (5 prospects, 2 accounts, 2 opportunities seeded on
2026-11-02), two prospects with a 32,768-character title bulk-loaded into the 2026-11-01 12:00 window, and that
window's run, which fails them (they then wait for their retry backoff). Counted, server side on both APIs: the
run of one later, quiet window each

* as before the preflight reuse and the webhook hints (`preflight_max_age_minutes=0`, `webhook_hints=false`);
* with the defaults and no webhook receiver (the preflight is reused);
* with the defaults and a receiver listening over the window and its grace (the Outreach reads are skipped).

BENCHMARKS.md ("Quiet hourly run") records the output with this command.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import SecretStr

from outreach_pipeline.clients.outreach import OutreachClient
from outreach_pipeline.clients.outreach_webhooks import ensure_webhook
from outreach_pipeline.clients.tokens import MemoryTokenStore
from outreach_pipeline.defs.resources import SyncSettings
from outreach_pipeline.engine.ledger import SyncLedger
from outreach_pipeline.engine.webhook_hints import WebhookHints
from outreach_pipeline.sandbox import credentials
from outreach_pipeline.webhook_receiver import WebhookReceiver
from outreach_pipeline_tests.pipeline.harness import (
    WINDOW,
    Pipeline,
    build_definitions,
    outreach_clock_at,
    pipeline,
)

BAD_WINDOW = datetime(2026, 11, 1, 12, tzinfo=UTC)


def _counted(pipe: Pipeline, window: datetime) -> dict[str, dict[str, int]]:
    def snapshot() -> dict[str, dict[str, int]]:
        return {"outreach": pipe.sandbox.outreach_middleware.stats.snapshot()["requests"],
                "workbooks": pipe.sandbox.workbooks_middleware.stats.snapshot()["requests"]}

    before = snapshot()
    assert pipe.run(window, raise_on_error=False).success
    after = snapshot()
    return {api: {endpoint: count - before[api].get(endpoint, 0) for endpoint, count in after[api].items()
                  if count > before[api].get(endpoint, 0)} for api in after}


def _print(name: str, counted: dict[str, dict[str, int]]) -> None:
    total = sum(sum(endpoints.values()) for endpoints in counted.values())
    print(f"\n{name}: {total} requests")
    for api, endpoints in counted.items():
        for endpoint, count in sorted(endpoints.items()):
            print(f"  {api:9} {count} x {endpoint}")


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="bench_quiet_run_"))
    with pipeline(home, sync_settings=SyncSettings(), prospects=5, accounts=2, opportunities=2, seed_days=1) as pipe:
        with outreach_clock_at(pipe.sandbox, BAD_WINDOW + timedelta(minutes=5)):
            pipe.sandbox.outreach_store.bulk_insert("prospect", [
                {"attributes": {"firstName": "Bad", "lastName": str(n), "title": "T" * 32_768,
                                "emails": [f"bad.{n}@bad.example"]}, "relationships": {}} for n in (1, 2)])
        assert pipe.run(BAD_WINDOW, raise_on_error=False).success
        assert pipe.ledger_url is not None
        as_before = Pipeline(pipe.sandbox, pipe.instance, build_definitions(
            pipe.sandbox, home, pipe.ledger_url, SyncSettings(preflight_max_age_minutes=0, webhook_hints=False)),
            pipe.ledger_url)
        _print("as before (preflight every run, no hints)", _counted(as_before, BAD_WINDOW + WINDOW))
        _print("defaults, no webhook receiver", _counted(pipe, BAD_WINDOW + 2 * WINDOW))

        ledger = SyncLedger(pipe.ledger_url)
        client = OutreachClient(pipe.sandbox.outreach_url, client_id=credentials.SANDBOX_CLIENT_ID,
                                client_secret=credentials.SANDBOX_CLIENT_SECRET,
                                redirect_uri=credentials.SANDBOX_REDIRECT_URI,
                                refresh_token=credentials.SANDBOX_REFRESH_TOKEN, token_store=MemoryTokenStore())
        window = BAD_WINDOW + 3 * WINDOW
        now = [window - timedelta(minutes=1)]
        receiver = WebhookReceiver(WebhookHints(ledger.engine), subscribe=lambda url, s: ensure_webhook(client, url, s),
                                   secret=SecretStr("bench"), heartbeat_seconds=0, clock=lambda: now[0]).start()
        try:
            now[0] = window + WINDOW + timedelta(minutes=3)
            receiver.beat()
            _print("defaults, webhook receiver listening", _counted(pipe, window))
        finally:
            receiver.stop()
            client.close()
            ledger.dispose()


if __name__ == "__main__":
    main()
