"""The FastAPI application, built around a container (never at import time)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import APIRouter, FastAPI

from plaudit import __version__
from plaudit.api import problems
from plaudit.api.hot_reads import HotReads
from plaudit.api.middleware import BodyGuard
from plaudit.api.ratelimit import RequestLimits, configured
from plaudit.api.routes import (
    audit,
    badges,
    events,
    health,
    holds,
    keys,
    leaderboards,
    notifications,
    players,
    rulesets,
    scoring,
    sources,
    tenants,
    webhooks,
)
from plaudit.api.schemas import EventIn
from plaudit.bootstrap import Container

DESCRIPTION = """\
Plaudit turns domain events from your LMS, CRM or HRIS into points, levels, badges and
leaderboards. Authenticate with `Authorization: Bearer <API key>`. Errors are RFC 9457
`application/problem+json`; every POST honours an `Idempotency-Key` header.
"""


Background = Callable[[], Coroutine[Any, Any, None]]


def create_app(
    container: Container,
    background: Sequence[Background] = (),
    on_shutdown: Sequence[Callable[[], None]] = (),
    extra: Sequence[APIRouter] = (),
) -> FastAPI:
    """``background``: long-running tasks (in-process workers) that live as long as the app;
    ``on_shutdown``: run after they stop (uvicorn re-raises SIGTERM after the lifespan ends,
    so code after ``serve()`` would never run); ``extra``: routers of the demo."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tasks:
            for job in background:
                tasks.start_soon(job)
            yield
            tasks.cancel_scope.cancel()
        if container.redis_async is not None:
            await container.redis_async.aclose()
        if container.oidc is not None:
            await container.oidc.aclose()
        for hook in on_shutdown:
            hook()

    app = FastAPI(
        title="Plaudit",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.container = container
    problems.install(app)
    # Starlette tries routes in order: the most requested (leaderboards, events) come first.
    for module in (
        health,
        leaderboards,
        events,
        players,
        sources,
        rulesets,
        scoring,
        badges,
        webhooks,
        notifications,
        keys,
        tenants,
        audit,
        holds,
    ):
        app.include_router(module.router)
    for router in extra:
        app.include_router(router)
    # Innermost: the hot reads are answered after the rate limits and before the router.
    app.add_middleware(HotReads, container=container)
    app.add_middleware(BodyGuard, max_bytes=container.settings.api.max_body_bytes)
    limits = container.settings.rate_limits
    # Added last, so it runs first: a refused request's body is never read.
    app.add_middleware(
        RequestLimits,
        limiter=container.rate_limiter,
        per_key=configured(limits.per_key, "per-key"),
        per_source=configured(limits.per_source, "per-source"),
    )
    _describe_raw_bodies(app)
    return app


def _describe_raw_bodies(app: FastAPI) -> None:
    """POST /v1/events reads its body itself (for speed); publish the schema it validates."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = generate()
            schemas = spec.setdefault("components", {}).setdefault("schemas", {})
            schemas["EventIn"] = EventIn.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
