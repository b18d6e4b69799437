"""Configuration that cannot be trusted is refused at start; discovery is checked."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from plaudit.errors import AuthenticationFailed, ConfigurationError
from plaudit.identity import ClaimMapping, IdentityProviderError, OidcConfig
from tests.identity.conftest import AUDIENCE, MakeVerifier, MovableClock
from tests.identity.forge import Canary
from tests.support.oidc_provider import OidcProvider

pytestmark = pytest.mark.anyio


@pytest.fixture
def canary() -> Iterator[Canary]:
    listener = Canary()
    yield listener
    listener.close()


@pytest.mark.slow
async def test_discovery_that_names_another_issuer_is_refused(
    provider: OidcProvider, make_verifier: MakeVerifier
) -> None:
    # The provider names itself without the trailing slash: not the same issuer, exactly.
    tokens = await provider.login(client_id=AUDIENCE, sub="alice")
    verifier = make_verifier(provider.issuer + "/")

    with pytest.raises(IdentityProviderError, match="names issuer") as raised:
        await verifier.verify(tokens.id_token)
    with pytest.raises(IdentityProviderError):
        await verifier.load()
    assert isinstance(raised.value, AuthenticationFailed)


@pytest.mark.slow
async def test_load_discovers_and_fetches_the_keys_up_front(
    provider: OidcProvider, make_verifier: MakeVerifier
) -> None:
    tokens = await provider.login(client_id=AUDIENCE, sub="alice")
    verifier = make_verifier(provider)
    before = await provider.jwks_requests()

    await verifier.load()
    assert await provider.jwks_requests() == before + 1
    await verifier.verify(tokens.id_token)
    assert await provider.jwks_requests() == before + 1


async def test_a_provider_that_never_answers_times_out_and_is_not_asked_again_at_once(
    canary: Canary, make_verifier: MakeVerifier, clock: MovableClock
) -> None:
    verifier = make_verifier(f"http://127.0.0.1:{canary.port}", http_timeout=timedelta(seconds=0.2))
    token = "eyJhbGciOiJSUzI1NiJ9.e30.c2ln"  # well-formed enough to need the keys

    with pytest.raises(IdentityProviderError, match="could not be fetched"):
        await verifier.verify(token)
    assert canary.connections() == 1
    with pytest.raises(IdentityProviderError, match="unavailable"):
        await verifier.verify(token)
    assert canary.connections() == 1

    clock.advance(timedelta(seconds=61))
    with pytest.raises(IdentityProviderError, match="could not be fetched"):
        await verifier.verify(token)
    assert canary.connections() == 2


def test_the_defaults_are_the_documented_ones() -> None:
    config = OidcConfig(issuer="https://login.example.com/realms/acme", audience="plaudit")

    assert config.algorithms == {"RS256", "ES256", "EdDSA"}
    assert config.leeway == timedelta(seconds=30)
    assert config.accepted_types == {"jwt", "at+jwt"}
    assert config.require_typ is False
    assert config.jwks_refetch_interval == timedelta(minutes=1)
    assert config.jwks_max_age == timedelta(hours=1)
    assert config.http_timeout == timedelta(seconds=5)
    assert config.allow_http_loopback is False
    assert config.claims == ClaimMapping()
    assert config.claims.tenant_claim == "plaudit_tenant"
    assert config.claims.roles_claim == "plaudit_roles"
    assert config.claims.player_claim is None
    assert config.claims.client_id_claims == ("azp", "client_id")


@pytest.mark.parametrize(
    "issuer", ["http://127.0.0.1:8080", "http://[::1]:8080/realms/x", "http://localhost:9000"]
)
def test_an_http_issuer_on_loopback_is_allowed_only_when_asked_for(issuer: str) -> None:
    assert OidcConfig(issuer=issuer, audience="plaudit", allow_http_loopback=True)
    with pytest.raises(ConfigurationError, match="allow_http_loopback"):
        OidcConfig(issuer=issuer, audience="plaudit")


@pytest.mark.parametrize(
    ("issuer", "reason"),
    [
        ("http://login.example.com", "must be https"),
        ("http://10.0.0.1", "must be https"),
        ("http://127.0.0.1.evil.example", "must be https"),
        ("ftp://login.example.com", "must be https"),
        ("https://user:secret@login.example.com", "credentials"),
        ("https://login.example.com/?tenant=x", "query"),
        ("https:///realms/x", "no host"),
        ("login.example.com", "no host"),
    ],
)
def test_an_issuer_that_is_not_https_or_not_plain_is_refused_at_configuration(
    issuer: str, reason: str
) -> None:
    with pytest.raises(ConfigurationError, match=reason):
        OidcConfig(issuer=issuer, audience="plaudit", allow_http_loopback=True)


@pytest.mark.parametrize(
    ("algorithms", "reason"),
    [
        ({"none"}, "never allowed"),
        ({"RS256", "HS256"}, "never allowed"),
        ({"hs512"}, "never allowed"),
        ({"RS384"}, "not supported"),
        ({"PS256"}, "not supported"),
        ({"ES512"}, "not supported"),
        (set(), "at least one"),
    ],
)
def test_algorithms_beyond_rs256_es256_eddsa_cannot_be_configured(
    algorithms: set[str], reason: str
) -> None:
    with pytest.raises(ConfigurationError, match=reason):
        OidcConfig(
            issuer="https://idp.example", audience="plaudit", algorithms=frozenset(algorithms)
        )


@pytest.mark.parametrize(
    "changes",
    [
        {"leeway": timedelta(seconds=61)},
        {"leeway": timedelta(seconds=-1)},
        {"audience": " "},
        {"accepted_types": frozenset({""})},
        {"accepted_types": frozenset()},
        {"http_timeout": timedelta(0)},
        {"jwks_refetch_interval": timedelta(0)},
        {"jwks_max_age": timedelta(seconds=30)},
    ],
)
def test_values_outside_their_bounds_are_refused_at_configuration(changes: dict[str, Any]) -> None:
    config: dict[str, Any] = {"issuer": "https://idp.example", "audience": "plaudit"}
    with pytest.raises(ConfigurationError):
        OidcConfig(**(config | changes))


@pytest.mark.parametrize(
    "changes",
    [{"tenant_claim": ""}, {"fixed_tenant": " "}, {"client_id_claims": ()}, {"subject_claim": ""}],
)
def test_empty_claim_names_are_refused_at_configuration(changes: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        ClaimMapping(**changes)


def test_a_sixty_second_leeway_is_the_most_allowed() -> None:
    config = OidcConfig("https://idp.example", "plaudit", leeway=timedelta(seconds=60))

    assert config.leeway == timedelta(seconds=60)
