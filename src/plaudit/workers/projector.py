"""The leaderboard projector of the embedded mode: keeps the projection in step with SQL,
and reconciles it with SQL on a schedule (daily by default)."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import anyio
import anyio.to_thread

from plaudit.services.closings import WindowClosings
from plaudit.services.leaderboards import LeaderboardService
from plaudit.workers.wakeup import Wakeup

log = logging.getLogger("plaudit.leaderboards")


class Projector:
    def __init__(
        self,
        leaderboards: LeaderboardService,
        reconcile_every: timedelta,
        poll: float = 0.1,
        retire_every: float = 60.0,
        closings: WindowClosings | None = None,
        wakeup: Wakeup | None = None,
    ) -> None:
        self.leaderboards = leaderboards
        # Set by scoring in this process after each commit: the projection follows at once.
        self.wakeup = wakeup or Wakeup()
        # Told to webhooks and streams when a window closes, on the retire schedule.
        self.closings = closings
        self.reconcile_every = reconcile_every.total_seconds()
        # Scoring also syncs after each batch; polling catches adjustments and retractions.
        self.poll = poll
        # Closed windows leave the projection within this many seconds of closing.
        self.retire_every = retire_every

    async def run(self) -> None:
        last_reconcile = last_retire = time.monotonic()
        while True:
            try:
                if time.monotonic() - last_retire >= self.retire_every:
                    await anyio.to_thread.run_sync(self.leaderboards.retire)
                    if self.closings is not None:
                        closed = await anyio.to_thread.run_sync(self.closings.announce)
                        if closed:
                            log.info("windows closed: %s", ", ".join(closed))
                    last_retire = time.monotonic()
                if time.monotonic() - last_reconcile >= self.reconcile_every:
                    report = await anyio.to_thread.run_sync(self.leaderboards.reconcile)
                    last_reconcile = time.monotonic()
                    level = logging.WARNING if report.drift else logging.INFO
                    log.log(
                        level,
                        "reconciled %d windows: %d missing, %d extra, %d wrong; %d retired",
                        report.windows,
                        report.missing,
                        report.extra,
                        report.wrong,
                        len(report.retired),
                    )
                await anyio.to_thread.run_sync(self.leaderboards.sync)
            except Exception:  # the projection can lag; it must not stop
                log.exception("leaderboard projection failed; retrying")
                await anyio.sleep(1.0)
            await self.wakeup.wait(self.poll)
