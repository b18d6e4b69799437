from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from plaudit.store import migrate
from tests.support.schema import declared_for


def test_the_migrations_build_exactly_the_declared_schema(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    try:
        migrate.upgrade(engine)
        with engine.connect() as conn:
            context = MigrationContext.configure(conn)
            assert compare_metadata(context, declared_for("sqlite")) == []
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


def test_sqlite_indexes_only_the_ledger_entries_without_an_event_by_player(
    tmp_path: Path,
) -> None:
    from alembic import command

    engine = create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    cfg = migrate._config()

    def ledger_indexes() -> set[str]:
        return {str(i["name"]) for i in inspect(conn).get_indexes("ledger")}

    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            assert "ix_ledger_without_event" in ledger_indexes()
            assert "ix_ledger_tenant_id_player_id_id" not in ledger_indexes()
            command.downgrade(cfg, "8d9945bd992d")  # the revision before
            assert "ix_ledger_without_event" not in ledger_indexes()
            assert "ix_ledger_tenant_id_player_id_id" in ledger_indexes()
    finally:
        engine.dispose()
