"""Tenants: the platform owner makes them; each tenant's data is invisible and untouchable
from every other (OWASP API1), and no body can set a server-owned field (API3)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from plaudit.bootstrap import Container
from plaudit.domain.auth import ROLES, Role
from tests.api.conftest import ClientFactory
from tests.api.test_rulesets_and_scoring import PROGRAM, _publish
from tests.conftest import new_key
from tests.support.events import event

pytestmark = pytest.mark.anyio

BOARD = PROGRAM + "leaderboards:\n  - {id: xp, name: XP, metric: {currency: xp}}\n"


async def _resources(client: httpx.AsyncClient, container: Container) -> dict[str, Any]:
    """One of everything in the platform tenant; their ids."""
    ruleset_id = await _publish(client, BOARD)
    await client.post("/v1/events", json=[event("1"), event("2")])
    container.scoring.score_pending()
    container.leaderboards.sync()
    events = (await client.get("/v1/events")).json()["items"]
    player_id = (await client.get("/v1/players")).json()["items"][0]["id"]
    await client.post("/v1/badges", json={"id": "mentor", "name": "Mentor"})
    award = await client.post(
        "/v1/badges/mentor/awards", json={"player": player_id, "reason": "coached"}
    )
    hook = await client.post("/v1/webhooks", json={"url": "https://example.com/h"})
    key = await client.post("/v1/keys", json={"name": "lms", "roles": ["ingest"]})
    return {
        "ruleset": ruleset_id,
        "event": events[0]["event_id"],
        "player": player_id,
        "award": award.json()["id"],
        "webhook": hook.json()["id"],
        "key": key.json()["id"],
    }


async def test_another_tenants_resources_are_invisible_and_untouchable(
    container: Container, client_for: ClientFactory
) -> None:
    platform = client_for(new_key(container, *ROLES[Role.OWNER]))
    ids = await _resources(platform, container)
    created = await platform.post("/v1/tenants", json={"id": "acme", "name": "Acme"})
    assert created.status_code == 201, created.text
    acme = client_for(created.json()["owner_key"])

    r, e, p = ids["ruleset"], ids["event"], ids["player"]
    w, a, k = ids["webhook"], ids["award"], ids["key"]
    not_found: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", f"/v1/events/{e}", None),
        ("POST", f"/v1/events/{e}/retract", {"reason": "x"}),
        ("GET", f"/v1/players/{p}", None),
        ("GET", "/v1/players/lms:alice", None),
        ("PATCH", f"/v1/players/{p}", {"display_name": "Mallory"}),
        ("GET", f"/v1/players/{p}/ledger", None),
        ("GET", f"/v1/players/{p}/awards", None),
        ("GET", f"/v1/players/{p}/identities", None),
        ("GET", f"/v1/players/{p}/ranks", None),
        ("POST", f"/v1/players/{p}/adjustments", {"currency": "xp", "amount": 1, "reason": "x"}),
        ("POST", f"/v1/players/{p}/merge", {"player": "lms:alice"}),
        ("GET", f"/v1/rulesets/{r}", None),
        ("GET", f"/v1/rulesets/{r}/versions", None),
        ("PUT", f"/v1/rulesets/{r}/draft", {"source": "currencies: [xp]\n"}),
        ("POST", f"/v1/rulesets/{r}/publish", {}),
        ("GET", "/v1/badges/mentor", None),
        ("PATCH", "/v1/badges/mentor", {"name": "Mine"}),
        ("POST", f"/v1/awards/{a}/revoke", {"reason": "x"}),
        ("GET", "/v1/leaderboards/xp", None),
        ("GET", "/v1/leaderboards/xp/standings", None),
        ("GET", f"/v1/webhooks/{w}", None),
        ("PATCH", f"/v1/webhooks/{w}", {"enabled": False}),
        ("GET", f"/v1/webhooks/{w}/secrets", None),
        ("GET", f"/v1/webhooks/{w}/deliveries", None),
        ("DELETE", f"/v1/keys/{k}", None),
    ]
    for method, path, body in not_found:
        response = await acme.request(method, path, json=body)
        assert response.status_code == 404, (method, path, response.status_code)
    empty = ["/v1/events", "/v1/players", "/v1/issuance", "/v1/rule-errors", "/v1/webhooks"]
    for path in empty:
        body = (await acme.get(path)).json()
        assert (body["items"] if isinstance(body, dict) else body) == [], path
    assert [x["id"] for x in (await acme.get("/v1/keys")).json()] != [k]
    assert k not in (await acme.get("/v1/keys")).text
    acme_log = (await acme.get("/v1/audit")).json()["items"]
    assert all(entry["resource_id"] not in ids.values() for entry in acme_log)
    # Nothing changed in the platform tenant.
    assert (await platform.get(f"/v1/webhooks/{w}")).json()["enabled"] is True
    assert (await platform.get("/v1/badges/mentor")).json()["name"] == "Mentor"
    # A tenant's owner owns that tenant, not the platform.
    assert (await acme.get("/v1/tenants")).status_code == 403
    assert (await acme.post("/v1/tenants", json={"id": "x", "name": "X"})).status_code == 403


async def test_tenants_are_listed_and_validated(
    container: Container, client_for: ClientFactory
) -> None:
    owner = client_for(new_key(container, *ROLES[Role.OWNER]))
    await owner.post("/v1/tenants", json={"id": "acme", "name": "Acme"})
    assert [t["id"] for t in (await owner.get("/v1/tenants")).json()] == ["acme", "default"]
    assert (await owner.get("/v1/tenants/acme")).json()["name"] == "Acme"
    assert (await owner.get("/v1/tenants/nope")).status_code == 404
    again = await owner.post("/v1/tenants", json={"id": "acme", "name": "Acme"})
    assert again.status_code == 409
    for bad in ({"id": "Acme!", "name": "x"}, {"id": "", "name": "x"}, {"id": "a"}):
        assert (await owner.post("/v1/tenants", json=bad)).status_code == 422
    admin = client_for(new_key(container, *ROLES[Role.ADMIN]))
    assert (await admin.get("/v1/tenants")).status_code == 403


async def test_no_body_sets_a_server_owned_field(
    container: Container, client_for: ClientFactory
) -> None:
    # An owner: every route below is open to it, so a refusal can only be the body's.
    client = client_for(new_key(container, *ROLES[Role.OWNER]))
    await _publish(client)
    await client.post("/v1/events", json=[event("1")])
    attempts: list[tuple[str, str, Any]] = [
        ("POST", "/v1/keys", {"name": "x", "roles": ["viewer"], "tenant_id": "acme"}),
        ("POST", "/v1/keys", {"name": "x", "roles": ["viewer"], "id": "key_mine"}),
        ("POST", "/v1/tenants", {"id": "t1", "name": "T", "owner_key": "plk_mine"}),
        ("PATCH", "/v1/players/lms:alice", {"balances": {"xp": 1_000_000}}),
        ("PATCH", "/v1/players/lms:alice", {"tenant_id": "acme"}),
        ("PATCH", "/v1/players/lms:alice", {"id": "plr_mine"}),
        ("POST", "/v1/badges", {"id": "b", "name": "B", "created_at": "2020-01-01T00:00:00Z"}),
        ("POST", "/v1/webhooks", {"url": "https://example.com/h", "secret": "whsec_mine"}),
        ("POST", "/v1/webhooks", {"url": "https://example.com/h", "last_success_at": None}),
        ("POST", "/v1/events", [{**event("2"), "points": 1000}]),
        ("POST", "/v1/events", [{**event("3"), "player_id": "plr_someone"}]),
        ("POST", "/v1/events", [{**event("4"), "tenant_id": "acme"}]),
    ]
    for method, path, body in attempts:
        response = await client.request(method, path, json=body)
        assert response.status_code == 422, (path, body, response.status_code)
        if path == "/v1/events":  # per event: the one with the field is rejected, not stored
            assert response.json()["results"][0]["status"] == "rejected", body
    standing = (await client.get("/v1/players/lms:alice")).json()["standing"]
    assert standing["balances"] == {}  # nothing scored, and nothing set by hand
