"""The scoring step's bulk writes, on each store: rows whose key is already there (a
redelivered event's) are left as they were, whichever way the store writes them (on
PostgreSQL straight into the table, and when a key is taken, by way of a staging table)."""

from __future__ import annotations

import pytest

from plaudit.bootstrap import Container
from plaudit.store.ports import BoardEntryRow, LedgerRow
from plaudit.store.sql import postgres


def _entry(container: Container, event: str, amount: float) -> LedgerRow:
    return LedgerRow("plr_ann", "xp", amount, "rule", "r1", container.clock(), event_id=event)


def test_ledger_entries_already_there_are_left_and_the_others_added(container: Container) -> None:
    tenant, now = container.default_tenant, container.clock()
    with container.db.write() as uow:
        added = uow.scoring.append_ledger(tenant, [_entry(container, "evt_1", 1)], now)
        uow.commit()
    assert added == 1
    with container.db.write() as uow:
        again = [_entry(container, "evt_1", 5), _entry(container, "evt_2", 2)]
        added = uow.scoring.append_ledger(tenant, again, now)
        # The transaction goes on after the conflict: a later write of it lands.
        added += uow.scoring.append_ledger(tenant, [_entry(container, "evt_3", 3)], now)
        uow.commit()
    assert added == 2
    with container.db.read() as uow:
        entries = [
            r for e in ("evt_1", "evt_2", "evt_3") for r in uow.scoring.event_ledger(tenant, e)
        ]
    assert [(r.event_id, r.amount) for r in entries] == [("evt_1", 1), ("evt_2", 2), ("evt_3", 3)]


def test_board_entries_already_there_are_left_and_the_others_added(container: Container) -> None:
    tenant = container.default_tenant

    def entry(ref: str, units: int) -> BoardEntryRow:
        return BoardEntryRow(ref, "weekly", "all", "plr_ann", units, 1)

    with container.db.write() as uow:
        uow.boards.add_entries(tenant, [entry("evt_1", 10)])
        uow.commit()
    with container.db.write() as uow:
        uow.boards.add_entries(tenant, [entry("evt_1", 99), entry("evt_2", 20)])
        uow.commit()
    with container.db.read() as uow:
        kept = {e.ref: e.units for e in uow.boards.remove_entries(tenant, "evt_1")}
        kept.update((e.ref, e.units) for e in uow.boards.remove_entries(tenant, "evt_2"))
    assert kept == {"evt_1": 10, "evt_2": 20}


def test_upserts_by_way_of_staging_keep_the_staging_table_small(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many upserts leave each player's latest state; on PostgreSQL, the staging table they
    pass through is truncated as its dead rows pile up (autovacuum never visits temporary
    tables), so that its file stays small however long the connection lives."""
    monkeypatch.setattr(postgres, "_TRUNCATE_AFTER", 500)
    tenant, now = container.default_tenant, container.clock()
    players = [f"plr_{n:03d}" for n in range(100)]
    for round_ in range(40):  # 4,000 rows staged: eight times the threshold
        with container.db.write() as uow:
            states = {pid: f'{{"round": {round_}, "pad": "{"x" * 100}"}}' for pid in players}
            uow.scoring.save_encoded_states(tenant, states, now, token=round_)
            uow.commit()
    with container.db.read() as uow:
        kept = uow.scoring.states(tenant, players)
        assert {pid: state["round"] for pid, state in kept.items()} == dict.fromkeys(players, 39)
        assert uow.scoring.state_versions(tenant, players) == dict.fromkeys(players, 39)
        if container.db.is_sqlite:
            return  # SQLite upserts in place: no staging
        (pages,) = uow.conn.exec_driver_sql(
            "SELECT coalesce(sum(pg_relation_size(oid)), 0) / current_setting('block_size')::int"
            " FROM pg_class WHERE relname = 'staged_player_states' AND relpersistence = 't'"
        ).one()
    # At most the threshold's rows and one more write's (~40 rows a page): 12 pages here,
    # 94 with every row staged still in the file.
    assert 0 < pages <= 25


def test_a_conflict_in_a_later_bulk_write_keeps_the_earlier_writes_of_the_transaction(
    container: Container,
) -> None:
    """On PostgreSQL each straight COPY goes in under a savepoint of the same name, left for
    the commit to end: a conflict goes back to the latest one only."""
    tenant, now = container.default_tenant, container.clock()
    with container.db.write() as uow:
        uow.scoring.append_ledger(tenant, [_entry(container, "evt_1", 1)], now)
        uow.commit()
    with container.db.write() as uow:
        uow.boards.add_entries(tenant, [BoardEntryRow("evt_2", "weekly", "all", "plr_ann", 20, 1)])
        uow.scoring.append_ledger(tenant, [_entry(container, "evt_2", 2)], now)
        added = uow.scoring.append_ledger(
            tenant, [_entry(container, "evt_1", 9), _entry(container, "evt_3", 3)], now
        )
        uow.commit()
    assert added == 1
    with container.db.read() as uow:
        amounts = {
            r.event_id: r.amount
            for e in ("evt_1", "evt_2", "evt_3")
            for r in uow.scoring.event_ledger(tenant, e)
        }
        entries = {e.ref: e.units for e in uow.boards.remove_entries(tenant, "evt_2")}
    assert amounts == {"evt_1": 1, "evt_2": 2, "evt_3": 3}
    assert entries == {"evt_2": 20}
