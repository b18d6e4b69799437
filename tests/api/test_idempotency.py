from __future__ import annotations

from datetime import timedelta

import anyio
import httpx
import pytest

from plaudit.api.idempotency import request_fingerprint
from plaudit.bootstrap import Container
from plaudit.domain.auth import Scope
from tests.api.conftest import ClientFactory
from tests.conftest import FakeClock
from tests.support.events import event

pytestmark = pytest.mark.anyio


async def test_same_key_same_body_replays_the_first_response(client: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": '"k-1"'}
    first = await client.post("/v1/events", json=[event("a")], headers=headers)
    again = await client.post("/v1/events", json=[event("a")], headers=headers)
    assert again.status_code == first.status_code == 200
    assert again.json() == first.json()  # "accepted", not "duplicate": the first answer
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers


async def test_same_key_different_body_is_422(client: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "k-2"}
    await client.post("/v1/events", json=[event("a")], headers=headers)
    response = await client.post("/v1/events", json=[event("b")], headers=headers)
    assert response.status_code == 422
    assert response.json()["type"] == "/problems/idempotency-key-reused"
    assert (await client.get("/v1/events")).json()["items"][-1]["id"] == "a"


async def test_same_key_on_another_path_is_422(client: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "k-3"}
    await client.post("/v1/events", json=[event("a")], headers=headers)
    response = await client.post("/v1/events?atomic=true", json=[event("a")], headers=headers)
    assert response.status_code == 422


async def test_a_retry_while_the_first_is_in_flight_is_409(
    container: Container, client: httpx.AsyncClient
) -> None:
    request = client.build_request("POST", "/v1/events", json=[event("a")])
    fingerprint = request_fingerprint("POST", "/v1/events", "", request.content)
    # Hold the key exactly as the first request, still running, would.
    assert container.idempotency.begin(container.default_tenant, "k-4", fingerprint) is None
    request.headers["Idempotency-Key"] = "k-4"
    response = await client.send(request)
    assert response.status_code == 409
    assert response.json()["type"] == "/problems/idempotency-key-in-flight"
    assert (await client.get("/v1/events")).json()["items"] == []


async def test_concurrent_requests_with_one_key_run_once(client: httpx.AsyncClient) -> None:
    statuses: list[int] = []
    bodies: list[dict[str, object]] = []
    batch = [event(f"c{i}") for i in range(300)]

    async def send() -> None:
        response = await client.post("/v1/events", json=batch, headers={"Idempotency-Key": "k-5"})
        statuses.append(response.status_code)
        if response.status_code == 200:
            bodies.append(response.json())

    async with anyio.create_task_group() as tasks:
        for _ in range(4):
            tasks.start_soon(send)
    assert set(statuses) <= {200, 409}
    assert 200 in statuses
    assert all(b["accepted"] == 300 for b in bodies)  # replays of the one execution
    log = (await client.get("/v1/events", params={"limit": 1000})).json()["items"]
    assert len(log) == 300


async def test_a_stale_in_flight_claim_can_be_taken_over(
    container: Container, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    container.idempotency.begin(container.default_tenant, "k-6", "crashed request")
    clock.advance(container.settings.idempotency.in_flight_timeout + timedelta(seconds=1))
    response = await client.post(
        "/v1/events", json=[event("a")], headers={"Idempotency-Key": "k-6"}
    )
    assert response.status_code == 200


async def test_keys_expire_after_the_ttl_and_are_kept_before(
    container: Container, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    headers = {"Idempotency-Key": "k-7"}
    await client.post("/v1/events", json=[event("a")], headers=headers)
    clock.advance(timedelta(hours=23, minutes=59))
    kept = await client.post("/v1/events", json=[event("b")], headers=headers)
    assert kept.status_code == 422  # still remembered: a different body is refused
    clock.advance(timedelta(minutes=2))
    fresh = await client.post("/v1/events", json=[event("b")], headers=headers)
    assert fresh.status_code == 200
    assert "idempotent-replayed" not in fresh.headers
    assert container.idempotency.purge_expired() == 0  # the key was renewed by its new use


async def test_keys_are_scoped_to_the_tenant(
    container: Container, client: httpx.AsyncClient, client_for: ClientFactory
) -> None:
    container.tenancy.ensure_tenant("other")
    other = client_for(container.tenancy.create_key("other", "t", frozenset({Scope.ADMIN})).secret)
    headers = {"Idempotency-Key": "shared"}
    await client.post("/v1/events", json=[event("a")], headers=headers)
    response = await other.post("/v1/events", json=[event("zzz")], headers=headers)
    assert response.status_code == 200
    assert response.json()["results"][0]["id"] == "zzz"


async def test_a_client_error_answer_is_replayed_too(client: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "k-8"}
    bad = await client.post("/v1/events", json=[event("a", occurred_at="bad")], headers=headers)
    assert bad.status_code == 422
    again = await client.post("/v1/events", json=[event("a", occurred_at="bad")], headers=headers)
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json() == bad.json()


async def test_a_request_that_raised_releases_its_key(client: httpx.AsyncClient) -> None:
    headers = {"Idempotency-Key": "k-9"}
    empty = await client.post("/v1/events", json=[], headers=headers)
    assert empty.status_code == 422  # raised before any answer was stored
    retry = await client.post("/v1/events", json=[], headers=headers)
    assert "idempotent-replayed" not in retry.headers
    fixed = await client.post("/v1/events", json=[event("a")], headers=headers)
    assert fixed.status_code == 200


async def test_an_invalid_idempotency_key_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/events", json=[event("a")], headers={"Idempotency-Key": "x" * 256}
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "Idempotency-Key"


async def test_idempotency_needs_authentication_first(client_for: ClientFactory) -> None:
    response = await client_for(None).post(
        "/v1/events", json=[event("a")], headers={"Idempotency-Key": "k"}
    )
    assert response.status_code == 401


async def test_expired_keys_are_purged_and_fresh_ones_kept(
    container: Container, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    await client.post("/v1/events", json=[event("a")], headers={"Idempotency-Key": "old"})
    clock.advance(timedelta(hours=12))
    await client.post("/v1/events", json=[event("b")], headers={"Idempotency-Key": "new"})
    clock.advance(timedelta(hours=12, seconds=1))
    assert container.idempotency.purge_expired() == 1
    kept = await client.post("/v1/events", json=[event("b")], headers={"Idempotency-Key": "new"})
    assert kept.headers["idempotent-replayed"] == "true"
