"""Per-user request budget over fixed one-hour windows, with Outreach's headers and 429 body."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from pydantic import BaseModel

from outreach_pipeline.sandbox.outreach.errors import ApiError

WINDOW_SECONDS = 3600


class RateState(BaseModel):
    """Budget after counting one request."""

    limit: int
    remaining: int
    org_remaining: int
    reset_at: int
    exceeded: bool

    def headers(self, two_values: bool) -> dict[str, str]:
        """`X-RateLimit-*` headers; with `two_values`, Remaining carries the user and the org budget."""
        remaining = f"{self.remaining}, {self.org_remaining}" if two_values else str(self.remaining)
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": remaining,
            "X-RateLimit-Reset": str(self.reset_at),
        }


class RateLimiter:
    """Counts requests per user in the current hour; the org-wide second bucket is twice the user limit."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._window_start = 0
        self._used: dict[int, int] = {}

    def hit(self, user_id: int, limit: int) -> RateState:
        """Count one request for `user_id` and report the budget left."""
        now = self.clock()
        window_start = int(now // WINDOW_SECONDS) * WINDOW_SECONDS
        with self._lock:
            if window_start != self._window_start:
                self._window_start, self._used = window_start, {}
            used = self._used.get(user_id, 0) + 1
            self._used[user_id] = used
            org_used = sum(self._used.values())
        return RateState(
            limit=limit,
            remaining=max(limit - used, 0),
            org_remaining=max(2 * limit - org_used, 0),
            reset_at=window_start + WINDOW_SECONDS,
            exceeded=used > limit,
        )


def rate_limit_error(state: RateState, now: float, two_values: bool) -> ApiError:
    """429 `rateLimitExceeded` in Outreach's wording, with `Retry-After` in seconds."""
    retry_at = datetime.fromtimestamp(state.reset_at, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    headers = state.headers(two_values) | {"Retry-After": str(max(1, math.ceil(state.reset_at - now)))}
    return ApiError(
        429,
        "rateLimitExceeded",
        "Rate Limit Exceeded",
        f"You have exceeded your permitted rate limit of {state.limit:,}; please try again at {retry_at}.",
        headers=headers,
    )
