"""Simulation: run a draft over the event log, in memory, beside the live version.

Nothing is written. Both versions start from empty player states and see the same events
in log order, so the difference is the rule change alone.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from plaudit.errors import FieldError, InvalidInput
from plaudit.rules.compiler import CompiledRuleSet
from plaudit.rules.document import DocumentInvalid, load
from plaudit.rules.effects import BadgeAwarded, PointsAwarded
from plaudit.rules.evaluate import EventLike, PlayerFacts, evaluate
from plaudit.rules.state import PlayerState
from plaudit.services.rulesets import RuleBook, RuleSetService, invalid_ruleset
from plaudit.store.ports import Database, EventQuery

_PAGE = 5000
LISTED = 50  # players listed per change; totals count them all


@dataclass
class CurrencyChange:
    currency: str
    live_total: float = 0.0
    draft_total: float = 0.0
    gaining: int = 0
    losing: int = 0
    biggest: list[tuple[str, float]] = field(default_factory=list)  # (player, delta)


@dataclass
class BadgeChange:
    badge: str  # badge id, or id/tier
    live_holders: int = 0
    draft_holders: int = 0
    gained_by: list[str] = field(default_factory=list)
    lost_by: list[str] = field(default_factory=list)
    gained: int = 0
    lost: int = 0


@dataclass
class Simulation:
    events: int
    players: int
    live_version: int | None
    currencies: list[CurrencyChange]
    badges: list[BadgeChange]
    rule_errors: int


class SimulationService:
    def __init__(self, db: Database, book: RuleBook, rulesets: RuleSetService) -> None:
        self.db = db
        self.book = book
        self.rulesets = rulesets

    def simulate(
        self,
        tenant_id: str,
        ruleset_id: str | None,
        occurred_from: datetime | None = None,
        occurred_until: datetime | None = None,
        source: str | None = None,
    ) -> Simulation:
        """Simulate the draft of ``ruleset_id``, or the document ``source`` when given."""
        if occurred_from and occurred_until and occurred_from >= occurred_until:
            raise InvalidInput(
                "empty time range", [FieldError("occurred_from", "must be before occurred_until")]
            )
        if source is None:
            if ruleset_id is None:
                raise InvalidInput("name a rule set or give a document to simulate")
            source = self.rulesets.get(tenant_id, ruleset_id).record.draft
        draft_text = source
        try:
            _, draft = load(draft_text)
        except DocumentInvalid as exc:
            raise invalid_ruleset(exc.problems) from None
        with self.db.read() as uow:
            live = self.book.live(uow, tenant_id)
        live_rules = live[1] if live else None
        run = _Run(draft, live_rules)
        after = 0
        while True:
            with self.db.read() as uow:
                events = uow.events.query(
                    tenant_id,
                    EventQuery(
                        occurred_from=occurred_from,
                        occurred_until=occurred_until,
                        after_position=after,
                        limit=_PAGE,
                    ),
                )
                missing = {e.player_id for e in events} - run.players.keys()
                if missing:
                    for pid, player in uow.players.get_many(tenant_id, missing).items():
                        run.players[pid] = PlayerFacts.of(player, pid)
            if not events:
                break
            for event in events:
                run.feed(event.player_id, event)
            after = events[-1].position
        return run.report(live[0].version if live else None)


class _Run:
    def __init__(self, draft: CompiledRuleSet, live: CompiledRuleSet | None) -> None:
        self.draft = draft
        self.live = live
        self.players: dict[str, PlayerFacts] = {}
        self.states: dict[str, tuple[PlayerState, PlayerState]] = {}
        self.points: dict[str, dict[str, list[float]]] = defaultdict(
            lambda: defaultdict(lambda: [0.0, 0.0])
        )
        self.badges: dict[str, tuple[set[str], set[str]]] = defaultdict(lambda: (set(), set()))
        self.events = 0
        self.errors = 0

    def feed(self, player_id: str, event: EventLike) -> None:
        self.events += 1
        facts = self.players.get(player_id, PlayerFacts(player_id))
        live_state, draft_state = self.states.setdefault(player_id, (PlayerState(), PlayerState()))
        for side, rules, state in ((0, self.live, live_state), (1, self.draft, draft_state)):
            if rules is None:
                continue
            for effect in evaluate(rules, state, event, facts):
                if isinstance(effect, PointsAwarded):
                    self.points[effect.currency][player_id][side] += effect.amount
                elif isinstance(effect, BadgeAwarded):
                    name = f"{effect.badge_id}/{effect.tier}" if effect.tier else effect.badge_id
                    self.badges[name][side].add(player_id)
                elif side == 1:
                    self.errors += 1

    def report(self, live_version: int | None) -> Simulation:
        currencies = []
        for currency, per_player in sorted(self.points.items()):
            change = CurrencyChange(currency)
            deltas = []
            for player, (live, draft) in per_player.items():
                change.live_total += live
                change.draft_total += draft
                delta = round(draft - live, 4)
                if delta:
                    deltas.append((player, delta))
                    change.gaining += delta > 0
                    change.losing += delta < 0
            change.live_total = round(change.live_total, 4)
            change.draft_total = round(change.draft_total, 4)
            change.biggest = sorted(deltas, key=lambda d: (-abs(d[1]), d[0]))[:LISTED]
            currencies.append(change)
        badges = []
        for name, (live_holders, draft_holders) in sorted(self.badges.items()):
            gained = sorted(draft_holders - live_holders)
            lost = sorted(live_holders - draft_holders)
            badges.append(
                BadgeChange(
                    name,
                    len(live_holders),
                    len(draft_holders),
                    gained[:LISTED],
                    lost[:LISTED],
                    len(gained),
                    len(lost),
                )
            )
        return Simulation(
            self.events, len(self.states), live_version, currencies, badges, self.errors
        )
