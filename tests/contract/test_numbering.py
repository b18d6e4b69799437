"""Board changes are numbered in commit order: a transaction takes the tail lock before it
takes a number, so that a follower reading past its cursor never skips a change that
commits later with a lower number."""

from __future__ import annotations

import threading

from plaudit.bootstrap import Container
from plaudit.store.sql.boards import BOARD_CHANGES, SEQ
from plaudit.store.sql.database import SqlDatabase
from plaudit.store.sql.repositories import TAIL_LOCK, counter, serialize, serialized_bump
from plaudit.store.sql.webhooks import OUTBOX_CHANGES


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
    numbered: list[int] = []
    with db.engine.connect() as holder:
        holder.begin()
        serialize(holder, TAIL_LOCK, notify=OUTBOX_CHANGES)  # as an outbox write does
        other = threading.Thread(target=lambda: numbered.append(_number(db)))
        other.start()
        other.join(0.5)
        assert other.is_alive()  # waiting for the tail lock
        assert not numbered
        holder.commit()
    other.join(10)
    assert numbered == [first + 1]
    with db.read() as uow:
        assert counter(uow.conn, SEQ) == first + 1
