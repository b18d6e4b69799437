"""Limits read from "600/min" text, and the RateLimit-Policy, RateLimit and Retry-After headers
built from decisions (draft-ietf-httpapi-ratelimit-headers-11 syntax)."""

from __future__ import annotations

import math

import pytest

from plaudit.ratelimit.headers import (
    limit_item,
    policy_item,
    rate_limit_headers,
    retry_after_seconds,
)
from plaudit.ratelimit.ports import Decision, Limit, parse_limit

PER_MINUTE = parse_limit("600/min")


@pytest.mark.parametrize(
    ("text", "rate", "burst"),
    [
        ("600/min", 10.0, 600),
        ("10/s", 10.0, 10),
        (" 5 / h ", 5 / 3600, 5),
        ("1000/day", 1000 / 86_400, 1000),
        ("3/second", 3.0, 3),
        ("7/MINUTE", 7 / 60, 7),
        ("24/hour", 24 / 3600, 24),
        ("2/d", 2 / 86_400, 2),
    ],
)
def test_a_limit_reads_as_an_amount_per_unit_with_that_amount_as_its_burst(
    text: str, rate: float, burst: int
) -> None:
    assert parse_limit(text) == Limit(text.strip(), rate, burst)


def test_a_limit_may_name_its_burst_and_its_policy() -> None:
    assert parse_limit("600/min", burst=50, name="api") == Limit("api", 10.0, 50)


@pytest.mark.parametrize("text", ["", "600", "600/m", "600/week", "-5/s", "0/min", "1.5/s", "/s"])
def test_unreadable_limits_are_refused_with_the_expected_form(text: str) -> None:
    with pytest.raises(ValueError, match="a limit"):
        parse_limit(text)


@pytest.mark.parametrize(
    ("name", "rate", "burst", "problem"),
    [
        ("", 1.0, 1, "name"),
        ("café", 1.0, 1, "name"),
        ("tab\there", 1.0, 1, "name"),
        ("x", 0.0, 1, "rate"),
        ("x", -1.0, 1, "rate"),
        ("x", math.inf, 1, "rate"),
        ("x", math.nan, 1, "rate"),
        ("x", 1.0, 0, "burst"),
        ("x", 1.0, True, "burst"),
    ],
)
def test_a_limit_that_could_not_be_enforced_or_named_in_a_header_is_refused(
    name: str, rate: float, burst: int, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        Limit(name, rate, burst)


def test_the_policy_states_the_burst_and_the_seconds_to_refill_it() -> None:
    assert policy_item(PER_MINUTE) == '"600/min";q=600;w=60'
    assert policy_item(parse_limit("1000/h", name="hourly")) == '"hourly";q=1000;w=3600'
    assert policy_item(parse_limit("1000/day", name="daily")) == '"daily";q=1000;w=86400'
    # A smaller burst refills sooner: 50 tokens at 10 a second, 5 s.
    assert policy_item(parse_limit("600/min", burst=50, name="b")) == '"b";q=50;w=5'
    # Not a whole number of seconds: rounded up, so q per w never overstates the rate.
    assert policy_item(Limit("odd", rate=3.0, burst=10)) == '"odd";q=10;w=4'
    assert policy_item(Limit("fast", rate=1000.0, burst=10)) == '"fast";q=10;w=1'


def test_names_are_quoted_as_structured_field_strings() -> None:
    assert policy_item(Limit('say "hi" \\ bye', 1.0, 1)) == r'"say \"hi\" \\ bye";q=1;w=1'


def test_an_allowed_take_reports_tokens_left_and_the_seconds_until_full() -> None:
    decision = Decision(True, PER_MINUTE, remaining=12, reset_after=58.8, retry_after=0.0)
    assert limit_item(decision) == '"600/min";r=12;t=59'
    assert retry_after_seconds(decision) is None
    assert rate_limit_headers(decision) == {
        "RateLimit-Policy": '"600/min";q=600;w=60',
        "RateLimit": '"600/min";r=12;t=59',
    }
    full = Decision(True, PER_MINUTE, remaining=600, reset_after=0.0, retry_after=0.0)
    assert limit_item(full) == '"600/min";r=600;t=0'


def test_a_refused_take_asks_to_retry_after_whole_seconds_rounded_up() -> None:
    refused = Decision(False, PER_MINUTE, remaining=0, reset_after=59.95, retry_after=4.05)
    assert retry_after_seconds(refused) == 5
    # The effective window ends when Retry-After does (the draft: not later than it).
    assert rate_limit_headers(refused) == {
        "RateLimit-Policy": '"600/min";q=600;w=60',
        "RateLimit": '"600/min";r=0;t=5',
        "Retry-After": "5",
    }
    soon = Decision(False, PER_MINUTE, remaining=0, reset_after=60.0, retry_after=1e-12)
    assert retry_after_seconds(soon) == 1  # never "Retry-After: 0" on a refusal
    exact = Decision(False, PER_MINUTE, remaining=0, reset_after=60.0, retry_after=3.0000000001)
    assert retry_after_seconds(exact) == 3  # float noise is not a whole second more


def test_a_cost_above_the_burst_gets_no_retry_after_since_no_wait_helps() -> None:
    never = Decision(False, PER_MINUTE, remaining=600, reset_after=0.0, retry_after=math.inf)
    assert retry_after_seconds(never) is None
    assert rate_limit_headers(never) == {
        "RateLimit-Policy": '"600/min";q=600;w=60',
        "RateLimit": '"600/min";r=600;t=0',
    }


def test_several_limits_are_listed_together_and_the_longest_wait_wins() -> None:
    daily = parse_limit("10000/day", name="daily")
    burst = Decision(False, PER_MINUTE, remaining=0, reset_after=60.0, retry_after=0.1)
    quota = Decision(False, daily, remaining=0, reset_after=86_400.0, retry_after=8.64)
    headers = rate_limit_headers(burst, quota)
    assert headers == {
        "RateLimit-Policy": '"600/min";q=600;w=60, "daily";q=10000;w=86400',
        "RateLimit": '"600/min";r=0;t=1, "daily";r=0;t=9',
        "Retry-After": "9",
    }
    assert rate_limit_headers() == {}
