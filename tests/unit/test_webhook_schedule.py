"""The webhook retry schedule: Svix's delays with bounded jitter, Retry-After, and parsing."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

import pytest

from plaudit.webhooks.schedule import (
    DEFAULT_SCHEDULE,
    RETRY_AFTER_MAX,
    next_attempt_delay,
    parse_schedule,
    retry_after,
)

JUST_UNDER_ONE = math.nextafter(1.0, 0.0)
NOW = datetime(2015, 10, 21, 7, 26, 30, tzinfo=UTC)


def no_jitter() -> float:
    return 0.0


def most_jitter() -> float:
    return JUST_UNDER_ONE


def test_default_schedule_is_svixs_eight_attempts_then_two_daily_over_about_three_days() -> None:
    # Svix's published schedule spans 27 h 35 min 5 s; two daily attempts make it 75.6 h.
    assert len(DEFAULT_SCHEDULE) == 10
    svix = DEFAULT_SCHEDULE[:8]
    assert sum(svix, timedelta()) == timedelta(hours=27, minutes=35, seconds=5)
    assert sum(DEFAULT_SCHEDULE, timedelta()) == timedelta(hours=75, minutes=35, seconds=5)


def test_the_whole_schedule_with_most_jitter_stays_under_four_days() -> None:
    delays = [next_attempt_delay(n, DEFAULT_SCHEDULE, most_jitter) for n in range(10)]
    total = sum((d for d in delays if d is not None), timedelta())
    assert None not in delays
    assert timedelta(hours=90) < total < timedelta(hours=90, minutes=43)


def test_the_first_attempt_is_immediate_whatever_the_jitter() -> None:
    assert next_attempt_delay(0, DEFAULT_SCHEDULE, most_jitter) == timedelta(0)


@pytest.mark.parametrize("attempts_made", range(10))
def test_no_jitter_gives_the_scheduled_delay(attempts_made: int) -> None:
    expected = DEFAULT_SCHEDULE[attempts_made]
    assert next_attempt_delay(attempts_made, DEFAULT_SCHEDULE, no_jitter) == expected


@pytest.mark.parametrize("attempts_made", range(1, 10))
def test_jitter_just_under_one_stretches_a_delay_by_just_under_a_fifth(
    attempts_made: int,
) -> None:
    base = DEFAULT_SCHEDULE[attempts_made]
    delay = next_attempt_delay(attempts_made, DEFAULT_SCHEDULE, most_jitter)
    assert delay is not None
    assert base * 1.19 < delay <= base * 1.2


def test_half_jitter_stretches_by_a_tenth() -> None:
    assert next_attempt_delay(4, DEFAULT_SCHEDULE, lambda: 0.5) == timedelta(hours=2, minutes=12)


@pytest.mark.parametrize("attempts_made", [10, 11, 100])
def test_an_exhausted_schedule_returns_none(attempts_made: int) -> None:
    assert next_attempt_delay(attempts_made, DEFAULT_SCHEDULE, no_jitter) is None


def test_a_custom_schedule_is_exhausted_after_its_own_length() -> None:
    short = (timedelta(0), timedelta(seconds=1))
    assert next_attempt_delay(1, short, no_jitter) == timedelta(seconds=1)
    assert next_attempt_delay(2, short, no_jitter) is None


@pytest.mark.parametrize("bad", [-0.1, 1.0, 2.0])
def test_jitter_outside_zero_to_one_is_rejected(bad: float) -> None:
    with pytest.raises(ValueError, match=r"jitter\(\) must return a float in \[0, 1\)"):
        next_attempt_delay(3, DEFAULT_SCHEDULE, lambda: bad)


def test_negative_attempts_made_is_rejected() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        next_attempt_delay(-1, DEFAULT_SCHEDULE, no_jitter)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", timedelta(seconds=120)),
        (" 120 ", timedelta(seconds=120)),
        ("0", timedelta(0)),
        ("-5", timedelta(0)),
        ("Wed, 21 Oct 2015 07:28:00 GMT", timedelta(seconds=90)),
        ("Wed, 21 Oct 2015 07:28:00 -0000", timedelta(seconds=90)),
        ("Wed, 21 Oct 2015 07:00:00 GMT", timedelta(0)),
        ("86400", RETRY_AFTER_MAX),
        ("86401", RETRY_AFTER_MAX),
        ("99999999999999999999999999", RETRY_AFTER_MAX),
        ("Fri, 01 Jan 2100 00:00:00 GMT", RETRY_AFTER_MAX),
    ],
)
def test_retry_after_reads_seconds_and_http_dates_clamped_and_capped(
    header: str, expected: timedelta
) -> None:
    assert retry_after(header, NOW) == expected


def test_retry_after_cap_is_a_day() -> None:
    assert timedelta(hours=24) == RETRY_AFTER_MAX
    assert retry_after("86399", NOW) == timedelta(seconds=86399)


@pytest.mark.parametrize(
    "header",
    [None, "", "   ", "soon", "1.5", "12s", "\uff11\uff12", "Wed, 32 Oct 2015 07:28:00 GMT"],
)
def test_retry_after_absent_or_unparseable_is_none(header: str | None) -> None:
    assert retry_after(header, NOW) is None


def test_parse_schedule_reads_the_default_setting() -> None:
    assert parse_schedule("0s,5s,5m,30m,2h,5h,10h,10h,24h,24h") == DEFAULT_SCHEDULE


def test_parse_schedule_allows_spaces_and_days() -> None:
    assert parse_schedule(" 1d , 90s,0m ") == (
        timedelta(days=1),
        timedelta(seconds=90),
        timedelta(0),
    )


@pytest.mark.parametrize(
    ("text", "bad_item"),
    [
        ("0s,5x,5m", "5x"),
        ("0s,,5m", ""),
        ("5", "5"),
        ("m5", "m5"),
        ("-5s", "-5s"),
        ("1.5h", "1.5h"),
        ("5S", "5S"),
        ("0s,99999999999999d", "99999999999999d"),
    ],
)
def test_parse_schedule_names_the_bad_item(text: str, bad_item: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"item {bad_item!r}")):
        parse_schedule(text)


def test_parse_schedule_rejects_an_empty_setting() -> None:
    with pytest.raises(ValueError, match="schedule is empty"):
        parse_schedule("  ")
