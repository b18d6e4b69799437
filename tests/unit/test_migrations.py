from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine

from plaudit.store import migrate
from plaudit.store.sql.tables import metadata


def test_the_migrations_build_exactly_the_declared_schema(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    try:
        migrate.upgrade(engine)
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
        assert migrate.current_revision(engine) == migrate.head_revision()
        migrate.ensure_current(engine)
    finally:
        engine.dispose()


def test_a_database_behind_the_code_is_refused_in_one_line(tmp_path: Path) -> None:
    import pytest

    from plaudit.errors import ConfigurationError

    engine = create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    try:
        with pytest.raises(ConfigurationError, match="run `plaudit migrate`"):
            migrate.ensure_current(engine)
    finally:
        engine.dispose()
