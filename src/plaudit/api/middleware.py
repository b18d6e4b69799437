"""ASGI middleware: body size cap and content type, before any route sees the request."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from plaudit.api.problems import problem_response

_BODY_METHODS = {b"POST", b"PUT", b"PATCH"}
_JSON_TYPES = ("application/json", "application/merge-patch+json")


class BodyGuard:
    """Refuse bodies over ``max_bytes`` (413) and non-JSON bodies (415); nothing else is read.

    The body is buffered here (the routes need all of it anyway) and handed on unchanged.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"].encode() not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        path = scope.get("path", "")
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(scope, receive, send, path)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(scope, receive, send, path)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if body:
            media = headers.get(b"content-type", b"").split(b";")[0].strip().decode("latin-1")
            if media.lower() not in _JSON_TYPES and not media.lower().endswith("+json"):
                response = problem_response(
                    415,
                    "unsupported-media-type",
                    "Unsupported media type",
                    f"send JSON with 'Content-Type: application/json' (got {media or 'none'!r})",
                    instance=path,
                )
                await response(scope, receive, send)
                return

        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        response = problem_response(
            413,
            "payload-too-large",
            "Payload too large",
            f"the request body is larger than the {self.max_bytes}-byte limit",
            instance=path,
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)
