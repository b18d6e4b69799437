from __future__ import annotations

import httpx
import pytest

from tests.support.events import event

pytestmark = pytest.mark.anyio


@pytest.fixture
async def log(client: httpx.AsyncClient) -> httpx.AsyncClient:
    batch = [
        event("1", actor="alice", occurred_at="2026-05-01T09:00:00Z"),
        event("2", actor="bob", type="quiz.passed", occurred_at="2026-05-02T09:00:00Z"),
        event(
            "3", actor="alice", source="crm", type="deal.closed", occurred_at="2026-05-03T09:00Z"
        ),
        event("4", actor="alice", type="quiz.passed", occurred_at="2026-05-04T09:00:00+02:00"),
    ]
    assert (await client.post("/v1/events", json=batch)).json()["accepted"] == 4
    return client


async def _ids(client: httpx.AsyncClient, **params: str) -> list[str]:
    response = await client.get("/v1/events", params=params)
    assert response.status_code == 200, response.text
    return [e["id"] for e in response.json()["items"]]


async def test_the_log_lists_events_in_arrival_order(log: httpx.AsyncClient) -> None:
    assert await _ids(log) == ["1", "2", "3", "4"]


async def test_the_log_filters_by_player_source_type_and_time(log: httpx.AsyncClient) -> None:
    assert await _ids(log, player="lms:alice") == ["1", "4"]
    assert await _ids(log, source="crm") == ["3"]
    assert await _ids(log, type="quiz.passed") == ["2", "4"]
    assert await _ids(
        log, occurred_from="2026-05-02T00:00:00Z", occurred_until="2026-05-04T07:00:00Z"
    ) == ["2", "3"]
    assert await _ids(log, occurred_from="2026-05-04T07:00:00Z") == ["4"]  # 09:00+02:00


async def test_the_log_pages_with_a_cursor(log: httpx.AsyncClient) -> None:
    first = (await log.get("/v1/events", params={"limit": 3})).json()
    second = (
        await log.get("/v1/events", params={"limit": 3, "cursor": first["next_cursor"]})
    ).json()
    assert [e["id"] for e in first["items"] + second["items"]] == ["1", "2", "3", "4"]
    assert second["next_cursor"] is None


async def test_an_event_keeps_what_the_source_sent(log: httpx.AsyncClient) -> None:
    item = (await log.get("/v1/events", params={"type": "quiz.passed", "limit": 1})).json()
    stored = item["items"][0]
    one = (await log.get(f"/v1/events/{stored['event_id']}")).json()
    assert one == stored
    assert one["properties"] == {"course": "gdpr"}
    assert one["occurred_at"] == "2026-05-02T09:00:00Z"
    assert one["actor"] == "bob"


async def test_bad_filters_are_explained(log: httpx.AsyncClient) -> None:
    no_zone = await log.get("/v1/events", params={"occurred_from": "2026-05-01T00:00:00"})
    assert no_zone.status_code == 422
    assert no_zone.json()["errors"][0]["field"] == "query.occurred_from"
    empty = await log.get(
        "/v1/events",
        params={"occurred_from": "2026-05-02T00:00:00Z", "occurred_until": "2026-05-01T00:00Z"},
    )
    assert empty.status_code == 422
    assert (await log.get("/v1/events", params={"player": "lms:nobody"})).status_code == 404
    assert (await log.get("/v1/events/evt_nope")).status_code == 404


async def test_sources_are_listed_with_counts(log: httpx.AsyncClient) -> None:
    sources = (await log.get("/v1/sources")).json()
    assert sources == [{"source": "crm", "events": 1}, {"source": "lms", "events": 3}]
    assert (await log.get("/v1/sources/nowhere/gaps")).status_code == 404
    no_sequences = (await log.get("/v1/sources/lms/gaps")).json()
    assert no_sequences["missing"] == []


@pytest.mark.parametrize(
    "path", ["/v1/events", "/v1/players/lms:alice/ledger", "/v1/rule-errors", "/v1/issuance"]
)
async def test_a_forged_cursor_is_refused_on_every_paged_route(
    log: httpx.AsyncClient, path: str
) -> None:
    from plaudit.domain.pagination import encode_cursor

    for forged in (
        "garbage",
        encode_cursor("not-a-number"),
        encode_cursor("²"),
        encode_cursor("9" * 40),
    ):
        response = await log.get(path, params={"cursor": forged})
        assert response.status_code == 422, (path, response.text)
        assert response.json()["errors"][0]["field"] == "cursor"
