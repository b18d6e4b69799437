"""Anti-cheat holds, decided from the player's state alone (so replays decide the same)."""

from __future__ import annotations

from datetime import datetime

from plaudit.rules.calendar import local_date
from plaudit.rules.compiler import CompiledRuleSet
from plaudit.rules.state import PlayerState


def hold_reason(rules: CompiledRuleSet, state: PlayerState, occurred_at: datetime) -> str | None:
    """Count the event in its day; why the player's events are now held, or None.

    Counting happens for every event (held or not), so the counters are the same whichever
    way an event was delivered, reviewed or replayed."""
    holds = rules.doc.holds
    if holds is None or holds.events_per_day is None:
        return "held for review" if state.held else None
    day = local_date(occurred_at, rules.zone).isoformat()
    if state.day != day:
        state.day, state.day_events = day, 0
    state.day_events += 1
    if state.held:
        return "held for review"
    if state.day_events > holds.events_per_day and state.cleared_day != day:
        state.held = True
        return f"more than {holds.events_per_day} events on {day}"
    return None
