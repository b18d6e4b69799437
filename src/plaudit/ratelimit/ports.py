"""Rate limits and quotas as token buckets: the port, and the arithmetic every adapter shares.

A bucket holds up to ``burst`` tokens and gains ``rate`` tokens a second; a take of ``cost``
tokens is allowed when the bucket holds at least ``cost``, and then removes them. A refused
take removes nothing. A key never seen (or forgotten) is a full bucket, so an adapter may drop
a full bucket at any time without changing a single decision.

A cost larger than the burst can never be allowed: it is refused, takes nothing, and its
``retry_after`` is ``math.inf`` (waiting does not help; the caller should say the request is
too large rather than ask the client to retry).

A short-window limit and a long-window quota on one request are two takes: take the short one
first, so that a request it refuses spends nothing of the quota.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

# Float noise (a refill of 0.1 s at 10 tokens/s is 0.9999999999999999 tokens) must not refuse
# a take that is due, nor report one token too few; a billionth of a token is far below any
# real rate's resolution.
EPSILON = 1e-9

_UNIT_SECONDS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86_400,
    "day": 86_400,
}
_LIMIT_TEXT = re.compile(r"\s*([0-9]+)\s*/\s*([A-Za-z]+)\s*")
# The name goes into the RateLimit headers as a structured-field String: printable ASCII.
_NAME = re.compile(r"[\x20-\x7e]+")


@dataclass(frozen=True, slots=True)
class Limit:
    name: str  # the policy's name in the RateLimit headers
    rate: float  # tokens gained per second
    burst: int  # the bucket's size: the most a client can spend at once

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"a limit's name is printable ASCII, not empty: {self.name!r}")
        if not (math.isfinite(self.rate) and self.rate > 0):
            raise ValueError(f"a limit's rate must be a positive number: {self.rate!r}")
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 1:
            raise ValueError(f"a limit's burst must be a positive integer: {self.burst!r}")

    @property
    def window(self) -> float:
        """Seconds an empty bucket takes to fill."""
        return self.burst / self.rate


def parse_limit(text: str, *, burst: int | None = None, name: str | None = None) -> Limit:
    """``"600/min"`` -> 600 tokens a minute, a bucket of 600 unless ``burst`` says otherwise.

    Units: ``s``, ``min``, ``h``, ``day`` (also ``sec``, ``second``, ``minute``, ``hour``,
    ``d``). The name defaults to the text itself.
    """
    match = _LIMIT_TEXT.fullmatch(text)
    unit = _UNIT_SECONDS.get(match.group(2).lower()) if match else None
    if match is None or unit is None:
        raise ValueError(f"a limit reads like '600/min' (units s, min, h, day): {text!r}")
    amount = int(match.group(1))
    if amount < 1:
        raise ValueError(f"a limit's amount must be positive: {text!r}")
    return Limit(
        name=text.strip() if name is None else name,
        rate=amount / unit,
        burst=amount if burst is None else burst,
    )


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    limit: Limit
    remaining: int  # whole tokens left after this take
    reset_after: float  # seconds until the bucket is full again
    retry_after: float  # seconds until ``cost`` tokens are there; 0 if allowed, inf if never

    @classmethod
    def from_bucket(cls, limit: Limit, cost: int, tokens: float, allowed: bool) -> Decision:
        """The decision, given the tokens left in the bucket after the take (or the refusal)."""
        if allowed:
            retry_after = 0.0
        elif cost > limit.burst:
            retry_after = math.inf
        else:
            retry_after = max(0.0, (cost - tokens) / limit.rate)
        return cls(
            allowed=allowed,
            limit=limit,
            remaining=max(0, min(limit.burst, math.floor(tokens + EPSILON))),
            reset_after=max(0.0, (limit.burst - tokens) / limit.rate),
            retry_after=retry_after,
        )


def check_cost(cost: int) -> None:
    """A cost is a whole number of tokens; 0 reads the bucket without changing it."""
    if isinstance(cost, bool) or not isinstance(cost, int) or cost < 0:
        raise ValueError(f"a take's cost must be a non-negative integer: {cost!r}")


Take = tuple[str, Limit, int]  # a bucket's key, its limit, the cost to take


class RateLimiter(Protocol):
    def take(self, key: str, limit: Limit, cost: int = 1) -> Decision:
        """Refill the key's bucket, then take ``cost`` tokens if it holds them: atomically,
        also against other threads and (for a shared store) other processes.

        ``key`` names the bucket alone: give each limit its own keys (``"api:" + key_id``).
        """
        ...

    async def take_async(self, key: str, limit: Limit, cost: int = 1) -> Decision:
        """``take`` for an event loop: never blocks it."""
        ...

    async def take_each_async(self, takes: Sequence[Take]) -> list[Decision]:
        """Each ``(key, limit, cost)`` decided in turn as ``take`` would, in one step (one
        round trip to a shared store): a request checked against several limits waits once."""
        ...
