"""Starlette app emulating the Workbooks API wire format (`/<controller>.api`, `login.api`, `logout`).

Requests are accepted exactly as the official bindings send them: HTTP POST (PHP) or the verb
itself (Python binding) with a form-urlencoded body carrying `_method=GET|PUT`, `client=api`,
`api_key`/`_api_version`, and `_dc=<ms>` in the query string. Query-string and body parameters are
merged. Every failure is a JSON body with `success: false` and a message naming the problem;
unexpected errors are logged and answered with a 500 JSON body that holds no traceback.

Sandbox-only credentials (never real secrets): the api key, user and password of
`outreach_pipeline.sandbox.credentials`.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from outreach_pipeline.sandbox.credentials import SANDBOX_API_KEY, SANDBOX_PASSWORD, SANDBOX_USERNAME
from outreach_pipeline.sandbox.workbooks.filters import (
    FilterError,
    FilterSpec,
    filters_from_arrays,
    filters_from_json,
    unselected_ids,
)
from outreach_pipeline.sandbox.workbooks.store import (
    BadRequestError,
    BatchObject,
    ObjectOutcome,
    ReadQuery,
    UnknownControllerError,
    WorkbooksStore,
)
from outreach_pipeline.sandbox.workbooks.values import FieldValueError, parse_boolean

logger = logging.getLogger(__name__)

SESSION_COOKIE = "Workbooks-Session"
API_VERSION = 1
# Array parameters that steer a read; every other `key[]` of a write is a square-array attribute.
CONTROL_ARRAY_KEYS = frozenset(
    {"_ff[]", "_ft[]", "_fc[]", "_sort[]", "_dir[]", "_select_columns[]", "class_names[]"}
)
BATCH_KEYS = frozenset({"__method", "id", "lock_version"})


class WorkbooksSettings(BaseModel):
    """Run-time settings of the sandbox (changeable through `POST /_sandbox/workbooks/settings`)."""

    model_config = ConfigDict(validate_assignment=True)

    api_key: SecretStr = SecretStr(SANDBOX_API_KEY)
    username: str = SANDBOX_USERNAME
    password: SecretStr = SecretStr(SANDBOX_PASSWORD)
    session_idle_timeout_seconds: float = Field(default=8 * 3600, gt=0)
    database_name: str = "Sandbox Database"
    logical_database_id: int = 1
    user_id: int = 1
    person_name: str = "Sandbox User"
    # When true, a username/password login without logical_database_id gets the documented
    # 403 `no_database_selection_made` reply listing the databases.
    require_database_selection: bool = False
    max_result_rows: int = Field(default=10_000, gt=0)


class WorkbooksHttpError(Exception):
    """An error answered with `status` and a JSON body naming the problem."""

    def __init__(self, status: int, message: str, failure_reason: str | None = None, **extra: object) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.failure_reason = failure_reason
        self.extra = extra

    def response(self, pretty: bool = False) -> Response:
        body: dict[str, object] = {"success": False, "flash": self.message, "errors": {"base": self.message}}
        if self.failure_reason:
            body.update(failure_reason=self.failure_reason, failure_message=self.message)
        body.update(self.extra)
        return _json(body, self.status, pretty)


def _json(body: object, status: int = 200, pretty: bool = False) -> Response:
    text = json.dumps(body, indent=2 if pretty else None, ensure_ascii=False, default=str)
    return Response(text, status_code=status, media_type="application/json; charset=utf-8")


# ---------------------------------------------------------------- parameters


class RequestParams:
    """Merged query-string and body parameters, in order, duplicates kept (square arrays)."""

    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self.pairs = list(pairs)

    def get(self, key: str, default: str | None = None) -> str | None:
        values = self.get_list(key)
        return values[-1] if values else default

    def get_list(self, key: str) -> list[str]:
        return [value for name, value in self.pairs if name == key]

    def flag(self, key: str, default: bool = False) -> bool:
        raw = self.get(key)
        if raw is None:
            return default
        try:
            return parse_boolean(raw)
        except FieldValueError as error:
            raise WorkbooksHttpError(406, f"parameter {key}: {error}") from error

    def integer(self, key: str) -> int | None:
        raw = self.get(key)
        if raw is None or raw == "":
            return None
        try:
            value = int(raw)
        except ValueError as error:
            raise WorkbooksHttpError(406, f"parameter {key} must be an integer (got {raw!r})") from error
        if value < 0:
            raise WorkbooksHttpError(406, f"parameter {key} must not be negative (got {value})")
        return value

    def square_arrays(self) -> dict[str, list[str]]:
        arrays: dict[str, list[str]] = {}
        for name, value in self.pairs:
            if name.endswith("[]") and name not in CONTROL_ARRAY_KEYS:
                arrays.setdefault(name[:-2], []).append(value)
        return arrays


async def _read_params(request: Request) -> RequestParams:
    pairs = list(request.query_params.multi_items())
    body = await request.body()
    content_type = request.headers.get("content-type", "")
    if body and "multipart/form-data" in content_type:
        raise WorkbooksHttpError(406, "multipart/form-data (file upload) is not supported by the sandbox")
    if body:
        try:
            pairs.extend(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False))
        except UnicodeDecodeError as error:
            raise WorkbooksHttpError(406, "the request body is not UTF-8 form-urlencoded data") from error
    return RequestParams(pairs)


# ---------------------------------------------------------------- sessions


@dataclass
class Session:
    """A login session: the cookie value, its CSRF token and per-session options."""

    session_id: str
    authenticity_token: str
    last_seen: float
    strict_attribute_checking: bool
    per_object_transactions: bool
    application_name: str | None


class SessionRegistry:
    """Live sessions, expired after `session_idle_timeout_seconds` without a request."""

    def __init__(self, settings: WorkbooksSettings) -> None:
        self._settings = settings
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, *, strict: bool, per_object: bool, application_name: str | None) -> Session:
        session = Session(
            secrets.token_hex(16),
            secrets.token_hex(20),
            time.monotonic(),
            strict,
            per_object,
            application_name,
        )
        with self._lock:
            self._sessions[session.session_id] = session
        return session

    def resume(self, session_id: str | None) -> Session:
        """Return the live session and mark it used.

        Raises:
            WorkbooksHttpError: 401 `no_session`, `no_session_found` or `session_expired`.
        """
        if not session_id:
            raise WorkbooksHttpError(401, "Not logged in: send api_key or log in via login.api", "no_session")
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                raise WorkbooksHttpError(401, "The session was not found; log in again", "no_session_found")
            now = time.monotonic()
            if now - session.last_seen > self._settings.session_idle_timeout_seconds:
                del self._sessions[session_id]
                raise WorkbooksHttpError(
                    401, "The session expired after being idle; log in again", "session_expired"
                )
            session.last_seen = now
            return session

    def end(self, session_id: str | None) -> None:
        with self._lock:
            self._sessions.pop(session_id or "", None)

    def expire_all(self) -> int:
        with self._lock:
            count = len(self._sessions)
            self._sessions.clear()
            return count


# ---------------------------------------------------------------- the app


@dataclass
class _Caller:
    session: Session | None


class _WorkbooksApi:
    def __init__(self, store: WorkbooksStore, settings: WorkbooksSettings) -> None:
        self.store = store
        self.settings = settings
        self.sessions = SessionRegistry(settings)

    # -- entry points

    async def dispatch(self, request: Request) -> Response:
        pretty = request.query_params.get("json") == "pretty"
        try:
            params = await _read_params(request)
            pretty = params.get("json") == "pretty"
            path = request.path_params["path"].strip("/").removesuffix(".api")
            if path == "login":
                return self._login(params, pretty)
            if path == "logout":
                self.sessions.end(request.cookies.get(SESSION_COOKIE))
                return RedirectResponse("/", status_code=302)
            return await self._controller(request, params, path, pretty)
        except WorkbooksHttpError as error:
            return error.response(pretty)
        except Exception:  # the sandbox must never answer with a traceback
            logger.exception("unexpected error serving %s %s", request.method, request.url.path)
            return WorkbooksHttpError(
                500, "Internal error in the Workbooks sandbox (see the server log)"
            ).response()

    async def update_settings(self, request: Request) -> Response:
        try:
            changes = await request.json()
        except json.JSONDecodeError:
            return WorkbooksHttpError(406, "the body must be a JSON object of settings").response()
        if not isinstance(changes, dict):
            return WorkbooksHttpError(406, "the body must be a JSON object of settings").response()
        unknown = sorted(set(changes) - set(WorkbooksSettings.model_fields))
        if unknown:
            return WorkbooksHttpError(406, f"unknown settings {unknown}").response()
        try:
            for key, value in changes.items():
                setattr(self.settings, key, value)
        except ValidationError as error:
            return WorkbooksHttpError(
                406, f"invalid setting: {error.errors()[0]['loc']} {error.errors()[0]['msg']}"
            ).response()
        return _json({"success": True, "settings": json.loads(self.settings.model_dump_json())})

    async def expire_sessions(self, _request: Request) -> Response:
        return _json({"success": True, "expired": self.sessions.expire_all()})

    # -- auth

    def _login(self, params: RequestParams, pretty: bool) -> Response:
        if params.get("client") != "api":
            raise WorkbooksHttpError(406, "login.api needs client=api (and api_version=1)")
        api_key, username = params.get("api_key"), params.get("username")
        if api_key is not None:
            self._check_api_key(api_key)
        elif username is not None and params.get("session_id"):
            self.sessions.resume(params.get("session_id"))
            self._check_username(username)
        elif username is not None:
            self._check_username(username)
            if not secrets.compare_digest(
                params.get("password") or "", self.settings.password.get_secret_value()
            ):
                raise WorkbooksHttpError(
                    401, "Unrecognised name or password", "unrecognised_name_or_password"
                )
        else:
            raise WorkbooksHttpError(406, "login.api needs api_key, or username and password")
        self._check_database(params, via_api_key=api_key is not None)
        session = self.sessions.create(
            strict=params.flag("_strict_attribute_checking"),
            per_object=params.flag("_per_object_transactions"),
            application_name=params.get("_application_name"),
        )
        response = _json(self._login_body(session), 200, pretty)
        response.set_cookie(SESSION_COOKIE, session.session_id, path="/", httponly=True)
        return response

    def _check_api_key(self, api_key: str) -> None:
        if not secrets.compare_digest(api_key, self.settings.api_key.get_secret_value()):
            raise WorkbooksHttpError(401, "The api_key is not recognised", "unrecognised_api_key")

    def _check_username(self, username: str) -> None:
        if username != self.settings.username:
            raise WorkbooksHttpError(401, "Unrecognised name or password", "unrecognised_name_or_password")

    def _databases(self) -> list[dict[str, object]]:
        return [
            {"logical_database_id": self.settings.logical_database_id, "name": self.settings.database_name}
        ]

    def _check_database(self, params: RequestParams, *, via_api_key: bool) -> None:
        requested = params.integer("logical_database_id")
        if requested is None:
            if self.settings.require_database_selection and not via_api_key:
                raise WorkbooksHttpError(
                    403,
                    "Choose a database: send logical_database_id",
                    "no_database_selection_made",
                    databases=self._databases(),
                )
            return
        if requested != self.settings.logical_database_id:
            raise WorkbooksHttpError(
                403, f"Database {requested} is not available to this user", "database_unavailable"
            )

    def _login_body(self, session: Session) -> dict[str, object]:
        return {
            "success": True,
            "session_id": session.session_id,
            "authenticity_token": session.authenticity_token,
            "database_name": self.settings.database_name,
            "logical_database_id": self.settings.logical_database_id,
            "default_database_id": self.settings.logical_database_id,
            "database_instance_id": self.settings.logical_database_id,
            "databases": self._databases(),
            "user_id": self.settings.user_id,
            "person_name": self.settings.person_name,
            "login_name": self.settings.username,
            "api_version": API_VERSION,
            "my_queues": {},
        }

    def _authenticate(self, request: Request, params: RequestParams, method: str) -> _Caller:
        api_key = params.get("api_key")
        if api_key is not None:
            self._check_api_key(api_key)
            return _Caller(session=None)
        session = self.sessions.resume(request.cookies.get(SESSION_COOKIE))
        if method != "GET":
            token = params.get("_authenticity_token") or ""
            if not secrets.compare_digest(token, session.authenticity_token):
                raise WorkbooksHttpError(
                    401,
                    "Session requests that change data need the _authenticity_token from login.api",
                    "invalid_authenticity_token",
                )
        return _Caller(session=session)

    # -- controllers

    async def _controller(self, request: Request, params: RequestParams, path: str, pretty: bool) -> Response:
        method = (params.get("_method") or request.method).upper()
        caller = self._authenticate(request, params, method)
        if path == "metadata/types":
            return _json(self._metadata(params), 200, pretty)
        try:
            self.store.spec_for(path)
        except UnknownControllerError as error:
            raise WorkbooksHttpError(404, str(error)) from error
        if method == "GET":
            body = await run_in_threadpool(self._read, path, params)
        elif method == "PUT":
            body = await run_in_threadpool(self._write, path, params, caller)
        else:
            raise WorkbooksHttpError(
                405, f"{method} is not supported: read with _method=GET, change with _method=PUT"
            )
        return _json(body, 200, pretty)

    def _read(self, path: str, params: RequestParams) -> dict[str, object]:
        query = ReadQuery(
            filters=tuple(_filters(params)),
            filter_mode=params.get("_fm"),
            sort=tuple(_sort(params)),
            start=params.integer("_start"),
            limit=params.integer("_limit"),
            select_columns=tuple(params.get_list("_select_columns[]")) or None,
            skip_total=params.flag("__skip_total_rows"),
            max_rows=self.settings.max_result_rows,
        )
        try:
            result = self.store.read(path, query)
        except BadRequestError as error:
            raise WorkbooksHttpError(406, str(error)) from error
        return {"data": result.data, "total": result.total, "success": True, "flash": "", "updates": {}}

    def _write(self, path: str, params: RequestParams, caller: _Caller) -> dict[str, object]:
        objects = _batch_objects(params)
        _check_working_set(params, objects)
        session = caller.session
        try:
            outcomes = self.store.apply_batch(
                path,
                objects,
                per_object_transactions=params.flag(
                    "_per_object_transactions", bool(session and session.per_object_transactions)
                ),
                strict_attribute_checking=params.flag(
                    "_strict_attribute_checking", bool(session and session.strict_attribute_checking)
                ),
                actor=self.settings.person_name,
                created_through=params.get("_application_name")
                or (session and session.application_name)
                or "API",
            )
        except BadRequestError as error:
            raise WorkbooksHttpError(406, str(error)) from error
        return _batch_body(path, objects, outcomes, per_object=params.flag("_per_object_transactions"))

    def _metadata(self, params: RequestParams) -> dict[str, object]:
        wanted = set(params.get_list("class_names[]"))
        types = [spec for spec in self.store.record_types() if not wanted or spec.class_name in wanted]
        data = [
            {
                "class_name": spec.class_name,
                "controller_path": spec.controller_path,
                "human_class_name": spec.human_class_name,
                "fields": [_field_metadata(field) for field in spec.fields],
                "associations": [],
            }
            for spec in types
        ]
        return {"data": data, "total": len(data), "success": True, "flash": "", "updates": {}}


def _field_metadata(field) -> dict[str, object]:
    entry: dict[str, object] = {
        "name": field.name,
        "datatype": field.datatype.value,
        "title": field.title,
        "required": field.required,
        "is_createable": field.is_createable,
        "is_updateable": field.is_updateable,
        "is_filterable": field.is_filterable,
        "is_nullable": field.is_nullable,
        "default_value": field.default_value,
        "is_custom": field.custom,
    }
    if field.picklist:
        entry["picklist"] = [{"value": value, "label": value} for value in field.picklist]
    if field.linked_item:
        entry["linked_item"] = field.linked_item
    return entry


def _filters(params: RequestParams) -> list[FilterSpec]:
    try:
        filters = filters_from_arrays(
            params.get_list("_ff[]"), params.get_list("_ft[]"), params.get_list("_fc[]")
        )
        filter_json = params.get("_filter_json")
        if filter_json:
            filters.extend(filters_from_json(filter_json))
    except FilterError as error:
        raise WorkbooksHttpError(406, str(error)) from error
    return filters


def _sort(params: RequestParams) -> list[tuple[str, str]]:
    fields = params.get_list("_sort[]") or params.get_list("_sort")
    directions = params.get_list("_dir[]") or params.get_list("_dir")
    return [(name, directions[i] if i < len(directions) else "ASC") for i, name in enumerate(fields)]


def _batch_objects(params: RequestParams) -> list[BatchObject]:
    arrays = params.square_arrays()
    if "__method" not in arrays:
        raise WorkbooksHttpError(
            406,
            "a write sends square arrays with __method[] (POST/PUT/DELETE), id[] and lock_version[] per object",
        )
    count = len(arrays["__method"])
    uneven = {key: len(values) for key, values in arrays.items() if len(values) != count}
    if uneven:
        raise WorkbooksHttpError(
            406,
            f"square arrays must all have {count} values (one per object, as __method[]); uneven: {uneven}",
        )
    objects = []
    for index in range(count):
        attributes = {key: values[index] for key, values in arrays.items() if key not in BATCH_KEYS}
        objects.append(
            BatchObject(
                method=arrays["__method"][index],
                id=arrays.get("id", ["0"] * count)[index],
                lock_version=arrays.get("lock_version", ["0"] * count)[index],
                attributes=attributes,
            )
        )
    return objects


def _check_working_set(params: RequestParams, objects: Sequence[BatchObject]) -> None:
    working_set = []
    for obj in objects:
        try:
            working_set.append(0 if obj.method.upper() == "POST" else int(obj.id))
        except ValueError as error:
            raise WorkbooksHttpError(406, f"id[] value {obj.id!r} is not an integer") from error
    try:
        missing = unselected_ids(_filters(params), params.get("_fm"), dict.fromkeys(working_set))
    except FilterError as error:
        raise WorkbooksHttpError(406, str(error)) from error
    if missing:
        described = ", ".join(
            "0 (the creates)" if record_id == 0 else str(record_id) for record_id in missing
        )
        raise WorkbooksHttpError(
            406, f"the filter does not select every object of the request; not selected: id {described}"
        )


def _batch_body(
    path: str, objects: Sequence[BatchObject], outcomes: Sequence[ObjectOutcome], *, per_object: bool
) -> dict[str, object]:
    information = [{"success": o.success, "errors": o.errors, "warnings": o.warnings} for o in outcomes]
    failures = [
        {"index": index, "id": _int_or_zero(obj.id), "errors": outcome.errors}
        for index, (obj, outcome) in enumerate(zip(objects, outcomes, strict=True))
        if not outcome.success
    ]
    if not failures:
        return {
            "affected_objects": [o.affected for o in outcomes],
            "affected_object_information": information,
            "success": True,
            "flash": "Updated successfully",
            "updates": {},
        }
    flash = "; ".join(
        f"object {f['index'] + 1} of {len(objects)} ({path} id {f['id']}): {' / '.join(f['errors'].values())}"
        for f in failures
    )
    errors = {f"[{f['index']}]": f["errors"] for f in failures}
    if per_object:
        affected = [
            o.affected
            if o.success
            else {"id": _int_or_zero(obj.id), "lock_version": _int_or_zero(obj.lock_version)}
            for obj, o in zip(objects, outcomes, strict=True)
        ]
        return {
            "affected_objects": affected,
            "affected_object_information": information,
            "errors": errors,
            "failures": failures,
            "success": True,
            "flash": flash,
            "updates": {},
        }
    return {
        "affected_objects": [],
        "affected_object_information": information,
        "affected_object_errors": [{key: [message] for key, message in o.errors.items()} for o in outcomes],
        "errors": errors,
        "failures": failures,
        "success": False,
        "flash": flash,
        "updates": {},
    }


def _int_or_zero(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        return 0


def create_workbooks_app(store: WorkbooksStore, settings: WorkbooksSettings | None = None) -> Starlette:
    """Build the Workbooks sandbox app over `store`.

    Args:
        store: the sandbox database.
        settings: credentials and behaviour; the same object is changed by the admin route.

    Returns:
        A Starlette app serving `/<controller>.api`, `/login.api`, `/logout` and `/_sandbox/workbooks/*`.
    """
    api = _WorkbooksApi(store, settings or WorkbooksSettings())
    routes = [
        Route("/_sandbox/workbooks/settings", api.update_settings, methods=["POST"]),
        Route("/_sandbox/workbooks/expire_sessions", api.expire_sessions, methods=["POST"]),
        Route("/{path:path}", api.dispatch, methods=["GET", "POST", "PUT", "DELETE"]),
    ]
    app = Starlette(routes=routes)
    app.state.workbooks = api
    return app
