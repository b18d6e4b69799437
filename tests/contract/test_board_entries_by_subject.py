"""On PostgreSQL board entries are indexed by subject only where the subject's events do not
lead to them (an adjustment's, a group's): an event's entry for its own player is found
through the player's events (SQLite indexes them all, and keeps the flag). Whatever path an
entry takes, a retraction or a merge recomputes every score it touches from all of its
entries, on each store."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from plaudit.bootstrap import Container
from plaudit.services.players import PlayerPatch
from plaudit.store.sql import tables
from tests.contract.test_board_standings import player_id, projected, send, settle, sql_order

RULES = """
currencies: [xp]
rules:
  - {id: task, on: task.done, award: {xp: "event.properties.points"}, allow_negative: true}
leaderboards:
  - {id: xp, name: XP, metric: {currency: xp}}
  - {id: teams, name: Teams, metric: {currency: xp}, group_by: team}
"""


@pytest.fixture
def boards(container: Container) -> Container:
    view = container.rulesets.create("default", "p", RULES)
    container.rulesets.publish("default", view.record.id, "test")
    container.leaderboards.start()
    return container


def _flags(c: Container) -> set[tuple[str, str, bool]]:
    """(board, subject, by_subject) of every entry."""
    e = tables.board_entries.c
    with c.db.read() as uow:
        rows = uow.conn.execute(select(e.board_id, e.subject, e.by_subject))
        return {(b, s, bool(flag)) for b, s, flag in rows}


def _team(c: Container, actor: str, team: str) -> None:
    c.players.update("default", f"lms:{actor}", PlayerPatch(attributes={"team": team}))


def test_only_entries_their_events_do_not_lead_to_are_indexed_by_subject(
    boards: Container,
) -> None:
    send(boards, "ann", 1)  # makes the player, then a team
    settle(boards)
    _team(boards, "ann", "red")
    send(boards, "ann", 2)
    settle(boards)
    boards.progress.adjust("default", "lms:ann", "xp", 4, "bonus", "admin")
    ann = player_id(boards, "ann")
    assert _flags(boards) == {
        ("xp", ann, False),  # the events' (their player's)
        ("teams", "red", True),  # a group's
        ("xp", ann, True),  # the adjustment's
    }


def test_a_retraction_recomputes_player_and_group_scores_from_every_entry(
    boards: Container,
) -> None:
    for actor in ("ann", "bob"):
        send(boards, actor, 1)
    settle(boards)
    for actor in ("ann", "bob"):
        _team(boards, actor, "red")
    first = send(boards, "ann", 2, hours_ago=3)
    send(boards, "ann", 3, hours_ago=2)
    send(boards, "bob", 5, hours_ago=2)
    settle(boards)
    boards.progress.adjust("default", "lms:ann", "xp", 4, "bonus", "admin")
    boards.leaderboards.sync()
    ann, bob = player_id(boards, "ann"), player_id(boards, "bob")
    assert projected(boards, "xp", "all") == [(ann, 100_000), (bob, 60_000)]
    assert projected(boards, "teams", "all") == [("red", 140_000)]  # the adjustment too
    boards.scoring.retract("default", first, "mistake", "admin")
    boards.leaderboards.sync()
    # ann keeps her first event, her third and the adjustment; red all but the 2.
    assert projected(boards, "xp", "all") == [(ann, 80_000), (bob, 60_000)]
    assert projected(boards, "teams", "all") == [("red", 120_000)]
    for board in ("xp", "teams"):
        assert projected(boards, board, "all") == sql_order(boards, board, "all")
    assert boards.leaderboards.reconcile().drift == 0


def test_a_merge_moves_every_entry_of_the_absorbed_player(boards: Container) -> None:
    send(boards, "ann", 3)
    moved = send(boards, "ann2", 4)
    send(boards, "bob", 1)
    settle(boards)
    boards.progress.adjust("default", "lms:ann2", "xp", 2, "bonus", "admin")
    survivor = player_id(boards, "ann")
    bob = player_id(boards, "bob")
    boards.players.merge("default", "lms:ann", "lms:ann2")
    boards.leaderboards.sync()
    assert projected(boards, "xp", "all") == [(survivor, 90_000), (bob, 10_000)]
    assert {s for b, s, _ in _flags(boards) if b == "xp"} == {survivor, bob}
    # Retracted after the merge: found through the survivor's events.
    boards.scoring.retract("default", moved, "mistake", "admin")
    boards.leaderboards.sync()
    assert projected(boards, "xp", "all") == [(survivor, 50_000), (bob, 10_000)]
    assert projected(boards, "xp", "all") == sql_order(boards, "xp", "all")
    assert boards.leaderboards.reconcile().drift == 0
