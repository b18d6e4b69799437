from __future__ import annotations

import httpx
import pytest

from plaudit.bootstrap import Container
from tests.api.test_rulesets_and_scoring import _publish
from tests.support.events import event

pytestmark = pytest.mark.anyio


async def _event_id(client: httpx.AsyncClient, key: str) -> str:
    items = (await client.get("/v1/events", params={"limit": 1000})).json()["items"]
    found: str = next(e["event_id"] for e in items if e["id"] == key)
    return found


async def test_retracting_an_event_reverses_its_points_and_the_badges_it_made(
    client: httpx.AsyncClient, container: Container
) -> None:
    await _publish(client)
    await client.post("/v1/events", json=[event("1"), event("2")])
    container.scoring.score_pending()
    before = (await client.get("/v1/players/lms:alice")).json()["standing"]
    assert before["balances"] == {"xp": 20.0}
    assert [b["badge_id"] for b in before["badges"]] == ["scholar"]

    target = await _event_id(client, "2")
    response = await client.post(f"/v1/events/{target}/retract", json={"reason": "test data"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["reversed"] == [{"currency": "xp", "amount": -10.0}]
    assert len(body["revoked_awards"]) == 1

    after = (await client.get("/v1/players/lms:alice")).json()["standing"]
    assert after["balances"] == {"xp": 10.0}
    assert after["badges"] == []
    ledger = (await client.get("/v1/players/lms:alice/ledger")).json()["items"]
    assert [(e["kind"], e["amount"]) for e in ledger] == [
        ("rule", 10.0),
        ("rule", 10.0),
        ("retraction", -10.0),
    ]
    assert ledger[-1]["reason"] == "test data"
    trail = (await client.get("/v1/issuance")).json()["items"]
    assert [t["action"] for t in trail] == ["issued", "revoked"]

    # A later matching event earns the badge again; a replay agrees with all of it.
    await client.post("/v1/events", json=[event("3")])
    container.scoring.score_pending()
    again = (await client.get("/v1/players/lms:alice")).json()["standing"]
    assert again["balances"] == {"xp": 20.0}
    assert [b["badge_id"] for b in again["badges"]] == ["scholar"]
    container.scoring.replay()
    replayed = (await client.get("/v1/players/lms:alice")).json()["standing"]
    assert replayed["balances"] == again["balances"]
    assert [b["badge_id"] for b in replayed["badges"]] == ["scholar"]


async def test_a_retracted_event_not_yet_scored_is_never_scored(
    client: httpx.AsyncClient, container: Container
) -> None:
    await _publish(client)
    await client.post("/v1/events", json=[event("1")])
    target = await _event_id(client, "1")
    done = await client.post(f"/v1/events/{target}/retract", json={"reason": "duplicate sale"})
    assert done.json()["reversed"] == []
    container.scoring.score_pending()
    assert (await client.get("/v1/players/lms:alice")).json()["standing"]["balances"] == {}


async def test_retracting_twice_or_an_unknown_event_is_refused(
    client: httpx.AsyncClient, container: Container
) -> None:
    await _publish(client)
    await client.post("/v1/events", json=[event("1")])
    target = await _event_id(client, "1")
    await client.post(f"/v1/events/{target}/retract", json={"reason": "x"})
    again = await client.post(f"/v1/events/{target}/retract", json={"reason": "x"})
    assert again.status_code == 409
    missing = await client.post("/v1/events/evt_nope/retract", json={"reason": "x"})
    assert missing.status_code == 404
    no_reason = await client.post(f"/v1/events/{target}/retract", json={})
    assert no_reason.status_code == 422
