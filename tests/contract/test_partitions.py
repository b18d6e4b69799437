"""What the scale-out sweepers read of the log and the cursors, on each store."""

from __future__ import annotations

from datetime import timedelta

from plaudit.bootstrap import Container
from plaudit.domain.partitions import partition_of
from plaudit.domain.players import Player
from plaudit.store.ports import NewEventRow


def test_last_positions_give_each_partitions_last_event(container: Container) -> None:
    tenant, now = container.default_tenant, container.clock()
    players = [f"plr_{i}" for i in range(12)]
    with container.db.write() as uow:
        uow.players.add_many([Player(p, tenant, None, None, None, {}, now, now) for p in players])
        at = now - timedelta(hours=1)
        uow.events.append(
            tenant,
            [
                NewEventRow(f"evt_{i}", "lms", str(i), "t", players[i % 12], "a", at, {}, None)
                for i in range(40)
            ],
            now,
        )
        uow.commit()
    with container.db.read() as uow:
        logged = uow.events.after(0, 100)
        last = uow.events.last_positions()
    expected: dict[int, int] = {}
    for e in logged:
        expected[partition_of(tenant, e.player_id)] = e.position
    assert last == expected
    assert len(expected) > 1  # the players fall in several partitions


def test_cursors_are_read_together_and_zero_when_never_set(container: Container) -> None:
    with container.db.write() as uow:
        uow.scoring.set_cursors({"partition-3": 17, "partition-5": 4})
        uow.commit()
    with container.db.read() as uow:
        found = uow.scoring.cursors(["partition-5", "partition-3", "partition-9"])
    assert found == {"partition-3": 17, "partition-5": 4, "partition-9": 0}
