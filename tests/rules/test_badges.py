from __future__ import annotations

from datetime import timedelta

import pytest

from tests.rules.support import T0, Player, rules


def badge(criteria: str, extra: str = "", currencies: str = "[xp]") -> str:
    return f"""
currencies: {currencies}
program: {{time_zone: Europe/Paris}}
rules:
  - {{id: xp, on: lesson.completed, award: {{xp: 10}}}}
badges:
  - id: b
    name: B
    criteria: {criteria}
{extra}
"""


def test_count_awards_at_the_threshold_once() -> None:
    p = Player(rules(badge("{count: {on: lesson.completed, at_least: 3}}")))
    p.on_days("lesson.completed", 0, 0)
    assert p.badges() == []
    p.on_days("lesson.completed", 0, 0, 0)
    assert p.badges() == [("b", None)]


def test_count_with_a_condition_counts_only_matching_events() -> None:
    p = Player(
        rules(
            badge("{count: {on: quiz.passed, when: 'event.properties.score >= 90', at_least: 2}}")
        )
    )
    for score in (95, 50, 80):
        p.send("quiz.passed", score=score)
    assert p.badges() == []
    p.send("quiz.passed", score=90)
    assert p.badges() == [("b", None)]


def test_tiers_are_awarded_as_each_threshold_is_reached() -> None:
    extra = "    tiers: [{name: bronze, at_least: 2}, {name: silver, at_least: 4}]"
    p = Player(rules(badge("{count: {on: lesson.completed}}", extra)))
    p.on_days("lesson.completed", *range(5))
    assert p.badges() == [("b", "bronze"), ("b", "silver")]


def test_sum_within_a_calendar_quarter_resets_at_the_boundary_in_the_zone() -> None:
    spec = (
        "{sum: {on: deal.closed, property: event.properties.amount, at_least: 100,"
        " window: {period: quarter}}}"
    )
    p = Player(rules(badge(spec)))
    end_of_q2 = T0.replace(month=6, day=30, hour=21, minute=59)  # 23:59 in Paris, still Q2
    p.send("deal.closed", end_of_q2, amount=60)
    p.send("deal.closed", end_of_q2 + timedelta(minutes=2), amount=60)  # 00:01 Paris: Q3
    assert p.badges() == []
    p.send("deal.closed", end_of_q2 + timedelta(days=3), amount=40)
    assert p.badges() == [("b", None)]


def test_distinct_values_within_a_rolling_window() -> None:
    spec = (
        "{distinct: {on: quiz.passed, property: event.properties.course, at_least: 3,"
        " window: {rolling: P7D}}}"
    )
    p = Player(rules(badge(spec)))
    p.send("quiz.passed", T0, course="a")
    p.send("quiz.passed", T0 + timedelta(days=1), course="a")
    p.send("quiz.passed", T0 + timedelta(days=2), course="b")
    p.send("quiz.passed", T0 + timedelta(days=9), course="c")  # "a" and "b" are out of the window
    assert p.badges() == []
    p.send("quiz.passed", T0 + timedelta(days=10), course="d")
    p.send("quiz.passed", T0 + timedelta(days=11), course="e")
    assert p.badges() == [("b", None)]


def test_a_late_event_completes_a_rolling_window_it_belongs_to() -> None:
    spec = "{count: {on: lesson.completed, at_least: 3, window: {rolling: P3D}}}"
    p = Player(rules(badge(spec)))
    p.send("lesson.completed", T0)
    p.send("lesson.completed", T0 + timedelta(days=2))
    p.send("lesson.completed", T0 + timedelta(days=10))
    assert p.badges() == []
    p.send("lesson.completed", T0 + timedelta(days=1))  # arrives late, inside days 0-2
    assert p.badges() == [("b", None)]


def test_a_streak_of_consecutive_days_is_awarded_on_its_last_day() -> None:
    p = Player(rules(badge("{streak: {on: lesson.completed, length: 3}}")))
    p.on_days("lesson.completed", 0, 1, 3, 4)
    assert p.badges() == []
    p.on_days("lesson.completed", 5)
    assert p.badges() == [("b", None)]


def test_a_freeze_bridges_one_missed_day_but_not_two() -> None:
    p = Player(rules(badge("{streak: {on: lesson.completed, length: 3, freezes: 1}}")))
    p.on_days("lesson.completed", 0, 1, 4, 5)  # days 2 and 3 missed: broken
    assert p.badges() == []
    p.on_days("lesson.completed", 7)  # day 6 missed: frozen; 4, 5, 7 count
    assert p.badges() == [("b", None)]


def test_streak_days_follow_the_players_time_zone() -> None:
    # 23:30 in Tokyo is 14:30 UTC: three local evenings in a row are three days there.
    p = Player(rules(badge("{streak: {on: lesson.completed, length: 3}}")), time_zone="Asia/Tokyo")
    p.on_days("lesson.completed", 0, 1, 2, hour=14)
    assert p.badges() == [("b", None)]
    q = Player(rules(badge("{streak: {on: lesson.completed, length: 2}}")), time_zone="Asia/Tokyo")
    q.send("lesson.completed", T0.replace(hour=14, minute=30))  # 23:30 Monday in Tokyo
    q.send("lesson.completed", T0.replace(hour=15, minute=30))  # 00:30 Tuesday in Tokyo
    assert q.badges() == [("b", None)]


def test_weekly_streaks_count_weeks_from_the_programs_week_start() -> None:
    weekly = "{streak: {on: lesson.completed, unit: week, length: 3}}"
    monday = Player(rules(badge(weekly)))
    monday.on_days("lesson.completed", 5, 6, 13)  # Sat, Sun (one week), Sun: two weeks
    assert monday.badges() == []
    monday.on_days("lesson.completed", 14)  # Monday: a third week
    assert monday.badges() == [("b", None)]
    sunday = Player(
        rules(
            badge(weekly).replace(
                "{time_zone: Europe/Paris}", "{time_zone: Europe/Paris, week_start: sunday}"
            )
        )
    )
    sunday.on_days("lesson.completed", 5, 6, 13)  # Sat | Sun | Sun: three weeks
    assert sunday.badges() == [("b", None)]


def test_streak_days_are_local_days_across_a_dst_change() -> None:
    # Europe/Paris leaves summer time on 2026-10-25 (UTC+2 -> UTC+1).
    p = Player(rules(badge("{streak: {on: lesson.completed, length: 2}}")))
    p.send("lesson.completed", T0.replace(month=10, day=24, hour=22, minute=30))  # 25th 00:30
    p.send("lesson.completed", T0.replace(month=10, day=25, hour=22, minute=30))  # 25th 23:30
    assert p.badges() == []  # one local day
    p.send("lesson.completed", T0.replace(month=10, day=25, hour=23, minute=30))  # 26th 00:30
    assert p.badges() == [("b", None)]


def test_first_and_points_thresholds() -> None:
    text = (
        badge("{first: {on: lesson.completed}}")
        + """
  - id: rich
    name: Rich
    criteria: {points: {currency: xp, at_least: 30}}
"""
    )
    p = Player(rules(text))
    p.on_days("lesson.completed", 0)
    assert p.badges() == [("b", None)]
    p.on_days("lesson.completed", 0, 0)
    assert p.badges() == [("b", None), ("rich", None)]


def test_all_and_any_combine_other_badges_and_criteria() -> None:
    text = (
        badge("{count: {on: lesson.completed, at_least: 2}}")
        + """
  - id: both
    name: Both
    criteria: {all: [{badge: b}, {first: {on: quiz.passed}}]}
  - id: either
    name: Either
    criteria: {any: [{badge: both}, {count: {on: deal.closed, at_least: 5}}]}
"""
    )
    p = Player(rules(text))
    p.send("quiz.passed")
    p.on_days("lesson.completed", 0)
    assert p.badges() == []
    p.on_days("lesson.completed", 0)
    assert p.badges() == [("b", None), ("both", None), ("either", None)]


def test_repeatable_badges_are_awarded_each_time_the_threshold_is_reached_again() -> None:
    p = Player(rules(badge("{count: {on: lesson.completed, at_least: 2}}", "    repeatable: true")))
    p.on_days("lesson.completed", 0, 0, 0, 0, 0)
    assert p.badges() == [("b", None), ("b", None)]
    assert p.state.badges["b"].count == 2


def test_repeatable_per_period_is_awarded_once_per_period() -> None:
    spec = "{count: {on: lesson.completed, at_least: 2, window: {period: week}}}"
    p = Player(rules(badge(spec, "    repeatable: true")))
    p.on_days("lesson.completed", 0, 1, 2, 3)
    assert len(p.badges()) == 1
    p.on_days("lesson.completed", 7, 8)
    assert len(p.badges()) == 2


def test_an_expired_badge_can_be_earned_again() -> None:
    spec = "{count: {on: lesson.completed, at_least: 1, window: {rolling: P7D}}}"
    p = Player(rules(badge(spec, "    expires_after: P30D")))
    p.on_days("lesson.completed", 0, 5)
    assert len(p.badges()) == 1
    p.on_days("lesson.completed", 40)
    assert len(p.badges()) == 2


@pytest.mark.parametrize(
    ("criteria", "extra", "message"),
    [
        ("{badge: nope}", "", "unknown badge 'nope'"),
        ("{points: {currency: gold, at_least: 5}}", "", "unknown currency 'gold'"),
        ("{first: {on: x}}", "    tiers: [{name: a, at_least: 1}]", "tiers need"),
        (
            "{count: {on: x, at_least: 2, window: {rolling: P7D}}}",
            "    repeatable: true",
            "rolling",
        ),
        ("{count: {on: x, when: 'event.properties.a >'}}", "", "Syntax error"),
    ],
)
def test_bad_badges_are_refused_with_the_reason(criteria: str, extra: str, message: str) -> None:
    from plaudit.rules.document import DocumentInvalid

    with pytest.raises(DocumentInvalid, match=message):
        rules(badge(criteria, extra))
