"""The Workbooks wire format: form encoding of values, filters and square-array batch writes, and batch replies.

This is how the official binding (github.com/workbooks/client_lib) spells a request: values as strings
(booleans 1/0, ``:null_value:`` for null), nested field keys as ``a[b][c]``, filter rows as the parallel
``_ff[]``/``_ft[]``/``_fc[]`` arrays, and a batch as one array per key with ``:no_value:`` where an object
does not set a key another sets. Replies come back as one typed outcome per object. No HTTP here.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import quote_plus

from pydantic import BaseModel, ConfigDict, Field, model_validator

from outreach_pipeline.clients.formats import format_wb_date, format_wb_datetime

MAX_OBJECTS_PER_WRITE = 100
"""The API guide: "no more than 100 objects per request"."""
NO_VALUE = ":no_value:"
NULL_VALUE = ":null_value:"
STALE_LOCK_MESSAGE = "This record cannot be saved since it has already been updated elsewhere."

FilterOp = Literal[
    "eq", "ne", "gt", "ge", "lt", "le", "bg", "nbg", "ct", "nct", "blank", "not_blank", "true", "false",
    "today", "ge_today", "gt_today", "le_today", "lt_today", "between", "not_between",
]
VALUELESS_OPS = frozenset({"blank", "not_blank", "true", "false", "today", "ge_today", "gt_today", "le_today", "lt_today"})
RANGE_OPS = frozenset({"between", "not_between"})
_FILTER_EXPRESSION = re.compile(r"^(\s*(\d+|AND|OR|XOR|NOT|!|\(|\))\s*)+$", re.IGNORECASE)


# --------------------------------------------------------------------------- value encoding


def encode_value(value: Any) -> str:
    """Encode one value the way Workbooks reads it (booleans 1/0, dates and datetimes in its formats,
    arrays as ``[a,b]``, None as ``:null_value:``)."""
    if value is None:
        return NULL_VALUE
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, datetime):
        return format_wb_datetime(value)
    if isinstance(value, date):
        return format_wb_date(value)
    if isinstance(value, list | tuple):
        return "[" + ",".join(str(item) for item in value) + "]"
    if isinstance(value, Decimal | int | float | str):
        return str(value)
    raise TypeError(f"cannot encode {type(value).__name__} for Workbooks: {value!r}")


#: What `quote_plus` leaves as it is: a value made only of these is its own encoding.
_URL_SAFE = re.compile(r"[A-Za-z0-9_.~-]*")
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


def encode_form(params: Sequence[tuple[str, str]]) -> bytes:
    """The ``application/x-www-form-urlencoded`` body of `params`, byte for byte as requests encodes a list of
    pairs (``urllib.parse.urlencode``, ``quote_plus``; None values left out as requests leaves them out).

    A batch body holds thousands of pairs, mostly repeated keys and plain values: keys are quoted once per
    name and values that need no quoting are taken as they are, which costs a fraction of quoting every pair.
    """
    parts: list[str] = []
    for key, value in params:
        if value is None:
            continue
        text = value if isinstance(value, str) else str(value)
        parts.append(f"{_quoted_name(key)}={text if _URL_SAFE.fullmatch(text) else quote_plus(text)}")
    return "&".join(parts).encode("ascii")


@functools.lru_cache(maxsize=4096)
def _quoted_name(key: str) -> str:
    return quote_plus(key)


def key_path(key: str) -> list[str]:
    """Split a field key into its nesting: ``org_lead_party[main_location[email]]`` ->
    ``["org_lead_party", "main_location", "email"]``."""
    parts = re.findall(r"[^\[\]]+", key)
    if not parts:
        raise ValueError(f"empty field key {key!r}")
    return parts


@functools.lru_cache(maxsize=4096)
def wire_key(key: str) -> str:
    """The form-parameter name for a field key, nested as the binding writes it: ``a[b][c]``.

    Cached: a batch asks it for every key of every object, and a mapping has a few dozen keys.
    """
    first, *rest = key_path(key)
    return first + "".join(f"[{part}]" for part in rest)


def flatten_fields(fields: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts into bracketed keys: ``{"main_location": {"email": x}}`` -> ``{"main_location[email]": x}``."""
    flat: dict[str, Any] = {}
    for key, value in fields.items():
        name = f"{prefix}[{key}]" if prefix else key
        if isinstance(value, Mapping):
            flat.update(flatten_fields(value, name))
        else:
            flat[wire_key(name)] = value
    return flat


# --------------------------------------------------------------------------- filters


class Filter(BaseModel):
    """One Workbooks filter row (``_ff[]``/``_ft[]``/``_fc[]``).

    Attributes:
        field: Field name, brackets allowed (``main_location[email]``).
        op: Filter type, validated against the documented list.
        value: Criteria. ``eq``/``ne`` with a list become an IN list (commas escaped as ``\\,``);
            ``between`` takes a pair; value-less types ignore it.
    """

    model_config = ConfigDict(frozen=True)

    field: str
    op: FilterOp
    value: Any = None

    @model_validator(mode="after")
    def _check_value(self) -> Filter:
        if self.op in RANGE_OPS and not (isinstance(self.value, list | tuple) and len(self.value) == 2):
            raise ValueError(f"filter on '{self.field}': '{self.op}' needs a [low, high] pair, got {self.value!r}")
        if isinstance(self.value, list | tuple) and self.op not in RANGE_OPS | {"eq", "ne"}:
            raise ValueError(f"filter on '{self.field}': '{self.op}' does not accept a list")
        if isinstance(self.value, list | tuple) and self.op in {"eq", "ne"} and not self.value:
            raise ValueError(f"filter on '{self.field}': empty value list")
        if self.op not in VALUELESS_OPS and self.value is None:
            raise ValueError(f"filter on '{self.field}': '{self.op}' needs a value")
        return self

    def criteria(self) -> str:
        """The ``_fc[]`` string."""
        if self.op in VALUELESS_OPS:
            return ""  # still sent: the parallel arrays must stay aligned
        if self.op in RANGE_OPS:
            return json.dumps([encode_value(item) for item in self.value])
        if isinstance(self.value, list | tuple):
            return ",".join(encode_value(item).replace(",", "\\,") for item in self.value)
        return encode_value(self.value)


def filter_params(filters: Sequence[Filter], match: str = "and") -> list[tuple[str, str]]:
    """Encode filters plus the ``_fm`` match expression.

    Args:
        filters: The filter rows (numbered from 1 in ``match``).
        match: ``and``, ``or`` or an expression such as ``(1 OR 2) AND 3``.

    Raises:
        ValueError: For an expression with unknown tokens or filter numbers out of range.
    """
    params: list[tuple[str, str]] = []
    for row in filters:
        params += [("_ff[]", wire_key(row.field)), ("_ft[]", row.op), ("_fc[]", row.criteria())]
    if not filters:
        return params
    if match.lower() not in {"and", "or"}:
        if not _FILTER_EXPRESSION.match(match):
            raise ValueError(f"invalid filter expression {match!r}")
        numbers = [int(number) for number in re.findall(r"\d+", match)]
        if any(not 1 <= number <= len(filters) for number in numbers):
            raise ValueError(f"filter expression {match!r} refers to a filter outside 1..{len(filters)}")
    params.append(("_fm", match))
    return params


# --------------------------------------------------------------------------- batch writes


class WriteOp(BaseModel):
    """One object in a batch write.

    Attributes:
        action: ``create``, ``update`` or ``delete``.
        fields: Field values (nested dicts or bracketed keys); None means "set to null".
        id: Required for update/delete.
        lock_version: Required for update/delete (optimistic locking).
    """

    model_config = ConfigDict(frozen=True)

    action: Literal["create", "update", "delete"]
    fields: dict[str, Any] = Field(default_factory=dict)
    id: int | None = None
    lock_version: int | None = None

    @model_validator(mode="after")
    def _check_identity(self) -> WriteOp:
        if self.action != "create" and (self.id is None or self.lock_version is None):
            raise ValueError(f"{self.action} needs both 'id' and 'lock_version' (id={self.id})")
        return self


class ObjectOutcome(BaseModel):
    """What happened to one WriteOp.

    Attributes:
        index: Position of the op in the list given to ``write_batch``.
        action: The op's action.
        ok: Whether Workbooks saved it.
        id: Record id (new id for creates).
        lock_version: The record's lock_version after the write.
        errors: Messages by field (``"[]"``/``"base"`` for record-level ones).
        stale_lock_version: The write lost an optimistic-locking race; re-read and re-plan.
        record: The affected object as returned (creates return every attribute).
    """

    index: int
    action: Literal["create", "update", "delete"]
    ok: bool
    id: int | None = None
    lock_version: int | None = None
    errors: dict[str, list[str]] = Field(default_factory=dict)
    stale_lock_version: bool = False
    record: dict[str, Any] = Field(default_factory=dict)


_METHOD_FOR_ACTION = {"create": "POST", "update": "PUT", "delete": "DELETE"}


def encode_batch(ops: Sequence[WriteOp]) -> list[tuple[str, str]]:
    """Square-array form body for one batch (no more than 100 ops) plus its selecting filter.

    Every object supplies every key: ``:no_value:`` where it does not set a key another object sets,
    keys in one sorted order for all objects (as the binding does).
    """
    if len(ops) > MAX_OBJECTS_PER_WRITE:
        raise ValueError(f"a Workbooks batch holds at most {MAX_OBJECTS_PER_WRITE} objects, got {len(ops)}")
    flat = [flatten_fields(op.fields) for op in ops]
    for index, fields in enumerate(flat):
        reserved = {"id", "lock_version", "__method"} & fields.keys()
        if reserved:
            raise ValueError(f"write op {index}: field(s) {sorted(reserved)} are set from the op, not from fields")
    keys = sorted(set().union(*flat)) if flat else []
    params: list[tuple[str, str]] = []
    params += [("__method[]", _METHOD_FOR_ACTION[op.action]) for op in ops]
    params += [("id[]", str(op.id or 0)) for op in ops]
    params += [("lock_version[]", str(op.lock_version or 0)) for op in ops]
    for key in keys:
        for index, fields in enumerate(flat):
            try:
                encoded = encode_value(fields[key]) if key in fields else NO_VALUE
            except (TypeError, ValueError) as exc:
                raise ValueError(f"write op {index}: field '{key}': {exc}") from exc
            params.append((f"{key}[]", encoded))
    for op in ops:
        params += [("_ff[]", "id"), ("_ft[]", "eq"), ("_fc[]", str(op.id or 0))]
    params.append(("_fm", "or"))
    return params


def error_messages(value: Any) -> list[str]:
    """Every message in one of Workbooks' error values (a string, or lists and objects of them), in order."""
    if value is None or value == "" or value == [] or value == {}:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [message for item in value for message in error_messages(item)]
    if isinstance(value, dict):
        return [message for item in value.values() for message in error_messages(item)]
    return [str(value)]


def _errors_by_field(raw: Any) -> dict[str, list[str]]:
    """Normalise Workbooks' error shapes (dict field->str|list, nested ``{"[]": {...}}``, list) to field->messages."""
    if not raw:
        return {}
    if isinstance(raw, dict):
        errors: dict[str, list[str]] = {}
        for field, value in raw.items():
            if isinstance(value, dict) and field in ("[]", ""):
                for inner_field, inner in _errors_by_field(value).items():
                    errors.setdefault(inner_field, []).extend(inner)
            elif error_messages(value):
                errors.setdefault(str(field), []).extend(error_messages(value))
        return errors
    return {"base": error_messages(raw)}


def parse_batch_reply(body: Mapping[str, Any], ops: Sequence[WriteOp], first_index: int = 0) -> list[ObjectOutcome]:
    """One outcome per op, in order, from a batch reply.

    Handles the per-object shape (``affected_objects`` + ``affected_object_information``), the
    all-or-nothing failure shape (``affected_object_errors`` / top-level ``errors``) and ``failures``.

    Raises:
        ValueError: When the reply cannot be matched to the ops.
    """
    objects = body.get("affected_objects") or []
    infos = body.get("affected_object_information") or []
    object_errors = body.get("affected_object_errors") or []
    failures = body.get("failures")
    whole_batch_errors = _errors_by_field(body.get("errors")) if not infos else {}
    if failures and not whole_batch_errors and not infos:
        whole_batch_errors = {"base": error_messages(failures)}
    succeeded = bool(body.get("success"))
    outcomes: list[ObjectOutcome] = []
    for position, op in enumerate(ops):
        record = objects[position] if position < len(objects) and isinstance(objects[position], dict) else {}
        info = infos[position] if position < len(infos) and isinstance(infos[position], dict) else None
        if info is not None:
            errors = _errors_by_field(info.get("errors"))
            ok = bool(info.get("success", not errors)) and not errors
            if not ok and not errors:
                # The documentation puts failure diagnostics (a stale lock_version among them) under
                # `failures`; an object marked failed with no errors of its own takes them from there.
                errors = {"base": _failures_for(failures, position) or ["Workbooks reported a failure without a reason"]}
        else:
            per_object = object_errors[position] if position < len(object_errors) else None
            errors = _errors_by_field(per_object) or dict(whole_batch_errors)
            ok = succeeded and not errors and bool(record)
            if not ok and not errors:
                errors = {"base": ["Workbooks reported no outcome for this object"]}
        all_messages = [message for messages in errors.values() for message in messages]
        outcomes.append(
            ObjectOutcome(
                index=first_index + position,
                action=op.action,
                ok=ok,
                id=_optional_int(record.get("id")) or (op.id if op.action != "create" else None),
                lock_version=_optional_int(record.get("lock_version")),
                errors=errors,
                stale_lock_version=any(STALE_LOCK_MESSAGE in message for message in all_messages),
                record=record,
            )
        )
    return outcomes


def _failures_for(failures: Any, position: int) -> list[str]:
    """Messages of `failures` that belong to the object at `position` (a list, or keys like "[3]")."""
    if isinstance(failures, list):
        return error_messages(failures[position]) if position < len(failures) else []
    if isinstance(failures, Mapping):
        own = failures.get(f"[{position}]", failures.get(str(position)))
        return error_messages(own) if own is not None else error_messages(failures)
    return error_messages(failures) if failures else []


def _optional_int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None
