"""Liveness, readiness and the problem-type catalogue (no authentication)."""

from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from plaudit.api.deps import ContainerDep
from plaudit.api.problems import problem_catalogue, problem_type
from plaudit.errors import NotFound

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Each dependency answers")
async def readyz(container: ContainerDep) -> JSONResponse:
    checks = await anyio.to_thread.run_sync(container.readiness)
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
    )


@router.get("/problems/{slug}", summary="What a problem type means")
async def describe_problem(slug: str) -> dict[str, str]:
    catalogue = problem_catalogue()
    if slug not in catalogue:
        raise NotFound(f"no problem type {slug!r}")
    return {"type": problem_type(slug), "title": catalogue[slug]}
