"""A player's state: whatever the criteria need, as plain JSON-able data.

``measures`` holds one entry per measured criterion (keyed ``badge_id/path``):
``{"total": x}`` without a window, ``{"periods": {key: x}}`` for a calendar period,
``{"days": {ordinal: x}}`` for a rolling window, ``{"units": [ordinal, ...]}`` for streaks.
Distinct criteria keep lists of distinct values in place of numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class BadgeHolding:
    tiers: list[str] = field(default_factory=list)
    count: int = 0  # awards so far (repeatable badges count up)
    periods: list[str] = field(default_factory=list)  # periods already awarded (repeatable)
    expires_at: str | None = None  # ISO instant of the latest award's expiry


@dataclass
class PlayerState:
    # The log position of the last event applied: a redelivered event (at or below it) is
    # skipped, so it can never apply twice, whatever the delivery path.
    position: int = 0
    balances: dict[str, float] = field(default_factory=dict)
    level: int = -1
    caps: dict[str, dict[str, float]] = field(default_factory=dict)
    once: dict[str, set[str]] = field(default_factory=dict)
    measures: dict[str, dict[str, Any]] = field(default_factory=dict)
    badges: dict[str, BadgeHolding] = field(default_factory=dict)
    # Anti-cheat holds: the player's events are held for review while ``held``; ``day`` and
    # ``day_events`` count today's events; a review clears the rest of ``cleared_day``.
    held: bool = False
    held_reason: str = ""
    day: str = ""
    day_events: int = 0
    rule_day: dict[str, int] = field(default_factory=dict)  # today's awards per rule
    cleared_day: str = ""
    # Partitioned scoring (the scale-out mode): the last position applied per partition of
    # the log, for the same guarantee (a merged player's events can lie in two partitions,
    # scored out of step with each other).
    marks: dict[int, int] = field(default_factory=dict)

    def applied(self, position: int, partition: int | None = None) -> bool:
        """Whether the event at ``position`` (of ``partition``, when partitioned) is in."""
        if partition is None:
            return position <= self.position
        return position <= self.marks.get(partition, 0)

    def advance(self, position: int, partition: int | None = None) -> None:
        """The event at ``position`` is applied (or deliberately passed over)."""
        self.position = max(self.position, position)
        if partition is not None:
            self.marks[partition] = max(self.marks.get(partition, 0), position)

    def to_json(self) -> dict[str, Any]:
        """The state as data for orjson (badge holdings are dataclasses, which it writes as
        objects of their fields)."""
        found = self._json()
        if self.marks:
            found["marks"] = {str(p): m for p, m in sorted(self.marks.items())}
        return found

    def _json(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "balances": self.balances,
            "level": self.level,
            "caps": self.caps,
            "once": {rule: sorted(objects) for rule, objects in self.once.items()},
            "measures": self.measures,
            # orjson writes a dataclass as the object of its fields: building a dict per
            # holding was the largest part of saving a state (every player of every batch).
            "badges": self.badges,
            "held": self.held,
            "held_reason": self.held_reason,
            "day": self.day,
            "day_events": self.day_events,
            "rule_day": self.rule_day,
            "cleared_day": self.cleared_day,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> PlayerState:
        """Takes ownership of ``data`` (freshly decoded JSON): nested values are not copied."""
        if not data:
            return cls()
        return cls(
            position=int(data.get("position", 0)),
            balances=dict(data.get("balances", {})),
            level=int(data.get("level", -1)),
            caps={k: dict(v) for k, v in data.get("caps", {}).items()},
            once={k: set(v) for k, v in data.get("once", {}).items()},
            measures=data.get("measures", {}),
            badges={k: BadgeHolding(**v) for k, v in data.get("badges", {}).items()},
            held=bool(data.get("held", False)),
            held_reason=str(data.get("held_reason", "")),
            day=str(data.get("day", "")),
            day_events=int(data.get("day_events", 0)),
            rule_day={k: int(v) for k, v in data.get("rule_day", {}).items()},
            cleared_day=str(data.get("cleared_day", "")),
            marks={int(p): int(m) for p, m in data.get("marks", {}).items()},
        )
