"""What evaluating an event produces. Applied atomically with the new player state.

Points and board moves are made for nearly every event, so they are not frozen: a frozen
dataclass sets each field through ``object.__setattr__`` (2.4 µs to make such a record, 0.5
without); nothing changes an effect once made. The rarer ones are frozen."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(slots=True)
class PointsAwarded:
    rule_id: str
    currency: str
    amount: float


@dataclass(frozen=True, slots=True)
class BadgeAwarded:
    badge_id: str
    tier: str | None
    occurrence: int  # 1 for the first award; repeatable badges count up
    awarded_at: datetime
    expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class LevelReached:
    currency: str
    level: str
    index: int


@dataclass(frozen=True, slots=True)
class RuleFailed:
    rule_id: str
    message: str


@dataclass(slots=True)
class BoardScored:
    """The event moves ``subject`` (a player id, or a group's attribute value) on a board."""

    board_id: str
    subject: str
    amount: float


Effect = PointsAwarded | BadgeAwarded | LevelReached | RuleFailed | BoardScored
