"""Scoring: take events from the log in order, evaluate the live rule set, apply the effects.

One transaction per batch holds the effects, the new player states and the log cursor,
so an event is applied exactly once: either all of that is committed or none of it.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import pickle
import queue
import resource
import secrets
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any

import orjson

from plaudit.domain.clock import Clock, utc_now
from plaudit.domain.events import StoredEvent
from plaudit.domain.ids import new_id
from plaudit.domain.partitions import PARTITIONS, partition_of
from plaudit.errors import Conflict, NotFound
from plaudit.leaderboards.entries import board_entries
from plaudit.rules.compiler import CompiledRuleSet
from plaudit.rules.effects import BadgeAwarded, Effect, LevelReached, PointsAwarded, RuleFailed
from plaudit.rules.evaluate import PlayerFacts, adjust, evaluate
from plaudit.rules.holds import hold_reason, note_awards, previous_day
from plaudit.rules.state import PlayerState
from plaudit.runtime import collect_rarely
from plaudit.services import audit
from plaudit.services.ahead import Ahead, BatchAhead, TenantAhead
from plaudit.services.outbox import (
    Outbox,
    award_message,
    level_message,
    points_message,
    revocation_message,
    starting_level,
)
from plaudit.services.players import PlayersCache
from plaudit.services.rulesets import RuleBook
from plaudit.store.ports import (
    AwardRow,
    BoardEntryRow,
    Database,
    EventQuery,
    HeldEvent,
    IssuanceRow,
    LedgerRow,
    LevelUpRow,
    RuleErrorRow,
    RuleSetVersion,
    UnitOfWork,
)

log = logging.getLogger("plaudit.scoring")

CURSOR = "scoring"
REPLAY_BATCH = 20_000
# A log shorter than this is replayed in this process: starting processes (~1 s each to
# import and connect) would cost more than they save.
PARALLEL_REPLAY_MIN = 100_000
# Players whose states a worker keeps in memory at most (some MB per 100,000).
_CACHE_MAX = 200_000
# Scoring ahead: the players of the partitions below this one are evaluated by the writing
# process itself, in its write transaction, the rest by the helper. Without a share the
# writer waited ~13 µs an event (of ~54) for the helper. Once the writer's own work had
# shrunk to ~36 µs an event and the helper's was ~42, 4 of 16 balanced them (~38 each):
# ~23,900 events/s against ~22,600 with 2 (bench/README.md).
_WRITER_PARTITIONS = 4


@dataclass(frozen=True)
class Retraction:
    event_id: str
    reversed: list[tuple[str, float]]  # (currency, amount taken back)
    revoked_awards: list[str]


@dataclass
class BatchOutcome:
    events: int = 0
    points: int = 0
    badges: int = 0
    errors: int = 0
    by_tenant: dict[str, int] = field(default_factory=dict)


@dataclass
class ShareReplayed:
    """What one process of a replay did: its events, its seconds reading and evaluating and
    writing (waiting for the database included), its peak memory in bytes."""

    events: int = 0
    evaluating: float = 0.0
    writing: float = 0.0
    peak_rss: int = 0


def partition_cursor(partition: int) -> str:
    return f"{CURSOR}:{partition}"


def partitions_behind(uow: UnitOfWork) -> dict[int, int]:
    """The partitions whose log is ahead of their scoring cursor, with that cursor (two
    statements, whatever the number of partitions)."""
    lasts = uow.events.last_positions()
    cursors = uow.scoring.cursors(partition_cursor(p) for p in lasts)
    return {
        p: cursors[partition_cursor(p)]
        for p, last in lasts.items()
        if cursors[partition_cursor(p)] < last
    }


class ScoringService:
    """Scores the log. Embedded: one cursor over the whole log (one process, one writer).
    ``partitioned`` (the scale-out mode): a cursor per partition of the log, each advanced by
    one worker at a time under a row lock, so several workers score different players at
    once and each player's events are still scored once and in order."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        book: RuleBook,
        batch_size: int = 2000,
        partitioned: bool = False,
        ahead: bool = False,
    ) -> None:
        """``ahead``: when the log is behind by ``ahead_backlog`` events or more, a helper
        process evaluates the next batch while this one is written (not when partitioned:
        the scale-out mode has worker processes for that)."""
        self.db = db
        self.clock = clock
        self.book = book
        self.batch_size = batch_size
        self.partitioned = partitioned
        self._poison: dict[int, str] = {}  # log position -> why evaluating it failed
        # Player states and facts as committed, kept across batches: loading and decoding
        # them was a quarter of scoring's time. A state is used while the store's row still
        # carries the token of this worker's own last write (anyone else's write changes it);
        # facts while the players' write counter is where it was.
        self._states: dict[tuple[str, str], PlayerState] = {}
        self._tokens: dict[tuple[str, str], int] = {}
        self._facts: PlayersCache[str, PlayerFacts] = PlayersCache(_CACHE_MAX)
        self._quiet = False  # a replay rebuilds what was told already: no outbox messages
        # The largest peak memory (bytes) of the processes of the last parallel replay.
        self.replay_peak_rss = 0
        opener = db.opener() if ahead and not partitioned else None
        self.ahead = Ahead(opener, batch_size, helper_main) if opener is not None else None
        self.ahead_backlog = 2 * batch_size
        self.ahead_written = 0  # batches evaluated ahead and written
        self.ahead_dropped = 0  # batches evaluated ahead, dropped (something they read changed)
        # In the helper process: the players evaluated since the current run started. Their
        # cached states are trusted, built on the token they will carry once written (in
        # ``_tokens``): the write checks that token is still there.
        self._pending: set[tuple[str, str]] = set()

    def close(self) -> None:
        """Stop the helper process, if one was started."""
        if self.ahead is not None:
            self.ahead.close()

    def replay(self, tenant_id: str | None = None, processes: int = 1) -> int:
        """Rebuild everything scoring derived, from the log, with the version that scored
        each event; manual adjustments are applied again after the events. Returns the
        number of events replayed.

        Player states are built in memory and saved at the end, with the worker's cursor;
        until then the cursor stays at 0, so an interrupted replay is finished by ordinary
        scoring from the start of the log (effects are keyed: nothing is written twice).

        With ``processes`` > 1 and a log of at least ``PARALLEL_REPLAY_MIN`` events, the
        players are shared out among that many processes, each evaluating its players'
        events on its own core (a player's events stay in order, in one process) and writing
        what they caused; the database serializes their writes."""
        self.forget_caches()
        started = time.monotonic()
        with self.db.write(foreign_keys=False) as uow:  # deletes only
            uow.scoring.forget_derived(tenant_id)
            uow.boards.forget(tenant_id)
            self._set_cursors(uow, 0)
            end = uow.events.last_position()
            uow.commit()
        log.info("replay: derived state dropped in %.1f s", time.monotonic() - started)
        opener = self.db.opener()
        if processes > 1 and opener is not None and end >= PARALLEL_REPLAY_MIN:
            return self._replay_in_processes(*opener, tenant_id, end, processes)
        memory: dict[tuple[str, str], PlayerState] = {}
        position = total = 0
        while True:
            try:
                with self.db.write() as uow:
                    events = uow.events.after(position, REPLAY_BATCH)
                    if not events:
                        break
                    self._check_facts(uow)
                    self._score_events(uow, events, BatchOutcome(), tenant_id, memory)
                    uow.commit()
            except Exception:
                # The states in memory may be half-updated: start again, batch by batch (the
                # event that failed is marked and will be recorded as an engine error).
                log.exception("replay in memory failed; replaying batch by batch")
                return self._replay_in_batches(tenant_id)
            position = events[-1].position
            total += len(events)
        with self.db.write() as uow:
            self._save_memory(uow, memory)
            self._set_cursors(uow, position)
            uow.commit()
        self._reapply_adjustments(tenant_id)
        return total

    def _save_memory(self, uow: UnitOfWork, memory: dict[tuple[str, str], PlayerState]) -> None:
        by_tenant: dict[str, dict[str, Any]] = defaultdict(dict)
        for (tenant, player_id), state in memory.items():
            by_tenant[tenant][player_id] = state.to_json()
        for tenant, states in by_tenant.items():
            uow.scoring.save_states(tenant, states, self.clock())

    def _replay_in_processes(
        self,
        open_database: Callable[[str], Database],
        url: str,
        tenant_id: str | None,
        end: int,
        processes: int,
    ) -> int:
        """The replay of the log up to ``end``, shared out by player among child processes
        (spawned: nothing of this process's threads or connections is inherited)."""
        context = multiprocessing.get_context("spawn")
        started = time.monotonic()
        try:
            with ProcessPoolExecutor(max_workers=processes, mp_context=context) as pool:
                shares = [
                    pool.submit(
                        replay_share,
                        open_database,
                        url,
                        self.partitioned,
                        (share, processes),
                        tenant_id,
                        end,
                    )
                    for share in range(processes)
                ]
                done = [share.result() for share in shares]
        except Exception:
            log.exception("replay in %d processes failed; replaying batch by batch", processes)
            return self._replay_in_batches(tenant_id)
        log.info("replay: %d processes done in %.1f s", processes, time.monotonic() - started)
        for number, share in enumerate(done):
            log.info(
                "replay: share %d: %d events, %.1f s reading and evaluating, %.1f s writing "
                "(waiting included), peak memory %d MB",
                number,
                share.events,
                share.evaluating,
                share.writing,
                share.peak_rss // 2**20,
            )
        self.replay_peak_rss = max(share.peak_rss for share in done)
        with self.db.write() as uow:
            self._set_cursors(uow, end)
            uow.commit()
        self._reapply_adjustments(tenant_id)
        return sum(share.events for share in done)

    def replay_share(
        self, share: tuple[int, int], tenant_id: str | None, end: int
    ) -> ShareReplayed:
        """Replay the log up to ``end`` for the players of ``share`` (number, of how many):
        each batch read and evaluated in a read transaction (other players' events are not
        even decoded), then written in a write transaction, so that processes sharing a
        replay evaluate at the same time."""
        number, shares = share

        def mine(tenant: str, player_id: str) -> bool:
            return (tenant_id is None or tenant == tenant_id) and partition_of(
                tenant, player_id
            ) % shares == number

        memory: dict[tuple[str, str], PlayerState] = {}
        position = 0
        done = ShareReplayed()
        while True:
            now = self.clock()
            started = time.monotonic()
            with self.db.read() as uow:
                events, last, _ = uow.events.after_kept(position, REPLAY_BATCH, end, mine)
                if last == position:
                    break  # nothing left up to the end
                position = last
                self._check_facts(uow)
                by_tenant: dict[str, list[StoredEvent]] = defaultdict(list)
                for e in events:
                    by_tenant[e.tenant_id].append(e)
                evaluated = [
                    (tenant, found[0])
                    for tenant, share_events in by_tenant.items()
                    if (found := self._evaluate_tenant(uow, tenant, share_events, now, memory))
                ]
            evaluated_at = time.monotonic()
            self._write_replayed(evaluated, now)
            done.evaluating += evaluated_at - started
            done.writing += time.monotonic() - evaluated_at
            done.events += len(events)
        with self.db.write() as uow:
            self._save_memory(uow, memory)
            uow.commit()
        return done

    def _write_replayed(self, evaluated: list[tuple[str, Produced]], now: datetime) -> None:
        with self.db.write() as uow:
            for tenant, produced in evaluated:
                produced.write(uow, tenant, now, quiet=True)
            uow.commit()

    def _part(self, event: StoredEvent) -> int | None:
        """The event's partition when scoring is partitioned (what its redelivery check is
        kept per), else None."""
        return event.partition if self.partitioned else None

    def _set_cursors(self, uow: UnitOfWork, position: int) -> None:
        """Every event up to ``position`` is scored (a replay's start and end)."""
        uow.scoring.set_cursor(CURSOR, position)
        if self.partitioned:
            for partition in range(PARTITIONS):
                uow.scoring.set_cursor(partition_cursor(partition), position)

    def scored(self, uow: UnitOfWork) -> Callable[[StoredEvent], bool]:
        """Which events scoring has applied (their effects are committed), for a write that
        sets derived state against them (a merge, a backfill). Partitioned, the cursors
        stay locked until that commit, so no worker scores more of the log meanwhile; in the
        embedded mode the one writer lock does that."""
        if not self.partitioned:
            upto = uow.scoring.cursor(CURSOR)
            return lambda e: e.position <= upto
        names = [partition_cursor(p) for p in range(PARTITIONS)]
        locked = uow.scoring.lock_cursors(names)
        cursors = [locked[name] for name in names]
        return lambda e: e.position <= cursors[e.partition]

    def _replay_in_batches(self, tenant_id: str | None) -> int:
        self.forget_caches()
        with self.db.write() as uow:
            uow.scoring.forget_derived(tenant_id)
            uow.boards.forget(tenant_id)
            self._set_cursors(uow, 0)
            uow.commit()
        total = 0
        self._quiet = True
        try:
            while (outcome := self.score_pending(only_tenant=tenant_id)).events:
                total += outcome.events
        finally:
            self._quiet = False
        self._reapply_adjustments(tenant_id)
        return total

    def _reapply_adjustments(self, tenant_id: str | None) -> None:
        with self.db.write() as uow:
            for tenant in uow.scoring.adjusted_tenants(tenant_id):
                live = self.book.live(uow, tenant)
                rules = live[1] if live else None
                entries = uow.scoring.adjustments(tenant)
                players = uow.players.get_many(tenant, {e.player_id for e in entries})
                raw = uow.scoring.states(tenant, players)
                states = {pid: PlayerState.from_json(raw.get(pid)) for pid in players}
                for entry in entries:
                    player = players[entry.player_id]
                    facts = PlayerFacts.of(player, player.id)
                    effects = adjust(
                        rules,
                        states[player.id],
                        entry.currency,
                        entry.amount,
                        entry.occurred_at,
                        facts,
                    )
                    if rules is not None and rules.boards:
                        at = entry.occurred_at
                        uow.boards.add_entries(
                            tenant, board_entries(rules, entry.rule_id, at, at, effects)
                        )
                uow.scoring.save_states(
                    tenant, {pid: st.to_json() for pid, st in states.items()}, self.clock()
                )
            uow.commit()

    def retract(self, tenant_id: str, event_id: str, reason: str, actor: str) -> Retraction:
        """Reverse what an event caused. Policy: its ledger entries are reversed exactly
        (other events' entries stay as they were); the player's criteria are re-evaluated
        without it, and rule awards whose badge (or tier) no longer holds are revoked."""
        now = self.clock()
        with self.db.write() as uow:
            event = uow.events.get(tenant_id, event_id)
            if event is None:
                raise NotFound(f"no event {event_id!r}")
            if not uow.scoring.retract(tenant_id, event_id, reason, actor, now):
                raise Conflict(f"event {event_id!r} was already retracted")
            reversals = [
                entry._replace(
                    amount=-entry.amount,
                    kind="retraction",
                    rule_id=f"retract:{entry.rule_id}",
                    reason=reason,
                    actor=actor,
                    occurred_at=now,
                )
                for entry in uow.scoring.event_ledger(tenant_id, event_id)
            ]
            uow.scoring.append_ledger(tenant_id, reversals, now)
            Outbox(uow, tenant_id, now).points(reversals)
            audit.record(
                uow,
                tenant_id,
                "event.retract",
                ("event", event_id),
                now,
                after={"reason": reason, "reversed": [[r.currency, r.amount] for r in reversals]},
            )
            uow.boards.remove_entries(tenant_id, event_id)
            raw = uow.scoring.states(tenant_id, [event.player_id]).get(event.player_id)
            old = PlayerState.from_json(raw)
            revoked: list[str] = []
            if old.applied(event.position, self._part(event)):
                # Already scored: re-evaluate without it.
                new = self._rebuild(
                    uow,
                    tenant_id,
                    event.player_id,
                    lambda e: old.applied(e.position, self._part(e)),
                )
                new.balances = uow.scoring.balances(tenant_id, event.player_id)
                revoked = self._revoke_lost(
                    uow, tenant_id, event.player_id, old, new, event_id, now
                )
                uow.scoring.save_states(tenant_id, {event.player_id: new.to_json()}, now)
            uow.commit()
        return Retraction(event_id, [(r.currency, r.amount) for r in reversals], revoked)

    def absorb(self, uow: UnitOfWork, tenant_id: str, survivor: str, absorbed: str) -> None:
        """After a merge: the absorbed player's ledger and awards become the survivor's, and
        the survivor's criteria are evaluated again over both players' events."""
        uow.scoring.move_player(tenant_id, absorbed, survivor)
        uow.boards.move_subject(tenant_id, absorbed, survivor)
        # Events the workers have scored have their effects in the ledger; later ones will be
        # scored on top of the rebuilt state.
        state = self._rebuild(uow, tenant_id, survivor, self.scored(uow))
        state.balances = uow.scoring.balances(tenant_id, survivor)
        now = self.clock()
        self._award_held(uow, tenant_id, survivor, state, now)
        uow.scoring.save_states(tenant_id, {survivor: state.to_json()}, now)

    @staticmethod
    def _award_held(
        uow: UnitOfWork, tenant_id: str, player_id: str, state: PlayerState, at: datetime
    ) -> None:
        """Award what the rebuilt state holds and no current award covers (two players'
        progress, once merged, can complete a badge)."""
        current = {
            (a.badge_id, a.tier)
            for a in uow.scoring.awards(tenant_id, player_id=player_id)
            if a.revoked_at is None
        }
        untiered: list[str | None] = [None]
        due = [
            (badge_id, tier)
            for badge_id, holding in state.badges.items()
            for tier in (list[str | None](holding.tiers) or untiered)
            if (badge_id, tier) not in current
            and not (tier is None and any(b == badge_id for b, _ in current))
        ]
        awards = [
            AwardRow(new_id("awd"), player_id, badge_id, tier, 1, "rule", at, None)
            for badge_id, tier in due
        ]
        uow.scoring.add_awards(tenant_id, awards)
        Outbox(uow, tenant_id, at).awards(awards)
        uow.badges.log(
            tenant_id,
            [
                IssuanceRow(
                    a.id,
                    player_id,
                    a.badge_id,
                    "issued",
                    "merge",
                    "criteria met by the merged players' events",
                    at,
                )
                for a in awards
            ],
        )

    def _rebuild(
        self,
        uow: UnitOfWork,
        tenant_id: str,
        player_id: str,
        scored: Callable[[StoredEvent], bool],
    ) -> PlayerState:
        epochs = self.book.epochs(uow, tenant_id)
        facts = PlayerFacts.of(uow.players.get(tenant_id, player_id), player_id)
        state = PlayerState()
        after = 0
        while True:
            events = uow.events.query(
                tenant_id, EventQuery(player_ids=[player_id], after_position=after, limit=5000)
            )
            if not events:
                break
            after = events[-1].position
            events = [e for e in events if scored(e)]
            retracted = uow.scoring.retracted(tenant_id, [e.id for e in events])
            for e in events:
                scored_by = epochs.for_position(e.position)
                if e.id not in retracted and scored_by is not None:
                    try:
                        evaluate(scored_by[1], state, e, facts)
                    except Exception:  # the same defect the scorer skipped
                        log.exception("re-evaluating event %s failed", e.id)
                state.advance(e.position, self._part(e))
        return state

    @staticmethod
    def _revoke_lost(
        uow: UnitOfWork,
        tenant_id: str,
        player_id: str,
        old: PlayerState,
        new: PlayerState,
        event_id: str,
        at: datetime,
    ) -> list[str]:
        revoked = []
        reason = f"criteria no longer hold after event {event_id} was retracted"
        for award in uow.scoring.awards(tenant_id, player_id=player_id):
            if award.source != "rule" or award.revoked_at is not None:
                continue
            holding = new.badges.get(award.badge_id)
            lost = holding is None or (award.tier is not None and award.tier not in holding.tiers)
            if lost and award.badge_id in old.badges:
                uow.badges.revoke_award(tenant_id, award.id, at, reason)
                Outbox(uow, tenant_id, at).tell(
                    [revocation_message(award, reason, "retraction", at)]
                )
                uow.badges.log(
                    tenant_id,
                    [
                        IssuanceRow(
                            award.id, player_id, award.badge_id, "revoked", "retraction", reason, at
                        )
                    ],
                )
                revoked.append(award.id)
        return revoked

    def score_pending(self, only_tenant: str | None = None) -> BatchOutcome:
        """Score the next batch of the log (of each partition, when partitioned); an empty
        outcome means the log is caught up."""
        if self.partitioned:
            with self.db.read() as uow:
                behind = partitions_behind(uow)
            return self.score_partitions(behind, only_tenant)
        outcome = BatchOutcome()
        # Look before taking the write lock: an idle or rule-less log costs ingestion nothing.
        with self.db.read() as uow:
            position = uow.scoring.cursor(CURSOR)
            last = uow.events.last_position()
            scored_tenants = uow.rulesets.tenants_with_epochs()
        if last <= position:
            return outcome
        if not scored_tenants:
            with self.db.write() as uow:  # nothing can score these events: move past them
                if uow.scoring.cursor(CURSOR) < last:
                    uow.scoring.set_cursor(CURSOR, last)
                    uow.commit()
            outcome.events = last - position
            return outcome
        if self.ahead is not None and only_tenant is None and last - position >= self.ahead_backlog:
            batch = self.ahead.take(position, self.clock())
            if batch is not None:
                written = self.write_ahead(batch)
                if written is not None:
                    self.ahead_written += 1
                    return written
                self.ahead_dropped += 1
                self.ahead.dropped()
        with self.db.write() as uow:
            position = uow.scoring.cursor(CURSOR)
            events = uow.events.after(position, self.batch_size)
            if not events:
                return outcome
            self._score_batch(uow, events, outcome, only_tenant, {CURSOR: events[-1].position})
        outcome.events = len(events)
        return outcome

    def evaluate_ahead(self, start: int, continuing: bool, now: datetime) -> BatchAhead | None:
        """(In the helper process.) Evaluate the batch of the log after ``start`` in a read
        transaction, on the cached states. ``continuing``: the batches evaluated since the
        run started are being written meanwhile, so their players' cached states are their
        result; else the cached states are checked against the store. None: declined (a
        rule set holds events for review)."""
        if not continuing:
            self._pending = set()
        for _ in range(self.batch_size + 1):  # each retry sets one more failing event aside
            poisoned = len(self._poison)
            try:
                batch = self._evaluate_ahead(start, now)
            except _Declined:
                self.forget_caches()
                return None
            except Exception:
                self.forget_caches()  # states may be half-updated
                if len(self._poison) == poisoned:
                    raise
                continue
            self._pending.update((a.tenant_id, pid) for a in batch.tenants for pid in a.states)
            return batch
        raise AssertionError("unreachable: a batch has at most batch_size events")

    def _evaluate_ahead(self, start: int, now: datetime) -> BatchAhead:
        if len(self._states) > _CACHE_MAX:
            self._states.clear()
            self._tokens.clear()
            self._pending = set()
        with self.db.read() as uow:
            # The writer's share is left out (not even decoded). By the player an event is
            # of now, as the writer chooses its share: a merge moves events to a player of
            # another partition than the one the log recorded.
            events, end, read = uow.events.after_kept(start, self.batch_size, None, _helpers_share)
            self._check_facts(uow)
            batch = BatchAhead(start, end, read, self._facts.generation)
            by_tenant: dict[str, list[StoredEvent]] = defaultdict(list)
            for event in events:
                by_tenant[event.tenant_id].append(event)
            for tenant_id, tenant_events in by_tenant.items():
                epochs = self.book.epochs(uow, tenant_id)
                ahead = TenantAhead(tenant_id, epochs.epochs, [e.id for e in tenant_events])
                batch.tenants.append(ahead)
                evaluated = self._evaluate_tenant(uow, tenant_id, tenant_events, now, ahead=ahead)
                if evaluated is None:
                    continue
                ahead.produced, states = evaluated
                ahead.token = secrets.randbits(63)
                for pid, state in states.items():
                    ahead.states[pid] = orjson.dumps(state.to_json()).decode("utf-8")
                    self._tokens[(tenant_id, pid)] = ahead.token
        return batch

    def write_ahead(self, batch: BatchAhead) -> BatchOutcome | None:
        """Write a batch evaluated ahead, in one transaction with the cursor, when nothing
        its evaluation read has changed since: the cursor is where it started, the players'
        write counter where it was, each tenant's rule set versions, retractions of its
        events and its players' state tokens as they were. None (nothing written) when
        something changed."""
        now = self.clock()
        outcome = BatchOutcome(events=batch.events)
        with self.db.write() as uow:
            if uow.scoring.cursor(CURSOR) != batch.start:
                return None
            if uow.players.generation() != batch.players_generation:
                return None
            for ahead in batch.tenants:
                if uow.rulesets.epochs(ahead.tenant_id) != ahead.epochs:
                    return None
                if ahead.produced is None:
                    continue
                if uow.scoring.retracted(ahead.tenant_id, ahead.event_ids) != ahead.retracted:
                    return None
                versions = uow.scoring.state_versions(ahead.tenant_id, ahead.bases)
                if any(versions.get(pid) != base for pid, base in ahead.bases.items()):
                    return None
            for ahead in batch.tenants:
                produced = ahead.produced
                if produced is None:
                    continue
                uow.scoring.save_encoded_states(ahead.tenant_id, ahead.states, now, ahead.token)
                produced.failures = [f._replace(at=now) for f in produced.failures]
                produced.write(uow, ahead.tenant_id, now, quiet=self._quiet)
                outcome.points += len(produced.ledger)
                outcome.badges += len(produced.awards)
                outcome.errors += len(produced.failures)
                outcome.by_tenant[ahead.tenant_id] = len(ahead.event_ids)
            # The writer's share of the batch, as scoring in this process does (the other
            # players' events are not even decoded).
            mine, _, _ = uow.events.after_kept(
                batch.start, self.batch_size, batch.end, _writers_share
            )
            self._score_batch(uow, mine, outcome, None, {CURSOR: batch.end})
        return outcome

    def score_partition(self, partition: int, only_tenant: str | None = None) -> BatchOutcome:
        """Score the next batch of one partition of the log."""
        return self.score_partitions([partition], only_tenant)

    def score_partitions(
        self, partitions: Iterable[int], only_tenant: str | None = None
    ) -> BatchOutcome:
        """Score the next batch of some partitions of the log, in one transaction (the
        scale-out workers' step: one transaction for all the partitions a worker holds,
        however few events each has). Their cursors are locked for the transaction, in
        partition order: a second worker scoring one of them at the same moment waits, then
        finds its events scored."""
        outcome = BatchOutcome()
        with self.db.write() as uow:
            held = sorted(set(partitions))
            if not held:
                return outcome
            locked = uow.scoring.lock_cursors(partition_cursor(p) for p in held)
            cursors = {p: locked[partition_cursor(p)] for p in held}
            events = uow.events.in_partitions(cursors, self.batch_size)
            if not events:
                return outcome
            ends: dict[str, int] = {}
            for event in events:  # in log order: each partition's last event is its new cursor
                ends[partition_cursor(event.partition)] = event.position
            self._score_batch(uow, events, outcome, only_tenant, ends)
        outcome.events = len(events)
        return outcome

    def _score_batch(
        self,
        uow: UnitOfWork,
        events: list[StoredEvent],
        outcome: BatchOutcome,
        only_tenant: str | None,
        cursors: dict[str, int],
    ) -> None:
        self._check_facts(uow)
        if len(self._states) > _CACHE_MAX:
            self._states.clear()
            self._tokens.clear()
        try:
            self._score_events(uow, events, outcome, only_tenant)
            uow.scoring.set_cursors(cursors)
            uow.commit()
        except BaseException:
            self.forget_caches()  # states in it may hold the abandoned batch's changes
            raise

    def _check_facts(self, uow: UnitOfWork) -> None:
        """Drop the cached player facts when a player was written since they were read."""
        self._facts.check(uow.players.generation())

    def forget_caches(self) -> None:
        self._states.clear()
        self._tokens.clear()
        self._facts.forget()
        self._pending = set()

    def _load(
        self,
        uow: UnitOfWork,
        tenant_id: str,
        player_ids: set[str],
        pending: set[tuple[str, str]] | None = None,
        bases: dict[str, int | None] | None = None,
    ) -> tuple[dict[str, PlayerState], dict[str, PlayerFacts]]:
        """The batch's players' states and facts: from the caches, the rest from the store.
        The players' state rows are locked for the transaction, then a cached state is used
        when its row still carries the token of this worker's last write, or when the player
        is ``pending`` (evaluating ahead: in a batch being written meanwhile, its state built
        on the token that write sets). ``bases`` receives the token each state was built on
        (None: no stored state)."""
        states: dict[str, PlayerState] = {}
        missing_states: list[str] = []
        found: dict[str, int | None] = {}
        if pending:
            for pid in player_ids:
                key = (tenant_id, pid)
                state = self._states.get(key)
                if state is not None and key in pending:
                    states[pid] = state
                    found[pid] = self._tokens[key]
        unsure = [pid for pid in player_ids if pid not in states] if states else player_ids
        versions = uow.scoring.state_versions(tenant_id, unsure) if unsure else {}
        for pid in unsure:
            key = (tenant_id, pid)
            state = self._states.get(key)
            version = found[pid] = versions.get(pid)
            if state is not None and version is not None and self._tokens.get(key) == version:
                states[pid] = state
            elif version is not None:
                missing_states.append(pid)
            else:  # no stored state: a new player (or one whose derived state was dropped)
                states[pid] = self._states[key] = PlayerState()
        if bases is not None:
            bases.update(found)
        facts = self._facts_of(uow, tenant_id, player_ids)
        if missing_states:
            raw = uow.scoring.states(tenant_id, missing_states)
            for pid in missing_states:
                states[pid] = self._states[(tenant_id, pid)] = PlayerState.from_json(raw.get(pid))
        return states, facts

    def _facts_of(
        self, uow: UnitOfWork, tenant_id: str, player_ids: set[str]
    ) -> dict[str, PlayerFacts]:
        """The players' facts, from the cache; the rest from the store (then cached)."""
        facts, missing = self._facts.split(tenant_id, player_ids)
        if missing:
            found = {
                pid: PlayerFacts.of(player, pid)
                for pid, player in uow.players.get_many(tenant_id, missing).items()
            }
            self._facts.put(tenant_id, found)
            facts.update(found)
        return facts

    def _score_events(
        self,
        uow: UnitOfWork,
        events: list[StoredEvent],
        outcome: BatchOutcome,
        only_tenant: str | None,
        memory: dict[tuple[str, str], PlayerState] | None = None,
    ) -> None:
        by_tenant: dict[str, list[StoredEvent]] = defaultdict(list)
        for event in events:
            by_tenant[event.tenant_id].append(event)
        for tenant_id, tenant_events in by_tenant.items():
            if only_tenant is None or tenant_id == only_tenant:
                self._score_tenant(uow, tenant_id, tenant_events, outcome, memory)

    def _score_tenant(
        self,
        uow: UnitOfWork,
        tenant_id: str,
        events: list[StoredEvent],
        outcome: BatchOutcome,
        memory: dict[tuple[str, str], PlayerState] | None = None,
    ) -> None:
        now = self.clock()
        evaluated = self._evaluate_tenant(uow, tenant_id, events, now, memory)
        if evaluated is None:
            return  # no rule set published yet: events stay in the log for a later backfill
        produced, states = evaluated
        if memory is None:  # a replay in memory saves its states at the end
            token = uow.scoring.save_states(
                tenant_id, {pid: s.to_json() for pid, s in states.items()}, now
            )
            for pid in states:
                self._tokens[(tenant_id, pid)] = token
        # Last: what followers tail (boards, outbox) is numbered in commit order on
        # PostgreSQL under a lock held to the commit, so it should be held briefly.
        produced.write(uow, tenant_id, now, quiet=self._quiet or memory is not None)
        outcome.points += len(produced.ledger)
        outcome.badges += len(produced.awards)
        outcome.errors += len(produced.failures)
        outcome.by_tenant[tenant_id] = outcome.by_tenant.get(tenant_id, 0) + len(events)

    def _evaluate_tenant(
        self,
        uow: UnitOfWork,
        tenant_id: str,
        events: list[StoredEvent],
        now: datetime,
        memory: dict[tuple[str, str], PlayerState] | None = None,
        ahead: TenantAhead | None = None,
    ) -> tuple[Produced, dict[str, PlayerState]] | None:
        """Evaluate a tenant's events on its players' states (reading only): the rows to
        write, and the states; None when the tenant has no rule set yet. ``ahead``: outside
        the write transaction, what was read is noted there (see ``write_ahead``)."""
        epochs = self.book.epochs(uow, tenant_id)
        if not epochs.epochs:
            return None
        retracted = uow.scoring.retracted(tenant_id, [e.id for e in events])
        player_ids = {e.player_id for e in events}
        if ahead is not None:
            ahead.retracted = retracted
            states, facts_of = self._load(uow, tenant_id, player_ids, self._pending, ahead.bases)
            for event in events:
                epochs.for_position(event.position)  # the versions read (and compiled) now
            # Evaluating needs no more reads: the writer's log may start over meanwhile.
            uow.end_snapshot()
        elif memory is None:
            states, facts_of = self._load(uow, tenant_id, player_ids)
        else:
            facts_of = self._facts_of(uow, tenant_id, player_ids)
            states = {pid: memory.setdefault((tenant_id, pid), PlayerState()) for pid in player_ids}
        produced = Produced()
        reviews = _Reviews(uow, tenant_id, events)
        for event in events:
            facts = facts_of.get(event.player_id) or PlayerFacts(event.player_id)
            state = states.setdefault(event.player_id, PlayerState())
            part = self._part(event)
            if state.applied(event.position, part):
                continue  # already applied: a redelivery
            scored_by = epochs.for_position(event.position)
            if scored_by is None:
                if event.id in retracted:
                    state.advance(event.position, part)
                continue  # logged before the first rule set went live
            version, rules = scored_by
            if ahead is not None and rules.doc.holds is not None:
                raise _Declined  # a hold reads, and records, a day's activity as it scores
            if _set_aside(rules, state, event, retracted, reviews, produced, now):
                state.advance(event.position, part)
                continue
            self._score(produced, version, rules, state, event, facts, now)
            state.advance(event.position, part)
        return produced, states

    def score_released(
        self, uow: UnitOfWork, tenant_id: str, player_id: str, event_ids: list[str]
    ) -> int:
        """Score a player's held events, in log order, now that a review released them (in
        ``uow``'s transaction); the player is no longer held today. Returns how many scored."""
        now = self.clock()
        epochs = self.book.epochs(uow, tenant_id)
        facts = PlayerFacts.of(uow.players.get(tenant_id, player_id), player_id)
        raw = uow.scoring.states(tenant_id, [player_id]).get(player_id)
        state = PlayerState.from_json(raw)
        retracted = uow.scoring.retracted(tenant_id, event_ids)
        produced = Produced()
        scored = 0
        for event_id in event_ids:
            event = uow.events.get(tenant_id, event_id)
            scored_by = epochs.for_position(event.position) if event else None
            if event is None or scored_by is None or event_id in retracted:
                continue
            version, rules = scored_by
            self._score(produced, version, rules, state, event, facts, now)
            scored += 1
        state.held, state.held_reason, state.cleared_day = False, "", state.day
        produced.write(uow, tenant_id, now, quiet=False)
        uow.scoring.save_states(tenant_id, {player_id: state.to_json()}, now)
        return scored

    def clear_hold(self, uow: UnitOfWork, tenant_id: str, player_id: str) -> None:
        """A review rejected the player's held events: they score again from now on."""
        now = self.clock()
        state = PlayerState.from_json(uow.scoring.states(tenant_id, [player_id]).get(player_id))
        state.held, state.held_reason, state.cleared_day = False, "", state.day
        uow.scoring.save_states(tenant_id, {player_id: state.to_json()}, now)

    def _score(
        self,
        produced: Produced,
        version: RuleSetVersion,
        rules: CompiledRuleSet,
        state: PlayerState,
        event: StoredEvent,
        facts: PlayerFacts,
        now: datetime,
    ) -> None:
        """Evaluate one event on the player's state; its rows go to ``produced``."""
        effects = self._effects(rules, state, event, facts)
        note_awards(rules, state, effects)
        produced.add(event, version, effects, now, starting_level(rules))
        if rules.boards:
            produced.entries.extend(
                board_entries(
                    rules, event.id, event.occurred_at, event.received_at, effects, event.player_id
                )
            )

    def _effects(
        self, rules: CompiledRuleSet, state: PlayerState, event: StoredEvent, facts: PlayerFacts
    ) -> list[Effect]:
        if event.position in self._poison:
            return [RuleFailed("engine", self._poison[event.position])]
        try:
            return evaluate(rules, state, event, facts)
        except Exception as exc:
            # A defect must cost one event, not stop scoring: remember it, abandon the batch
            # (the state may be half-updated), and skip the event on the retry.
            log.exception("evaluating event %s failed", event.id)
            self._poison[event.position] = f"{type(exc).__name__}: {exc}"
            raise


def _writers_share(tenant_id: str, player_id: str) -> bool:
    return partition_of(tenant_id, player_id) < _WRITER_PARTITIONS


def _helpers_share(tenant_id: str, player_id: str) -> bool:
    return partition_of(tenant_id, player_id) >= _WRITER_PARTITIONS


class _Declined(Exception):
    """Evaluating ahead is not for this batch."""


class _Reviews:
    """What a batch's holds need from the store, read once, when first needed: reviews of
    held events, and the previous days' typical activity."""

    def __init__(self, uow: UnitOfWork, tenant_id: str, events: list[StoredEvent]) -> None:
        self.uow, self.tenant_id, self.events = uow, tenant_id, events
        self._found: dict[str, str] | None = None
        self._typical: dict[str, float] = {}

    def typical(self, rules: CompiledRuleSet, occurred_at: datetime, now: datetime) -> float:
        """The previous day's median of active players' events (frozen once computed)."""
        day, start, end = previous_day(rules, occurred_at)
        found = self._typical.get(day)
        if found is None:
            found = self._typical[day] = self.uow.holds.typical_day(
                self.tenant_id, day, start, end, now
            )
        return found

    def of(self, event_id: str) -> str | None:
        if self._found is None:
            self._found = self.uow.holds.decided(self.tenant_id, [e.id for e in self.events])
        return self._found.get(event_id)


def _set_aside(
    rules: CompiledRuleSet,
    state: PlayerState,
    event: StoredEvent,
    retracted: set[str],
    reviews: _Reviews,
    produced: Produced,
    now: datetime,
) -> bool:
    """Whether the event is not to be scored: retracted, or held for review (anti-cheat).
    A replay meets reviewed holds again: it leaves the player as the review did."""
    holds = rules.doc.holds
    typical = None
    if holds is not None and holds.median_multiple is not None:
        typical = reviews.typical(rules, event.occurred_at, now)
    held = (
        hold_reason(rules, state, event.occurred_at, typical)
        if holds is not None or state.held
        else None
    )
    review = reviews.of(event.id) if held is not None else None
    if review is not None:
        state.held, state.held_reason, state.cleared_day = False, "", state.day
    if event.id in retracted:
        return True
    if held is not None and review is None:
        produced.held.append(HeldEvent(event.id, event.player_id, event.position, held, now))
        return True
    return False


@dataclass
class Produced:
    """Rows to write for a batch's effects."""

    ledger: list[LedgerRow] = field(default_factory=list)
    awards: list[AwardRow] = field(default_factory=list)
    level_ups: list[LevelUpRow] = field(default_factory=list)
    failures: list[RuleErrorRow] = field(default_factory=list)
    entries: list[BoardEntryRow] = field(default_factory=list)
    held: list[HeldEvent] = field(default_factory=list)
    # The order effects happened in, as (list, index): what others are told follows it.
    order: list[tuple[list[Any], int]] = field(default_factory=list)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (to and from the helper processes) with its rows as plain tuples: a
        NamedTuple is pickled as a call of its class, which took 3 times as long to dump and
        4 times as long to load (measured: a ledger row 1.55 / 2.25 µs, as a tuple made a
        LedgerRow again 0.52 / 0.63 µs)."""
        lists = [getattr(self, name) for name, _ in _ROW_LISTS]
        which = {id(rows): k for k, rows in enumerate(lists)}
        return {
            "rows": [[tuple(row) for row in rows] for rows in lists],
            "order": [(which[id(rows)], i) for rows, i in self.order],
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        lists = [
            [kind._make(row) for row in rows]
            for (_, kind), rows in zip(_ROW_LISTS, state["rows"], strict=True)
        ]
        for (name, _), rows in zip(_ROW_LISTS, lists, strict=True):
            setattr(self, name, rows)
        self.order = [(lists[k], i) for k, i in state["order"]]

    def write(self, uow: UnitOfWork, tenant_id: str, now: datetime, quiet: bool) -> None:
        """Everything in one transaction: effects, audit trail, and what others are told."""
        awards = self.awards
        uow.scoring.append_ledger(tenant_id, self.ledger, now)
        uow.scoring.add_awards(tenant_id, awards)
        uow.badges.log(
            tenant_id,
            [
                IssuanceRow(
                    a.id,
                    a.player_id,
                    a.badge_id,
                    "issued",
                    f"ruleset:{a.ruleset_id}@{a.ruleset_version}",
                    f"criteria met by event {a.event_id}" + (f" (tier {a.tier})" if a.tier else ""),
                    a.awarded_at,
                )
                for a in awards
            ],
        )
        uow.scoring.add_level_ups(tenant_id, self.level_ups)
        uow.scoring.add_rule_errors(tenant_id, self.failures)
        uow.boards.add_entries(tenant_id, self.entries)
        uow.holds.add(tenant_id, self.held)
        if quiet or not self.order:
            return
        outbox = Outbox(uow, tenant_id, now)
        points = outbox.wants_points()
        messages = []
        for rows, i in self.order:
            if rows is self.awards:
                messages.append(award_message(self.awards[i]))
            elif rows is self.level_ups:
                messages.append(level_message(self.level_ups[i]))
            elif points:
                messages.append(points_message(self.ledger[i], now))
        outbox.tell(messages)

    def add(
        self,
        event: StoredEvent,
        version: RuleSetVersion,
        effects: list[Effect],
        now: datetime,
        starting: bool = False,
    ) -> None:
        """``starting``: the first level is where every player starts (its threshold is 0):
        reaching it is recorded, but nobody is told."""
        for effect in effects:
            if isinstance(effect, PointsAwarded):
                self.order.append((self.ledger, len(self.ledger)))
                self.ledger.append(
                    LedgerRow(  # positional: by keyword, 1.8 µs a row instead of 0.46
                        event.player_id,
                        effect.currency,
                        effect.amount,
                        "rule",
                        effect.rule_id,
                        event.occurred_at,
                        version.ruleset_id,
                        version.version,
                        event.id,
                    )
                )
            elif isinstance(effect, BadgeAwarded):
                self.order.append((self.awards, len(self.awards)))
                self.awards.append(
                    AwardRow(
                        id=new_id("awd"),
                        player_id=event.player_id,
                        badge_id=effect.badge_id,
                        tier=effect.tier,
                        occurrence=effect.occurrence,
                        source="rule",
                        awarded_at=effect.awarded_at,
                        expires_at=effect.expires_at,
                        event_id=event.id,
                        ruleset_id=version.ruleset_id,
                        ruleset_version=version.version,
                    )
                )
            elif isinstance(effect, LevelReached):
                if not (starting and effect.index == 0):
                    self.order.append((self.level_ups, len(self.level_ups)))
                self.level_ups.append(
                    LevelUpRow(
                        event.player_id,
                        effect.currency,
                        effect.index,
                        effect.level,
                        event.id,
                        event.occurred_at,
                    )
                )
            elif isinstance(effect, RuleFailed):
                self.failures.append(
                    RuleErrorRow(
                        event.id,
                        event.player_id,
                        effect.rule_id,
                        version.ruleset_id,
                        version.version,
                        effect.message,
                        now,
                    )
                )


# Produced's lists of rows, each with its row's type (how it is pickled).
_ROW_LISTS: tuple[tuple[str, Any], ...] = (
    ("ledger", LedgerRow),
    ("awards", AwardRow),
    ("level_ups", LevelUpRow),
    ("failures", RuleErrorRow),
    ("entries", BoardEntryRow),
    ("held", HeldEvent),
)


def replay_share(
    open_database: Callable[[str], Database],
    url: str,
    partitioned: bool,
    share: tuple[int, int],
    tenant_id: str | None,
    end: int,
) -> ShareReplayed:
    """A child process's part of a replay (``ScoringService.replay_share``), with its peak
    memory."""
    collect_rarely()
    db = open_database(url)
    try:
        service = ScoringService(db, utc_now, RuleBook(), partitioned=partitioned)
        done = service.replay_share(share, tenant_id, end)
    finally:
        db.close()
    done.peak_rss = _peak_rss()
    return done


def helper_main(
    requests: Connection,
    results: Connection,
    open_database: Callable[[str], Database],
    url: str,
    batch_size: int,
) -> None:
    """The scoring-ahead helper process (``plaudit.services.ahead``). Told to start a run at
    a position, it evaluates batch after batch from there, each on the states the ones
    before it left, until the log is caught up or it is told otherwise; a thread hands the
    results over, so the next batch is evaluated while the last one is being received.
    Stops when told to, or when the pipe closes (its parent is gone)."""
    # An interrupt at the terminal reaches the whole process group: the parent decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    collect_rarely()
    db = open_database(url)
    service = ScoringService(db, utc_now, RuleBook(), batch_size=batch_size)
    # One result waiting here, one being sent, and what the pipe holds: the helper runs a
    # few batches ahead at most.
    replies: queue.Queue[bytes | None] = queue.Queue(maxsize=1)
    sender = threading.Thread(target=_send_replies, args=(results, replies), daemon=True)
    sender.start()
    run: tuple[int, int, datetime] | None = None  # (run number, next start, time)
    continuing = False

    def hand_over(reply: tuple[str, int, Any]) -> None:
        data = _pickled(reply)
        while True:
            try:
                replies.put(data, timeout=0.2)
                return
            except queue.Full:
                if not sender.is_alive():  # the parent closed its end
                    raise EOFError from None

    try:
        hand_over(("ready", 0, None))
        while True:
            if run is None or requests.poll():
                message = requests.recv()
                if message[0] != "start":
                    return
                _, number, start, now = message
                run, continuing = (number, start, now), False
                continue
            number, start, now = run
            batch: BatchAhead | None = None
            try:
                batch = service.evaluate_ahead(start, continuing, now)
                reply: tuple[str, int, Any] = ("evaluated", number, batch)
            except Exception as exc:
                log.exception("evaluating ahead from position %d failed", start)
                service.forget_caches()
                reply = ("failed", number, f"{type(exc).__name__}: {exc}")
            hand_over(reply)
            if batch is None or not batch.events:
                run = None  # declined, failed or caught up: wait to be told where to start
            else:
                run, continuing = (number, batch.end, now), True
    except (EOFError, OSError):
        return  # the parent is gone
    finally:
        with contextlib.suppress(queue.Full):
            replies.put_nowait(None)
        db.close()


def _pickled(reply: tuple[str, int, Any]) -> bytes:
    return pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)


def _send_replies(results: Connection, replies: queue.Queue[bytes | None]) -> None:
    """The helper's sending thread: writing a batch to the pipe (which holds far less than
    a batch: the write waits for the reader) runs here, beside the evaluation of the next
    one. Pickling stays in the evaluating thread: this one holds the interpreter lock only
    between writes."""
    while (reply := replies.get()) is not None:
        try:
            results.send_bytes(reply)
        except OSError:
            return  # the parent stopped listening (it is stopping)


def _peak_rss() -> int:
    """This process's peak memory in bytes: VmHWM (ru_maxrss would include what the parent
    held when it started us: Linux keeps it across fork and exec)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
