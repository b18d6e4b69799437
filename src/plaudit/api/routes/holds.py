"""The anti-cheat review queue: players whose events are held; release or reject them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter
from pydantic import BaseModel, StringConstraints

from plaudit.api.deps import Admin, ContainerDep
from plaudit.api.idempotency import IdempotentRoute
from plaudit.api.schemas import Strict

router = APIRouter(prefix="/v1/holds", tags=["holds"], route_class=IdempotentRoute)


class HeldPlayerOut(BaseModel):
    player_id: str
    events: int
    reason: str
    since: datetime


class RejectIn(Strict):
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)]


class Decided(BaseModel):
    events: int


@router.get("", response_model=list[HeldPlayerOut], summary="Players with events held for review")
async def queue(principal: Admin, container: ContainerDep) -> list[HeldPlayerOut]:
    held = await anyio.to_thread.run_sync(container.holds.queue, principal.tenant_id)
    return [
        HeldPlayerOut(player_id=h.player_id, events=h.events, reason=h.reason, since=h.since)
        for h in held
    ]


@router.post(
    "/{player}/release",
    response_model=Decided,
    summary="Score the player's held events now, in order",
)
async def release(player: str, principal: Admin, container: ContainerDep) -> Decided:
    count = await anyio.to_thread.run_sync(
        container.holds.release, principal.tenant_id, player, principal.subject
    )
    return Decided(events=count)


@router.post(
    "/{player}/reject",
    response_model=Decided,
    summary="Retract the player's held events: they never score",
)
async def reject(player: str, body: RejectIn, principal: Admin, container: ContainerDep) -> Decided:
    count = await anyio.to_thread.run_sync(
        container.holds.reject, principal.tenant_id, player, body.reason, principal.subject
    )
    return Decided(events=count)
