"""Rate limits through the API: per key and per client address (429 with RateLimit and
Retry-After headers), and per player at ingestion (the events over it are rejected, each
saying when to retry)."""

from __future__ import annotations

from pathlib import Path

import pytest

from plaudit.bootstrap import Container
from plaudit.domain.auth import Scope
from plaudit.settings import Settings
from tests.api.conftest import ClientFactory
from tests.conftest import new_key
from tests.support.events import event

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        _env_file=None,
        rate_limits={"per_key": "5/min", "per_source": "12/min", "per_player": "3/min"},
    )


async def test_a_key_over_its_limit_gets_429_with_the_headers_and_others_do_not(
    container: Container, client_for: ClientFactory
) -> None:
    first = client_for(new_key(container, Scope.READ))
    for n in range(5):
        answer = await first.get("/v1/events")
        assert answer.status_code == 200, answer.text
        assert f'"per-key";r={4 - n};' in answer.headers["ratelimit"]
    assert "q=5;w=60" in answer.headers["ratelimit-policy"]
    refused = await first.get("/v1/events")
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == "/problems/rate-limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 12  # one token comes every 12 s
    assert "per-key" in refused.json()["detail"]
    other = client_for(new_key(container, Scope.READ))
    assert (await other.get("/v1/events")).status_code == 200
    assert (await first.get("/healthz")).status_code == 200  # health is never limited


async def test_one_client_address_is_limited_whatever_the_keys(
    container: Container, client_for: ClientFactory
) -> None:
    statuses = []
    for _ in range(14):
        client = client_for(new_key(container, Scope.READ))  # a new key each time
        statuses.append((await client.get("/v1/events")).status_code)
    # 12 passed (the bucket of the test client's address), then 429.
    assert statuses[:12] == [200] * 12
    assert statuses[12:] == [429, 429]


async def test_a_player_over_its_limit_has_the_extra_events_rejected_with_a_retry_time(
    container: Container, client_for: ClientFactory
) -> None:
    client = client_for(new_key(container, Scope.EVENTS_WRITE))
    batch = [event(f"a{n}") for n in range(5)] + [event(f"b{n}", actor="bob") for n in range(2)]
    report = (await client.post("/v1/events", json=batch)).json()
    statuses = [r["status"] for r in report["results"]]
    assert statuses == ["accepted"] * 3 + ["rejected"] * 2 + ["accepted"] * 2
    message = report["results"][3]["errors"][0]["message"]
    assert "rate limited" in message
    assert "retry after" in message
    again = await client.post("/v1/events", json=[event("a9")])
    assert again.status_code == 422  # every event rejected: nothing was written
    assert again.json()["results"][0]["errors"][0]["field"] == "actor"
