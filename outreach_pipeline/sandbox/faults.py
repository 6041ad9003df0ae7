"""Fault injection and request accounting for the sandbox APIs.

`SandboxMiddleware` wraps either sandbox app. It counts every API request (per method and endpoint, and
the peak number in flight, which benchmarks and concurrency tests read) and injects the faults a real
integration meets: 429 bursts, 5xx rates, slow responses, the connection dropped after a write was
committed, and malformed JSON bodies. Faults are configured by `--faults SPEC` at start-up or at run time
through the admin API under `/_sandbox/` (served by the same port as the API it wraps):

    GET    /_sandbox/stats          request counts and peak in-flight
    POST   /_sandbox/stats/reset
    GET    /_sandbox/faults         the active fault rules
    POST   /_sandbox/faults         add rules (JSON list or {"spec": "..."})
    DELETE /_sandbox/faults         remove every rule

Other `/_sandbox/...` paths go through to the wrapped app (each sandbox adds its own admin actions),
uncounted and never faulted.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs, unquote_plus

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

FaultKind = Literal["rate_limit", "status", "slow", "drop_after_write", "malformed_json"]
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ADMIN_PREFIX = "/_sandbox/"
_NUMERIC_SEGMENT = re.compile(r"/\d+(?=/|$)")


class FaultRule(BaseModel):
    """One kind of fault, applied to matching requests with probability `rate`, at most `count` times."""

    model_config = ConfigDict(extra="forbid")

    kind: FaultKind
    rate: float = Field(default=1.0, ge=0.0, le=1.0)
    count: int | None = Field(default=None, ge=0, description="remaining triggers; None = unlimited")
    path: str = Field(default="", description="only requests whose path starts with this")
    methods: list[str] = Field(default_factory=list, description="effective HTTP methods; empty = all")
    status: int = Field(default=503, ge=400, le=599, description="for kind=status")
    retry_after: int = Field(default=1, ge=0, description="seconds, for kind=rate_limit")
    delay_ms: int = Field(default=0, ge=0, description="for kind=slow")

    def matches(self, method: str, path: str) -> bool:
        if self.count == 0 or not path.startswith(self.path):
            return False
        if self.methods and method not in {m.upper() for m in self.methods}:
            return False
        return self.kind != "drop_after_write" or method in WRITE_METHODS


class FaultSpecError(ValueError):
    pass


def parse_fault_spec(spec: str) -> list[FaultRule]:
    """Parse the CLI's `--faults` text into rules.

    Either JSON (a list of rule objects) or comma-separated rules of colon-separated parts, the first being
    the kind: ``rate_limit:count=20:retry_after=2,status:status=502:rate=0.05,slow:delay_ms=300,
    drop_after_write:rate=0.02,malformed_json:rate=0.01:path=/api/v2/prospects``.

    Raises:
        FaultSpecError: the spec is malformed; the message names the rule (by position) and the option.
    """
    spec = spec.strip()
    if not spec:
        return []
    if spec.startswith("["):
        try:
            items = json.loads(spec)
        except json.JSONDecodeError as exc:
            raise FaultSpecError(f"invalid fault spec {spec!r}: not valid JSON ({exc})") from exc
        return fault_rules_from_json(items)
    return [_rule_from_text(position, text.strip()) for position, text in enumerate(spec.split(","), start=1)]


def fault_rules_from_json(items: Any) -> list[FaultRule]:
    """Validate decoded JSON rule objects (one object or a list of them) into rules.

    Raises:
        FaultSpecError: naming the rule (by position) and each offending option.
    """
    items = items if isinstance(items, list) else [items]
    return [_validated_rule(position, json.dumps(item), item) for position, item in enumerate(items, start=1)]


def _rule_from_text(position: int, text: str) -> FaultRule:
    kind, *options = text.split(":")
    values: dict[str, Any] = {"kind": kind}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep:
            raise FaultSpecError(f"fault rule {position} ({text!r}): option {option!r} is not key=value")
        values[key] = value.split("|") if key == "methods" else value
    return _validated_rule(position, repr(text), values)


def _validated_rule(position: int, shown: str, values: Any) -> FaultRule:
    try:
        return FaultRule.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, error['loc'])) or 'rule'}: {error['msg']}" for error in exc.errors()
        )
        raise FaultSpecError(f"fault rule {position} ({shown}): {problems}") from exc


ErrorBody = Callable[[int, str], tuple[bytes, str]]


def json_error_body(status: int, kind: str) -> tuple[bytes, str]:
    """A JSON:API error document (Outreach's documented shape)."""
    ids = {429: "rateLimitExceeded", 502: "badGateway", 503: "serviceUnavailable", 504: "gatewayTimeout"}
    title = "Rate Limit Exceeded" if status == 429 else "Injected sandbox fault"
    body = {"errors": [{"id": ids.get(status, "internalServerError"), "title": title, "detail": f"sandbox fault: {kind}"}]}
    return json.dumps(body).encode(), "application/vnd.api+json"


def html_error_body(status: int, kind: str) -> tuple[bytes, str]:
    """What a web tier in front of an API (Workbooks documents none of its own) sends on overload or failure."""
    body = f"<html><body><h1>{status}</h1><p>sandbox fault: {kind}</p></body></html>"
    return body.encode(), "text/html; charset=utf-8"


@dataclass
class RequestStats:
    """Thread-safe counters; `snapshot()` is what `GET /_sandbox/stats` returns."""

    by_endpoint: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    webhooks: Counter[str] = field(default_factory=Counter)  # deliveries (sandbox/outreach/webhooks.py)
    in_flight: int = 0
    peak_in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def enter(self, method: str, endpoint: str) -> None:
        with self._lock:
            self.by_endpoint[f"{method} {endpoint}"] += 1
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def fault(self, kind: str) -> None:
        with self._lock:
            self.faults[kind] += 1

    def webhook(self, kind: str) -> None:
        with self._lock:
            self.webhooks[kind] += 1

    def reset(self) -> None:
        with self._lock:
            self.by_endpoint.clear()
            self.faults.clear()
            self.webhooks.clear()
            self.peak_in_flight = self.in_flight

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "total": sum(self.by_endpoint.values()),
                "requests": dict(sorted(self.by_endpoint.items())),
                "faults": dict(self.faults),
                "webhooks": dict(self.webhooks),
                "in_flight": self.in_flight,
                "peak_in_flight": self.peak_in_flight,
            }


class FaultInjector:
    """Holds the active rules and decides, per request, which fire. Seeded, so a run can be replayed."""

    def __init__(self, rules: list[FaultRule] | None = None, *, seed: int = 0) -> None:
        self._rules = list(rules or [])
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    @property
    def rules(self) -> list[FaultRule]:
        with self._lock:
            return [rule.model_copy() for rule in self._rules]

    def add(self, rules: list[FaultRule]) -> None:
        with self._lock:
            self._rules.extend(rules)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def draw(self, method: str, path: str) -> list[FaultRule]:
        """The rules that fire for one request: at most one `slow` plus at most one other fault.

        Rules are tried in the order they were added, so a burst added first is served first.
        """
        fired: dict[bool, FaultRule] = {}
        with self._lock:
            for rule in self._rules:
                is_delay = rule.kind == "slow"
                if is_delay in fired or not rule.matches(method, path) or self._rng.random() >= rule.rate:
                    continue
                if rule.count is not None:
                    rule.count -= 1
                fired[is_delay] = rule
        return list(fired.values())


def _form_value(body: bytes, name: bytes) -> str | None:
    """The first value of `name` in a form-urlencoded body, without decoding the rest of it (a write batch's
    body is large, and the app parses it in full anyway)."""
    prefix = name + b"="
    for pair in body.split(b"&"):
        if pair.startswith(prefix):
            return unquote_plus(pair[len(prefix):].decode("latin-1"))
    return None


def endpoint_of(path: str) -> str:
    """`/api/v2/prospects/12` -> `/api/v2/prospects/{id}`, so counts group by endpoint."""
    return _NUMERIC_SEGMENT.sub("/{id}", path)


class SandboxMiddleware:
    """ASGI middleware: request accounting, fault injection and the `/_sandbox/` stats/faults admin API."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        injector: FaultInjector | None = None,
        stats: RequestStats | None = None,
        error_body: ErrorBody = json_error_body,
    ) -> None:
        self.app = app
        self.injector = injector or FaultInjector()
        self.stats = stats or RequestStats()
        self.error_body = error_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path.startswith(ADMIN_PREFIX):
            # Admin actions (token expiry, settings) are the operator's, not the client's: a fault rule
            # must not block them and they must not skew the request counts.
            if not await self._admin(scope, receive, send):
                await self.app(scope, receive, send)
            return
        receive, method = await self._effective_method(scope, receive)
        self.stats.enter(method, endpoint_of(path))
        left = False

        def leave_once() -> None:
            nonlocal left
            if not left:
                left = True
                self.stats.leave()

        async def send_counted(message: Message) -> None:
            # A request stops being in flight before its last byte goes out: once the client has the answer it
            # may send its next request, which must not find this one still counted (a false peak of 2).
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                leave_once()
            await send(message)

        try:
            await self._serve(scope, receive, send_counted, method, path, raw_send=send)
        finally:
            leave_once()

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, method: str, path: str, *, raw_send: Send
    ) -> None:
        fired = {rule.kind: rule for rule in self.injector.draw(method, path)}
        for kind in fired:
            self.stats.fault(kind)
        if slow := fired.get("slow"):
            await asyncio.sleep(slow.delay_ms / 1000)
        if limit := fired.get("rate_limit"):
            await self._send_error(send, 429, "rate_limit", {"retry-after": str(limit.retry_after)})
            return
        if status := fired.get("status"):
            await self._send_error(send, status.status, "status")
            return
        if "drop_after_write" in fired:
            # The write runs to completion (it is committed), then the client never hears back.
            await self.app(scope, receive, _discard)
            await _drop_connection(raw_send)  # the server's own send: it reaches the transport
            return
        if "malformed_json" in fired:
            await self.app(scope, receive, _Truncating(send))
            return
        await self.app(scope, receive, send)

    async def _send_error(self, send: Send, status: int, kind: str, headers: dict[str, str] | None = None) -> None:
        body, content_type = self.error_body(status, kind)
        raw_headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
        raw_headers += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": body})

    async def _effective_method(self, scope: Scope, receive: Receive) -> tuple[Receive, str]:
        """Workbooks clients POST with `_method=GET|PUT` in a form body; count what they mean.

        The body is read here and replayed to the app, so the app sees the request unchanged.
        """
        method = scope["method"]
        query_method = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("_method")
        if query_method:
            return receive, query_method[0].upper()
        headers = dict(scope.get("headers") or [])
        if method != "POST" or not headers.get(b"content-type", b"").startswith(b"application/x-www-form-urlencoded"):
            return receive, method
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = b"".join(chunks)
        form_method = _form_value(body, b"_method")
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return replay, (form_method.upper() if form_method else method)

    async def _admin(self, scope: Scope, receive: Receive, send: Send) -> bool:
        path, method = scope["path"].rstrip("/"), scope["method"]
        if path == "/_sandbox/stats" and method == "GET":
            await _send_json(send, 200, self.stats.snapshot())
        elif path == "/_sandbox/stats/reset" and method == "POST":
            self.stats.reset()
            await _send_json(send, 200, self.stats.snapshot())
        elif path == "/_sandbox/faults" and method == "GET":
            await _send_json(send, 200, {"rules": [r.model_dump() for r in self.injector.rules]})
        elif path == "/_sandbox/faults" and method == "DELETE":
            self.injector.clear()
            await _send_json(send, 200, {"rules": []})
        elif path == "/_sandbox/faults" and method == "POST":
            try:
                payload = json.loads(await _read_body(receive) or b"null")
                if isinstance(payload, dict) and "spec" in payload:
                    rules = parse_fault_spec(str(payload["spec"]))
                else:
                    rules = fault_rules_from_json(payload)
            except ValueError as exc:
                await _send_json(send, 400, {"error": f"invalid fault rules: {exc}"})
                return True
            self.injector.add(rules)
            await _send_json(send, 200, {"rules": [r.model_dump() for r in self.injector.rules]})
        else:
            return False
        return True


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _send_json(send: Send, status: int, payload: Any) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _discard(message: Message) -> None:
    return None


async def _drop_connection(send: Send) -> None:
    """Close the TCP connection without a byte of response, as a dying proxy or network would.

    ASGI has no "abort" message, so reach the transport through uvicorn's bound `send`. Where that is
    not possible (another server), start a response and stop mid-body, which clients also see as a
    broken connection.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is not None:
        transport.abort()
        await asyncio.sleep(0)  # let the server notice the disconnect before the app returns
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1000")]})
    await send({"type": "http.response.body", "body": b"{", "more_body": True})
    raise ConnectionAbortedError("sandbox fault: connection dropped after write")


class _Truncating:
    """Buffers the app's response and sends only the first half of its body, with a matching length."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._start: Message | None = None
        self._chunks: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self._start = message
            return
        self._chunks.append(message.get("body", b""))
        if message.get("more_body"):
            return
        body = b"".join(self._chunks)
        truncated = body[: max(1, len(body) // 2)] if body else b"{"
        assert self._start is not None
        headers = [(k, v) for k, v in self._start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(truncated)).encode()))
        await self._send({**self._start, "headers": headers})
        await self._send({"type": "http.response.body", "body": truncated})
