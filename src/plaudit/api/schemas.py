"""Request and response bodies. Input models forbid unknown fields (no mass assignment)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from plaudit.domain.events import (
    MAX_KEY_LENGTH,
    EventResult,
    IngestReport,
    Outcome,
    StoredEvent,
)
from plaudit.domain.players import SOURCE_PATTERN, Identity, Player
from plaudit.services.players import PlayerView
from plaudit.services.progress import Standing
from plaudit.store.ports import ApiKeyRecord, AwardRow, LedgerEntry

EVENT_TYPE_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,127}$"
ATTRIBUTE_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"
LOCALE_PATTERN = r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$"

SourceName = Annotated[str, StringConstraints(pattern=SOURCE_PATTERN)]
ExternalId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_KEY_LENGTH)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EventIn(Strict):
    """One event as a source sends it."""

    id: Annotated[str, StringConstraints(min_length=1, max_length=MAX_KEY_LENGTH)] = Field(
        description="The source's own id for this event: its idempotency key (≤255 chars)."
    )
    source: SourceName = Field(description="Which system sent it, e.g. `lms` or `crm`.")
    type: Annotated[str, StringConstraints(pattern=EVENT_TYPE_PATTERN)] = Field(
        description="What happened, e.g. `lesson.completed`."
    )
    actor: ExternalId = Field(description="The source's own id of the user who acted.")
    occurred_at: AwareDatetime = Field(description="When it happened; must carry a time zone.")
    properties: dict[str, Any] = Field(default_factory=dict)
    sequence: Annotated[int, Field(ge=0, le=2**63 - 1)] | None = Field(
        default=None, description="Per-source sequence number, for gap detection."
    )


class FieldErrorOut(BaseModel):
    field: str
    message: str


class EventResultOut(BaseModel):
    index: int
    status: str
    id: str | None = None
    source: str | None = None
    event_id: str | None = None
    player_id: str | None = None
    errors: list[FieldErrorOut] = []


class Gap(BaseModel):
    first: int
    last: int


class IngestReportOut(BaseModel):
    accepted: int
    duplicates: int
    rejected: int
    results: list[EventResultOut]
    sequence_gaps: dict[str, list[Gap]]


def result_json(r: EventResult) -> dict[str, Any]:
    out: dict[str, Any] = {"index": r.index, "status": r.outcome.value}
    if r.key is not None:
        out["id"] = r.key
        out["source"] = r.source
    if r.event_id is not None:
        out["event_id"] = r.event_id
        out["player_id"] = r.player_id
    if r.errors:
        out["errors"] = [{"field": e.field, "message": e.message} for e in r.errors]
    return out


def report_json(report: IngestReport) -> dict[str, Any]:
    """Built by hand: a 1,000-event report through pydantic costs more than the insert."""
    return {
        "accepted": report.count(Outcome.ACCEPTED),
        "duplicates": report.count(Outcome.DUPLICATE),
        "rejected": report.count(Outcome.REJECTED),
        "results": [result_json(r) for r in report.results],
        "sequence_gaps": {
            source: [{"first": a, "last": b} for a, b in runs]
            for source, runs in report.sequence_gaps.items()
        },
    }


class EventOut(BaseModel):
    event_id: str
    position: int
    id: str
    source: str
    type: str
    actor: str
    player_id: str
    occurred_at: datetime
    received_at: datetime
    properties: dict[str, Any]
    sequence: int | None

    @classmethod
    def of(cls, e: StoredEvent) -> EventOut:
        return cls(
            event_id=e.id,
            position=e.position,
            id=e.key,
            source=e.source,
            type=e.type,
            actor=e.actor,
            player_id=e.player_id,
            occurred_at=e.occurred_at,
            received_at=e.received_at,
            properties=dict(e.properties),
            sequence=e.sequence,
        )


class EventPage(BaseModel):
    items: list[EventOut]
    next_cursor: str | None


class IdentityIn(Strict):
    source: SourceName
    external_id: ExternalId

    def to_domain(self) -> Identity:
        return Identity(self.source, self.external_id)


class IdentityOut(BaseModel):
    source: str
    external_id: str


AttributeName = Annotated[str, StringConstraints(pattern=ATTRIBUTE_NAME_PATTERN)]
AttributeIn = str | int | float | bool | None


class PlayerUpdate(Strict):
    """A merge patch: omitted fields stay, null clears, attributes merge key by key."""

    display_name: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None
    time_zone: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    locale: Annotated[str, StringConstraints(pattern=LOCALE_PATTERN)] | None = None
    attributes: Annotated[dict[AttributeName, AttributeIn], Field(max_length=100)] | None = None


class MergeIn(Strict):
    player: str = Field(description="The player to fold into this one (id or source:external_id).")


class PlayerOut(BaseModel):
    id: str
    standing: StandingOut | None = Field(
        default=None, description="Balances, level, badges and progress (single-player reads)"
    )
    display_name: str | None
    time_zone: str | None
    locale: str | None
    attributes: dict[str, Any]
    identities: list[IdentityOut] | None = None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, player: Player, identities: list[Identity] | None = None) -> PlayerOut:
        return cls(
            id=player.id,
            display_name=player.display_name,
            time_zone=player.time_zone,
            locale=player.locale,
            attributes=dict(player.attributes),
            identities=None
            if identities is None
            else [IdentityOut(source=i.source, external_id=i.external_id) for i in identities],
            created_at=player.created_at,
            updated_at=player.updated_at,
        )

    @classmethod
    def of_view(cls, view: PlayerView) -> PlayerOut:
        return cls.of(view.player, view.identities)


class PlayerPageOut(BaseModel):
    items: list[PlayerOut]
    next_cursor: str | None


class SourceOut(BaseModel):
    source: str
    events: int


class SequenceGapsOut(BaseModel):
    source: str
    received: list[Gap]
    missing: list[Gap]
    missing_count: int


class KeyCreate(Strict):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    roles: Annotated[list[str], Field(max_length=10)] = Field(
        default_factory=list, description="owner, admin, editor, viewer or ingest"
    )
    scopes: Annotated[list[str], Field(max_length=20)] = Field(
        default_factory=list,
        description="Scopes beyond the roles': events:write, players:write, read, rules:write, "
        "admin, keys:write, tenants:write",
    )


class KeyOut(BaseModel):
    id: str
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, r: ApiKeyRecord) -> KeyOut:
        return cls(
            id=r.id,
            name=r.name,
            prefix=r.display_prefix,
            scopes=sorted(r.scopes),
            created_at=r.created_at,
            revoked_at=r.revoked_at,
        )


class KeyCreated(KeyOut):
    key: str = Field(description="The secret. Shown once; store it now.")


class LevelOut(BaseModel):
    currency: str
    balance: float
    index: int
    name: str | None
    next_name: str | None
    next_at: float | None
    progress: float


class AwardOut(BaseModel):
    id: str
    badge_id: str
    player_id: str
    tier: str | None
    occurrence: int
    source: str
    event_id: str | None
    evidence: dict[str, Any] | None = None
    awarded_by: str | None = None
    awarded_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    revoked_reason: str | None = None

    @classmethod
    def of(cls, a: AwardRow) -> AwardOut:
        return cls(
            id=a.id,
            badge_id=a.badge_id,
            player_id=a.player_id,
            tier=a.tier,
            occurrence=a.occurrence,
            source=a.source,
            event_id=a.event_id,
            evidence=dict(a.evidence) if a.evidence else None,
            awarded_by=a.awarded_by,
            awarded_at=a.awarded_at,
            expires_at=a.expires_at,
            revoked_at=a.revoked_at,
            revoked_reason=a.revoked_reason,
        )


class BadgeProgressOut(BaseModel):
    badge_id: str
    name: str
    earned: bool
    tiers_earned: list[str]
    current: float | None
    target: float | None


class StandingOut(BaseModel):
    balances: dict[str, float]
    level: LevelOut | None
    badges: list[AwardOut]
    progress: list[BadgeProgressOut]
    ruleset: str | None = Field(description="id@version of the live rule set")

    @classmethod
    def of(cls, s: Standing) -> StandingOut:
        lv = s.level
        return cls(
            balances=s.balances,
            level=None
            if lv is None
            else LevelOut(
                currency=lv.currency,
                balance=lv.balance,
                index=lv.index,
                name=lv.name,
                next_name=lv.next_name,
                next_at=lv.next_at,
                progress=lv.fraction,
            ),
            badges=[AwardOut.of(a) for a in s.awards],
            progress=[
                BadgeProgressOut(
                    badge_id=p.badge_id,
                    name=p.name,
                    earned=p.earned,
                    tiers_earned=list(p.tiers_earned),
                    current=p.current,
                    target=p.target,
                )
                for p in s.progress
            ],
            ruleset=f"{s.ruleset[0]}@{s.ruleset[1]}" if s.ruleset else None,
        )


class LedgerEntryOut(BaseModel):
    id: int
    currency: str
    amount: float
    kind: str
    rule_id: str | None
    ruleset: str | None
    event_id: str | None
    reason: str | None
    actor: str | None
    occurred_at: datetime
    recorded_at: datetime

    @classmethod
    def of(cls, e: LedgerEntry) -> LedgerEntryOut:
        r = e.row
        return cls(
            id=e.id,
            currency=r.currency,
            amount=r.amount,
            kind=r.kind,
            rule_id=r.rule_id if r.kind == "rule" else None,
            ruleset=f"{r.ruleset_id}@{r.ruleset_version}" if r.ruleset_id else None,
            event_id=r.event_id,
            reason=r.reason,
            actor=r.actor,
            occurred_at=r.occurred_at,
            recorded_at=e.recorded_at,
        )


class LedgerPage(BaseModel):
    items: list[LedgerEntryOut]
    next_cursor: str | None


class AdjustmentIn(Strict):
    currency: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
    amount: float
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)]


class RuleErrorOut(BaseModel):
    id: int
    event_id: str
    player_id: str
    rule_id: str
    ruleset: str
    message: str
    at: datetime


class RuleErrorPage(BaseModel):
    items: list[RuleErrorOut]
    next_cursor: str | None
