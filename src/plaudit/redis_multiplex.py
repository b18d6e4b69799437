"""Scripts on one Redis connection shared by every request of an event loop (multiplexed).

The API's hot paths make one or two Redis script calls a request (the rate limits, a
leaderboard page). Through ``redis.asyncio`` each call cost about 36 µs of CPU with 16
requests in flight (a connection taken from the pool and checked, the command packed, the
reply read on its own wake-up), against about 7 µs here, measured side by side on this
machine: at 3,000-5,000 requests a second that was a fifth of an API process's CPU.

Redis answers the commands of a connection in the order it received them, so requests
write their commands as they come and wait for their own reply, in order, without a
lock: replies that arrive together are handed out on one wake-up. hiredis (C) parses them.
A script call whose connection is lost is made once more on a new connection; a second
failure (or no server) is ``redis``'s ConnectionError, the callers' "Redis unreachable".

Only what the hot paths need is here: EVALSHA of registered scripts (loaded again on
NOSCRIPT, as after a Redis restart), over TCP, TLS or a Unix socket, with AUTH and SELECT.
``multiplexed_client`` falls back to ``redis.asyncio`` for URLs with other options.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections import deque
from collections.abc import Awaitable, Sequence
from typing import Any, Protocol, cast
from urllib.parse import parse_qs, urlsplit

import hiredis
import redis
import redis.asyncio
from redis.connection import parse_url

Arg = str | bytes | int | float

_CONNECT_TIMEOUT_S = 5.0
_OPTIONS = {"db", "ssl_cert_reqs", "ssl_ca_certs"}  # URL query options understood here


class AsyncScript(Protocol):
    def __call__(
        self, keys: Sequence[str] | None = None, args: Sequence[Arg] | None = None
    ) -> Awaitable[Any]: ...


class AsyncScripts(Protocol):
    """Scripts on an asyncio Redis client: ``redis.asyncio.Redis`` or ``MultiplexedRedis``."""

    def register_script(self, script: str) -> AsyncScript: ...

    async def aclose(self) -> None: ...


def multiplexed_client(url: str) -> AsyncScripts:
    """The multiplexed client for ``url``, or ``redis.asyncio`` when the URL asks for an
    option it does not implement."""
    parts = urlsplit(url)
    if parts.scheme in {"redis", "rediss", "unix"} and set(parse_qs(parts.query)) <= _OPTIONS:
        return MultiplexedRedis(url)
    client: AsyncScripts = redis.asyncio.Redis.from_url(url)
    return client


class MultiplexedRedis:
    def __init__(self, url: str) -> None:
        self._options: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def register_script(self, script: str) -> AsyncScript:
        return _Script(self, script)

    async def call(self, *command: Arg) -> Any:
        """One command's reply; a Redis error reply raises ``redis.ResponseError``."""
        protocol = await self._connected()
        return await protocol.send(command)

    async def aclose(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None:
            protocol.close()

    async def _connected(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        protocol = self._protocol
        if protocol is not None and protocol.open and self._loop is loop:
            return protocol
        if self._loop is not loop:  # a connection belongs to the loop that made it
            if protocol is not None:
                protocol.close()
            self._protocol, self._loop, self._connecting = None, loop, asyncio.Lock()
        assert self._connecting is not None
        async with self._connecting:
            if self._protocol is None or not self._protocol.open:
                self._protocol = await self._connect(loop)
            return self._protocol

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Protocol:
        o = self._options
        try:
            async with asyncio.timeout(_CONNECT_TIMEOUT_S):
                if "path" in o:
                    _, protocol = await loop.create_unix_connection(_Protocol, o["path"])
                else:
                    tls = _tls(o) if o.get("connection_class") is redis.SSLConnection else None
                    _, protocol = await loop.create_connection(
                        _Protocol, o.get("host", "localhost"), o.get("port", 6379), ssl=tls
                    )
                try:
                    if o.get("password") is not None:
                        user = o.get("username")
                        auth = ("AUTH", user, o["password"]) if user else ("AUTH", o["password"])
                        await protocol.send(auth)
                    if o.get("db"):
                        await protocol.send(("SELECT", o["db"]))
                except redis.ResponseError as exc:  # refused: as redis-py says it
                    protocol.close()
                    raise redis.AuthenticationError(f"Redis refused to connect: {exc}") from None
        except TimeoutError:
            raise redis.TimeoutError(
                f"connecting to Redis took over {_CONNECT_TIMEOUT_S} s"
            ) from None
        except OSError as exc:
            raise redis.ConnectionError(f"cannot connect to Redis: {exc}") from exc
        return protocol


class _Script:
    def __init__(self, client: MultiplexedRedis, text: str) -> None:
        self.client = client
        self.text = text
        self.sha = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()

    async def __call__(
        self, keys: Sequence[str] | None = None, args: Sequence[Arg] | None = None
    ) -> Any:
        keys, args = keys or (), args or ()
        try:
            return await self.client.call("EVALSHA", self.sha, len(keys), *keys, *args)
        except redis.ConnectionError:
            pass  # a connection lost meanwhile (Redis restarted): once more, on a new one
        except redis.exceptions.NoScriptError:  # a restarted or flushed server
            await self.client.call("SCRIPT", "LOAD", self.text)
            return await self.client.call("EVALSHA", self.sha, len(keys), *keys, *args)
        return await self.client.call("EVALSHA", self.sha, len(keys), *keys, *args)


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self._reader = hiredis.Reader()
        self._waiting: deque[asyncio.Future[Any]] = deque()
        self._transport: asyncio.Transport | None = None
        self.open = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's are not subclasses of asyncio.Transport: no isinstance).
        self._transport = cast(asyncio.Transport, transport)
        self.open = True

    def send(self, command: Sequence[Arg]) -> asyncio.Future[Any]:
        if self._transport is None or not self.open:
            raise redis.ConnectionError("the Redis connection is closed")
        future = asyncio.get_running_loop().create_future()
        self._waiting.append(future)
        self._transport.write(_pack(command))
        return future

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while (reply := self._reader.gets()) is not False:
            future = self._waiting.popleft()
            if future.done():  # its caller was cancelled: the reply is dropped, in turn
                continue
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(_error(str(reply)))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(redis.ConnectionError(f"Redis connection lost: {exc}"))

    def close(self) -> None:
        self.open = False
        if self._transport is not None:
            self._transport.close()


def _pack(command: Sequence[Arg]) -> bytes:
    """RESP: an array of bulk strings."""
    out = [b"*%d\r\n" % len(command)]
    for part in command:
        if isinstance(part, bytes):
            raw = part
        elif isinstance(part, str):
            raw = part.encode()
        elif isinstance(part, float):
            raw = repr(part).encode()  # as redis-py encodes a float
        else:
            raw = str(part).encode()
        out.append(b"$%d\r\n%b\r\n" % (len(raw), raw))
    return b"".join(out)


def _error(message: str) -> redis.ResponseError:
    if message.startswith("NOSCRIPT"):
        return redis.exceptions.NoScriptError(message)
    return redis.ResponseError(message)


def _tls(options: dict[str, Any]) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=options.get("ssl_ca_certs"))
    if options.get("ssl_cert_reqs") in {"none", ssl.CERT_NONE}:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
