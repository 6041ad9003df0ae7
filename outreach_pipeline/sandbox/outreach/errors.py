"""Outreach's JSON:API error objects: `{"errors": [{"id", "title", "detail", "source"?}]}`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse

JSON_API = "application/vnd.api+json"


class ApiError(Exception):
    """An error the sandbox answers in Outreach's documented error shape.

    Args:
        status: HTTP status.
        error_id: machine-readable id, e.g. `validationError`.
        title: short summary, e.g. "Validation Error".
        detail: message for this occurrence, naming the record and field involved.
        pointer: JSON pointer into the request body (`/data/attributes/name`), if any.
        parameter: offending query parameter (`filter[foo]`), if any.
        headers: extra response headers (e.g. `Retry-After`).
    """

    def __init__(
        self,
        status: int,
        error_id: str,
        title: str,
        detail: str,
        *,
        pointer: str | None = None,
        parameter: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.error_id = error_id
        self.title = title
        self.detail = detail
        self.pointer = pointer
        self.parameter = parameter
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        """The response document."""
        error: dict[str, Any] = {"id": self.error_id, "title": self.title, "detail": self.detail}
        if self.pointer is not None:
            error["source"] = {"pointer": self.pointer}
        elif self.parameter is not None:
            error["source"] = {"parameter": self.parameter}
        return {"errors": [error]}

    def response(self) -> JSONResponse:
        """The HTTP response."""
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers, media_type=JSON_API)


def bad_request(detail: str, *, parameter: str | None = None) -> ApiError:
    """400 for a malformed query parameter or body."""
    return ApiError(400, "badRequest", "Bad Request", detail, parameter=parameter)


def validation_error(detail: str, *, pointer: str = "/data") -> ApiError:
    """422 for a body that breaks the spec or a model rule."""
    return ApiError(422, "validationError", "Validation Error", detail, pointer=pointer)


def not_found(resource_type: str, record_id: object) -> ApiError:
    """404 in Outreach's wording."""
    return ApiError(
        404,
        "resourceNotFound",
        "Resource Not Found",
        f"Could not find '{resource_type}' with ID '{record_id}'.",
    )


def unauthorized(detail: str) -> ApiError:
    """401 for a missing, unknown or expired access token."""
    return ApiError(401, "unauthorized", "Unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})


def internal_error() -> ApiError:
    """500 that reveals nothing about the failure (it is logged server-side)."""
    return ApiError(500, "internalServerError", "Internal Server Error", "An unexpected error occurred.")
