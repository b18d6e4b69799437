"""Bad input gets a clear problem+json, the right status, and nothing written."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from plaudit.bootstrap import Container, build
from plaudit.domain.auth import Scope
from plaudit.services import tenancy
from plaudit.settings import Settings
from tests.api.conftest import ClientFactory
from tests.conftest import new_key
from tests.support.events import event

pytestmark = pytest.mark.anyio

PROBLEM = "application/problem+json"


async def _assert_nothing_written(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v1/events")).json()["items"] == []
    assert (await client.get("/v1/players")).json()["items"] == []


def _problem(response: httpx.Response, status: int, slug: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, object] = response.json()
    assert body["type"] == f"/problems/{slug}"
    assert body["status"] == status
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return body


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"[{]", b'[{"id": "a"},', b"\xff\xfe", b"[1, 2"],
)
async def test_malformed_json_is_400(client: httpx.AsyncClient, raw: bytes) -> None:
    response = await client.post(
        "/v1/events", content=raw, headers={"content-type": "application/json"}
    )
    body = _problem(response, 400, "malformed-request")
    assert "JSON" in str(body["detail"])
    await _assert_nothing_written(client)


@pytest.mark.parametrize("raw", [b'"a string"', b"42", b"null", b"   "])
async def test_a_body_that_is_neither_event_nor_batch_is_422(
    client: httpx.AsyncClient, raw: bytes
) -> None:
    response = await client.post(
        "/v1/events", content=raw, headers={"content-type": "application/json"}
    )
    _problem(response, 422, "invalid-input")


async def test_an_empty_batch_is_422(client: httpx.AsyncClient) -> None:
    body = _problem(await client.post("/v1/events", json=[]), 422, "invalid-input")
    assert "empty batch" in str(body["detail"])


async def test_a_batch_over_the_limit_is_413(client: httpx.AsyncClient) -> None:
    batch = [event(f"e{i}") for i in range(1001)]
    body = _problem(await client.post("/v1/events", json=batch), 413, "payload-too-large")
    assert "1001" in str(body["detail"])
    assert "1000" in str(body["detail"])
    await _assert_nothing_written(client)


async def test_a_batch_over_the_limit_with_invalid_events_is_still_413(
    client: httpx.AsyncClient,
) -> None:
    batch = [{"id": str(i)} for i in range(1001)]
    _problem(await client.post("/v1/events", json=batch), 413, "payload-too-large")


async def test_a_body_over_the_size_cap_is_413(
    client: httpx.AsyncClient, container: Container
) -> None:
    cap = container.settings.api.max_body_bytes
    huge = event("big", properties={"blob": "x" * cap})
    body = _problem(await client.post("/v1/events", json=huge), 413, "payload-too-large")
    assert str(cap) in str(body["detail"])
    await _assert_nothing_written(client)


async def test_a_streamed_body_over_the_cap_is_413(
    client: httpx.AsyncClient, container: Container
) -> None:
    cap = container.settings.api.max_body_bytes

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(cap // 65536 + 2):
            yield b"x" * 65536

    response = await client.post(
        "/v1/events", content=chunks(), headers={"content-type": "application/json"}
    )
    _problem(response, 413, "payload-too-large")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
async def test_the_wrong_content_type_is_415(client: httpx.AsyncClient, content_type: str) -> None:
    response = await client.post(
        "/v1/events", content=b'{"id": "a"}', headers={"content-type": content_type}
    )
    body = _problem(response, 415, "unsupported-media-type")
    assert "application/json" in str(body["detail"])
    await _assert_nothing_written(client)


async def test_a_json_content_type_with_charset_is_fine(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/events",
        content=httpx.Request("POST", "/", json=event("a")).content,
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing Authorization"),
        ("Basic dXNlcjpwYXNz", "malformed Authorization"),
        ("Bearer", "malformed Authorization"),
        ("Bearer not-a-key", "not a Plaudit API key"),
        ("Bearer plk_" + "A" * 43, "unknown API key"),
    ],
)
async def test_missing_or_malformed_or_unknown_keys_are_401(
    client_for: ClientFactory, header: str | None, reason: str
) -> None:
    anonymous = client_for(None)
    headers = {"Authorization": header} if header else {}
    response = await anonymous.post("/v1/events", json=[event("a")], headers=headers)
    body = _problem(response, 401, "unauthenticated")
    assert reason in str(body["detail"])
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_a_revoked_key_stops_working_at_once(
    container: Container, client_for: ClientFactory
) -> None:
    key = new_key(container, Scope.EVENTS_WRITE)
    writer = client_for(key)
    assert (await writer.post("/v1/events", json=[event("a")])).status_code == 200
    record = next(r for r in container.tenancy.list_keys(None) if key.startswith(r.display_prefix))
    container.tenancy.revoke_key(None, record.id)
    body = _problem(await writer.post("/v1/events", json=[event("b")]), 401, "unauthenticated")
    assert "revoked" in str(body["detail"])


async def test_a_key_revoked_by_another_process_stops_working_within_the_cache_time(
    container: Container,
    client_for: ClientFactory,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = new_key(container, Scope.EVENTS_WRITE)
    writer = client_for(key)
    assert (await writer.post("/v1/events", json=[event("a")])).status_code == 200
    other = build(settings)  # another process on the same database (the CLI, say)
    try:
        record = next(r for r in other.tenancy.list_keys(None) if key.startswith(r.display_prefix))
        other.tenancy.revoke_key(None, record.id)
    finally:
        other.close()
    # Checked less than KEY_CACHE_TTL ago: still trusted here...
    assert (await writer.post("/v1/events", json=[event("b")])).status_code == 200
    monkeypatch.setattr(tenancy, "KEY_CACHE_TTL", 0.0)  # ...until the time is up
    body = _problem(await writer.post("/v1/events", json=[event("c")]), 401, "unauthenticated")
    assert "revoked" in str(body["detail"])


async def test_a_key_without_the_scope_is_403(
    container: Container, client_for: ClientFactory
) -> None:
    reader = client_for(new_key(container, Scope.READ))
    body = _problem(await reader.post("/v1/events", json=[event("a")]), 403, "forbidden")
    assert "events:write" in str(body["detail"])
    ingest_only = client_for(new_key(container, Scope.EVENTS_WRITE))
    _problem(await ingest_only.get("/v1/events"), 403, "forbidden")
    _problem(await ingest_only.get("/v1/keys"), 403, "forbidden")
    assert (await ingest_only.post("/v1/events", json=[event("a")])).status_code == 200


async def test_page_sizes_over_the_cap_are_refused(client: httpx.AsyncClient) -> None:
    body = _problem(await client.get("/v1/events?limit=1001"), 422, "invalid-input")
    assert body["errors"] == [
        {"field": "query.limit", "message": "Input should be less than or equal to 1000"}
    ]


async def test_unknown_routes_and_methods_are_problems(client: httpx.AsyncClient) -> None:
    _problem(await client.get("/v1/nothing-here"), 404, "not-found")
    _problem(await client.delete("/v1/events"), 405, "method-not-allowed")


async def test_problem_types_resolve_to_a_description(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/events", json=[])
    described = await client.get(response.json()["type"])
    assert described.status_code == 200
    assert described.json()["title"] == "Invalid input"
