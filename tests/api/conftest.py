from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from plaudit.api.app import create_app
from plaudit.bootstrap import Container

ClientFactory = Callable[[str | None], httpx.AsyncClient]


@pytest.fixture
async def client_for(container: Container) -> AsyncIterator[ClientFactory]:
    """Clients of the app over httpx's ASGI transport, each with its own key (or none)."""
    app = create_app(container)
    clients: list[httpx.AsyncClient] = []

    def make(key: str | None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        made = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://plaudit.test", headers=headers
        )
        clients.append(made)
        return made

    yield make
    for made in clients:
        await made.aclose()


@pytest.fixture
def client(client_for: ClientFactory, admin_key: str) -> httpx.AsyncClient:
    return client_for(admin_key)
