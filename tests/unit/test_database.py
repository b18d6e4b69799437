"""The SQLite units of work: durable commits and reference checks by default, relaxed or
unchecked ones only where asked."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from plaudit.store.sql.database import create_database

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
