from __future__ import annotations

import asyncio

import httpx
import pytest

from plaudit.bootstrap import Container
from plaudit.domain.auth import Scope
from tests.api.conftest import ClientFactory
from tests.api.test_rulesets_and_scoring import _publish
from tests.support.events import event

pytestmark = pytest.mark.anyio

MENTOR = {
    "id": "mentor",
    "name": "Mentor",
    "description": "Coached a colleague through onboarding.",
    "image": "https://example.com/mentor.png",
    "narrative": "Awarded by a manager.",
    "tags": ["people"],
    "alignment": [{"targetName": "Coaching", "targetFramework": "Company skills"}],
}


async def test_badge_classes_come_from_the_rule_set_and_the_api(
    client: httpx.AsyncClient,
) -> None:
    await _publish(client)
    created = await client.post("/v1/badges", json=MENTOR)
    assert created.status_code == 201, created.text
    assert created.json()["origin"] == "manual"
    badges = {b["id"]: b for b in (await client.get("/v1/badges")).json()}
    assert badges["scholar"]["origin"] == "ruleset"
    assert badges["mentor"]["alignment"] == [
        {"targetName": "Coaching", "targetFramework": "Company skills"}
    ]
    patched = await client.patch("/v1/badges/mentor", json={"tags": ["people", "leadership"]})
    assert patched.json()["tags"] == ["people", "leadership"]
    assert patched.json()["name"] == "Mentor"
    clash = await client.post("/v1/badges", json={**MENTOR, "id": "scholar"})
    assert clash.status_code == 409
    assert "rule set" in clash.json()["detail"]
    again = await client.post("/v1/badges", json=MENTOR)
    assert again.status_code == 409
    assert (await client.delete("/v1/badges/mentor")).status_code == 204
    assert (await client.get("/v1/badges/mentor")).status_code == 404


async def test_a_manual_award_carries_its_evidence_and_is_audited(
    client: httpx.AsyncClient,
) -> None:
    await client.post("/v1/badges", json=MENTOR)
    await client.post("/v1/events", json=[event("1")])
    awarded = await client.post(
        "/v1/badges/mentor/awards",
        json={
            "player": "lms:alice",
            "reason": "coached Bob",
            "evidence": {"narrative": "Ran six sessions", "url": "https://example.com/e/1"},
        },
    )
    assert awarded.status_code == 201, awarded.text
    award = awarded.json()
    assert award["source"] == "manual"
    assert award["evidence"] == {"narrative": "Ran six sessions", "url": "https://example.com/e/1"}
    assert award["awarded_by"].startswith("key_")
    trail = (await client.get("/v1/issuance", params={"badge_id": "mentor"})).json()["items"]
    assert [(t["action"], t["reason"]) for t in trail] == [("issued", "coached Bob")]
    player = (await client.get("/v1/players/lms:alice")).json()
    assert [b["badge_id"] for b in player["standing"]["badges"]] == ["mentor"]


async def test_revoking_an_award_takes_it_away_with_a_reason(
    client: httpx.AsyncClient, container: Container
) -> None:
    await _publish(client)
    await client.post("/v1/events", json=[event("1"), event("2")])
    container.scoring.score_pending()
    (award,) = (await client.get("/v1/players/lms:alice/awards")).json()
    assert award["badge_id"] == "scholar"
    revoked = await client.post(
        f"/v1/awards/{award['id']}/revoke", json={"reason": "events were test data"}
    )
    assert revoked.status_code == 200
    assert revoked.json()["revoked_reason"] == "events were test data"
    standing = (await client.get("/v1/players/lms:alice")).json()["standing"]
    assert standing["badges"] == []
    scholar = next(p for p in standing["progress"] if p["badge_id"] == "scholar")
    assert scholar["earned"] is False
    # More matching events do not silently award it again.
    await client.post("/v1/events", json=[event("3")])
    container.scoring.score_pending()
    assert (await client.get("/v1/players/lms:alice")).json()["standing"]["badges"] == []
    trail = (await client.get("/v1/issuance", params={"player": "lms:alice"})).json()["items"]
    assert [t["action"] for t in trail] == ["issued", "revoked"]
    assert trail[0]["actor"].startswith("ruleset:rs_")
    assert "criteria met by event evt_" in trail[0]["reason"]
    twice = await client.post(f"/v1/awards/{award['id']}/revoke", json={"reason": "again"})
    assert twice.status_code == 409


async def test_bad_awards_are_refused(client: httpx.AsyncClient) -> None:
    await _publish(client)
    await client.post("/v1/events", json=[event("1")])
    unknown = await client.post(
        "/v1/badges/nope/awards", json={"player": "lms:alice", "reason": "x"}
    )
    assert unknown.status_code == 404
    no_tier = await client.post(
        "/v1/badges/scholar/awards", json={"player": "lms:alice", "reason": "x", "tier": "gold"}
    )
    assert no_tier.status_code == 422
    no_reason = await client.post("/v1/badges/scholar/awards", json={"player": "lms:alice"})
    assert no_reason.status_code == 422
    assert no_reason.json()["errors"][0]["field"] == "reason"


async def test_badges_and_awards_of_another_tenant_are_invisible(
    client: httpx.AsyncClient, container: Container, client_for: ClientFactory
) -> None:
    await client.post("/v1/badges", json=MENTOR)
    await client.post("/v1/events", json=[event("1")])
    award = (
        await client.post("/v1/badges/mentor/awards", json={"player": "lms:alice", "reason": "x"})
    ).json()
    container.tenancy.ensure_tenant("other")
    other = client_for(container.tenancy.create_key("other", "t", frozenset({Scope.ADMIN})).secret)
    assert (await other.get("/v1/badges")).json() == []
    assert (await other.get("/v1/badges/mentor")).status_code == 404
    revoke = await other.post(f"/v1/awards/{award['id']}/revoke", json={"reason": "x"})
    assert revoke.status_code == 404
    assert (await other.get("/v1/issuance")).json()["items"] == []


async def test_one_badge_class_created_four_times_at_once_is_created_once(
    client: httpx.AsyncClient,
) -> None:
    """Whichever request wins, the others get 409, never a 500 (on PostgreSQL they race to
    the unique key; the loser's transaction wrote nothing)."""
    answers = await asyncio.gather(*(client.post("/v1/badges", json=MENTOR) for _ in range(4)))
    assert sorted(a.status_code for a in answers) == [201, 409, 409, 409], [a.text for a in answers]
    assert [b["id"] for b in (await client.get("/v1/badges")).json()].count("mentor") == 1
