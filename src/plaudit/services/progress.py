"""A player's standing: balances, level, badges, progress; the ledger; manual adjustments."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime

from plaudit.domain.clock import Clock
from plaudit.domain.ids import new_id
from plaudit.domain.pagination import Page, decode_position, page_of
from plaudit.errors import FieldError, InvalidInput
from plaudit.leaderboards.entries import board_entries
from plaudit.rules.compiler import CompiledRuleSet
from plaudit.rules.effects import BadgeAwarded, Effect, LevelReached
from plaudit.rules.evaluate import PlayerFacts, adjust
from plaudit.rules.progress import BadgeProgress, LevelProgress, badge_progress, level_progress
from plaudit.rules.state import PlayerState
from plaudit.services import audit
from plaudit.services.outbox import Outbox, starting_level
from plaudit.services.players import find_player
from plaudit.services.rulesets import RuleBook
from plaudit.store.ports import (
    AwardRow,
    Database,
    LedgerEntry,
    LedgerRow,
    LevelUpRow,
    RuleErrorRow,
    RuleSetVersion,
    UnitOfWork,
)


@dataclass(frozen=True, slots=True)
class Standing:
    player_id: str
    balances: dict[str, float]
    level: LevelProgress | None
    awards: list[AwardRow]  # current: not revoked, not expired
    progress: list[BadgeProgress]
    ruleset: tuple[str, int] | None


class ProgressService:
    def __init__(self, db: Database, clock: Clock, book: RuleBook) -> None:
        self.db = db
        self.clock = clock
        self.book = book

    def standing(self, tenant_id: str, ref: str) -> Standing:
        now = self.clock()
        with self.db.read() as uow:
            player = find_player(uow, tenant_id, ref)
            raw = uow.scoring.states(tenant_id, [player.id]).get(player.id)
            state = PlayerState.from_json(raw)
            awards = uow.scoring.awards(tenant_id, player_id=player.id)
            live = self.book.live(uow, tenant_id)
        current = [
            a
            for a in awards
            if a.revoked_at is None and (a.expires_at is None or a.expires_at > now)
        ]
        if live is None:
            return Standing(player.id, state.balances, None, current, [], None)
        version, rules = live
        # A revoked award is not held, whatever the criteria say (rules do not re-award it).
        held = {(a.badge_id, a.tier) for a in current}
        progress = [
            replace(
                p,
                earned=p.earned and any(b == p.badge_id for b, _ in held),
                tiers_earned=tuple(t for t in p.tiers_earned if (p.badge_id, t) in held),
            )
            for p in badge_progress(rules, state, now, player.time_zone)
        ]
        return Standing(
            player.id,
            state.balances,
            level_progress(rules, state),
            current,
            progress,
            (version.ruleset_id, version.version),
        )

    def ledger(self, tenant_id: str, ref: str, cursor: str | None, limit: int) -> Page[LedgerEntry]:
        after = decode_position(cursor)
        with self.db.read() as uow:
            player = find_player(uow, tenant_id, ref)
            entries = uow.scoring.ledger(tenant_id, player.id, after, limit + 1)
        return page_of(entries, limit, lambda e: e.id)

    def adjust(
        self, tenant_id: str, ref: str, currency: str, amount: float, reason: str, actor: str
    ) -> list[Effect]:
        """Add (or, negative, take) points by hand, with a reason, as a ledger entry."""
        if not math.isfinite(amount) or amount == 0:
            raise InvalidInput("invalid amount", [FieldError("amount", "a non-zero number")])
        now = self.clock()
        with self.db.write() as uow:
            player = find_player(uow, tenant_id, ref)
            live = self.book.live(uow, tenant_id)
            if live is not None and currency not in live[1].doc.currencies:
                known = ", ".join(live[1].doc.currencies)
                raise InvalidInput(
                    f"unknown currency {currency!r}",
                    [FieldError("currency", f"not a currency of the live rule set ({known})")],
                )
            state = PlayerState.from_json(uow.scoring.states(tenant_id, [player.id]).get(player.id))
            facts = PlayerFacts.of(player, player.id)
            effects = adjust(
                live[1] if live else None, state, currency, round(amount, 4), now, facts
            )
            adjustment = new_id("adj")  # unique: adjustments have no event
            entry = LedgerRow(
                player_id=player.id,
                currency=currency,
                amount=round(amount, 4),
                kind="adjustment",
                rule_id=adjustment,
                occurred_at=now,
                reason=reason,
                actor=actor,
            )
            uow.scoring.append_ledger(tenant_id, [entry], now)
            Outbox(uow, tenant_id, now).points([entry])
            audit.record(
                uow,
                tenant_id,
                "ledger.adjust",
                ("player", player.id),
                now,
                after={"currency": currency, "amount": entry.amount, "reason": reason},
            )
            _record_effects(uow, tenant_id, player.id, effects, live, now)
            if live is not None:
                uow.boards.add_entries(
                    tenant_id, board_entries(live[1], adjustment, now, now, effects)
                )
            uow.scoring.save_states(tenant_id, {player.id: state.to_json()}, now)
            uow.commit()
        return effects

    def rule_errors(
        self, tenant_id: str, event_id: str | None, cursor: str | None, limit: int
    ) -> Page[tuple[int, RuleErrorRow]]:
        with self.db.read() as uow:
            rows = uow.scoring.rule_errors(tenant_id, event_id, decode_position(cursor), limit + 1)
        return page_of(rows, limit, lambda r: r[0])

    def awards(self, tenant_id: str, badge_id: str) -> list[AwardRow]:
        with self.db.read() as uow:
            return uow.scoring.awards(tenant_id, badge_id=badge_id)


def _record_effects(
    uow: UnitOfWork,
    tenant_id: str,
    player_id: str,
    effects: list[Effect],
    live: tuple[RuleSetVersion, CompiledRuleSet] | None,
    at: datetime,
) -> None:
    version, rules = live if live is not None else (None, None)
    awards = [
        AwardRow(
            id=new_id("awd"),
            player_id=player_id,
            badge_id=e.badge_id,
            tier=e.tier,
            occurrence=e.occurrence,
            source="rule",
            awarded_at=e.awarded_at,
            expires_at=e.expires_at,
            ruleset_id=version.ruleset_id if version else None,
            ruleset_version=version.version if version else None,
        )
        for e in effects
        if isinstance(e, BadgeAwarded)
    ]
    level_ups = [
        LevelUpRow(player_id, e.currency, e.index, e.level, None, at)
        for e in effects
        if isinstance(e, LevelReached)
    ]
    uow.scoring.add_awards(tenant_id, awards)
    uow.scoring.add_level_ups(tenant_id, level_ups)
    outbox = Outbox(uow, tenant_id, at)
    outbox.awards(awards)
    outbox.levels(level_ups, starting_level(rules))
