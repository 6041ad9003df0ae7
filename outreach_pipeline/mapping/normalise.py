"""Canonical forms of mapped values, so 'unchanged' means the same thing on both sides of a comparison.

Workbooks hands values back in its own wire formats (``" 2 May 2009"``, ``"100.00 GBP 0"``, ``"1"`` for a
checkbox, ``"[1,2]"`` for arrays); staging produces the same values from Outreach in other shapes. Both sides
go through :func:`normalise_value` before the planner compares them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import pandas as pd

from outreach_pipeline.clients.formats import parse_wb_currency, parse_wb_date, parse_wb_datetime
from outreach_pipeline.mapping.models import LinkTransform, PicklistTransform, Transform

TRUE_WORDS = frozenset({"true", "t", "on", "1", "yes", "y"})
FALSE_WORDS = frozenset({"false", "f", "off", "0", "no", "n"})


def is_blank(value: Any) -> bool:
    """True for None, NA/NaN, empty or whitespace-only strings."""
    if value is None:
        return True
    # Exact-type fast paths for the common cells (asked per record and field); subclasses take the general way.
    kind = type(value)
    if kind is str:
        return not value.strip()
    if kind is int or kind is bool:
        return False
    if kind is float:
        return value != value  # NaN
    if value is pd.NA:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, list | tuple | dict):
        return False
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def normalise_value(value: Any, transform: Transform) -> Hashable:
    """Return a canonical, hashable form of ``value`` for comparison under ``transform``.

    Unparseable values fall back to their stripped text, so they compare unequal to any valid value and
    the planner writes the staged (valid) value over them.

    Args:
        value: a staged value or a value read from Workbooks.
        transform: the field mapping's transform.

    Returns:
        None for blanks (False for booleans, where Workbooks shows blank as unticked), else the canonical form.
    """
    return normaliser_for(transform)(value)


def normaliser_for(transform: Transform) -> Callable[[Any], Hashable]:
    """``normalise_value`` with the transform's rules chosen once: for callers normalising many values of a field."""
    kind = transform.kind
    if kind == "boolean" or (isinstance(transform, PicklistTransform) and _bool_picklist(transform)):
        return _normalise_bool
    if kind in {"string_list"} or (isinstance(transform, LinkTransform) and transform.many):
        as_int = kind == "link"
        return lambda value: _normalise_list(value, as_int=as_int)
    convert = _NORMALISERS.get(kind, _normalise_text)

    def normalise(value: Any) -> Hashable:
        if is_blank(value):
            return None
        try:
            return convert(value)
        except (ValueError, TypeError, InvalidOperation, OverflowError):
            return _normalise_text(value)

    return normalise


def _bool_picklist(transform: PicklistTransform) -> bool:
    return all(isinstance(mapped, bool) for mapped in transform.values.values())


def _normalise_text(value: Any) -> str:
    return str(value).replace("\r\n", "\n").strip()


def _normalise_int(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("a boolean is not an integer")
    number = Decimal(str(value).strip().replace(",", ""))
    if number != number.to_integral_value():
        raise ValueError(f"{value!r} is not integral")
    return int(number)


def _normalise_bool(value: Any) -> bool | str:
    if is_blank(value):
        return False
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    return text


def _normalise_date(value: Any) -> str:
    if isinstance(value, datetime):
        return _as_utc(value).date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    text = str(value).strip()
    try:
        return parse_wb_date(text).isoformat()
    except ValueError:
        return _as_utc(pd.Timestamp(text).to_pydatetime()).date().isoformat()


def _normalise_datetime(value: Any) -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        moment = datetime.fromtimestamp(value, tz=UTC)
    elif isinstance(value, datetime):
        moment = _as_utc(value)
    else:
        text = str(value).strip()
        try:
            moment = parse_wb_datetime(text)
        except ValueError:
            moment = _as_utc(pd.Timestamp(text).to_pydatetime())
    # Workbooks keeps whole seconds; finer precision from Outreach must not look like a change.
    return moment.replace(microsecond=0).isoformat()


def _normalise_currency(value: Any) -> str:
    parsed = parse_wb_currency(str(value))
    return f"{parsed.amount.normalize():f} {parsed.code}"


def _normalise_list(value: Any, *, as_int: bool) -> tuple[Hashable, ...]:
    if is_blank(value):
        return ()
    if isinstance(value, str):
        value = _parse_wire_array(value)
    elif not isinstance(value, list | tuple):
        value = list(value)
    items = [None if is_blank(item) else item for item in value]
    if as_int:
        return tuple(None if item is None else _normalise_int(item) for item in items)
    return tuple(None if item is None else _normalise_text(item) for item in items)


def _parse_wire_array(text: str) -> list[Any]:
    """Parse Workbooks' ``"[a,b]"`` array form (or JSON) into a list of strings/numbers."""
    text = text.strip()
    try:
        parsed = json.loads(text)
        if isinstance(parsed, list):
            return parsed
    except json.JSONDecodeError:
        pass
    inner = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    return [part.strip() for part in inner.split(",")] if inner.strip() else []


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


_NORMALISERS = {
    "string": _normalise_text,
    "picklist": _normalise_text,
    "integer": _normalise_int,
    "link": _normalise_int,
    "wb_date": _normalise_date,
    "wb_datetime": _normalise_datetime,
    "wb_currency": _normalise_currency,
}


def normalise_link_key(value: Any) -> str | None:
    """Canonical text of a link-key value (Workbooks may return 17, "17" or "17.0")."""
    if is_blank(value):
        return None
    text = _normalise_text(value)
    try:
        return str(_normalise_int(text))
    except (ValueError, InvalidOperation):
        return text


def normalise_natural_key(value: Any) -> str | None:
    """Case-insensitive canonical text of a natural-key component (emails, names, websites)."""
    if is_blank(value):
        return None
    return " ".join(_normalise_text(value).split()).casefold()
