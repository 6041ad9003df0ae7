"""The Outreach API's conventions, as the client needs them: error bodies, OAuth scopes, body shapes, query strings.

Pure functions and the `MissingScope` error; no requests are sent here (clients/outreach.py sends them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests
from pydantic import SecretStr

from outreach_pipeline.clients.http import ApiError, AuthenticationError


def outreach_error(response: requests.Response) -> tuple[str | None, str | None, str | None]:
    """(error id, detail, source pointer) of an Outreach error response (the pointer also in the detail)."""
    body = response.json()
    if isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"]:
        first = body["errors"][0]
        detail = first.get("detail") or first.get("details") or first.get("title")
        pointer = (first.get("source") or {}).get("pointer")
        if pointer:
            detail = f"{detail} (at {pointer})"
        return first.get("id"), detail, pointer if isinstance(pointer, str) else None
    if isinstance(body, dict) and "error" in body:  # OAuth token endpoint (RFC 6749 section 5.2)
        return body.get("error"), body.get("error_description"), None
    return None, None, None


def bearer(access_token: SecretStr) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token.get_secret_value()}"}


def require_collection(body: Any) -> None:
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        raise ValueError("body has no top-level 'data' array")


def require_resource(body: Any) -> None:
    if not isinstance(body, dict) or not isinstance(body.get("data"), dict):
        raise ValueError("body has no top-level 'data' object")


UNAUTHORIZED_SCOPE_ERROR = "unauthorizedOauthScope"


def scope_for_request(method: str, path: str) -> str | None:
    """The scope an API request needs: ``GET /api/v2/prospects/1`` -> ``prospects.read``; None off the API."""
    parts = [part for part in urlsplit(path).path.split("/") if part]
    if len(parts) < 3 or parts[:2] != ["api", "v2"]:
        return None
    action = {"GET": "read", "DELETE": "delete"}.get(method.upper(), "write")
    return f"{parts[2]}.{action}"


class MissingScope(AuthenticationError):
    """Outreach refused a request because the connected account's grant lacks the scope it needs.

    Attributes:
        scope: The scope the request needs (from its method and collection), e.g. ``prospects.write``.
    """

    scope: str | None

    @classmethod
    def of(cls, error: ApiError) -> MissingScope:
        scope = scope_for_request(error.method, error.path)
        missing = cls(
            f"the connected Outreach account was not granted scope {scope or '(unknown)'}: connect again with "
            "`outreach-pipeline auth connect`, which asks for every scope the mapping needs",
            method=error.method, path=error.path, status=error.status, error_id=error.error_id, detail=error.detail,
        )
        missing.scope = scope
        return missing


def token_scopes(raw: object) -> tuple[str, ...] | None:
    """Scopes of a token response (space- or plus-separated), sorted; None when it names none."""
    if not isinstance(raw, str) or not raw.strip():
        return None
    return tuple(sorted({part for part in raw.replace("+", " ").split() if part}))


def require_token(body: Any) -> None:
    if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
        raise ValueError("token response has no 'access_token'")


def query_value(url: str, key: str) -> str | None:
    return dict(parse_qsl(urlsplit(url).query, keep_blank_values=True)).get(key)


def with_query(url: str, updates: Mapping[str, str | list[str]]) -> str:
    """``url`` with the given query parameters set (replacing existing ones, keeping the rest in order).

    A list value sets its key once per item, in order.
    """
    parts = urlsplit(url)
    pairs = [(key, value) for key, value in parse_qsl(parts.query, keep_blank_values=True) if key not in updates]
    for key, value in updates.items():
        if isinstance(value, list):
            pairs.extend((key, item) for item in value)
        else:
            pairs.append((key, value))
    return urlunsplit(parts._replace(query=urlencode(pairs)))
