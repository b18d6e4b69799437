"""The fixtures every contract test runs against: each projection (memory, Redis) and each
store (SQLite, PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from plaudit.leaderboards.memory import MemoryProjection
from plaudit.leaderboards.ports import Projection
from plaudit.leaderboards.redis import RedisProjection
from plaudit.settings import Settings
from tests.conftest import MODES, backend_settings
from tests.support.redis_keys import REDIS_URL, delete_prefix, unique_prefix


@pytest.fixture(params=MODES)
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """The store behind the contract tests: SQLite, and PostgreSQL (the scale-out mode)."""
    return backend_settings(request, tmp_path)


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def projection(request: pytest.FixtureRequest) -> Iterator[Projection]:
    if request.param == "memory":
        yield MemoryProjection()
        return
    client = redis.Redis.from_url(REDIS_URL)
    client.ping()  # an unreachable Redis fails the setup once, not the test and its teardown
    prefix = unique_prefix()
    try:
        yield RedisProjection(client, prefix)
    finally:
        delete_prefix(client, prefix)
        client.close()
