"""Ingestion: validate, map identities to players, append to the log, dedupe, track sequences."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from plaudit.domain.clock import Clock
from plaudit.domain.events import (
    EventResult,
    IncomingEvent,
    IngestReport,
    Outcome,
    check_occurred_at,
    first_occurrences,
)
from plaudit.domain.ids import new_id, new_ids
from plaudit.domain.partitions import partition_of
from plaudit.domain.players import PLAYER_ID_PREFIX, Identity, Player
from plaudit.domain.sequences import Run, gaps_between, merge_runs, runs_of
from plaudit.errors import Contended, FieldError, InvalidInput
from plaudit.services.players import PlayersCache
from plaudit.store.ports import Database, NewEventRow, UnitOfWork
from plaudit.stream.ports import Appended

# Gaps listed per source in an ingest response; the sources API pages through all of them.
GAPS_IN_REPORT = 100
# Attempts at a commit that lost a race for a new player to another process.
_ATTEMPTS = 5
# Identities remembered with their players, at most: ~200 bytes each.
_IDENTITIES_MAX = 500_000

Submitted = IncomingEvent | Sequence[FieldError]
"""What the API hands over per event: a well-formed event, or why it was not well-formed."""


@dataclass(eq=False)
class _Write:
    """One request's events waiting for (and then filled in by) a group commit."""

    tenant_id: str
    unique: list[tuple[int, IncomingEvent]]
    now: datetime
    results: list[EventResult | None]
    gaps: dict[str, list[Run]] = field(default_factory=dict)
    placed: list[NewEventRow] = field(default_factory=list)
    done: bool = False
    error: Exception | None = None


class IngestService:
    def __init__(self, db: Database, clock: Clock, max_future_skew: timedelta) -> None:
        self.db = db
        self.clock = clock
        self.max_future_skew = max_future_skew
        self._queue: list[_Write] = []
        self._queue_lock = threading.Lock()
        self._leader = threading.Lock()
        # Told after each commit of new events (the in-process scoring worker's wake-up).
        self.on_commit: Callable[[], None] | None = None
        # Told what each commit appended, per tenant and partition (the scale-out mode's
        # stream, which tells the workers holding those partitions).
        self.on_appended: Callable[[list[Appended]], None] | None = None
        # Each identity's player, as read (looking them up was 4.7 % of PostgreSQL's sampled
        # active time in bench/e2e.py). Used under the group commit's lock.
        self._identities: PlayersCache[Identity, str] = PlayersCache(_IDENTITIES_MAX)

    def ingest(
        self, tenant_id: str, items: Sequence[Submitted], atomic: bool = False
    ) -> IngestReport:
        """Store every acceptable event durably; report each as accepted/duplicate/rejected.

        With ``atomic`` any invalid event rejects the whole batch (InvalidInput, nothing written).
        """
        now = self.clock()
        results: list[EventResult | None] = [None] * len(items)
        valid: list[tuple[int, IncomingEvent]] = []
        for index, item in enumerate(items):
            errors = self._problems(item, now)
            if errors:
                key, source = (
                    (item.key, item.source) if isinstance(item, IncomingEvent) else (None, None)
                )
                results[index] = EventResult(index, Outcome.REJECTED, key, source, errors=errors)
            else:
                assert isinstance(item, IncomingEvent)
                valid.append((index, item))

        if atomic and len(valid) < len(items):
            rejected = [r for r in results if r is not None]
            raise InvalidInput(
                f"batch rejected: {len(rejected)} of {len(items)} events are invalid "
                "(atomic=true writes nothing unless every event is valid)",
                [
                    FieldError(f"[{r.index}].{e.field}" if e.field else f"[{r.index}]", e.message)
                    for r in rejected
                    for e in r.errors
                ],
            )

        firsts = first_occurrences([event for _, event in valid])
        unique = [pair for pair, first in zip(valid, firsts, strict=True) if first]
        gaps: dict[str, list[Run]] = {}
        if unique:
            write = _Write(tenant_id, unique, now, results)
            self._write_grouped(write)
            gaps = write.gaps

        # Repeats within the batch point at the first occurrence's outcome.
        first_result: dict[tuple[str, str], EventResult] = {}
        for (index, event), first in zip(valid, firsts, strict=True):
            ident = (event.source, event.key)
            if first:
                result = results[index]
                assert result is not None
                first_result[ident] = result
            else:
                original = first_result[ident]
                results[index] = EventResult(
                    index,
                    Outcome.DUPLICATE,
                    event.key,
                    event.source,
                    event_id=original.event_id,
                    player_id=original.player_id,
                )
        final = [r for r in results if r is not None]
        assert len(final) == len(items)
        return IngestReport(final, gaps)

    def _write_grouped(self, write: _Write) -> None:
        """Group commit: requests that arrive while a commit is running share the next one.

        One fsync then serves many requests (with four clients sending 100-event batches, the
        fsync was most of the cost). Each request still sees its own outcome: if a shared
        transaction fails, its requests are retried one by one.
        """
        with self._queue_lock:
            self._queue.append(write)
        with self._leader:
            if not write.done:
                with self._queue_lock:
                    group, self._queue = self._queue, []
                self._commit(group)
        if write.error is not None:
            raise write.error

    def _commit(self, group: list[_Write], attempt: int = 1) -> None:
        try:
            with self.db.write() as uow:
                by_tenant: dict[str, list[_Write]] = defaultdict(list)
                for write in group:
                    by_tenant[write.tenant_id].append(write)
                for tenant_id, writes in by_tenant.items():
                    self._append_writes(uow, tenant_id, writes)
                    for write in writes:
                        write.gaps = self._track_sequences(uow, tenant_id, write.placed)
                uow.commit()
        except Exception as exc:
            # What was remembered of identities may hold a link this transaction made (read
            # back by a later request of the group): forget it all.
            self._identities.forget()
            # PostgreSQL: another process created the same new player (identity) meanwhile,
            # or the two waited for each other. Nothing was written; the other's commit is
            # done, so another attempt resolves the identity to its player.
            if isinstance(exc, Contended) and attempt < _ATTEMPTS:
                self._commit(group, attempt + 1)
                return
            self._fail(group, exc)
            return
        for write in group:
            write.done = True
        if self.on_commit is not None:
            self.on_commit()
        if self.on_appended is not None:
            self.on_appended(_announcements(group))

    def _fail(self, group: list[_Write], exc: Exception) -> None:
        """A shared commit failed: each request is tried on its own, so that one bad request
        does not fail the others; a request alone gets its error."""
        if len(group) == 1:
            group[0].error = exc
            group[0].done = True
            return
        for write in group:
            self._commit([write])

    def _problems(self, item: Submitted, now: datetime) -> tuple[FieldError, ...]:
        if not isinstance(item, IncomingEvent):
            return tuple(item)
        problem = check_occurred_at(item.occurred_at, now, self.max_future_skew)
        return (FieldError("occurred_at", problem),) if problem else ()

    def _append_writes(self, uow: UnitOfWork, tenant_id: str, writes: list[_Write]) -> None:
        """Append a tenant's requests of a group commit: their players resolved together and
        their rows in one append (on PostgreSQL each statement is a round trip, taken while
        the other API processes wait for the log's lock). Requests that share an event
        (a client's retry racing its first try) are appended one after another instead, so
        that each learns which of them stored it."""
        keys = [(event.source, event.key) for write in writes for _, event in write.unique]
        if len(writes) > 1 and len(set(keys)) < len(keys):
            for write in writes:
                self._append(uow, tenant_id, [write])
            return
        self._append(uow, tenant_id, writes)

    def _append(self, uow: UnitOfWork, tenant_id: str, writes: list[_Write]) -> None:
        """Append events new to the log; fill each write's results and ``placed`` (the rows
        that got in)."""
        wanted = {Identity(e.source, e.actor) for write in writes for _, e in write.unique}
        known = self._players(uow, tenant_id, wanted, writes[0].now)
        ids = new_ids("evt", sum(len(write.unique) for write in writes))
        # Positional: by keyword, making the rows took 6.2 µs an event, 4.4 this way.
        batches = [
            (
                [
                    NewEventRow(
                        next(ids),
                        event.source,
                        event.key,
                        event.type,
                        known[Identity(event.source, event.actor)],
                        event.actor,
                        event.occurred_at,
                        event.properties,
                        event.sequence,
                    )
                    for _, event in write.unique
                ],
                write.now,
            )
            for write in writes
        ]
        inserted = uow.events.append_many(tenant_id, batches)
        duplicates = [
            (r.source, r.key)
            for rows, _ in batches
            for r in rows
            if (r.source, r.key) not in inserted
        ]
        stored = uow.events.existing_ids(tenant_id, duplicates) if duplicates else {}
        for write, (rows, _) in zip(writes, batches, strict=True):
            write.placed = []
            for (index, event), row in zip(write.unique, rows, strict=True):
                ident = (row.source, row.key)
                if ident in inserted:
                    write.placed.append(row)
                    write.results[index] = EventResult(
                        index, Outcome.ACCEPTED, event.key, event.source, row.id, row.player_id
                    )
                else:
                    event_id, player_id = stored[ident]
                    write.results[index] = EventResult(
                        index, Outcome.DUPLICATE, event.key, event.source, event_id, player_id
                    )

    def _players(
        self, uow: UnitOfWork, tenant_id: str, wanted: set[Identity], now: datetime
    ) -> dict[Identity, str]:
        """The player of each identity, new players made for those not yet known."""
        self._identities.check(uow.players.generation())
        known, unknown = self._identities.split(tenant_id, wanted)
        if unknown:
            found = uow.players.resolve(tenant_id, unknown)
            known.update(found)
            # Committed, or made by this transaction for an earlier request of its group
            # (forgotten if it rolls back).
            self._identities.put(tenant_id, found)
        missing = sorted(wanted - known.keys(), key=lambda i: (i.source, i.external_id))
        if missing:
            new_players = [
                Player(new_id(PLAYER_ID_PREFIX), tenant_id, None, None, None, {}, now, now)
                for _ in missing
            ]
            uow.players.add_many(new_players)
            links = [(ident, p.id) for ident, p in zip(missing, new_players, strict=True)]
            # Another process may be creating some of the same players (PostgreSQL): its
            # link wins, and the players made here for those identities are dropped.
            won = uow.players.claim_identities(tenant_id, links, now)
            lost = [(ident, pid) for ident, pid in links if ident not in won]
            if lost:
                uow.players.drop_new(tenant_id, [pid for _, pid in lost])
                known.update(uow.players.resolve(tenant_id, {ident for ident, _ in lost}))
            known.update((ident, pid) for ident, pid in links if ident in won)
        return known

    @staticmethod
    def _track_sequences(
        uow: UnitOfWork, tenant_id: str, placed: list[NewEventRow]
    ) -> dict[str, list[Run]]:
        by_source: dict[str, list[int]] = defaultdict(list)
        for row in placed:
            if row.sequence is not None:
                by_source[row.source].append(row.sequence)
        gaps: dict[str, list[Run]] = {}
        for source, numbers in by_source.items():
            added = runs_of(numbers)
            touching = uow.sequences.runs_touching(tenant_id, source, added[0][0], added[-1][1])
            merged = merge_runs(touching, added)
            if merged != touching:
                uow.sequences.replace_runs(tenant_id, source, touching, merged)
            gaps[source] = gaps_between(uow.sequences.all_runs(tenant_id, source))[:GAPS_IN_REPORT]
        return gaps


def _announcements(group: list[_Write]) -> list[Appended]:
    """One per (tenant, partition) the group appended to: its first event, and how many."""
    first: dict[tuple[str, int], str] = {}
    count: dict[tuple[str, int], int] = {}
    for write in group:
        tenant_id = write.tenant_id
        for row in write.placed:
            where = (tenant_id, partition_of(tenant_id, row.player_id))
            if where in count:
                count[where] += 1
            else:
                first[where], count[where] = row.id, 1
    return [Appended(t, p, first[(t, p)], n) for (t, p), n in count.items()]
