"""Workbooks CRM API client, sending requests exactly as the official binding (client_lib) does.

Every call is an HTTP POST to ``/<controller>.api?_dc=<ms>`` with a form body carrying ``_method``
(GET or PUT), ``client=api`` and ``_api_version=1``. Auth is an ``api_key`` on every request or a
``login.api`` session (cookie + ``_authenticity_token`` on writes) that is re-established once when
the server reports it expired. It follows the official bindings (github.com/workbooks/client_lib).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

import requests
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from outreach_pipeline.clients.formats import format_wb_date, format_wb_datetime
from outreach_pipeline.clients.http import (
    ApiError,
    AuthenticationError,
    ClockFn,
    HttpTransport,
    RequestStats,
    RetryPolicy,
    Service,
    SleepFn,
    ValidationFailed,
    WriteOutcomeUnknown,
)

REAL_WORKBOOKS_URL = "https://secure.workbooks.com"
SANDBOX_WORKBOOKS_URL = "http://127.0.0.1:8702"
SANDBOX_API_KEY = "sandbox-api-key"

MAX_OBJECTS_PER_WRITE = 100
"""The API guide: "no more than 100 objects per request"."""
LOOKUP_BATCH_SIZE = 100
#: Rows per read request: the documentation promises only that a `_limit` of 100 "can be expected to work",
#: and a server may cap larger pages silently, which would look like a complete answer.
MAX_PAGE_SIZE = 100
NO_VALUE = ":no_value:"
NULL_VALUE = ":null_value:"
STALE_LOCK_MESSAGE = "This record cannot be saved since it has already been updated elsewhere."
_SESSION_LOST = frozenset({"session_expired", "no_session", "no_session_found"})

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


def key_path(key: str) -> list[str]:
    """Split a field key into its nesting: ``org_lead_party[main_location[email]]`` ->
    ``["org_lead_party", "main_location", "email"]``."""
    parts = re.findall(r"[^\[\]]+", key)
    if not parts:
        raise ValueError(f"empty field key {key!r}")
    return parts


def wire_key(key: str) -> str:
    """The form-parameter name for a field key, nested as the binding writes it: ``a[b][c]``."""
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


def _messages(value: Any) -> list[str]:
    if value is None or value == "" or value == [] or value == {}:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [message for item in value for message in _messages(item)]
    if isinstance(value, dict):
        return [message for item in value.values() for message in _messages(item)]
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
            elif _messages(value):
                errors.setdefault(str(field), []).extend(_messages(value))
        return errors
    return {"base": _messages(raw)}


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
        whole_batch_errors = {"base": _messages(failures)}
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
        return _messages(failures[position]) if position < len(failures) else []
    if isinstance(failures, Mapping):
        own = failures.get(f"[{position}]", failures.get(str(position)))
        return _messages(own) if own is not None else _messages(failures)
    return _messages(failures) if failures else []


def _optional_int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


# --------------------------------------------------------------------------- client


def _workbooks_error(response: requests.Response) -> tuple[str | None, str | None]:
    body = response.json()
    if not isinstance(body, dict):
        return None, None
    detail = body.get("failure_message") or body.get("flash") or "; ".join(_messages(body.get("errors"))) or None
    return body.get("failure_reason"), detail


def _require_rows(body: Any) -> None:
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise ValueError("body has no top-level 'data' array")


def _require_object(body: Any) -> None:
    if not isinstance(body, dict):
        raise ValueError("body is not a JSON object")


@dataclass
class _Session:
    authenticity_token: SecretStr


class WorkbooksClient:
    """Client for the Workbooks API (real or sandbox).

    Args:
        base_url: ``https://secure.workbooks.com`` for the real service; the sandbox by default.
        api_key: Sent on every request. Used unless ``username`` is given; defaults to the sandbox key.
        username: Log in with a session instead of an api key.
        password: Password for ``username``.
        logical_database_id: Database to select at login when the user has several.
        application_name: Stamped on created records' ``created_through`` (login sessions only).
        retry: Retry bounds.
        sleep: Pause function (inject in tests).
        clock: Epoch-seconds clock (inject in tests).
    """

    def __init__(
        self,
        base_url: str = SANDBOX_WORKBOOKS_URL,
        *,
        api_key: SecretStr | str | None = None,
        username: str | None = None,
        password: SecretStr | str | None = None,
        logical_database_id: int | None = None,
        application_name: str = "outreach-pipeline",
        retry: RetryPolicy | None = None,
        sleep: SleepFn = time.sleep,
        clock: ClockFn = time.time,
    ) -> None:
        if username is not None and password is None:
            raise ValueError("WorkbooksClient: 'password' is required with 'username'")
        self.base_url = base_url.rstrip("/")
        self.username = username
        self._password = SecretStr(password) if isinstance(password, str) else password
        if username is None and api_key is None:
            api_key = SANDBOX_API_KEY
        self._api_key = SecretStr(api_key) if isinstance(api_key, str) else api_key
        self.logical_database_id = logical_database_id
        self.application_name = application_name
        self._session: _Session | None = None
        self._session_lock = threading.Lock()
        self.transport = HttpTransport(
            self.base_url, error_parser=_workbooks_error, retry=retry, sleep=sleep, clock=clock,
            service=Service.WORKBOOKS,
        )

    def __repr__(self) -> str:
        auth = f"username={self.username!r}" if self.username else "api_key=<redacted>"
        return f"WorkbooksClient(base_url={self.base_url!r}, {auth})"

    @property
    def stats(self) -> RequestStats:
        """Request counts for reporting "API requests used"."""
        return self.transport.stats

    def close(self) -> None:
        """Close pooled connections."""
        self.transport.close()

    # ----------------------------------------------------------------- transport

    def login(self) -> None:
        """Open a session with username/password (``POST /login.api``).

        Raises:
            AuthenticationError: On a rejected login; ``error_id`` holds Workbooks' ``failure_reason``
                (e.g. ``no_database_selection_made``: pass ``logical_database_id``).
        """
        if self.username is None or self._password is None:
            raise ValueError("login() needs username and password")
        form = [
            ("username", self.username),
            ("password", self._password.get_secret_value()),
            ("client", "api"),
            ("api_version", "1"),
            ("_application_name", self.application_name),
            ("_strict_attribute_checking", "true"),
        ]
        if self.logical_database_id is not None:
            form.append(("logical_database_id", str(self.logical_database_id)))
        self.transport.session.cookies.clear()
        # A login changes nothing a retry could duplicate, so it may be retried like a read.
        body = self.transport.request_json(
            "POST", "/login.api", idempotent=True, data=form, params={"_dc": self._dc()}, validate=_require_object
        )
        token = body.get("authenticity_token")
        if not isinstance(token, str) or not token:
            raise AuthenticationError(
                "login reply has no authenticity_token", method="POST", path="/login.api",
                error_id=body.get("failure_reason"), service=Service.WORKBOOKS,
            )
        self._session = _Session(authenticity_token=SecretStr(token))

    def _dc(self) -> str:
        # Cache-buster the official binding adds to every URL.
        return str(int(self.transport.clock() * 1000))

    def _call(
        self,
        controller: str,
        method: Literal["GET", "PUT"],
        params: Sequence[tuple[str, str]],
        *,
        validate: Any,
    ) -> Any:
        """POST ``params`` to ``/<controller>.api`` with ``_method``; re-login once on an expired session."""
        path = controller if controller.endswith(".api") else f"{controller}.api"
        for attempt in (1, 2):
            form = [("_method", method), ("client", "api"), ("_api_version", "1"), *self._auth_params(method), *params]
            try:
                return self.transport.request_json(
                    "POST", f"/{path}", idempotent=method == "GET", logical_method=method,
                    data=form, params={"_dc": self._dc()}, validate=validate,
                )
            except AuthenticationError as exc:
                if self.username is None or exc.error_id not in _SESSION_LOST or attempt == 2:
                    raise
                with self._session_lock:
                    self._session = None
        raise AssertionError("unreachable")  # pragma: no cover

    def _auth_params(self, method: str) -> list[tuple[str, str]]:
        if self.username is None:
            assert self._api_key is not None
            return [("api_key", self._api_key.get_secret_value())]
        with self._session_lock:
            if self._session is None:
                self.login()
            assert self._session is not None
            if method == "GET":
                return []
            return [("_authenticity_token", self._session.authenticity_token.get_secret_value())]

    # ----------------------------------------------------------------- reads

    def get_page(
        self,
        controller: str,
        *,
        filters: Sequence[Filter] = (),
        match: str = "and",
        select_columns: Iterable[str] = (),
        sort: Sequence[tuple[str, Literal["ASC", "DESC"]]] = (),
        start: int = 0,
        limit: int = 100,
        extra_params: Sequence[tuple[str, str]] = (),
    ) -> list[dict[str, Any]]:
        """One page of records (``_start``/``_limit``, ``__skip_total_rows=true``)."""
        rows, _ = self._read_page(
            controller, filters=filters, match=match, select_columns=select_columns, sort=sort, start=start,
            limit=limit, extra_params=extra_params, count_total=False,
        )
        return rows

    def _read_page(
        self,
        controller: str,
        *,
        filters: Sequence[Filter],
        match: str,
        select_columns: Iterable[str],
        sort: Sequence[tuple[str, Literal["ASC", "DESC"]]],
        start: int,
        limit: int,
        extra_params: Sequence[tuple[str, str]] = (),
        count_total: bool,
    ) -> tuple[list[dict[str, Any]], int | None]:
        params: list[tuple[str, str]] = [("_start", str(start)), ("_limit", str(limit))]
        if not count_total:
            params.append(("__skip_total_rows", "true"))
        params += filter_params(filters, match)
        params += [("_select_columns[]", wire_key(column)) for column in select_columns]
        for field, direction in sort:
            params += [("_sort[]", field), ("_dir[]", direction)]
        params += list(extra_params)
        body = self._call(controller, "GET", params, validate=_require_rows)
        if body.get("success") is False:
            raise ValidationFailed(
                "read reported failure", method="GET", path=f"/{controller}.api",
                error_id=body.get("failure_reason"), detail="; ".join(_messages(body.get("errors"))) or None,
                service=Service.WORKBOOKS,
            )
        total = body.get("total")
        return body["data"], (int(total) if count_total and isinstance(total, int | str) and str(total).isdigit() else None)

    def iter_records(
        self,
        controller: str,
        filters: Sequence[Filter] = (),
        select_columns: Iterable[str] = (),
        sort: Sequence[tuple[str, Literal["ASC", "DESC"]]] = (("id", "ASC"),),
        page_size: int = MAX_PAGE_SIZE,
        *,
        match: str = "and",
        count_total: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """Yield every matching record, paging with ``_start``/``_limit`` (at most 100 rows a page).

        Without ``count_total`` the last page is the first short one, so a full last page costs one more,
        empty, request; with it the reply's ``total`` says when the answer is complete. Sorting by a unique
        key (``id`` by default) keeps offset paging stable between pages.
        """
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1..{MAX_PAGE_SIZE}, got {page_size}")
        columns = list(select_columns)
        start = 0
        while True:
            rows, total = self._read_page(
                controller, filters=filters, match=match, select_columns=columns, sort=sort,
                start=start, limit=page_size, count_total=count_total,
            )
            yield from rows
            start += len(rows)
            if len(rows) < page_size or (total is not None and start >= total):
                return

    def lookup(
        self, controller: str, field: str, values: Iterable[Any], select_columns: Iterable[str] = ()
    ) -> list[dict[str, Any]]:
        """Records whose ``field`` equals any of ``values``, 100 values per request (an IN list each)."""
        unique = list(dict.fromkeys(value for value in values if value is not None and value != ""))
        columns = list(select_columns)
        found: list[dict[str, Any]] = []
        for offset in range(0, len(unique), LOOKUP_BATCH_SIZE):
            batch = unique[offset : offset + LOOKUP_BATCH_SIZE]
            # The reply's total proves the answer complete, so a lookup of 100 values takes one request.
            found.extend(
                self.iter_records(controller, [Filter(field=field, op="eq", value=batch)], columns, count_total=True)
            )
        return found

    # ----------------------------------------------------------------- writes

    def write_batch(self, controller: str, ops: Sequence[WriteOp]) -> list[ObjectOutcome]:
        """Create/update/delete records, 100 per request with per-object transactions.

        Not retried on 5xx/timeouts/dropped connections (a batch may have been committed).

        Returns:
            One outcome per op, in order.

        Raises:
            WriteOutcomeUnknown: For the batch whose reply was lost; ``completed`` holds the outcomes
                of the batches sent before it.
        """
        outcomes: list[ObjectOutcome] = []
        for offset in range(0, len(ops), MAX_OBJECTS_PER_WRITE):
            chunk = list(ops[offset : offset + MAX_OBJECTS_PER_WRITE])
            params = [*encode_batch(chunk), ("_per_object_transactions", "true")]
            try:
                body = self._call(controller, "PUT", params, validate=_require_object)
            except WriteOutcomeUnknown as exc:
                exc.completed = list(outcomes)
                raise
            try:
                outcomes.extend(parse_batch_reply(body, chunk, first_index=offset))
            except (ValueError, TypeError) as exc:
                unknown = WriteOutcomeUnknown(
                    "unreadable batch reply", method="PUT", path=f"/{controller}.api", detail=str(exc)
                )
                unknown.completed = list(outcomes)
                raise unknown from exc
        return outcomes

    def write_one(self, controller: str, op: WriteOp) -> ObjectOutcome:
        """Write a single object; raises when Workbooks rejects it.

        Raises:
            ValidationFailed: With the per-field errors in ``detail``.
        """
        outcome = self.write_batch(controller, [op])[0]
        if not outcome.ok:
            detail = "; ".join(f"{field}: {', '.join(messages)}" for field, messages in outcome.errors.items())
            raise ValidationFailed(f"{op.action} rejected", method="PUT", path=f"/{controller}.api", detail=detail,
                                   service=Service.WORKBOOKS)
        return outcome

    # ----------------------------------------------------------------- admin

    def metadata_types(self, class_names: Iterable[str] = ()) -> list[dict[str, Any]]:
        """Type metadata (fields, datatypes, associations), e.g. for ``Private::Crm::Person``."""
        params = [("class_names[]", name) for name in class_names]
        body = self._call("metadata/types", "GET", params, validate=_require_rows)
        return body["data"]

    def list_custom_fields(self, resource_type: str | None = None) -> list[dict[str, Any]]:
        """Custom field definitions, optionally for one ``resource_type`` (e.g. ``Private::Crm::Person``)."""
        filters = [Filter(field="resource_type", op="eq", value=resource_type)] if resource_type else []
        return list(self.iter_records("admin/custom_fields", filters))

    def create_custom_field(
        self, resource_type: str, title: str, data_type: str, **extra_fields: Any
    ) -> ObjectOutcome:
        """Create a custom field; the API name comes back as ``outcome.record["value_column_name"]``."""
        fields = {"resource_type": resource_type, "title": title, "data_type": data_type, "status": "Available"}
        return self.write_one("admin/custom_fields", WriteOp(action="create", fields={**fields, **extra_fields}))

    def create_custom_record_type(self, name: str, **fields: Any) -> ObjectOutcome:
        """Create a custom record type (e.g. "Outreach Sequences")."""
        return self.write_one("admin/custom_record_types", WriteOp(action="create", fields={"name": name, **fields}))

    def get_api_data(self, key: str) -> str | None:
        """The value stored under ``key`` in ``automation/api_data``, or None."""
        rows = list(self.iter_records("automation/api_data", [Filter(field="key", op="eq", value=key)]))
        return None if not rows else rows[0].get("value")

    def set_api_data(self, key: str, value: str) -> ObjectOutcome:
        """Store ``value`` under ``key`` (update when present, else create)."""
        rows = list(self.iter_records("automation/api_data", [Filter(field="key", op="eq", value=key)]))
        if rows:
            current = rows[0]
            op = WriteOp(
                action="update", id=int(current["id"]), lock_version=int(current["lock_version"]),
                fields={"value": value},
            )
        else:
            op = WriteOp(action="create", fields={"key": key, "value": value})
        return self.write_one("automation/api_data", op)


__all__ = [
    "LOOKUP_BATCH_SIZE",
    "MAX_OBJECTS_PER_WRITE",
    "NO_VALUE",
    "NULL_VALUE",
    "REAL_WORKBOOKS_URL",
    "SANDBOX_API_KEY",
    "SANDBOX_WORKBOOKS_URL",
    "STALE_LOCK_MESSAGE",
    "ApiError",
    "Filter",
    "ObjectOutcome",
    "WorkbooksClient",
    "WriteOp",
    "encode_batch",
    "filter_params",
    "parse_batch_reply",
]
