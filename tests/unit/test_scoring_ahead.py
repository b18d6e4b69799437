"""Scoring ahead: a helper process evaluates the next batches while this one writes. What it
writes equals what scoring in this process would have; a batch whose reads changed before
its write (a retraction, an adjustment, new attributes, a new rule set version) is dropped
and scored here; a dead helper costs nothing but speed."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from plaudit.bootstrap import Container
from plaudit.domain.events import IncomingEvent, StoredEvent
from plaudit.services.players import PlayerPatch
from plaudit.services.rulesets import RuleBook
from plaudit.services.scoring import ScoringService
from plaudit.services.scoring import _writers_share as _writers
from tests.conftest import FakeClock

RULES = """
program: {time_zone: Europe/Paris}
currencies: [xp, coins]
rules:
  - {id: small, on: task.done, when: 'event.properties.score < 50', award: {xp: 2}}
  - id: big
    on: task.done
    when: 'event.properties.score >= 50'
    award: {xp: 5, coins: "event.properties.score / 10"}
    cap: {per: day, max: {xp: 40}}
  - {id: emea, on: task.done, when: 'player.attributes.region == "EMEA"', award: {coins: 1}}
levels: {currency: xp, thresholds: [{name: new, at: 0}, {name: pro, at: 30}]}
badges:
  - id: grinder
    name: Grinder
    criteria: {count: {on: task.done, at_least: 8}}
    tiers: [{name: bronze, at_least: 3}, {name: silver, at_least: 8}]
"""
BATCH = 20
PLAYERS = 12


@pytest.fixture
def ahead(container: Container, clock: FakeClock) -> Iterator[ScoringService]:
    """A scorer with small batches that scores ahead, its helper up."""
    view = container.rulesets.create("default", "p", RULES)
    container.rulesets.publish("default", view.record.id, "test")
    service = ScoringService(container.db, clock, RuleBook(), batch_size=BATCH, ahead=True)
    assert service.ahead is not None
    assert service.ahead.ready(60), "the helper process did not start"
    yield service
    service.close()


def _ingest(c: Container, count: int, start: int = 0) -> None:
    events = [
        IncomingEvent(
            f"k{n}",
            "lms",
            "task.done",
            f"p{n % PLAYERS}",
            c.clock() - timedelta(hours=2) + timedelta(seconds=n),
            {"score": (n * 37) % 100},
        )
        for n in range(start, start + count)
    ]
    c.ingest.ingest("default", events)


def _first_batch_written(c: Container, service: ScoringService) -> None:
    """200 events logged, the first batch written, and the helper's evaluation of the next
    one waiting to be taken: what is changed now was read before the change."""
    _ingest(c, 200)
    service.score_pending()
    assert service.ahead is not None
    assert service.ahead.waiting(30)


def _drain(service: ScoringService) -> None:
    while service.score_pending().events:
        pass


def _derived(c: Container) -> dict[str, Any]:
    """Everything scoring derived, comparable across runs (no generated ids, no times)."""
    with c.db.read() as uow:
        players = {p.id: p for p in uow.players.page("default", None, 1000)}
        return {
            "balances": {pid: uow.scoring.balances("default", pid) for pid in sorted(players)},
            "awards": sorted(
                (a.player_id, a.badge_id, a.tier or "", a.event_id or "")
                for a in uow.scoring.awards("default")
                if a.revoked_at is None
            ),
            "states": uow.scoring.states("default", sorted(players)),
        }


def _replayed(c: Container) -> dict[str, Any]:
    """What scoring in this process derives from the same log."""
    c.scoring.replay()
    return _derived(c)


def _helpers_event(c: Container) -> str:
    """An event after the first batch, of a player of the helper's share (the writer
    evaluates its own share in its transaction, where nothing is stale)."""
    return next(e.id for e in _events(c)[BATCH:] if not _writers(e.tenant_id, e.player_id))


def _helpers_player(c: Container) -> str:
    """A player of the helper's share, as a reference."""
    return next(
        ref
        for ref in (f"lms:p{n}" for n in range(PLAYERS))
        if not _writers("default", c.players.get("default", ref).player.id)
    )


def test_scoring_ahead_derives_what_scoring_here_does(
    container: Container, ahead: ScoringService
) -> None:
    _ingest(container, 300)
    # Players in both shares: the helper's, and the writer's.
    extra = 0
    while all(not _writers(e.tenant_id, e.player_id) for e in _events(container)):
        extra += 1
        event = IncomingEvent(f"x{extra}", "lms", "task.done", f"x{extra}", container.clock())
        container.ingest.ingest("default", [event])
    _ingest(container, 100, start=300)
    assert not all(_writers(e.tenant_id, e.player_id) for e in _events(container))
    _drain(ahead)
    assert ahead.ahead_written >= 10  # the helper evaluated most batches
    assert ahead.ahead_dropped == 0
    derived = _derived(container)
    assert derived["balances"][_player_id(container, "p0")]["xp"] > 0
    assert derived["awards"]
    assert derived == _replayed(container)


def test_events_a_merge_moved_to_the_other_share_are_scored_once(
    container: Container, ahead: ScoringService
) -> None:
    """A merge moves the absorbed player's events to the survivor, in whatever partition the
    log recorded for them: the helper and the writer share the players by the player an event
    is of now, so the survivor's events are all evaluated by one of them, each once."""
    by_share: dict[bool, list[str]] = {True: [], False: []}
    n = 0
    while len(by_share[True]) < 2 or len(by_share[False]) < 2:
        n += 1
        container.ingest.ingest(
            "default", [IncomingEvent(f"m{n}", "lms", "task.done", f"m{n}", container.clock())]
        )
        view = container.players.get("default", f"lms:m{n}")
        by_share[_writers("default", view.player.id)].append(f"lms:m{n}")
    (writers_a, writers_b), (helpers_a, helpers_b) = by_share[True][:2], by_share[False][:2]
    for ref in (writers_a, writers_b, helpers_a, helpers_b):
        actor = ref.removeprefix("lms:")
        container.ingest.ingest(
            "default",
            [
                IncomingEvent(
                    f"{actor}-{i}", "lms", "task.done", actor, container.clock(), {"score": 60}
                )
                for i in range(BATCH)
            ],
        )
    container.players.merge("default", writers_a, helpers_a)  # the helper's events to the writer
    container.players.merge("default", helpers_b, writers_b)  # and the other way
    _ingest(container, 200)  # a backlog: the helper takes part
    _drain(ahead)
    assert ahead.ahead_written >= 3
    derived = _derived(container)
    xp = {
        ref: container.progress.standing("default", ref).balances["xp"]
        for ref in (writers_a, helpers_b)
    }
    assert xp[writers_a] == xp[helpers_b] > 0  # the same events, scored once each
    assert derived == _replayed(container)


def test_a_retraction_of_an_event_evaluated_ahead_drops_that_batch(
    container: Container, ahead: ScoringService
) -> None:
    _first_batch_written(container, ahead)
    retracted = _helpers_event(container)  # in a batch evaluated ahead
    container.scoring.retract("default", retracted, "mistake", "admin")
    _drain(ahead)
    assert ahead.ahead_dropped >= 1
    with container.db.read() as uow:
        assert uow.scoring.event_ledger("default", retracted) == []
    assert _derived(container) == _replayed(container)


def test_an_adjustment_of_a_player_evaluated_ahead_drops_that_batch(
    container: Container, ahead: ScoringService
) -> None:
    _first_batch_written(container, ahead)
    container.progress.adjust("default", _helpers_player(container), "xp", 1000, "bonus", "admin")
    _drain(ahead)
    assert ahead.ahead_dropped >= 1
    assert _derived(container) == _replayed(container)


def test_new_attributes_of_a_player_drop_the_batch_evaluated_ahead(
    container: Container, ahead: ScoringService
) -> None:
    _first_batch_written(container, ahead)
    container.players.update("default", "lms:p1", PlayerPatch(attributes={"region": "EMEA"}))
    _drain(ahead)
    p1 = _player_id(container, "p1")
    with container.db.read() as uow:
        later = {e.id for e in uow.events.after(BATCH, 1000) if e.player_id == p1}
        entries = uow.scoring.ledger("default", p1, 0, 1000)
    # Every event scored after the change saw it, those evaluated ahead before it too.
    assert later == {e.row.event_id for e in entries if e.row.rule_id == "emea"}
    assert ahead.ahead_dropped >= 1


def test_a_new_version_published_meanwhile_drops_the_batch_evaluated_ahead(
    container: Container, ahead: ScoringService
) -> None:
    _first_batch_written(container, ahead)
    view = container.rulesets.create("default", "q", RULES.replace("xp: 2}", "xp: 3}"))
    container.rulesets.publish("default", view.record.id, "test")
    _ingest(container, 100, start=200)  # scored by the new version
    _drain(ahead)
    assert ahead.ahead_dropped >= 1
    assert _derived(container) == _replayed(container)


def test_a_killed_helper_costs_only_speed(container: Container, ahead: ScoringService) -> None:
    _ingest(container, 200)
    assert ahead.ahead is not None
    assert ahead.ahead.pid is not None
    os.kill(ahead.ahead.pid, signal.SIGKILL)
    _drain(ahead)
    assert ahead.ahead.failures == 1  # and scoring went on without it
    with container.db.read() as uow:
        assert uow.scoring.cursor("scoring") == uow.events.last_position()
    assert _derived(container) == _replayed(container)


def _events(c: Container) -> list[StoredEvent]:
    with c.db.read() as uow:
        return uow.events.after(0, 100_000)


def _player_id(c: Container, external: str) -> str:
    return c.players.get("default", f"lms:{external}").player.id


def test_a_helper_that_stops_answering_is_replaced_by_scoring_here(
    container: Container, ahead: ScoringService
) -> None:
    assert ahead.ahead is not None
    ahead.ahead.answer_timeout = 1.0
    _ingest(container, 200)
    assert ahead.ahead.pid is not None
    os.kill(ahead.ahead.pid, signal.SIGSTOP)  # alive, silent
    _drain(ahead)
    assert ahead.ahead.failures == 1
    assert ahead.ahead.pid is None  # killed (it only read: nothing to save)
    assert _derived(container) == _replayed(container)


def test_the_helper_declines_when_events_may_be_held(
    container: Container, clock: FakeClock
) -> None:
    view = container.rulesets.create("default", "p", RULES + "holds: {events_per_day: 1000}\n")
    container.rulesets.publish("default", view.record.id, "test")
    service = ScoringService(container.db, clock, RuleBook(), batch_size=BATCH, ahead=True)
    assert service.ahead is not None
    try:
        assert service.ahead.ready(60)
        _ingest(container, 200)
        _drain(service)
        assert service.ahead_written == 0  # a hold reads and records a day's activity
        with container.db.read() as uow:
            assert uow.scoring.cursor("scoring") == uow.events.last_position()
    finally:
        service.close()
    assert _derived(container) == _replayed(container)


def test_rows_of_a_batch_come_back_from_pickling_as_they_were(
    container: Container, ahead: ScoringService, clock: FakeClock
) -> None:
    """The helper's batches are pickled with their rows as plain tuples: they come back as
    the same rows, of their types, in the same order of effects."""
    import pickle

    from plaudit.services.scoring import Produced

    _ingest(container, BATCH)
    batch = ahead.evaluate_ahead(0, False, clock())
    assert batch is not None
    produced = batch.tenants[0].produced
    assert produced is not None
    assert produced.ledger
    assert produced.level_ups
    back = pickle.loads(pickle.dumps(produced))
    assert isinstance(back, Produced)
    for name in ("ledger", "awards", "level_ups", "failures", "entries", "held"):
        rows, again = getattr(produced, name), getattr(back, name)
        assert again == rows
        assert [type(r) for r in again] == [type(r) for r in rows]

    def effects(p: Produced) -> list[tuple[str, int]]:
        """The order of effects, naming the list each refers to."""
        names = {id(getattr(p, name)): name for name in ("ledger", "awards", "level_ups")}
        return [(names[id(rows)], i) for rows, i in p.order]

    assert effects(back) == effects(produced)
    assert len(effects(back)) >= len(produced.ledger)
