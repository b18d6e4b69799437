"""The scorer keeps player states and facts in memory across batches; any other writer of
either makes it read them again."""

from __future__ import annotations

from datetime import timedelta
from itertools import count

from plaudit.bootstrap import Container
from plaudit.domain.events import IncomingEvent
from plaudit.rules.state import PlayerState
from plaudit.services.players import PlayerPatch

RULES = """
currencies: [xp]
rules:
  - {id: task, on: task.done, award: {xp: 10}}
  - {id: emea, on: task.done, when: 'player.attributes.region == "EMEA"', award: {xp: 1}}
levels: {currency: xp, thresholds: [{name: new, at: 0}, {name: pro, at: 100}]}
badges:
  - {id: century, name: Century, criteria: {points: {currency: xp, at_least: 100}}}
"""
_keys = count()


def _setup(c: Container) -> None:
    view = c.rulesets.create("default", "p", RULES)
    c.rulesets.publish("default", view.record.id, "test")
    _task(c, "joined")  # ann exists from her first event
    c.players.update("default", "lms:ann", PlayerPatch(attributes={"region": "APAC"}))


def _task(c: Container, kind: str = "task.done") -> None:
    event = IncomingEvent(f"k{next(_keys)}", "lms", kind, "ann", c.clock() - timedelta(minutes=1))
    c.ingest.ingest("default", [event])
    while c.scoring.score_pending().events:
        pass


def _state(c: Container) -> PlayerState:
    with c.db.read() as uow:
        pid = c.players.get("default", "lms:ann").player.id
        return PlayerState.from_json(uow.scoring.states("default", [pid]).get(pid))


def test_an_adjustment_between_batches_is_not_overwritten_by_a_cached_state(
    container: Container,
) -> None:
    _setup(container)
    _task(container)  # ann's state is now cached by the scorer
    container.progress.adjust("default", "lms:ann", "xp", 85, "bonus", "admin")
    _task(container)
    state = _state(container)
    assert state.balances == {"xp": 105.0}
    assert "century" in state.badges  # reached with the adjustment and the second task
    standing = container.progress.standing("default", "lms:ann")
    assert [a.badge_id for a in standing.awards] == ["century"]


def test_changed_attributes_apply_to_the_next_event(container: Container) -> None:
    _setup(container)
    _task(container)
    assert _state(container).balances == {"xp": 10.0}
    container.players.update("default", "lms:ann", PlayerPatch(attributes={"region": "EMEA"}))
    _task(container)
    assert _state(container).balances == {"xp": 21.0}


def test_a_retraction_between_batches_is_seen_by_the_next_batch(container: Container) -> None:
    _setup(container)
    _task(container)
    _task(container)
    with container.db.read() as uow:
        events = uow.events.after(0, 100)
    container.scoring.retract("default", events[-1].id, "mistake", "admin")
    _task(container)
    assert _state(container).balances == {"xp": 20.0}
