"""Board windows in the board's time zone: exact at every boundary, across DST changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plaudit.leaderboards import windows as w
from plaudit.rules.compiler import CompiledBoard
from plaudit.rules.document import load


def board(
    window: str, time_zone: str = "UTC", week_start: str = "monday", **extra: str
) -> CompiledBoard:
    more = "".join(f"\n    {k}: {v}" for k, v in extra.items())
    text = f"""
currencies: [xp]
leaderboards:
  - id: b
    name: B
    metric: {{currency: xp}}
    window: {window}
    time_zone: {time_zone}
    week_start: {week_start}{more}
"""
    return load(text)[1].boards["b"]


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@pytest.mark.parametrize(
    ("zone", "last_of_week", "first_of_next"),
    [
        # Paris, UTC+1 in winter: Monday 00:00 local is Sunday 23:00 UTC.
        ("Europe/Paris", utc(2026, 11, 29, 22, 59, 59), utc(2026, 11, 29, 23, 0)),
        # New York, UTC-5: Monday 00:00 local is Monday 05:00 UTC.
        ("America/New_York", utc(2026, 11, 30, 4, 59, 59), utc(2026, 11, 30, 5, 0)),
        # Tokyo, UTC+9: Monday 00:00 local is Sunday 15:00 UTC.
        ("Asia/Tokyo", utc(2026, 11, 29, 14, 59, 59), utc(2026, 11, 29, 15, 0)),
        # Kathmandu, UTC+5:45.
        ("Asia/Kathmandu", utc(2026, 11, 29, 18, 14, 59), utc(2026, 11, 29, 18, 15)),
    ],
)
def test_a_week_ends_at_local_midnight_on_monday(
    zone: str, last_of_week: datetime, first_of_next: datetime
) -> None:
    b = board("week", zone)
    assert w.window_of(b, last_of_week) == "2026-11-23"
    assert w.window_of(b, first_of_next) == "2026-11-30"
    assert w.bounds(b, "2026-11-30")[0] == first_of_next


def test_a_sunday_week_starts_on_sunday() -> None:
    b = board("week", "America/Los_Angeles", week_start="sunday")
    # Sunday 29 November 2026, 00:00 in Los Angeles (UTC-8) is 08:00 UTC.
    assert w.window_of(b, utc(2026, 11, 29, 7, 59)) == "2026-11-22"
    assert w.window_of(b, utc(2026, 11, 29, 8, 0)) == "2026-11-29"
    with pytest.raises(w.UnknownWindow, match="first day"):
        w.bounds(b, "2026-11-30")  # a Monday does not start a Sunday week


def test_the_day_dst_starts_has_23_hours_and_loses_nothing() -> None:
    b = board("day", "Europe/Paris")
    start, end = w.bounds(b, "2026-03-29")  # clocks go from 02:00 to 03:00
    assert start is not None
    assert end is not None
    assert end - start == timedelta(hours=23)
    assert w.window_of(b, start - timedelta(microseconds=1)) == "2026-03-28"
    assert w.window_of(b, start) == "2026-03-29"
    assert w.window_of(b, end - timedelta(microseconds=1)) == "2026-03-29"
    assert w.window_of(b, end) == "2026-03-30"


def test_the_day_dst_ends_has_25_hours() -> None:
    b = board("day", "America/New_York")
    start, end = w.bounds(b, "2026-11-01")
    assert start is not None
    assert end is not None
    assert end - start == timedelta(hours=25)
    # 01:30 happens twice that night; both count on the same day.
    assert w.window_of(b, utc(2026, 11, 1, 5, 30)) == "2026-11-01"
    assert w.window_of(b, utc(2026, 11, 1, 6, 30)) == "2026-11-01"


def test_a_midnight_that_dst_skips_starts_the_day_at_one() -> None:
    # Santiago moves from 00:00 to 01:00 on 6 September 2026: the day begins at 01:00 local.
    b = board("day", "America/Santiago")
    start, _ = w.bounds(b, "2026-09-06")
    assert start == utc(2026, 9, 6, 4, 0)
    assert w.window_of(b, start - timedelta(microseconds=1)) == "2026-09-05"
    assert w.window_of(b, start) == "2026-09-06"


def test_months_and_quarters_turn_over_at_local_midnight() -> None:
    month = board("month", "Asia/Tokyo")
    quarter = board("quarter", "Asia/Tokyo")
    new_year = utc(2026, 12, 31, 15, 0)  # 1 January 2027, 00:00 in Tokyo
    assert w.window_of(month, new_year - timedelta(microseconds=1)) == "2026-12"
    assert w.window_of(month, new_year) == "2027-01"
    assert w.window_of(quarter, new_year - timedelta(microseconds=1)) == "2026-Q4"
    assert w.window_of(quarter, new_year) == "2027-Q1"
    assert w.bounds(quarter, "2027-Q1") == (new_year, utc(2027, 3, 31, 15, 0))


def test_a_season_counts_only_between_its_start_and_end() -> None:
    b = board(
        "season",
        season="{start: '2026-09-01T00:00:00Z', end: '2026-12-01T00:00:00Z'}",
    )
    assert w.window_of(b, utc(2026, 8, 31, 23, 59)) is None
    assert w.window_of(b, utc(2026, 9, 1)) == "season"
    assert w.window_of(b, utc(2026, 12, 1)) is None
    assert w.current(b, utc(2027, 1, 1)) == "season"
    assert not w.held(b, "season", utc(2027, 1, 1))  # closed: answered from SQL
    assert w.is_future(b, "season", utc(2026, 8, 1))


def test_a_late_event_counts_in_its_window_only_within_the_grace() -> None:
    b = board("week", "UTC", late_grace="PT6H")
    end = utc(2026, 12, 7)  # the week of 30 November ends
    assert w.counts(b, "2026-11-30", end + timedelta(hours=5, minutes=59))
    assert not w.counts(b, "2026-11-30", end + timedelta(hours=6))
    assert w.open_windows(b, end + timedelta(hours=1)) == ["2026-12-07", "2026-11-30"]
    assert w.open_windows(b, end + timedelta(hours=6)) == ["2026-12-07"]


def test_all_time_has_one_window_that_never_closes() -> None:
    b = board("all_time")
    assert w.window_of(b, utc(1999, 1, 1)) == "all"
    assert w.bounds(b, "all") == (None, None)
    assert w.previous(b, utc(2026, 1, 1)) is None
    with pytest.raises(w.UnknownWindow, match="all"):
        w.bounds(b, "2026")


@pytest.mark.parametrize(
    ("window", "bad"),
    [("day", "2026-02-30"), ("day", "20260101"), ("month", "2026-13"), ("quarter", "2026-Q5")],
)
def test_malformed_window_names_are_refused_with_the_form_expected(window: str, bad: str) -> None:
    with pytest.raises(w.UnknownWindow, match=r"e\.g\."):
        w.bounds(board(window), bad)


ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Kathmandu", "Australia/Lord_Howe"]


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(["day", "week", "month", "quarter"]),
    zone=st.sampled_from(ZONES),
    instant=st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)
    ),
)
def test_every_instant_lies_in_exactly_the_window_whose_bounds_hold_it(
    kind: str, zone: str, instant: datetime
) -> None:
    b = board(kind, zone)
    key = w.window_of(b, instant)
    assert key is not None
    start, end = w.bounds(b, key)
    assert start is not None
    assert end is not None
    assert start <= instant < end
    assert w.window_of(b, start) == key
    assert w.window_of(b, end) != key
    assert w.window_of(b, start - timedelta(microseconds=1)) != key


def test_the_latest_closed_windows_lie_behind_the_grace_not_just_the_previous_window() -> None:
    daily = board("day", "Europe/Paris", late_grace="P1DT1H")
    # The 28th ends at 23:00 UTC that day; with a grace of 25 h it is final at 00:00 on the
    # 30th, when the previous window (the 29th) is still open to late events.
    now = utc(2026, 11, 30, 10, 0)
    assert w.previous(daily, now) == "2026-11-29"
    assert w.recently_closed(daily, now) == ["2026-11-28", "2026-11-27"]
    assert w.recently_closed(daily, utc(2026, 11, 30, 0, 0)) == ["2026-11-28", "2026-11-27"]
    assert w.recently_closed(daily, utc(2026, 11, 29, 23, 59)) == ["2026-11-27", "2026-11-26"]
    assert w.recently_closed(board("all_time"), now) == []
    weekly = board("week", late_grace="PT0S")
    assert w.recently_closed(weekly, utc(2026, 11, 30), limit=1) == ["2026-11-23"]
