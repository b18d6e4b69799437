"""Run events through a rule set, purely."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from plaudit.rules.compiler import CompiledRuleSet
from plaudit.rules.document import load
from plaudit.rules.effects import (
    BadgeAwarded,
    BoardScored,
    Effect,
    LevelReached,
    PointsAwarded,
    RuleFailed,
)
from plaudit.rules.evaluate import EventFacts, PlayerFacts, evaluate
from plaudit.rules.state import PlayerState

T0 = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)  # a Monday


def rules(text: str) -> CompiledRuleSet:
    return load(textwrap.dedent(text))[1]


@dataclass
class Player:
    rules: CompiledRuleSet
    time_zone: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    state: PlayerState = field(default_factory=PlayerState)
    effects: list[Effect] = field(default_factory=list)
    _n: int = 0

    def send(self, type_: str, at: datetime = T0, **properties: Any) -> list[Effect]:
        self._n += 1
        event = EventFacts(f"e{self._n}", type_, "lms", "alice", at, properties)
        out = evaluate(
            self.rules, self.state, event, PlayerFacts("plr_1", self.attributes, self.time_zone)
        )
        self.effects += out
        return out

    def on_days(self, type_: str, *days: int, hour: int = 9) -> None:
        for day in days:
            self.send(type_, T0.replace(hour=hour) + timedelta(days=day))

    def points(self, currency: str = "xp") -> float:
        return sum(
            e.amount
            for e in self.effects
            if isinstance(e, PointsAwarded) and e.currency == currency
        )

    def badges(self) -> list[tuple[str, str | None]]:
        return [(e.badge_id, e.tier) for e in self.effects if isinstance(e, BadgeAwarded)]

    def levels(self) -> list[str]:
        return [e.level for e in self.effects if isinstance(e, LevelReached)]

    def failures(self) -> list[RuleFailed]:
        return [e for e in self.effects if isinstance(e, RuleFailed)]

    def boards(self) -> list[tuple[str, str, float]]:
        return [
            (e.board_id, e.subject, e.amount) for e in self.effects if isinstance(e, BoardScored)
        ]
