"""The log's append, on each store: several appends in one transaction (a group commit of
several requests) each write only their own rows, numbered one after another."""

from __future__ import annotations

from datetime import timedelta

from plaudit.bootstrap import Container
from plaudit.domain.players import Player
from plaudit.store.ports import NewEventRow


def rows(container: Container, player_id: str, keys: list[str]) -> list[NewEventRow]:
    at = container.clock() - timedelta(hours=1)
    return [
        NewEventRow(f"evt_{key}", "lms", key, "task.done", player_id, "ann", at, {}, None)
        for key in keys
    ]


def test_appends_in_one_transaction_number_their_own_rows_only(container: Container) -> None:
    tenant, now = container.default_tenant, container.clock()
    with container.db.write() as uow:
        uow.players.add_many([Player("plr_ann", tenant, None, None, None, {}, now, now)])
        uow.commit()
    with container.db.write() as uow:
        first = uow.events.append(tenant, rows(container, "plr_ann", ["a", "b", "c"]), now)
        # The second request repeats "b" (a duplicate) and brings two new events.
        second = uow.events.append(tenant, rows(container, "plr_ann", ["d", "b", "e"]), now)
        third = uow.events.append(tenant, rows(container, "plr_ann", ["f"]), now)
        uow.commit()
    assert first == {("lms", "a"), ("lms", "b"), ("lms", "c")}
    assert second == {("lms", "d"), ("lms", "e")}
    assert third == {("lms", "f")}
    with container.db.read() as uow:
        logged = uow.events.after(0, 100)
    assert [e.key for e in logged] == ["a", "b", "c", "d", "e", "f"]
    # Each append tried its own rows only: 7 rows in all, so at most 7 numbers (a conflicting
    # row may take one; earlier appends' rows tried again would take more).
    positions = [e.position for e in logged]
    assert positions == sorted(positions)
    assert positions[-1] - positions[0] <= 6
