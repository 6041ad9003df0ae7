"""Webhook deliveries of the Outreach sandbox, as Outreach publishes them.

The `webhook` resource itself is served like every other (`/api/v2/webhooks`, from the OpenAPI document; scope
`webhooks.*`; its `secret` is write-only). This module delivers:

* After every committed create, update or delete of one record (an API write, a member action, the activity
  simulator; the seeder's bulk loads are not changes) of a resource and action an *active* webhook matches
  (`resource` "*" or the type, `action` "*" or created/updated/destroyed), the JSON:API payload is POSTed to the
  webhook's url from a background thread, never the request's: `data` is the resource object (on an update only
  the attributes and relationships that were written, plus `updatedAt`), `meta` has `eventName`
  (`prospect.updated`), `deliveredAt` and `jobId`. Headers: `Outreach-Webhook-Signature` (hex HMAC-SHA256 of the
  raw body keyed by the webhook's secret) and `outreach-org-id`.
* Deliveries go out one at a time, in commit order. A delivery that fails (connection refused, timeout, a
  status other than 2xx) is tried again `webhook_delivery_attempts` times in all, `webhook_retry_delay_seconds`
  apart, then dropped. The admin switch `webhook_deliveries_dropped` (POST /_sandbox/outreach/settings) drops
  every delivery instead of sending it, as an Outreach that never delivers would.
* `GET /_sandbox/stats` counts them under `webhooks`: `delivered`, `failed_attempts`, `dropped` (after the
  retries), `dropped_by_switch`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import requests

from outreach_pipeline.sandbox.credentials import SANDBOX_ORG_ID
from outreach_pipeline.sandbox.faults import RequestStats
from outreach_pipeline.sandbox.outreach.render import ResourceRenderer
from outreach_pipeline.sandbox.outreach.settings import OutreachSettings
from outreach_pipeline.sandbox.outreach.spec import TIMESTAMP_ATTRIBUTES, resource_specs
from outreach_pipeline.sandbox.outreach.store import OutreachStore, StoreChange, StoreQuery, format_timestamp

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Outreach-Webhook-Signature"
ORG_HEADER = "outreach-org-id"
WEBHOOK_TYPE = "webhook"
DELIVERY_TIMEOUT_SECONDS = 5.0
MAX_WEBHOOKS = 1000


def sign(secret: str, body: bytes) -> str:
    """The `Outreach-Webhook-Signature` of a body: hex HMAC-SHA256 keyed by the webhook's secret."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Delivery:
    url: str
    secret: str
    body: bytes
    event: str


class WebhookDispatcher:
    """Listens to the store and delivers matching changes from one background thread.

    Args:
        store: The sandbox's store (its listener list gets this dispatcher).
        settings: The sandbox's current settings (they may change at run time).
    """

    def __init__(self, store: OutreachStore, settings: Callable[[], OutreachSettings]) -> None:
        self.store = store
        self.settings = settings
        self.base_url = "http://127.0.0.1"  # the served URL, for links in payloads; set once the server is up
        self.stats: RequestStats | None = None
        self._queue: queue.Queue[Delivery | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()
        store.listeners.append(self.changed)

    def changed(self, change: StoreChange) -> None:
        """Queue one delivery per active webhook matching the change (called after the store commits it)."""
        record_type = change.record.type
        if record_type == WEBHOOK_TYPE:
            return
        matching = [hook for hook in self._active_webhooks()
                    if hook.attributes.get("resource") in ("*", record_type)
                    and hook.attributes.get("action") in ("*", change.action)]
        if not matching:
            return
        event = f"{record_type}.{change.action}"
        body = self._payload(change, event)
        for hook in matching:
            self._enqueue(Delivery(url=str(hook.attributes.get("url") or ""),
                                   secret=str(hook.attributes.get("secret") or ""), body=body, event=event))

    def _active_webhooks(self) -> list:
        return [hook for hook in self.store.query(WEBHOOK_TYPE, StoreQuery(limit=MAX_WEBHOOKS))
                if hook.attributes.get("active") and hook.attributes.get("url")]

    def _payload(self, change: StoreChange, event: str) -> bytes:
        spec = resource_specs()[change.record.type]
        fields = None
        if change.action == "updated":
            written = {*change.changed_attributes, *change.changed_relationships, *TIMESTAMP_ATTRIBUTES}
            fields = {spec.type: frozenset(written)}
        data = json.loads(ResourceRenderer(self.store, self.base_url).render_json(spec, [change.record], fields)[0])
        meta = {"deliveredAt": format_timestamp(self.store.now_ms()), "eventName": event, "jobId": str(uuid.uuid4())}
        return json.dumps({"data": data, "meta": meta}, separators=(",", ":")).encode()

    def _enqueue(self, delivery: Delivery) -> None:
        with self._lock:
            if self._worker is None:
                self._worker = threading.Thread(target=self._deliver_forever, name="sandbox-webhooks", daemon=True)
                self._worker.start()
        self._queue.put(delivery)

    def _count(self, kind: str) -> None:
        if self.stats is not None:
            self.stats.webhook(kind)

    def _deliver_forever(self) -> None:
        while (delivery := self._queue.get()) is not None:
            try:
                self._deliver(delivery)
            except Exception:  # a delivery must never stop the ones after it
                log.exception("webhook delivery of %s failed unexpectedly", delivery.event)
                self._count("dropped")
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def _deliver(self, delivery: Delivery) -> None:
        settings = self.settings()
        if settings.webhook_deliveries_dropped:
            self._count("dropped_by_switch")
            return
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(delivery.secret, delivery.body),
                   ORG_HEADER: SANDBOX_ORG_ID}
        stop = threading.Event()
        for attempt in range(settings.webhook_delivery_attempts):
            if attempt:
                stop.wait(settings.webhook_retry_delay_seconds)
            try:
                response = requests.post(delivery.url, data=delivery.body, headers=headers,
                                         timeout=DELIVERY_TIMEOUT_SECONDS)
                if 200 <= response.status_code < 300:
                    self._count("delivered")
                    return
            except requests.RequestException:
                pass
            self._count("failed_attempts")
        self._count("dropped")

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Whether every queued delivery was sent or dropped within `timeout` seconds (tests wait on it)."""
        done = threading.Event()

        def join() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=join, daemon=True).start()
        return done.wait(timeout)

    def stop(self) -> None:
        """End the delivery thread after the deliveries already queued."""
        with self._lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            self._queue.put(None)
            worker.join(DELIVERY_TIMEOUT_SECONDS * 2)
