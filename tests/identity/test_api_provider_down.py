"""When the identity provider cannot be reached, a token cannot be checked: 503, not 401
(the caller did nothing wrong), and API keys keep working."""

from __future__ import annotations

from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from plaudit.api.app import create_app
from plaudit.bootstrap import Container
from plaudit.settings import Settings

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        _env_file=None,
        # Port 9 (discard): nothing listens there on a test machine.
        oidc={"issuer": "http://127.0.0.1:9", "audience": "x", "allow_http_loopback": True},
    )


async def test_an_unreachable_provider_is_a_503_and_keys_still_work(
    container: Container, admin_key: str
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode({"sub": "x"}, key, algorithm="RS256", headers={"kid": "a"})
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(container)), base_url="http://t"
    ) as api:
        answer = await api.get("/v1/events", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 503
        assert answer.json()["type"] == "/problems/service-unavailable"
        keyed = await api.get("/v1/events", headers={"Authorization": f"Bearer {admin_key}"})
        assert keyed.status_code == 200
