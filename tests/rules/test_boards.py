"""What events put on leaderboards: the evaluator's BoardScored effects."""

from __future__ import annotations

import pytest

from plaudit.rules.compiler import RuleSetInvalid
from plaudit.rules.document import DocumentInvalid
from tests.rules.support import Player, rules

BOARDS = """
currencies: [xp, coins]
rules:
  - id: lesson
    on: lesson.completed
    award: {xp: 10}
    cap: {per: day, max: {xp: 15}}
  - id: deal
    on: deal.closed
    award: {coins: "event.properties.amount / 1000"}
  - id: penalty
    on: cheat.detected
    award: {xp: -5}
    allow_negative: true
leaderboards:
  - {id: xp, name: XP, metric: {currency: xp}}
  - {id: coins-weekly, name: Coins, metric: {currency: coins}, window: week}
  - id: long-lessons
    name: Long lessons
    metric: {count: {on: lesson.completed, when: "event.properties.minutes >= 30"}}
  - id: deal-value
    name: Deal value by team
    metric: {sum: {on: deal.closed, property: event.properties.amount}}
    group_by: team
  - id: emea-xp
    name: EMEA xp
    metric: {currency: xp}
    where: player.attributes.region == "EMEA"
"""


def test_a_currency_board_takes_the_points_after_caps() -> None:
    p = Player(rules(BOARDS))
    for _ in range(3):
        p.send("lesson.completed", minutes=10)
    assert p.points() == 15
    assert [b for b in p.boards() if b[0] == "xp"] == [("xp", "plr_1", 10.0), ("xp", "plr_1", 5.0)]


def test_a_capped_out_event_puts_nothing_on_the_board() -> None:
    p = Player(rules(BOARDS))
    p.send("lesson.completed", minutes=10)
    p.send("lesson.completed", minutes=10)
    third = p.send("lesson.completed", minutes=10)
    assert [e for e in third if type(e).__name__ == "BoardScored"] == []


def test_negative_points_move_a_currency_board_down() -> None:
    p = Player(rules(BOARDS))
    p.send("cheat.detected")
    assert ("xp", "plr_1", -5.0) in p.boards()


def test_a_count_board_counts_matching_events_only() -> None:
    p = Player(rules(BOARDS))
    p.send("lesson.completed", minutes=45)
    p.send("lesson.completed", minutes=5)
    assert [b for b in p.boards() if b[0] == "long-lessons"] == [("long-lessons", "plr_1", 1.0)]


def test_a_group_board_credits_the_players_group_and_skips_players_without_one() -> None:
    with_team = Player(rules(BOARDS), attributes={"team": "Sales"})
    with_team.send("deal.closed", amount=12_500)
    assert ("deal-value", "Sales", 12_500.0) in with_team.boards()
    without = Player(rules(BOARDS))
    without.send("deal.closed", amount=12_500)
    assert [b for b in without.boards() if b[0] == "deal-value"] == []


def test_a_number_attribute_names_a_group_too() -> None:
    p = Player(rules(BOARDS), attributes={"team": 7})
    p.send("deal.closed", amount=1000)
    assert ("deal-value", "7", 1000.0) in p.boards()


def test_a_where_filter_keeps_players_out() -> None:
    emea = Player(rules(BOARDS), attributes={"region": "EMEA"})
    emea.send("lesson.completed", minutes=1)
    apac = Player(rules(BOARDS), attributes={"region": "APAC"})
    apac.send("lesson.completed", minutes=1)
    assert ("emea-xp", "plr_1", 10.0) in emea.boards()
    assert [b for b in apac.boards() if b[0] == "emea-xp"] == []


def test_a_missing_property_on_a_sum_board_is_a_rule_error_not_a_stop() -> None:
    p = Player(rules(BOARDS), attributes={"team": "Sales"})
    p.send("deal.closed", note="no amount")
    names = {f.rule_id for f in p.failures()}
    assert "board:deal-value" in names
    assert [b for b in p.boards() if b[0] == "deal-value"] == []


def test_a_board_on_an_unknown_currency_is_refused_with_its_path() -> None:
    with pytest.raises((RuleSetInvalid, DocumentInvalid)) as caught:
        rules(
            """
            currencies: [xp]
            leaderboards: [{id: b, name: B, metric: {currency: gold}}]
            """
        )
    assert "leaderboards[0].metric.currency" in str(caught.value)


@pytest.mark.parametrize(
    ("board", "message"),
    [
        ("{id: b, name: B, metric: {currency: xp, count: {on: x}}}", "exactly one of"),
        ("{id: b, name: B, metric: {currency: xp}, window: season}", "season"),
        ("{id: b, name: B, metric: {currency: xp}, time_zone: Mars/Olympus}", "time zone"),
        (
            "{id: b, name: B, metric: {count: {on: x, when: 'event.properties.a >'}}}",
            "leaderboards[0].metric.count.when",
        ),
    ],
)
def test_bad_board_definitions_are_refused_clearly(board: str, message: str) -> None:
    with pytest.raises((RuleSetInvalid, DocumentInvalid)) as caught:
        rules(f"currencies: [xp]\nleaderboards: [{board}]\n")
    assert message in str(caught.value)
