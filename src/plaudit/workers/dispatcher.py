"""The webhook dispatcher: claims due deliveries, sends them concurrently, records outcomes.

Store work runs on a thread (one transaction per round records, fans out and claims);
sending is async, so a slow or hanging receiver holds one slot, never the loop. At most
``concurrency`` attempts run at once in this process, and a subscription's own
``max_in_flight`` caps how many of them go to one endpoint.
"""

from __future__ import annotations

import logging
import time

import anyio
import anyio.to_thread

from plaudit.domain.clock import Clock
from plaudit.services.dispatch import DispatchService, Job, Outcome
from plaudit.webhooks.sender import SendFailed, WebhookSender
from plaudit.workers.wakeup import Wakeup

log = logging.getLogger("plaudit.webhooks")


class Dispatcher:
    def __init__(
        self,
        service: DispatchService,
        sender: WebhookSender,
        clock: Clock,
        *,
        concurrency: int = 64,
        poll: float = 0.1,
        gather: float = 0.01,
        wakeup: Wakeup | None = None,
    ) -> None:
        self.service = service
        self.sender = sender
        self.clock = clock
        self.concurrency = concurrency
        self.poll = poll
        # After a wake-up, let more attempts end first, so that one round records many.
        self.gather = gather
        # Set by in-process scoring when it wrote messages, and by each attempt that ends.
        self.wakeup = wakeup or Wakeup()
        self._outcomes: list[Outcome] = []
        self._in_flight = 0

    async def run(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                while True:
                    await self._round(tg)
                    await self.wakeup.wait(self.poll)
                    await anyio.sleep(self.gather)
        finally:
            await self.sender.aclose()

    async def _round(self, tg: anyio.abc.TaskGroup) -> None:
        """Record what ended, and start what is due (nothing is claimable until an attempt
        ends or a message arrives, so the caller then waits for either)."""
        outcomes, self._outcomes = self._outcomes, []
        capacity = self.concurrency - self._in_flight
        if not outcomes and (capacity <= 0 or await anyio.to_thread.run_sync(self.service.idle)):
            return
        try:
            jobs = await anyio.to_thread.run_sync(self.service.step, outcomes, capacity)
        except Exception:  # the store is unwell: keep the outcomes, try again shortly
            log.exception("webhook dispatch step failed; retrying")
            self._outcomes[:0] = outcomes
            await anyio.sleep(1.0)
            return
        for job in jobs:
            self._in_flight += 1
            tg.start_soon(self._attempt, job)

    async def _attempt(self, job: Job) -> None:
        outcome = await self.attempt(job)
        self._outcomes.append(outcome)
        self._in_flight -= 1
        self.wakeup.set()

    async def attempt(self, job: Job) -> Outcome:
        """Send one job; how it went (never raises)."""
        started = self.clock()
        began = time.perf_counter()
        try:
            sent = await self.sender.post(job.url, job.headers, job.body)
        except SendFailed as exc:
            return Outcome(job, started, exc.latency_ms, error=exc.reason)
        except Exception as exc:  # a defect must cost one attempt, not the dispatcher
            log.exception("sending webhook %s failed", job.message_id)
            elapsed = (time.perf_counter() - began) * 1000
            return Outcome(job, started, elapsed, error=f"{type(exc).__name__}: {exc}")
        return Outcome(
            job,
            started,
            sent.latency_ms,
            status=sent.status,
            excerpt=sent.excerpt,
            retry_after=sent.headers.get("retry-after"),
        )
