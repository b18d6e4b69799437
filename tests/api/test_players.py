from __future__ import annotations

import anyio
import httpx
import pytest

from plaudit.bootstrap import Container
from plaudit.domain.auth import Scope
from tests.api.conftest import ClientFactory
from tests.conftest import new_key
from tests.support.events import event

pytestmark = pytest.mark.anyio


async def _ingest(client: httpx.AsyncClient, *events: dict[str, object]) -> list[str]:
    body = (await client.post("/v1/events", json=list(events))).json()
    return [r["player_id"] for r in body["results"]]


async def test_a_player_is_found_by_id_and_by_source_and_external_id(
    client: httpx.AsyncClient,
) -> None:
    (player_id,) = await _ingest(client, event("1", actor="alice@example.com"))
    by_id = (await client.get(f"/v1/players/{player_id}")).json()
    by_identity = (await client.get("/v1/players/lms:alice@example.com")).json()
    assert by_id == by_identity
    assert by_id["identities"] == [{"source": "lms", "external_id": "alice@example.com"}]


async def test_external_ids_with_colons_and_filters_by_source(client: httpx.AsyncClient) -> None:
    (player_id,) = await _ingest(client, event("1", source="crm", actor="urn:user:7"))
    assert (await client.get("/v1/players/crm:urn:user:7")).json()["id"] == player_id
    crm_only = (await client.get("/v1/players", params={"source": "crm"})).json()["items"]
    assert [p["id"] for p in crm_only] == [player_id]


async def test_unknown_players_and_bad_references(client: httpx.AsyncClient) -> None:
    missing = await client.get("/v1/players/lms:nobody")
    assert missing.status_code == 404
    assert "lms:nobody" in missing.json()["detail"]
    assert (await client.get("/v1/players/plr_0000000000")).status_code == 404
    bad = await client.get("/v1/players/nobody")
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "player"


async def test_players_are_listed_with_cursor_paging(client: httpx.AsyncClient) -> None:
    ids = await _ingest(client, *[event(str(i), actor=f"u{i}") for i in range(7)])
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/v1/players", params=params)).json()
        seen += [p["id"] for p in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids)
    assert len(seen) == 7
    bad = await client.get("/v1/players", params={"cursor": "garbage"})
    assert bad.status_code == 422


async def test_attributes_are_set_by_merge_patch(client: httpx.AsyncClient) -> None:
    await _ingest(client, event("1"))
    first = await client.patch(
        "/v1/players/lms:alice",
        json={
            "display_name": "Alice",
            "time_zone": "Europe/Paris",
            "locale": "fr-FR",
            "attributes": {"team": "red", "department": "sales", "level": 3},
        },
    )
    assert first.status_code == 200, first.text
    second = await client.patch(
        "/v1/players/lms:alice",
        json={"attributes": {"team": "blue", "department": None}, "locale": None},
        headers={"content-type": "application/merge-patch+json"},
    )
    player = second.json()
    assert player["attributes"] == {"team": "blue", "level": 3}
    assert player["display_name"] == "Alice"
    assert player["time_zone"] == "Europe/Paris"
    assert player["locale"] is None


async def test_attribute_patches_at_once_each_keep_the_others(client: httpx.AsyncClient) -> None:
    await _ingest(client, event("1"))

    async def patch(name: str) -> None:
        response = await client.patch("/v1/players/lms:alice", json={"attributes": {name: 1}})
        assert response.status_code == 200, response.text

    async with anyio.create_task_group() as tasks:
        for name in ("a", "b", "c", "d"):
            tasks.start_soon(patch, name)
    player = (await client.get("/v1/players/lms:alice")).json()
    assert player["attributes"] == {"a": 1, "b": 1, "c": 1, "d": 1}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
        ({"locale": "not a locale"}, "locale"),
        ({"attributes": {"bad name!": 1}}, "attributes.bad name!"),
        ({"attributes": {"team": {"nested": True}}}, "attributes.team"),
        ({"id": "plr_hijack"}, "id"),
        ({"tenant_id": "other"}, "tenant_id"),
    ],
)
async def test_bad_attribute_updates_are_refused_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    await _ingest(client, event("1"))
    response = await client.patch("/v1/players/lms:alice", json=body)
    assert response.status_code == 422
    assert any(e["field"].startswith(field) for e in response.json()["errors"]), response.text


async def test_linking_an_identity_maps_its_events_to_the_player(
    client: httpx.AsyncClient,
) -> None:
    (alice,) = await _ingest(client, event("1", actor="alice@example.com"))
    linked = await client.post(
        "/v1/players/lms:alice@example.com/identities",
        json={"source": "crm", "external_id": "crm-42"},
    )
    assert linked.status_code == 200
    assert {"source": "crm", "external_id": "crm-42"} in linked.json()["identities"]
    (from_crm,) = await _ingest(client, event("d1", source="crm", actor="crm-42"))
    assert from_crm == alice
    # Linking again is harmless.
    again = await client.post(
        f"/v1/players/{alice}/identities", json={"source": "crm", "external_id": "crm-42"}
    )
    assert again.status_code == 200
    identities = (await client.get(f"/v1/players/{alice}/identities")).json()
    assert len(identities) == 2


async def test_linking_an_identity_owned_by_another_player_is_409(
    client: httpx.AsyncClient,
) -> None:
    alice, bob = await _ingest(client, event("1", actor="alice"), event("2", actor="bob"))
    response = await client.post(
        f"/v1/players/{alice}/identities", json={"source": "lms", "external_id": "bob"}
    )
    assert response.status_code == 409
    assert bob in response.json()["detail"]
    assert "merge" in response.json()["detail"]


async def test_merging_players_moves_identities_and_events_and_redirects(
    client: httpx.AsyncClient,
) -> None:
    alice, alice_crm = await _ingest(
        client, event("1", actor="alice"), event("2", source="crm", actor="A-1")
    )
    await client.patch(f"/v1/players/{alice_crm}", json={"attributes": {"region": "EU"}})
    await client.patch(f"/v1/players/{alice}", json={"attributes": {"team": "red"}})
    merged = await client.post(f"/v1/players/{alice}/merge", json={"player": "crm:A-1"})
    assert merged.status_code == 200, merged.text
    survivor = merged.json()
    assert survivor["id"] == alice
    assert survivor["attributes"] == {"team": "red", "region": "EU"}
    assert len(survivor["identities"]) == 2
    # The absorbed id now leads to the survivor; its events are the survivor's.
    assert (await client.get(f"/v1/players/{alice_crm}")).json()["id"] == alice
    log = (await client.get("/v1/events", params={"player": alice})).json()["items"]
    assert {e["id"] for e in log} == {"1", "2"}
    (later,) = await _ingest(client, event("3", source="crm", actor="A-1"))
    assert later == alice
    listed = (await client.get("/v1/players")).json()["items"]
    assert [p["id"] for p in listed] == [alice]


async def test_merging_a_player_into_itself_is_409(client: httpx.AsyncClient) -> None:
    (alice,) = await _ingest(client, event("1"))
    response = await client.post(f"/v1/players/{alice}/merge", json={"player": "lms:alice"})
    assert response.status_code == 409


async def test_player_changes_need_the_players_write_scope(
    client: httpx.AsyncClient, container: Container, client_for: ClientFactory
) -> None:
    await _ingest(client, event("1"))
    reader = client_for(new_key(container, Scope.READ))
    assert (await reader.patch("/v1/players/lms:alice", json={})).status_code == 403
    hris = client_for(new_key(container, Scope.PLAYERS_WRITE))
    response = await hris.patch("/v1/players/lms:alice", json={"attributes": {"team": "x"}})
    assert response.status_code == 200


async def test_players_of_another_tenant_are_invisible(
    client: httpx.AsyncClient, container: Container, client_for: ClientFactory
) -> None:
    (alice,) = await _ingest(client, event("1"))
    container.tenancy.ensure_tenant("other")
    other = client_for(container.tenancy.create_key("other", "t", frozenset({Scope.ADMIN})).secret)
    assert (await other.get(f"/v1/players/{alice}")).status_code == 404
    assert (await other.get("/v1/players/lms:alice")).status_code == 404
    assert (await other.patch(f"/v1/players/{alice}", json={})).status_code == 404
    assert (await other.get("/v1/players")).json()["items"] == []
