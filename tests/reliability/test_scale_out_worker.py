"""Scale-out workers in this process, on PostgreSQL, Redis and NATS JetStream: partitions
shared fairly and taken over when a worker goes; events scored from stream announcements;
events whose announcement was lost scored all the same, by the sweeper."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import psycopg
import pytest
from sqlalchemy import create_engine, text

from plaudit.bootstrap import Container, build, conninfo, prepare_scale_out
from plaudit.domain.events import IncomingEvent
from plaudit.domain.partitions import PARTITIONS
from plaudit.services.scoring import BatchOutcome
from plaudit.settings import LeaderboardSettings, Settings, StreamSettings
from plaudit.store.sql.boards import BOARD_CHANGES
from plaudit.store.sql.webhooks import OUTBOX_CHANGES
from plaudit.workers.scale_out import _MEMBER, ScaleOutWorker, hear
from tests.support.postgres import POSTGRES_URL, empty
from tests.support.redis_keys import REDIS_URL, unique_prefix

pytestmark = [pytest.mark.anyio, pytest.mark.postgres, pytest.mark.redis, pytest.mark.nats]

NATS_URL = "nats://127.0.0.1:4222"
RULES = """
currencies: [xp]
rules:
  - {id: task, on: task.done, award: {xp: 2}}
  - {id: step, on: step.done, award: {xp: 10}, cap: {per: day, max: {xp: 30}}}
"""


@pytest.fixture
async def scaled(postgres_url: str, tmp_path: Path) -> AsyncIterator[Container]:
    import os

    engine = create_engine(postgres_url)
    try:
        empty(engine)
    finally:
        engine.dispose()
    settings = Settings(
        data_dir=tmp_path,
        database_url=postgres_url,
        redis_url=REDIS_URL,
        stream_url=os.environ.get("PLAUDIT_TEST_NATS_URL", NATS_URL),
        # A worker that goes leaves the messages it fetched unacknowledged: back in 2 s.
        stream=StreamSettings(prefix=f"t{uuid4().hex[:12]}", ack_wait=timedelta(seconds=2)),
        leaderboards=LeaderboardSettings(redis_prefix=unique_prefix()),
        _env_file=None,
    )
    container = build(settings)
    await asyncio.to_thread(prepare_scale_out, container)
    view = container.rulesets.create("default", "p", RULES)
    container.rulesets.publish("default", view.record.id, "test")
    stream = container.stream
    assert stream is not None
    await stream.connect()
    try:
        yield container
    finally:
        await stream.delete()
        await stream.close()
        container.close()


def _worker(
    container: Container, sweep_every: float = 60.0, step_interval: float = 0.0
) -> ScaleOutWorker:
    return ScaleOutWorker(
        container.db,
        container.scoring,
        conninfo(container.settings),
        container.stream,
        singletons={},
        sweep_every=sweep_every,
        rebalance_every=0.1,
        step_interval=step_interval,
    )


def _ingest(container: Container, count: int, tag: str) -> None:
    at = datetime(2026, 11, 30, 9, tzinfo=UTC)
    events = [
        IncomingEvent(f"{tag}{i}", "lms", "task.done", f"u{i % 40}", at, {}) for i in range(count)
    ]
    container.ingest.ingest("default", events)


def _ledger(container: Container) -> tuple[int, float]:
    with container.db.read() as uow:
        rows = uow.conn.execute(text("SELECT count(*), coalesce(sum(amount), 0) FROM ledger"))
        count, total = rows.one()
    return int(count), float(total)


async def _until(check: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


TOLD = """
badges:
  - {id: starter, name: Starter, criteria: {count: {on: task.done, at_least: 1}}}
leaderboards:
  - {id: xp, name: XP, metric: {currency: xp}}
"""


@pytest.mark.parametrize("channel", [BOARD_CHANGES, OUTBOX_CHANGES])
async def test_listeners_hear_of_each_commit_that_changed_what_they_follow(
    scaled: Container, channel: str
) -> None:
    view = scaled.rulesets.create("default", "told", RULES + TOLD)  # board totals, messages
    scaled.rulesets.publish("default", view.record.id, "test")
    heard = asyncio.Event()
    listening = asyncio.create_task(hear(conninfo(scaled.settings), channel, heard.set))
    try:
        await asyncio.wait_for(heard.wait(), 10)  # once listening: what committed before
        heard.clear()
        await asyncio.to_thread(_ingest, scaled, 5, "a")  # logged only: nothing to follow
        await asyncio.sleep(0.5)
        assert not heard.is_set()
        assert (await asyncio.to_thread(scaled.scoring.score_pending)).events == 5
        await asyncio.wait_for(heard.wait(), 10)
    finally:
        listening.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listening


async def test_announced_events_are_scored_by_the_partitions_holder(scaled: Container) -> None:
    stream = scaled.stream
    assert stream is not None
    publisher = asyncio.create_task(stream.run_publisher())
    scaling = _worker(scaled)
    worker = asyncio.create_task(scaling.run())  # no sweeps: only the stream
    try:
        # Ingested once the worker holds every partition (and has looked at their empty
        # backlog): only the announcements can tell it of the events.
        await _until(lambda: len(scaling.owned) == PARTITIONS, 15, "partitions taken")
        await asyncio.sleep(0.5)
        await asyncio.to_thread(_ingest, scaled, 300, "a")
        await _until(lambda: _ledger(scaled) == (300, 600.0), 15, f"scored {_ledger(scaled)}")
    finally:
        worker.cancel()
        publisher.cancel()
        await asyncio.gather(worker, publisher, return_exceptions=True)


async def test_steps_start_no_closer_than_the_step_interval_and_score_everything(
    scaled: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step costs about the same whatever its size: announcements that come within the
    interval wait for one step together."""
    stream = scaled.stream
    assert stream is not None
    starts: list[float] = []
    score = scaled.scoring.score_partitions

    def timed(partitions: list[int]) -> BatchOutcome:
        starts.append(time.monotonic())
        return score(partitions)

    monkeypatch.setattr(scaled.scoring, "score_partitions", timed)
    publisher = asyncio.create_task(stream.run_publisher())
    scaling = _worker(scaled, step_interval=0.3)
    worker = asyncio.create_task(scaling.run())
    try:
        await _until(lambda: len(scaling.owned) == PARTITIONS, 15, "partitions taken")
        await asyncio.sleep(0.5)
        starts.clear()
        for batch in range(12):  # announcements every 50 ms, for 0.6 s
            await asyncio.to_thread(_ingest, scaled, 20, f"i{batch}-")
            await asyncio.sleep(0.05)
        await _until(lambda: _ledger(scaled) == (240, 480.0), 15, f"scored {_ledger(scaled)}")
    finally:
        worker.cancel()
        publisher.cancel()
        await asyncio.gather(worker, publisher, return_exceptions=True)
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert len(starts) >= 2
    assert min(gaps) > 0.29, gaps


async def test_events_whose_announcement_was_lost_are_scored_after_a_sweep(
    scaled: Container,
) -> None:
    scaled.ingest.on_appended = None  # committed, never announced: as if NATS lost it
    await asyncio.to_thread(_ingest, scaled, 200, "b")
    worker = asyncio.create_task(_worker(scaled, sweep_every=0.2).run())
    try:
        await _until(lambda: _ledger(scaled) == (200, 400.0), 15, f"scored {_ledger(scaled)}")
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)


async def test_partitions_are_shared_fairly_and_taken_over_when_a_worker_goes(
    scaled: Container,
) -> None:
    first, second = _worker(scaled), _worker(scaled)
    # A worker of another deployment, on another database of the same server, is not one
    # of ours (advisory locks are per database; pg_locks lists them all).
    stranger = psycopg.connect(POSTGRES_URL.replace("+psycopg", ""), autocommit=True)
    stranger.execute("SELECT pg_advisory_lock_shared(%s, 0)", (_MEMBER,))
    running = [asyncio.create_task(first.run()), asyncio.create_task(second.run())]
    try:

        def shared() -> bool:
            return len(first.owned) == len(second.owned) == PARTITIONS // 2

        await _until(shared, 10, f"owned {first.owned} and {second.owned}")
        assert not set(first.owned) & set(second.owned)
        running[0].cancel()
        await asyncio.gather(running[0], return_exceptions=True)
        await _until(lambda: len(second.owned) == PARTITIONS, 10, f"owned {second.owned}")
        # And the survivor scores every partition.
        scaled.ingest.on_appended = None
        await asyncio.to_thread(_ingest, scaled, 100, "c")
        assert scaled.stream is not None
        for partition in range(PARTITIONS):
            await scaled.stream.publish("default", partition, f"c-{partition}", {})
        await _until(lambda: _ledger(scaled) == (100, 200.0), 15, f"scored {_ledger(scaled)}")
    finally:
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        stranger.close()


async def test_each_players_events_are_scored_in_log_order_by_two_workers(
    scaled: Container,
) -> None:
    """A daily cap makes the outcome depend on order: of each player's steps, exactly the
    first three in the log earn xp, however the partitions fall to the two workers."""
    assert scaled.stream is not None
    publisher = asyncio.create_task(scaled.stream.run_publisher())
    running = [asyncio.create_task(_worker(scaled).run()) for _ in range(2)]
    at = datetime(2026, 11, 30, 9, tzinfo=UTC)
    try:
        for batch in range(10):  # each batch: one step for each of 40 players, shuffled
            players = [f"p{(batch * 17 + i * 7) % 40}" for i in range(40)]
            events = [
                IncomingEvent(f"s{batch}-{p}", "lms", "step.done", p, at, {}) for p in players
            ]
            await asyncio.to_thread(scaled.ingest.ingest, "default", events)

        def scored() -> bool:  # every partition's cursor at its last event
            with scaled.db.read() as uow:
                return all(
                    uow.scoring.cursor(f"scoring:{p}") >= last
                    for p, last in uow.events.last_positions().items()
                )

        await _until(scored, 20, f"scored {_ledger(scaled)}")
        await asyncio.sleep(0.5)  # anything more would be a defect: let it show
        with scaled.db.read() as uow:
            conn = uow.conn
            earned = conn.execute(
                text(
                    "SELECT e.actor, e.key FROM ledger l JOIN events e ON e.id = l.event_id"
                    " WHERE l.rule_id = 'step' AND l.amount > 0"
                )
            ).all()
            logged = conn.execute(
                text("SELECT actor, key FROM events WHERE type = 'step.done' ORDER BY position")
            ).all()
        first: dict[str, list[str]] = {}
        for actor, key in logged:
            first.setdefault(actor, [])
            if len(first[actor]) < 3:
                first[actor].append(key)
        by_player: dict[str, set[str]] = {}
        for actor, key in earned:
            by_player.setdefault(actor, set()).add(key)
        assert by_player == {actor: set(keys) for actor, keys in first.items()}
    finally:
        for task in [*running, publisher]:
            task.cancel()
        await asyncio.gather(*running, publisher, return_exceptions=True)
