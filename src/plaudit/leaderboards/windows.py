"""Board windows: which window an instant falls in, in the board's time zone, and its bounds.

A window is named by a key: ``all`` (all time), ``2026-11-30`` (a day), the first day of a
week (``2026-11-30`` for the week starting that Monday, or Sunday), ``2026-11`` (a month),
``2026-Q4`` (a quarter) or ``season``. Membership is decided by the local calendar date of
the instant, so every instant is in exactly one window whatever DST does; bounds are the
local midnights that start the window and the next one, as UTC instants.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

from plaudit.rules.calendar import local_date
from plaudit.rules.compiler import CompiledBoard

ALL_TIME = "all"
SEASON = "season"

_FORMS = {
    "all_time": "all",
    "day": "a date, e.g. 2026-11-30",
    "week": "the date of the week's first day, e.g. 2026-11-30",
    "month": "YYYY-MM, e.g. 2026-11",
    "quarter": "YYYY-Qn, e.g. 2026-Q4",
    "season": "season",
}
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_QUARTER = re.compile(r"^(\d{4})-Q([1-4])$")


class UnknownWindow(ValueError):
    """A window key that cannot name a window of the board."""


# Windows a closing announcement looks back over at most (a daily board with a long grace).
_LOOK_BACK = 400


def key_form(board: CompiledBoard) -> str:
    return _FORMS[board.board.window]


def window_of(board: CompiledBoard, instant: datetime) -> str | None:
    """The window an instant counts in; None outside a season."""
    kind = board.board.window
    if kind == "all_time":
        return ALL_TIME
    if kind == "season":
        season = board.board.season
        assert season is not None
        return SEASON if season.start <= instant < season.end else None
    return _key_of_day(board, local_date(instant, board.zone))


def _key_of_day(board: CompiledBoard, day: date) -> str:
    kind = board.board.window
    if kind == "day":
        return day.isoformat()
    if kind == "week":
        return _week_start(board, day).isoformat()
    if kind == "month":
        return f"{day.year}-{day.month:02d}"
    return f"{day.year}-Q{(day.month - 1) // 3 + 1}"


def _week_start(board: CompiledBoard, day: date) -> date:
    back = day.weekday() if board.week_start == "monday" else (day.weekday() + 1) % 7
    return day - timedelta(days=back)


def first_day(board: CompiledBoard, key: str) -> date | None:
    """The first local date of a calendar window; None for all-time and season windows."""
    kind = board.board.window
    if kind in ("all_time", "season"):
        expected = ALL_TIME if kind == "all_time" else SEASON
        if key != expected:
            raise UnknownWindow(f"window {key!r}: this board's windows are named {_FORMS[kind]}")
        return None
    try:
        if kind in ("day", "week"):
            day = date.fromisoformat(key)
            if len(key) != 10 or (kind == "week" and _week_start(board, day) != day):
                raise ValueError
            return day
        match = (_MONTH if kind == "month" else _QUARTER).match(key)
        if match is None:
            raise ValueError
        year, part = int(match[1]), int(match[2])
        return date(year, part if kind == "month" else 3 * part - 2, 1)
    except ValueError:
        raise UnknownWindow(
            f"window {key!r}: this board's windows are named {_FORMS[kind]}"
        ) from None


def _after(board: CompiledBoard, day: date) -> date:
    """The first day of the window after the one starting on ``day``."""
    kind = board.board.window
    if kind == "day":
        return day + timedelta(days=1)
    if kind == "week":
        return day + timedelta(days=7)
    months = 1 if kind == "month" else 3
    month0 = day.month - 1 + months
    return date(day.year + month0 // 12, month0 % 12 + 1, 1)


def _midnight(board: CompiledBoard, day: date) -> datetime:
    # A midnight skipped by DST resolves (fold=0) to the first instant of that local date.
    return datetime.combine(day, time(), tzinfo=board.zone).astimezone(UTC)


def bounds(board: CompiledBoard, key: str) -> tuple[datetime | None, datetime | None]:
    """[start, end) of a window as UTC instants; None where it is unbounded."""
    if board.board.window == "season":
        first_day(board, key)
        season = board.board.season
        assert season is not None
        return season.start, season.end
    day = first_day(board, key)
    if day is None:
        return None, None
    return _midnight(board, day), _midnight(board, _after(board, day))


def current(board: CompiledBoard, now: datetime) -> str:
    kind = board.board.window
    if kind in ("all_time", "season"):
        return ALL_TIME if kind == "all_time" else SEASON
    return _key_of_day(board, local_date(now, board.zone))


def previous(board: CompiledBoard, now: datetime) -> str | None:
    """The window before the current one; None for all-time and season boards."""
    if board.board.window in ("all_time", "season"):
        return None
    day = first_day(board, current(board, now))
    assert day is not None
    return _key_of_day(board, day - timedelta(days=1))


def recently_closed(board: CompiledBoard, now: datetime, limit: int = 2) -> list[str]:
    """The latest ``limit`` windows that are closed (end and grace passed), newest first; a
    season once it is over. With a grace longer than a window, the last closed one is
    further back than the previous one."""
    kind = board.board.window
    if kind == "all_time":
        return []
    if kind == "season":
        return [SEASON] if closed(board, SEASON, now) else []
    found: list[str] = []
    day = first_day(board, current(board, now))
    for _ in range(_LOOK_BACK):
        assert day is not None
        key = _key_of_day(board, day - timedelta(days=1))
        if closed(board, key, now):
            found.append(key)
            if len(found) == limit:
                break
        day = first_day(board, key)
    return found


def counts(board: CompiledBoard, key: str, received_at: datetime) -> bool:
    """Late-event policy: an event counts in its window when it was received before the
    window closed plus the board's grace; later than that it counts in no window."""
    _, end = bounds(board, key)
    return end is None or received_at < end + board.board.late_grace


def held(board: CompiledBoard, key: str, now: datetime) -> bool:
    """Whether the window is open: it has started and can still change."""
    start, _ = bounds(board, key)
    return (start is None or start <= now) and not closed(board, key, now)


def closed(board: CompiledBoard, key: str, now: datetime) -> bool:
    """Past its end and grace: final, answered from SQL. (A window that has not begun is not
    closed: an event a little ahead of the clock already counts in it.)"""
    _, end = bounds(board, key)
    return end is not None and now >= end + board.board.late_grace


def open_windows(board: CompiledBoard, now: datetime) -> list[str]:
    keys = [current(board, now)]
    before = previous(board, now)
    if before is not None and held(board, before, now):
        keys.append(before)
    return [k for k in keys if held(board, k, now)]


def is_future(board: CompiledBoard, key: str, now: datetime) -> bool:
    start, _ = bounds(board, key)
    return start is not None and start > now
