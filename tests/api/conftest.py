from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from plaudit.api.app import create_app
from plaudit.bootstrap import Container
from plaudit.settings import Settings
from tests.conftest import MODES, backend_settings

ClientFactory = Callable[[str | None], httpx.AsyncClient]


@pytest.fixture
async def client_for(container: Container) -> AsyncIterator[ClientFactory]:
    """Clients of the app over httpx's ASGI transport, each with its own key (or none). The
    transport runs no lifespan: the fixture runs it, so the app closes what it opened (the
    asyncio Redis client's sockets) before the test's event loop ends, as a server would."""
    app = create_app(container)
    clients: list[httpx.AsyncClient] = []

    def make(key: str | None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        made = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://plaudit.test", headers=headers
        )
        clients.append(made)
        return made

    async with app.router.lifespan_context(app):
        yield make
        for made in clients:
            await made.aclose()


@pytest.fixture
def client(client_for: ClientFactory, admin_key: str) -> httpx.AsyncClient:
    return client_for(admin_key)


@pytest.fixture(params=MODES)
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Every API test runs in both modes, unless its module asks for particular settings."""
    return backend_settings(request, tmp_path)
