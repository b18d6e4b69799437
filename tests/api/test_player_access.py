"""A signed-in player (the ``player`` role, from an identity provider) sees their own record
and notifications and every board — nothing of anyone else, and changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from plaudit.api.app import create_app
from plaudit.bootstrap import Container
from plaudit.domain.auth import ROLES, Principal, Role
from tests.api.conftest import ClientFactory
from tests.api.test_rulesets_and_scoring import PROGRAM, _publish
from tests.conftest import new_key
from tests.support.events import event

pytestmark = pytest.mark.anyio

BOARD = PROGRAM + "leaderboards:\n  - {id: xp, name: XP, metric: {currency: xp}}\n"


class SignedIn:
    """Stands in for a sign-in: the request arrives with its principal already known."""

    def __init__(self, app: ASGIApp, principal: Principal) -> None:
        self.app = app
        self.principal = principal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope.setdefault("state", {})["principal"] = self.principal
        await self.app(scope, receive, send)


@pytest.fixture
async def as_alice(
    client: httpx.AsyncClient, container: Container
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    await _publish(client, BOARD)
    await client.post("/v1/events", json=[event("1"), event("2", actor="bob")])
    container.scoring.score_pending()
    container.leaderboards.sync()
    ids: dict[str, str] = {}
    players = (await client.get("/v1/players")).json()["items"]
    for p in players:
        ident = (await client.get(f"/v1/players/{p['id']}/identities")).json()
        ids[ident[0]["external_id"]] = p["id"]
    principal = Principal(
        container.default_tenant, "alice@idp", ROLES[Role.PLAYER], "oidc", player_id=ids["alice"]
    )
    app = SignedIn(create_app(container), principal)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://plaudit.test"
    ) as player:
        yield player, ids


async def test_a_player_sees_their_own_record_and_every_board(
    as_alice: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    player, ids = as_alice
    alice = ids["alice"]
    for path in (
        f"/v1/players/{alice}",
        "/v1/players/lms:alice",
        f"/v1/players/{alice}/ledger",
        f"/v1/players/{alice}/awards",
        f"/v1/players/{alice}/ranks",
        "/v1/leaderboards",
        "/v1/leaderboards/xp",
        "/v1/leaderboards/xp/standings",
        f"/v1/leaderboards/xp/standings/{alice}",
        "/v1/leaderboards/xp/windows",
    ):
        answer = await player.get(path)
        assert answer.status_code == 200, (path, answer.text)
    standings = (await player.get("/v1/leaderboards/xp/standings")).json()
    assert {e["subject"] for e in standings["items"]} == {alice, ids["bob"]}


async def test_a_player_sees_nothing_of_anyone_else_and_changes_nothing(
    as_alice: tuple[httpx.AsyncClient, dict[str, str]],
) -> None:
    player, ids = as_alice
    bob = ids["bob"]
    for path in (f"/v1/players/{bob}", "/v1/players/lms:bob", f"/v1/players/{bob}/ledger"):
        assert (await player.get(path)).status_code == 404, path  # not even "forbidden"
    assert (await player.get(f"/v1/players/{bob}/notifications/stream")).status_code == 404
    for method, path in (
        ("GET", "/v1/players"),
        ("GET", "/v1/events"),
        ("GET", "/v1/badges"),
        ("POST", "/v1/events"),
        ("PATCH", f"/v1/players/{ids['alice']}"),
        ("POST", f"/v1/players/{ids['alice']}/adjustments"),
        ("GET", "/v1/audit"),
    ):
        answer = await player.request(method, path, json={} if method != "GET" else None)
        assert answer.status_code == 403, (method, path, answer.status_code)


async def test_no_api_key_gets_the_player_role(
    container: Container, client_for: ClientFactory
) -> None:
    owner = client_for(new_key(container, *ROLES[Role.OWNER]))
    for body in ({"name": "x", "roles": ["player"]}, {"name": "x", "scopes": ["player"]}):
        refused = await owner.post("/v1/keys", json=body)
        assert refused.status_code == 422
        assert "sign-in" in refused.json()["detail"]
