"""The Outreach API v2 sandbox as a Starlette app: resources, OAuth, rate limits and admin routes."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from outreach_pipeline.sandbox.outreach.custom_fields import types_document
from outreach_pipeline.sandbox.outreach.errors import (
    JSON_API,
    ApiError,
    bad_request,
    internal_error,
    not_found,
    validation_error,
)
from outreach_pipeline.sandbox.outreach.lifecycle import (
    check_required_relationships,
    create_attributes,
    run_action,
    update_attributes,
)
from outreach_pipeline.sandbox.outreach.oauth import AccessGrant, OAuthError, OAuthServer, required_scope
from outreach_pipeline.sandbox.outreach.query import encode_cursor, parse_list_request, sort_position
from outreach_pipeline.sandbox.outreach.ratelimit import RateLimiter, rate_limit_error
from outreach_pipeline.sandbox.outreach.render import ResourceRenderer, json_array, json_document, to_json
from outreach_pipeline.sandbox.outreach.settings import DEFAULT_USER_ID, OutreachSettings
from outreach_pipeline.sandbox.outreach.spec import ResourceSpec, openapi_bytes, specs_by_plural
from outreach_pipeline.sandbox.outreach.store import (
    DuplicateEmailError,
    OutreachStore,
    RecordNotFoundError,
    format_timestamp,
)
from outreach_pipeline.sandbox.outreach.validation import parse_write_body

__all__ = [
    "DEFAULT_USER_ID",
    "OutreachSandbox",
    "OutreachSettings",
    "create_outreach_app",
]

logger = logging.getLogger(__name__)


def unsupported_media_type() -> ApiError:
    """415 in Outreach's exact wording."""
    return ApiError(
        415,
        "unsupportedMediaType",
        "Unsupported Media Type",
        "Expected Content-Type header to be 'application/vnd.api+json'.",
    )


ACTION_PARAM_PREFIX = "actionParams["


def _api_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(content, status_code=status, headers=headers, media_type=JSON_API)


def _document_response(
    members: dict[str, bytes], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A JSON:API document from top-level members already encoded (resources are rendered straight to JSON)."""
    return Response(json_document(members), status_code=status, headers=headers, media_type=JSON_API)


class OutreachSandbox:
    """Holds the app's collaborators; settings may be replaced at run time.

    Args:
        store: the record storage.
        settings: initial behaviour switches.
    """

    def __init__(self, store: OutreachStore, settings: OutreachSettings) -> None:
        self.store = store
        self.settings = settings
        self.oauth = OAuthServer(lambda: self.settings)
        self.rate_limiter = RateLimiter()

    # ----------------------------------------------------------------- request plumbing

    def _spec(self, request: Request) -> ResourceSpec:
        plural = request.path_params["plural"]
        spec = specs_by_plural().get(plural)
        if spec is None:
            raise ApiError(
                404, "resourceNotFound", "Resource Not Found", f"Unknown resource type '{plural}'."
            )
        return spec

    def _record_id(self, request: Request, spec: ResourceSpec) -> int:
        raw = request.path_params["record_id"]
        try:
            return int(raw)
        except ValueError:
            raise not_found(spec.type, raw) from None

    def _renderer(self, request: Request) -> ResourceRenderer:
        base = self.settings.public_base_url or str(request.base_url)
        return ResourceRenderer(self.store, base)

    def _require_method(self, spec: ResourceSpec, method: str) -> None:
        if method not in spec.methods:
            raise ApiError(
                405,
                "methodNotAllowed",
                "Method Not Allowed",
                f"{spec.plural} does not support the '{method}' operation.",
            )

    @staticmethod
    async def _json_body(request: Request) -> Any:
        if request.headers.get("content-type", "").split(";")[0].strip() != JSON_API:
            raise unsupported_media_type()
        try:
            return json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise bad_request("The request body is not valid JSON.") from None

    async def guarded(
        self,
        request: Request,
        handler: Callable[[Request, AccessGrant], Awaitable[Response]],
        scope_of: Callable[[Request], str | None],
    ) -> Response:
        """Authenticate, count against the rate limit, check the scope, run `handler`; errors in JSON:API shape."""
        rate_headers: dict[str, str] = {}
        try:
            grant = self.oauth.authenticate(request.headers.get("authorization"))
            state = self.rate_limiter.hit(grant.user_id, self.settings.rate_limit_per_hour)
            two_values = self.settings.rate_limit_remaining_two_values
            rate_headers = state.headers(two_values)
            if state.exceeded:
                raise rate_limit_error(state, self.rate_limiter.clock(), two_values)
            needed = scope_of(request)
            if needed is not None:
                self.oauth.require_scope(grant, needed)
            response = await handler(request, grant)
        except ApiError as error:
            response = error.response()
        for name, value in rate_headers.items():
            response.headers.setdefault(name, value)
        return response

    # ----------------------------------------------------------------- resource handlers

    async def list_resources(self, request: Request, _grant: AccessGrant) -> Response:
        spec = self._spec(request)
        self._require_method(spec, "list")
        items = request.query_params.multi_items()
        parsed = parse_list_request(spec, items, self.settings.max_page_size)
        page_query = parsed.query.model_copy(update={"limit": parsed.query.limit + 1})
        records = self.store.query(spec.type, page_query)
        has_more = len(records) > parsed.query.limit
        records = records[: parsed.query.limit]
        renderer = self._renderer(request)
        members = {"data": json_array(renderer.render_json(spec, records, parsed.fields))}
        if parsed.include:
            members["included"] = json_array(
                renderer.included_json(spec, records, parsed.include, parsed.fields)
            )
        if records:
            links = self._page_links(request, spec, parsed, records[-1] if has_more else None)
            members["links"] = to_json(links).encode()
        if parsed.count:
            meta = {"count": self.store.count(spec.type, parsed.query.conditions), "count_truncated": False}
            members["meta"] = to_json(meta).encode()
        return _document_response(members)

    def _page_links(self, request: Request, spec: ResourceSpec, parsed: Any, last: Any) -> dict[str, str]:
        base = f"{self._renderer(request).api_root}/{spec.plural}"
        kept = [(key, value) for key, value in request.query_params.multi_items() if key != "page[after]"]
        links = {"first": f"{base}?{urlencode(kept)}" if kept else base}
        if last is not None:
            cursor = encode_cursor(
                spec, parsed.sort_param, parsed.query.sort, sort_position(parsed.query.sort, last)
            )
            links["next"] = f"{base}?{urlencode([*kept, ('page[after]', cursor)])}"
        return links

    async def fetch_resource(self, request: Request, _grant: AccessGrant) -> Response:
        spec = self._spec(request)
        self._require_method(spec, "fetch")
        record = self.store.get(spec.type, self._record_id(request, spec))
        parsed = parse_list_request(spec, self._non_filter_params(request), self.settings.max_page_size)
        renderer = self._renderer(request)
        members = {"data": renderer.render_json(spec, [record], parsed.fields)[0]}
        if parsed.include:
            members["included"] = json_array(
                renderer.included_json(spec, [record], parsed.include, parsed.fields)
            )
        return _document_response(members)

    @staticmethod
    def _non_filter_params(request: Request) -> list[tuple[str, str]]:
        return [(k, v) for k, v in request.query_params.multi_items() if k.startswith(("fields[", "include"))]

    async def create_resource(self, request: Request, grant: AccessGrant) -> Response:
        spec = self._spec(request)
        self._require_method(spec, "create")
        body = parse_write_body(spec, await self._json_body(request), self.store)
        check_required_relationships(spec.type, body.relationships)
        now_text = format_timestamp(self.store.now_ms())
        attributes = create_attributes(spec.type, body.attributes, now_text)
        relationships = self._stamp_people(spec, body.relationships, grant, creating=True)
        record = self.store.create(spec.type, attributes, relationships)
        renderer = self._renderer(request)
        location = renderer.self_link(spec, record.id)
        return _document_response(
            {"data": renderer.render_json(spec, [record])[0]}, 201, {"Location": location}
        )

    async def update_resource(self, request: Request, grant: AccessGrant) -> Response:
        spec = self._spec(request)
        self._require_method(spec, "update")
        record_id = self._record_id(request, spec)
        body = parse_write_body(spec, await self._json_body(request), self.store, record_id)
        current = self.store.get(spec.type, record_id)
        attributes = update_attributes(spec.type, current, body.attributes)
        relationships = self._stamp_people(spec, body.relationships, grant, creating=False)
        record = self.store.update(spec.type, record_id, attributes, relationships)
        return _document_response({"data": self._renderer(request).render_json(spec, [record])[0]})

    async def delete_resource(self, request: Request, _grant: AccessGrant) -> Response:
        spec = self._spec(request)
        self._require_method(spec, "delete")
        self.store.delete(spec.type, self._record_id(request, spec))
        return Response(status_code=204)

    async def run_member_action(self, request: Request, grant: AccessGrant) -> Response:
        spec = self._spec(request)
        record_id = self._record_id(request, spec)
        params = {
            key[len(ACTION_PARAM_PREFIX) : -1]: value
            for key, value in request.query_params.multi_items()
            if key.startswith(ACTION_PARAM_PREFIX) and key.endswith("]")
        }
        current = self.store.get(spec.type, record_id)
        now_text = format_timestamp(self.store.now_ms())
        changes = run_action(spec, request.path_params["action"], current, params, now_text)
        relationships = self._stamp_people(spec, {}, grant, creating=False)
        record = self.store.update(spec.type, record_id, changes, relationships)
        return _document_response({"data": self._renderer(request).render_json(spec, [record])[0]})

    @staticmethod
    def _stamp_people(
        spec: ResourceSpec, relationships: dict[str, Any], grant: AccessGrant, *, creating: bool
    ) -> dict[str, Any]:
        """Server-owned creator/updater relationships point at the token's user."""
        stamped = dict(relationships)
        if "updater" in spec.relationships:
            stamped["updater"] = grant.user_id
        if (
            creating
            and "creator" in spec.relationships
            and spec.relationships["creator"].target_types == ("user",)
        ):
            stamped["creator"] = grant.user_id
        return stamped

    async def types(self, _request: Request, _grant: AccessGrant) -> Response:
        return _api_response(types_document())

    @staticmethod
    async def openapi(_request: Request) -> Response:
        # Outreach links this document from its docs with no token (only /types and schema.json take one).
        return Response(openapi_bytes(), media_type="application/json")

    # ----------------------------------------------------------------- OAuth and admin

    async def authorize(self, request: Request) -> Response:
        try:
            return RedirectResponse(self.oauth.authorize(dict(request.query_params)), status_code=302)
        except OAuthError as error:
            return JSONResponse(error.body(), status_code=error.status)

    async def token(self, request: Request) -> Response:
        try:
            fields = await _token_request_fields(request)
            return JSONResponse(self.oauth.token(fields), headers={"Cache-Control": "no-store"})
        except OAuthError as error:
            return JSONResponse(error.body(), status_code=error.status)

    async def expire_tokens(self, _request: Request) -> Response:
        return JSONResponse({"expired": self.oauth.expire_access_tokens()})

    async def change_settings(self, request: Request) -> Response:
        try:
            changes = json.loads(await request.body() or b"{}")
            if not isinstance(changes, dict):
                raise ValueError("settings must be a JSON object")
            self.settings = self.settings.with_changes(changes)
        except ValueError as error:
            # pydantic's ValidationError is a ValueError; its message names the offending setting.
            return JSONResponse({"error": "invalid_settings", "detail": str(error)}, status_code=422)
        return JSONResponse(self.settings.model_dump(mode="json"))

    async def read_settings(self, _request: Request) -> Response:
        return JSONResponse(self.settings.model_dump(mode="json"))


async def _token_request_fields(request: Request) -> dict[str, str]:
    """Fields of a token request: form-encoded as OAuth 2 specifies, or JSON (Doorkeeper accepts both)."""
    raw = await request.body()
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            payload = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            raise OAuthError("invalid_request", "The request body is not valid JSON.") from None
        if not isinstance(payload, dict):
            raise OAuthError("invalid_request", "The request body must be a JSON object.")
        return {key: str(value) for key, value in payload.items()}
    return dict(parse_qsl(raw.decode("utf-8", errors="replace"), keep_blank_values=True))


def _resource_scope(request: Request) -> str | None:
    plural = request.path_params["plural"]
    if plural not in specs_by_plural():
        raise ApiError(404, "resourceNotFound", "Resource Not Found", f"Unknown resource type '{plural}'.")
    return required_scope(plural, request.method)


def _no_scope(_request: Request) -> None:
    return None


async def _api_error_handler(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def _http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return ApiError(
            405,
            "methodNotAllowed",
            "Method Not Allowed",
            f"{request.method} is not allowed on {request.url.path}.",
        ).response()
    return ApiError(
        exc.status_code, "resourceNotFound", "Resource Not Found", f"No route matches {request.url.path}."
    ).response()


async def _unexpected_error_handler(_request: Request, exc: Exception) -> Response:
    logger.exception("unexpected error in the Outreach sandbox", exc_info=exc)
    return internal_error().response()


def _store_error_wrapper(
    handler: Callable[[Request, AccessGrant], Awaitable[Response]],
) -> Callable[[Request, AccessGrant], Awaitable[Response]]:
    """Translate store exceptions into the documented API errors."""

    async def wrapped(request: Request, grant: AccessGrant) -> Response:
        try:
            return await handler(request, grant)
        except RecordNotFoundError as error:
            raise not_found(error.resource_type, error.record_id) from None
        except DuplicateEmailError:
            raise validation_error("Contacts email hash has already been taken.", pointer="/data") from None

    return wrapped


def create_outreach_app(store: OutreachStore, settings: OutreachSettings | None = None) -> Starlette:
    """Build the sandbox app.

    Args:
        store: where records live (shared with the seeder and the activity simulator).
        settings: behaviour switches; defaults use the sandbox-only credentials.

    Returns:
        A Starlette app; `app.state.sandbox` is the `OutreachSandbox` (tests reach the OAuth clock there).
    """
    sandbox = OutreachSandbox(store, settings or OutreachSettings())

    def api(
        handler: Callable[[Request, AccessGrant], Awaitable[Response]],
        scope_of: Callable[[Request], str | None],
    ):
        protected = _store_error_wrapper(handler)

        async def endpoint(request: Request) -> Response:
            return await sandbox.guarded(request, protected, scope_of)

        return endpoint

    async def collection(request: Request) -> Response:
        handler = sandbox.create_resource if request.method == "POST" else sandbox.list_resources
        return await api(handler, _resource_scope)(request)

    async def member(request: Request) -> Response:
        handler = {
            "GET": sandbox.fetch_resource,
            "PATCH": sandbox.update_resource,
            "DELETE": sandbox.delete_resource,
        }
        return await api(handler[request.method], _resource_scope)(request)

    routes = [
        Route("/api/v2/types", api(sandbox.types, _no_scope), methods=["GET"]),
        Route("/api/v2/schema/openapi.json", sandbox.openapi, methods=["GET"]),
        Route("/api/v2/{plural}", collection, methods=["GET", "POST"]),
        Route("/api/v2/{plural}/{record_id}", member, methods=["GET", "PATCH", "DELETE"]),
        Route(
            "/api/v2/{plural}/{record_id}/actions/{action}",
            api(sandbox.run_member_action, _resource_scope),
            methods=["POST"],
        ),
        Route("/oauth/authorize", sandbox.authorize, methods=["GET"]),
        Route("/oauth/token", sandbox.token, methods=["POST"]),
        Route("/_sandbox/oauth/expire", sandbox.expire_tokens, methods=["POST"]),
        Route("/_sandbox/outreach/settings", sandbox.change_settings, methods=["POST"]),
        Route("/_sandbox/outreach/settings", sandbox.read_settings, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            ApiError: _api_error_handler,
            HTTPException: _http_error_handler,
            Exception: _unexpected_error_handler,
        },
    )
    app.state.sandbox = sandbox
    return app
