"""The scoring step's bulk writes, on each store: rows whose key is already there (a
redelivered event's) are left as they were, whichever way the store writes them (on
PostgreSQL straight into the table, and when a key is taken, by way of a staging table)."""

from __future__ import annotations

from plaudit.bootstrap import Container
from plaudit.store.ports import BoardEntryRow, LedgerRow


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
