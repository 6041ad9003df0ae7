"""Outreach REST API v2 client: OAuth2 refresh with token persistence, cursor paging, windowed reads, writes.

Works unchanged against ``https://api.outreach.io`` and against the local sandbox; either way it must be
given the app's credentials: it has no defaults, so it never sends one service's credentials to another.
It follows the published API (https://developers.outreach.io/api/making-requests/). Records come back
typed (``clients.outreach_records``); tokens persist through a store (``clients.tokens``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from pydantic import SecretStr

from outreach_pipeline.clients.credentials import MissingCredentials
from outreach_pipeline.clients.http import (
    ApiError,
    AuthenticationError,
    ClockFn,
    HttpTransport,
    MalformedResponse,
    RateLimitPacer,
    RequestStats,
    RetryPolicy,
    ServerError,
    Service,
    SleepFn,
)
from outreach_pipeline.clients.outreach_records import (
    OutreachPage,
    OutreachRecord,
    RejectedResource,
    ResourceRef,
    format_outreach_timestamp,
    parse_page,
    parse_resource,
    write_resource,
)
from outreach_pipeline.clients.outreach_schema import OPENAPI_PATH, OutreachSchema, parse_openapi
from outreach_pipeline.clients.outreach_wire import (
    UNAUTHORIZED_SCOPE_ERROR,
    MissingScope,
    bearer,
    outreach_error,
    query_value,
    require_collection,
    require_resource,
    require_token,
    scope_for_request,
    token_scopes,
    with_query,
)
from outreach_pipeline.clients.tokens import MemoryTokenStore, StoredTokens, TokenStore

__all__ = ["API_PREFIX", "JSON_API", "MAX_PAGE_SIZE", "REAL_OUTREACH_URL", "UNAUTHORIZED_SCOPE_ERROR", "MissingScope",
           "OutreachClient", "outreach_error", "require_token", "scope_for_request", "token_scopes"]

REAL_OUTREACH_URL = "https://api.outreach.io"

API_PREFIX = "/api/v2"
JSON_API = "application/vnd.api+json"
MAX_PAGE_SIZE = 1000
TOKEN_REFRESH_MARGIN_SECONDS = 300.0
"""Refresh this long before expiry so a long page fetch never starts with a nearly dead token."""


# --------------------------------------------------------------------------- client


class OutreachClient:
    """Client for Outreach API v2 (real or sandbox).

    Args:
        base_url: ``https://api.outreach.io`` for the real service, or a sandbox's URL.
        client_id: OAuth client id.
        client_secret: OAuth client secret.
        redirect_uri: The app's registered redirect URI (sent on refresh, as tap-outreach does).
        refresh_token: Bootstrap refresh token; a token already in ``token_store`` takes precedence,
            because the configured one has probably been rotated away since.
        token_store: Where rotated refresh tokens and the current access token are persisted (memory by
            default). Clients sharing a store reuse one access token until it nears expiry.
        retry: Retry bounds.
        sleep: Pause function (inject in tests).
        clock: Epoch-seconds clock (inject in tests).

    Raises:
        MissingCredentials: When the client id, client secret or redirect URI is missing or empty, or
            there is no refresh token (configured or in the store); it names every one missing.
    """

    def __init__(
        self,
        base_url: str,
        *,
        client_id: str | None = None,
        client_secret: SecretStr | str | None = None,
        redirect_uri: str | None = None,
        refresh_token: SecretStr | str | None = None,
        token_store: TokenStore | None = None,
        retry: RetryPolicy | None = None,
        sleep: SleepFn = time.sleep,
        clock: ClockFn = time.time,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        secret = SecretStr(client_secret) if isinstance(client_secret, str) else client_secret
        self.token_store: TokenStore = token_store or MemoryTokenStore()
        configured = SecretStr(refresh_token) if isinstance(refresh_token, str) else refresh_token
        if configured is not None and not configured.get_secret_value():
            configured = None
        self._configured_refresh_token = configured
        self._refresh_token: SecretStr | None = configured
        self._access_token: SecretStr | None = None
        self._access_expires_at = 0.0
        self._scopes: tuple[str, ...] | None = None
        stored = self.token_store.load()
        if stored is not None:
            self._adopt(stored)
        missing = [
            name
            for name, value in (
                ("client_id", client_id),
                ("client_secret", secret.get_secret_value() if secret is not None else None),
                ("redirect_uri", redirect_uri),
                ("refresh_token", self._refresh_token.get_secret_value() if self._refresh_token else None),
            )
            if not value
        ]
        if missing or client_id is None or secret is None or redirect_uri is None:
            raise MissingCredentials("OutreachClient", self.base_url, missing)
        self.client_id = client_id
        self.client_secret = secret
        self.redirect_uri = redirect_uri
        self._token_lock = threading.Lock()
        self.transport = HttpTransport(
            self.base_url,
            error_parser=outreach_error,
            retry=retry,
            sleep=sleep,
            clock=clock,
            pacer=RateLimitPacer(),
            service=Service.OUTREACH,
        )

    def __repr__(self) -> str:
        return f"OutreachClient(base_url={self.base_url!r}, client_id={self.client_id!r})"

    @property
    def stats(self) -> RequestStats:
        """Request counts for reporting "API requests used"."""
        return self.transport.stats

    def close(self) -> None:
        """Close pooled connections."""
        self.transport.close()

    # ----------------------------------------------------------------- auth

    def _refresh_access_token(self) -> None:
        """Exchange the refresh token; persist the rotated one before the new access token is used."""
        assert self._refresh_token is not None
        form = {
            "grant_type": "refresh_token",
            "client_id": self.client_id,
            "client_secret": self.client_secret.get_secret_value(),
            "redirect_uri": self.redirect_uri,
            "refresh_token": self._refresh_token.get_secret_value(),
        }
        try:
            # Safe to retry: Outreach keeps an old refresh token valid after rotation (until 14 days
            # or 100 newer tokens), so a lost reply does not burn it.
            body = self.transport.request_json(
                "POST", "/oauth/token", data=form, idempotent=True, validate=require_token
            )
        except ApiError as exc:
            configured = self._configured_refresh_token
            if (
                exc.status in (400, 401)
                and configured is not None
                and configured.get_secret_value() != self._refresh_token.get_secret_value()
            ):
                # The stored token may belong to an authorisation that was since replaced (a new
                # grant configured by the user, or a reset sandbox): fall back to the configured one.
                self._refresh_token = configured
                self._refresh_access_token()
                return
            if exc.status in (400, 401, 403):
                raise AuthenticationError(
                    "token refresh rejected; the app must be re-authorised",
                    method="POST",
                    path="/oauth/token",
                    status=exc.status,
                    error_id=exc.error_id,
                    detail=exc.detail,
                    service=Service.OUTREACH,
                ) from None
            raise
        rotated = body.get("refresh_token")
        if isinstance(rotated, str) and rotated:
            self._refresh_token = SecretStr(rotated)
        self._access_token = SecretStr(body["access_token"])
        self._access_expires_at = self.transport.clock() + float(body.get("expires_in") or 7200)
        self._scopes = token_scopes(body.get("scope")) or self._scopes
        # Saved before first use: the rotated refresh token must survive a crash, and other clients of
        # the store take the access token instead of minting their own.
        self.token_store.save(
            StoredTokens(
                refresh_token=self._refresh_token,
                access_token=self._access_token,
                access_token_expires_at=self._access_expires_at,
                scopes=self._scopes,
            )
        )

    def _adopt(self, stored: StoredTokens) -> None:
        self._refresh_token = stored.refresh_token
        self._access_token = stored.access_token
        self._access_expires_at = stored.access_token_expires_at or 0.0
        self._scopes = stored.scopes

    def granted_scopes(self) -> tuple[str, ...] | None:
        """The scopes Outreach granted the current token (minting one if none is held); None if it did not say."""
        self._current_access_token()
        return self._scopes

    def _usable_access_token(self, rejected: SecretStr | None) -> SecretStr | None:
        """The held access token unless it is missing, within the refresh margin of expiry, or ``rejected``."""
        token = self._access_token
        if token is None or self.transport.clock() >= self._access_expires_at - TOKEN_REFRESH_MARGIN_SECONDS:
            return None
        if rejected is not None and token.get_secret_value() == rejected.get_secret_value():
            return None
        return token

    def _current_access_token(self, *, rejected: SecretStr | None = None) -> SecretStr:
        """An access token not near expiry and not ``rejected``, minting one only when no client has.

        Args:
            rejected: A token the API just answered 401 to; it is never returned again.
        """
        with self._token_lock:
            usable = self._usable_access_token(rejected)
            if usable is not None:
                return usable
            with self.token_store.refresh_lock():
                # Another client of the store may have minted while we waited: reuse its token.
                stored = self.token_store.load()
                if stored is not None:
                    self._adopt(stored)
                usable = self._usable_access_token(rejected)
                if usable is None:
                    self._refresh_access_token()
                    usable = self._access_token
            assert usable is not None
            return usable

    def _call(self, method: str, path_or_url: str, *, idempotent: bool, **kwargs: Any) -> Any:
        """An authenticated request; a 401 triggers one token refresh and one resend."""
        headers = {"Accept": JSON_API, **kwargs.pop("headers", {})}
        access_token = self._current_access_token()
        try:
            return self.transport.request_json(
                method, path_or_url, idempotent=idempotent, headers={**headers, **bearer(access_token)}, **kwargs
            )
        except AuthenticationError as exc:
            if exc.status == 403 and exc.error_id == UNAUTHORIZED_SCOPE_ERROR:
                raise MissingScope.of(exc) from None
            if exc.status != 401:
                raise
        # A 401 is rejected before any work, so even a write is safe to resend once.
        renewed = self._current_access_token(rejected=access_token)
        return self.transport.request_json(
            method, path_or_url, idempotent=idempotent, headers={**headers, **bearer(renewed)}, **kwargs
        )

    # ----------------------------------------------------------------- reads

    def iter_documents(self, path: str, params: Mapping[str, Any] | None = None) -> Iterator[OutreachPage]:
        """Yield pages of a collection, following absolute ``links.next`` until it is absent.

        A 502 halves ``page[size]`` and retries the same page (large bodies trip Outreach's gateway),
        down to 1; at size 1 the ordinary retry rules apply.

        Args:
            path: ``/api/v2/<resource>`` or ``<resource>``.
            params: Query parameters for the first request (later pages carry them in ``links.next``); a
                list value repeats its key once per item (``filter[emails][]`` with ``newFilterSyntax``).
        """
        url = self._api_url(path)
        if params:
            url = with_query(url, {
                key: [str(item) for item in value] if isinstance(value, list | tuple) else str(value)
                for key, value in params.items()
            })
        while url:
            # The parsed body is not kept across the yield: a 1,000-prospect page is tens of MB of objects.
            page = parse_page(self._get_collection(url), url)
            yield page
            url = page.next_url

    def _get_collection(self, url: str) -> Any:
        while True:
            page_size = query_value(url, "page[size]")
            size = int(page_size) if page_size and page_size.isdigit() else None
            halvable = size is not None and size > 1
            try:
                return self._call(
                    "GET", url, idempotent=True, validate=require_collection,
                    fail_fast_statuses=frozenset({502}) if halvable else frozenset(),
                )
            except ServerError as exc:
                if exc.status != 502 or not halvable or size is None:
                    raise
                url = with_query(url, {"page[size]": str(max(1, size // 2))})

    def iter_pages(self, path: str, params: Mapping[str, Any] | None = None) -> Iterator[list[OutreachRecord]]:
        """Yield each page's records (see :meth:`iter_documents`)."""
        for page in self.iter_documents(path, params):
            yield page.records

    def iter_records(self, path: str, params: Mapping[str, Any] | None = None) -> Iterator[OutreachRecord]:
        """Yield every record of a collection read."""
        for page in self.iter_documents(path, params):
            yield from page.records

    def iter_window(
        self,
        resource: str,
        start: datetime,
        end: datetime,
        *,
        page_size: int = MAX_PAGE_SIZE,
        include: Iterable[str] = (),
        extra_params: Mapping[str, str] | None = None,
    ) -> Iterator[OutreachPage]:
        """Yield pages of records with ``start <= updatedAt < end``, in (updatedAt, id) order.

        The API's range filter is inclusive at both ends, so ``end`` is sent and records at exactly
        ``end`` are dropped here; they belong to the next window.

        Args:
            resource: Collection name, e.g. ``prospects``.
            start: Inclusive window start (tz-aware).
            end: Exclusive window end (tz-aware).
            page_size: ``page[size]``, 1..1000.
            include: Relationship names for ``include=`` (returned in ``OutreachPage.included``).
            extra_params: More query parameters (e.g. ``fields[prospect]``).

        Raises:
            ValueError: For a naive or empty window, or a page size out of range.
            MalformedResponse: When the API returns records out of (updatedAt, id) order, which
                would make a window checkpoint unsafe.
        """
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1..{MAX_PAGE_SIZE}, got {page_size}")
        if start >= end:
            raise ValueError(f"empty window: start {start.isoformat()} is not before end {end.isoformat()}")
        params: dict[str, str] = {
            "filter[updatedAt]": f"{format_outreach_timestamp(start)}..{format_outreach_timestamp(end)}",
            "sort": "updatedAt",
            "count": "false",
            "page[size]": str(page_size),
        }
        include = list(include)
        if include:
            params["include"] = ",".join(include)
        params.update(extra_params or {})
        last_key: tuple[datetime, int] | None = None
        for page in self.iter_documents(f"{API_PREFIX}/{resource}", params):
            kept: list[OutreachRecord] = []
            rejected = list(page.rejected)
            for record in page.records:
                if record.updated_at is None:
                    rejected.append(RejectedResource(
                        type=record.type, id=record.id, error=f"{record.type} {record.id}: field 'updatedAt' is missing"
                    ))
                    continue
                key = (record.updated_at, record.id)
                if last_key is not None and key < last_key:
                    raise _out_of_order(resource, record, last_key)
                last_key = key
                if record.updated_at < end:
                    kept.append(record)
            yield page.model_copy(update={"records": kept, "rejected": rejected})

    def get(self, resource: str, record_id: int, *, include: Iterable[str] = ()) -> OutreachRecord:
        """Fetch one record.

        Raises:
            NotFoundError: When it does not exist.
        """
        include = list(include)
        params = {"include": ",".join(include)} if include else None
        body = self._call(
            "GET", f"{API_PREFIX}/{resource}/{int(record_id)}", idempotent=True, params=params,
            validate=require_resource,
        )
        return parse_resource(body["data"], f"GET {resource}/{record_id}")

    def find_prospects_by_email(self, email: str) -> list[OutreachRecord]:
        """Prospects whose ``emails`` contain ``email`` (Outreach allows one prospect per email).

        Raises:
            ValueError: When the address contains characters the filter syntax treats as operators.
        """
        if not email or "," in email or ".." in email:
            raise ValueError(f"cannot filter prospects by email {email!r}: empty or contains ',' or '..'")
        return list(self.iter_records(f"{API_PREFIX}/prospects", {"filter[emails]": email, "count": "false"}))

    def get_custom_field_types(self) -> list[dict[str, Any]]:
        """The org's custom-field definitions (``GET /api/v2/types``), for preflight checks.

        Its entries carry ``type`` and ``meta.validations`` but no ``id`` (the spec's introduction), so
        they are returned as the raw objects, not parsed as JSON:API resources.
        """
        body = self._call("GET", f"{API_PREFIX}/types", idempotent=True, validate=require_collection)
        return [entry for entry in body["data"] if isinstance(entry, dict)]

    def get_schema(self) -> OutreachSchema:
        """The service's own OpenAPI document (``GET /api/v2/schema/openapi.json``), as typed records.

        Raises:
            NotFoundError: The service does not serve the document.
            MalformedResponse: It is not JSON, or not an OpenAPI document describing resource types.
        """
        url = self._api_url(OPENAPI_PATH)
        # Validated while the reply is read, so a truncated or foreign body is retried like any malformed one.
        parsed: list[OutreachSchema] = []
        self._call("GET", url, idempotent=True, headers={"Accept": "application/json"},
                   validate=lambda document: parsed.append(parse_openapi(document, url)))
        return parsed[-1]

    # ----------------------------------------------------------------- writes

    def create(
        self,
        resource: str,
        attributes: Mapping[str, Any],
        relationships: Mapping[str, int | ResourceRef | list[int] | None] | None = None,
    ) -> OutreachRecord:
        """POST a new record. Not retried on 5xx/timeouts (no idempotency key exists; a retry could duplicate).

        Raises:
            WriteOutcomeUnknown: When the create may have happened; look the record up before retrying.
            ValidationFailed: A 422, e.g. "Contacts email hash has already been taken."
        """
        body = {"data": write_resource(resource, None, attributes, relationships)}
        reply = self._call(
            "POST", f"{API_PREFIX}/{resource}", idempotent=False, json=body,
            headers={"Content-Type": JSON_API}, validate=require_resource,
        )
        return parse_resource(reply["data"], f"POST {resource}")

    def update(
        self,
        resource: str,
        record_id: int,
        attributes: Mapping[str, Any],
        relationships: Mapping[str, int | ResourceRef | list[int] | None] | None = None,
    ) -> OutreachRecord:
        """PATCH the given attributes/relationships of a record (only the fields sent change)."""
        body = {"data": write_resource(resource, record_id, attributes, relationships)}
        reply = self._call(
            "PATCH", f"{API_PREFIX}/{resource}/{int(record_id)}", idempotent=False, json=body,
            headers={"Content-Type": JSON_API}, validate=require_resource,
        )
        return parse_resource(reply["data"], f"PATCH {resource}/{record_id}")

    def mark_task_complete(self, task_id: int) -> OutreachRecord:
        """Complete a task (``POST /tasks/{id}/actions/markComplete``): its ``state`` is read-only.

        Raises:
            WriteOutcomeUnknown: The reply was lost; fetch the task to see whether it is complete.
            ValidationFailed: A 422, e.g. the task is already complete.
        """
        reply = self._call(
            "POST", f"{API_PREFIX}/tasks/{int(task_id)}/actions/markComplete", idempotent=False,
            headers={"Content-Type": JSON_API}, validate=require_resource,
        )
        return parse_resource(reply["data"], f"POST tasks/{task_id}/actions/markComplete")

    def delete(self, resource: str, record_id: int) -> None:
        """DELETE a record (204)."""
        self._call("DELETE", f"{API_PREFIX}/{resource}/{int(record_id)}", idempotent=False)

    def _api_url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        if not path.startswith("/"):
            path = f"{API_PREFIX}/{path}"
        return self.transport.url_for(path)


def _out_of_order(resource: str, record: OutreachRecord, previous: tuple[datetime, int]) -> ApiError:
    return MalformedResponse(
        "records out of (updatedAt, id) order",
        method="GET",
        path=f"{API_PREFIX}/{resource}",
        detail=f"{record.type} {record.id} (updatedAt {record.updated_at}) came after id {previous[1]} "
        f"(updatedAt {previous[0]})",
    )
