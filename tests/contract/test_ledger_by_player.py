"""Reads of the ledger by player (a page of it, the balances a retraction or a merge rebuilds
from) see every entry. The ledger has no index by player (on SQLite it cost the scoring
transaction a tenth of its rate, on PostgreSQL 9 of the 21 µs of CPU an entry cost): a
player's entries are found by way of their events (on SQLite indexed by player or in the
log's tail), and the entries without an event (adjustments) through a partial index."""

from __future__ import annotations

from datetime import UTC, datetime

from plaudit.bootstrap import Container
from plaudit.domain.events import IncomingEvent
from plaudit.services.events import EventFilter
from tests.contract.test_player_index import indexed

WHEN = datetime(2026, 5, 1, tzinfo=UTC)
RULES = """
currencies: [xp]
rules:
  - {id: done, on: task.done, award: {xp: 2}}
  - {id: big, on: task.done, when: 'event.properties.size > 5', award: {xp: 10}}
"""


def _publish(container: Container) -> None:
    view = container.rulesets.create("default", "p", RULES)
    container.rulesets.publish("default", view.record.id, "test")


def _score(container: Container, *keys_actors_sizes: tuple[str, str, int]) -> None:
    container.ingest.ingest(
        "default",
        [
            IncomingEvent(k, "lms", "task.done", a, WHEN, properties={"size": size})
            for k, a, size in keys_actors_sizes
        ],
    )
    while container.scoring.score_pending().events:
        pass


def _entries(container: Container, ref: str, page_size: int = 2) -> list[tuple[str, float]]:
    """The player's ledger, page after page: (rule, or the kind of a manual entry; amount)."""
    found: list[tuple[str, float]] = []
    cursor = None
    while True:
        page = container.progress.ledger("default", ref, cursor, page_size)
        found += [
            (e.row.rule_id if e.row.kind == "rule" else e.row.kind, e.row.amount)
            for e in page.items
        ]
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


def _event_id(container: Container, player: str, key: str) -> str:
    page = container.event_log.page("default", EventFilter(player=player), None, 100)
    return next(e.id for e in page.items if e.key == key)


def _xp(container: Container, ref: str) -> float:
    return container.progress.standing("default", ref).balances.get("xp", 0.0)


def test_reads_by_player_cover_every_entry(container: Container) -> None:
    _publish(container)
    _score(container, ("1", "ann", 9), ("2", "bob", 1), ("3", "ann", 1))
    container.progress.adjust("default", "lms:ann", "xp", 5, "welcome", "admin")
    # Events "1" and "2" indexed (SQLite).
    assert container.event_log.index_players(limit=2) == indexed(container, 2)
    _score(container, ("4", "ann", 7))
    container.progress.adjust("default", "lms:bob", "xp", -1, "typo", "admin")
    ann = [("done", 2.0), ("big", 10.0), ("done", 2.0), ("adjustment", 5.0)]
    ann += [("done", 2.0), ("big", 10.0)]
    assert _entries(container, "lms:ann") == ann
    assert _entries(container, "lms:bob") == [("done", 2.0), ("adjustment", -1.0)]
    # A retraction takes the balances from the ledger: every entry counts.
    container.scoring.retract("default", _event_id(container, "lms:ann", "1"), "test", "admin")
    assert _xp(container, "lms:ann") == 31 - 12
    assert container.event_log.index_players() == indexed(container, 2)
    assert _entries(container, "lms:ann") == [*ann, ("retraction", -2.0), ("retraction", -10.0)]
    assert _entries(container, "lms:bob") == [("done", 2.0), ("adjustment", -1.0)]


def test_a_merge_moves_every_entry(container: Container) -> None:
    _publish(container)
    _score(container, ("1", "ann", 1), ("2", "ann2", 1), ("3", "ann2", 9))
    container.progress.adjust("default", "lms:ann2", "xp", 5, "welcome", "admin")
    container.event_log.index_players(limit=2)  # ann's event and ann2's first
    container.players.merge("default", "lms:ann", "lms:ann2")
    moved = [("done", 2.0), ("done", 2.0), ("done", 2.0), ("big", 10.0), ("adjustment", 5.0)]
    assert _entries(container, "lms:ann") == moved
    assert _xp(container, "lms:ann") == 21  # the survivor's balances, from the ledger
    container.event_log.index_players()
    assert _entries(container, "lms:ann") == moved
    assert _entries(container, "lms:ann2") == moved  # the merged id leads to ann
