"""The scale-out worker process: what ``plaudit worker`` runs."""

from __future__ import annotations

import asyncio
import logging
import signal

import anyio
import anyio.to_thread

from plaudit.bootstrap import Container, conninfo, dispatcher
from plaudit.store.sql.boards import BOARD_CHANGES
from plaudit.store.sql.webhooks import OUTBOX_CHANGES
from plaudit.workers.maintenance import IdempotencyJanitor, OutboxJanitor
from plaudit.workers.projector import Projector
from plaudit.workers.scale_out import Job, ScaleOutWorker, hear
from plaudit.workers.wakeup import Wakeup

log = logging.getLogger("plaudit.worker")

# The projector follows SQL when a transaction that changed board scores commits: the
# scoring of its own process wakes it, other processes' commits by PostgreSQL's NOTIFY
# (workers.scale_out.hear). It also looks this often, for changes committed while its
# listening connection was down (it used to poll every 20 ms: 50 syncs a second, each a
# few statements, busy or idle).
_PROJECTOR_POLL = 0.5


async def run_worker(container: Container) -> None:
    settings = container.settings
    stream = container.stream
    if stream is not None:
        await stream.connect()

    scored = Wakeup()

    async def projector() -> None:
        # A Redis that lost its data (or a first start) is rebuilt from SQL.
        await anyio.to_thread.run_sync(container.leaderboards.start)
        following = Projector(
            container.leaderboards,
            settings.leaderboards.reconcile_every,
            poll=_PROJECTOR_POLL,
            closings=container.closings,
            wakeup=scored,
        )
        await told(BOARD_CHANGES, scored, following.run)

    async def dispatch() -> None:
        # It also looks every PLAUDIT_WEBHOOKS__POLL.
        delivering = dispatcher(container)
        await told(OUTBOX_CHANGES, delivering.wakeup, delivering.run)

    async def told(channel: str, wakeup: Wakeup, job: Job) -> None:
        """Run a job that follows a table, woken whenever a transaction that notified the
        table's channel commits, in any process."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(hear, conninfo(settings), channel, wakeup.set)
            tg.start_soon(job)

    async def housekeeping() -> None:
        # No player indexer: PostgreSQL's log is indexed by player as it is written.
        async with anyio.create_task_group() as tg:
            tg.start_soon(IdempotencyJanitor(container.idempotency).run)
            tg.start_soon(OutboxJanitor(container.dispatch, settings.webhooks.retention).run)

    worker = ScaleOutWorker(
        container.db,
        container.scoring,
        conninfo(settings),
        stream,
        singletons={
            "leaderboard projection": projector,
            "webhook dispatcher": dispatch,
            "housekeeping": housekeeping,
        },
        after_batch=scored.set,
        poll=settings.worker.poll.total_seconds(),
        step_interval=settings.worker.step_interval.total_seconds(),
        sweep_every=settings.stream.sweep_every.total_seconds(),
    )
    main = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        if main is not None:
            loop.add_signal_handler(sig, main.cancel)
    try:
        await worker.run()
    except asyncio.CancelledError:
        log.info("worker stopping")
    finally:
        if stream is not None:
            await stream.close()
