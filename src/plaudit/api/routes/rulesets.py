"""Rule sets: drafts, validation, publishing, versions, diff, roll back."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BaseModel, Field

from plaudit.api.deps import Admin, ContainerDep, Editor, Reader
from plaudit.api.idempotency import IdempotentRoute
from plaudit.api.schemas import Strict
from plaudit.rules.model import json_schema
from plaudit.services.backfill import BackfillReport
from plaudit.services.rulesets import RuleSetView, Validation
from plaudit.store.ports import RuleSetVersion

router = APIRouter(prefix="/v1/rulesets", tags=["rules"], route_class=IdempotentRoute)

Source = Annotated[str, Field(min_length=1, description="The rule set, as YAML or JSON text")]


class RuleSetCreate(Strict):
    name: Annotated[str, Field(min_length=1, max_length=200)]
    source: Source


class DraftUpdate(Strict):
    source: Source


class PublishIn(Strict):
    note: Annotated[str, Field(max_length=500)] = ""
    backfill: bool = Field(
        default=False,
        description="Apply the new version to past events: gains at once, losses held for "
        "confirmation (POST /v1/backfills/{id}/confirm)",
    )


class BackfillOut(BaseModel):
    id: str
    ruleset_id: str
    version: int
    status: str
    applied: dict[str, Any]
    pending: dict[str, Any]

    @classmethod
    def of(cls, r: BackfillReport) -> BackfillOut:
        return cls(
            id=r.id,
            ruleset_id=r.ruleset_id,
            version=r.version,
            status=r.status,
            applied=r.applied,
            pending=r.pending,
        )


class RollbackIn(Strict):
    version: Annotated[int, Field(ge=1)]


class ProblemOut(BaseModel):
    rule: str
    field: str
    message: str
    line: int | None


class ValidationOut(BaseModel):
    valid: bool
    problems: list[ProblemOut]
    warnings: list[str]

    @classmethod
    def of(cls, v: Validation) -> ValidationOut:
        return cls(
            valid=v.valid,
            problems=[
                ProblemOut(rule=p.rule, field=p.field, message=p.message, line=p.line)
                for p in v.problems
            ],
            warnings=v.warnings,
        )


class VersionOut(BaseModel):
    version: int
    published_at: datetime
    published_by: str
    note: str
    source: str | None = None
    backfill: BackfillOut | None = None

    @classmethod
    def of(cls, v: RuleSetVersion, with_source: bool = False) -> VersionOut:
        return cls(
            version=v.version,
            published_at=v.published_at,
            published_by=v.published_by,
            note=v.note,
            source=v.source if with_source else None,
        )


class RuleSetOut(BaseModel):
    id: str
    name: str
    draft: str
    created_at: datetime
    updated_at: datetime
    versions: list[VersionOut]
    live_version: int | None

    @classmethod
    def of(cls, view: RuleSetView) -> RuleSetOut:
        r = view.record
        live = view.live.version if view.live and view.live.ruleset_id == r.id else None
        return cls(
            id=r.id,
            name=r.name,
            draft=r.draft,
            created_at=r.created_at,
            updated_at=r.updated_at,
            versions=[VersionOut.of(v) for v in view.versions],
            live_version=live,
        )


class DiffOut(BaseModel):
    from_version: int
    to_version: int
    added: list[str]
    removed: list[str]
    changed: list[str]
    text: str


@router.get("/schema", summary="The JSON Schema of rule-set documents")
async def schema(principal: Reader) -> dict[str, Any]:
    return json_schema()


@router.get("", response_model=list[RuleSetOut])
async def list_rulesets(principal: Reader, container: ContainerDep) -> list[RuleSetOut]:
    views = await anyio.to_thread.run_sync(container.rulesets.all_of, principal.tenant_id)
    return [RuleSetOut.of(v) for v in views]


@router.post("", response_model=RuleSetOut, status_code=201, summary="Create a rule set (a draft)")
async def create_ruleset(
    body: RuleSetCreate, principal: Editor, container: ContainerDep
) -> RuleSetOut:
    view = await anyio.to_thread.run_sync(
        container.rulesets.create, principal.tenant_id, body.name, body.source
    )
    return RuleSetOut.of(view)


@router.get("/{ruleset_id}", response_model=RuleSetOut)
async def get_ruleset(ruleset_id: str, principal: Reader, container: ContainerDep) -> RuleSetOut:
    view = await anyio.to_thread.run_sync(container.rulesets.get, principal.tenant_id, ruleset_id)
    return RuleSetOut.of(view)


@router.put("/{ruleset_id}/draft", response_model=RuleSetOut, summary="Replace the draft")
async def save_draft(
    ruleset_id: str, body: DraftUpdate, principal: Editor, container: ContainerDep
) -> RuleSetOut:
    view = await anyio.to_thread.run_sync(
        container.rulesets.save_draft, principal.tenant_id, ruleset_id, body.source
    )
    return RuleSetOut.of(view)


@router.post("/{ruleset_id}/validate", response_model=ValidationOut, summary="Validate the draft")
async def validate(ruleset_id: str, principal: Reader, container: ContainerDep) -> ValidationOut:
    result = await anyio.to_thread.run_sync(
        container.rulesets.validate, principal.tenant_id, ruleset_id
    )
    return ValidationOut.of(result)


@router.post(
    "/{ruleset_id}/publish",
    response_model=VersionOut,
    status_code=201,
    summary="Publish the draft as a new immutable version and make it live",
)
async def publish(
    ruleset_id: str, principal: Editor, container: ContainerDep, body: PublishIn | None = None
) -> VersionOut:
    version = await anyio.to_thread.run_sync(
        container.rulesets.publish,
        principal.tenant_id,
        ruleset_id,
        principal.subject,
        body.note if body else "",
    )
    report = None
    if body is not None and body.backfill:
        report = await anyio.to_thread.run_sync(
            container.backfill.backfill, principal.tenant_id, version, principal.subject
        )
    await anyio.to_thread.run_sync(container.leaderboards.refresh, principal.tenant_id)
    out = VersionOut.of(version)
    out.backfill = BackfillOut.of(report) if report else None
    return out


@router.get("/backfills/{backfill_id}", response_model=BackfillOut, summary="A backfill's report")
async def get_backfill(backfill_id: str, principal: Reader, container: ContainerDep) -> BackfillOut:
    report = await anyio.to_thread.run_sync(
        container.backfill.get, principal.tenant_id, backfill_id
    )
    return BackfillOut.of(report)


@router.post(
    "/backfills/{backfill_id}/confirm",
    response_model=BackfillOut,
    summary="Apply the losses a backfill held back (revocations, points taken back)",
)
async def confirm_backfill(
    backfill_id: str, principal: Admin, container: ContainerDep
) -> BackfillOut:
    report = await anyio.to_thread.run_sync(
        container.backfill.confirm, principal.tenant_id, backfill_id, principal.subject
    )
    return BackfillOut.of(report)


@router.post(
    "/{ruleset_id}/rollback",
    response_model=VersionOut,
    status_code=201,
    summary="Publish an older version again (as a new version)",
)
async def rollback(
    ruleset_id: str, body: RollbackIn, principal: Editor, container: ContainerDep
) -> VersionOut:
    version = await anyio.to_thread.run_sync(
        container.rulesets.rollback,
        principal.tenant_id,
        ruleset_id,
        body.version,
        principal.subject,
    )
    await anyio.to_thread.run_sync(container.leaderboards.refresh, principal.tenant_id)
    return VersionOut.of(version)


@router.get("/{ruleset_id}/versions", response_model=list[VersionOut], summary="Published versions")
async def list_versions(
    ruleset_id: str, principal: Reader, container: ContainerDep
) -> list[VersionOut]:
    view = await anyio.to_thread.run_sync(container.rulesets.get, principal.tenant_id, ruleset_id)
    return [VersionOut.of(v) for v in view.versions]


@router.get("/{ruleset_id}/versions/{version}", response_model=VersionOut)
async def get_version(
    ruleset_id: str, version: int, principal: Reader, container: ContainerDep
) -> VersionOut:
    found = await anyio.to_thread.run_sync(
        container.rulesets.version, principal.tenant_id, ruleset_id, version
    )
    return VersionOut.of(found, with_source=True)


@router.get("/{ruleset_id}/diff", response_model=DiffOut, summary="What changed between versions")
async def diff(
    ruleset_id: str,
    principal: Reader,
    container: ContainerDep,
    from_version: Annotated[int, Query(alias="from", ge=1)],
    to_version: Annotated[int, Query(alias="to", ge=1)],
) -> DiffOut:
    d = await anyio.to_thread.run_sync(
        container.rulesets.diff, principal.tenant_id, ruleset_id, from_version, to_version
    )
    return DiffOut(
        from_version=d.from_version,
        to_version=d.to_version,
        added=d.added,
        removed=d.removed,
        changed=d.changed,
        text=d.text,
    )


class SimulateIn(Strict):
    occurred_from: AwareDatetime | None = None
    occurred_until: AwareDatetime | None = None


class CurrencyChangeOut(BaseModel):
    currency: str
    live_total: float
    draft_total: float
    delta: float
    players_gaining: int
    players_losing: int
    biggest_changes: list[dict[str, Any]]


class BadgeChangeOut(BaseModel):
    badge: str
    live_holders: int
    draft_holders: int
    gained: int
    lost: int
    gained_by: list[str]
    lost_by: list[str]


class SimulationOut(BaseModel):
    events: int
    players: int
    live_version: int | None
    currencies: list[CurrencyChangeOut]
    badges: list[BadgeChangeOut]
    rule_errors: int


@router.post(
    "/{ruleset_id}/simulate",
    response_model=SimulationOut,
    summary="Run the draft over the event log and compare it with the live version",
)
async def simulate(
    ruleset_id: str, principal: Reader, container: ContainerDep, body: SimulateIn | None = None
) -> SimulationOut:
    sim = await anyio.to_thread.run_sync(
        container.simulation.simulate,
        principal.tenant_id,
        ruleset_id,
        body.occurred_from if body else None,
        body.occurred_until if body else None,
    )
    return SimulationOut(
        events=sim.events,
        players=sim.players,
        live_version=sim.live_version,
        currencies=[
            CurrencyChangeOut(
                currency=c.currency,
                live_total=c.live_total,
                draft_total=c.draft_total,
                delta=round(c.draft_total - c.live_total, 4),
                players_gaining=c.gaining,
                players_losing=c.losing,
                biggest_changes=[{"player_id": p, "delta": d} for p, d in c.biggest],
            )
            for c in sim.currencies
        ],
        badges=[
            BadgeChangeOut(
                badge=b.badge,
                live_holders=b.live_holders,
                draft_holders=b.draft_holders,
                gained=b.gained,
                lost=b.lost,
                gained_by=b.gained_by,
                lost_by=b.lost_by,
            )
            for b in sim.badges
        ],
        rule_errors=sim.rule_errors,
    )
