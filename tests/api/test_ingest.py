from __future__ import annotations

import threading
import time

import httpx
import pytest
from sqlalchemy import func, select

from plaudit.bootstrap import Container
from plaudit.domain.auth import Scope
from plaudit.domain.events import IncomingEvent, IngestReport, Outcome
from plaudit.store.sql import tables
from tests.api.conftest import ClientFactory
from tests.support.events import event

pytestmark = pytest.mark.anyio


async def _log_count(client: httpx.AsyncClient) -> int:
    response = await client.get("/v1/events", params={"limit": 1000})
    return len(response.json()["items"])


async def test_a_batch_is_accepted_and_each_event_reported(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/events", json=[event("e1"), event("e2", actor="bob")])
    assert response.status_code == 200
    body = response.json()
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (2, 0, 0)
    assert [r["status"] for r in body["results"]] == ["accepted", "accepted"]
    assert all(r["event_id"].startswith("evt_") for r in body["results"])
    assert body["results"][0]["player_id"] != body["results"][1]["player_id"]


async def test_a_single_event_object_is_accepted(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/events", json=event("solo"))
    assert response.status_code == 200
    assert response.json()["results"][0]["status"] == "accepted"


async def test_duplicate_event_is_reported_and_not_stored_twice(client: httpx.AsyncClient) -> None:
    first = await client.post("/v1/events", json=[event("e1")])
    again = await client.post("/v1/events", json=[event("e1"), event("e1"), event("e2")])
    statuses = [r["status"] for r in again.json()["results"]]
    assert statuses == ["duplicate", "duplicate", "accepted"]
    original = first.json()["results"][0]["event_id"]
    assert again.json()["results"][0]["event_id"] == original
    assert again.json()["results"][1]["event_id"] == original
    assert await _log_count(client) == 2


async def test_a_repeat_within_one_batch_is_a_duplicate_of_the_first(
    client: httpx.AsyncClient,
) -> None:
    body = (await client.post("/v1/events", json=[event("x"), event("x")])).json()
    assert [r["status"] for r in body["results"]] == ["accepted", "duplicate"]
    assert body["results"][0]["event_id"] == body["results"][1]["event_id"]
    assert await _log_count(client) == 1


async def test_same_id_from_two_sources_are_two_events(client: httpx.AsyncClient) -> None:
    body = (await client.post("/v1/events", json=[event("x"), event("x", source="crm")])).json()
    assert body["accepted"] == 2


async def test_identity_maps_a_source_user_to_one_player(client: httpx.AsyncClient) -> None:
    body = (
        await client.post(
            "/v1/events",
            json=[event("1"), event("2"), event("3", source="crm"), event("4", actor="bob")],
        )
    ).json()
    players = [r["player_id"] for r in body["results"]]
    assert players[0] == players[1]
    assert len(set(players)) == 3  # lms:alice, crm:alice (another source), lms:bob
    again = (await client.post("/v1/events", json=[event("5")])).json()
    assert again["results"][0]["player_id"] == players[0]


async def test_invalid_events_are_rejected_per_event_naming_the_field(
    client: httpx.AsyncClient,
) -> None:
    batch = [
        event("ok"),
        event("no-zone", occurred_at="2026-05-01T10:00:00"),
        {**event("extra"), "points": 100},
        event("x" * 256),
        {**event("typed"), "actor": 42},
        {"id": "missing"},
    ]
    response = await client.post("/v1/events", json=batch)
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["accepted"] + ["rejected"] * 5
    fields = [{e["field"] for e in r.get("errors", [])} for r in results]
    assert fields[1] == {"occurred_at"}
    assert fields[2] == {"points"}
    assert fields[3] == {"id"}
    assert fields[4] == {"actor"}
    assert {"source", "type", "actor", "occurred_at"} <= fields[5]
    assert "time zone" in results[1]["errors"][0]["message"]
    assert results[2]["errors"][0]["message"] == "unknown field"
    assert await _log_count(client) == 1


async def test_an_event_far_in_the_future_is_rejected(client: httpx.AsyncClient) -> None:
    # The test clock stands at 2026-06-01T12:00Z; the default skew allowance is 15 minutes.
    response = await client.post("/v1/events", json=[event("f", occurred_at="2026-06-01T13:00Z")])
    assert response.status_code == 422
    result = response.json()["results"][0]
    assert result["errors"][0]["field"] == "occurred_at"
    assert "future" in result["errors"][0]["message"]


async def test_atomic_batch_with_one_invalid_event_writes_nothing(
    client: httpx.AsyncClient,
) -> None:
    batch = [event("a"), event("b", occurred_at="yesterday"), event("c")]
    response = await client.post("/v1/events", params={"atomic": "true"}, json=batch)
    assert response.status_code == 422
    problem = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert problem["errors"][0]["field"].startswith("[1].occurred_at")
    assert await _log_count(client) == 0
    assert (await client.get("/v1/players")).json()["items"] == []


async def test_atomic_batch_that_is_valid_is_accepted(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/events?atomic=true", json=[event("a"), event("b")])
    assert response.json()["accepted"] == 2


async def test_all_rejected_answers_422_with_each_result(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/events", json=[{"id": "x"}])
    assert response.status_code == 422
    assert response.json()["rejected"] == 1
    assert response.json()["results"][0]["status"] == "rejected"


async def test_sequence_gaps_are_reported_per_source(client: httpx.AsyncClient) -> None:
    batch = [event(f"s{n}", sequence=n) for n in (1, 2, 5, 6, 9)]
    batch.append(event("c1", source="crm", sequence=1))
    body = (await client.post("/v1/events", json=batch)).json()
    assert body["sequence_gaps"] == {
        "lms": [{"first": 3, "last": 4}, {"first": 7, "last": 8}],
        "crm": [],
    }
    body = (await client.post("/v1/events", json=[event("s3", sequence=3)])).json()
    assert body["sequence_gaps"]["lms"] == [{"first": 4, "last": 4}, {"first": 7, "last": 8}]
    gaps = (await client.get("/v1/sources/lms/gaps")).json()
    assert gaps["missing_count"] == 3
    assert gaps["received"] == [
        {"first": 1, "last": 3},
        {"first": 5, "last": 6},
        {"first": 9, "last": 9},
    ]


async def test_a_duplicate_does_not_count_as_a_received_sequence(
    client: httpx.AsyncClient,
) -> None:
    await client.post("/v1/events", json=[event("a", sequence=1), event("c", sequence=3)])
    body = (await client.post("/v1/events", json=[event("a", sequence=2)])).json()
    assert body["duplicates"] == 1
    gaps = (await client.get("/v1/sources/lms/gaps")).json()
    assert gaps["missing"] == [{"first": 2, "last": 2}]


async def test_events_of_one_tenant_are_invisible_to_another(
    client: httpx.AsyncClient, container: Container, client_for: ClientFactory
) -> None:
    await client.post("/v1/events", json=[event("mine")])
    container.tenancy.ensure_tenant("other")
    other_key = container.tenancy.create_key("other", "t", frozenset({Scope.ADMIN})).secret
    other = client_for(other_key)
    assert (await other.get("/v1/events")).json()["items"] == []
    # The same source id in the other tenant is a new event, not a duplicate.
    body = (await other.post("/v1/events", json=[event("mine")])).json()
    assert body["accepted"] == 1
    mine = (await client.get("/v1/events")).json()["items"][0]["event_id"]
    assert (await other.get(f"/v1/events/{mine}")).status_code == 404


def test_a_player_created_meanwhile_by_another_process_is_the_one_used(
    container: Container,
) -> None:
    """Another process creates the same new player while this one ingests (PostgreSQL takes
    both transactions at once): its identity link wins, this ingest maps to its player, and
    no orphan player is left behind."""
    at = container.clock()
    other = "plr_" + "0" * 32
    engine = container.db.engine
    with engine.connect() as conn:
        conn.begin()
        conn.execute(
            tables.players.insert().values(
                id=other, tenant_id="default", attributes={}, created_at=at, updated_at=at
            )
        )
        conn.execute(
            tables.identities.insert().values(
                tenant_id="default", source="lms", external_id="zoe", player_id=other, created_at=at
            )
        )
        report: list[IngestReport] = []
        ingesting = threading.Thread(
            target=lambda: report.append(
                container.ingest.ingest(
                    "default", [IncomingEvent("k1", "lms", "task.done", "zoe", at, {})]
                )
            )
        )
        ingesting.start()
        time.sleep(0.3)  # the ingest is waiting for this transaction (its insert, or its lock)
        conn.commit()
    ingesting.join(15)
    assert report, "the ingest did not finish"
    (result,) = report[0].results
    assert result.outcome == Outcome.ACCEPTED
    assert result.player_id == other
    with engine.connect() as conn:
        players = conn.execute(select(func.count()).select_from(tables.players)).scalar()
    assert players == 1
