"""The server mode's rate limiter: token buckets in Redis, shared by every API process.

One key per bucket, ``{prefix}rl:{key}``: a hash of ``tokens`` and ``at`` (the last refill,
µs). Its TTL is the time the bucket takes to fill, so an idle key vanishes exactly when it
would be full, and a missing key is a full bucket.

One script refills and takes (a read, then a write that depends on it, which MULTI can't do),
so two processes can never both spend the last token. Time is the Redis server's own clock
(``TIME``), one clock for every process; an injected clock (tests) is passed in instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import anyio.to_thread
import redis

from plaudit.ratelimit.ports import EPSILON, Decision, Limit, Take, check_cost
from plaudit.redis_errors import UNREACHABLE, reachable, unavailable
from plaudit.redis_multiplex import AsyncScripts

_reachable = reachable("rate limits")


# Numbers leave Lua through string.format('%.17g'): tostring() keeps 14 digits only, and a
# number reply would be truncated to an integer.
_TAKE = """
-- KEYS: the buckets. ARGV: now in µs ('' = this server's TIME), then per bucket: rate
-- (tokens/s), burst, cost. Each bucket is decided in turn, as if alone (several buckets, one
-- round trip). Returns per bucket: 1 if taken else 0, tokens left.
local now
if ARGV[1] == '' then
  local time = redis.call('TIME')
  now = tonumber(time[1]) * 1000000 + tonumber(time[2])
else
  now = tonumber(ARGV[1])
end
local out = {}
for b = 1, #KEYS do
  local rate = tonumber(ARGV[3 * b - 1])
  local burst, cost = tonumber(ARGV[3 * b]), tonumber(ARGV[3 * b + 1])
  local at_now = now
  local tokens = burst
  local held = redis.call('HMGET', KEYS[b], 'tokens', 'at')
  if held[1] and held[2] then
    local at = tonumber(held[2])
    tokens = math.min(burst, tonumber(held[1]) + math.max(0, at_now - at) / 1000000 * rate)
    at_now = math.max(at_now, at)
  end
  if tokens + EPSILON < cost then
    out[#out + 1] = 0
  else
    tokens = math.max(0, tokens - cost)
    local ttl = math.ceil((burst - tokens) / rate * 1000)
    if ttl > 0 then
      redis.call('HSET', KEYS[b], 'tokens', string.format('%.17g', tokens),
        'at', string.format('%.17g', at_now))
      redis.call('PEXPIRE', KEYS[b], ttl)
    else
      redis.call('DEL', KEYS[b])
    end
    out[#out + 1] = 1
  end
  out[#out + 1] = string.format('%.17g', tokens)
end
return out
""".replace("EPSILON", repr(EPSILON))


class RedisRateLimiter:
    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "plaudit:",
        aio: AsyncScripts | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._prefix = prefix
        # None: the Redis server's TIME, one clock for every process. Else monotonic seconds.
        self._clock = clock
        # Registering only hashes the text; each call is an EVALSHA, loading the script on
        # NOSCRIPT (a restarted or flushed server).
        self._take = client.register_script(_TAKE)
        self._atake = aio.register_script(_TAKE) if aio is not None else None

    @_reachable
    def take(self, key: str, limit: Limit, cost: int = 1) -> Decision:
        check_cost(cost)
        reply = self._take(keys=[self._key(key)], args=self._args([(key, limit, cost)]))
        return _decisions([(key, limit, cost)], reply)[0]

    async def take_async(self, key: str, limit: Limit, cost: int = 1) -> Decision:
        """``take`` on the asyncio client (one round trip), or, without one, on a thread."""
        return (await self.take_each_async([(key, limit, cost)]))[0]

    async def take_each_async(self, takes: Sequence[Take]) -> list[Decision]:
        """Each take decided in turn, in one script: one round trip for all of them."""
        if self._atake is None:
            return [await anyio.to_thread.run_sync(self.take, *take) for take in takes]
        for _, _, cost in takes:
            check_cost(cost)
        try:
            reply = await self._atake(
                keys=[self._key(key) for key, _, _ in takes], args=self._args(takes)
            )
        except UNREACHABLE as exc:
            raise unavailable("rate limits", exc) from exc
        return _decisions(takes, reply)

    def _key(self, key: str) -> str:
        return f"{self._prefix}rl:{key}"

    def _args(self, takes: Sequence[Take]) -> list[str | int]:
        now = "" if self._clock is None else str(round(self._clock() * 1_000_000))
        args: list[str | int] = [now]
        for _, limit, cost in takes:
            args += (repr(limit.rate), limit.burst, cost)
        return args


def _decisions(takes: Sequence[Take], reply: Any) -> list[Decision]:
    return [
        Decision.from_bucket(limit, cost, float(reply[2 * i + 1]), bool(int(reply[2 * i])))
        for i, (_, limit, cost) in enumerate(takes)
    ]
