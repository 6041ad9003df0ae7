"""The API clients' typed errors: what failed, in which system, and what is safe to log.

Errors carry the request method and path only; headers, query strings and bodies are never copied into them,
since those hold tokens and api keys. Callers branch on the class (and `status`, `error_id`, `pointer`), never on
the message.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any


class Service(StrEnum):
    """The system a client talks to, carried by its errors so a message can name it."""

    OUTREACH = "Outreach"
    WORKBOOKS = "Workbooks"


class ApiError(Exception):
    """A request failed. Carries what is safe to log: method, path, status and the API's error id/detail.

    Attributes:
        method: HTTP method (the logical one, e.g. ``GET`` for a Workbooks ``_method=GET`` POST).
        path: URL path without the query string.
        status: HTTP status, or None when no response arrived.
        error_id: The API's machine-readable error id (Outreach ``errors[0].id``, Workbooks ``failure_reason``).
        detail: The API's human-readable message.
        pointer: The JSON:API ``source.pointer`` of the refused member (``/data/attributes/title``), when given.
        service: The system that answered (set by the transport that raised it), when known.
    """

    def __init__(
        self,
        message: str,
        *,
        method: str,
        path: str,
        status: int | None = None,
        error_id: str | None = None,
        detail: str | None = None,
        service: Service | None = None,
        pointer: str | None = None,
    ) -> None:
        self.service = service
        self.pointer = pointer
        self.method = method
        self.path = path
        self.status = status
        self.error_id = error_id
        self.detail = detail
        parts = [f"{method} {path}", message]
        if status is not None:
            parts.append(f"status={status}")
        if error_id:
            parts.append(f"error_id={error_id}")
        if detail:
            parts.append(f"detail={detail}")
        super().__init__(": ".join(parts[:2]) + ("" if len(parts) == 2 else " (" + ", ".join(parts[2:]) + ")"))


class AuthenticationError(ApiError):
    """Credentials were rejected (401/403 or a failed token refresh / login)."""


class NotFoundError(ApiError):
    """The resource does not exist (404)."""


class ValidationFailed(ApiError):
    """The API refused the request's content (400/406/409/422)."""


class RateLimited(ApiError):
    """429s continued past the retry budget."""


class RateBudgetExhausted(RateLimited):
    """The API's request budget is spent and resets later than the client may wait.

    Attributes:
        reset_at: When the budget resets (UTC), from ``X-RateLimit-Reset`` or ``Retry-After``.
    """

    def __init__(self, message: str, *, reset_at: datetime, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.reset_at = reset_at


class ServerError(ApiError):
    """A 5xx that outlasted the retry budget (reads) or was not retried."""


class TransportError(ApiError):
    """No usable response: connection refused/dropped or timed out, after retries."""


class MalformedResponse(ApiError):
    """The response body was not the documented shape (invalid JSON, missing ``data``)."""


class WriteOutcomeUnknown(ApiError):
    """A write may or may not have been committed (5xx, timeout, dropped connection, truncated reply).

    The caller must reconcile by looking the record up before trying again.

    Attributes:
        completed: Results of earlier parts of a multi-request write that did complete (e.g. the
            Workbooks batches sent before the one that failed), so the caller does not redo them.
    """

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.completed: list[Any] = []
