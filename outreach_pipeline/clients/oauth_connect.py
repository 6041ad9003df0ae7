"""Connecting an Outreach account: the OAuth 2 authorization-code flow, once per installation.

The user opens the authorize URL (``/oauth/authorize`` with the scopes the mapping needs and a random
``state``), consents in Outreach, and is redirected to the app's registered redirect URI with ``code`` and
``state``. Here that URI is a loopback address (``http://127.0.0.1:<port>/...``): a one-shot HTTP listener on
that port receives the redirect. Without a browser on the machine, the user pastes the redirect URL instead.
The code is exchanged at ``/oauth/token`` for an access and a refresh token, which are stored in the token
store before anything else happens (mode 0600, see ``clients.tokens``).

Every failure is a ``ConnectError`` with a kind and a message that says what to do, and nothing is stored
until the exchange succeeded: a wrong ``state`` (a forged or stale redirect), a denied consent, a port that
is taken, a code Outreach refuses. Tokens never appear in a message.
"""

from __future__ import annotations

import http.server
import ipaddress
import secrets
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from pydantic import SecretStr

from outreach_pipeline.clients.http import ApiError, HttpTransport
from outreach_pipeline.clients.outreach import outreach_error, require_token, token_scopes
from outreach_pipeline.clients.tokens import StoredTokens, TokenStore

CALLBACK_PAGE = (
    b"<!doctype html><title>outreach-pipeline</title>"
    b"<p>Outreach answered; you can close this window and return to the terminal.</p>"
)


class ConnectErrorKind(StrEnum):
    """Why connecting failed."""

    STATE_MISMATCH = "state_mismatch"
    ACCESS_DENIED = "access_denied"
    AUTHORIZATION_ERROR = "authorization_error"  # any other error Outreach put on the redirect
    MISSING_CODE = "missing_code"
    PORT_IN_USE = "port_in_use"
    NOT_LOOPBACK = "not_loopback"
    TIMED_OUT = "timed_out"
    EXCHANGE_REFUSED = "exchange_refused"


class ConnectError(Exception):
    """Connecting an Outreach account failed; nothing was stored. The message says what to do."""

    def __init__(self, kind: ConnectErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Grant:
    """What a successful connection stored, without its tokens."""

    scopes: tuple[str, ...]
    access_token_expires_at: float


def new_state() -> str:
    """An unguessable ``state`` that ties the redirect to this attempt."""
    return secrets.token_urlsafe(24)


def authorize_url(base_url: str, *, client_id: str, redirect_uri: str, scopes: list[str], state: str) -> str:
    """The URL the user opens to consent (scopes space-separated, as Outreach documents)."""
    query = urlencode(
        {"client_id": client_id, "redirect_uri": redirect_uri, "response_type": "code",
         "scope": " ".join(scopes), "state": state}
    )
    return f"{base_url.rstrip('/')}/oauth/authorize?{query}"


def code_from_redirect(redirect_url: str, expected_state: str) -> str:
    """The authorization code a redirect carries, once its ``state`` is this attempt's.

    Raises:
        ConnectError: a wrong or missing state, a denied consent or another error, or no code.
    """
    query = parse_qs(urlsplit(redirect_url.strip()).query)
    state = (query.get("state") or [""])[0]
    if not secrets.compare_digest(state.encode(), expected_state.encode()):
        raise ConnectError(
            ConnectErrorKind.STATE_MISMATCH,
            "the redirect's state does not match this connection attempt (a stale or forged redirect); "
            "nothing was stored: run `outreach-pipeline auth connect` again and use the new URL",
        )
    if error := (query.get("error") or [""])[0]:
        description = (query.get("error_description") or [""])[0]
        if error == "access_denied":
            raise ConnectError(
                ConnectErrorKind.ACCESS_DENIED,
                "consent was denied in Outreach; nothing was stored: run `outreach-pipeline auth connect` again "
                "and choose Authorize to let the sync use your account",
            )
        raise ConnectError(
            ConnectErrorKind.AUTHORIZATION_ERROR,
            f"Outreach refused the authorization ({error}{': ' + description if description else ''}); nothing "
            "was stored: check the app's client id and redirect URI in Outreach, then connect again",
        )
    code = (query.get("code") or [""])[0]
    if not code:
        raise ConnectError(
            ConnectErrorKind.MISSING_CODE,
            "the redirect URL carries no code; paste the whole URL the browser was sent to after consenting",
        )
    return code


def loopback_port(redirect_uri: str) -> int:
    """The port a loopback redirect URI names (80 when it names none).

    Raises:
        ConnectError: the redirect URI is not on a loopback address, so nothing here can receive it.
    """
    parts = urlsplit(redirect_uri)
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if parts.scheme != "http" or not loopback:
        raise ConnectError(
            ConnectErrorKind.NOT_LOOPBACK,
            f"the redirect URI {redirect_uri} is not an http loopback address, so this machine cannot receive "
            "the redirect: use `outreach-pipeline auth connect --headless` and paste the URL you are sent to",
        )
    return parts.port or 80


class LoopbackReceiver:
    """A one-shot HTTP listener on 127.0.0.1 for the OAuth redirect; use as a context manager.

    Raises:
        ConnectError: when the port is taken (on entering).
    """

    def __init__(self, redirect_uri: str) -> None:
        self.port = loopback_port(redirect_uri)
        self.path = urlsplit(redirect_uri).path or "/"
        self._received: list[str] = []
        self._arrived = threading.Event()
        self._server: http.server.HTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> LoopbackReceiver:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if urlsplit(self.path).path != receiver.path:
                    self.send_error(404)
                    return
                receiver._received.append(f"http://127.0.0.1:{receiver.port}{self.path}")
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write(CALLBACK_PAGE)
                receiver._arrived.set()

            def log_message(self, format: str, *args: Any) -> None:  # the query holds the code: never log it
                return

        try:
            self._server = http.server.HTTPServer(("127.0.0.1", self.port), Handler)
        except OSError as exc:
            raise ConnectError(
                ConnectErrorKind.PORT_IN_USE,
                f"port {self.port} on 127.0.0.1 (from the redirect URI) is in use ({exc.strerror}); nothing was "
                "stored: stop what listens there, or use `outreach-pipeline auth connect --headless`",
            ) from None
        self._thread = threading.Thread(target=self._server.serve_forever, name="oauth-redirect", daemon=True)
        self._thread.start()
        return self

    def wait(self, timeout: float) -> str:
        """The redirect URL, once the browser has been sent to it.

        Raises:
            ConnectError: nothing arrived within `timeout` seconds.
        """
        if not self._arrived.wait(timeout):
            raise ConnectError(
                ConnectErrorKind.TIMED_OUT,
                f"no redirect reached 127.0.0.1:{self.port} within {timeout:.0f} s; nothing was stored: connect "
                "again and finish the consent in the browser, or use --headless",
            )
        return self._received[0]

    def __exit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def exchange_code(
    base_url: str,
    *,
    client_id: str,
    client_secret: SecretStr,
    redirect_uri: str,
    code: str,
    token_store: TokenStore,
    clock: Any = time.time,
) -> Grant:
    """Exchange an authorization code for tokens and store them (replacing any stored grant).

    Raises:
        ConnectError: Outreach refused the code (expired, used, or issued to another app or redirect URI).
    """
    transport = HttpTransport(base_url, error_parser=outreach_error, clock=clock)
    form = {"grant_type": "authorization_code", "client_id": client_id,
            "client_secret": client_secret.get_secret_value(), "redirect_uri": redirect_uri, "code": code}
    try:
        # Not retried: a code is single-use, so a lost reply cannot be replayed; the user connects again.
        body = transport.request_json("POST", "/oauth/token", data=form, idempotent=False, validate=require_token)
    except ApiError as exc:
        raise ConnectError(
            ConnectErrorKind.EXCHANGE_REFUSED,
            f"Outreach did not exchange the code ({exc.error_id or exc.status or 'no answer'}: "
            f"{exc.detail or 'no reason given'}); nothing was stored: connect again (codes expire in minutes "
            "and work once)",
        ) from None
    finally:
        transport.close()
    if not isinstance(body.get("refresh_token"), str) or not body["refresh_token"]:
        raise ConnectError(
            ConnectErrorKind.EXCHANGE_REFUSED,
            "Outreach answered the code exchange without a refresh token; nothing was stored: connect again",
        )
    expires_at = clock() + float(body.get("expires_in") or 7200)
    scopes = token_scopes(body.get("scope")) or ()
    token_store.save(
        StoredTokens(
            refresh_token=SecretStr(body["refresh_token"]),
            access_token=SecretStr(body["access_token"]),
            access_token_expires_at=expires_at,
            scopes=scopes,
        )
    )
    return Grant(scopes=scopes, access_token_expires_at=expires_at)
