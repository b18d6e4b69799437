"""Redis for tests: the URL, a key prefix of the test's own, and cleaning up after it."""

from __future__ import annotations

import os
from uuid import uuid4

import redis

REDIS_URL = os.environ.get("PLAUDIT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def unique_prefix() -> str:
    return f"plaudit-test:{uuid4().hex}:"


def delete_prefix(client: redis.Redis, prefix: str) -> None:
    held = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if held:
        client.delete(*held)
