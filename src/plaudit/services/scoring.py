"""Scoring: take events from the log in order, evaluate the live rule set, apply the effects.

One transaction per batch holds the effects, the new player states and the log cursor,
so an event is applied exactly once: either all of that is committed or none of it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field

from plaudit.domain.clock import Clock
from plaudit.domain.events import StoredEvent
from plaudit.domain.ids import new_id
from plaudit.rules.effects import BadgeAwarded, Effect, LevelReached, PointsAwarded, RuleFailed
from plaudit.rules.evaluate import EventFacts, PlayerFacts, adjust, evaluate
from plaudit.rules.state import PlayerState
from plaudit.services.rulesets import RuleBook
from plaudit.store.ports import (
    AwardRow,
    Database,
    IssuanceRow,
    LedgerRow,
    LevelUpRow,
    RuleErrorRow,
    UnitOfWork,
)

log = logging.getLogger("plaudit.scoring")

CURSOR = "scoring"


@dataclass
class BatchOutcome:
    events: int = 0
    points: int = 0
    badges: int = 0
    errors: int = 0
    by_tenant: dict[str, int] = field(default_factory=dict)


class ScoringService:
    def __init__(self, db: Database, clock: Clock, book: RuleBook, batch_size: int = 2000) -> None:
        self.db = db
        self.clock = clock
        self.book = book
        self.batch_size = batch_size
        self._poison: dict[int, str] = {}  # log position -> why evaluating it failed

    def replay(self, tenant_id: str | None = None) -> int:
        """Rebuild everything scoring derived, from the log, with the version that scored
        each event; manual adjustments are applied again after the events. Returns the
        number of events replayed."""
        with self.db.write() as uow:
            uow.scoring.forget_derived(tenant_id)
            uow.scoring.set_cursor(CURSOR, 0)
            uow.commit()
        total = 0
        while (outcome := self.score_pending(only_tenant=tenant_id)).events:
            total += outcome.events
        self._reapply_adjustments(tenant_id)
        return total

    def _reapply_adjustments(self, tenant_id: str | None) -> None:
        with self.db.write() as uow:
            for tenant in uow.scoring.adjusted_tenants(tenant_id):
                live = self.book.live(uow, tenant)
                rules = live[1] if live else None
                entries = uow.scoring.adjustments(tenant)
                players = uow.players.get_many(tenant, {e.player_id for e in entries})
                raw = uow.scoring.states(tenant, players)
                states = {pid: PlayerState.from_json(raw.get(pid)) for pid in players}
                for entry in entries:
                    player = players[entry.player_id]
                    facts = PlayerFacts(player.id, dict(player.attributes), player.time_zone)
                    adjust(
                        rules,
                        states[player.id],
                        entry.currency,
                        entry.amount,
                        entry.occurred_at,
                        facts,
                    )
                uow.scoring.save_states(
                    tenant, {pid: st.to_json() for pid, st in states.items()}, self.clock()
                )
            uow.commit()

    def score_pending(self, only_tenant: str | None = None) -> BatchOutcome:
        """Score the next batch of the log; an empty outcome means the log is caught up."""
        outcome = BatchOutcome()
        with self.db.write() as uow:
            position = uow.scoring.cursor(CURSOR)
            events = uow.events.after(position, self.batch_size)
            if not events:
                return outcome
            by_tenant: dict[str, list[StoredEvent]] = defaultdict(list)
            for event in events:
                by_tenant[event.tenant_id].append(event)
            for tenant_id, tenant_events in by_tenant.items():
                if only_tenant is None or tenant_id == only_tenant:
                    self._score_tenant(uow, tenant_id, tenant_events, outcome)
            uow.scoring.set_cursor(CURSOR, events[-1].position)
            uow.commit()
        outcome.events = len(events)
        return outcome

    def _score_tenant(
        self, uow: UnitOfWork, tenant_id: str, events: list[StoredEvent], outcome: BatchOutcome
    ) -> None:
        epochs = self.book.epochs(uow, tenant_id)
        if not epochs.epochs:
            return  # no rule set published yet: events stay in the log for a later backfill
        player_ids = {e.player_id for e in events}
        players = uow.players.get_many(tenant_id, player_ids)
        states = {
            pid: PlayerState.from_json(raw)
            for pid, raw in uow.scoring.states(tenant_id, player_ids).items()
        }
        ledger: list[LedgerRow] = []
        awards: list[AwardRow] = []
        level_ups: list[LevelUpRow] = []
        failures: list[RuleErrorRow] = []
        now = self.clock()
        for event in events:
            player = players.get(event.player_id)
            facts = PlayerFacts(
                event.player_id,
                dict(player.attributes) if player else {},
                player.time_zone if player else None,
            )
            state = states.setdefault(event.player_id, PlayerState())
            if event.position <= state.position:
                continue  # already applied: a redelivery
            scored_by = epochs.for_position(event.position)
            if scored_by is None:
                continue  # logged before the first rule set went live
            version, rules = scored_by
            if event.position in self._poison:
                effects: list[Effect] = [RuleFailed("engine", self._poison[event.position])]
            else:
                try:
                    effects = evaluate(
                        rules,
                        state,
                        EventFacts(
                            event.id,
                            event.type,
                            event.source,
                            event.actor,
                            event.occurred_at,
                            event.properties,
                        ),
                        facts,
                    )
                except Exception as exc:
                    # A defect must cost one event, not stop scoring: remember it, abandon the
                    # batch (the state may be half-updated), and skip the event on the retry.
                    log.exception("evaluating event %s failed", event.id)
                    self._poison[event.position] = f"{type(exc).__name__}: {exc}"
                    raise
            state.position = event.position
            for effect in effects:
                if isinstance(effect, PointsAwarded):
                    ledger.append(
                        LedgerRow(
                            player_id=event.player_id,
                            currency=effect.currency,
                            amount=effect.amount,
                            kind="rule",
                            rule_id=effect.rule_id,
                            occurred_at=event.occurred_at,
                            ruleset_id=version.ruleset_id,
                            ruleset_version=version.version,
                            event_id=event.id,
                        )
                    )
                elif isinstance(effect, BadgeAwarded):
                    awards.append(
                        AwardRow(
                            id=new_id("awd"),
                            player_id=event.player_id,
                            badge_id=effect.badge_id,
                            tier=effect.tier,
                            occurrence=effect.occurrence,
                            source="rule",
                            awarded_at=effect.awarded_at,
                            expires_at=effect.expires_at,
                            event_id=event.id,
                            ruleset_id=version.ruleset_id,
                            ruleset_version=version.version,
                        )
                    )
                elif isinstance(effect, LevelReached):
                    level_ups.append(
                        LevelUpRow(
                            event.player_id,
                            effect.currency,
                            effect.index,
                            effect.level,
                            event.id,
                            event.occurred_at,
                        )
                    )
                elif isinstance(effect, RuleFailed):
                    failures.append(
                        RuleErrorRow(
                            event.id,
                            event.player_id,
                            effect.rule_id,
                            version.ruleset_id,
                            version.version,
                            effect.message,
                            now,
                        )
                    )
        uow.scoring.append_ledger(tenant_id, ledger, now)
        uow.scoring.add_awards(tenant_id, awards)
        uow.badges.log(
            tenant_id,
            [
                IssuanceRow(
                    a.id,
                    a.player_id,
                    a.badge_id,
                    "issued",
                    f"ruleset:{a.ruleset_id}@{a.ruleset_version}",
                    f"criteria met by event {a.event_id}" + (f" (tier {a.tier})" if a.tier else ""),
                    a.awarded_at,
                )
                for a in awards
            ],
        )
        uow.scoring.add_level_ups(tenant_id, level_ups)
        uow.scoring.add_rule_errors(tenant_id, failures)
        uow.scoring.save_states(tenant_id, {pid: s.to_json() for pid, s in states.items()}, now)
        outcome.points += len(ledger)
        outcome.badges += len(awards)
        outcome.errors += len(failures)
        outcome.by_tenant[tenant_id] = len(events)
