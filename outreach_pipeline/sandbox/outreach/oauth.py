"""OAuth 2 for the sandbox: authorization codes, rotating refresh tokens, expiring access tokens, scopes.

Token endpoint errors follow RFC 6749 (`{"error": "invalid_grant", "error_description": ...}`) as the
real `/oauth/token` (a Doorkeeper server) does; API authentication errors use the JSON:API error shape.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from urllib.parse import urlencode

from pydantic import BaseModel

from outreach_pipeline.sandbox.credentials import SANDBOX_REFRESH_TOKEN
from outreach_pipeline.sandbox.outreach.errors import ApiError, unauthorized
from outreach_pipeline.sandbox.outreach.settings import DEFAULT_USER_ID, OutreachSettings
from outreach_pipeline.sandbox.outreach.spec import resource_specs

AUTHORIZATION_CODE_TTL_SECONDS = 600
SCOPE_ACTIONS = ("read", "write", "delete", "all")


class OAuthError(Exception):
    """A token-endpoint failure in RFC 6749 form."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status

    def body(self) -> dict[str, str]:
        """The response document."""
        return {"error": self.error, "error_description": self.description}


class AccessGrant(BaseModel):
    """Who an access token acts for and what it may do."""

    user_id: int
    scopes: frozenset[str]
    expires_at: float


class RefreshGrant(BaseModel):
    """A refresh token's owner, scopes, birth time and its position in the user's token sequence."""

    user_id: int
    scopes: frozenset[str]
    created_at: float
    serial: int


class AuthorizationCode(BaseModel):
    """A one-time code issued by `/oauth/authorize`."""

    user_id: int
    scopes: frozenset[str]
    redirect_uri: str
    expires_at: float


def all_scopes() -> frozenset[str]:
    """`<plural>.all` for every served resource: what the bootstrap token and scope-less requests get."""
    return frozenset(f"{spec.plural}.all" for spec in resource_specs().values())


def required_scope(plural: str, method: str) -> str:
    """Scope an HTTP method needs on a collection: GET -> read, DELETE -> delete, writes -> write."""
    action = {"GET": "read", "DELETE": "delete"}.get(method.upper(), "write")
    return f"{plural}.{action}"


def scope_granted(scopes: Iterable[str], needed: str) -> bool:
    """Scopes are not additive: only the exact scope or `<plural>.all` grants `needed`."""
    plural = needed.split(".", 1)[0]
    granted = set(scopes)
    return needed in granted or f"{plural}.all" in granted


class OAuthServer:
    """In-memory token authority; thread-safe.

    Args:
        settings: returns the current settings (they may change at run time).
        clock: epoch seconds; tests replace it to move time.
    """

    def __init__(
        self, settings: Callable[[], OutreachSettings], clock: Callable[[], float] = time.time
    ) -> None:
        self._settings = settings
        self.clock = clock
        self._lock = threading.Lock()
        self._access: dict[str, AccessGrant] = {}
        self._refresh: dict[str, RefreshGrant] = {}
        self._codes: dict[str, AuthorizationCode] = {}
        self._serials: dict[int, int] = {}

    def __repr__(self) -> str:
        return f"OAuthServer(access_tokens={len(self._access)}, refresh_tokens={len(self._refresh)})"

    # ----------------------------------------------------------------- authorize

    def authorize(self, params: Mapping[str, str]) -> str:
        """Answer an authorization request as the user would (the `consent` setting: approve by default) and
        return the redirect URL: `code` and `state`, or `error=access_denied` and `state`.

        Raises:
            OAuthError: unknown client, unsupported response type or mismatching redirect URI.
        """
        settings = self._settings()
        if params.get("client_id") != settings.client_id:
            raise OAuthError("invalid_client", "Client authentication failed due to unknown client.", 401)
        if params.get("response_type", "code") != "code":
            raise OAuthError(
                "unsupported_response_type", "The authorization server does not support this response type."
            )
        redirect_uri = params.get("redirect_uri") or settings.redirect_uri
        if redirect_uri != settings.redirect_uri:
            raise OAuthError(
                "invalid_redirect_uri",
                "The requested redirect uri is malformed or doesn't match client redirect URI.",
            )
        state = {"state": params["state"]} if params.get("state") else {}
        separator = "&" if "?" in redirect_uri else "?"
        if settings.consent == "deny":
            # RFC 6749 4.1.2.1: the user refused; the redirect says so and carries no code.
            denied = {"error": "access_denied", "error_description": "The resource owner denied the request."}
            return f"{redirect_uri}{separator}{urlencode(denied | state)}"
        scopes = _parse_scopes(params.get("scope"))
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = AuthorizationCode(
                user_id=DEFAULT_USER_ID,
                scopes=scopes,
                redirect_uri=redirect_uri,
                expires_at=self.clock() + AUTHORIZATION_CODE_TTL_SECONDS,
            )
        return f"{redirect_uri}{separator}{urlencode({'code': code} | state)}"

    # ----------------------------------------------------------------- token endpoint

    def token(self, form: Mapping[str, str]) -> dict[str, object]:
        """Handle `POST /oauth/token` for the authorization_code and refresh_token grants.

        Raises:
            OAuthError: bad client credentials, unknown grant type, or an invalid/expired code or token.
        """
        self._check_client(form)
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            return self._exchange_code(form)
        if grant_type == "refresh_token":
            return self._refresh_tokens(form)
        raise OAuthError(
            "unsupported_grant_type",
            "The authorization grant type is not supported by the authorization server.",
        )

    def _check_client(self, form: Mapping[str, str]) -> None:
        settings = self._settings()
        client_ok = form.get("client_id") == settings.client_id
        secret_ok = secrets.compare_digest(
            form.get("client_secret", "").encode(), settings.client_secret.get_secret_value().encode()
        )
        if not (client_ok and secret_ok):
            raise OAuthError(
                "invalid_client",
                "Client authentication failed due to unknown client, no client authentication included, or unsupported authentication method.",
                401,
            )

    def _exchange_code(self, form: Mapping[str, str]) -> dict[str, object]:
        with self._lock:
            code = self._codes.pop(form.get("code", ""), None)
            redirect_uri = form.get("redirect_uri") or (code.redirect_uri if code else "")
            if code is None or code.expires_at < self.clock() or redirect_uri != code.redirect_uri:
                raise OAuthError(
                    "invalid_grant",
                    "The provided authorization grant is invalid, expired, revoked, does not match the redirection URI used in the authorization request, or was issued to another client.",
                )
            return self._mint(code.user_id, code.scopes)

    def _refresh_tokens(self, form: Mapping[str, str]) -> dict[str, object]:
        presented = form.get("refresh_token", "")
        with self._lock:
            if presented == SANDBOX_REFRESH_TOKEN:
                return self._mint(DEFAULT_USER_ID, all_scopes())
            grant = self._refresh.get(presented)
            if grant is None or not self._refresh_token_alive(grant):
                self._refresh.pop(presented, None)
                raise OAuthError(
                    "invalid_grant",
                    "The provided authorization grant is invalid, expired, revoked, does not match the redirection URI used in the authorization request, or was issued to another client.",
                )
            if self._settings().strict_refresh_rotation:
                del self._refresh[presented]
            return self._mint(grant.user_id, grant.scopes)

    def _refresh_token_alive(self, grant: RefreshGrant) -> bool:
        settings = self._settings()
        young_enough = self.clock() - grant.created_at < settings.refresh_token_ttl_seconds
        newer_tokens = self._serials.get(grant.user_id, 0) - grant.serial
        return young_enough and newer_tokens <= settings.refresh_token_history

    def _mint(self, user_id: int, scopes: frozenset[str]) -> dict[str, object]:
        settings = self._settings()
        now = self.clock()
        serial = self._serials.get(user_id, 0) + 1
        self._serials[user_id] = serial
        access_token = secrets.token_urlsafe(32)
        refresh_token = secrets.token_urlsafe(32)
        self._access[access_token] = AccessGrant(
            user_id=user_id, scopes=scopes, expires_at=now + settings.access_token_ttl_seconds
        )
        self._refresh[refresh_token] = RefreshGrant(
            user_id=user_id, scopes=scopes, created_at=now, serial=serial
        )
        return {
            "access_token": access_token,
            "token_type": "bearer",
            "expires_in": settings.access_token_ttl_seconds,
            "refresh_token": refresh_token,
            "scope": " ".join(sorted(scopes)),
            "created_at": int(now),
        }

    # ----------------------------------------------------------------- API authentication

    def authenticate(self, authorization_header: str | None) -> AccessGrant:
        """The grant behind a `Bearer` header.

        Raises:
            ApiError: 401 when the header is missing, the token unknown or expired.
        """
        scheme, _, token = (authorization_header or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized("A valid access token is required in the 'Authorization: Bearer' header.")
        with self._lock:
            grant = self._access.get(token.strip())
        if grant is None:
            raise unauthorized("The access token is invalid.")
        if grant.expires_at <= self.clock():
            raise unauthorized("The access token expired.")
        return grant

    @staticmethod
    def require_scope(grant: AccessGrant, needed: str) -> None:
        """Raise 403 `unauthorizedOauthScope` unless `grant` carries `needed` (or the matching `.all`)."""
        if not scope_granted(grant.scopes, needed):
            raise ApiError(
                403,
                "unauthorizedOauthScope",
                "Unauthorized OAuth Scope",
                f"Your authorization does not include the required scope '{needed}'.",
            )

    def expire_access_tokens(self) -> int:
        """Expire every issued access token now (the "token expiry mid-run" fault); returns how many."""
        with self._lock:
            now = self.clock()
            for token, grant in self._access.items():
                self._access[token] = grant.model_copy(update={"expires_at": now})
            return len(self._access)


def _parse_scopes(raw: str | None) -> frozenset[str]:
    """Space- or plus-separated scopes; none requested means every scope the sandbox knows."""
    requested = frozenset(part for part in (raw or "").replace("+", " ").split() if part)
    return requested or all_scopes()
