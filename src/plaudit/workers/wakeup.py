"""A nudge for a worker that otherwise polls: any thread may ``set`` it, the worker's loop
``wait``s on it with a timeout. In the embedded mode it takes the polling delay off the
path from an ingested event to a delivered webhook; across processes the poll remains."""

from __future__ import annotations

import asyncio
import threading

import anyio


class Wakeup:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._early = threading.Event()  # set before the worker first waited

    def set(self) -> None:
        loop, event = self._loop, self._event
        if loop is None or event is None:
            self._early.set()
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            event.set()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(event.set)

    async def wait(self, at_most: float) -> None:
        """Until set (since the last wait), or ``at_most`` seconds."""
        if self._event is None:
            self._loop = asyncio.get_running_loop()
            self._event = asyncio.Event()
            if self._early.is_set():
                self._event.set()
        with anyio.move_on_after(at_most):
            await self._event.wait()
        self._event.clear()
