"""NATS JetStream between ingestion and the scoring workers (the scale-out mode).

The SQL event log is the truth; the stream says where to look. After each commit an API
process publishes one message per (tenant, partition) it appended to, on
``<prefix>.events.<tenant>.<partition>``, with the first event's id as ``Nats-Msg-Id`` (a
publish retried by the client is dropped by the server's duplicate window). Each partition
has a durable pull consumer; the worker holding the partition fetches, scores the
partition's pending events from the log, and acknowledges only after that commit. A
worker that dies leaves its messages unacknowledged: they are delivered again after
``ack_wait``. A message that never made it (NATS down, or lost in a NATS crash: Debian's
NATS 2.9 does not fsync before it acknowledges) is made up for by the sweeper, which
publishes again for any partition whose log is ahead of its scoring cursor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import nats
import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError

from plaudit.domain.partitions import PARTITIONS
from plaudit.errors import ConfigurationError
from plaudit.stream.ports import Appended

log = logging.getLogger("plaudit.stream")

# Announcements waiting to be published; beyond this (NATS down for long) they are dropped:
# the sweeper finds their events in the log.
_QUEUE_MAX = 100_000
_DUPLICATE_WINDOW = 120.0  # seconds: a publish retried within this is stored once
# A partition's standing pull request: how many messages, how long it lives (seconds), and
# how long past that without news before it is asked again.
_PULL = 256
_PULL_EXPIRES = 2.0
_PULL_GRACE = 1.0
_STATUS = "Status"
_EXPIRED = "408"
_SAFE_TOKEN = re.compile(r"[^A-Za-z0-9_-]")


def _token(text: str) -> str:
    """A subject token: tenant ids are [a-z0-9-]; anything else is replaced."""
    return _SAFE_TOKEN.sub("_", text) or "_"


class EventStream:
    def __init__(self, url: str, prefix: str, ack_wait: float) -> None:
        self.url = url
        self.prefix = prefix
        self.ack_wait = ack_wait
        self.stream = f"{prefix}_events"
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[Appended] | None = None
        self._lock = threading.Lock()

    def subject(self, tenant_id: str, partition: int) -> str:
        return f"{self.prefix}.events.{_token(tenant_id)}.{partition}"

    def consumer(self, partition: int) -> str:
        return f"{self.prefix}-scoring-{partition}"

    # --- connection ------------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect and make sure the stream and its consumers exist; a one-line
        ConfigurationError when NATS cannot be reached."""

        errors: list[Exception] = []

        async def noted(exc: Exception) -> None:
            if self._nc is None:  # still connecting: told once, in the error below
                errors.append(exc)
            else:
                log.warning("stream: %s", exc or type(exc).__name__)

        try:
            # Reconnect for ever once connected; but the first connection must succeed in
            # a few seconds, or the start fails in one line.
            self._nc = await asyncio.wait_for(
                nats.connect(
                    self.url,
                    name="plaudit",
                    connect_timeout=2,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    error_cb=noted,
                ),
                timeout=5,
            )
        except Exception as exc:
            cause = errors[-1] if errors else exc
            raise ConfigurationError(
                f"stream {self.url} unreachable: {type(cause).__name__}: {cause}"
            ) from None
        self._js = self._nc.jetstream(timeout=5)
        await self._ensure()
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue(_QUEUE_MAX)

    async def _ensure(self) -> None:
        js = self._jetstream()
        config = StreamConfig(
            name=self.stream,
            subjects=[f"{self.prefix}.events.>"],
            # A message is gone once its partition's worker acknowledges it.
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            duplicate_window=_DUPLICATE_WINDOW,
            max_age=7 * 24 * 3600.0,
        )
        try:
            await js.add_stream(config)
        except BadRequestError:
            await js.update_stream(config)
        for partition in range(PARTITIONS):
            await js.add_consumer(self.stream, self._consumer_config(partition))

    def _consumer_config(self, partition: int) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.consumer(partition),
            filter_subject=f"{self.prefix}.events.*.{partition}",
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            max_ack_pending=10_000,
        )

    def _jetstream(self) -> JetStreamContext:
        if self._js is None:
            raise RuntimeError("stream not connected")
        return self._js

    @property
    def connected(self) -> bool:
        return self._nc is not None and self._nc.is_connected

    async def check(self) -> None:
        """Readiness: the server answers and the stream exists."""
        await self._jetstream().stream_info(self.stream)

    async def delete(self) -> None:
        """Drop the stream and its consumers (tests)."""
        await self._jetstream().delete_stream(self.stream)

    async def close(self) -> None:
        self._loop = self._queue = None
        if self._nc is not None:
            try:
                await self._nc.close()
            except Exception:  # closing: nothing left to tell
                log.debug("closing the stream connection", exc_info=True)
            self._nc = None

    # --- publishing --------------------------------------------------------------------------

    def announce(self, appended: Sequence[Appended]) -> None:
        """From any thread (ingestion commits in worker threads): queue for publishing."""
        loop, queue = self._loop, self._queue
        if loop is None or queue is None or loop.is_closed() or not appended:
            return  # not publishing from this process (a CLI command): the sweeper tells
        try:  # one wake-up of the loop for a commit's announcements
            loop.call_soon_threadsafe(self._offer, appended)
        except RuntimeError:  # the loop closed meanwhile
            return

    def _offer(self, appended: Sequence[Appended]) -> None:
        assert self._queue is not None
        # A full queue (NATS down for long): dropped; the sweeper finds the events in the log.
        with contextlib.suppress(asyncio.QueueFull):
            for item in appended:
                self._queue.put_nowait(item)

    async def publish(self, tenant_id: str, partition: int, key: str, data: Any) -> None:
        """Publish and wait for the stream's acknowledgement (the sweeper's way: a failure
        is raised, not lost)."""
        await self._jetstream().publish(
            self.subject(tenant_id, partition),
            orjson.dumps(data),
            headers={"Nats-Msg-Id": key},
        )

    async def serve(self) -> None:
        """An API process's publishing job: connect (again and again while NATS is down at
        start: ingestion goes on meanwhile, the sweeper makes up for what is not told),
        then publish what commits announce."""
        while True:
            try:
                await self.connect()
                break
            except ConfigurationError as exc:
                log.warning("%s; trying again", exc.detail)
                await asyncio.sleep(2.0)
        await self.run_publisher()

    async def run_publisher(self) -> None:
        """Publish what commits announced, everything queued at once, without waiting for
        the stream's acknowledgements. An acknowledgement would tell only that the message
        was taken: the events are committed to the log before they are announced, and the
        sweeper republishes for any partition left behind (a message lost on the way, or
        refused), so a lost announcement delays scoring but loses nothing. Waiting costs
        the API process a request, a reply inbox and a future per message: 140 to 155 µs
        of CPU a message against 16 to 24 (a commit of 100 events announces about 16)."""
        assert self._queue is not None
        queue = self._queue
        while True:
            batch = [await queue.get()]
            while not queue.empty() and len(batch) < 1000:
                batch.append(queue.get_nowait())
            try:
                nc = self._nc
                if nc is None:
                    raise RuntimeError("stream not connected")
                for a in batch:
                    await nc.publish(
                        self.subject(a.tenant_id, a.partition),
                        orjson.dumps({"events": a.count, "first": a.key}),
                        headers={"Nats-Msg-Id": a.key},
                    )
            except Exception as exc:  # the events are in the log: the sweeper tells
                log.warning(
                    "stream: announcements not published (%s: %s); the sweeper will",
                    type(exc).__name__,
                    exc,
                )

    # --- consuming ---------------------------------------------------------------------------

    async def feed(self, partition: int, deliver: Callable[[Msg], None]) -> PartitionFeed:
        """Start a standing pull on a partition's consumer; ``deliver`` gets each message."""
        nc = self._nc
        if nc is None:
            raise RuntimeError("stream not connected")
        feed = PartitionFeed(
            nc, f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{self.consumer(partition)}", deliver
        )
        await feed.start()
        return feed


class PartitionFeed:
    """A held partition's messages, handed to a callback as they arrive.

    One standing pull request of up to ``_PULL`` messages at a time on an inbox of this
    client, renewed when it is used up or has expired (status 408), and by a watchdog when
    it should have ended and did not say so (the server forgets pull requests when it
    restarts) or was refused (409). A fetch per message cost the client a pull request or
    two and a task per message: a third of the active time of the worker without singleton
    jobs at 5,000 events/s (py-spy) went to it."""

    def __init__(self, nc: Client, next_subject: str, deliver: Callable[[Msg], None]) -> None:
        self._nc = nc
        self._next = next_subject
        self._deliver = deliver
        self._inbox = nc.new_inbox()
        self._sub: Any = None
        self._left = 0  # messages the current request may still bring
        self._asked = 0.0  # when it was made (monotonic)

    async def start(self) -> None:
        self._sub = await self._nc.subscribe(self._inbox, cb=self._received)
        await self._ask()

    async def watch(self) -> None:
        """Ask again when the request should have ended and did not say so; runs until
        cancelled."""
        while True:
            await asyncio.sleep(_PULL_EXPIRES / 2)
            if time.monotonic() - self._asked > _PULL_EXPIRES + _PULL_GRACE:
                await self._ask()

    async def stop(self) -> None:
        """Messages the server sends after this (the request still open) are not
        acknowledged: they come back to the partition's next holder after ``ack_wait``."""
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

    async def _ask(self) -> None:
        self._left, self._asked = _PULL, time.monotonic()
        request = {"batch": _PULL, "expires": int(_PULL_EXPIRES * 1e9)}
        try:
            await self._nc.publish(self._next, orjson.dumps(request), reply=self._inbox)
        except NatsError as exc:  # disconnected: the watchdog asks again
            log.debug("stream pull request: %s", exc)

    async def _received(self, msg: Msg) -> None:
        status = msg.headers.get(_STATUS) if msg.headers else None
        if status is None:
            self._deliver(msg)
            self._left -= 1
            if self._left <= 0:
                await self._ask()
        elif status == _EXPIRED:
            await self._ask()
        else:  # refused (409: too many requests waiting, a leader changing): the watchdog
            log.debug("stream pull request ended: %s %s", status, msg.headers)
