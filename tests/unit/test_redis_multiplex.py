"""The multiplexed Redis client of the API's hot paths, against a real Redis: every caller gets
its own reply however many are in flight, scripts survive a flushed server, and a lost or
missing server is redis-py's ConnectionError (the callers' "Redis unreachable")."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import pytest
import redis
import redis.asyncio

from plaudit.redis_multiplex import MultiplexedRedis, multiplexed_client
from tests.support.redis_keys import REDIS_URL, delete_prefix, unique_prefix

pytestmark = [pytest.mark.anyio, pytest.mark.redis]

ECHO = "return {KEYS[1], ARGV[1]}"
SET_AND_ECHO = "redis.call('SET', KEYS[1], ARGV[1]) return redis.call('GET', KEYS[1])"


@pytest.fixture
def prefix() -> Iterator[str]:
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()
    made = unique_prefix()
    try:
        yield made
    finally:
        for db in (0, 3):
            delete_prefix(redis.Redis.from_url(_with_db(REDIS_URL, db)), made)
        client.close()


@pytest.fixture
async def client() -> AsyncIterator[MultiplexedRedis]:
    made = MultiplexedRedis(REDIS_URL)
    yield made
    await made.aclose()


def _with_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return parts._replace(path=f"/{db}").geturl()


async def test_concurrent_calls_each_get_their_own_reply(
    client: MultiplexedRedis, prefix: str
) -> None:
    echo = client.register_script(SET_AND_ECHO)
    replies = await asyncio.gather(*(echo(keys=[f"{prefix}{i}"], args=[i]) for i in range(500)))
    assert replies == [str(i).encode() for i in range(500)]
    floats = await echo(keys=[f"{prefix}f"], args=[0.1])
    assert floats == b"0.1"


async def test_a_cancelled_caller_does_not_shift_the_replies_of_the_others(
    client: MultiplexedRedis, prefix: str
) -> None:
    echo = client.register_script(ECHO)
    await echo(keys=["k"], args=["warm"])  # connected and loaded
    first = asyncio.ensure_future(echo(keys=["k"], args=["first"]))
    second = asyncio.ensure_future(echo(keys=["k"], args=["second"]))
    await asyncio.sleep(0)  # both sent
    first.cancel()
    assert await second == [b"k", b"second"]
    assert await echo(keys=["k"], args=["third"]) == [b"k", b"third"]


async def test_scripts_are_loaded_again_when_the_server_lost_them(
    client: MultiplexedRedis,
) -> None:
    echo = client.register_script(ECHO)
    assert await echo(keys=["a"], args=["b"]) == [b"a", b"b"]
    redis.Redis.from_url(REDIS_URL).script_flush()
    assert await echo(keys=["c"], args=["d"]) == [b"c", b"d"]


async def test_an_error_reply_is_a_response_error_and_the_connection_goes_on(
    client: MultiplexedRedis,
) -> None:
    failing = client.register_script("return redis.error_reply('ERR no such thing')")
    with pytest.raises(redis.ResponseError, match="no such thing"):
        await failing(keys=[], args=[])
    assert await client.register_script(ECHO)(keys=["x"], args=[1]) == [b"x", b"1"]


async def test_a_killed_connection_fails_its_calls_then_the_next_call_connects_again(
    client: MultiplexedRedis, prefix: str
) -> None:
    echo = client.register_script(ECHO)
    first = await client.call("CLIENT", "ID")
    waiting = asyncio.ensure_future(client.call("BLPOP", f"{prefix}never", 5))  # in flight
    await asyncio.sleep(0.1)
    redis.Redis.from_url(REDIS_URL).client_kill_filter(_id=first)
    with pytest.raises(redis.ConnectionError, match="lost"):
        await waiting
    assert await echo(keys=["y"], args=["z"]) == [b"y", b"z"]
    second = await client.call("CLIENT", "ID")
    assert second != first
    redis.Redis.from_url(REDIS_URL).client_kill_filter(_id=second)  # lost while idle
    assert await echo(keys=["v"], args=["w"]) == [b"v", b"w"]  # noticed or not: made again
    await asyncio.sleep(0.1)
    assert await echo(keys=["t"], args=["u"]) == [b"t", b"u"]


async def test_the_database_of_the_url_is_selected(prefix: str) -> None:
    made = MultiplexedRedis(_with_db(REDIS_URL, 3))
    try:
        await made.register_script(SET_AND_ECHO)(keys=[f"{prefix}db"], args=["three"])
    finally:
        await made.aclose()
    assert redis.Redis.from_url(_with_db(REDIS_URL, 3)).get(f"{prefix}db") == b"three"
    assert redis.Redis.from_url(_with_db(REDIS_URL, 0)).get(f"{prefix}db") is None


async def test_a_server_that_is_not_there_is_a_connection_error() -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    made = MultiplexedRedis(f"redis://127.0.0.1:{port}/0")
    with pytest.raises(redis.ConnectionError, match="cannot connect"):
        await made.register_script(ECHO)(keys=["a"], args=["b"])


async def test_a_refused_password_is_an_authentication_error() -> None:
    parts = urlsplit(REDIS_URL)
    wrong = parts._replace(netloc=f":not-the-password@{parts.hostname}:{parts.port}").geturl()
    made = MultiplexedRedis(wrong)
    with pytest.raises(redis.AuthenticationError, match="refused"):
        await made.call("PING")
    assert issubclass(redis.AuthenticationError, redis.ConnectionError)  # "unreachable": 503


def test_urls_with_options_it_does_not_know_get_redis_py() -> None:
    assert isinstance(multiplexed_client("redis://127.0.0.1:6379/0"), MultiplexedRedis)
    assert isinstance(multiplexed_client("unix:///run/redis.sock?db=2"), MultiplexedRedis)
    fallback = multiplexed_client("redis://127.0.0.1:6379/0?socket_timeout=2")
    assert isinstance(fallback, redis.asyncio.Redis)


def test_it_works_on_uvloop_as_the_api_processes_run() -> None:
    """uvicorn's processes run uvloop, whose transports are not asyncio's classes."""
    import uvloop

    async def calls() -> list[object]:
        made = MultiplexedRedis(REDIS_URL)
        try:
            echo = made.register_script(ECHO)
            return list(await asyncio.gather(*(echo(keys=["k"], args=[i]) for i in range(3))))
        finally:
            await made.aclose()

    assert uvloop.run(calls()) == [[b"k", b"0"], [b"k", b"1"], [b"k", b"2"]]
