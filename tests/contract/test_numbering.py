"""Log rows and board changes are numbered in commit order: a transaction takes the log's
lock (the tail's) before it numbers them, so that a follower reading past its cursor never
skips a row that commits later with a lower number."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

import psycopg
import pytest

from plaudit.bootstrap import Container, conninfo
from plaudit.domain.players import Player
from plaudit.store.ports import NewEventRow
from plaudit.store.sql.boards import BOARD_CHANGES, SEQ
from plaudit.store.sql.database import SqlDatabase
from plaudit.store.sql.repositories import (
    LOG_LOCK,
    TAIL_LOCK,
    counter,
    serialized_bump,
)

T = TypeVar("T")


def _number(db: SqlDatabase) -> int:
    with db.write() as uow:
        seq = serialized_bump(uow.conn, TAIL_LOCK, BOARD_CHANGES, SEQ)
        uow.commit()
    return seq


def test_a_board_change_number_waits_for_the_tails_holder_and_follows_it(
    container: Container,
) -> None:
    db = container.db
    assert isinstance(db, SqlDatabase)
    first = _number(db)
    if db.is_sqlite:  # one writer at a time: nothing to wait for
        assert _number(db) == first + 1
        return
    # The holder takes the tail lock as an outbox write does: numbering nothing itself.
    assert _waits_for_the_holder(container, TAIL_LOCK, lambda: _number(db)) == first + 1
    with db.read() as uow:
        assert counter(uow.conn, SEQ) == first + 1


def _waits_for_the_holder(container: Container, lock: int, write: Callable[[], T]) -> T:
    """``write`` (a transaction of its own) blocks while another holds ``lock``, and
    completes once it commits; what it returned. The holder's connection is not the
    pool's: ``write`` gets the connection the test's earlier transactions used."""
    done: list[T] = []
    with psycopg.connect(conninfo(container.settings)) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
        other = threading.Thread(target=lambda: done.append(write()))
        other.start()
        other.join(0.5)
        assert other.is_alive()  # waiting for the lock
        assert not done
        holder.commit()
    other.join(10)
    assert len(done) == 1
    return done[0]


@pytest.mark.parametrize("case", ["new", "with-a-duplicate", "after-a-retry"])
def test_a_log_append_waits_for_the_logs_holder(container: Container, case: str) -> None:
    """Straight into the log (the lock goes in one message with the COPY's savepoint);
    through the staging table when a key is logged already (the lock stays held); and on a
    connection whose last append met a logged key, which stages first, then locks."""
    db = container.db
    assert isinstance(db, SqlDatabase)
    tenant, now = container.default_tenant, container.clock()
    at = now - timedelta(hours=1)

    def row(key: str) -> NewEventRow:
        return NewEventRow(f"evt_{key}", "lms", key, "task.done", "plr_ann", "ann", at, {}, None)

    def append(*keys: str) -> set[tuple[str, str]]:
        with db.write() as uow:
            added = uow.events.append(tenant, [row(key) for key in keys], now)
            uow.commit()
        return added

    with db.write() as uow:
        uow.players.add_many([Player("plr_ann", tenant, None, None, None, {}, now, now)])
        uow.commit()
    append("a")
    if case == "after-a-retry":
        append("a")  # the pool's one idle connection: its next appends stage first
    keys = ("a", "b") if case == "with-a-duplicate" else ("b",)
    if db.is_sqlite:  # one writer at a time: nothing to wait for
        assert append(*keys) == {("lms", "b")}
        return
    _waits_for_the_holder(container, LOG_LOCK, lambda: append(*keys))
    with db.read() as uow:
        assert [e.key for e in uow.events.after(0, 10)] == ["a", "b"]
