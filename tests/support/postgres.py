"""PostgreSQL for tests: a database of this test process's own, migrated once and emptied
before each test, dropped at the end, so that concurrent runs and xdist workers never meet."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from uuid import uuid4

from sqlalchemy import Engine, create_engine, make_url, text

from plaudit.store import migrate
from plaudit.store.sql.database import engine_url
from plaudit.store.sql.tables import metadata

POSTGRES_URL = os.environ.get(
    "PLAUDIT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def _with_database(name: str) -> str:
    return make_url(engine_url(POSTGRES_URL)).set(database=name).render_as_string(False)


@contextmanager
def scratch_database(label: str = "t") -> Iterator[str]:
    """A new, migrated database; its URL (postgresql+psycopg://…). Dropped afterwards."""
    name = f"plaudit_{label}_{uuid4().hex[:12]}"
    admin = create_engine(engine_url(POSTGRES_URL), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        url = _with_database(name)
        engine = create_engine(url)
        try:
            migrate.upgrade(engine)
        finally:
            engine.dispose()
        yield url
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


_TABLES = ", ".join(f'"{table.name}"' for table in metadata.sorted_tables)


def empty(engine: Engine) -> None:
    """Every table emptied and every sequence restarted: a fresh database, without the cost
    of creating and migrating one per test. The audit log's append-only triggers refuse
    DELETE and UPDATE, not TRUNCATE."""
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {_TABLES} RESTART IDENTITY CASCADE"))
