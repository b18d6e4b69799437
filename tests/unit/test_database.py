"""The SQLite units of work: durable commits and reference checks by default, relaxed or
unchecked ones only where asked. PostgreSQL's pool: a connection left idle is tried before
use, one used a moment ago is not; no statement is prepared."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from plaudit.store.sql import database
from plaudit.store.sql.database import create_database
from plaudit.store.sql.postgres import fetch
from tests.support.postgres import POSTGRES_URL

FULL, NORMAL = 2, 1


def test_a_relaxed_write_leaves_every_pooled_connection_durable_again(tmp_path: Path) -> None:
    db = create_database(f"sqlite:///{tmp_path / 'p.db'}")
    try:
        with db.write(durable=False) as uow:
            level = uow.conn.execute(text("PRAGMA synchronous")).scalar()
            assert level == NORMAL
            uow.commit()
        with db.write(durable=False) as uow:
            pass  # rolled back: the level comes back all the same
        for _ in range(3):  # the pool hands the same connections out again
            with db.write() as uow:
                level = uow.conn.execute(text("PRAGMA synchronous")).scalar()
                assert level == FULL
    finally:
        db.close()


def test_an_unchecked_write_leaves_every_pooled_connection_checking_references_again(
    tmp_path: Path,
) -> None:
    db = create_database(f"sqlite:///{tmp_path / 'p.db'}")
    try:
        with db.write() as uow:
            uow.conn.execute(text("CREATE TABLE parent (id TEXT PRIMARY KEY)"))
            uow.conn.execute(text("CREATE TABLE child (parent_id TEXT REFERENCES parent(id))"))
            uow.commit()
        with db.write(foreign_keys=False) as uow:
            assert uow.conn.execute(text("PRAGMA foreign_keys")).scalar() == 0
            uow.conn.execute(text("INSERT INTO child VALUES ('nobody')"))  # not checked here
            uow.conn.execute(text("DELETE FROM child"))
            uow.commit()
        with db.write(foreign_keys=False) as uow:
            pass  # rolled back: the checks come back all the same
        for _ in range(3):  # the pool hands the same connections out again
            with db.write() as uow:
                assert uow.conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
                with pytest.raises(IntegrityError, match="FOREIGN KEY"):
                    uow.conn.execute(text("INSERT INTO child VALUES ('nobody')"))
    finally:
        db.close()


def _backend(db: database.SqlDatabase) -> int:
    with db.read() as uow:
        return int(uow.conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


@pytest.mark.postgres
def test_a_connection_left_idle_is_tried_and_replaced_if_its_session_ended(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server restart ends every session: the pool's idle connection is found dead before
    a transaction uses it, and replaced."""
    db = create_database(postgres_url, pool_size=1)
    try:
        first = _backend(db)
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (first,))
            for _ in range(100):
                if not admin.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (first,)
                ).fetchone():
                    break
                time.sleep(0.05)
        monkeypatch.setattr(database, "PING_IDLE", 0.0)  # idle long enough to be tried
        assert _backend(db) != first
    finally:
        db.close()


@pytest.mark.postgres
def test_a_connection_used_a_moment_ago_is_handed_out_untried(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Trying every connection was a round trip more for every transaction."""
    db = create_database(postgres_url, pool_size=1)
    tried: list[Any] = []
    ping = db.engine.dialect.do_ping

    def counted(dbapi_connection: Any) -> bool:
        tried.append(dbapi_connection)
        return ping(dbapi_connection)

    monkeypatch.setattr(db.engine.dialect, "do_ping", counted)
    try:
        backends = {_backend(db) for _ in range(3)}
        assert len(backends) == 1  # the same connection each time
        assert tried == []
        monkeypatch.setattr(database, "PING_IDLE", 0.0)
        assert _backend(db) in backends
        assert len(tried) == 1
    finally:
        db.close()


@pytest.mark.postgres
def test_no_statement_is_prepared_however_often_a_connection_runs_it(postgres_url: str) -> None:
    """A prepared statement may get one generic plan for any parameters: the scale-out
    scorer's read of its partitions would then read the log from its start at every step."""
    db = create_database(postgres_url, pool_size=1)
    try:
        for _ in range(3):  # committed each time: nothing makes psycopg forget
            with db.write() as uow:
                for _ in range(12):  # past psycopg's threshold (5)
                    uow.events.in_partitions({1: 0, 2: 0}, 10)
                    fetch(uow.conn, "SELECT position FROM cursors WHERE name = %s", ["x"])
                uow.commit()
        with db.write() as uow:
            prepared = fetch(uow.conn, "SELECT statement FROM pg_prepared_statements")
        assert prepared == []
    finally:
        db.close()
