"""The Idempotency-Key header on every POST, as a route class wrapping each handler."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Coroutine
from typing import Any

import anyio.to_thread
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from plaudit.api.deps import app_container, authenticate
from plaudit.errors import FieldError, InvalidInput

HEADER = "idempotency-key"
REPLAYED = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255


def parse_key(raw: str) -> str:
    """The draft sends the key as a structured-field string ("..."); bare tokens are accepted."""
    key = raw.strip()
    if len(key) >= 2 and key[0] == key[-1] == '"':
        key = key[1:-1]
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidInput(
            "invalid Idempotency-Key header",
            [FieldError("Idempotency-Key", f"1 to {MAX_KEY_LENGTH} printable characters")],
        )
    return key


def request_fingerprint(method: str, path: str, query: str, body: bytes) -> str:
    """What makes two requests "the same request" for a key."""
    digest = hashlib.sha256()
    for part in (method, path, query):
        digest.update(part.encode() + b"\0")
    digest.update(body)
    return digest.hexdigest()


def _storable(status: int) -> bool:
    # Server errors and "try again" answers must not be replayed: a retry should run again.
    return status < 500 and status not in (409, 429)


class IdempotentRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def idempotent(request: Request) -> Response:
            raw = request.headers.get(HEADER)
            if request.method != "POST" or raw is None:
                return await handler(request)
            key = parse_key(raw)
            principal = await authenticate(request)
            fingerprint = request_fingerprint(
                request.method, request.url.path, request.url.query, await request.body()
            )
            service = app_container(request).idempotency
            tenant = principal.tenant_id
            stored = await anyio.to_thread.run_sync(service.begin, tenant, key, fingerprint)
            if stored is not None:
                return Response(
                    stored.body,
                    status_code=stored.status_code or 200,
                    media_type=stored.content_type,
                    headers={REPLAYED: "true"},
                )
            try:
                response = await handler(request)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(service.release, tenant, key)
                raise
            if _storable(response.status_code) and hasattr(response, "body"):
                await anyio.to_thread.run_sync(
                    service.complete,
                    tenant,
                    key,
                    response.status_code,
                    response.media_type or "application/json",
                    bytes(response.body),
                )
            else:
                await anyio.to_thread.run_sync(service.release, tenant, key)
            return response

        return idempotent
