"""Rate limits on requests: per credential and per client address, before any route runs.

A refused request gets 429 problem+json with ``RateLimit-Policy``, ``RateLimit`` and
``Retry-After``; an allowed one carries ``RateLimit-Policy`` and ``RateLimit`` too. Health
checks are exempt. When the limiter's store (Redis) cannot be reached, requests pass and
the failure is logged: a protection must not take the API down with it.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from plaudit.api.deps import bearer_token
from plaudit.api.problems import problem_response
from plaudit.domain.events import IncomingEvent
from plaudit.errors import FieldError, RateLimited, ServiceUnavailable
from plaudit.ratelimit.headers import rate_limit_headers
from plaudit.ratelimit.ports import Decision, Limit, RateLimiter, Take, parse_limit
from plaudit.services.ingest import Submitted

log = logging.getLogger("plaudit.api")

_EXEMPT = {"/healthz", "/readyz"}
_WARN_EVERY = 60.0  # seconds between warnings about an unreachable limiter


@functools.cache
def configured(text: str, name: str | None = None) -> Limit | None:
    """The limit a setting names (parsed once, validated with the settings); None when the
    setting is empty (off)."""
    return parse_limit(text, name=name) if text else None


class RequestLimits:
    def __init__(
        self,
        app: ASGIApp,
        limiter: RateLimiter,
        per_key: Limit | None,
        per_source: Limit | None,
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.per_key = per_key
        self.per_source = per_source
        self._warned = 0.0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in _EXEMPT:
            await self.app(scope, receive, send)
            return
        try:
            decisions = await self._decide(scope)
        except ServiceUnavailable as exc:
            if time.monotonic() - self._warned >= _WARN_EVERY:
                self._warned = time.monotonic()
                log.warning("rate limits not applied: %s", exc.detail)
            await self.app(scope, receive, send)
            return
        headers = rate_limit_headers(*decisions)
        refused = [d for d in decisions if not d.allowed]
        if refused:
            which = ", ".join(d.limit.name for d in refused)
            response = problem_response(
                429,
                RateLimited.slug,
                RateLimited.title,
                f"too many requests ({which}); retry after {headers['Retry-After']} s",
                instance=scope.get("path"),
                headers=headers,
            )
            await response(scope, receive, send)
            return
        extra = [(k.lower().encode(), v.encode()) for k, v in headers.items()]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _decide(self, scope: Scope) -> list[Decision]:
        takes: list[Take] = []
        if self.per_source is not None:
            client = scope.get("client")
            source = client[0] if client else "unknown"
            takes.append((f"src:{source}", self.per_source, 1))
        if self.per_key is not None:
            token = bearer_token(scope)
            if token is not None:
                # The credential's hash: a bucket per key (or token), and no secret in Redis.
                name = hashlib.sha256(token).hexdigest()[:32]
                takes.append((f"key:{name}", self.per_key, 1))
        return await self.limiter.take_each_async(takes) if takes else []


async def limit_players(
    items: list[Submitted], tenant_id: str, limiter: RateLimiter, limit: Limit
) -> list[Submitted]:
    """Each player (source and actor) may send ``limit`` events: a batch takes what its
    players' buckets hold, in order, and each event beyond is rejected with the time to
    retry (never dropped silently). One take per player in the batch."""
    wanted: dict[tuple[str, str], int] = {}
    for item in items:
        if isinstance(item, IncomingEvent):
            who = (item.source, item.actor)
            wanted[who] = wanted.get(who, 0) + 1
    allowed: dict[tuple[str, str], int] = {}
    retry: dict[tuple[str, str], float] = {}
    for (source, actor), count in wanted.items():
        key = f"player:{tenant_id}:{source}:{actor}"
        take = min(count, limit.burst)
        decision = await limiter.take_async(key, limit, take)
        if not decision.allowed:
            take = decision.remaining  # what the bucket holds now, if anything
            if take == 0 or not (await limiter.take_async(key, limit, take)).allowed:
                take = 0
        allowed[(source, actor)] = take
        if take < count:
            retry[(source, actor)] = max(1.0, (count - take) / limit.rate)
    out: list[Submitted] = []
    for item in items:
        if isinstance(item, IncomingEvent):
            who = (item.source, item.actor)
            if allowed[who] > 0:
                allowed[who] -= 1
            else:
                wait = math.ceil(retry[who])
                message = (
                    f"rate limited: more than {limit.name} events for this player; "
                    f"retry after {wait} s"
                )
                out.append([FieldError("actor", message)])
                continue
        out.append(item)
    return out
