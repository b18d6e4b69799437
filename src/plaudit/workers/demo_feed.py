"""Demo event feeds: in-process (``serve --demo``) and over HTTP (``plaudit demo``)."""

from __future__ import annotations

import itertools
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from plaudit.demo import DemoStream, as_json

if TYPE_CHECKING:
    from plaudit.bootstrap import Container

log = logging.getLogger("plaudit.demo")


class DemoFeed:
    """Streams demo events into the ingest service at a steady, gentle rate."""

    def __init__(self, container: Container, rate: float, seed: int | None = None) -> None:
        self.container = container
        self.rate = max(rate, 0.1)
        # A new seed per start: a restarted demo sends new events, not old duplicates.
        self.stream = DemoStream(
            seed=seed if seed is not None else time.time_ns() % 1_000_000,
            start_after=container.event_log.last_sequences(container.default_tenant),
        )

    async def run(self) -> None:
        tick = 1.0 if self.rate < 10 else 0.1
        per_tick = max(1, round(self.rate * tick))
        ingest = self.container.ingest
        tenant = self.container.default_tenant
        while True:
            events = list(itertools.islice(self.stream.events(ingest.clock()), per_tick))
            try:
                await anyio.to_thread.run_sync(ingest.ingest, tenant, events)
            except Exception:  # the demo must never take the server down
                log.exception("demo feed: ingest failed")
            await anyio.sleep(tick)


def send_over_http(
    url: str,
    api_key: str,
    *,
    rate: float,
    count: int,
    batch: int,
    seed: int,
    console: Console,
    start_after: dict[str, int] | None = None,
) -> None:
    """Send ``count`` demo events in batches, paced to ``rate`` events/s, with a progress bar."""
    stream = DemoStream(seed=seed, start_after=start_after or {}).events
    totals = {"accepted": 0, "duplicates": 0, "rejected": 0}
    interval = batch / rate
    columns = (
        TextColumn("[bold]demo"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeRemainingColumn(),
    )
    with (
        httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {api_key}"}, timeout=30
        ) as client,
        Progress(*columns, console=console) as progress,
    ):
        task = progress.add_task("events", total=count, detail="")
        sent = 0
        started = time.monotonic()
        while sent < count:
            size = min(batch, count - sent)
            now = _now()
            body = [as_json(e) for e in itertools.islice(stream(now), size)]
            try:
                response = client.post("/v1/events", json=body)
            except httpx.HTTPError as exc:
                raise OSError(f"cannot reach {url}: {exc}") from None
            if response.status_code >= 400:
                raise OSError(f"{url} answered {response.status_code}: {response.text[:300]}")
            report = response.json()
            for name in totals:
                totals[name] += report[name]
            sent += size
            progress.update(
                task,
                completed=sent,
                detail=f"accepted {totals['accepted']}, duplicates {totals['duplicates']}",
            )
            delay = started + sent / rate - time.monotonic()
            if delay > 0:
                time.sleep(min(delay, interval))
    console.print(
        f"Sent {count} events: {totals['accepted']} accepted, {totals['duplicates']} duplicates, "
        f"{totals['rejected']} rejected."
    )


def _now() -> datetime:
    return datetime.now(UTC)
