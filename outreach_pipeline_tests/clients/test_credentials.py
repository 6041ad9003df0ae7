"""The clients have no default credentials; the sandbox's are spelled in one module only.

A default would be the sandbox's, and a client given only a real service's URL used to send the sandbox
api key there. Now it refuses to start, naming what is missing, before any request.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import outreach_pipeline
from outreach_pipeline.clients.credentials import MissingCredentials
from outreach_pipeline.clients.outreach import REAL_OUTREACH_URL, OutreachClient
from outreach_pipeline.clients.tokens import MemoryTokenStore
from outreach_pipeline.clients.workbooks import REAL_WORKBOOKS_URL, WorkbooksClient
from outreach_pipeline.sandbox import credentials
from outreach_pipeline.sandbox.credentials import SANDBOX_OUTREACH_AUTH, SANDBOX_WORKBOOKS_AUTH
from outreach_pipeline.sandbox.server import serve_in_thread

PACKAGE = Path(outreach_pipeline.__file__).parent
SANDBOX_SECRETS = [
    credentials.SANDBOX_API_KEY,
    credentials.SANDBOX_CLIENT_ID,
    credentials.SANDBOX_CLIENT_SECRET,
    credentials.SANDBOX_REFRESH_TOKEN,
    credentials.SANDBOX_USERNAME,
    credentials.SANDBOX_PASSWORD,
]


def test_outreach_client_with_a_real_url_and_no_credentials_refuses_naming_them_all():
    with pytest.raises(MissingCredentials) as caught:
        OutreachClient(REAL_OUTREACH_URL)
    assert caught.value.missing == ("client_id", "client_secret", "redirect_uri", "refresh_token")
    assert caught.value.base_url == REAL_OUTREACH_URL
    message = str(caught.value)
    assert REAL_OUTREACH_URL in message and "client_id, client_secret, redirect_uri, refresh_token" in message
    assert not [secret for secret in SANDBOX_SECRETS if secret != credentials.SANDBOX_PASSWORD and secret in message]


def test_outreach_client_names_only_what_is_missing_and_takes_the_refresh_token_from_its_store():
    with pytest.raises(MissingCredentials) as caught:
        OutreachClient(REAL_OUTREACH_URL, client_id="app", client_secret="", redirect_uri="https://app.example/cb")
    assert caught.value.missing == ("client_secret", "refresh_token")
    # A refresh token persisted by an earlier run is enough: it supersedes the configured one anyway.
    stored = MemoryTokenStore(SecretStr("rotated-token"))
    client = OutreachClient(
        REAL_OUTREACH_URL, client_id="app", client_secret="s", redirect_uri="https://app.example/cb", token_store=stored
    )
    client.close()


def test_workbooks_client_with_a_real_url_and_no_credentials_refuses_instead_of_sending_the_sandbox_key():
    with pytest.raises(MissingCredentials) as caught:
        WorkbooksClient(REAL_WORKBOOKS_URL)
    assert caught.value.missing == ("api_key",) and caught.value.alternative == "username and password"
    assert REAL_WORKBOOKS_URL in str(caught.value) and "api_key" in str(caught.value)
    with pytest.raises(MissingCredentials) as caught:
        WorkbooksClient(REAL_WORKBOOKS_URL, api_key="")
    assert caught.value.missing == ("api_key",)
    with pytest.raises(MissingCredentials) as caught:
        WorkbooksClient(REAL_WORKBOOKS_URL, username="ann@example.com")
    assert caught.value.missing == ("password",)


def test_a_client_missing_credentials_sends_nothing():
    received: list[str] = []

    async def anything(request: Request) -> JSONResponse:
        received.append(request.url.path)
        return JSONResponse({"success": True, "data": [], "access_token": "t", "expires_in": 7200})

    app = Starlette(routes=[Route("/{path:path}", anything, methods=["GET", "POST"])])
    with serve_in_thread(app) as served:
        with pytest.raises(MissingCredentials):
            WorkbooksClient(served.url).get_page("crm/people")
        with pytest.raises(MissingCredentials):
            next(OutreachClient(served.url).iter_records("prospects"))
        assert received == []
        # The same calls with the sandbox's credentials, passed explicitly, do reach the server.
        WorkbooksClient(served.url, **SANDBOX_WORKBOOKS_AUTH).get_page("crm/people")
        assert received == ["/crm/people.api"]
        list(OutreachClient(served.url, **SANDBOX_OUTREACH_AUTH).iter_records("prospects"))
        assert received == ["/crm/people.api", "/oauth/token", "/api/v2/prospects"]


def _string_constants(tree: ast.AST) -> list[str]:
    return [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)]


def _source_modules() -> dict[Path, ast.AST]:
    return {path.relative_to(PACKAGE): ast.parse(path.read_text(encoding="utf-8")) for path in PACKAGE.rglob("*.py")}


def test_the_sandbox_credentials_and_addresses_are_spelled_in_one_source_module():
    distinctive = [secret for secret in SANDBOX_SECRETS if secret != credentials.SANDBOX_PASSWORD]
    ports = {credentials.DEFAULT_OUTREACH_PORT, credentials.DEFAULT_WORKBOOKS_PORT}
    spelled_in: dict[Path, list[str]] = {}
    for path, tree in _source_modules().items():
        found = [secret for text in _string_constants(tree) for secret in distinctive if secret in text]
        found += [
            f"port {node.value}" for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and type(node.value) is int and node.value in ports
        ]
        found += [text for text in _string_constants(tree) if any(f":{port}" in text for port in ports)]
        # The password ("sandbox") is too common a word to search for; its assignment is not.
        found += [
            target.id for node in ast.walk(tree) if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
            for target in node.targets if isinstance(target, ast.Name) and target.id.startswith("SANDBOX_")
        ]
        if found:
            spelled_in[path] = found
    assert list(spelled_in) == [Path("sandbox/credentials.py")], spelled_in
    assert set(distinctive) <= set(spelled_in[Path("sandbox/credentials.py")])


@pytest.mark.parametrize("url", [REAL_OUTREACH_URL, REAL_WORKBOOKS_URL])
def test_each_real_service_url_is_spelled_in_one_source_module(url):
    spelled_in = [path for path, tree in _source_modules().items() if url in _string_constants(tree)]
    assert len(spelled_in) == 1, spelled_in
