"""Signing in through the API with the identity provider's tokens (obtained by a real
authorization-code flow), beside API keys: roles become scopes, the tenant comes from the
token, a player sees only their own record, and a bad or foreign token is a 401."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from plaudit.bootstrap import Container
from plaudit.settings import Settings
from tests.api.test_rulesets_and_scoring import _publish
from tests.identity.forge import Canary, claims_for, forge
from tests.support.events import event
from tests.support.oidc_provider import OidcProvider

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

CLIENT = "plaudit-web"


@pytest.fixture
def settings(tmp_path: Path, provider: OidcProvider) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        _env_file=None,
        oidc={"issuer": provider.issuer, "audience": CLIENT, "allow_http_loopback": True},
    )


async def sign_in(provider: OidcProvider, sub: str, **claims: object) -> dict[str, str]:
    await provider.set_user(sub, dict(claims))
    tokens = await provider.login(client_id=CLIENT, sub=sub)
    return {"Authorization": f"Bearer {tokens.id_token}"}


async def test_a_signed_in_person_gets_the_scopes_of_their_roles(
    api: httpx.AsyncClient, provider: OidcProvider, admin_key: str
) -> None:
    viewer = await sign_in(provider, "vera", plaudit_tenant="default", plaudit_roles=["viewer"])
    assert (await api.get("/v1/events", headers=viewer)).status_code == 200
    refused = await api.post("/v1/badges", headers=viewer, json={"id": "b", "name": "B"})
    assert refused.status_code == 403
    editor = await sign_in(provider, "ed", plaudit_tenant="default", plaudit_roles="editor")
    made = await api.post("/v1/badges", headers=editor, json={"id": "b", "name": "B"})
    assert made.status_code == 201, made.text
    log = await api.get(
        "/v1/audit",
        headers={"Authorization": f"Bearer {admin_key}"},
        params={"action": "badge.create"},
    )
    assert log.json()["items"][0]["actor"] == "oidc:ed"  # the audit log names the person
    # API keys keep working beside tokens.
    assert (
        await api.get("/v1/events", headers={"Authorization": f"Bearer {admin_key}"})
    ).is_success


async def test_a_signed_in_player_sees_only_their_own_record(
    api: httpx.AsyncClient, provider: OidcProvider, container: Container, admin_key: str
) -> None:
    admin = {"Authorization": f"Bearer {admin_key}"}
    async with httpx.AsyncClient(
        transport=api._transport, base_url="http://plaudit.test", headers=admin
    ) as as_admin:
        await _publish(as_admin)
    await api.post("/v1/events", headers=admin, json=[event("1"), event("2", actor="bob")])
    container.scoring.score_pending()
    alice = await sign_in(
        provider,
        "alice",
        plaudit_tenant="default",
        plaudit_roles=["player"],
        plaudit_player="lms:alice",
    )
    mine = await api.get("/v1/players/lms:alice", headers=alice)
    assert mine.status_code == 200, mine.text
    assert (await api.get("/v1/players/lms:bob", headers=alice)).status_code == 404
    assert (await api.get("/v1/events", headers=alice)).status_code == 403
    stranger = await sign_in(
        provider,
        "eve",
        plaudit_tenant="default",
        plaudit_roles=["player"],
        plaudit_player="lms:eve",
    )
    assert (await api.get("/v1/players/lms:alice", headers=stranger)).status_code == 401


async def test_tokens_of_an_unknown_tenant_or_forged_ones_are_refused(
    api: httpx.AsyncClient, provider: OidcProvider
) -> None:
    foreign = await sign_in(provider, "mallory", plaudit_tenant="acme", plaudit_roles=["owner"])
    answer = await api.get("/v1/events", headers=foreign)
    assert answer.status_code == 401
    assert "acme" in answer.json()["detail"]
    tokens = await provider.login(client_id=CLIENT, sub="mallory")
    header, payload, signature = tokens.id_token.split(".")
    forged = f"{header}.{payload}.{signature[:-4]}AAAA"
    assert (
        await api.get("/v1/events", headers={"Authorization": f"Bearer {forged}"})
    ).status_code == 401
    garbage = await api.get("/v1/events", headers={"Authorization": "Bearer not-a-token"})
    assert garbage.status_code == 401
    assert garbage.headers["content-type"] == "application/problem+json"


async def test_each_jwt_attack_through_the_api_is_a_401(
    api: httpx.AsyncClient, provider: OidcProvider, admin_key: str
) -> None:
    """The classic attacks, forged with the provider's own key where a signature is needed,
    so that the one thing wrong is the thing under test; a control token passes."""
    key = provider.key
    good_claims = claims_for(provider.issuer, aud=CLIENT, plaudit_tenant="default")
    good_claims["plaudit_roles"] = ["viewer"]
    header = {"alg": "RS256", "typ": "JWT", "kid": key.kid}
    canary = Canary()
    try:
        attacks: dict[str, str] = {
            "alg none": forge({"alg": "none", "typ": "JWT"}, good_claims),
            "HS256 with the public key": forge(
                {"alg": "HS256", "typ": "JWT", "kid": key.kid}, good_claims, key.public_pem()
            ),
            "wrong iss": forge(
                header, {**good_claims, "iss": "https://evil.example"}, key.private_key
            ),
            "wrong aud": forge(header, {**good_claims, "aud": "someone-else"}, key.private_key),
            "wrong typ": forge({**header, "typ": "logout+jwt"}, good_claims, key.private_key),
            "expired": forge(
                header, {**good_claims, "exp": good_claims["iat"] - 120}, key.private_key
            ),
            "kid path": forge({**header, "kid": "../../../dev/null"}, good_claims, key.private_key),
            "kid sql": forge({**header, "kid": "' OR 1=1 --"}, good_claims, key.private_key),
            "jku": forge({**header, "jku": canary.url}, good_claims, key.private_key),
            "x5u": forge({**header, "x5u": canary.url}, good_claims, key.private_key),
        }
        for name, token in attacks.items():
            answer = await api.get("/v1/events", headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 401, (name, answer.status_code, answer.text)
            assert answer.headers["content-type"] == "application/problem+json"
        assert canary.connections() == 0  # nothing a token names is ever fetched
    finally:
        canary.close()
    control = forge(header, good_claims, key.private_key)
    answer = await api.get("/v1/events", headers={"Authorization": f"Bearer {control}"})
    assert answer.status_code == 200, answer.text
