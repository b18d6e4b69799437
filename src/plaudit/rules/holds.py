"""Anti-cheat holds, decided from the player's state alone (so replays decide the same)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta

from plaudit.rules.calendar import local_date
from plaudit.rules.compiler import CompiledRuleSet
from plaudit.rules.effects import Effect, PointsAwarded
from plaudit.rules.state import PlayerState


def hold_reason(
    rules: CompiledRuleSet,
    state: PlayerState,
    occurred_at: datetime,
    typical: float | None = None,
) -> str | None:
    """Count the event in its day; why the player's events are now held, or None.
    ``typical``: the median of the previous day's active players' events, when known.

    Counting happens for every event (held or not), so the counters are the same whichever
    way an event was delivered, reviewed or replayed."""
    holds = rules.doc.holds
    if holds is None:
        return (state.held_reason or "held for review") if state.held else None
    day = local_date(occurred_at, rules.zone).isoformat()
    if state.day != day:
        state.day, state.day_events, state.rule_day = day, 0, {}
    state.day_events += 1
    if state.held:
        return state.held_reason or "held for review"
    if state.cleared_day == day:
        return None
    if holds.events_per_day is not None and state.day_events > holds.events_per_day:
        return _hold(state, f"more than {holds.events_per_day} events on {day}")
    if holds.median_multiple is not None and typical is not None:
        limit = max(holds.min_events, holds.median_multiple * typical)
        if state.day_events > limit:
            return _hold(
                state,
                f"more than {holds.median_multiple:g} times the previous day's median "
                f"({typical:g} events) on {day}",
            )
    return None


def note_awards(rules: CompiledRuleSet, state: PlayerState, effects: Sequence[Effect]) -> None:
    """Count today's awards per rule; a rule over ``rule_awards_per_day`` holds the player
    from the next event on (this one's effects stand)."""
    holds = rules.doc.holds
    if holds is None or holds.rule_awards_per_day is None:
        return
    for rule_id in dict.fromkeys(e.rule_id for e in effects if isinstance(e, PointsAwarded)):
        count = state.rule_day[rule_id] = state.rule_day.get(rule_id, 0) + 1
        if count > holds.rule_awards_per_day and not state.held and state.cleared_day != state.day:
            _hold(
                state,
                f"rule {rule_id!r} awarded more than {holds.rule_awards_per_day} times "
                f"on {state.day}",
            )


def _hold(state: PlayerState, reason: str) -> str:
    state.held, state.held_reason = True, reason
    return reason


def previous_day(rules: CompiledRuleSet, occurred_at: datetime) -> tuple[str, datetime, datetime]:
    """The day before the event's (program time zone): its name, and [start, end) in UTC."""
    today = local_date(occurred_at, rules.zone)
    before = today - timedelta(days=1)
    start = datetime.combine(before, time(), tzinfo=rules.zone).astimezone(UTC)
    end = datetime.combine(today, time(), tzinfo=rules.zone).astimezone(UTC)
    return before.isoformat(), start, end
