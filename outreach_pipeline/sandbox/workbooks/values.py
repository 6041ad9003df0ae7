"""Parse Workbooks wire values into stored Python values and render stored values back.

Workbooks formats (CL-README "Datatypes", "Dates and Times"): date `%e %b %Y` ("22 May 2009"),
datetime `%a %b %d %H:%M:%S %Z %Y` always UTC, currency `"value CODE flags"` ("100 GBP 0"),
boolean input `true/t/on/1/yes/y`, array `"[a,b]"`. Dates and datetimes also accept ISO 8601 and
epoch seconds, as the real API does for epoch integers.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation

from outreach_pipeline.sandbox.workbooks.schema import DataType, FieldSpec

TRUE_WORDS = frozenset({"true", "t", "on", "1", "yes", "y"})
FALSE_WORDS = frozenset({"false", "f", "off", "0", "no", "n", ""})
DEFAULT_CURRENCY_CODE = "GBP"
WORKBOOKS_DATETIME_FORMAT = "%a %b %d %H:%M:%S UTC %Y"
_CURRENCY_PATTERN = re.compile(r"^\s*(-?\d+(?:\.\d+)?)(?:\s+([A-Za-z]{3}))?(?:\s+(\d+))?\s*$")
_EPOCH_PATTERN = re.compile(r"^-?\d{9,11}$")


class FieldValueError(ValueError):
    """A value that does not fit its field; the message names neither record nor field (callers add them)."""


def parse_boolean(raw: str) -> bool:
    """Parse Workbooks boolean input (`true/t/on/1/yes/y`, and the matching false words)."""
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise FieldValueError(f"'{raw}' is not a boolean (use true/false, 1/0, yes/no)")


def parse_integer(raw: str) -> int:
    """Parse a whole number; `12.0` and `abc` are rejected."""
    try:
        return int(raw.strip())
    except ValueError as error:
        raise FieldValueError(f"'{raw}' is not an integer") from error


def parse_decimal(raw: str) -> float:
    """Parse a decimal number."""
    try:
        return float(Decimal(raw.strip()))
    except InvalidOperation as error:
        raise FieldValueError(f"'{raw}' is not a number") from error


def parse_datetime(raw: str) -> datetime:
    """Parse a Workbooks, ISO 8601 or epoch datetime into a naive UTC datetime."""
    text = raw.strip()
    if _EPOCH_PATTERN.match(text):
        return datetime.fromtimestamp(int(text), tz=UTC).replace(tzinfo=None)
    for parser in (_parse_workbooks_datetime, _parse_iso_datetime):
        parsed = parser(text)
        if parsed is not None:
            return parsed
    raise FieldValueError(f"'{raw}' is not a datetime (use e.g. 'Fri May 15 14:36:54 UTC 2009' or ISO 8601)")


def _parse_workbooks_datetime(text: str) -> datetime | None:
    try:
        return datetime.strptime(text, WORKBOOKS_DATETIME_FORMAT)
    except ValueError:
        return None


def _parse_iso_datetime(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def parse_date(raw: str) -> date:
    """Parse a Workbooks (`22 May 2009`), ISO or epoch date."""
    text = raw.strip()
    for pattern in ("%d %b %Y", "%d %B %Y", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, pattern).date()
        except ValueError:
            continue
    try:
        return parse_datetime(text).date()
    except FieldValueError as error:
        raise FieldValueError(f"'{raw}' is not a date (use e.g. '22 May 2009' or '2009-05-22')") from error


def parse_currency(raw: str) -> str:
    """Normalise `100`, `100 GBP` or `100 GBP 0` to the canonical `"100 GBP 0"`."""
    match = _CURRENCY_PATTERN.match(raw)
    if not match:
        raise FieldValueError(f"'{raw}' is not a currency amount (use e.g. '100 GBP 0')")
    amount, code, flags = match.groups()
    return f"{amount} {(code or DEFAULT_CURRENCY_CODE).upper()} {flags or 0}"


def currency_amount(value: str) -> float:
    """The numeric part of a canonical currency string."""
    return float(value.split(" ", 1)[0])


def parse_array(raw: str) -> str:
    """Accept the binding's `"[v1,v2]"` array form (a bare value becomes a one-element array)."""
    text = raw.strip()
    if text.startswith("[") and text.endswith("]"):
        return text
    return f"[{text}]"


def parse_picklist(raw: str, field: FieldSpec) -> str:
    """Accept only one of the field's picklist options."""
    if field.picklist and raw not in field.picklist:
        raise FieldValueError(f"'{raw}' is not one of the picklist values {list(field.picklist)}")
    return raw


def parse_value(raw: str, field: FieldSpec) -> object:
    """Convert one wire value to the value stored for `field`.

    Args:
        raw: the string as received in the request.
        field: the target field.

    Returns:
        The value to store (str, int, float, bool, date or naive UTC datetime).

    Raises:
        FieldValueError: the value does not fit the field's type or length.
    """
    parsed = _parse_by_type(raw, field)
    limit = field.max_length
    if limit is not None and isinstance(parsed, str) and len(parsed) > limit:
        raise FieldValueError(f"is too long ({len(parsed)} characters; the maximum is {limit})")
    return parsed


def _parse_by_type(raw: str, field: FieldSpec) -> object:
    match field.datatype:
        case DataType.BOOLEAN:
            return parse_boolean(raw)
        case DataType.INTEGER | DataType.FOREIGN_KEY:
            return parse_integer(raw)
        case DataType.DECIMAL:
            return parse_decimal(raw)
        case DataType.DATE:
            return parse_date(raw)
        case DataType.DATETIME:
            return parse_datetime(raw)
        case DataType.CURRENCY:
            return parse_currency(raw)
        case DataType.ARRAY:
            return parse_array(raw)
        case DataType.PICKLIST:
            return parse_picklist(raw, field)
        case _:
            return raw


def format_date(value: date) -> str:
    """Render `%e %b %Y`: the day is space-padded, e.g. `' 2 May 2009'`."""
    return f"{value.day:2d} {value:%b %Y}"


def format_datetime(value: datetime) -> str:
    """Render the Workbooks datetime format, always UTC."""
    return value.strftime(WORKBOOKS_DATETIME_FORMAT)


def render_value(value: object, field: FieldSpec) -> object:
    """Convert a stored value to its JSON wire form."""
    if value is None:
        return None
    if field.datatype is DataType.DATETIME and isinstance(value, datetime):
        return format_datetime(value)
    if field.datatype is DataType.DATE and isinstance(value, date):
        return format_date(value)
    if field.datatype is DataType.BOOLEAN:
        return bool(value)
    return value
