"""Service-to-service sign-in through the OAuth2 client-credentials grant of a real provider
(npm's oidc-provider on 127.0.0.1): the service's JWT access token is a credential of the
kind ``oidc-service``, with the tenant and roles its client was given."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from plaudit.settings import Settings
from tests.support.events import event
from tests.support.node_oidc import NodeProvider, require_node

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.fixture(scope="module")
def node_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProvider]:
    require_node()
    with NodeProvider(tmp_path_factory.mktemp("node-oidc")) as started:
        yield started


@pytest.fixture
def settings(tmp_path: Path, node_provider: NodeProvider) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        _env_file=None,
        oidc={"issuer": node_provider.issuer, "audience": "plaudit", "allow_http_loopback": True},
    )


async def test_a_service_token_from_the_client_credentials_grant_sends_events(
    api: httpx.AsyncClient, node_provider: NodeProvider, admin_key: str
) -> None:
    token = node_provider.client_credentials("crm-sync", "crm-sync-secret")
    service = {"Authorization": f"Bearer {token}"}
    sent = await api.post("/v1/events", headers=service, json=[event("1")])
    assert sent.status_code == 200, sent.text
    assert (await api.get("/v1/events", headers=service)).status_code == 403  # ingest only
    refused = await api.post("/v1/badges", headers=service, json={"id": "c", "name": "C"})
    assert refused.status_code == 403
    logged = await api.get("/v1/events", headers={"Authorization": f"Bearer {admin_key}"})
    assert [e["id"] for e in logged.json()["items"]] == ["1"]


async def test_a_service_of_an_unknown_tenant_or_a_wrong_secret_gets_nothing(
    api: httpx.AsyncClient, node_provider: NodeProvider
) -> None:
    token = node_provider.client_credentials("acme-sync", "acme-sync-secret")
    answer = await api.post(
        "/v1/events", headers={"Authorization": f"Bearer {token}"}, json=[event("1")]
    )
    assert answer.status_code == 401
    assert "acme" in answer.json()["detail"]
    async with httpx.AsyncClient(timeout=10) as http:
        refused = await http.post(
            f"{node_provider.issuer}/token",
            data={"grant_type": "client_credentials"},
            auth=("crm-sync", "wrong"),
        )
    assert refused.status_code == 401
