"""From effects to board entries: the window each contribution counts in, per the late policy."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from plaudit.leaderboards.ports import SCALE
from plaudit.leaderboards.windows import ALL_TIME, counts, window_of
from plaudit.rules.compiler import CompiledRuleSet
from plaudit.rules.effects import BoardScored, Effect
from plaudit.store.ports import BoardEntryRow

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def micros(instant: datetime) -> int:
    """µs since the Unix epoch (never negative: earlier instants all tie at 0)."""
    delta = instant - _EPOCH
    return max(0, (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds)


def from_micros(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1_000_000, UTC)


def to_units(amount: float) -> int:
    return round(amount * SCALE)


def board_entries(
    rules: CompiledRuleSet,
    ref: str,
    occurred_at: datetime,
    received_at: datetime,
    effects: Iterable[Effect],
    player_id: str | None = None,
) -> list[BoardEntryRow]:
    """Entries for the boards an event (or adjustment) moved. A contribution outside a
    season, or received after its window closed plus the board's grace, counts nowhere.
    ``player_id``: the event's player (None for an adjustment); an entry whose subject is
    that player is found through the player's events, the others by subject."""
    out = []
    reached = micros(occurred_at)
    for effect in effects:
        if not isinstance(effect, BoardScored):
            continue
        board = rules.boards[effect.board_id]
        if board.board.window == "all_time":  # the usual board: one window, never closed
            window = ALL_TIME
        else:
            found = window_of(board, occurred_at)
            if found is None or not counts(board, found, received_at):
                continue
            window = found
        subject = effect.subject
        units = to_units(effect.amount)
        out.append(
            BoardEntryRow(
                ref, effect.board_id, window, subject, units, reached, subject != player_id
            )
        )
    return out
