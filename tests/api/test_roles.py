"""Roles against the route table: every route declares the one scope it needs, and each
role gets exactly the routes its scopes allow — a new route without a declared scope, or a
role that reaches too far, fails here."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from plaudit.api.app import create_app
from plaudit.bootstrap import Container
from plaudit.domain.auth import ROLES, Principal, Role, Scope
from tests.api.conftest import ClientFactory
from tests.conftest import new_key

pytestmark = pytest.mark.anyio

PUBLIC = {"/healthz", "/readyz", "/problems/{slug}"}
# The policy, route by route: a change to a route's scope, or a new route, shows here.
POLICY: dict[tuple[str, str], str | None] = {
    ("GET", "/healthz"): None,
    ("GET", "/problems/{slug}"): None,
    ("GET", "/readyz"): None,
    ("GET", "/v1/audit"): "admin",
    ("GET", "/v1/audit/export"): "admin",
    ("POST", "/v1/awards/{award_id}/revoke"): "admin",
    ("GET", "/v1/badges"): "read",
    ("POST", "/v1/badges"): "rules:write",
    ("DELETE", "/v1/badges/{badge_id}"): "rules:write",
    ("GET", "/v1/badges/{badge_id}"): "read",
    ("PATCH", "/v1/badges/{badge_id}"): "rules:write",
    ("GET", "/v1/badges/{badge_id}/awards"): "read",
    ("POST", "/v1/badges/{badge_id}/awards"): "admin",
    ("GET", "/v1/events"): "read",
    ("POST", "/v1/events"): "events:write",
    ("GET", "/v1/events/{event_id}"): "read",
    ("POST", "/v1/events/{event_id}/retract"): "admin",
    ("GET", "/v1/holds"): "admin",
    ("POST", "/v1/holds/{player}/reject"): "admin",
    ("POST", "/v1/holds/{player}/release"): "admin",
    ("GET", "/v1/issuance"): "read",
    ("GET", "/v1/keys"): "keys:write",
    ("POST", "/v1/keys"): "keys:write",
    ("DELETE", "/v1/keys/{key_id}"): "keys:write",
    ("GET", "/v1/leaderboards"): "read or player boards",
    ("POST", "/v1/leaderboards/reconcile"): "admin",
    ("GET", "/v1/leaderboards/{board_id}"): "read or player boards",
    ("GET", "/v1/leaderboards/{board_id}/standings"): "read or player boards",
    ("GET", "/v1/leaderboards/{board_id}/standings/{subject}"): "read or player boards",
    ("GET", "/v1/leaderboards/{board_id}/stream"): "read or player boards",
    ("GET", "/v1/leaderboards/{board_id}/windows"): "read or player boards",
    ("GET", "/v1/players"): "read",
    ("GET", "/v1/players/{player}"): "read or player self",
    ("PATCH", "/v1/players/{player}"): "players:write",
    ("POST", "/v1/players/{player}/adjustments"): "admin",
    ("GET", "/v1/players/{player}/awards"): "read or player self",
    ("GET", "/v1/players/{player}/identities"): "read",
    ("POST", "/v1/players/{player}/identities"): "players:write",
    ("PUT", "/v1/players/{player}/leaderboard-privacy"): "players:write",
    ("GET", "/v1/players/{player}/ledger"): "read or player self",
    ("POST", "/v1/players/{player}/merge"): "players:write",
    ("GET", "/v1/players/{player}/notifications/stream"): "read or player self",
    ("GET", "/v1/players/{player}/ranks"): "read or player self",
    ("GET", "/v1/rule-errors"): "read",
    ("GET", "/v1/rulesets"): "read",
    ("POST", "/v1/rulesets"): "rules:write",
    ("GET", "/v1/rulesets/backfills/{backfill_id}"): "read",
    ("POST", "/v1/rulesets/backfills/{backfill_id}/confirm"): "admin",
    ("GET", "/v1/rulesets/schema"): "read",
    ("GET", "/v1/rulesets/{ruleset_id}"): "read",
    ("GET", "/v1/rulesets/{ruleset_id}/diff"): "read",
    ("PUT", "/v1/rulesets/{ruleset_id}/draft"): "rules:write",
    ("POST", "/v1/rulesets/{ruleset_id}/publish"): "rules:write",
    ("POST", "/v1/rulesets/{ruleset_id}/rollback"): "rules:write",
    ("POST", "/v1/rulesets/{ruleset_id}/simulate"): "read",
    ("POST", "/v1/rulesets/{ruleset_id}/validate"): "read",
    ("GET", "/v1/rulesets/{ruleset_id}/versions"): "read",
    ("GET", "/v1/rulesets/{ruleset_id}/versions/{version}"): "read",
    ("GET", "/v1/sources"): "read",
    ("GET", "/v1/sources/{source}/gaps"): "read",
    ("GET", "/v1/tenants"): "tenants:write",
    ("POST", "/v1/tenants"): "tenants:write",
    ("GET", "/v1/tenants/{tenant_id}"): "tenants:write",
    ("GET", "/v1/webhooks"): "admin",
    ("POST", "/v1/webhooks"): "admin",
    ("GET", "/v1/webhooks/event-types"): "read",
    ("DELETE", "/v1/webhooks/{webhook_id}"): "admin",
    ("GET", "/v1/webhooks/{webhook_id}"): "admin",
    ("PATCH", "/v1/webhooks/{webhook_id}"): "admin",
    ("GET", "/v1/webhooks/{webhook_id}/attempts"): "admin",
    ("POST", "/v1/webhooks/{webhook_id}/dead-letters/redeliver"): "admin",
    ("GET", "/v1/webhooks/{webhook_id}/deliveries"): "admin",
    ("POST", "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver"): "admin",
    ("GET", "/v1/webhooks/{webhook_id}/secrets"): "admin",
    ("POST", "/v1/webhooks/{webhook_id}/secrets/rotate"): "admin",
}


def _scopes(dependant: Dependant) -> Iterator[tuple[Scope, str | None]]:
    """The scope each route's dependencies declare, and whether a signed-in player may call
    it too ("self": for their own record; "boards": the leaderboards)."""
    for dep in dependant.dependencies:
        call: Callable[..., Any] | None = dep.call
        scope = getattr(call, "required_scope", None)
        if scope is not None:
            yield scope, getattr(call, "player_access", None)
        yield from _scopes(dep)


def _api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        included = getattr(route, "original_router", None)  # FastAPI's included routers
        if included is not None:
            yield from _api_routes(included.routes)


def _routes(container: Container) -> list[tuple[str, str, Scope | None, str | None]]:
    app = create_app(container)
    found = []
    for route in _api_routes(app.routes):
        if not route.include_in_schema:
            continue
        declared = list(_scopes(route.dependant))
        assert len(declared) <= 1, (route.path, declared)
        scope, player = declared[0] if declared else (None, None)
        for method in route.methods or ():
            found.append((method, route.path, scope, player))
    return found


def test_every_route_but_the_public_ones_declares_one_scope(container: Container) -> None:
    routes = _routes(container)
    undeclared = [(m, p) for m, p, scope, _ in routes if scope is None and p not in PUBLIC]
    assert undeclared == []
    policy = {
        (m, p): None if s is None else f"{s.value} or player {a}" if a else s.value
        for m, p, s, a in routes
    }
    assert policy == POLICY


@pytest.mark.parametrize("role", list(Role))
async def test_each_role_reaches_exactly_the_routes_its_scopes_allow(
    role: Role, container: Container, client_for: ClientFactory
) -> None:
    client = client_for(new_key(container, *ROLES[role]))
    principal = Principal(container.default_tenant, "test", ROLES[role])
    for method, path, scope, _ in _routes(container):
        if scope is None:
            continue
        concrete = re.sub(r"\{[^}]+\}", "nope", path)
        response = await client.request(method, concrete, json={} if method != "GET" else None)
        if principal.allows(scope):
            assert response.status_code != 403, (role, method, path, response.text)
        else:
            assert response.status_code == 403, (role, method, path, response.status_code)
            assert scope.value in response.json()["detail"]
