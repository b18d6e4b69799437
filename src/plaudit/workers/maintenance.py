"""Housekeeping that runs beside the API: the by-player index of the log, kept in large
batches off the ingest path; expired Idempotency-Keys, purged hourly."""

from __future__ import annotations

import logging
from datetime import timedelta

import anyio
import anyio.to_thread

from plaudit.services.dispatch import DispatchService
from plaudit.services.events import EventLogService
from plaudit.services.idempotency import IdempotencyService

log = logging.getLogger("plaudit.maintenance")


class IdempotencyJanitor:
    def __init__(self, service: IdempotencyService, every: timedelta = timedelta(hours=1)) -> None:
        self.service = service
        self.every = every

    async def run(self) -> None:
        while True:
            try:
                removed = await anyio.to_thread.run_sync(self.service.purge_expired)
                if removed:
                    log.info("purged %d expired idempotency keys", removed)
            except Exception:  # housekeeping must never take the server down
                log.exception("idempotency purge failed")
            await anyio.sleep(self.every.total_seconds())


class OutboxJanitor:
    """Drops delivered webhooks (with their attempt logs) and told messages after the
    retention period; dead letters stay until an admin redelivers them."""

    def __init__(
        self, dispatch: DispatchService, retention: timedelta, every: timedelta = timedelta(hours=1)
    ) -> None:
        self.dispatch = dispatch
        self.retention = retention
        self.every = every

    async def run(self) -> None:
        while True:
            try:
                removed = await anyio.to_thread.run_sync(self.dispatch.purge, self.retention)
                if removed:
                    log.info("purged %d delivered webhooks and told messages", removed)
            except Exception:  # housekeeping must never take the server down
                log.exception("outbox purge failed")
            await anyio.sleep(self.every.total_seconds())


class PlayerIndexer:
    """Keeps player_events up with the log. Waits while the log is quiet or the index is
    close behind: large batches write each index page once for many events."""

    def __init__(self, log_service: EventLogService, idle: float = 1.0) -> None:
        self.log_service = log_service
        self.idle = idle

    async def run(self) -> None:
        while True:
            try:
                count = await anyio.to_thread.run_sync(self.log_service.index_players)
            except Exception:  # reads fall back to scanning the tail; never fatal
                log.exception("indexing the log by player failed")
                count = 0
            if count < 5_000:
                await anyio.sleep(self.idle)
