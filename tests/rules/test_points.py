from __future__ import annotations

from datetime import timedelta

from tests.rules.support import T0, Player, rules

XP = """
currencies: [xp, coins]
program: {time_zone: Europe/Paris}
rules:
  - id: lesson
    on: lesson.completed
    when: event.properties.duration_s >= 300
    award: {xp: 10}
    cap: {per: day, max: {xp: 30}}
  - id: deal
    on: [deal.closed, deal.won]
    award: {coins: "event.properties.amount / 1000", xp: "double(event.properties.amount) / 2000.0"}
  - id: quiz
    on: quiz.passed
    once_per: event.properties.quiz
    award: {xp: 50}
levels:
  currency: xp
  thresholds: [{name: Novice, at: 0}, {name: Learner, at: 40}, {name: Expert, at: 100}]
"""


def test_a_rule_pays_when_its_condition_holds() -> None:
    p = Player(rules(XP))
    p.send("lesson.completed", duration_s=600)
    p.send("lesson.completed", duration_s=60)
    p.send("quiz.started")
    assert p.points() == 10


def test_amounts_can_be_expressions_in_several_currencies() -> None:
    p = Player(rules(XP))
    p.send("deal.closed", amount=12_345)
    p.send("deal.won", amount=1_000)
    assert p.points("coins") == 12 + 1  # CEL integer division truncates
    assert p.points("xp") == 6.1725 + 0.5


def test_a_failing_expression_is_a_rule_error_and_other_rules_still_run() -> None:
    p = Player(rules(XP))
    p.send("deal.closed", note="no amount")
    (failure,) = p.failures()
    assert failure.rule_id == "deal"
    assert "amount" in failure.message
    p.send("lesson.completed", duration_s=600)
    assert p.points() == 10


def test_non_numbers_and_negative_amounts_are_rule_errors_not_balances() -> None:
    p = Player(rules(XP))
    p.send("deal.closed", amount=-5000)
    p.send("deal.closed", amount="lots")
    assert [f.rule_id for f in p.failures()] == ["deal", "deal"]
    assert "negative" in p.failures()[0].message
    assert p.state.balances == {}


def test_the_daily_cap_holds_within_a_day_of_the_players_zone() -> None:
    p = Player(rules(XP))  # program zone Europe/Paris (UTC+2 in May)
    late_evening = T0.replace(hour=21, minute=30)  # 23:30 in Paris
    for _ in range(4):
        p.send("lesson.completed", late_evening, duration_s=600)
    assert p.points() == 30
    p.send("lesson.completed", late_evening + timedelta(hours=1), duration_s=600)  # 00:30 Paris
    assert p.points() == 40


def test_the_cap_follows_the_players_own_time_zone() -> None:
    p = Player(rules(XP), time_zone="America/New_York")
    evening = T0.replace(hour=23)  # 19:00 in New York: the same day as 09:00 UTC
    for at in (T0, T0, T0, evening):
        p.send("lesson.completed", at, duration_s=600)
    assert p.points() == 30


def test_once_per_object_pays_once() -> None:
    p = Player(rules(XP))
    p.send("quiz.passed", quiz="q1")
    p.send("quiz.passed", quiz="q1")
    p.send("quiz.passed", quiz="q2")
    assert p.points() == 100


def test_levels_are_reached_in_order_even_when_skipped_over() -> None:
    p = Player(rules(XP))
    p.send("lesson.completed", duration_s=600)
    assert p.levels() == ["Novice"]
    p.send("quiz.passed", quiz="q1")
    p.send("quiz.passed", quiz="q2")
    assert p.levels() == ["Novice", "Learner", "Expert"]
    assert p.state.level == 2


def test_conditions_of_one_event_type_fail_alone() -> None:
    p = Player(
        rules(
            """
            currencies: [xp]
            rules:
              - {id: a, on: quiz.passed, when: "event.properties.score >= 50", award: {xp: 1}}
              - {id: b, on: quiz.passed, when: "event.properties.level == 'hard'", award: {xp: 2}}
              - {id: c, on: quiz.passed, award: {xp: 4}}
              - {id: d, on: quiz.passed, when: "event.properties.score", award: {xp: 8}}
            """
        )
    )
    p.send("quiz.passed", score=70, level="easy")
    # d's condition is a number, not true or false: d fails alone, the others decide.
    assert p.points() == 1 + 4
    assert [f.rule_id for f in p.failures()] == ["d"]
    p.send("quiz.passed", level="hard")  # no score: a fails alone
    assert p.points() == 5 + 2 + 4
    assert [f.rule_id for f in p.failures()] == ["d", "a", "d"]
