"""``plaudit worker``: the scale-out mode's scoring, projection and delivery process.

Any number of workers share the work through PostgreSQL's advisory locks, held on one
session per worker, so that a worker that dies (even by SIGKILL) loses its locks the moment
PostgreSQL sees its connection close; nothing here decides membership by itself:

- Every worker holds a shared "member" lock; counting its holders gives the live workers.
- Partition leases: each worker takes its fair share (partitions / live workers, rounded
  up) of the log's partitions, and gives back any above its share, so a new worker gets
  work within seconds and a dead one's partitions are taken over as soon as it is gone.
  A lease is an optimisation, not the guarantee: scoring a partition locks its cursor row,
  so two workers that both believe they hold it take turns and never apply an event twice.
- Singleton jobs (the leaderboard projection, the webhook dispatcher, housekeeping) run in
  one worker at a time, under an exclusive lock each; another worker takes one over when
  its holder dies.
- The sweeper (in every worker) publishes to the stream again for any partition whose log
  is ahead of its scoring cursor and whose cursor has not moved since its last look: a
  stream message lost in a NATS crash delays those events by a sweep, never loses them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

import anyio.to_thread
import psycopg
from psycopg import sql

from plaudit.domain.partitions import PARTITIONS
from plaudit.services.scoring import ScoringService, partitions_behind
from plaudit.store.ports import Database
from plaudit.stream.nats import EventStream

if TYPE_CHECKING:
    from nats.aio.msg import Msg

log = logging.getLogger("plaudit.worker")

# Advisory lock classes (the first of the two keys); the second key is the partition or job.
_MEMBER = 0x504C_4D42
_PARTITION = 0x504C_5054
_SINGLETON = 0x504C_534E
# How long a stopped task may take to finish.
_STOP_WAIT = 2.0


class Leases:
    """Session-level advisory locks on one connection of this worker's own."""

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo
        self._conn: psycopg.Connection[Any] | None = None

    def open(self) -> None:
        self.close()
        self._conn = psycopg.connect(
            self._conninfo, autocommit=True, application_name="plaudit-worker", connect_timeout=5
        )
        self._conn.execute("SELECT pg_advisory_lock_shared(%s, 0)", (_MEMBER,))

    def _c(self) -> psycopg.Connection[Any]:
        if self._conn is None:
            raise RuntimeError("leases not open")
        return self._conn

    def members(self) -> int:
        row = (
            self._c()
            .execute(
                # Advisory locks are per database; pg_locks lists every database's.
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                " AND classid::bigint = %s AND objid::bigint = 0 AND objsubid = 2",
                (_MEMBER,),
            )
            .fetchone()
        )
        return max(1, int(row[0])) if row else 1

    def take(self, kind: int, key: int) -> bool:
        row = self._c().execute("SELECT pg_try_advisory_lock(%s, %s)", (kind, key)).fetchone()
        return bool(row and row[0])

    def give_back(self, kind: int, key: int) -> None:
        self._c().execute("SELECT pg_advisory_unlock(%s, %s)", (kind, key))

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # a broken connection: its locks are gone already
                log.debug("closing the lease connection", exc_info=True)
            self._conn = None


Job = Callable[[], Coroutine[Any, Any, None]]


class ScaleOutWorker:
    def __init__(
        self,
        db: Database,
        scoring: ScoringService,
        conninfo: str,
        stream: EventStream | None,
        singletons: dict[str, Job],
        after_batch: Callable[[], None] | None = None,
        poll: float = 0.2,
        sweep_every: float = 2.0,
        rebalance_every: float = 1.0,
        step_interval: float = 0.0,
    ) -> None:
        self.db = db
        self.scoring = scoring
        self.stream = stream
        self.leases = Leases(conninfo)
        self.singletons = singletons
        self.after_batch = after_batch
        self.poll = poll
        self.sweep_every = sweep_every
        self.rebalance_every = rebalance_every
        self.step_interval = step_interval
        self._partitions: dict[int, asyncio.Task[None]] = {}
        self._jobs: dict[str, asyncio.Task[None]] = {}
        # Messages fetched per partition, acknowledged once their partition is scored; the
        # scorer is woken when any arrives.
        self._fetched: dict[int, list[Msg]] = {}
        self._wake = asyncio.Event()
        self._order = list(range(PARTITIONS))
        random.shuffle(self._order)  # workers starting together reach for different ones

    @property
    def owned(self) -> list[int]:
        return sorted(self._partitions)

    async def run(self) -> None:
        sweeper = asyncio.create_task(self._sweep_forever(), name="sweeper")
        scorer = asyncio.create_task(self._score_forever(), name="scorer")
        try:
            while True:
                try:
                    if not self._partitions and not self._jobs:
                        await anyio.to_thread.run_sync(self.leases.open)
                    await self._rebalance()
                except (psycopg.Error, OSError) as exc:
                    # The lease connection is gone, and with it every lock: stop all work
                    # and start over (another worker may hold those partitions by now).
                    log.warning("worker lost its leases (%s); starting over", exc)
                    await self._stop_all()
                    await asyncio.sleep(1.0)
                    continue
                await asyncio.sleep(self.rebalance_every)
        finally:
            sweeper.cancel()
            scorer.cancel()
            await self._stop_all()
            self.leases.close()

    async def _rebalance(self) -> None:
        members = await anyio.to_thread.run_sync(self.leases.members)
        share = math.ceil(PARTITIONS / members)
        for partition in self.owned[share:]:
            await self._stop(self._partitions.pop(partition))
            self._fetched.pop(partition, None)  # unacknowledged: the next holder gets them
            await anyio.to_thread.run_sync(self.leases.give_back, _PARTITION, partition)
            log.info("partition %d given back (%d workers)", partition, members)
        for partition in self._order:
            if len(self._partitions) >= share:
                break
            if partition in self._partitions:
                continue
            if await anyio.to_thread.run_sync(self.leases.take, _PARTITION, partition):
                self._partitions[partition] = asyncio.create_task(
                    self._fetch_forever(partition), name=f"partition-{partition}"
                )
                self._wake.set()  # its backlog, if any, is scored at once
                log.info("partition %d taken (%d workers)", partition, members)
        for number, (name, job) in enumerate(sorted(self.singletons.items())):
            running = self._jobs.get(name)
            if running is not None and running.done():
                if not running.cancelled() and running.exception() is not None:
                    log.error("%s stopped", name, exc_info=running.exception())
                await anyio.to_thread.run_sync(self.leases.give_back, _SINGLETON, number)
                del self._jobs[name]  # it failed: let any worker start it again
                running = None
            if running is None and await anyio.to_thread.run_sync(
                self.leases.take, _SINGLETON, number
            ):
                self._jobs[name] = asyncio.create_task(job(), name=name)
                log.info("running %s", name)

    @staticmethod
    async def _stop(task: asyncio.Task[None]) -> None:
        """Cancel a task and wait for it, a bounded time: a task stuck in its clean-up (a
        stream call on a connection that is being re-established) must not hold up the
        rebalancing, which would keep its partition's lease with nobody scoring it."""
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=_STOP_WAIT)
        if not done:
            log.warning("%s did not stop within %.0f s; going on", task.get_name(), _STOP_WAIT)
            return
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed", task.get_name(), exc_info=task.exception())

    async def _stop_all(self) -> None:
        for task in [*self._partitions.values(), *self._jobs.values()]:
            await self._stop(task)
        self._partitions.clear()
        self._jobs.clear()

    async def _fetch_forever(self, partition: int) -> None:
        """A held partition's messages: kept for the scorer, which is woken."""
        stream = self.stream
        if stream is None:
            return  # no stream: the scorer polls

        def deliver(message: Msg) -> None:
            self._fetched.setdefault(partition, []).append(message)
            self._wake.set()

        feed = None
        try:
            while True:
                try:
                    if feed is None:
                        feed = await stream.feed(partition, deliver)
                    await feed.watch()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("following partition %d failed; retrying", partition)
                    if feed is not None:
                        await feed.stop()
                    feed = None
                    await asyncio.sleep(1.0)
        finally:
            if feed is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(feed.stop(), _STOP_WAIT / 2)

    async def _score_forever(self) -> None:
        """One scoring step at a time for all the partitions held, each step one
        transaction: few events per partition still make one large batch. Messages are
        acknowledged only after the step that scored their partition committed. A step
        starts ``step_interval`` after the previous one started, or later: what comes
        meanwhile waits for it (a step's cost hardly depends on its size)."""
        while True:
            if self.stream is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll)
            else:
                await self._wake.wait()
            self._wake.clear()
            started = time.monotonic()
            held = self.owned
            if not held:
                continue
            fetched = {p: self._fetched.pop(p) for p in held if p in self._fetched}
            try:
                await self._drain(held)
            except asyncio.CancelledError:
                raise
            except Exception:
                # The database is unwell: the messages stay unacknowledged and come back
                # after ack_wait (or the sweeper announces again); try again shortly.
                log.exception("scoring partitions %s failed; retrying", held)
                await asyncio.sleep(1.0)
                self._wake.set()
                continue
            for messages in fetched.values():
                for message in messages:
                    with contextlib.suppress(Exception):  # unacknowledged: delivered again
                        await message.ack()
            await asyncio.sleep(max(0.0, self.step_interval - (time.monotonic() - started)))

    async def _drain(self, partitions: list[int]) -> None:
        while True:
            outcome = await anyio.to_thread.run_sync(self.scoring.score_partitions, partitions)
            if outcome.events and self.after_batch is not None:
                self.after_batch()
            if outcome.events < self.scoring.batch_size:
                return

    async def _sweep_forever(self) -> None:
        seen: dict[int, int] = {}
        while True:
            await asyncio.sleep(self.sweep_every)
            try:
                seen = await self._sweep(seen)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sweep failed; retrying")

    async def _sweep(self, seen: dict[int, int]) -> dict[int, int]:
        """Publish again for partitions behind whose cursor has not moved since last time."""
        behind = await anyio.to_thread.run_sync(self._behind)
        stuck = {p: cursor for p, cursor in behind.items() if seen.get(p) == cursor}
        if stuck and self.stream is not None:
            tenants = await anyio.to_thread.run_sync(self._next_tenants, stuck)
            for partition, cursor in stuck.items():
                tenant = tenants.get(partition)
                if tenant is None:
                    continue  # scored meanwhile
                log.info("partition %d stuck at %d: announcing it again", partition, cursor)
                # One announcement per partition and cursor every ten seconds, whichever
                # workers sweep (the server drops the copies).
                key = f"sweep-{partition}-{cursor}-{int(time.time() // 10)}"
                await self.stream.publish(tenant, partition, key, {"sweep": cursor})
        return behind

    def _behind(self) -> dict[int, int]:
        with self.db.read() as uow:
            return partitions_behind(uow)

    def _next_tenants(self, stuck: dict[int, int]) -> dict[int, str]:
        """The tenant of each stuck partition's next event (what its announcement names)."""
        found: dict[int, str] = {}
        with self.db.read() as uow:
            for partition, cursor in stuck.items():
                pending = uow.events.in_partition(partition, cursor, 1)
                if pending:
                    found[partition] = pending[0].tenant_id
        return found


async def hear(conninfo: str, channel: str, heard: Callable[[], None], retry: float = 1.0) -> None:
    """Call ``heard`` each time a transaction that notified ``channel`` commits (PostgreSQL
    LISTEN), and once on every (re)connection for what committed while not listening.
    Reconnects after a failure; whoever is told keeps a slow poll for such gaps."""
    while True:
        try:
            conn = await psycopg.AsyncConnection.connect(
                conninfo, autocommit=True, application_name="plaudit-listener", connect_timeout=5
            )
            async with conn:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                heard()
                async for _ in conn.notifies():
                    heard()
        except (psycopg.Error, OSError) as exc:
            log.warning("listening on %s failed (%s); again in %.0f s", channel, exc, retry)
            await asyncio.sleep(retry)
