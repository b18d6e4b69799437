"""A partition's feed from NATS JetStream: one standing pull request at a time, renewed when
used up, when it expires, and when the server forgot it."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from uuid import uuid4

import pytest
from nats.aio.msg import Msg

from plaudit.stream.nats import EventStream

pytestmark = [pytest.mark.anyio, pytest.mark.nats]

PARTITION = 3


@pytest.fixture
async def stream() -> AsyncIterator[EventStream]:
    events = EventStream(
        os.environ.get("PLAUDIT_TEST_NATS_URL", "nats://127.0.0.1:4222"),
        f"t{uuid4().hex[:12]}",
        ack_wait=30.0,
    )
    await events.connect()
    try:
        yield events
    finally:
        await events.delete()
        await events.close()


async def _publish(stream: EventStream, count: int, tag: str) -> None:
    await asyncio.gather(
        *(stream.publish("default", PARTITION, f"{tag}-{n}", {"n": n}) for n in range(count))
    )


async def _until(check: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


async def test_a_feed_brings_every_message_across_pull_requests(stream: EventStream) -> None:
    got: list[Msg] = []
    feed = await stream.feed(PARTITION, got.append)
    watching = asyncio.create_task(feed.watch())
    try:
        await _publish(stream, 600, "a")  # more than two pull requests' worth
        await _until(lambda: len(got) == 600, 20, f"{len(got)} of 600 delivered")
        for message in got:
            await message.ack()
        await asyncio.sleep(2.5)  # the standing request expired and was renewed
        await _publish(stream, 1, "b")
        await _until(lambda: len(got) == 601, 10, "a message after the request expired")
    finally:
        watching.cancel()
        await feed.stop()
    assert sorted(m.data for m in got[:600]) == sorted(f'{{"n":{n}}}'.encode() for n in range(600))


async def test_a_pull_request_the_server_dropped_is_asked_again(stream: EventStream) -> None:
    got: list[Msg] = []
    feed = await stream.feed(PARTITION, got.append)
    watching = asyncio.create_task(feed.watch())
    try:
        # The consumer goes and comes back: the waiting request is gone with it (as in a
        # restart of the server), and nothing says so that the feed acts on.
        js = stream._jetstream()
        await js.delete_consumer(stream.stream, stream.consumer(PARTITION))
        await js.add_consumer(stream.stream, stream._consumer_config(PARTITION))
        await _publish(stream, 1, "c")
        await _until(lambda: len(got) == 1, 15, "no message after the consumer came back")
    finally:
        watching.cancel()
        await feed.stop()
