"""The in-process scoring worker of the embedded mode: follows the log, never blocks ingest."""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio
import anyio.to_thread

from plaudit.services.scoring import ScoringService
from plaudit.workers.wakeup import Wakeup

log = logging.getLogger("plaudit.scoring")


class ScoringWorker:
    def __init__(
        self,
        scoring: ScoringService,
        idle_poll: float = 0.2,
        after_batch: Callable[[], object] | None = None,
        wakeup: Wakeup | None = None,
    ) -> None:
        self.scoring = scoring
        # Set when events were committed: scoring starts at once instead of at the next poll.
        self.wakeup = wakeup or Wakeup()
        # Run in the same thread after each committed batch (the leaderboard projection).
        self.after_batch = after_batch
        # How long to wait when the log is caught up; a busy log is followed without pause.
        self.idle_poll = idle_poll

    async def run(self) -> None:
        while True:
            try:
                outcome = await anyio.to_thread.run_sync(self.scoring.score_pending)
            except Exception:  # a bad batch must not stop scoring for good; retried next round
                log.exception("scoring failed; retrying")
                await anyio.sleep(1.0)
                continue
            if outcome.events == 0:
                await self.wakeup.wait(self.idle_poll)
            elif self.after_batch is not None:
                try:
                    await anyio.to_thread.run_sync(self.after_batch)
                except Exception:
                    log.exception("after a scoring batch")
