"""RFC 9457 problem details: every error leaves the API as application/problem+json."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from plaudit import errors as e

log = logging.getLogger("plaudit.api")

PROBLEM_MEDIA_TYPE = "application/problem+json"

STATUS_OF: dict[type[e.PlauditError], int] = {
    e.MalformedRequest: 400,
    e.PayloadTooLarge: 413,
    e.UnsupportedMediaType: 415,
    e.InvalidInput: 422,
    e.AuthenticationFailed: 401,
    e.PermissionDenied: 403,
    e.NotFound: 404,
    e.IdempotencyKeyInFlight: 409,
    e.Conflict: 409,
    e.IdempotencyKeyReused: 422,
    e.RateLimited: 429,
    e.ServiceUnavailable: 503,
    e.ConfigurationError: 500,
}

# Problem types that do not come from a PlauditError.
EXTRA_TYPES = {
    "method-not-allowed": "Method not allowed",
    "internal-error": "Internal server error",
}


def problem_type(slug: str) -> str:
    """Stable, resolvable: GET /problems/{slug} describes it."""
    return f"/problems/{slug}"


def problem_catalogue() -> dict[str, str]:
    catalogue = {cls.slug: cls.title for cls in STATUS_OF}
    catalogue.update(EXTRA_TYPES)
    return catalogue


def problem_response(
    status: int,
    slug: str,
    title: str,
    detail: str,
    instance: str | None = None,
    errors: Iterable[e.FieldError] = (),
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    body: dict[str, Any] = {
        "type": problem_type(slug),
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    listed = [{"field": fe.field, "message": fe.message} for fe in errors]
    if listed:
        body["errors"] = listed
    body.update(extra)
    return Response(
        orjson.dumps(body), status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers
    )


def status_for(exc: e.PlauditError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return 500


def _field_path(loc: Sequence[int | str]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


_FRIENDLY = {
    "extra_forbidden": "unknown field",
    "missing": "required",
    "timezone_aware": "must carry a time zone (e.g. 2026-05-01T10:00:00Z)",
}


def pydantic_errors(raw: Iterable[Any], strip: int = 0) -> list[e.FieldError]:
    """Pydantic's error list as field errors; ``strip`` drops leading loc parts (body, query)."""
    out = []
    for err in raw:
        loc = tuple(err.get("loc", ()))[strip:]
        if loc[:1] == ("body",):  # the body is what the caller sent: name fields inside it
            loc = loc[1:]
        message = _FRIENDLY.get(err.get("type", ""), err.get("msg", "invalid"))
        out.append(e.FieldError(_field_path(loc), message))
    return out


def install(app: FastAPI) -> None:
    @app.exception_handler(e.PlauditError)
    async def _plaudit_error(request: Request, exc: e.PlauditError) -> Response:
        status = status_for(exc)
        headers = {"WWW-Authenticate": 'Bearer realm="plaudit"'} if status == 401 else None
        extra: dict[str, Any] = getattr(exc, "extra", {}) or {}
        return problem_response(
            status,
            exc.slug,
            exc.title,
            exc.detail,
            instance=request.url.path,
            errors=getattr(exc, "errors", ()),
            headers=headers,
            **extra,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        errors = pydantic_errors(exc.errors())
        if any(fe.message == "JSON decode error" for fe in errors):
            return problem_response(
                400,
                e.MalformedRequest.slug,
                e.MalformedRequest.title,
                "the body is not valid JSON",
                instance=request.url.path,
            )
        fields = ", ".join(sorted({fe.field for fe in errors})) or "request"
        return problem_response(
            422,
            e.InvalidInput.slug,
            e.InvalidInput.title,
            f"invalid {fields}",
            instance=request.url.path,
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return problem_response(
                404, e.NotFound.slug, e.NotFound.title, f"no route {request.url.path}"
            )
        if exc.status_code == 405:
            return problem_response(
                405,
                "method-not-allowed",
                EXTRA_TYPES["method-not-allowed"],
                f"{request.method} is not allowed on {request.url.path}",
                headers=dict(exc.headers or {}),
            )
        return problem_response(
            exc.status_code, e.MalformedRequest.slug, e.MalformedRequest.title, str(exc.detail)
        )

    @app.exception_handler(sqlalchemy.exc.DBAPIError)
    async def _database_error(request: Request, exc: sqlalchemy.exc.DBAPIError) -> Response:
        if isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
            log.warning("database unavailable on %s: %s", request.url.path, exc.orig)
            return problem_response(
                503,
                e.ServiceUnavailable.slug,
                e.ServiceUnavailable.title,
                "the database is unavailable; retry shortly",
                instance=request.url.path,
                headers={"Retry-After": "1"},
            )
        return await _unexpected(request, exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(
            500,
            "internal-error",
            EXTRA_TYPES["internal-error"],
            "an unexpected error occurred; it has been logged",
            instance=request.url.path,
        )
