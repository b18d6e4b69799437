"""Badges: classes (from the live rule set, or managed here), manual awards with evidence,
revocation with a reason, and the issuance audit trail."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from plaudit.domain.clock import Clock
from plaudit.domain.ids import new_id
from plaudit.domain.pagination import Page, decode_position, page_of
from plaudit.errors import Conflict, FieldError, InvalidInput, NotFound
from plaudit.services import audit
from plaudit.services.outbox import Outbox, revocation_message
from plaudit.services.players import find_player
from plaudit.services.rulesets import RuleBook
from plaudit.store.ports import AwardRow, BadgeClass, Database, IssuanceRow, UnitOfWork


@dataclass(frozen=True, slots=True)
class BadgeView:
    badge: BadgeClass
    origin: str  # "ruleset" (criteria in the live rule set) or "manual"
    tiers: list[str]


class BadgeService:
    def __init__(self, db: Database, clock: Clock, book: RuleBook) -> None:
        self.db = db
        self.clock = clock
        self.book = book

    def _ruleset_badges(self, uow: UnitOfWork, tenant_id: str) -> dict[str, BadgeView]:
        live = self.book.live(uow, tenant_id)
        if live is None:
            return {}
        version, rules = live
        views = {}
        for b in rules.doc.badges:
            cls = BadgeClass(
                b.id,
                b.name,
                b.description,
                b.image,
                b.narrative,
                list(b.tags),
                [dict(a) for a in b.alignment],
                version.published_at,
                version.published_at,
            )
            views[b.id] = BadgeView(cls, "ruleset", [t.name for t in b.tiers or []])
        return views

    def all_of(self, tenant_id: str) -> list[BadgeView]:
        with self.db.read() as uow:
            views = self._ruleset_badges(uow, tenant_id)
            for cls in uow.badges.classes(tenant_id):
                views.setdefault(cls.id, BadgeView(cls, "manual", []))
        return sorted(views.values(), key=lambda v: v.badge.id)

    def get(self, tenant_id: str, badge_id: str) -> BadgeView:
        with self.db.read() as uow:
            return self._find(uow, tenant_id, badge_id)

    def _find(self, uow: UnitOfWork, tenant_id: str, badge_id: str) -> BadgeView:
        from_rules = self._ruleset_badges(uow, tenant_id).get(badge_id)
        if from_rules is not None:
            return from_rules
        cls = uow.badges.get_class(tenant_id, badge_id)
        if cls is None:
            raise NotFound(f"no badge {badge_id!r}")
        return BadgeView(cls, "manual", [])

    def save(
        self, tenant_id: str, badge_id: str, fields: Mapping[str, Any], create: bool
    ) -> BadgeView:
        now = self.clock()
        with self.db.write() as uow:
            if badge_id in self._ruleset_badges(uow, tenant_id):
                raise Conflict(
                    f"badge {badge_id!r} is defined by the live rule set; change it there"
                )
            existing = uow.badges.get_class(tenant_id, badge_id)
            if create and existing is not None:
                raise Conflict(f"badge {badge_id!r} already exists")
            if not create and existing is None:
                raise NotFound(f"no badge {badge_id!r}")
            base = existing or BadgeClass(badge_id, "", "", None, "", [], [], now, now)
            cls = replace(base, **fields, updated_at=now)
            if not cls.name:
                raise InvalidInput("a badge needs a name", [FieldError("name", "required")])
            if not uow.badges.save_class(tenant_id, cls, create):
                raise NotFound(f"no badge {badge_id!r}")  # deleted meanwhile
            audit.record(
                uow,
                tenant_id,
                "badge.create" if create else "badge.update",
                ("badge", badge_id),
                now,
                before=_fields(existing) if existing else None,
                after=_fields(cls),
            )
            uow.commit()
        return BadgeView(cls, "manual", [])

    def delete(self, tenant_id: str, badge_id: str) -> None:
        with self.db.write() as uow:
            if badge_id in self._ruleset_badges(uow, tenant_id):
                raise Conflict(f"badge {badge_id!r} is defined by the live rule set")
            existing = uow.badges.get_class(tenant_id, badge_id)
            now = self.clock()
            if existing is None or not uow.badges.delete_class(tenant_id, badge_id, now):
                raise NotFound(f"no badge {badge_id!r}")
            audit.record(
                uow, tenant_id, "badge.delete", ("badge", badge_id), now, before=_fields(existing)
            )
            uow.commit()

    def award(
        self,
        tenant_id: str,
        badge_id: str,
        player_ref: str,
        evidence: Mapping[str, Any],
        reason: str,
        actor: str,
        tier: str | None = None,
    ) -> AwardRow:
        """Award a badge by hand; the evidence (narrative, url) travels with the award."""
        now = self.clock()
        with self.db.write() as uow:
            view = self._find(uow, tenant_id, badge_id)
            if tier is not None and tier not in view.tiers:
                known = ", ".join(view.tiers) or "none"
                raise InvalidInput(
                    f"badge {badge_id!r} has no tier {tier!r}",
                    [FieldError("tier", f"one of: {known}")],
                )
            player = find_player(uow, tenant_id, player_ref)
            held = uow.scoring.awards(tenant_id, player_id=player.id, badge_id=badge_id)
            occurrence = 1 + max(
                (a.occurrence for a in held if (a.tier or None) == tier), default=0
            )
            award = AwardRow(
                id=new_id("awd"),
                player_id=player.id,
                badge_id=badge_id,
                tier=tier,
                occurrence=occurrence,
                source="manual",
                awarded_at=now,
                expires_at=None,
                evidence=dict(evidence),
                awarded_by=actor,
            )
            uow.scoring.add_awards(tenant_id, [award])
            Outbox(uow, tenant_id, now).awards([award])
            audit.record(
                uow,
                tenant_id,
                "award.create",
                ("award", award.id),
                now,
                after={
                    "player_id": player.id,
                    "badge_id": badge_id,
                    "tier": tier,
                    "reason": reason,
                    "evidence": dict(evidence),
                },
            )
            uow.badges.log(
                tenant_id,
                [IssuanceRow(award.id, player.id, badge_id, "issued", actor, reason, now)],
            )
            uow.commit()
        return award

    def revoke(self, tenant_id: str, award_id: str, reason: str, actor: str) -> AwardRow:
        now = self.clock()
        with self.db.write() as uow:
            award = uow.badges.get_award(tenant_id, award_id)
            if award is None:
                raise NotFound(f"no award {award_id!r}")
            if award.revoked_at is not None:
                raise Conflict(f"award {award_id!r} was already revoked ({award.revoked_reason})")
            uow.badges.revoke_award(tenant_id, award_id, now, reason)
            Outbox(uow, tenant_id, now).tell([revocation_message(award, reason, actor, now)])
            audit.record(
                uow,
                tenant_id,
                "award.revoke",
                ("award", award_id),
                now,
                before={"revoked_at": None},
                after={"revoked_at": now, "reason": reason},
            )
            uow.badges.log(
                tenant_id,
                [
                    IssuanceRow(
                        award_id, award.player_id, award.badge_id, "revoked", actor, reason, now
                    )
                ],
            )
            uow.commit()
        return award._replace(revoked_at=now, revoked_reason=reason)

    def player_awards(self, tenant_id: str, player_ref: str) -> list[AwardRow]:
        with self.db.read() as uow:
            player = find_player(uow, tenant_id, player_ref)
            return uow.scoring.awards(tenant_id, player_id=player.id)

    def issuance(
        self,
        tenant_id: str,
        badge_id: str | None,
        player_ref: str | None,
        cursor: str | None,
        limit: int,
    ) -> Page[tuple[int, IssuanceRow]]:
        after = decode_position(cursor)
        with self.db.read() as uow:
            player_id = find_player(uow, tenant_id, player_ref).id if player_ref else None
            rows = uow.badges.issuance(tenant_id, badge_id, player_id, after, limit + 1)
        return page_of(rows, limit, lambda r: r[0])


def _fields(cls: BadgeClass) -> dict[str, Any]:
    return {
        "name": cls.name,
        "description": cls.description,
        "image": cls.image,
        "narrative": cls.narrative,
        "tags": list(cls.tags),
        "alignment": [dict(a) for a in cls.alignment],
    }
