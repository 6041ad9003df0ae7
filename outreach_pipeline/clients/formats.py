"""Workbooks wire formats for dates, datetimes and currency amounts (pure; no HTTP).

The Workbooks API guide ("Datatypes", "Dates and Times") defines:

* date: ``%e %b %Y`` -> ``"22 May 2009"``, with a leading space below day 10 (``" 1 May 2009"``);
* datetime: ``%a %b %d %H:%M:%S %Z %Y``, always UTC -> ``"Fri May 15 14:36:54 UTC 2009"``;
* currency: ``"<value> <ISO code> <flags>"`` -> ``"100 GBP 0"`` (flags are sometimes omitted on output).

Month and day names are spelled out here rather than taken from ``strftime`` so the output never
depends on the process locale.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation

from pydantic import BaseModel, ConfigDict

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTH_NUMBER = {name.lower(): number for number, name in enumerate(_MONTHS, start=1)}

_DATE_PATTERN = re.compile(r"^\s*(\d{1,2})\s+([A-Za-z]{3})\s+(\d{4})\s*$")
_DATETIME_PATTERN = re.compile(
    r"^\s*([A-Za-z]{3})\s+([A-Za-z]{3})\s+(\d{1,2})\s+(\d{2}):(\d{2}):(\d{2})\s+(UTC|GMT)\s+(\d{4})\s*$"
)
_CURRENCY_PATTERN = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s+([A-Z]{3})(?:\s+(\d+))?\s*$")


class WorkbooksCurrency(BaseModel):
    """A Workbooks currency value.

    Attributes:
        amount: Exact decimal amount.
        code: ISO 4217 code, e.g. ``GBP``.
        flags: Workbooks' trailing flags field (0 in every documented example).
    """

    model_config = ConfigDict(frozen=True)

    amount: Decimal
    code: str
    flags: int = 0


def format_wb_date(value: date) -> str:
    """Format a date as Workbooks ``%e %b %Y``, e.g. ``"22 May 2009"`` or ``" 1 May 2009"``.

    Args:
        value: A date (a datetime is reduced to its date).

    Returns:
        The Workbooks date string.
    """
    if isinstance(value, datetime):
        value = value.date()
    return f"{value.day:>2} {_MONTHS[value.month - 1]} {value.year:04d}"


def parse_wb_date(text: str) -> date:
    """Parse a Workbooks date; accepts the leading space (``" 1 May 2009"``) and its absence.

    Args:
        text: The date string.

    Returns:
        The date.

    Raises:
        ValueError: When ``text`` is not a Workbooks date; the message quotes it.
    """
    match = _DATE_PATTERN.match(text or "")
    month = _MONTH_NUMBER.get(match.group(2).lower()) if match else None
    if match is None or month is None:
        raise ValueError(f"not a Workbooks date (expected like '22 May 2009'): {text!r}")
    return date(int(match.group(3)), month, int(match.group(1)))


def format_wb_datetime(value: datetime) -> str:
    """Format a tz-aware datetime as Workbooks ``%a %b %d %H:%M:%S %Z %Y`` in UTC.

    Args:
        value: A timezone-aware datetime; it is converted to UTC.

    Returns:
        E.g. ``"Fri May 15 14:36:54 UTC 2009"``.

    Raises:
        ValueError: For a naive datetime, whose instant is ambiguous.
    """
    if value.tzinfo is None:
        raise ValueError(f"a Workbooks datetime needs a timezone-aware value, got naive {value.isoformat()}")
    utc = value.astimezone(UTC)
    return (
        f"{_WEEKDAYS[utc.weekday()]} {_MONTHS[utc.month - 1]} {utc.day:02d} "
        f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d} UTC {utc.year:04d}"
    )


def parse_wb_datetime(text: str) -> datetime:
    """Parse a Workbooks datetime into a tz-aware UTC datetime.

    Args:
        text: E.g. ``"Fri May 15 14:36:54 UTC 2009"``.

    Returns:
        The UTC datetime.

    Raises:
        ValueError: When ``text`` is not a Workbooks datetime; the message quotes it.
    """
    match = _DATETIME_PATTERN.match(text or "")
    month = _MONTH_NUMBER.get(match.group(2).lower()) if match else None
    if match is None or month is None:
        raise ValueError(f"not a Workbooks datetime (expected like 'Fri May 15 14:36:54 UTC 2009'): {text!r}")
    _, _, day, hour, minute, second, _, year = match.groups()
    return datetime(int(year), month, int(day), int(hour), int(minute), int(second), tzinfo=UTC)


def format_wb_currency(amount: Decimal | int | float | str, code: str, flags: int = 0) -> str:
    """Format a Workbooks currency value, e.g. ``"100 GBP 0"``.

    Args:
        amount: The amount; floats go through ``str`` so 0.1 stays 0.1.
        code: ISO 4217 code (three upper-case letters).
        flags: Workbooks' flags field.

    Returns:
        The currency string.

    Raises:
        ValueError: For a non-numeric amount or a malformed code.
    """
    if not re.fullmatch(r"[A-Z]{3}", code or ""):
        raise ValueError(f"currency code must be three upper-case letters, got {code!r}")
    try:
        decimal = Decimal(str(amount))
    except InvalidOperation as exc:
        raise ValueError(f"currency amount is not a number: {amount!r}") from exc
    if not decimal.is_finite():
        raise ValueError(f"currency amount is not finite: {amount!r}")
    # Integral amounts print without a trailing ".0"/exponent, as Workbooks shows them.
    text = f"{decimal.quantize(Decimal(1))}" if decimal == decimal.to_integral_value() else f"{decimal.normalize():f}"
    return f"{text} {code} {flags}"


def parse_wb_currency(text: str) -> WorkbooksCurrency:
    """Parse ``"100 GBP 0"`` (or ``"12500000 GBP"``, flags omitted) into a :class:`WorkbooksCurrency`.

    Args:
        text: The currency string.

    Returns:
        The parsed value.

    Raises:
        ValueError: When ``text`` is not a Workbooks currency value; the message quotes it.
    """
    match = _CURRENCY_PATTERN.match(text or "")
    if match is None:
        raise ValueError(f"not a Workbooks currency value (expected like '100 GBP 0'): {text!r}")
    amount, code, flags = match.groups()
    return WorkbooksCurrency(amount=Decimal(amount), code=code, flags=int(flags or 0))
