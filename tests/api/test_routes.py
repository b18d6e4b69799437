"""The route table: every route but health, docs and problem types requires a key."""

from __future__ import annotations

import re
import shutil

import httpx
import pytest
from sqlalchemy import create_engine

from plaudit.api.app import create_app
from plaudit.bootstrap import Container
from plaudit.domain.auth import ROLES, Role, Scope
from tests.api.conftest import ClientFactory
from tests.conftest import new_key

pytestmark = pytest.mark.anyio

PUBLIC = {"/healthz", "/readyz", "/problems/{slug}"}


def _routes(container: Container) -> list[tuple[str, str]]:
    """Every (method, path) the application serves, from its OpenAPI description."""
    spec = create_app(container).openapi()
    return [(method.upper(), path) for path, ops in spec["paths"].items() for method in ops]


async def test_every_route_except_the_public_ones_needs_a_key(
    container: Container, client_for: ClientFactory
) -> None:
    anonymous = client_for(None)
    routes = _routes(container)
    assert len(routes) > 10
    for method, path in routes:
        concrete = re.sub(r"\{[^}]+\}", "x", path)
        response = await anonymous.request(method, concrete, json={} if method != "GET" else None)
        if path in PUBLIC:
            assert response.status_code != 401, (method, path)
        else:
            assert response.status_code == 401, (method, path, response.status_code)


async def test_health_readiness_and_docs_are_public(
    container: Container, client_for: ClientFactory
) -> None:
    anonymous = client_for(None)
    assert (await anonymous.get("/healthz")).json() == {"status": "ok"}
    ready = await anonymous.get("/readyz")
    assert ready.status_code == 200
    # Every dependency of the mode is checked: the database, and Redis when there is one.
    expected = {"database": "ok"} | ({} if container.redis is None else {"redis": "ok"})
    assert ready.json()["checks"] == expected
    spec = (await anonymous.get("/openapi.json")).json()
    assert "/v1/events" in spec["paths"]
    assert "EventIn" in spec["components"]["schemas"]
    docs = await anonymous.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()


async def test_readiness_reports_a_broken_database(
    container: Container, client_for: ClientFactory
) -> None:
    container.db.engine.dispose()
    if container.db.is_sqlite:
        shutil.rmtree(container.settings.data_dir)  # SQLite cannot open a file in a lost directory
    else:  # the server answers, the database is gone
        lost = container.db.engine.url.set(database=f"{container.db.engine.url.database}_lost")
        container.db.engine = create_engine(lost)
    response = await client_for(None).get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"].startswith("error")


async def test_a_lost_database_is_503_with_retry_after_not_a_500(
    container: Container, client_for: ClientFactory, admin_key: str
) -> None:
    client = client_for(admin_key)
    assert (await client.get("/v1/events")).status_code == 200
    container.db.engine.dispose()
    if container.db.is_sqlite:
        shutil.rmtree(container.settings.data_dir)
    else:
        lost = container.db.engine.url.set(database=f"{container.db.engine.url.database}_lost")
        container.db.engine = create_engine(lost)
    response = await client.get("/v1/events")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"] == "1"
    assert response.json()["type"].endswith("/service-unavailable")
    assert "database" in response.json()["detail"]


async def test_keys_api_creates_lists_and_revokes(
    container: Container, client_for: ClientFactory
) -> None:
    client = client_for(new_key(container, *ROLES[Role.OWNER]))
    created = await client.post("/v1/keys", json={"name": "lms", "scopes": ["events:write"]})
    assert created.status_code == 201
    secret = created.json()["key"]
    listed = (await client.get("/v1/keys")).json()
    assert created.json()["id"] in [k["id"] for k in listed]
    assert all("key" not in k for k in listed)
    bad = await client.post("/v1/keys", json={"name": "x", "scopes": ["root"]})
    assert bad.status_code == 422
    assert "root" in bad.json()["detail"]
    editor = await client.post("/v1/keys", json={"name": "cms", "roles": ["editor"]})
    assert sorted(editor.json()["scopes"]) == ["read", "rules:write"]
    unknown = await client.post("/v1/keys", json={"name": "x", "roles": ["root"]})
    assert unknown.json()["errors"][0]["field"] == "roles"
    # An admin runs the tenant but does not hand out its keys.
    admin = client_for(new_key(container, Scope.ADMIN))
    assert (
        await admin.post("/v1/keys", json={"name": "x", "roles": ["viewer"]})
    ).status_code == 403
    # A key never gets more than its creator holds.
    keeper = client_for(new_key(container, Scope.KEYS_WRITE, Scope.READ))
    mint = await keeper.post("/v1/keys", json={"name": "x", "roles": ["owner"]})
    assert mint.status_code == 403
    assert "tenants:write" in mint.json()["detail"]
    viewer = await keeper.post("/v1/keys", json={"name": "x", "roles": ["viewer"]})
    assert viewer.status_code == 201
    revoked = await client.delete(f"/v1/keys/{created.json()['id']}")
    assert revoked.json()["revoked_at"] is not None
    transport = client._transport
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as lms:
        response = await lms.get("/v1/events", headers={"Authorization": f"Bearer {secret}"})
        assert response.status_code == 401
