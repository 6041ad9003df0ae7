"""The webhook receiver: Outreach's change deliveries in, hints in the ledger out (engine/webhook_hints.py).

Rules:
* It binds 127.0.0.1 by default; Outreach reaches it through `webhook_public_url` (a tunnel or proxy in
  production). `POST <path>` takes deliveries, `GET /healthz` answers `ok`; everything else is 404.
* A delivery counts only when its `Outreach-Webhook-Signature` is the hex HMAC-SHA256 of the raw body keyed by
  the secret (compared in constant time); otherwise 401 and nothing is recorded. The secret comes from the
  settings (`OUTREACH_PIPELINE_WEBHOOK_SECRET`), or is drawn at random per start (the subscription is re-keyed
  at every start anyway); it is never logged, and neither is a body (it holds emails).
* A verified delivery records one hint for its resource type in the window of the record's `updatedAt` (the
  delivery time when the payload has none) and answers 204. A body it cannot read is 400, nothing recorded.
* Start: serve first, then register the subscription (idempotent: the webhook with the same url is reused),
  then open a listening span in the ledger. A heartbeat extends the span every `heartbeat_seconds`; every
  `SUBSCRIPTION_CHECK_BEATS` beats the subscription is looked up, and one that was deleted or switched off is
  registered again under a *new* span, so the time it was off is a gap. A receiver that dies stops extending
  its span: the runs see the gap and read.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pydantic import SecretStr

from outreach_pipeline.clients.outreach_webhooks import WebhookSubscription
from outreach_pipeline.engine.webhook_hints import WebhookHints

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Outreach-Webhook-Signature"
DELIVERY_PATH = "/outreach/webhooks"
MAX_BODY_BYTES = 1_000_000
SUBSCRIPTION_CHECK_BEATS = 10


def utc_now() -> datetime:
    return datetime.now(UTC)


def random_secret() -> SecretStr:
    """A signing secret for one receiver start."""
    return SecretStr(secrets.token_urlsafe(32))


def signature_valid(secret: SecretStr, body: bytes, signature: str | None) -> bool:
    """Whether `signature` is the hex HMAC-SHA256 of `body` keyed by `secret`."""
    if not signature:
        return False
    expected = hmac.new(secret.get_secret_value().encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature.strip().lower())


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def hint_of(payload: Any, received_at: datetime) -> tuple[str, datetime] | None:
    """(resource type, when it changed) of a delivery's JSON:API payload; None when it names no type."""
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        return None
    attributes = data.get("attributes") if isinstance(data.get("attributes"), dict) else {}
    return data["type"], _parse_time(attributes.get("updatedAt")) or received_at


class WebhookReceiver:
    """Serves deliveries and keeps the listening span alive.

    Args:
        hints: The ledger's hint rows.
        secret: The signing secret (random per start when None).
        subscribe: Registers the subscription for a public URL (``clients.outreach_webhooks.ensure_webhook``).
        check: Looks a subscription up again (``get_webhook``); None skips the checks.
        host, port: Where to bind (port 0: any free port).
        public_url: The URL Outreach delivers to; default ``http://host:port/outreach/webhooks``.
        heartbeat_seconds: How often the span is extended (0: only by :meth:`beat`, for tests).
        clock: The receiver's clock (tests move it).
    """

    def __init__(self, hints: WebhookHints, *, subscribe: Callable[[str, SecretStr], WebhookSubscription],
                 check: Callable[[int], WebhookSubscription | None] | None = None, secret: SecretStr | None = None,
                 host: str = "127.0.0.1", port: int = 0, public_url: str | None = None,
                 heartbeat_seconds: float = 30.0, clock: Callable[[], datetime] = utc_now) -> None:
        self.hints = hints
        self.secret = secret or random_secret()
        self._subscribe = subscribe
        self._check = check
        self.clock = clock
        self.heartbeat_seconds = heartbeat_seconds
        self.server = ThreadingHTTPServer((host, port), self._handler())
        self.server.daemon_threads = True
        bound_host, bound_port = self.server.server_address[:2]
        self.public_url = public_url or f"http://{bound_host}:{bound_port}{DELIVERY_PATH}"
        self.subscription: WebhookSubscription | None = None
        self.span_id: str | None = None
        self.received = 0
        self.refused = 0
        self._beats = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> WebhookReceiver:
        """Serve, subscribe, open the listening span and start the heartbeat."""
        serving = threading.Thread(target=self.server.serve_forever, name="webhook-receiver", daemon=True)
        serving.start()
        self._threads.append(serving)
        self._open_span()
        if self.heartbeat_seconds > 0:
            beating = threading.Thread(target=self._beat_until_stopped, name="webhook-heartbeat", daemon=True)
            beating.start()
            self._threads.append(beating)
        return self

    def _open_span(self) -> None:
        self.subscription = self._subscribe(self.public_url, self.secret)
        self.span_id = self.hints.start_listening(self.public_url, self.subscription.resource,
                                                  self.subscription.action, self.clock())
        log.info("webhook receiver listening at %s (webhook %s: %s.%s)", self.public_url, self.subscription.id,
                 self.subscription.resource, self.subscription.action)

    def beat(self) -> None:
        """Extend the listening span to now; every few beats, make sure the subscription is still on."""
        if self.span_id is None:
            return
        self._beats += 1
        if self._check is not None and self.subscription is not None and self._beats % SUBSCRIPTION_CHECK_BEATS == 0:
            current = self._check(self.subscription.id)
            if current is None or not current.active:
                log.warning("webhook %s was deleted or switched off: registering again (a gap in listening)",
                            self.subscription.id)
                self._open_span()
                return
        self.hints.heartbeat(self.span_id, self.clock())

    def _beat_until_stopped(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            try:
                self.beat()
            except Exception:  # a failed beat is a gap the runs will see, never a dead receiver
                log.exception("webhook receiver heartbeat failed")

    def stop(self) -> None:
        """Stop serving; the span ends at the last beat (the subscription stays, for the next start to reuse)."""
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()
        for thread in self._threads:
            thread.join(5)

    def __enter__(self) -> WebhookReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return  # bodies and signatures stay out of logs; outcomes are counted instead

            def _answer(self, status: HTTPStatus, text: str = "") -> None:
                body = text.encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path == "/healthz":
                    return self._answer(HTTPStatus.OK, "ok")
                return self._answer(HTTPStatus.NOT_FOUND)

            def do_POST(self) -> None:
                if self.path.split("?")[0] != DELIVERY_PATH:
                    return self._answer(HTTPStatus.NOT_FOUND)
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY_BYTES:
                    return self._answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
                body = self.rfile.read(length)
                if not signature_valid(receiver.secret, body, self.headers.get(SIGNATURE_HEADER)):
                    receiver.refused += 1
                    return self._answer(HTTPStatus.UNAUTHORIZED, "bad signature")
                received_at = receiver.clock()
                try:
                    hint = hint_of(json.loads(body), received_at)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    hint = None
                if hint is None:
                    return self._answer(HTTPStatus.BAD_REQUEST, "not a JSON:API resource delivery")
                receiver.hints.record_hint(hint[0], hint[1], received_at)
                receiver.received += 1
                return self._answer(HTTPStatus.NO_CONTENT)

        return Handler
