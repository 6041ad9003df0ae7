"""Workbooks CRM API client, sending requests exactly as the official binding (client_lib) does.

Every call is an HTTP POST to ``/<controller>.api?_dc=<ms>`` with a form body carrying ``_method``
(GET or PUT), ``client=api`` and ``_api_version=1``. Auth is an ``api_key`` on every request or a
``login.api`` session (cookie + ``_authenticity_token`` on writes) that is re-established once when
the server reports it expired; the client has no default credentials. It follows the official bindings
(github.com/workbooks/client_lib); the wire encoding of values, filters and batches is in ``workbooks_wire``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import requests
from pydantic import SecretStr

from outreach_pipeline.clients.credentials import MissingCredentials
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
from outreach_pipeline.clients.workbooks_wire import (
    FORM_CONTENT_TYPE,
    MAX_OBJECTS_PER_WRITE,
    NO_VALUE,
    NULL_VALUE,
    STALE_LOCK_MESSAGE,
    Filter,
    ObjectOutcome,
    WriteOp,
    encode_batch,
    encode_form,
    error_messages,
    filter_params,
    parse_batch_reply,
    wire_key,
)

REAL_WORKBOOKS_URL = "https://secure.workbooks.com"

LOOKUP_BATCH_SIZE = 100
#: Rows per read request: the documentation promises only that a `_limit` of 100 "can be expected to work",
#: and a server may cap larger pages silently, which would look like a complete answer.
MAX_PAGE_SIZE = 100
_SESSION_LOST = frozenset({"session_expired", "no_session", "no_session_found"})


# --------------------------------------------------------------------------- client


def _workbooks_error(response: requests.Response) -> tuple[str | None, str | None]:
    body = response.json()
    if not isinstance(body, dict):
        return None, None
    detail = body.get("failure_message") or body.get("flash") or "; ".join(error_messages(body.get("errors"))) or None
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
        base_url: ``https://secure.workbooks.com`` for the real service, or a sandbox's URL.
        api_key: Sent on every request. Used unless ``username`` is given.
        username: Log in with a session instead of an api key.
        password: Password for ``username``.
        logical_database_id: Database to select at login when the user has several.
        application_name: Stamped on created records' ``created_through`` (login sessions only).
        retry: Retry bounds.
        sleep: Pause function (inject in tests).
        clock: Epoch-seconds clock (inject in tests).

    Raises:
        MissingCredentials: Without an api key or a username, or with a username but no password.
    """

    def __init__(
        self,
        base_url: str,
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
        self.base_url = base_url.rstrip("/")
        self._password = SecretStr(password) if isinstance(password, str) else password
        self._api_key = SecretStr(api_key) if isinstance(api_key, str) else api_key
        if username:
            if self._password is None or not self._password.get_secret_value():
                raise MissingCredentials("WorkbooksClient", self.base_url, ["password"])
        elif self._api_key is None or not self._api_key.get_secret_value():
            raise MissingCredentials("WorkbooksClient", self.base_url, ["api_key"], alternative="username and password")
        self.username = username or None
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
                    data=encode_form(form), headers={"Content-Type": FORM_CONTENT_TYPE},
                    params={"_dc": self._dc()}, validate=validate,
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
                error_id=body.get("failure_reason"), detail="; ".join(error_messages(body.get("errors"))) or None,
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
        """Yield every matching record, paging with ``_start``/``_limit`` (at most 100 rows a page): the rows of
        ``iter_pages``."""
        for rows in self.iter_pages(controller, filters, select_columns, sort, page_size, match=match,
                                    count_total=count_total):
            yield from rows

    def iter_pages(
        self,
        controller: str,
        filters: Sequence[Filter] = (),
        select_columns: Iterable[str] = (),
        sort: Sequence[tuple[str, Literal["ASC", "DESC"]]] = (("id", "ASC"),),
        page_size: int = MAX_PAGE_SIZE,
        *,
        match: str = "and",
        count_total: bool = False,
    ) -> Iterator[list[dict[str, Any]]]:
        """Yield every matching record a page (one request) at a time, paging with ``_start``/``_limit``, so a
        caller can count a long read as it goes.

        Without ``count_total`` the last page is the first short one, so a full last page costs one more,
        empty, request; with it the reply's ``total`` says when the answer is complete. Sorting by a unique
        key (``id`` by default), or ending with one, keeps offset paging stable between pages.
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
            yield rows
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
