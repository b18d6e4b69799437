"""Reads by player see every committed event: on SQLite whatever part of the log the indexer
has put in player_events; on PostgreSQL, whose log is indexed by player as it is written,
the indexer has nothing to do."""

from __future__ import annotations

from datetime import UTC, datetime

from plaudit.bootstrap import Container
from plaudit.domain.events import IncomingEvent
from plaudit.services.events import EventFilter
from plaudit.store.sql.database import SqlDatabase

WHEN = datetime(2026, 5, 1, tzinfo=UTC)


def _send(container: Container, *keys_and_actors: tuple[str, str]) -> None:
    container.ingest.ingest(
        "default", [IncomingEvent(k, "lms", "t", a, WHEN) for k, a in keys_and_actors]
    )


def indexed(container: Container, count: int) -> int:
    """What the indexer reports having indexed when ``count`` events await it."""
    db = container.db
    assert isinstance(db, SqlDatabase)
    return count if db.is_sqlite else 0


def _keys(container: Container, player: str) -> list[str]:
    page = container.event_log.page("default", EventFilter(player=player), None, 1000)
    return [e.key for e in page.items]


def test_reads_by_player_cover_indexed_and_not_yet_indexed_events(container: Container) -> None:
    _send(container, ("1", "ann"), ("2", "bob"), ("3", "ann"))
    # "1" and "2" indexed, "3" not
    assert container.event_log.index_players(limit=2) == indexed(container, 2)
    _send(container, ("4", "ann"))
    assert _keys(container, "lms:ann") == ["1", "3", "4"]
    assert _keys(container, "lms:bob") == ["2"]
    assert container.event_log.index_players() == indexed(container, 2)
    assert container.event_log.index_players() == 0
    assert _keys(container, "lms:ann") == ["1", "3", "4"]


def test_a_merge_moves_indexed_and_tail_events(container: Container) -> None:
    _send(container, ("1", "ann"), ("2", "ann2"), ("3", "ann2"))
    container.event_log.index_players(limit=2)
    container.players.merge("default", "lms:ann", "lms:ann2")
    assert _keys(container, "lms:ann") == ["1", "2", "3"]
    container.event_log.index_players()
    assert _keys(container, "lms:ann") == ["1", "2", "3"]
    assert _keys(container, "lms:ann2") == ["1", "2", "3"]  # the merged id leads to ann


def test_a_merge_before_any_indexing_moves_every_event(container: Container) -> None:
    _send(container, ("1", "ann"), ("2", "bob"), ("3", "ann"))
    container.players.merge("default", "lms:bob", "lms:ann")
    assert _keys(container, "lms:bob") == ["1", "2", "3"]
    assert _keys(container, "lms:ann") == ["1", "2", "3"]
    assert container.event_log.index_players() == indexed(container, 3)
    assert _keys(container, "lms:bob") == ["1", "2", "3"]
