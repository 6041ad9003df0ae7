"""The local sandbox's addresses and its published, sandbox-only credentials: the one place they are spelled.

The sandbox servers accept these, the Dagster resources and the CLI fall back to them when the
environment names no real service, and nothing else may know them: the API clients have no defaults,
so a client pointed at a real service without credentials refuses to start instead of sending these
there. They mean nothing to the real Outreach or Workbooks.

This module imports nothing heavier than the standard library, so the clients' callers, the sandbox
servers and the CLI can all use it.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final, TypedDict

SANDBOX_HOST: Final = "127.0.0.1"
DEFAULT_OUTREACH_PORT: Final = 8701
DEFAULT_WORKBOOKS_PORT: Final = 8702
SANDBOX_OUTREACH_URL: Final = f"http://{SANDBOX_HOST}:{DEFAULT_OUTREACH_PORT}"
SANDBOX_WORKBOOKS_URL: Final = f"http://{SANDBOX_HOST}:{DEFAULT_WORKBOOKS_PORT}"

SANDBOX_CLIENT_ID: Final = "sandbox-client-id"
SANDBOX_CLIENT_SECRET: Final = "sandbox-client-secret"
DEFAULT_OAUTH_CALLBACK_PORT: Final = 8703
# A loopback redirect URI with a port, as `auth connect` listens there for the redirect after consent.
SANDBOX_REDIRECT_URI: Final = f"http://{SANDBOX_HOST}:{DEFAULT_OAUTH_CALLBACK_PORT}/oauth/callback"
# Bootstrap refresh token: always accepted (never rotated away) and bound to the default user with every scope.
SANDBOX_REFRESH_TOKEN: Final = "sandbox-refresh-token"

# The org id the sandbox's webhook deliveries carry in their `outreach-org-id` header.
SANDBOX_ORG_ID: Final = "1"

SANDBOX_API_KEY: Final = "sandbox-api-key"
SANDBOX_USERNAME: Final = "sandbox@example.com"
SANDBOX_PASSWORD: Final = "sandbox"


class OutreachCredentials(TypedDict):
    """The keyword arguments that authenticate an ``OutreachClient``."""

    client_id: str
    client_secret: str
    redirect_uri: str
    refresh_token: str


class WorkbooksApiKey(TypedDict):
    """The keyword argument that authenticates a ``WorkbooksClient`` by api key."""

    api_key: str


# Read-only, so no caller can change what every other caller gets: `OutreachClient(url, **SANDBOX_OUTREACH_AUTH)`.
SANDBOX_OUTREACH_AUTH: Final = MappingProxyType(
    OutreachCredentials(
        client_id=SANDBOX_CLIENT_ID,
        client_secret=SANDBOX_CLIENT_SECRET,
        redirect_uri=SANDBOX_REDIRECT_URI,
        refresh_token=SANDBOX_REFRESH_TOKEN,
    )
)
SANDBOX_WORKBOOKS_AUTH: Final = MappingProxyType(WorkbooksApiKey(api_key=SANDBOX_API_KEY))
