"""Acceptance: Outreach webhooks as change hints, over real HTTP (sandbox deliveries -> our receiver -> ledger).

One sandbox holding failed records (test_failures_audit's planted bad records), one receiver, one sequence of
hourly runs on 2026-11-01, each window with its own story:

* 12:00, before any receiver: the bad records fail (and wait for their retry backoff afterwards);
* 13:00, listened through, nothing changed: the quiet run makes no Outreach request at all;
* 14:00, a prospect edited through the API: delivered, hinted, read and synced; the other reads are skipped;
* 15:00, the receiver down for part of the window while a prospect changes (the delivery fails and is dropped):
  the gap makes the run read anyway and sync the change;
* 16:00, deliveries dropped by the sandbox's switch while listening: the run believes the window quiet, and the
  next sweep window (2026-11-02 00:00) reads back a day and syncs the change.

The receiver's clock is moved by the test (as the sandbox's is), and it beats only when told.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import ClassVar

import dagster as dg
import pytest
import requests
from pydantic import SecretStr

from outreach_pipeline.clients.outreach import OutreachClient
from outreach_pipeline.clients.outreach_webhooks import ensure_webhook, list_webhooks
from outreach_pipeline.clients.tokens import MemoryTokenStore
from outreach_pipeline.defs.resources import SyncSettings
from outreach_pipeline.engine.ledger import SyncLedger
from outreach_pipeline.engine.webhook_hints import ReadReason, WebhookHints
from outreach_pipeline.sandbox import credentials
from outreach_pipeline.sandbox.outreach.webhooks import SIGNATURE_HEADER, sign
from outreach_pipeline.webhook_receiver import DELIVERY_PATH, WebhookReceiver
from outreach_pipeline_tests.pipeline.harness import (
    WINDOW,
    Pipeline,
    outreach_clock_at,
    pipeline,
    step_failures,
)
from outreach_pipeline_tests.pipeline.test_failures_audit import BAD_WINDOW, _plant

W = {hour: BAD_WINDOW + WINDOW * (hour - 12) for hour in (12, 13, 14, 15, 16)}
SWEEP = datetime(2026, 11, 2, tzinfo=UTC)
GRACE = timedelta(minutes=3)  # past the 2-minute default grace
EXTRACT_KEYS = {name: dg.AssetKey(["outreach", name]).to_python_identifier()
                for name in ("accounts", "prospects", "opportunities", "tasks", "calls", "sequences", "sequenceStates")}


class Clock:
    """The receiver's clock, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Hinted:
    pipe: Pipeline
    ledger: SyncLedger
    client: OutreachClient
    receiver: WebhookReceiver
    ids: dict[str, int]
    results: dict[str, dg.ExecuteInProcessResult] = field(default_factory=dict)
    requests: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)  # run -> API -> endpoint -> count
    titles: dict[str, str] = field(default_factory=dict)


def _snapshot(pipe: Pipeline) -> dict[str, dict[str, int]]:
    return {"outreach": pipe.sandbox.outreach_middleware.stats.snapshot()["requests"],
            "workbooks": pipe.sandbox.workbooks_middleware.stats.snapshot()["requests"]}


def _run(hinted: Hinted, name: str, window: datetime, *, whole_job: bool = False) -> dg.ExecuteInProcessResult:
    """One run over `window`: the scheduled job's steps for accounts, prospects and opportunities (what the
    stories change), or the whole job (the quiet run's request count is the whole job's)."""
    before = _snapshot(hinted.pipe)
    selection = None if whole_job else hinted.pipe.core_selection()
    result = hinted.pipe.run(window, raise_on_error=False, asset_selection=selection)
    after = _snapshot(hinted.pipe)
    assert result.success, step_failures(result)
    hinted.results[name] = result
    hinted.requests[name] = {api: {endpoint: count - before[api].get(endpoint, 0)
                                   for endpoint, count in after[api].items() if count - before[api].get(endpoint, 0)}
                             for api in after}
    return result


def _receiver(hints: WebhookHints, client: OutreachClient, clock: Clock, port: int = 0) -> WebhookReceiver:
    return WebhookReceiver(hints, subscribe=lambda url, secret: ensure_webhook(client, url, secret), port=port,
                           secret=SecretStr("test-secret"), heartbeat_seconds=0, clock=clock).start()


def _edit_title(hinted: Hinted, at: datetime, title: str) -> None:
    with outreach_clock_at(hinted.pipe.sandbox, at):
        hinted.client.update("prospects", hinted.ids["good_prospect"], {"title": title})
    assert hinted.pipe.sandbox.webhooks is not None and hinted.pipe.sandbox.webhooks.wait_idle(10)


def _beat_at(hinted: Hinted, clock: Clock, moment: datetime) -> None:
    clock.now = moment
    hinted.receiver.beat()


@pytest.fixture(scope="module")
def hinted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hinted]:
    home: Path = tmp_path_factory.mktemp("webhook_hints")
    fast_retries = {"webhook_retry_delay_seconds": 0.05, "webhook_delivery_attempts": 2}
    with pipeline(home, sync_settings=SyncSettings(), prospects=5, accounts=2, opportunities=2, seed_days=1,
                  outreach_settings=fast_retries) as pipe:
        with outreach_clock_at(pipe.sandbox, W[12] + timedelta(minutes=5)):
            ids = _plant(pipe)  # legacy rows (bulk-loaded, never delivered) that fail validation
        assert pipe.ledger_url is not None
        ledger = SyncLedger(pipe.ledger_url)
        client = OutreachClient(pipe.sandbox.outreach_url, client_id=credentials.SANDBOX_CLIENT_ID,
                                client_secret=credentials.SANDBOX_CLIENT_SECRET,
                                redirect_uri=credentials.SANDBOX_REDIRECT_URI,
                                refresh_token=credentials.SANDBOX_REFRESH_TOKEN, token_store=MemoryTokenStore())
        hints, clock = WebhookHints(ledger.engine), Clock(W[13] - timedelta(minutes=1))
        hinted = Hinted(pipe, ledger, client, None, ids)  # type: ignore[arg-type]
        try:
            _run(hinted, "failing", W[12])  # no receiver yet: reads as always, the bad records fail
            hinted.receiver = _receiver(hints, client, clock)
            _beat_at(hinted, clock, W[14] + GRACE)
            _run(hinted, "quiet", W[13], whole_job=True)

            hinted.titles["hinted"] = "Head of Hints"
            _edit_title(hinted, W[14] + timedelta(minutes=20), hinted.titles["hinted"])
            _beat_at(hinted, clock, W[15] + timedelta(minutes=10))
            _run(hinted, "hinted", W[14])

            port = hinted.receiver.server.server_address[1]
            hinted.receiver.stop()  # down from 15:10: the next delivery fails and is dropped
            hinted.titles["gap"] = "Head of Gaps"
            _edit_title(hinted, W[15] + timedelta(minutes=30), hinted.titles["gap"])
            clock.now = W[15] + timedelta(minutes=40)
            hinted.receiver = _receiver(hints, client, clock, port)
            _beat_at(hinted, clock, W[16] + GRACE)
            _run(hinted, "gap", W[15])

            requests.post(f"{pipe.sandbox.outreach_url}/_sandbox/outreach/settings",
                          json={"webhook_deliveries_dropped": True}, timeout=5).raise_for_status()
            hinted.titles["lost"] = "Head of Lost Deliveries"
            _edit_title(hinted, W[16] + timedelta(minutes=20), hinted.titles["lost"])
            requests.post(f"{pipe.sandbox.outreach_url}/_sandbox/outreach/settings",
                          json={"webhook_deliveries_dropped": False}, timeout=5).raise_for_status()
            _beat_at(hinted, clock, W[16] + WINDOW + GRACE)
            _run(hinted, "lost", W[16])
            _run(hinted, "sweep", SWEEP)
            yield hinted
        finally:
            if hinted.receiver is not None:
                hinted.receiver.stop()
            client.close()
            ledger.dispose()


def _extract_metadata(result: dg.ExecuteInProcessResult, name: str) -> dict[str, object]:
    return {key: value.value for key, value in
            result.asset_materializations_for_node(EXTRACT_KEYS[name])[0].metadata.items()}


def _person_title(hinted: Hinted) -> str | None:
    rows = hinted.pipe.synced_rows("prospects")
    return rows[hinted.ids["good_prospect"]].get("person_job_title")


def test_a_quiet_run_with_the_receiver_up_makes_at_most_5_requests(hinted: Hinted) -> None:
    quiet = hinted.requests["quiet"]
    print(f"quiet run requests per endpoint: {quiet}")
    assert quiet["outreach"] == {}
    assert sum(quiet["workbooks"].values()) <= 5
    prospects = _extract_metadata(hinted.results["quiet"], "prospects")
    assert prospects["window_read"] == ReadReason.QUIET
    assert prospects["reads_skipped_quiet_by_webhook"] == 1
    assert _extract_metadata(hinted.results["quiet"], "opportunities")["reads_skipped_quiet_by_webhook"] == 2
    # The sandbox holds failed records, and they wait for their backoff as before.
    assert prospects["range_failed_waiting_for_retry"] == 4
    assert len(hinted.ledger.failures()) == 6


def test_a_change_in_the_window_is_delivered_hinted_and_synced(hinted: Hinted) -> None:
    result = hinted.results["hinted"]
    assert _extract_metadata(result, "prospects")["window_read"] == ReadReason.HINTED
    assert _extract_metadata(result, "accounts")["window_read"] == ReadReason.QUIET
    assert WebhookHints(hinted.ledger.engine).hint_counts("prospect").get(W[14]) == 1
    assert set(hinted.requests["hinted"]["outreach"]) == {"GET /api/v2/prospects"}
    # Synced: the later runs wrote later titles, so the history holds this one.
    history = hinted.ledger.history("prospects", hinted.ids["good_prospect"])
    assert any(hinted.titles["hinted"] in str(row) for row in history)


def test_a_delivery_lost_while_the_receiver_was_down_is_read_anyway(hinted: Hinted) -> None:
    stats = requests.get(f"{hinted.pipe.sandbox.outreach_url}/_sandbox/stats", timeout=5).json()["webhooks"]
    assert stats["dropped"] >= 1 and stats["failed_attempts"] >= 2, stats
    assert WebhookHints(hinted.ledger.engine).hint_counts("prospect").get(W[15]) is None
    result = hinted.results["gap"]
    assert _extract_metadata(result, "prospects")["window_read"] == ReadReason.NOT_LISTENING
    assert "GET /api/v2/prospects" in hinted.requests["gap"]["outreach"]
    history = hinted.ledger.history("prospects", hinted.ids["good_prospect"])
    assert any(hinted.titles["gap"] in str(row) for row in history)


def test_deliveries_outreach_never_made_are_caught_by_the_next_sweep(hinted: Hinted) -> None:
    stats = requests.get(f"{hinted.pipe.sandbox.outreach_url}/_sandbox/stats", timeout=5).json()["webhooks"]
    assert stats["dropped_by_switch"] >= 1, stats
    assert _extract_metadata(hinted.results["lost"], "prospects")["window_read"] == ReadReason.QUIET
    sweep = _extract_metadata(hinted.results["sweep"], "prospects")
    assert sweep["window_read"] == ReadReason.SWEEP
    assert sweep["window_read_from"] == (SWEEP - timedelta(hours=23)).isoformat()
    assert _person_title(hinted) == hinted.titles["lost"]


def test_a_bad_signature_is_refused_and_records_nothing(hinted: Hinted) -> None:
    hints = WebhookHints(hinted.ledger.engine)
    before = hints.hint_counts("account")
    body = json.dumps({"data": {"type": "account", "id": 1, "attributes": {"updatedAt": "2026-11-01T13:30:00Z"}},
                       "meta": {"eventName": "account.updated"}}).encode()
    url = hinted.receiver.public_url
    for signature in (sign("not-the-secret", body), None):
        headers = {"Content-Type": "application/json", **({SIGNATURE_HEADER: signature} if signature else {})}
        assert requests.post(url, data=body, headers=headers, timeout=5).status_code == 401
    assert hints.hint_counts("account") == before
    signed = {"Content-Type": "application/json", SIGNATURE_HEADER: sign("test-secret", body)}
    assert requests.post(url, data=body, headers=signed, timeout=5).status_code == 204
    assert hints.hint_counts("account")[W[13]] == before.get(W[13], 0) + 1


class _Capture(BaseHTTPRequestHandler):
    bodies: ClassVar[list[tuple[str | None, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).bodies.append((self.headers.get(SIGNATURE_HEADER), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


def test_the_sandbox_webhook_api_answers_as_published(hinted: Hinted) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Capture)
    Thread(target=server.serve_forever, daemon=True).start()
    client, url = hinted.client, f"http://127.0.0.1:{server.server_address[1]}{DELIVERY_PATH}"
    try:
        created = client.create("webhooks", {"url": url, "secret": "capture-secret", "resource": "account",
                                             "action": "updated"})
        assert created.attributes["active"] is True and created.attributes.get("secret") is None  # never shown
        assert {hook.url for hook in list_webhooks(client)} == {url, hinted.receiver.public_url}
        again = ensure_webhook(client, url, SecretStr("capture-secret"), resource="account", action="updated")
        assert again.id == created.id  # reused by url, not duplicated
        client.create("accounts", {"name": "Not delivered (a create)"})
        account = client.create("accounts", {"name": "Delivered"})
        client.update("accounts", account.id, {"name": "Delivered again"})
        assert hinted.pipe.sandbox.webhooks is not None and hinted.pipe.sandbox.webhooks.wait_idle(10)
        assert len(_Capture.bodies) == 1
        signature, body = _Capture.bodies[0]
        assert signature == sign("capture-secret", body)
        payload = json.loads(body)
        assert payload["meta"]["eventName"] == "account.updated"
        assert payload["data"]["attributes"]["name"] == "Delivered again"
        assert "domain" not in payload["data"]["attributes"]  # an update carries only what changed
        client.delete("webhooks", created.id)
        assert {hook.url for hook in list_webhooks(client)} == {hinted.receiver.public_url}
    finally:
        server.shutdown()
        server.server_close()
