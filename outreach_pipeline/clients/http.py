"""Shared HTTP plumbing for the API clients: sessions, timeouts, bounded retries, stats (typed errors: errors.py).

Retry rules (the same for every client):

* Reads (idempotent requests) retry on 429, 5xx, connection errors, timeouts and malformed bodies,
  with exponential backoff plus jitter, honouring ``Retry-After`` when the server sends it.
* Writes retry only when the server provably did nothing: a 429 (rejected before any work) or a
  connection that was never established.
* A spent request budget is waited out only when it resets soon: when the pacer's reset time or a 429's
  ``Retry-After`` is further away than ``RetryPolicy.max_rate_limit_wait`` (an hourly budget can be an hour
  away), :class:`RateBudgetExhausted` is raised at once, carrying the reset time, so the caller can end its
  run partial and leave the rest to a later run rather than hold a worker asleep. A 5xx, a timeout or a dropped connection on a write raises
  :class:`WriteOutcomeUnknown`, because the server may have committed it; the caller reconciles by
  looking the record up.

Errors carry the request method and path only; headers, query strings and bodies are never copied
into them, since those hold tokens and api keys.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from pydantic import BaseModel, ConfigDict, Field
from urllib3.exceptions import NewConnectionError

from outreach_pipeline.clients.errors import (  # re-exported: the clients' errors are imported from here too
    ApiError,
    AuthenticationError,
    MalformedResponse,
    NotFoundError,
    RateBudgetExhausted,
    RateLimited,
    ServerError,
    Service,
    TransportError,
    ValidationFailed,
    WriteOutcomeUnknown,
)

REQUEST_TIMEOUT: tuple[float, float] = (10, 60)
"""(connect, read) timeout in seconds, sent with every request."""

SleepFn = Callable[[float], None]
ClockFn = Callable[[], float]

_NUMERIC_SEGMENT = re.compile(r"/\d+(?=/|$)")


class RetryPolicy(BaseModel):
    """Bounds on retrying.

    Attributes:
        max_attempts: Attempts per request, the first one included.
        base_delay: First backoff in seconds; doubles per retry.
        max_delay: Cap on one computed backoff (not on a server-sent Retry-After).
        max_total_wait: Cap on all sleeping done for one request, Retry-After and rate-limit pauses
            included; past it the error is raised instead of waiting.
        max_malformed_retries: Retries of a read whose body was malformed (a truncated body is transient).
        max_rate_limit_wait: Longest single wait for a spent request budget to reset (the pacer's reset
            time, or a 429's ``Retry-After``); a reset further away raises :class:`RateBudgetExhausted`.
    """

    model_config = ConfigDict(frozen=True)

    max_attempts: int = Field(default=5, ge=1)
    base_delay: float = Field(default=1.0, ge=0)
    max_delay: float = Field(default=60.0, ge=0)
    max_total_wait: float = Field(default=900.0, ge=0)
    max_malformed_retries: int = Field(default=2, ge=0)
    max_rate_limit_wait: float = Field(default=60.0, ge=0)

    def backoff(self, retry_number: int) -> float:
        """Exponential backoff with "equal jitter": half fixed, half random, so clients spread out."""
        ceiling = min(self.max_delay, self.base_delay * 2**retry_number)
        return ceiling / 2 + random.uniform(0, ceiling / 2)


class RequestStats:
    """Counts of requests made by one client, for reporting "API requests used".

    Endpoints are normalised (numeric path segments become ``{id}``) so counts aggregate.
    Thread-safe: a client may be shared by threads of one process.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, str]] = Counter()
        self.retries = 0
        self.rate_limited = 0
        self.waits = 0
        self.seconds_waited = 0.0

    @property
    def total_requests(self) -> int:
        """Every HTTP request sent, retries included."""
        return sum(self.requests.values())

    def record_request(self, method: str, path: str) -> None:
        """Count one request sent to ``path``."""
        with self._lock:
            self.requests[(method, _NUMERIC_SEGMENT.sub("/{id}", path))] += 1

    def record_retry(self, *, rate_limited: bool) -> None:
        """Count one retry, and whether a 429 caused it."""
        with self._lock:
            self.retries += 1
            self.rate_limited += int(rate_limited)

    def record_wait(self, seconds: float) -> None:
        """Count one deliberate pause (backoff, Retry-After or rate-limit reset)."""
        with self._lock:
            self.waits += 1
            self.seconds_waited += seconds

    def snapshot(self) -> dict[str, Any]:
        """A JSON-friendly copy, e.g. for Dagster metadata."""
        with self._lock:
            return {
                "total_requests": sum(self.requests.values()),
                "by_endpoint": {f"{method} {path}": n for (method, path), n in sorted(self.requests.items())},
                "retries": self.retries,
                "rate_limited": self.rate_limited,
                "waits": self.waits,
                "seconds_waited": round(self.seconds_waited, 3),
            }

    def __repr__(self) -> str:
        return f"RequestStats({self.snapshot()!r})"


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value: delta-seconds, an HTTP date or an ISO-8601 time.

    Args:
        value: The header value, or None.
        now: Current epoch seconds (injectable clock).

    Returns:
        Seconds to wait (never negative), or None when absent or unparseable.
    """
    if not value or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    moment: datetime | None = None
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return None
    if moment.tzinfo is None:
        # Outreach's maintenance example carries no zone; its API speaks UTC throughout.
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, moment.timestamp() - now)


class RateLimitPacer:
    """Reads ``X-RateLimit-Remaining``/``X-RateLimit-Reset`` and pauses before a request that would 429.

    Waiting for the reset is cheaper than burning requests on 429s, and the 429s themselves count
    against the quota on some APIs.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.remaining: int | None = None
        self.reset_at: float | None = None

    def observe(self, headers: Mapping[str, str]) -> None:
        """Remember the budget a response reported. Remaining may hold two values ("9999, 19988"): the first counts."""
        remaining = headers.get("X-RateLimit-Remaining")
        reset = headers.get("X-RateLimit-Reset")
        with self._lock:
            if remaining:
                try:
                    self.remaining = int(remaining.split(",")[0].strip())
                except ValueError:
                    self.remaining = None
            if reset:
                try:
                    self.reset_at = float(reset.strip())
                except ValueError:
                    self.reset_at = None

    def seconds_until_allowed(self, now: float) -> float:
        """Seconds to wait before the next request (0 when budget remains or the reset time is unknown)."""
        with self._lock:
            if self.remaining is None or self.remaining > 0 or self.reset_at is None:
                return 0.0
            return max(0.0, self.reset_at - now)

    def consume_wait(self) -> None:
        """Forget the exhausted budget after waiting for its reset; the next response re-reports it."""
        with self._lock:
            self.remaining = None


#: (error id, detail) of an error response, or (error id, detail, pointer): the JSON:API ``source.pointer`` of the
#: member the API refused (``/data/attributes/title``), kept as data for the caller to name the field.
ErrorParser = Callable[[requests.Response], tuple[str | None, str | None] | tuple[str | None, str | None, str | None]]
"""Extracts (error_id, detail) from an error response."""


def _never_reached_server(exc: requests.RequestException) -> bool:
    """True when the TCP connection was never established, so even a write is safe to resend."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError):
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        return isinstance(reason, NewConnectionError)
    return False


_STATUS_ERRORS: dict[int, type[ApiError]] = {
    400: ValidationFailed,
    401: AuthenticationError,
    403: AuthenticationError,
    404: NotFoundError,
    406: ValidationFailed,
    409: ValidationFailed,
    422: ValidationFailed,
    429: RateLimited,
}


class HttpTransport:
    """One ``requests.Session`` with the retry, pacing, error and stats rules described in the module doc.

    Args:
        base_url: Scheme and host (and optional prefix) that relative paths are joined to.
        error_parser: Pulls the API's error id/detail out of an error response.
        retry: Retry bounds.
        sleep: Called for every pause; inject a fake in tests.
        clock: Epoch seconds; inject a fake in tests.
        pacer: Optional rate-limit pacer fed by response headers.
        user_agent: Sent on every request (Workbooks rejects requests without one).
        service: The system behind ``base_url``; stamped on every error raised.
    """

    def __init__(
        self,
        base_url: str,
        *,
        error_parser: ErrorParser,
        retry: RetryPolicy | None = None,
        sleep: SleepFn = time.sleep,
        clock: ClockFn = time.time,
        pacer: RateLimitPacer | None = None,
        user_agent: str = "outreach-pipeline/0.1",
        service: Service | None = None,
    ) -> None:
        self.service = service
        self.base_url = base_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["User-Agent"] = user_agent
        self.error_parser = error_parser
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.clock = clock
        self.pacer = pacer
        self.stats = RequestStats()

    def url_for(self, path_or_url: str) -> str:
        """Absolute URL for a path, or the URL itself when already absolute (e.g. ``links.next``)."""
        if path_or_url.startswith(("http://", "https://")):
            return path_or_url
        return f"{self.base_url}/{path_or_url.lstrip('/')}"

    def close(self) -> None:
        """Close pooled connections."""
        self.session.close()

    def request_json(
        self,
        method: str,
        path_or_url: str,
        *,
        idempotent: bool,
        logical_method: str | None = None,
        validate: Callable[[Any], None] | None = None,
        fail_fast_statuses: frozenset[int] = frozenset(),
        **kwargs: Any,
    ) -> Any:
        """Send a request (with retries) and return its decoded JSON body (None for an empty body).

        Args:
            method: HTTP method on the wire.
            path_or_url: Path relative to ``base_url`` or an absolute URL.
            idempotent: Whether a 5xx/timeout/dropped connection may be retried.
            logical_method: Method to report in errors/stats when it differs from the wire method.
            validate: Raises ``ValueError`` when the decoded body lacks the documented shape.
            fail_fast_statuses: Statuses raised at once instead of retried, for callers that
                react differently (Outreach halves ``page[size]`` on a 502).
            **kwargs: Passed to ``requests.Session.request`` (params, data, json, headers).

        Returns:
            The decoded JSON body.

        Raises:
            ApiError: A typed subclass describing the failure.
        """
        url = self.url_for(path_or_url)
        label = logical_method or method
        path = urlsplit(url).path
        try:
            return self._request_json(method, url, label, path, idempotent, validate, fail_fast_statuses, kwargs)
        except ApiError as exc:
            exc.service = exc.service or self.service
            raise

    def _request_json(
        self,
        method: str,
        url: str,
        label: str,
        path: str,
        idempotent: bool,
        validate: Callable[[Any], None] | None,
        fail_fast_statuses: frozenset[int],
        kwargs: dict[str, Any],
    ) -> Any:
        malformed_budget = self.retry.max_malformed_retries
        waited = 0.0
        while True:
            response = self._send_with_retries(
                method, url, label, path, idempotent, waited, fail_fast_statuses, kwargs
            )
            waited = response.waited
            try:
                return _decode_json(response.response, validate)
            except ValueError as exc:
                detail = f"{exc} (HTTP {response.response.status_code})"
                if not idempotent:
                    raise WriteOutcomeUnknown(
                        "malformed reply to a write; it may have been committed",
                        method=label,
                        path=path,
                        status=response.response.status_code,
                        detail=detail,
                    ) from exc
                if malformed_budget <= 0:
                    raise MalformedResponse(
                        "malformed response body", method=label, path=path, detail=detail
                    ) from exc
                malformed_budget -= 1
                retry_number = self.retry.max_malformed_retries - malformed_budget - 1
                waited += self._wait(self.retry.backoff(retry_number), rate_limited=False)

    def _send_with_retries(
        self,
        method: str,
        url: str,
        label: str,
        path: str,
        idempotent: bool,
        waited: float,
        fail_fast_statuses: frozenset[int],
        kwargs: dict[str, Any],
    ) -> _SentResponse:
        attempt = 0
        while True:
            waited += self._pace(label, path, waited)
            attempt += 1
            self.stats.record_request(label, path)
            try:
                response = self.session.request(method, url, timeout=REQUEST_TIMEOUT, **kwargs)
            except requests.RequestException as exc:
                retryable = idempotent or _never_reached_server(exc)
                if not retryable:
                    raise WriteOutcomeUnknown(
                        f"no reply to a write ({type(exc).__name__}); it may have been committed",
                        method=label,
                        path=path,
                    ) from exc
                delay = self._retry_delay(attempt, None, waited)
                if delay is None:
                    raise TransportError(
                        f"no usable reply after {attempt} attempt(s) ({type(exc).__name__})",
                        method=label,
                        path=path,
                    ) from exc
                waited += self._wait(delay, rate_limited=False)
                continue
            if self.pacer is not None:
                self.pacer.observe(response.headers)
            if response.status_code < 400:
                return _SentResponse(response, waited)
            status = response.status_code
            retryable = status not in fail_fast_statuses and (status == 429 or (status >= 500 and idempotent))
            if status >= 500 and not idempotent:
                error_id, detail, _ = self._parse_error(response)
                raise WriteOutcomeUnknown(
                    "server error on a write; it may have been committed",
                    method=label,
                    path=path,
                    status=status,
                    error_id=error_id,
                    detail=detail,
                )
            if status == 429:
                self._refuse_distant_reset(response, label, path)
            delay = self._retry_delay(attempt, response, waited) if retryable else None
            if delay is None:
                raise self.error_for(response, label, path)
            waited += self._wait(delay, rate_limited=status == 429)

    def _pace(self, label: str, path: str, waited: float) -> float:
        if self.pacer is None:
            return 0.0
        now = self.clock()
        pause = self.pacer.seconds_until_allowed(now)
        if pause <= 0:
            return 0.0
        if pause > self.retry.max_rate_limit_wait:
            raise _budget_exhausted(now + pause, label, path, status=None)
        if waited + pause > self.retry.max_total_wait:
            raise RateLimited(
                f"rate-limit budget exhausted; reset is {pause:.0f}s away, beyond the wait cap",
                method=label,
                path=path,
            )
        self.sleep(pause)
        self.stats.record_wait(pause)
        self.pacer.consume_wait()
        return pause

    def _refuse_distant_reset(self, response: requests.Response, label: str, path: str) -> None:
        """Raise RateBudgetExhausted when a 429 says the budget resets later than the client may wait."""
        now = self.clock()
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now=now) or 0.0
        # The pacer has just read this reply's X-RateLimit-Reset: an absolute time, so it names the reset more
        # exactly than the relative Retry-After (which a 429 without budget headers still provides).
        until_reset = self.pacer.seconds_until_allowed(now) if self.pacer is not None else 0.0
        if max(retry_after, until_reset) > self.retry.max_rate_limit_wait:
            raise _budget_exhausted(now + (until_reset or retry_after), label, path, status=response.status_code)

    def _retry_delay(self, attempt: int, response: requests.Response | None, waited: float) -> float | None:
        """Seconds to wait before the next attempt, or None when the budget is spent."""
        if attempt >= self.retry.max_attempts:
            return None
        delay = self.retry.backoff(attempt - 1)
        if response is not None:
            server_delay = parse_retry_after(response.headers.get("Retry-After"), now=self.clock())
            if server_delay is not None:
                delay = server_delay
        if waited + delay > self.retry.max_total_wait:
            return None
        return delay

    def _wait(self, delay: float, *, rate_limited: bool) -> float:
        self.stats.record_retry(rate_limited=rate_limited)
        if delay > 0:
            self.sleep(delay)
            self.stats.record_wait(delay)
        return delay

    def _parse_error(self, response: requests.Response) -> tuple[str | None, str | None, str | None]:
        try:
            parsed = self.error_parser(response)
        except (ValueError, KeyError, TypeError, AttributeError):
            return None, None, None
        return parsed[0], parsed[1], parsed[2] if len(parsed) > 2 else None

    def error_for(self, response: requests.Response, method: str, path: str) -> ApiError:
        """The typed error for a failed response."""
        status = response.status_code
        error_id, detail, pointer = self._parse_error(response)
        error_type = _STATUS_ERRORS.get(status, ServerError if status >= 500 else ValidationFailed)
        return error_type(
            "request failed", method=method, path=path, status=status, error_id=error_id, detail=detail,
            pointer=pointer,
        )


def _budget_exhausted(reset_epoch: float, label: str, path: str, *, status: int | None) -> RateBudgetExhausted:
    reset_at = datetime.fromtimestamp(reset_epoch, UTC)
    return RateBudgetExhausted(
        f"request budget exhausted until {reset_at:%H:%M:%S} UTC, beyond the client's wait limit",
        reset_at=reset_at,
        method=label,
        path=path,
        status=status,
    )


class _SentResponse:
    """A successful response plus the seconds already spent waiting for it (shared wait budget)."""

    __slots__ = ("response", "waited")

    def __init__(self, response: requests.Response, waited: float) -> None:
        self.response = response
        self.waited = waited


def _decode_json(response: requests.Response, validate: Callable[[Any], None] | None) -> Any:
    if response.status_code == 204 or not response.content:
        if validate is not None:
            validate(None)
        return None
    try:
        body = json.loads(response.content)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"invalid JSON: {exc.msg if isinstance(exc, json.JSONDecodeError) else exc}") from exc
    if validate is not None:
        validate(body)
    return body
