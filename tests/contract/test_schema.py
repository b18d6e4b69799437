"""The schema the migrations build, on each store: exactly the declared one, with the tenant's
foreign key of the tables written with every event declared for SQLite only."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect
from sqlalchemy.exc import IntegrityError

from plaudit.bootstrap import Container
from plaudit.store import migrate
from plaudit.store.ports import LedgerRow
from plaudit.store.sql.database import SqlDatabase
from plaudit.store.sql.tables import metadata
from tests.support.postgres import scratch_database
from tests.support.schema import declared_for

# Written with every event or effect: their tenant key is declared for one dialect
# (tables.tenant_checked_on_sqlite). The migration lists them as they were when it was
# written; the tests below check its work against this.
HOT = {
    table.name
    for table in metadata.tables.values()
    for key in table.foreign_key_constraints
    if key.referred_table.name == "tenants" and getattr(key, "_ddl_if", None) is not None
}


def _engine(container: Container) -> Engine:
    assert isinstance(container.db, SqlDatabase)
    return container.db.engine


def _tenant_keyed(engine: Engine) -> set[str]:
    inspector = inspect(engine)
    return {
        table
        for table in inspector.get_table_names()
        for key in inspector.get_foreign_keys(table)
        if key["referred_table"] == "tenants"
    }


def test_the_migrations_build_exactly_the_declared_schema(container: Container) -> None:
    engine = _engine(container)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn)
        assert compare_metadata(context, declared_for(engine.dialect.name)) == []


def test_the_hot_tables_are_those_written_with_every_event() -> None:
    assert {"events", "ledger", "player_states", "outbox", "held_events"} <= HOT
    assert not {"tenants", "players", "identities", "api_keys", "rulesets"} & HOT


def test_hot_tables_check_their_tenant_on_sqlite_only(container: Container) -> None:
    engine = _engine(container)
    keyed = _tenant_keyed(engine)
    assert {"players", "identities", "api_keys"} <= keyed  # the others keep theirs
    if engine.dialect.name == "sqlite":
        assert set(HOT) <= keyed
        entry = LedgerRow("plr_ann", "xp", 1, "rule", "r1", container.clock(), event_id="e")
        with container.db.write() as uow, pytest.raises(IntegrityError):
            uow.scoring.append_ledger("no-such-tenant", [entry], container.clock())
    else:
        assert not set(HOT) & keyed


@pytest.mark.postgres
def test_postgresql_downgrade_puts_the_tenant_keys_back() -> None:
    with scratch_database("schema") as url:
        engine = create_engine(url)
        cfg = migrate._config()
        try:
            assert not set(HOT) & _tenant_keyed(engine)
            with engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.downgrade(cfg, "5e1c0a7d2b94")  # the revision before
            assert set(HOT) <= _tenant_keyed(engine)
            with engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
            assert not set(HOT) & _tenant_keyed(engine)
        finally:
            engine.dispose()


@pytest.mark.postgres
def test_postgresql_indexes_only_the_ledger_entries_without_an_event_by_player() -> None:
    with scratch_database("schema") as url:
        engine = create_engine(url)
        cfg = migrate._config()

        def ledger_indexes() -> dict[str, tuple[object, ...]]:
            found = inspect(engine).get_indexes("ledger")
            return {str(i["name"]): tuple(i["column_names"]) for i in found}

        try:
            without_event = ("tenant_id", "player_id", "id")
            assert ledger_indexes()["ix_ledger_without_event"] == without_event
            assert "ix_ledger_tenant_id_player_id_id" not in ledger_indexes()
            with engine.connect() as conn:
                where = conn.exec_driver_sql(
                    "SELECT pg_get_expr(indpred, indrelid) FROM pg_index "
                    "WHERE indexrelid = 'ix_ledger_without_event'::regclass"
                ).scalar_one()
            assert where == "(event_id IS NULL)"
            with engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.downgrade(cfg, "c3a8e5f0b214")  # the revision before
            assert "ix_ledger_without_event" not in ledger_indexes()
            assert ledger_indexes()["ix_ledger_tenant_id_player_id_id"] == without_event
            with engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
            assert "ix_ledger_tenant_id_player_id_id" not in ledger_indexes()
        finally:
            engine.dispose()


def test_the_migration_indexes_by_subject_the_entries_no_events_lead_to(
    container: Container,
) -> None:
    """Entries written before f2b8c4d6e1a3: an event's entry for the event's own player is
    found through its events; a group's and an adjustment's stay indexed by subject."""
    from datetime import UTC, datetime

    from sqlalchemy import text

    from plaudit.domain.events import IncomingEvent

    report = container.ingest.ingest(
        "default",
        [IncomingEvent("k1", "lms", "task.done", "ann", datetime(2026, 5, 1, tzinfo=UTC))],
    )
    (result,) = report.results
    engine = _engine(container)
    cfg = migrate._config()
    rows = [
        (result.event_id, "xp", result.player_id),  # the event's, for its player
        (result.event_id, "teams", "red"),  # a group's
        ("adj_1", "xp", result.player_id),  # an adjustment's
    ]
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "e5d1a7c3b920")  # the revision before
            for ref, board, subject in rows:
                conn.execute(
                    text(
                        'INSERT INTO board_entries (tenant_id, ref, board_id, "window", '
                        "subject, units, reached_us) VALUES ('default', :ref, :board, 'all', "
                        ":subject, 10000, 0)"
                    ),
                    {"ref": ref, "board": board, "subject": subject},
                )
    finally:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    with engine.connect() as conn:
        flags = conn.execute(text("SELECT ref, board_id, by_subject FROM board_entries"))
        found = {(ref, board): bool(flag) for ref, board, flag in flags}
    assert found == {
        (result.event_id, "xp"): False,
        (result.event_id, "teams"): True,
        ("adj_1", "xp"): True,
    }
