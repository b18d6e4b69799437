"""Housekeeping that runs beside the API: expired Idempotency-Keys are purged hourly."""

from __future__ import annotations

import logging
from datetime import timedelta

import anyio
import anyio.to_thread

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
