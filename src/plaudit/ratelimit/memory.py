"""The embedded mode's rate limiter: token buckets in this process's memory.

Memory stays bounded: a full bucket is dropped (it says nothing a missing key doesn't), and
only when more than nine in ten of ``max_keys`` buckets are still refilling are the least
recently used of those forgotten, which lets their keys start over with a full bucket
(lenient, never stricter than the limit).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from plaudit.ratelimit.ports import EPSILON, Decision, Limit, Take, check_cost

# (tokens, last refill, when the bucket will be full): clock seconds
_Bucket = tuple[float, float, float]


class MemoryRateLimiter:
    def __init__(
        self, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000
    ) -> None:
        if max_keys < 1:
            raise ValueError(f"max_keys must be positive: {max_keys}")
        self._clock = clock
        self._max_keys = max_keys
        # A sweep frees at least a tenth of the room, so it runs once per max_keys / 10 new
        # keys at most: its O(n) scan costs O(10) per key.
        self._low_water = max_keys - max(1, max_keys // 10)
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()  # least recently used first
        self._lock = threading.Lock()

    def take(self, key: str, limit: Limit, cost: int = 1) -> Decision:
        check_cost(cost)
        with self._lock:
            held = self._buckets.get(key)
            now = self._clock()
            if held is None:
                tokens, last = float(limit.burst), now
            else:
                tokens, last, _ = held
                tokens = min(float(limit.burst), tokens + max(0.0, now - last) * limit.rate)
                last = max(last, now)  # a clock that steps back refills nothing, twice
            allowed = tokens + EPSILON >= cost
            if allowed:
                tokens = max(0.0, tokens - cost)
                self._store(key, limit, tokens, last, now, new=held is None)
            elif held is not None:
                self._buckets.move_to_end(key)
            return Decision.from_bucket(limit, cost, tokens, allowed)

    async def take_async(self, key: str, limit: Limit, cost: int = 1) -> Decision:
        """``take``: a few microseconds of CPU under a lock no one holds for longer."""
        return self.take(key, limit, cost)

    async def take_each_async(self, takes: Sequence[Take]) -> list[Decision]:
        return [self.take(key, limit, cost) for key, limit, cost in takes]

    def __len__(self) -> int:
        return len(self._buckets)

    def _store(
        self, key: str, limit: Limit, tokens: float, last: float, now: float, new: bool
    ) -> None:
        if tokens >= limit.burst:  # a take of 0 from a full bucket
            self._buckets.pop(key, None)
            return
        if new and len(self._buckets) >= self._max_keys:
            self._make_room(now)
        self._buckets[key] = (tokens, last, last + (limit.burst - tokens) / limit.rate)
        self._buckets.move_to_end(key)

    def _make_room(self, now: float) -> None:
        full = [key for key, (_, _, full_at) in self._buckets.items() if full_at <= now]
        for key in full:
            del self._buckets[key]
        while len(self._buckets) > self._low_water:
            self._buckets.popitem(last=False)
