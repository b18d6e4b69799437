"""What a player sees: level and progress to the next, progress toward each badge."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from plaudit.rules.calendar import local_date
from plaudit.rules.compiler import CompiledRuleSet
from plaudit.rules.evaluate import (
    criterion_target,
    criterion_value,
    holds_badge,
    level_index,
    zone_for,
)
from plaudit.rules.state import PlayerState


@dataclass(frozen=True, slots=True)
class LevelProgress:
    currency: str
    balance: float
    index: int
    name: str | None
    next_name: str | None
    next_at: float | None
    fraction: float  # of the way from this level to the next (1.0 at the top level)


@dataclass(frozen=True, slots=True)
class BadgeProgress:
    badge_id: str
    name: str
    earned: bool
    tiers_earned: tuple[str, ...]
    current: float | None  # the criterion's measure now (None for all/any/badge criteria)
    target: float | None  # the next threshold to reach (None when nothing is left)


def level_progress(rules: CompiledRuleSet, state: PlayerState) -> LevelProgress | None:
    levels = rules.doc.levels
    if levels is None:
        return None
    balance = state.balances.get(levels.currency, 0.0)
    index = level_index(rules, balance)
    here = levels.thresholds[index] if index >= 0 else None
    nxt = levels.thresholds[index + 1] if index + 1 < len(levels.thresholds) else None
    start = here.at if here else 0.0
    fraction = 1.0 if nxt is None else max(0.0, min(1.0, (balance - start) / (nxt.at - start)))
    return LevelProgress(
        levels.currency,
        balance,
        index,
        here.name if here else None,
        nxt.name if nxt else None,
        nxt.at if nxt else None,
        round(fraction, 4),
    )


def badge_progress(
    rules: CompiledRuleSet, state: PlayerState, now: datetime, time_zone: str | None
) -> list[BadgeProgress]:
    zone = zone_for(time_zone, rules.zone)
    day = local_date(now, zone)
    week_start = rules.doc.program.week_start
    out = []
    for compiled in rules.badges:
        badge = compiled.badge
        holding = state.badges.get(badge.id)
        _, value = criterion_value((state, day, week_start, now), badge.criteria, badge.id, False)
        earned = holds_badge(state, badge.id, now)
        tiers_earned = tuple(holding.tiers) if holding and earned else ()
        target: float | None
        if badge.tiers is not None:
            remaining = [t.at_least for t in badge.tiers if t.name not in tiers_earned]
            target = remaining[0] if remaining else None
        elif earned and not badge.repeatable:
            target = None
        else:
            target = criterion_target(badge.criteria)
        out.append(BadgeProgress(badge.id, badge.name, earned, tiers_earned, value, target))
    return out
