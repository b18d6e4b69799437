"""The two most requested reads, answered before FastAPI's routing and dependency solving.

A leaderboard page and around-me are what players' screens poll. Through FastAPI each spent
about 100 µs of CPU matching routes, solving dependencies and validating parameters, as much
as the read itself. This middleware answers them directly when the request is plain: a GET
of ``/v1/leaderboards/{board}/standings[/{subject}]`` with an API key checked recently (the
cache of ``TenancyService``, no I/O), a scope to read, and parameters in their usual form.
Anything else — no or unknown credentials, a player's token, a parameter to be refused or
coerced, an error from the service — goes on to the FastAPI route, which is the reference:
the answer comes from the same functions (``answer_standings``, ``answer_around``), so both
paths give the same response, and errors are the route's own problem+json.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from plaudit.api.deps import bearer_token
from plaudit.api.routes.leaderboards import AROUND_MAX, Asked, answer_around, answer_standings
from plaudit.bootstrap import Container
from plaudit.domain.auth import Scope as Permission
from plaudit.domain.pagination import decode_position
from plaudit.errors import PlauditError

_PATH = re.compile(r"/v1/leaderboards/([^/]+)/standings(?:/([^/]+))?")
# Values the route would take as they are; others (signs, spaces, leading zeros, out of
# range) go to the route, which coerces or refuses them.
_NUMBER = re.compile(r"0|[1-9][0-9]{0,3}")
_LIMIT_MAX = 1000
_WINDOW_MAX = 16
Params = dict[str, str]
_STANDINGS_PARAMS = frozenset({"window", "limit", "cursor"})
_AROUND_PARAMS = frozenset({"window", "around"})


class HotReads:
    def __init__(self, app: ASGIApp, container: Container) -> None:
        self.app = app
        self.container = container

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and not scope.get("root_path"):
            found = _PATH.fullmatch(scope["path"])
            if found is not None:
                response = await self._answer(scope, found[1], found[2])
                if response is not None:
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _answer(self, scope: Scope, board_id: str, subject: str | None) -> Response | None:
        """The response, or None to let the route answer."""
        tenant_id = self._reader(scope)
        params = _params(scope, _STANDINGS_PARAMS if subject is None else _AROUND_PARAMS)
        if tenant_id is None or params is None:
            return None
        window = params.get("window")
        if window is not None and not 0 < len(window) <= _WINDOW_MAX:
            return None
        read = (tenant_id, board_id, window, Asked.of(Request(scope)))
        try:
            if subject is None:
                return await self._standings(*read, params)
            return await self._around(*read, subject, params)
        except PlauditError:
            return None  # the route raises it again, and answers it as problem+json

    async def _standings(
        self, tenant_id: str, board_id: str, window: str | None, asked: Asked, params: Params
    ) -> Response | None:
        limit = _number(params.get("limit", "50"), 1, _LIMIT_MAX)
        if limit is None:
            return None
        offset = decode_position(params.get("cursor"))
        service = self.container.leaderboards
        return await answer_standings(service, tenant_id, board_id, window, offset, limit, asked)

    async def _around(
        self,
        tenant_id: str,
        board_id: str,
        window: str | None,
        asked: Asked,
        subject: str,
        params: Params,
    ) -> Response | None:
        k = _number(params.get("around", "5"), 0, AROUND_MAX)
        if k is None:
            return None
        service = self.container.leaderboards
        return await answer_around(service, tenant_id, board_id, subject, window, k, asked)

    def _reader(self, scope: Scope) -> str | None:
        """The tenant of a recently checked API key allowed to read, else None."""
        token = bearer_token(scope)
        if token is None:
            return None
        principal = self.container.tenancy.cached_principal(token.decode("latin-1"))
        if principal is None or not principal.allows(Permission.READ):
            return None
        return principal.tenant_id


def _params(scope: Scope, known: frozenset[str]) -> Params | None:
    """The query's parameters the route reads; None when one is repeated or not UTF-8."""
    try:
        pairs = parse_qsl(
            scope["query_string"].decode("ascii"),
            keep_blank_values=True,
            errors="strict",
        )
    except (UnicodeDecodeError, ValueError):
        return None
    found: Params = {}
    for name, value in pairs:
        if name in known:
            if name in found:
                return None
            found[name] = value
    return found


def _number(text: str, low: int, high: int) -> int | None:
    if not _NUMBER.fullmatch(text):
        return None
    value = int(text)
    return value if low <= value <= high else None
