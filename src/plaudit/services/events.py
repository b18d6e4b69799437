"""The event log, read: the audit view, single events, sources and their sequence gaps."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from plaudit.domain.events import StoredEvent
from plaudit.domain.pagination import Page, decode_position, page_of
from plaudit.domain.sequences import Run, gaps_between
from plaudit.errors import FieldError, InvalidInput, NotFound
from plaudit.services.players import find_player
from plaudit.store.ports import Database, EventQuery


@dataclass(frozen=True, slots=True)
class EventFilter:
    player: str | None = None
    source: str | None = None
    type: str | None = None
    occurred_from: datetime | None = None
    occurred_until: datetime | None = None


@dataclass(frozen=True, slots=True)
class SourceSummary:
    source: str
    events: int


class EventLogService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def page(
        self, tenant_id: str, filters: EventFilter, cursor: str | None, limit: int
    ) -> Page[StoredEvent]:
        if (
            filters.occurred_from is not None
            and filters.occurred_until is not None
            and filters.occurred_from >= filters.occurred_until
        ):
            raise InvalidInput(
                "empty time range",
                [FieldError("occurred_from", "must be earlier than occurred_until")],
            )
        after = decode_position(cursor)
        with self.db.read() as uow:
            player_ids: tuple[str, ...] = ()
            if filters.player is not None:
                player_ids = (find_player(uow, tenant_id, filters.player).id,)
            events = uow.events.query(
                tenant_id,
                EventQuery(
                    player_ids=player_ids,
                    source=filters.source,
                    type=filters.type,
                    occurred_from=filters.occurred_from,
                    occurred_until=filters.occurred_until,
                    after_position=after,
                    limit=limit + 1,
                ),
            )
        return page_of(events, limit, lambda e: e.position)

    def index_players(self, limit: int = 20_000) -> int:
        """Extend the by-player index of the log by up to ``limit`` events (a worker's job)."""
        with self.db.write() as uow:
            count = uow.events.index_players(limit)
            if count:
                uow.commit()
        return count

    def get(self, tenant_id: str, event_id: str) -> StoredEvent:
        with self.db.read() as uow:
            event = uow.events.get(tenant_id, event_id)
        if event is None:
            raise NotFound(f"no event {event_id!r}")
        return event

    def sources(self, tenant_id: str) -> list[SourceSummary]:
        with self.db.read() as uow:
            return [SourceSummary(s, n) for s, n in uow.events.sources(tenant_id)]

    def last_sequences(self, tenant_id: str) -> dict[str, int]:
        """The highest sequence number received from each source that sends them."""
        with self.db.read() as uow:
            sources = [s for s, _ in uow.events.sources(tenant_id)]
            last = {s: uow.sequences.all_runs(tenant_id, s) for s in sources}
        return {s: runs[-1][1] for s, runs in last.items() if runs}

    def sequence_gaps(self, tenant_id: str, source: str) -> tuple[list[Run], list[Run]]:
        """(received runs, missing runs) of a source's sequence numbers."""
        with self.db.read() as uow:
            runs = uow.sequences.all_runs(tenant_id, source)
            if not runs and not any(s == source for s, _ in uow.events.sources(tenant_id)):
                raise NotFound(f"no events from source {source!r}")
        return runs, gaps_between(runs)
