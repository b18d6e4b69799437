"""The SQLite units of work: durable commits by default, relaxed ones only where asked."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

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
