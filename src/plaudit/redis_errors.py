"""Redis down or too slow is the caller's 503 (retry later), not an internal error: one rule
for every adapter on Redis (leaderboards, rate limits)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import redis

from plaudit.errors import ServiceUnavailable

# What redis-py raises when the server cannot be reached or does not answer in time.
UNREACHABLE = (redis.ConnectionError, redis.TimeoutError)

_P = ParamSpec("_P")
_T = TypeVar("_T")


def unavailable(what: str, exc: BaseException) -> ServiceUnavailable:
    return ServiceUnavailable(f"{what}: Redis unreachable ({exc})")


def reachable(what: str) -> Callable[[Callable[_P, _T]], Callable[_P, _T]]:
    """Decorate a call on Redis: an unreachable server becomes ServiceUnavailable."""

    def decorate(method: Callable[_P, _T]) -> Callable[_P, _T]:
        @functools.wraps(method)
        def call(*args: _P.args, **kwargs: _P.kwargs) -> _T:
            try:
                return method(*args, **kwargs)
            except UNREACHABLE as exc:
                raise unavailable(what, exc) from exc

        return call

    return decorate
