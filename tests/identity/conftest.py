"""Fixtures for the identity tests: real OIDC provider processes, a movable clock, verifiers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from plaudit.api.app import create_app
from plaudit.bootstrap import Container
from plaudit.identity import OidcConfig, OidcVerifier
from tests.support.oidc_provider import OidcProvider

AUDIENCE = "plaudit"  # the client id people log in through, so their ID tokens carry it


class MovableClock:
    """Real time at creation (the provider stamps real times), then moved by hand."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


MakeVerifier = Callable[..., OidcVerifier]


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture(scope="session")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    """A provider that sends a kid header, shared by the tests that do not rotate its key."""
    with OidcProvider(tmp_path_factory.mktemp("oidc")) as started:
        yield started


@pytest.fixture(scope="session")
def kidless_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    """The provider as it ships: its tokens carry no kid."""
    with OidcProvider(tmp_path_factory.mktemp("oidc-kidless"), kid_header=False) as started:
        yield started


@pytest.fixture
async def make_verifier(clock: MovableClock) -> AsyncIterator[MakeVerifier]:
    """``make_verifier(provider_or_issuer, **config)``: a verifier on the movable clock."""
    made: list[OidcVerifier] = []

    def make(issuer: OidcProvider | str, **config: Any) -> OidcVerifier:
        url = issuer.issuer if isinstance(issuer, OidcProvider) else issuer
        config.setdefault("audience", AUDIENCE)
        config.setdefault("allow_http_loopback", True)
        http = config.pop("http", None)
        verifier = OidcVerifier(OidcConfig(issuer=url, **config), http=http, clock=clock)
        made.append(verifier)
        return verifier

    yield make
    for verifier in made:
        await verifier.aclose()


@pytest.fixture
async def api(container: Container) -> AsyncIterator[httpx.AsyncClient]:
    """The app over httpx's ASGI transport (no key: each test sends its own credential)."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(container)), base_url="http://plaudit.test"
    ) as client:
        yield client
    if container.oidc is not None:  # ASGITransport runs no lifespan: close its client here
        await container.oidc.aclose()
