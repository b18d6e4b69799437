"""The log's append, on each store: several appends in one transaction (a group commit of
several requests) each write only their own rows, numbered one after another."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from plaudit.bootstrap import Container
from plaudit.domain.events import IncomingEvent, Outcome
from plaudit.domain.players import Player
from plaudit.services.ingest import _Write
from plaudit.store.ports import NewEventRow


def rows(container: Container, player_id: str, keys: list[str]) -> list[NewEventRow]:
    at = container.clock() - timedelta(hours=1)
    return [
        NewEventRow(f"evt_{key}", "lms", key, "task.done", player_id, "ann", at, {}, None)
        for key in keys
    ]


def test_appends_in_one_transaction_number_their_own_rows_only(container: Container) -> None:
    tenant, now = container.default_tenant, container.clock()
    with container.db.write() as uow:
        uow.players.add_many([Player("plr_ann", tenant, None, None, None, {}, now, now)])
        uow.commit()
    with container.db.write() as uow:
        first = uow.events.append(tenant, rows(container, "plr_ann", ["a", "b", "c"]), now)
        # The second request repeats "b" (a duplicate) and brings two new events.
        second = uow.events.append(tenant, rows(container, "plr_ann", ["d", "b", "e"]), now)
        third = uow.events.append(tenant, rows(container, "plr_ann", ["f"]), now)
        uow.commit()
    assert first == {("lms", "a"), ("lms", "b"), ("lms", "c")}
    assert second == {("lms", "d"), ("lms", "e")}
    assert third == {("lms", "f")}
    with container.db.read() as uow:
        logged = uow.events.after(0, 100)
    assert [e.key for e in logged] == ["a", "b", "c", "d", "e", "f"]
    # Each append tried its own rows only: 7 rows in all, so at most 7 numbers, and on
    # PostgreSQL 3 more: the second append's COPY straight into the log fails on "b" after
    # numbering its 3 rows, and the staging way numbers them again (earlier appends' rows
    # tried again would take more).
    positions = [e.position for e in logged]
    assert positions == sorted(positions)
    assert positions[-1] - positions[0] <= (6 if container.settings.database_url is None else 9)


def test_append_many_appends_requests_in_order_each_with_its_time_received(
    container: Container,
) -> None:
    tenant, now = container.default_tenant, container.clock()
    with container.db.write() as uow:
        uow.players.add_many([Player("plr_ann", tenant, None, None, None, {}, now, now)])
        uow.commit()
    later = now + timedelta(seconds=1)
    with container.db.write() as uow:
        uow.events.append(tenant, rows(container, "plr_ann", ["old"]), now)
        inserted = uow.events.append_many(
            tenant,
            [
                (rows(container, "plr_ann", ["a", "old", "b"]), now),
                ([], now),
                (rows(container, "plr_ann", ["c"]), later),
            ],
        )
        uow.commit()
    assert inserted == {("lms", "a"), ("lms", "b"), ("lms", "c")}
    with container.db.read() as uow:
        logged = uow.events.after(0, 100)
    assert [e.key for e in logged] == ["old", "a", "b", "c"]
    assert [e.received_at for e in logged] == [now, now, now, later]


def group(container: Container, *requests: list[str]) -> list[_Write]:
    at = container.clock() - timedelta(hours=1)
    return [
        _Write(
            container.default_tenant,
            [
                (i, IncomingEvent(key, "lms", "task.done", f"actor-{key}", at, {}))
                for i, key in enumerate(keys)
            ],
            container.clock(),
            [None] * len(keys),
        )
        for keys in requests
    ]


def outcomes(writes: list[_Write]) -> list[list[tuple[str | None, Outcome]]]:
    return [[(r.key, r.outcome) for r in w.results if r is not None] for w in writes]


def test_a_group_commit_appends_its_requests_together_and_reports_each(
    container: Container,
) -> None:
    container.ingest.ingest(container.default_tenant, [group(container, ["seen"])[0].unique[0][1]])
    writes = group(container, ["a", "b"], ["seen", "c"], ["d"])

    container.ingest._commit(writes)

    assert outcomes(writes) == [
        [("a", Outcome.ACCEPTED), ("b", Outcome.ACCEPTED)],
        [("seen", Outcome.DUPLICATE), ("c", Outcome.ACCEPTED)],
        [("d", Outcome.ACCEPTED)],
    ]
    assert [[r.key for r in w.placed] for w in writes] == [["a", "b"], ["c"], ["d"]]
    with container.db.read() as uow:
        logged = uow.events.after(0, 100)
    assert [e.key for e in logged] == ["seen", "a", "b", "c", "d"]
    players = {e.key: e.player_id for e in logged}
    assert len(set(players.values())) == 5  # one new player per actor, made once


def test_requests_of_a_group_sharing_an_event_learn_which_one_stored_it(
    container: Container,
) -> None:
    writes = group(container, ["x", "y"], ["y", "z"])

    container.ingest._commit(writes)

    assert outcomes(writes) == [
        [("x", Outcome.ACCEPTED), ("y", Outcome.ACCEPTED)],
        [("y", Outcome.DUPLICATE), ("z", Outcome.ACCEPTED)],
    ]
    first_y = writes[0].results[1]
    second_y = writes[1].results[0]
    assert first_y is not None
    assert second_y is not None
    assert second_y.event_id == first_y.event_id


def test_appends_work_after_a_transaction_that_first_staged_rows_rolled_back(
    container: Container,
) -> None:
    """The staging tables are made by the first transaction of a connection that needs them:
    when it rolls back, so does their creation, and the next one makes them again."""
    tenant, now = container.default_tenant, container.clock()
    with container.db.write() as uow:
        uow.players.add_many([Player("plr_ann", tenant, None, None, None, {}, now, now)])
        uow.commit()
    try:
        with container.db.write() as uow:
            uow.events.append(tenant, rows(container, "plr_ann", ["a"]), now)
            raise RuntimeError("the request failed after the append")
    except RuntimeError:
        pass
    with container.db.write() as uow:  # the same pooled connection
        assert uow.events.append(tenant, rows(container, "plr_ann", ["b"]), now) == {("lms", "b")}
        uow.commit()
    with container.db.read() as uow:
        assert [e.key for e in uow.events.after(0, 100)] == ["b"]


def _players_of_the_log(container: Container) -> tuple[dict[str, str], set[str]]:
    """Each logged event's player (by key), and which of those players exist."""
    with container.db.read() as uow:
        logged = uow.events.after(0, 100)
        found = uow.players.get_many(container.default_tenant, {e.player_id for e in logged})
    return {e.key: e.player_id for e in logged}, set(found)


def test_a_transaction_that_rolls_back_leaves_no_remembered_identity(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second request shares "y" with the first: appended after it in the same
    transaction, it reads back the link the first made for actor-y. That transaction fails;
    the requests, tried again one by one, must not use the player it made."""
    writes = group(container, ["x", "y"], ["y", "z"])
    real = container.ingest._track_sequences
    calls: list[int] = []

    def failing_once(*args: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("the disk is full")
        return real(*args)

    monkeypatch.setattr(container.ingest, "_track_sequences", failing_once)
    container.ingest._commit(writes)

    players, existing = _players_of_the_log(container)
    assert sorted(players) == ["x", "y", "z"]
    assert set(players.values()) == existing


def test_after_a_merge_an_identity_s_events_go_to_the_survivor(container: Container) -> None:
    tenant = container.default_tenant
    at = container.clock() - timedelta(hours=1)

    def send(key: str, actor: str) -> None:
        container.ingest.ingest(tenant, [IncomingEvent(key, "lms", "t", actor, at)])

    send("1", "ann")
    send("2", "ann2")
    send("3", "ann2")  # ann2 was read back: remembered with its player
    survivor = container.players.merge(tenant, "lms:ann", "lms:ann2").player.id
    send("4", "ann2")
    players, _ = _players_of_the_log(container)
    assert players == {"1": survivor, "2": survivor, "3": survivor, "4": survivor}


@pytest.mark.parametrize(
    "wanted",
    [
        ["a", "b,c", "d e"],
        ["x\x1fy", "a"],  # the separator PostgreSQL's lookup joins strings with
        [""],
        ["", "a"],
        [f"k{n}" for n in range(1500)],
    ],
)
def test_lookups_among_many_strings_find_exactly_those(
    container: Container, wanted: list[str]
) -> None:
    from sqlalchemy import select

    from plaudit.store.sql import tables
    from plaudit.store.sql.database import SqlUnitOfWork
    from plaudit.store.sql.repositories import _among, fetch_among

    tenant, now = container.default_tenant, container.clock()
    keys = sorted({*wanted, "a", "other", "x", "y"})
    with container.db.write() as uow:
        uow.players.add_many([Player("plr_ann", tenant, None, None, None, {}, now, now)])
        uow.events.append(tenant, rows(container, "plr_ann", keys), now)
        uow.commit()
    with container.db.read() as uow:
        assert isinstance(uow, SqlUnitOfWork)
        c = tables.events.c
        found = uow.conn.execute(select(c.key).where(_among(uow.conn, c.key, wanted))).scalars()
        assert sorted(found) == sorted(set(wanted))
        if uow.conn.dialect.name == "postgresql":  # the same lookup straight on psycopg
            direct = fetch_among(uow.conn, "SELECT key FROM events WHERE key = ", (), wanted)
            assert sorted(key for (key,) in direct) == sorted(set(wanted))


def test_logged_times_come_back_in_utc(container: Container) -> None:
    from datetime import UTC, timezone

    tenant, now = container.default_tenant, container.clock()
    with container.db.write() as uow:
        uow.players.add_many([Player("plr_ann", tenant, None, None, None, {}, now, now)])
        paris = timezone(timedelta(hours=1))
        row = rows(container, "plr_ann", ["a"])[0]
        uow.events.append(
            tenant, [row._replace(occurred_at=row.occurred_at.astimezone(paris))], now
        )
        uow.commit()
    with container.db.read() as uow:
        (event,) = uow.events.after(0, 10)
        (scored,) = uow.events.in_partitions({event.partition: 0}, 10)
    for read in (event, scored):
        assert read.occurred_at == row.occurred_at
        assert read.occurred_at.tzinfo is UTC
        assert read.received_at.tzinfo is UTC


def test_appends_after_a_duplicate_keep_reporting_exactly_what_got_in(
    container: Container,
) -> None:
    """On PostgreSQL a duplicate sends an append (and the connection's next 32) through the
    staging table instead of straight in: both ways, each append reports exactly its new
    rows, in the order sent."""
    tenant, now = container.default_tenant, container.clock()
    with container.db.write() as uow:
        uow.players.add_many([Player("plr_ann", tenant, None, None, None, {}, now, now)])
        uow.commit()
    expected: list[str] = []
    for n in range(45):
        keys = [f"n{n}-a", f"n{n}-b"] + ([f"n{n - 1}-a"] if n % 10 == 1 else [])
        with container.db.write() as uow:
            inserted = uow.events.append(tenant, rows(container, "plr_ann", keys), now)
            uow.commit()
        assert inserted == {("lms", f"n{n}-a"), ("lms", f"n{n}-b")}
        expected += [f"n{n}-a", f"n{n}-b"]
    with container.db.read() as uow:
        assert [e.key for e in uow.events.after(0, 1000)] == expected
