"""Badge classes, manual awards with evidence, revocation, and the issuance audit trail."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field, StringConstraints

from plaudit.api.deps import Admin, ContainerDep, Editor, PlayerSelf, Reader
from plaudit.api.idempotency import IdempotentRoute
from plaudit.api.schemas import AwardOut, Strict
from plaudit.services.badges import BadgeView

router = APIRouter(tags=["badges"], route_class=IdempotentRoute)

BadgeId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=1000)]


class Alignment(Strict):
    targetName: str  # noqa: N815 - Open Badges field names
    targetUrl: str | None = None  # noqa: N815
    targetFramework: str | None = None  # noqa: N815
    targetCode: str | None = None  # noqa: N815


class BadgeFields(Strict):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    description: Annotated[str, StringConstraints(max_length=5000)] | None = None
    image: Annotated[str, StringConstraints(max_length=2000)] | None = None
    narrative: Annotated[str, StringConstraints(max_length=5000)] | None = None
    tags: (
        Annotated[list[Annotated[str, StringConstraints(max_length=100)]], Field(max_length=50)]
        | None
    ) = None
    alignment: Annotated[list[Alignment], Field(max_length=50)] | None = None

    def changes(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.model_fields_set if k != "id"}
        if "alignment" in out and out["alignment"] is not None:
            out["alignment"] = [a.model_dump(exclude_none=True) for a in out["alignment"]]
        return {
            k: ("" if v is None and k in ("description", "narrative") else v)
            for k, v in out.items()
        }


class BadgeCreate(BadgeFields):
    id: BadgeId
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class BadgeOut(BaseModel):
    id: str
    origin: str = Field(description="ruleset: earned by its criteria; manual: awarded by hand")
    name: str
    description: str
    image: str | None
    narrative: str
    tags: list[str]
    alignment: list[dict[str, str]]
    tiers: list[str]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, v: BadgeView) -> BadgeOut:
        b = v.badge
        return cls(
            id=b.id,
            origin=v.origin,
            name=b.name,
            description=b.description,
            image=b.image,
            narrative=b.narrative,
            tags=b.tags,
            alignment=b.alignment,
            tiers=v.tiers,
            created_at=b.created_at,
            updated_at=b.updated_at,
        )


class Evidence(Strict):
    narrative: Annotated[str, StringConstraints(max_length=5000)] | None = None
    url: Annotated[str, StringConstraints(max_length=2000)] | None = None


class AwardIn(Strict):
    player: str = Field(description="Player id or source:external_id")
    reason: Reason
    evidence: Evidence = Evidence()
    tier: str | None = None


class RevokeIn(Strict):
    reason: Reason


class IssuanceOut(BaseModel):
    id: int
    award_id: str
    player_id: str
    badge_id: str
    action: str
    actor: str
    reason: str
    at: datetime


class IssuancePage(BaseModel):
    items: list[IssuanceOut]
    next_cursor: str | None


@router.get("/v1/badges", response_model=list[BadgeOut], summary="Badge classes")
async def list_badges(principal: Reader, container: ContainerDep) -> list[BadgeOut]:
    views = await anyio.to_thread.run_sync(container.badges.all_of, principal.tenant_id)
    return [BadgeOut.of(v) for v in views]


@router.post("/v1/badges", response_model=BadgeOut, status_code=201, summary="Create a badge class")
async def create_badge(body: BadgeCreate, principal: Editor, container: ContainerDep) -> BadgeOut:
    view = await anyio.to_thread.run_sync(
        container.badges.save, principal.tenant_id, body.id, body.changes(), True
    )
    return BadgeOut.of(view)


@router.get("/v1/badges/{badge_id}", response_model=BadgeOut)
async def get_badge(badge_id: str, principal: Reader, container: ContainerDep) -> BadgeOut:
    return BadgeOut.of(
        await anyio.to_thread.run_sync(container.badges.get, principal.tenant_id, badge_id)
    )


@router.patch("/v1/badges/{badge_id}", response_model=BadgeOut, summary="Edit a badge class")
async def update_badge(
    badge_id: str, body: BadgeFields, principal: Editor, container: ContainerDep
) -> BadgeOut:
    view = await anyio.to_thread.run_sync(
        container.badges.save, principal.tenant_id, badge_id, body.changes(), False
    )
    return BadgeOut.of(view)


@router.delete(
    "/v1/badges/{badge_id}", status_code=204, summary="Delete a badge class (awards stay)"
)
async def delete_badge(badge_id: str, principal: Editor, container: ContainerDep) -> Response:
    await anyio.to_thread.run_sync(container.badges.delete, principal.tenant_id, badge_id)
    return Response(status_code=204)


@router.get("/v1/badges/{badge_id}/awards", response_model=list[AwardOut])
async def badge_awards(badge_id: str, principal: Reader, container: ContainerDep) -> list[AwardOut]:
    awards = await anyio.to_thread.run_sync(
        container.progress.awards, principal.tenant_id, badge_id
    )
    return [AwardOut.of(a) for a in awards]


@router.post(
    "/v1/badges/{badge_id}/awards",
    response_model=AwardOut,
    status_code=201,
    summary="Award a badge by hand, with evidence",
)
async def award_badge(
    badge_id: str, body: AwardIn, principal: Admin, container: ContainerDep
) -> AwardOut:
    award = await anyio.to_thread.run_sync(
        container.badges.award,
        principal.tenant_id,
        badge_id,
        body.player,
        body.evidence.model_dump(exclude_none=True),
        body.reason,
        principal.subject,
        body.tier,
    )
    return AwardOut.of(award)


@router.post("/v1/awards/{award_id}/revoke", response_model=AwardOut, summary="Revoke an award")
async def revoke_award(
    award_id: str, body: RevokeIn, principal: Admin, container: ContainerDep
) -> AwardOut:
    award = await anyio.to_thread.run_sync(
        container.badges.revoke, principal.tenant_id, award_id, body.reason, principal.subject
    )
    return AwardOut.of(award)


@router.get("/v1/players/{player}/awards", response_model=list[AwardOut], summary="All awards")
async def player_awards(
    player: str, principal: PlayerSelf, container: ContainerDep
) -> list[AwardOut]:
    awards = await anyio.to_thread.run_sync(
        container.badges.player_awards, principal.tenant_id, player
    )
    return [AwardOut.of(a) for a in awards]


@router.get(
    "/v1/issuance",
    response_model=IssuancePage,
    summary="The issuance audit trail: every issue and revocation, by whom, why, when",
)
async def issuance(
    principal: Reader,
    container: ContainerDep,
    badge_id: str | None = None,
    player: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> IssuancePage:
    page = await anyio.to_thread.run_sync(
        container.badges.issuance, principal.tenant_id, badge_id, player, cursor, limit
    )
    return IssuancePage(
        items=[
            IssuanceOut(
                id=i,
                award_id=r.award_id,
                player_id=r.player_id,
                badge_id=r.badge_id,
                action=r.action,
                actor=r.actor,
                reason=r.reason,
                at=r.at,
            )
            for i, r in page.items
        ],
        next_cursor=page.next_cursor,
    )
