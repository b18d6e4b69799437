"""Standings through the service, over each projection adapter: the projection always ranks
exactly as a naive sort of SQL's scores; retractions, merges, restarts and drift are handled."""

from __future__ import annotations

import re
from datetime import timedelta
from itertools import count
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql as psql
from sqlalchemy import event

from plaudit.bootstrap import Container, build
from plaudit.domain.events import IncomingEvent
from plaudit.leaderboards.memory import MemoryProjection
from plaudit.leaderboards.ports import BoardKey, Change, Projection
from plaudit.settings import Settings
from plaudit.store.sql import boards as sql_boards
from plaudit.store.sql import tables
from plaudit.store.sql.database import SqlDatabase
from tests.conftest import FakeClock

RULES = """
currencies: [xp]
rules:
  - {id: task, on: task.done, award: {xp: "event.properties.points"}, allow_negative: true}
leaderboards:
  - {id: xp, name: XP, metric: {currency: xp}}
  - {id: weekly, name: Weekly, metric: {currency: xp}, window: week, time_zone: Europe/Paris}
  - {id: active, name: Active, metric: {count: {on: task.done}}, min_score: 2}
"""
_keys = count()


@pytest.fixture
def boards(container: Container, projection: Projection) -> Container:
    container.leaderboards.projection = projection
    container.leaderboards.in_process = isinstance(projection, MemoryProjection)
    view = container.rulesets.create("default", "p", RULES)
    container.rulesets.publish("default", view.record.id, "test")
    container.leaderboards.start()
    return container


def send(c: Container, actor: str, points: float, hours_ago: float = 1.0) -> str:
    clock = c.clock
    report = c.ingest.ingest(
        "default",
        [
            IncomingEvent(
                f"k{next(_keys)}",
                "lms",
                "task.done",
                actor,
                clock() - timedelta(hours=hours_ago),
                {"points": points},
            )
        ],
    )
    (result,) = report.results
    assert result.event_id is not None
    return result.event_id


def settle(c: Container) -> None:
    while c.scoring.score_pending().events:
        pass
    c.leaderboards.sync()


def sql_order(
    c: Container, board: str, window: str, minimum: int | None = None
) -> list[tuple[str, int]]:
    """The naive reference: SQL's rows sorted by score, then time reached, then subject."""
    with c.db.read() as uow:
        rows = uow.conn.execute(
            tables.board_scores.select().where(
                tables.board_scores.c.board_id == board, tables.board_scores.c.window == window
            )
        ).mappings()
        listed = [
            r for r in rows if r["entries"] > 0 and (minimum is None or r["units"] >= minimum)
        ]
    listed.sort(key=lambda r: (-r["units"], r["reached_us"], r["subject"]))
    return [(r["subject"], r["units"]) for r in listed]


def projected(c: Container, board: str, window: str) -> list[tuple[str, int]]:
    top = c.leaderboards.projection.top(BoardKey("default", board, window), 0, 10_000)
    assert [r.rank for r in top] == list(range(1, len(top) + 1))
    return [(r.subject, r.units) for r in top]


def player_id(c: Container, actor: str) -> str:
    return c.players.get("default", f"lms:{actor}").player.id


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["ann", "bob", "cy", "dee", "eve"]),
            st.sampled_from([-5, 0.5, 1, 1, 2, 10]),  # repeated values make ties
            st.sampled_from([1.0, 1.0, 2.0, 30.0]),  # equal times make ties on time too
        ),
        min_size=1,
        max_size=25,
    )
)
def test_projected_ranks_equal_a_naive_sort_of_sql_scores_ties_included(
    boards: Container, sends: list[tuple[str, float, float]]
) -> None:
    for actor, points, hours_ago in sends:
        send(boards, actor, points, hours_ago)
    settle(boards)
    week = boards.leaderboards.window("default", "weekly", None).key
    assert projected(boards, "xp", "all") == sql_order(boards, "xp", "all")
    assert projected(boards, "weekly", week) == sql_order(boards, "weekly", week)
    assert projected(boards, "active", "all") == sql_order(boards, "active", "all", 20_000)
    assert boards.leaderboards.reconcile().drift == 0


def test_ties_go_to_whoever_reached_the_score_first(boards: Container) -> None:
    send(boards, "late", 10, hours_ago=1)
    send(boards, "early", 10, hours_ago=2)
    send(boards, "most", 11, hours_ago=0.5)
    settle(boards)
    order = [s for s, _ in projected(boards, "xp", "all")]
    assert order == [player_id(boards, a) for a in ("most", "early", "late")]


def test_a_retraction_takes_its_contribution_back_and_the_tie_break_time_with_it(
    boards: Container,
) -> None:
    send(boards, "ann", 5, hours_ago=3)
    late = send(boards, "ann", 5, hours_ago=1)
    send(boards, "bob", 5, hours_ago=2)
    settle(boards)
    assert [u for _, u in projected(boards, "xp", "all")] == [100_000, 50_000]
    boards.scoring.retract("default", late, "mistake", "admin")
    boards.leaderboards.sync()
    # ann is back at 5, reached 3 hours ago: ahead of bob, who reached 5 two hours ago.
    assert projected(boards, "xp", "all") == [
        (player_id(boards, "ann"), 50_000),
        (player_id(boards, "bob"), 50_000),
    ]
    assert projected(boards, "xp", "all") == sql_order(boards, "xp", "all")


def test_a_min_score_lists_a_subject_only_from_that_score(boards: Container) -> None:
    send(boards, "ann", 1)
    settle(boards)
    assert projected(boards, "active", "all") == []
    send(boards, "ann", 1)
    settle(boards)
    assert projected(boards, "active", "all") == [(player_id(boards, "ann"), 20_000)]


def test_merged_players_rank_as_one(boards: Container) -> None:
    send(boards, "ann", 3)
    send(boards, "ann-alt", 4)
    send(boards, "bob", 5)
    settle(boards)
    survivor = player_id(boards, "ann")
    boards.players.merge("default", "lms:ann", "lms:ann-alt")
    boards.leaderboards.sync()
    assert projected(boards, "xp", "all") == [
        (survivor, 70_000),
        (player_id(boards, "bob"), 50_000),
    ]
    assert boards.leaderboards.reconcile().drift == 0


def test_a_manual_adjustment_moves_the_currency_boards(boards: Container) -> None:
    send(boards, "ann", 3)
    settle(boards)
    boards.progress.adjust("default", "lms:ann", "xp", 2.5, "bonus", "admin")
    boards.leaderboards.sync()
    assert projected(boards, "xp", "all") == [(player_id(boards, "ann"), 55_000)]
    assert projected(boards, "active", "all") == []  # a count board counts events only


def test_a_sync_follows_changes_too_many_for_one_read(
    boards: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL reads a sync's changes in one statement, and streams them through a
    server-side cursor when they are more than that read takes: both ways follow SQL."""
    monkeypatch.setattr(sql_boards, "_CHANGED_FEW", 3)
    for actor, points in (("ann", 3), ("bob", 4), ("cy", 5), ("dee", 6)):
        send(boards, actor, points)
    settle(boards)  # 4 subjects on 3 boards: more than 3 changes
    send(boards, "ann", 4)
    settle(boards)  # 3 changes: one read
    week = boards.leaderboards.window("default", "weekly", None).key
    assert projected(boards, "xp", "all") == sql_order(boards, "xp", "all")
    assert projected(boards, "weekly", week) == sql_order(boards, "weekly", week)
    assert projected(boards, "active", "all") == sql_order(boards, "active", "all", 20_000)
    with boards.db.read() as uow:
        assert boards.leaderboards.projection.cursor() == uow.boards.last_seq()


@pytest.mark.parametrize("few", [2, 3, 4, 100])
def test_changes_are_read_once_each_in_number_order_however_many(
    boards: Container, monkeypatch: pytest.MonkeyPatch, few: int
) -> None:
    """Four transactions of three changes each (one a board), read past a limit that falls
    inside a transaction's changes, at its end, or above them all (PostgreSQL)."""
    monkeypatch.setattr(sql_boards, "_CHANGED_FEW", few)
    for actor in ("ann", "bob", "cy", "dee"):
        send(boards, actor, 3)
        assert boards.scoring.score_pending().events == 1  # a transaction each
    with boards.db.read() as uow:
        read = list(uow.boards.changed_since(0))
        stored = [
            sql_boards._row(r)
            for r in uow.conn.execute(tables.board_scores.select().order_by("seq"))
        ]
    assert [r.seq for r in read] == sorted(r.seq for r in read)
    assert len({r.seq for r in read}) == 4
    assert sorted(read) == sorted(stored)
    assert len(read) == 12


def test_a_sync_finds_what_changed_by_its_number_without_reading_the_whole_table(
    boards: Container,
) -> None:
    """What changed since the projection's cursor is one player's rows; PostgreSQL finds them
    by the change number's index. Left to itself, its planner reads a table this small (or one
    it has no statistics of) whole and sorts it: under load that is mostly dead rows, since
    every change of a score leaves its old row behind."""
    for actor in ("ann", "bob", "cy", "dee"):
        send(boards, actor, 3)
    settle(boards)
    send(boards, "ann", 1)
    assert boards.scoring.score_pending().events == 1
    with boards.db.read() as uow:
        read = list(uow.boards.changed_since(boards.leaderboards.projection.cursor()))
        assert {r.subject for r in read} == {player_id(boards, "ann")}
        assert len(read) == 3  # on each of the three boards
        if not boards.db.is_sqlite:
            seq_scans, index_scans = uow.conn.exec_driver_sql(
                "SELECT seq_scan, idx_scan FROM pg_stat_xact_user_tables "
                "WHERE relname = 'board_scores'"
            ).one()
            assert seq_scans == 0
            assert index_scans >= 1


def test_a_projection_ahead_of_sql_is_rebuilt_from_it(boards: Container) -> None:
    """SQL rebuilt or reset (its change numbers start over): the next sync finds no change
    after the projection's cursor, and rebuilds the projection from SQL."""
    for actor, points in (("ann", 3), ("bob", 4)):
        send(boards, actor, points)
    settle(boards)
    projection = boards.leaderboards.projection
    projection.apply([Change(BoardKey("default", "xp", "all"), "plr_ghost", 1, 0)], 10_000)
    assert boards.leaderboards.sync() == 0
    with boards.db.read() as uow:
        assert projection.cursor() == uow.boards.last_seq() < 10_000
    assert projected(boards, "xp", "all") == sql_order(boards, "xp", "all")


def test_reconcile_finds_and_repairs_drift_then_reports_none(boards: Container) -> None:
    for actor, points in (("ann", 3), ("bob", 4), ("cy", 5)):
        send(boards, actor, points)
    settle(boards)
    key = BoardKey("default", "xp", "all")
    p = boards.leaderboards.projection
    cursor = p.cursor()
    p.apply(
        [
            Change(key, player_id(boards, "ann"), 999, 0),  # wrong
            Change(key, player_id(boards, "bob"), 0, 0, listed=False),  # missing
            Change(key, "plr_ghost", 1, 0),  # extra
        ],
        cursor,
    )
    report = boards.leaderboards.reconcile()
    assert (report.missing, report.extra, report.wrong) == (1, 1, 1)
    assert report.repaired == ["default/xp/all"]
    assert projected(boards, "xp", "all") == sql_order(boards, "xp", "all")
    assert boards.leaderboards.reconcile().drift == 0


def test_a_closed_window_leaves_the_projection_and_is_answered_from_sql(
    boards: Container, clock: FakeClock
) -> None:
    send(boards, "ann", 3)
    send(boards, "bob", 4)
    settle(boards)
    week = boards.leaderboards.window("default", "weekly", None)
    assert week.end is not None
    clock.now = week.end + timedelta(days=1, seconds=1)  # past the default grace of a day
    report = boards.leaderboards.reconcile()
    # The week before was still held (inside its grace at the start); both have closed now.
    assert report.retired == ["default/weekly/2026-05-25", f"default/weekly/{week.key}"]
    closed = boards.leaderboards.window("default", "weekly", "previous")
    assert (closed.key, closed.state) == (week.key, "closed")
    entries, total = boards.leaderboards.standings("default", closed, 0, 10)
    assert total == 2
    assert [(e.rank, e.subject, e.score) for e in entries] == [
        (1, player_id(boards, "bob"), 4.0),
        (2, player_id(boards, "ann"), 3.0),
    ]
    (mine,) = boards.leaderboards.around("default", closed, player_id(boards, "ann"), 0)
    assert (mine.rank, mine.score) == (2, 3.0)


@pytest.mark.parametrize("read", ["page", "rank"])
def test_a_closed_windows_reads_can_use_the_rank_index(boards: Container, read: str) -> None:
    """The index leaves all-time windows out; a planner uses it only for a query that says
    so (a parameter's value does not tell a prepared statement's plan)."""
    send(boards, "ann", 3)
    settle(boards)
    db = boards.db
    assert isinstance(db, SqlDatabase)
    seen: list[tuple[str, Any]] = []

    def capture(*args: Any) -> None:
        seen.append((args[2], args[3]))  # the statement and its parameters

    week = boards.leaderboards.window("default", "weekly", None).key
    with db.read() as uow:
        event.listen(uow.conn, "before_cursor_execute", capture)
        if read == "page":
            assert len(uow.boards.ranked("default", "weekly", week, None, 0, 10)) == 1
        else:  # the count of those ahead, once the subject's row is found
            ann = player_id(boards, "ann")
            assert uow.boards.rank_of("default", "weekly", week, ann, None) is not None
        event.remove(uow.conn, "before_cursor_execute", capture)
        statement, parameters = seen[-1]
        if db.is_sqlite:
            plan = uow.conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters).all()
        else:
            plan = _generic_plan(uow.conn.connection.driver_connection, statement, parameters)
        assert "ix_board_scores_ranked" in str(plan)


def _generic_plan(raw: Any, statement: str, parameters: dict[str, Any]) -> list[Any]:
    """PostgreSQL's plan of a statement when prepared and planned for any parameters, as a
    statement run again and again on one connection comes to be (with the parameters'
    values known, the planner would see that a window's key is not 'all' by itself)."""
    names = list(dict.fromkeys(re.findall(r"%\((\w+)\)s", statement)))
    numbered = re.sub(r"%\((\w+)\)s", lambda m: f"${names.index(m.group(1)) + 1}", statement)
    raw.execute(f"PREPARE ranked AS {numbered}")
    # Tables this small are read whole and sorted unless that is ruled out.
    for setting in (
        "plan_cache_mode = force_generic_plan",
        "enable_seqscan = off",
        "enable_sort = off",
    ):
        raw.execute(f"SET LOCAL {setting}")
    values = psql.SQL(", ").join(psql.Literal(parameters[name]) for name in names)
    plan = raw.execute(psql.SQL("EXPLAIN EXECUTE ranked({})").format(values)).fetchall()
    raw.execute("DEALLOCATE ranked")
    return list(plan)


def test_a_restarted_process_serves_the_same_standings(
    boards: Container, settings: Settings, clock: FakeClock, projection: Projection
) -> None:
    for actor, points in (("ann", 3), ("bob", 4)):
        send(boards, actor, points)
    settle(boards)
    before = projected(boards, "xp", "all")
    again = build(settings, clock=clock)
    try:
        # The memory projection starts empty and is rebuilt; a Redis one catches up.
        again.leaderboards.projection = (
            MemoryProjection() if isinstance(projection, MemoryProjection) else projection
        )
        again.leaderboards.start()
        assert projected(again, "xp", "all") == before
    finally:
        again.close()


def test_a_backfill_recomputes_the_boards_under_the_new_version_and_keeps_adjustments(
    boards: Container,
) -> None:
    send(boards, "ann", 3)
    send(boards, "bob", 4)
    settle(boards)
    boards.progress.adjust("default", "lms:ann", "xp", 2, "bonus", "admin")
    (record,) = boards.rulesets.all_of("default")
    doubled = RULES.replace('"event.properties.points"', '"event.properties.points * 2"')
    boards.rulesets.save_draft("default", record.record.id, doubled)
    version = boards.rulesets.publish("default", record.record.id, "test")
    report = boards.backfill.backfill("default", version, "admin")
    assert report.applied["leaderboard_entries"] == 2 * 3  # two events on three boards
    boards.leaderboards.refresh("default")
    # The events pay double under the new version; the adjustment of 2 stays as it was, and
    # made ann's 8 later than bob's.
    assert projected(boards, "xp", "all") == [
        (player_id(boards, "bob"), 80_000),
        (player_id(boards, "ann"), 80_000),
    ]
    assert projected(boards, "xp", "all") == sql_order(boards, "xp", "all")
    assert boards.leaderboards.reconcile().drift == 0


def test_closed_windows_are_retired_without_waiting_for_reconciliation(
    boards: Container, clock: FakeClock
) -> None:
    send(boards, "ann", 3)
    settle(boards)
    week = boards.leaderboards.window("default", "weekly", None)
    assert week.end is not None
    assert boards.leaderboards.retire() == []  # nothing has closed yet
    clock.now = week.end + timedelta(days=1)  # the grace ends: the week is final
    assert f"default/weekly/{week.key}" in boards.leaderboards.retire()
    keys = boards.leaderboards.projection.keys()
    assert BoardKey("default", "weekly", week.key) not in keys
    assert BoardKey("default", "xp", "all") in keys


def test_queries_run_inline_only_when_they_need_no_io(boards: Container) -> None:
    send(boards, "ann", 3)
    settle(boards)
    service = boards.leaderboards
    service.forget_live("default")  # the live rule set must be read again: that is I/O
    assert service.try_inline(lambda: service.boards("default")) == (False, None)
    assert [b.board.id for b in service.boards("default")] == ["xp", "weekly", "active"]
    done, found = service.try_inline(lambda: [b.board.id for b in service.boards("default")])
    # Warm now: answered inline from memory, or (Redis) always on a thread.
    assert (done, found) == (
        (True, ["xp", "weekly", "active"]) if service.in_process else (False, None)
    )
    view = service.window("default", "xp", None)
    ann = player_id(boards, "ann")
    assert service.subject_of("default", view, ann) == ann
    done, _ = service.try_inline(lambda: service.subject_of("default", view, "lms:ann"))
    assert not done  # an identity reference is looked up in SQL


def test_board_score_rows_are_read_by_position() -> None:
    """``SqlBoards`` makes a ``BoardScoreRow`` of a whole ``board_scores`` row by position."""
    from plaudit.store.ports import BoardScoreRow

    assert tuple(tables.board_scores.c.keys()) == BoardScoreRow._fields
