"""Outreach REST API v2 client: OAuth2 refresh with token persistence, cursor paging, windowed reads, writes.

Works unchanged against ``https://api.outreach.io`` (give it real credentials) and against the local
sandbox (the defaults). It follows the published API (https://developers.outreach.io/api/making-requests/).
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pandas as pd
import requests
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    SkipValidation,
    ValidationError,
    field_serializer,
)

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

REAL_OUTREACH_URL = "https://api.outreach.io"
SANDBOX_OUTREACH_URL = "http://127.0.0.1:8701"
SANDBOX_CLIENT_ID = "sandbox-client-id"
SANDBOX_CLIENT_SECRET = "sandbox-client-secret"
SANDBOX_REFRESH_TOKEN = "sandbox-refresh-token"
SANDBOX_REDIRECT_URI = "http://127.0.0.1/oauth/callback"

API_PREFIX = "/api/v2"
JSON_API = "application/vnd.api+json"
MAX_PAGE_SIZE = 1000
TOKEN_REFRESH_MARGIN_SECONDS = 300.0
"""Refresh this long before expiry so a long page fetch never starts with a nearly dead token."""

# Relationship names whose JSON:API type differs from the name (for write bodies).
_RELATIONSHIP_TYPES: dict[str, str] = {
    "owner": "user",
    "creator": "user",
    "updater": "user",
    "user": "user",
    "primaryProspect": "prospect",
    "assignedUsers": "user",
    "assignedTeams": "team",
}


# --------------------------------------------------------------------------- records


class ResourceRef(NamedTuple):
    """An explicit relationship target, for polymorphic relationships such as a task's ``subject``."""

    type: str
    id: int


class AttributeNames(NamedTuple):
    """The attribute names one resource object was sent with: in order, and as a set for lookups."""

    ordered: tuple[str, ...]
    members: frozenset[str]


@lru_cache(maxsize=256)
def _attribute_names(ordered: tuple[str, ...]) -> AttributeNames:
    # Every record of a type is sent with the same names, so their records share one instance.
    return AttributeNames(ordered, frozenset(ordered))


class AttributeMap(Mapping[str, Any]):
    """A read-only mapping of a record's attributes as sent, holding only the non-null values.

    A prospect is sent with about 230 attributes of which a dozen are set; a dict per record made
    100,000 extracted prospects weigh about 1 GB. Here the names are shared by every record sent with
    the same ones, so a null attribute still reads as None and is still iterated, in the order sent.
    """

    __slots__ = ("_names", "_values")

    def __init__(self, attributes: Mapping[str, Any]) -> None:
        self._names = _attribute_names(tuple(attributes))
        self._values = {name: value for name, value in attributes.items() if value is not None}

    @property
    def names(self) -> AttributeNames:
        """Every attribute name sent, null or not (shared between records)."""
        return self._names

    def set_items(self) -> Iterator[tuple[str, Any]]:
        """The (name, value) pairs whose value is not null, in the order sent."""
        return iter(self._values.items())

    def __getitem__(self, name: str) -> Any:
        value = self._values.get(name, _ABSENT)
        if value is not _ABSENT:
            return value
        if name in self._names.members:
            return None
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return name in self._names.members

    def __iter__(self) -> Iterator[str]:
        return iter(self._names.ordered)

    def __len__(self) -> int:
        return len(self._names.ordered)

    def __repr__(self) -> str:
        return repr(dict(self))


_ABSENT = object()


class OutreachRecord(BaseModel):
    """One JSON:API resource object, with relationships reduced to ids.

    Attributes:
        type: Singular JSON:API type, e.g. ``prospect``.
        id: Outreach id.
        attributes: Attributes under their Outreach names (as sent; timestamps stay strings).
        relationships: ``int`` for a to-one with data, ``None`` for a to-one with ``data: null``,
            ``list[int]`` for a to-many with data. Links-only / meta-only relationships are absent:
            they say nothing about the related ids.
        relationship_types: JSON:API type of each to-one target (needed for polymorphic ones like
            ``subject``).
        created_at: ``createdAt`` as a UTC datetime.
        updated_at: ``updatedAt`` as a UTC datetime.
    """

    model_config = ConfigDict(frozen=True)

    type: str
    id: int
    # Not validated: an AttributeMap is kept as it is (a plain dict, as tests build records, works too).
    attributes: SkipValidation[Mapping[str, Any]] = Field(default_factory=dict)
    relationships: dict[str, int | list[int] | None] = Field(default_factory=dict)
    relationship_types: dict[str, str] = Field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @field_serializer("attributes")
    def _attributes_as_dict(self, attributes: Mapping[str, Any]) -> dict[str, Any]:
        return dict(attributes)

    @classmethod
    def from_resource(cls, resource: Mapping[str, Any]) -> OutreachRecord:
        """Build a record from a JSON:API resource object.

        Raises:
            ValueError: When the object lacks ``type``/``id`` or a timestamp does not parse; the
                message names the record and field.
        """
        if not isinstance(resource, Mapping) or "type" not in resource or "id" not in resource:
            raise ValueError(f"resource object without type/id: {str(resource)[:200]!r}")
        label = f"{resource['type']} {resource['id']}"
        attributes = resource.get("attributes") or {}
        if not isinstance(attributes, Mapping):
            raise ValueError(f"{label}: field 'attributes' is not an object")
        relationships: dict[str, int | list[int] | None] = {}
        relationship_types: dict[str, str] = {}
        for name, value in (resource.get("relationships") or {}).items():
            if not isinstance(value, Mapping) or "data" not in value:
                continue  # links-only or meta-only: no ids to report (tap-outreach crashed here)
            data = value["data"]
            if data is None:
                relationships[name] = None
            elif isinstance(data, list):
                relationships[name] = [int(item["id"]) for item in data]
            elif isinstance(data, Mapping) and "id" in data:
                relationships[name] = int(data["id"])
                relationship_types[name] = str(data.get("type", ""))
            else:
                raise ValueError(f"{label}: relationship '{name}' has unreadable data {data!r}")
        return cls(
            type=str(resource["type"]),
            id=int(resource["id"]),
            attributes=AttributeMap(attributes),
            relationships=relationships,
            relationship_types=relationship_types,
            created_at=_parse_timestamp(attributes.get("createdAt"), label, "createdAt"),
            updated_at=_parse_timestamp(attributes.get("updatedAt"), label, "updatedAt"),
        )


class RejectedResource(BaseModel):
    """A resource object of a page that could not be read; the rest of the page still is.

    Attributes:
        type: Its JSON:API type.
        id: Its id: only objects that carry one can be rejected alone (others fail the page).
        error: What is wrong, naming the record and the field.
    """

    type: str
    id: int
    error: str


class OutreachPage(BaseModel):
    """One page of a collection read.

    Attributes:
        records: The page's primary ``data``.
        included: Related objects requested with ``include=``.
        next_url: Absolute ``links.next``, None on the last page.
        rejected: Primary objects that could not be read (bad timestamps, unreadable relationships, ...).
    """

    records: list[OutreachRecord]
    included: list[OutreachRecord] = Field(default_factory=list)
    next_url: str | None = None
    rejected: list[RejectedResource] = Field(default_factory=list)


def _parse_timestamp(value: Any, label: str, field: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"{label}: field '{field}' is not an ISO timestamp: {value!r}") from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def format_outreach_timestamp(moment: datetime) -> str:
    """Outreach's timestamp form: UTC, milliseconds, ``Z`` (``2021-11-10T13:06:54.000Z``).

    Raises:
        ValueError: For a naive datetime.
    """
    if moment.tzinfo is None:
        raise ValueError(f"Outreach timestamps need a timezone-aware datetime, got {moment.isoformat()}")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def records_to_frame(records: Iterable[OutreachRecord]) -> pd.DataFrame:
    """Flatten records into the "extracted Outreach frame" of docs/ARCHITECTURE.md.

    Columns: ``id`` (int64), ``createdAt``/``updatedAt`` (tz-aware UTC), every attribute under its
    Outreach name (lists stay lists), and each to-one relationship as ``<name>Id`` (nullable Int64).
    To-many relationships are dropped.

    Args:
        records: Records of one type.

    Returns:
        The frame (with at least ``id``, ``createdAt`` and ``updatedAt`` even when empty).
    """
    records = list(records)
    # Built column by column: a DataFrame from one dict per row briefly needed as much memory again as
    # the records (a 100,000-prospect extract peaked above 2 GB). Only set values are written; the
    # columns start as None, which is what a null attribute reads as.
    columns: dict[str, list[Any]] = {}
    relationship_columns: set[str] = set()
    registered: set[int] = set()

    def column(name: str) -> list[Any]:
        values = columns.get(name)
        if values is None:
            values = columns[name] = [None] * len(records)
        return values

    for index, record in enumerate(records):
        attributes = record.attributes
        if isinstance(attributes, AttributeMap):
            if id(attributes.names) not in registered:
                registered.add(id(attributes.names))
                for name in attributes.names.ordered:
                    column(name)
            items: Iterable[tuple[str, Any]] = attributes.set_items()
        else:
            items = attributes.items()
        for name, value in items:
            column(name)[index] = value
        column("id")[index] = record.id
        column("createdAt")[index] = record.created_at
        column("updatedAt")[index] = record.updated_at
        for name, value in record.relationships.items():
            if isinstance(value, list):
                continue
            relationship_columns.add(f"{name}Id")
            column(f"{name}Id")[index] = value
    frame = pd.DataFrame(columns)
    for column in ("id", "createdAt", "updatedAt"):
        if column not in frame.columns:
            frame[column] = pd.Series(dtype="object")
    frame["id"] = frame["id"].astype("int64")
    for column in ("createdAt", "updatedAt"):
        frame[column] = pd.to_datetime(frame[column], utc=True)
    for column in relationship_columns:
        frame[column] = frame[column].astype("Int64")
    leading = ["id", "createdAt", "updatedAt"]
    return frame[leading + [column for column in frame.columns if column not in leading]]


# --------------------------------------------------------------------------- token storage


class StoredTokens(BaseModel):
    """The OAuth tokens kept between clients and runs.

    Attributes:
        refresh_token: The newest refresh token (they rotate; the previous one may soon stop working).
        access_token: The last access token minted, shared so a new client does not mint another one
            (Outreach answers 429 to a second mint for the same user within 60 s).
        access_token_expires_at: When ``access_token`` expires, in epoch seconds.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    refresh_token: SecretStr = Field(min_length=1)
    access_token: SecretStr | None = None
    access_token_expires_at: float | None = None


class TokenStore(Protocol):
    """Where the rotating OAuth refresh token and the current access token live between clients and runs."""

    def load(self) -> StoredTokens | None:
        """The persisted tokens, or None when nothing is stored."""
        ...

    def save(self, tokens: StoredTokens) -> None:
        """Persist newly issued tokens durably before they are used."""
        ...

    def refresh_lock(self) -> AbstractContextManager[object]:
        """Held while one client reloads the tokens and, if still needed, mints new ones.

        Clients sharing a store then mint once between them instead of once each.
        """
        ...


class MemoryTokenStore:
    """A process-local token store (lost on restart; fine for tests and one-off runs).

    Args:
        refresh_token: A refresh token to start with.
    """

    def __init__(self, refresh_token: SecretStr | None = None) -> None:
        self._tokens = StoredTokens(refresh_token=refresh_token) if refresh_token is not None else None
        self._lock = threading.RLock()

    def load(self) -> StoredTokens | None:
        """The stored tokens."""
        return self._tokens

    def save(self, tokens: StoredTokens) -> None:
        """Replace the stored tokens."""
        self._tokens = tokens

    def refresh_lock(self) -> AbstractContextManager[object]:
        """A lock shared by the clients of this store (threads of one process)."""
        return self._lock

    def __repr__(self) -> str:
        return "MemoryTokenStore(<redacted>)"


class FileTokenStore:
    """Keeps the tokens in a JSON file written atomically with 0600 permissions.

    Atomic (temp file + fsync + rename) because a half-written file after a crash would lose the only
    valid refresh token, and a lost token means a user must re-authorise the app. Files written before
    access tokens were stored (``refresh_token`` and ``saved_at`` only) still load. Refreshes are
    serialised across processes with ``flock`` on ``<file>.lock``, because Dagster runs each step of a
    run in its own process and each opens its own client.

    Args:
        path: The token file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> StoredTokens | None:
        """The stored tokens, or None when the file does not exist.

        Raises:
            ValueError: When the file exists but is not a token file written by this class (the
                message names the file and the field, never a token).
        """
        try:
            content = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except json.JSONDecodeError as exc:
            raise ValueError(f"token file {self.path} is not valid JSON") from exc
        if not isinstance(content, dict):
            raise ValueError(f"token file {self.path} does not hold a JSON object")
        content.pop("saved_at", None)  # written by earlier versions; the file's mtime says the same
        try:
            return StoredTokens.model_validate(content)
        except ValidationError as exc:
            # Only the location and message: pydantic's own text would quote the token.
            first = exc.errors(include_input=False)[0]
            field = ".".join(str(part) for part in first["loc"])
            raise ValueError(f"token file {self.path}: field '{field}': {first['msg']}") from None

    def save(self, tokens: StoredTokens) -> None:
        """Write the tokens atomically, readable only by the owner."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = json.dumps(
            {
                "refresh_token": tokens.refresh_token.get_secret_value(),
                "access_token": tokens.access_token.get_secret_value() if tokens.access_token else None,
                "access_token_expires_at": tokens.access_token_expires_at,
            }
        )
        descriptor, temp_name = tempfile.mkstemp(prefix=".token-", dir=self.path.parent)
        try:
            os.fchmod(descriptor, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp_name, self.path)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise

    @contextmanager
    def refresh_lock(self) -> Iterator[None]:
        """An exclusive ``flock`` on ``<file>.lock`` (created empty, 0600), released on exit."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path.with_name(f"{self.path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)  # closing the descriptor releases the lock

    def __repr__(self) -> str:
        return f"FileTokenStore({str(self.path)!r})"


# --------------------------------------------------------------------------- client


def _outreach_error(response: requests.Response) -> tuple[str | None, str | None]:
    body = response.json()
    if isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"]:
        first = body["errors"][0]
        detail = first.get("detail") or first.get("details") or first.get("title")
        pointer = (first.get("source") or {}).get("pointer")
        if pointer:
            detail = f"{detail} (at {pointer})"
        return first.get("id"), detail
    if isinstance(body, dict) and "error" in body:  # OAuth token endpoint (RFC 6749 section 5.2)
        return body.get("error"), body.get("error_description")
    return None, None


def _bearer(access_token: SecretStr) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token.get_secret_value()}"}


def _require_collection(body: Any) -> None:
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise ValueError("body has no top-level 'data' array")


def _require_resource(body: Any) -> None:
    if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
        raise ValueError("body has no top-level 'data' object")


def _require_token(body: Any) -> None:
    if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
        raise ValueError("token response has no 'access_token'")


def singular_type(resource: str) -> str:
    """JSON:API type for a collection path segment: ``opportunities`` -> ``opportunity``."""
    if resource.endswith("ies"):
        return resource[:-3] + "y"
    if resource.endswith(("xes", "ches", "shes")):
        return resource[:-2]
    return resource.removesuffix("s")


class OutreachClient:
    """Client for Outreach API v2 (real or sandbox).

    Args:
        base_url: ``https://api.outreach.io`` for the real service; the sandbox by default.
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
    """

    def __init__(
        self,
        base_url: str = SANDBOX_OUTREACH_URL,
        *,
        client_id: str = SANDBOX_CLIENT_ID,
        client_secret: SecretStr | str = SANDBOX_CLIENT_SECRET,
        redirect_uri: str = SANDBOX_REDIRECT_URI,
        refresh_token: SecretStr | str | None = SANDBOX_REFRESH_TOKEN,
        token_store: TokenStore | None = None,
        retry: RetryPolicy | None = None,
        sleep: SleepFn = time.sleep,
        clock: ClockFn = time.time,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self.client_secret = SecretStr(client_secret) if isinstance(client_secret, str) else client_secret
        self.redirect_uri = redirect_uri
        self.token_store: TokenStore = token_store or MemoryTokenStore()
        configured = SecretStr(refresh_token) if isinstance(refresh_token, str) else refresh_token
        self._configured_refresh_token = configured
        self._refresh_token: SecretStr | None = configured
        self._access_token: SecretStr | None = None
        self._access_expires_at = 0.0
        stored = self.token_store.load()
        if stored is not None:
            self._adopt(stored)
        if self._refresh_token is None:
            raise ValueError("OutreachClient needs a refresh token (configured or in the token store)")
        self._token_lock = threading.Lock()
        self.transport = HttpTransport(
            self.base_url,
            error_parser=_outreach_error,
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
                "POST", "/oauth/token", data=form, idempotent=True, validate=_require_token
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
        # Saved before first use: the rotated refresh token must survive a crash, and other clients of
        # the store take the access token instead of minting their own.
        self.token_store.save(
            StoredTokens(
                refresh_token=self._refresh_token,
                access_token=self._access_token,
                access_token_expires_at=self._access_expires_at,
            )
        )

    def _adopt(self, stored: StoredTokens) -> None:
        self._refresh_token = stored.refresh_token
        self._access_token = stored.access_token
        self._access_expires_at = stored.access_token_expires_at or 0.0

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
                method, path_or_url, idempotent=idempotent, headers={**headers, **_bearer(access_token)}, **kwargs
            )
        except AuthenticationError as exc:
            if exc.status != 401:
                raise
        # A 401 is rejected before any work, so even a write is safe to resend once.
        renewed = self._current_access_token(rejected=access_token)
        return self.transport.request_json(
            method, path_or_url, idempotent=idempotent, headers={**headers, **_bearer(renewed)}, **kwargs
        )

    # ----------------------------------------------------------------- reads

    def iter_documents(self, path: str, params: Mapping[str, Any] | None = None) -> Iterator[OutreachPage]:
        """Yield pages of a collection, following absolute ``links.next`` until it is absent.

        A 502 halves ``page[size]`` and retries the same page (large bodies trip Outreach's gateway),
        down to 1; at size 1 the ordinary retry rules apply.

        Args:
            path: ``/api/v2/<resource>`` or ``<resource>``.
            params: Query parameters for the first request (later pages carry them in ``links.next``).
        """
        url = self._api_url(path)
        if params:
            url = _with_query(url, {key: str(value) for key, value in params.items()})
        while url:
            # The parsed body is not kept across the yield: a 1,000-prospect page is tens of MB of objects.
            page = _parse_page(self._get_collection(url), url)
            yield page
            url = page.next_url

    def _get_collection(self, url: str) -> Any:
        while True:
            page_size = _query_value(url, "page[size]")
            size = int(page_size) if page_size and page_size.isdigit() else None
            halvable = size is not None and size > 1
            try:
                return self._call(
                    "GET", url, idempotent=True, validate=_require_collection,
                    fail_fast_statuses=frozenset({502}) if halvable else frozenset(),
                )
            except ServerError as exc:
                if exc.status != 502 or not halvable or size is None:
                    raise
                url = _with_query(url, {"page[size]": str(max(1, size // 2))})

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
            validate=_require_resource,
        )
        return _parse_resource(body["data"], f"GET {resource}/{record_id}")

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
        body = self._call("GET", f"{API_PREFIX}/types", idempotent=True, validate=_require_collection)
        return [entry for entry in body["data"] if isinstance(entry, dict)]

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
        body = {"data": _write_resource(resource, None, attributes, relationships)}
        reply = self._call(
            "POST", f"{API_PREFIX}/{resource}", idempotent=False, json=body,
            headers={"Content-Type": JSON_API}, validate=_require_resource,
        )
        return _parse_resource(reply["data"], f"POST {resource}")

    def update(
        self,
        resource: str,
        record_id: int,
        attributes: Mapping[str, Any],
        relationships: Mapping[str, int | ResourceRef | list[int] | None] | None = None,
    ) -> OutreachRecord:
        """PATCH the given attributes/relationships of a record (only the fields sent change)."""
        body = {"data": _write_resource(resource, record_id, attributes, relationships)}
        reply = self._call(
            "PATCH", f"{API_PREFIX}/{resource}/{int(record_id)}", idempotent=False, json=body,
            headers={"Content-Type": JSON_API}, validate=_require_resource,
        )
        return _parse_resource(reply["data"], f"PATCH {resource}/{record_id}")

    def delete(self, resource: str, record_id: int) -> None:
        """DELETE a record (204)."""
        self._call("DELETE", f"{API_PREFIX}/{resource}/{int(record_id)}", idempotent=False)

    def _api_url(self, path: str) -> str:
        if path.startswith(("http://", "https://")):
            return path
        if not path.startswith("/"):
            path = f"{API_PREFIX}/{path}"
        return self.transport.url_for(path)


def _write_resource(
    resource: str,
    record_id: int | None,
    attributes: Mapping[str, Any],
    relationships: Mapping[str, int | ResourceRef | list[int] | None] | None,
) -> dict[str, Any]:
    data: dict[str, Any] = {"type": singular_type(resource), "attributes": dict(attributes)}
    if record_id is not None:
        data["id"] = int(record_id)
    if relationships:
        data["relationships"] = {
            name: {"data": _relationship_data(name, value)} for name, value in relationships.items()
        }
    return data


def _relationship_data(name: str, value: int | ResourceRef | list[int] | None) -> Any:
    target_type = _RELATIONSHIP_TYPES.get(name, singular_type(name))
    if value is None:
        return None
    if isinstance(value, ResourceRef):
        return {"type": value.type, "id": int(value.id)}
    if isinstance(value, list):
        return [{"type": target_type, "id": int(item)} for item in value]
    return {"type": target_type, "id": int(value)}


def _parse_resource(resource: Any, request: str) -> OutreachRecord:
    try:
        return OutreachRecord.from_resource(resource)
    except (ValueError, TypeError, KeyError) as exc:
        raise MalformedResponse("unreadable resource object", method=request.split()[0],
                                path=request.split()[1], detail=str(exc)) from exc


def _parse_page(body: dict[str, Any], url: str) -> OutreachPage:
    """Parse a page; one unreadable record with an id is rejected alone, the rest of the page is kept."""
    request = f"GET {urlsplit(url).path}"
    links = body.get("links") or {}
    records: list[OutreachRecord] = []
    rejected: list[RejectedResource] = []
    for item in body["data"]:
        try:
            records.append(OutreachRecord.from_resource(item))
        except (ValueError, TypeError, KeyError) as exc:
            identity = _identity(item)
            if identity is None:  # nothing to report it by: the page itself is broken
                raise MalformedResponse("unreadable resource object", method="GET", path=request.split()[1],
                                        detail=str(exc)) from exc
            rejected.append(RejectedResource(type=identity[0], id=identity[1], error=str(exc)))
    return OutreachPage(
        records=records,
        included=[_parse_resource(item, request) for item in body.get("included") or []],
        next_url=links.get("next") if isinstance(links, dict) else None,
        rejected=rejected,
    )


def _identity(item: Any) -> tuple[str, int] | None:
    if not isinstance(item, Mapping):
        return None
    try:
        return str(item["type"]), int(item["id"])
    except (KeyError, TypeError, ValueError):
        return None


def _out_of_order(resource: str, record: OutreachRecord, previous: tuple[datetime, int]) -> ApiError:
    return MalformedResponse(
        "records out of (updatedAt, id) order",
        method="GET",
        path=f"{API_PREFIX}/{resource}",
        detail=f"{record.type} {record.id} (updatedAt {record.updated_at}) came after id {previous[1]} "
        f"(updatedAt {previous[0]})",
    )


def _query_value(url: str, key: str) -> str | None:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True)).get(key)


def _with_query(url: str, updates: Mapping[str, str]) -> str:
    """``url`` with the given query parameters set (replacing existing ones, keeping the rest in order)."""
    parts = urlsplit(url)
    pairs = [(key, value) for key, value in parse_qsl(parts.query, keep_blank_values=True) if key not in updates]
    pairs.extend(updates.items())
    return urlunsplit(parts._replace(query=urlencode(pairs)))
