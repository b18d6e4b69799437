"""When to retry a failed webhook delivery, and when to give up and dead-letter it."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

# The delay before attempt 1, 2, ... 10: Svix's eight (about 27.6 hours), then two daily
# attempts, so that a message is retried for about three days (75.6 hours, up to about 91
# with jitter): long enough to ride out a receiver's outage over a weekend.
DEFAULT_SCHEDULE: tuple[timedelta, ...] = (
    timedelta(0),
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
    timedelta(hours=24),
    timedelta(hours=24),
)

# A receiver's Retry-After is honoured up to this: it must not be able to park a message
# forever (or past the whole schedule) by answering with a huge value or a far-future date.
RETRY_AFTER_MAX = timedelta(hours=24)

JITTER_SPREAD = 0.2

_DELTA_SECONDS = re.compile(r"-?[0-9]+")
_SCHEDULE_ITEM = re.compile(r"([0-9]+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def next_attempt_delay(
    attempts_made: int, schedule: Sequence[timedelta], jitter: Callable[[], float]
) -> timedelta | None:
    """The delay before the next attempt after ``attempts_made`` failures; None when exhausted.

    Attempt 1 (``attempts_made == 0``) waits ``schedule[0]``. A non-zero delay is stretched by
    ``1 + 0.2 * jitter()``, where ``jitter()`` returns a float in [0, 1) (callers pass
    ``random.random``), so it lands in [delay, 1.2 * delay): the retries of many messages that
    failed together spread out instead of hitting the recovering receiver at the same instant.
    A zero delay stays zero. None means the schedule is used up: dead-letter the message.
    """
    if attempts_made < 0:
        raise ValueError(f"attempts_made must not be negative, got {attempts_made}")
    if attempts_made >= len(schedule):
        return None
    delay = schedule[attempts_made]
    if delay == timedelta(0):
        return delay
    factor = jitter()
    if not 0.0 <= factor < 1.0:
        raise ValueError(f"jitter() must return a float in [0, 1), got {factor!r}")
    return delay * (1.0 + JITTER_SPREAD * factor)


def retry_after(value: str | None, now: datetime) -> timedelta | None:
    """How long an HTTP ``Retry-After`` header asks us to wait; None when absent or unparseable.

    Accepts delta-seconds or an HTTP-date (RFC 9110 section 10.2.3); ``now`` must be
    timezone-aware. A negative wait (a date in the past, or "-5") becomes zero; a longer one
    than ``RETRY_AFTER_MAX`` is capped to it.
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    if _DELTA_SECONDS.fullmatch(text):
        # Compare as int first: a huge number would overflow timedelta.
        seconds = int(text)
        if seconds >= RETRY_AFTER_MAX.total_seconds():
            return RETRY_AFTER_MAX
        return timedelta(seconds=max(seconds, 0))
    try:
        when = parsedate_to_datetime(text)
    except (ValueError, TypeError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": RFC 5322's "UTC, local zone unknown"
        when = when.replace(tzinfo=UTC)
    return min(max(when - now, timedelta(0)), RETRY_AFTER_MAX)


def parse_schedule(text: str) -> tuple[timedelta, ...]:
    """Parse a setting such as ``"0s,5s,5m,30m,2h,5h,10h,10h"`` (units s, m, h, d)."""
    items = [item.strip() for item in text.split(",")]
    if items == [""]:
        raise ValueError("webhook retry schedule is empty: give at least one delay, e.g. '0s'")
    delays: list[timedelta] = []
    for position, item in enumerate(items, start=1):
        match = _SCHEDULE_ITEM.fullmatch(item)
        try:
            delay = timedelta(**{_UNITS[match[2]]: int(match[1])}) if match else None
        except OverflowError:  # "99999999999d"
            delay = None
        if delay is None:
            raise ValueError(
                f"bad webhook retry schedule item {item!r} (item {position}): expected a whole "
                "number followed by s, m, h or d, such as '30m'"
            )
        delays.append(delay)
    return tuple(delays)
