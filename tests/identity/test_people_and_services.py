"""Tokens issued through the provider's real flows verify, and map to Plaudit's terms."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest

from plaudit.domain.players import PlayerRef
from plaudit.identity import ClaimMapping
from tests.identity.conftest import AUDIENCE, MakeVerifier, MovableClock
from tests.identity.forge import assert_refused
from tests.support.oidc_provider import OidcProvider

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # slow: starts OIDC provider processes


async def test_a_persons_id_token_from_the_code_flow_verifies_with_tenant_roles_and_player(
    provider: OidcProvider, make_verifier: MakeVerifier, clock: MovableClock
) -> None:
    await provider.set_user(
        "alice",
        {
            "plaudit_tenant": "acme",
            "plaudit_roles": ["admin", "read"],
            "plaudit_player": "lms:a-42",
        },
    )
    tokens = await provider.login(client_id=AUDIENCE, sub="alice")
    verifier = make_verifier(provider, claims=ClaimMapping(player_claim="plaudit_player"))

    verified = await verifier.verify(tokens.id_token)

    assert verified.subject == "alice"
    assert verified.tenant_id == "acme"
    assert verified.roles == {"admin", "read"}
    assert verified.player_ref == PlayerRef.parse("lms:a-42")
    assert verified.client_id is None
    assert verified.kind == "person"
    assert verified.issuer == provider.issuer
    # The provider stamps whole seconds, taken a moment after the clock was read.
    assert timedelta(minutes=59) < verified.expires_at - clock.now < timedelta(hours=1, seconds=5)
    assert verified.claims["aud"] == [AUDIENCE]


async def test_the_shipped_provider_signs_without_kid_and_its_single_key_verifies(
    kidless_provider: OidcProvider, make_verifier: MakeVerifier
) -> None:
    await kidless_provider.set_user("carol", {"plaudit_tenant": "acme"})
    tokens = await kidless_provider.login(client_id=AUDIENCE, sub="carol")
    assert "kid" not in jwt.get_unverified_header(tokens.id_token)

    verified = await make_verifier(kidless_provider).verify(tokens.id_token)

    assert (verified.subject, verified.tenant_id, verified.roles) == ("carol", "acme", frozenset())


async def test_the_providers_access_tokens_are_opaque_and_refused(
    provider: OidcProvider, make_verifier: MakeVerifier
) -> None:
    tokens = await provider.login(client_id=AUDIENCE, sub="alice")

    await assert_refused(make_verifier(provider), tokens.access_token, "not a JWT")


async def test_roles_come_from_a_dotted_path_or_a_space_separated_string(
    provider: OidcProvider, make_verifier: MakeVerifier
) -> None:
    await provider.set_user(
        "dave", {"realm_access": {"roles": ["read", "admin"]}, "scope_roles": "read  events:write"}
    )
    tokens = await provider.login(client_id=AUDIENCE, sub="dave")

    nested = make_verifier(provider, claims=ClaimMapping(roles_claim="realm_access.roles"))
    spaced = make_verifier(provider, claims=ClaimMapping(roles_claim="scope_roles"))

    assert (await nested.verify(tokens.id_token)).roles == {"read", "admin"}
    assert (await spaced.verify(tokens.id_token)).roles == {"read", "events:write"}


async def test_roles_of_the_wrong_shape_are_refused(
    provider: OidcProvider, make_verifier: MakeVerifier
) -> None:
    await provider.set_user("erin", {"plaudit_roles": {"admin": True}})
    tokens = await provider.login(client_id=AUDIENCE, sub="erin")

    await assert_refused(make_verifier(provider), tokens.id_token, "'plaudit_roles' must be")


async def test_a_player_claim_that_is_no_player_reference_is_refused(
    provider: OidcProvider, make_verifier: MakeVerifier
) -> None:
    await provider.set_user("frank", {"plaudit_player": "no-colon-here"})
    tokens = await provider.login(client_id=AUDIENCE, sub="frank")
    verifier = make_verifier(provider, claims=ClaimMapping(player_claim="plaudit_player"))

    await assert_refused(verifier, tokens.id_token, "not a player reference")


async def test_a_fixed_tenant_applies_to_every_token_and_another_named_tenant_is_refused(
    provider: OidcProvider, make_verifier: MakeVerifier
) -> None:
    await provider.set_user("gina", {})
    await provider.set_user("hank", {"plaudit_tenant": "globex"})
    verifier = make_verifier(provider, claims=ClaimMapping(fixed_tenant="acme"))

    gina = await provider.login(client_id=AUDIENCE, sub="gina")
    hank = await provider.login(client_id=AUDIENCE, sub="hank")

    assert (await verifier.verify(gina.id_token)).tenant_id == "acme"
    await assert_refused(verifier, hank.id_token, "tenant this issuer does not serve")


async def test_a_token_whose_subject_is_its_client_id_verifies_as_a_service(
    provider: OidcProvider, make_verifier: MakeVerifier
) -> None:
    # The provider has no client-credentials grant (next test): the service's token is
    # issued through the code flow for a provider user whose sub is the client id and whose
    # claims carry client_id, the shape RFC 9068 gives client-credentials access tokens.
    await provider.set_user(
        "reporting-job",
        {"client_id": "reporting-job", "plaudit_tenant": "acme", "plaudit_roles": "events:write"},
    )
    tokens = await provider.login(client_id=AUDIENCE, sub="reporting-job")

    verified = await make_verifier(provider).verify(tokens.id_token)

    assert verified.kind == "service"
    assert verified.client_id == verified.subject == "reporting-job"
    assert verified.roles == {"events:write"}
    assert verified.tenant_id == "acme"


async def test_a_person_whose_token_names_the_client_in_azp_stays_a_person(
    provider: OidcProvider, make_verifier: MakeVerifier
) -> None:
    await provider.set_user("ivan", {"azp": "plaudit-web", "client_id": "ivan"})
    tokens = await provider.login(client_id=AUDIENCE, sub="ivan")

    verified = await make_verifier(provider).verify(tokens.id_token)

    # azp comes first: the client is plaudit-web, not the subject, so this is a person.
    assert (verified.kind, verified.client_id) == ("person", "plaudit-web")


async def test_the_provider_has_no_client_credentials_grant(provider: OidcProvider) -> None:
    # Documents the limitation the service test works around; fails once a version adds it.
    answer = await provider.token_request({"grant_type": "client_credentials"}, "reporting-job")

    assert answer.status_code == 400
    assert answer.json()["error"] == "unsupported_grant_type"


async def test_a_token_the_provider_issued_to_another_client_is_refused(
    provider: OidcProvider, make_verifier: MakeVerifier
) -> None:
    tokens = await provider.login(client_id="other-app", sub="alice")

    await assert_refused(make_verifier(provider), tokens.id_token, "audience")


async def test_an_expired_token_passes_within_the_leeway_and_fails_beyond_it(
    provider: OidcProvider, make_verifier: MakeVerifier, clock: MovableClock
) -> None:
    tokens = await provider.login(client_id=AUDIENCE, sub="alice")
    verifier = make_verifier(provider)  # leeway 30 s
    expires_at = (await verifier.verify(tokens.id_token)).expires_at

    clock.now = expires_at + timedelta(seconds=29)
    assert (await verifier.verify(tokens.id_token)).subject == "alice"
    clock.now = expires_at + timedelta(seconds=30)
    await assert_refused(verifier, tokens.id_token, "expired")


async def test_without_leeway_a_token_fails_at_its_expiry(
    provider: OidcProvider, make_verifier: MakeVerifier, clock: MovableClock
) -> None:
    tokens = await provider.login(client_id=AUDIENCE, sub="alice")
    clock.now = datetime.now(UTC)  # after the provider stamped iat: no leeway for it either
    verifier = make_verifier(provider, leeway=timedelta(0))
    expires_at = (await verifier.verify(tokens.id_token)).expires_at

    clock.now = expires_at - timedelta(seconds=1)
    await verifier.verify(tokens.id_token)
    clock.now = expires_at
    await assert_refused(verifier, tokens.id_token, "expired")
