"""Calendar keys in a time zone: which day, week, month, quarter or year an instant falls in."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

# date.toordinal() of a Monday, to count weeks from.
_MONDAY = date(2001, 1, 1).toordinal()


def local_date(instant: datetime, zone: ZoneInfo) -> date:
    return instant.astimezone(zone).date()


def week_number(day: date, week_start: str) -> int:
    """Weeks since a fixed Monday (or Sunday): consecutive weeks have consecutive numbers."""
    offset = 0 if week_start == "monday" else -1
    return (day.toordinal() - _MONDAY - offset) // 7


def period_key(day: date, period: str, week_start: str) -> str:
    if period == "day":
        return day.isoformat()
    if period == "week":
        return f"w{week_number(day, week_start)}"
    if period == "month":
        return f"{day.year}-{day.month:02d}"
    if period == "quarter":
        return f"{day.year}-Q{(day.month - 1) // 3 + 1}"
    if period == "year":
        return str(day.year)
    raise ValueError(f"unknown period {period!r}")
