"""Properties of the evaluator: deterministic, and order-insensitive where it should be."""

from __future__ import annotations

import copy
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from plaudit.rules.evaluate import EventFacts, PlayerFacts, evaluate
from plaudit.rules.state import PlayerState
from tests.rules.support import T0, rules

RULES = rules("""
currencies: [xp, coins]
program: {time_zone: America/New_York}
rules:
  - {id: lesson, on: lesson.completed, award: {xp: 10}}
  - {id: deal, on: deal.closed, award: {coins: "double(event.properties.amount) / 1000.0"}}
badges:
  - id: lessons
    name: Lessons
    criteria: {count: {on: lesson.completed}}
    tiers: [{name: bronze, at_least: 3}, {name: silver, at_least: 6}]
  - id: seller
    name: Seller
    criteria:
      sum: {on: deal.closed, property: event.properties.amount, at_least: 5000,
            window: {period: month}}
  - id: explorer
    name: Explorer
    criteria: {distinct: {on: lesson.completed, property: event.properties.course, at_least: 3}}
  - id: both
    name: Both
    criteria: {all: [{badge: explorer}, {badge: seller}]}
""")

# An event's time is part of the event (minutes since T0), not of its place in the list.
lesson = st.builds(
    lambda minute, course: ("lesson.completed", minute, {"course": course}),
    st.integers(0, 60 * 24 * 60),
    st.sampled_from(["a", "b", "c", "d"]),
)
deal = st.builds(
    lambda minute, amount: ("deal.closed", minute, {"amount": amount}),
    st.integers(0, 60 * 24 * 60),
    st.integers(1, 4000),
)
histories = st.lists(st.one_of(lesson, deal), max_size=25)


def _run(history: list[tuple[str, int, dict[str, object]]]) -> tuple[PlayerState, list[object]]:
    state = PlayerState()
    effects: list[object] = []
    for i, (type_, minute, props) in enumerate(history):
        event = EventFacts(f"e{i}", type_, "lms", "a", T0 + timedelta(minutes=minute), props)
        effects += evaluate(RULES, state, event, PlayerFacts("p"))
    return state, effects


@settings(max_examples=60, deadline=None)
@given(histories)
def test_the_same_events_give_the_same_effects(
    history: list[tuple[str, int, dict[str, object]]],
) -> None:
    first_state, first = _run(history)
    second_state, second = _run(copy.deepcopy(history))
    assert first == second
    assert first_state.to_json() == second_state.to_json()


@settings(max_examples=200, deadline=None)
@given(histories, st.randoms(use_true_random=False))
def test_order_insensitive_criteria_do_not_depend_on_arrival_order(
    history: list[tuple[str, int, dict[str, object]]], random: object
) -> None:
    shuffled = list(history)
    random.shuffle(shuffled)  # type: ignore[attr-defined]
    state_a, _ = _run(history)
    state_b, _ = _run(shuffled)
    assert state_a.balances == state_b.balances
    earned_a = {b: sorted(h.tiers) for b, h in state_a.badges.items()}
    earned_b = {b: sorted(h.tiers) for b, h in state_b.badges.items()}
    assert earned_a == earned_b
