"""Conversions between wire values and stored values (timestamps, dates, typed filter values)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

from outreach_pipeline.sandbox.outreach.store import format_timestamp, to_epoch_ms

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_datetime(text: str) -> datetime:
    """Parse an ISO 8601 date-time (`Z`, offsets, or a bare date meaning midnight UTC).

    Raises:
        ValueError: the text is not an ISO 8601 date or date-time.
    """
    cleaned = text.strip()
    if _DATE.match(cleaned):
        return datetime.combine(date.fromisoformat(cleaned), datetime.min.time(), UTC)
    moment = datetime.fromisoformat(cleaned.replace("Z", "+00:00").replace("z", "+00:00"))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def canonical_datetime(text: str) -> str:
    """Normalise a client date-time to Outreach's rendering, so stored strings sort chronologically."""
    return format_timestamp(to_epoch_ms(parse_datetime(text)))


def canonical_date(text: str) -> str:
    """Validate a `YYYY-MM-DD` date and return it unchanged.

    Raises:
        ValueError: not a calendar date in that format.
    """
    if not _DATE.match(text):
        raise ValueError(f"{text!r} is not a YYYY-MM-DD date")
    date.fromisoformat(text)
    return text


def parse_timestamp_ms(text: str) -> int:
    """Epoch ms of an ISO 8601 date-time (used for createdAt/updatedAt filters and cursors)."""
    return to_epoch_ms(parse_datetime(text))
