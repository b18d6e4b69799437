"""Known JWT attacks against a verifier of the real provider: each one is refused.

Tokens here are forged by hand. Most are signed with the provider's own key (the test holds
it), so that the one thing wrong with each is the thing under test; the control test shows
that the same forging with good claims verifies.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.identity.conftest import MakeVerifier, MovableClock
from tests.identity.forge import (
    Canary,
    assert_refused,
    b64url,
    claims_for,
    forge,
    forge_raw,
    unb64url,
)
from tests.support.oidc_provider import OidcProvider, ProviderKey

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # slow: starts OIDC provider processes


@pytest.fixture(scope="module")
def attacker() -> ProviderKey:
    return ProviderKey.generate()


@pytest.fixture
def canary() -> Iterator[Canary]:
    listener = Canary()
    yield listener
    listener.close()


def header_for(provider: OidcProvider, **overrides: Any) -> dict[str, Any]:
    """The header the provider sends, with overrides; None drops a member."""
    header: dict[str, Any] = {"alg": "RS256", "typ": "JWT", "kid": provider.key.kid}
    header.update(overrides)
    return {name: value for name, value in header.items() if value is not None}


def signed(provider: OidcProvider, header: dict[str, Any], claims: dict[str, Any]) -> str:
    return forge(header, claims, provider.key.private_key)


async def test_a_token_forged_with_the_providers_key_and_good_claims_verifies(
    provider: OidcProvider, make_verifier: MakeVerifier
) -> None:
    token = signed(provider, header_for(provider), claims_for(provider.issuer))

    verified = await make_verifier(provider).verify(token)

    assert (verified.subject, verified.tenant_id) == ("mallory", "acme")
    assert verified.roles == {"admin"}


@pytest.mark.parametrize(
    "typ", ["JWT", "jwt", "at+jwt", "AT+JWT", "application/at+jwt", "application/JWT", None]
)
async def test_the_accepted_token_types_verify_in_any_case_and_with_the_media_type_prefix(
    provider: OidcProvider, make_verifier: MakeVerifier, typ: str | None
) -> None:
    token = signed(provider, header_for(provider, typ=typ), claims_for(provider.issuer))

    assert (await make_verifier(provider).verify(token)).subject == "mallory"


@pytest.mark.parametrize("typ", ["logout+jwt", "dpop+jwt", "secevent+jwt", "JWS", "", 42])
async def test_a_token_of_another_type_is_refused(
    provider: OidcProvider, make_verifier: MakeVerifier, typ: object
) -> None:
    token = signed(provider, header_for(provider, typ=typ), claims_for(provider.issuer))

    await assert_refused(make_verifier(provider), token, "type (typ)")


async def test_a_token_without_type_is_refused_when_a_type_is_required(
    provider: OidcProvider, make_verifier: MakeVerifier
) -> None:
    token = signed(provider, header_for(provider, typ=None), claims_for(provider.issuer))

    await assert_refused(make_verifier(provider, require_typ=True), token, "no type")


async def test_a_token_without_an_algorithm_is_refused(
    provider: OidcProvider, make_verifier: MakeVerifier
) -> None:
    token = signed(provider, header_for(provider), claims_for(provider.issuer))
    _, body, signature = token.split(".")
    no_alg = b64url(json.dumps(header_for(provider, alg=None)).encode())

    await assert_refused(make_verifier(provider), f"{no_alg}.{body}.{signature}", "no algorithm")


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
async def test_an_unsigned_token_is_refused(
    provider: OidcProvider, make_verifier: MakeVerifier, alg: str
) -> None:
    token = forge(header_for(provider, alg=alg), claims_for(provider.issuer))
    assert token.endswith(".")

    await assert_refused(make_verifier(provider), token, "alg none")


@pytest.mark.parametrize("form", ["pem", "jwk"])
async def test_hs256_with_the_providers_public_key_as_hmac_secret_is_refused(
    provider: OidcProvider, make_verifier: MakeVerifier, form: str
) -> None:
    jwks = {"keys": [provider.key.public_jwk()]}
    secret = provider.key.public_pem() if form == "pem" else json.dumps(jwks["keys"][0]).encode()
    token = forge(header_for(provider, alg="HS256"), claims_for(provider.issuer), secret)

    await assert_refused(make_verifier(provider), token, "algorithm 'HS256' is not allowed")


@pytest.mark.parametrize("alg", ["RS384", "RS512", "PS256"])
async def test_an_algorithm_outside_the_allowlist_is_refused_even_under_the_providers_key(
    provider: OidcProvider, make_verifier: MakeVerifier, alg: str
) -> None:
    token = signed(provider, header_for(provider, alg=alg), claims_for(provider.issuer))

    await assert_refused(make_verifier(provider), token, f"algorithm {alg!r} is not allowed")


async def test_a_verifier_allowing_only_es256_refuses_the_providers_rs256_tokens(
    provider: OidcProvider, make_verifier: MakeVerifier
) -> None:
    token = signed(provider, header_for(provider), claims_for(provider.issuer))
    verifier = make_verifier(provider, algorithms=frozenset({"ES256"}))

    await assert_refused(verifier, token, "algorithm 'RS256' is not allowed")


@pytest.mark.parametrize("issuer", ["http://evil.example", "{issuer}/", "{issuer}/realms/other"])
async def test_a_token_from_another_issuer_is_refused(
    provider: OidcProvider, make_verifier: MakeVerifier, issuer: str
) -> None:
    claims = claims_for(provider.issuer, iss=issuer.format(issuer=provider.issuer))
    token = signed(provider, header_for(provider), claims)

    await assert_refused(make_verifier(provider), token, "issuer")


@pytest.mark.parametrize("audience", ["other-api", ["other-api", "billing"], "plaudit-admin"])
async def test_a_token_for_another_audience_is_refused(
    provider: OidcProvider, make_verifier: MakeVerifier, audience: object
) -> None:
    token = signed(provider, header_for(provider), claims_for(provider.issuer, aud=audience))

    await assert_refused(make_verifier(provider), token, "audience")


async def test_a_token_whose_audiences_include_ours_verifies(
    provider: OidcProvider, make_verifier: MakeVerifier
) -> None:
    claims = claims_for(provider.issuer, aud=["billing", "plaudit"])
    token = signed(provider, header_for(provider), claims)

    assert (await make_verifier(provider).verify(token)).subject == "mallory"


@pytest.mark.parametrize("missing", ["exp", "iss", "aud", "sub"])
async def test_a_token_without_a_required_claim_is_refused(
    provider: OidcProvider, make_verifier: MakeVerifier, missing: str
) -> None:
    token = signed(provider, header_for(provider), claims_for(provider.issuer, **{missing: None}))

    await assert_refused(make_verifier(provider), token, f"'{missing}' claim")


@pytest.mark.parametrize("exp", ["9999999999", True, 1e300, [1]])
async def test_a_token_whose_exp_is_not_a_sane_number_is_refused(
    provider: OidcProvider, make_verifier: MakeVerifier, exp: object
) -> None:
    token = signed(provider, header_for(provider), claims_for(provider.issuer, exp=exp))

    await assert_refused(make_verifier(provider), token, "exp")


async def test_an_expired_token_is_refused_beyond_the_leeway_and_accepted_within_it(
    provider: OidcProvider, make_verifier: MakeVerifier, clock: MovableClock
) -> None:
    now = int(clock.now.timestamp())
    within = signed(provider, header_for(provider), claims_for(provider.issuer, exp=now - 25))
    beyond = signed(provider, header_for(provider), claims_for(provider.issuer, exp=now - 35))
    verifier = make_verifier(provider)

    assert (await verifier.verify(within)).subject == "mallory"
    await assert_refused(verifier, beyond, "expired")


async def test_a_token_not_valid_yet_is_refused_beyond_the_leeway_and_accepted_within_it(
    provider: OidcProvider, make_verifier: MakeVerifier, clock: MovableClock
) -> None:
    now = int(clock.now.timestamp())
    within = signed(provider, header_for(provider), claims_for(provider.issuer, nbf=now + 25))
    beyond = signed(provider, header_for(provider), claims_for(provider.issuer, nbf=now + 35))
    verifier = make_verifier(provider)

    assert (await verifier.verify(within)).subject == "mallory"
    await assert_refused(verifier, beyond, "not valid yet (nbf)")


async def test_a_token_issued_in_the_future_is_refused(
    provider: OidcProvider, make_verifier: MakeVerifier, clock: MovableClock
) -> None:
    iat = int(clock.now.timestamp()) + 600
    token = signed(provider, header_for(provider), claims_for(provider.issuer, iat=iat))

    await assert_refused(make_verifier(provider), token, "issued in the future")


@pytest.mark.parametrize(
    "kid",
    ["../../../dev/null", "' OR 1=1 --", "/etc/passwd", "key\x00", "k" * 200, "a b", 7, ["k"]],
)
async def test_a_malformed_kid_is_refused_before_any_lookup_or_fetch(
    provider: OidcProvider, make_verifier: MakeVerifier, kid: object
) -> None:
    token = signed(provider, header_for(provider, kid=kid), claims_for(provider.issuer))
    before = await provider.jwks_requests()

    message = await assert_refused(make_verifier(provider), token, "")

    assert "kid" in message or "header" in message
    if isinstance(kid, str):
        assert kid not in message
    assert await provider.jwks_requests() == before


async def test_a_plain_unknown_kid_does_reach_the_provider_so_the_count_above_can_move(
    provider: OidcProvider, make_verifier: MakeVerifier
) -> None:
    token = signed(provider, header_for(provider, kid="no-such-key"), claims_for(provider.issuer))
    before = await provider.jwks_requests()

    await assert_refused(make_verifier(provider), token, "does not publish")

    assert await provider.jwks_requests() == before + 1


async def test_the_canary_counts_a_connection(canary: Canary) -> None:
    assert canary.connections() == 0
    with socket.create_connection(("127.0.0.1", canary.port), timeout=2):
        pass
    assert canary.connections() == 1


@pytest.mark.parametrize("member", ["jku", "x5u"])
async def test_a_key_url_header_pointing_at_a_canary_is_refused_and_never_fetched(
    provider: OidcProvider,
    make_verifier: MakeVerifier,
    canary: Canary,
    attacker: ProviderKey,
    member: str,
) -> None:
    header = header_for(provider, kid=attacker.kid, **{member: canary.url})
    token = forge(header, claims_for(provider.issuer), attacker.private_key)

    await assert_refused(make_verifier(provider), token, f"header '{member}' is refused")

    assert canary.connections() == 0


async def test_a_key_url_header_on_a_token_signed_by_the_provider_is_refused_too(
    provider: OidcProvider, make_verifier: MakeVerifier, canary: Canary
) -> None:
    token = signed(provider, header_for(provider, jku=canary.url), claims_for(provider.issuer))

    await assert_refused(make_verifier(provider), token, "header 'jku' is refused")

    assert canary.connections() == 0


async def test_a_key_embedded_in_the_header_is_refused(
    provider: OidcProvider, make_verifier: MakeVerifier, attacker: ProviderKey
) -> None:
    der = b64url(attacker.public_pem())
    for member, value in (("jwk", attacker.public_jwk()), ("x5c", [der])):
        header = header_for(provider, kid=attacker.kid, **{member: value})
        token = forge(header, claims_for(provider.issuer), attacker.private_key)

        await assert_refused(make_verifier(provider), token, f"header '{member}' is refused")


async def test_a_token_signed_by_another_key_under_the_providers_kid_is_refused(
    provider: OidcProvider, make_verifier: MakeVerifier, attacker: ProviderKey
) -> None:
    token = forge(header_for(provider), claims_for(provider.issuer), attacker.private_key)

    await assert_refused(make_verifier(provider), token, "signature is invalid")


async def test_a_real_token_with_a_tampered_payload_is_refused(
    provider: OidcProvider, make_verifier: MakeVerifier
) -> None:
    await provider.set_user("judy", {"plaudit_tenant": "acme", "plaudit_roles": ["read"]})
    real = (await provider.login(client_id="plaudit", sub="judy")).id_token
    head, body, signature = real.split(".")
    claims = json.loads(unb64url(body))
    claims["plaudit_roles"] = ["admin"]
    verifier = make_verifier(provider)
    assert (await verifier.verify(real)).roles == {"read"}

    tampered = f"{head}.{b64url(json.dumps(claims).encode())}.{signature}"

    await assert_refused(verifier, tampered, "signature is invalid")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "malformed"),
        (b"[1, 2]", "malformed"),
        (b"[" * 5000, "malformed"),
    ],
)
async def test_a_signed_payload_that_is_not_a_claims_object_is_refused(
    provider: OidcProvider, make_verifier: MakeVerifier, payload: bytes, reason: str
) -> None:
    token = forge_raw(header_for(provider), payload, provider.key.private_key)

    await assert_refused(make_verifier(provider), token, reason)


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"plaudit_tenant": 42}, "'plaudit_tenant' must be a non-empty string"),
        ({"plaudit_tenant": ""}, "'plaudit_tenant' must be a non-empty string"),
        ({"azp": ["a", "b"]}, "'azp' must be a non-empty string"),
        ({"plaudit_roles": [f"r{n}" for n in range(300)]}, "more than 256 roles"),
        ({"plaudit_roles": ["read", 7]}, "'plaudit_roles' must be a list of strings"),
    ],
)
async def test_mapped_claims_of_the_wrong_shape_are_refused(
    provider: OidcProvider, make_verifier: MakeVerifier, claims: dict[str, Any], reason: str
) -> None:
    token = signed(provider, header_for(provider), claims_for(provider.issuer, **claims))

    await assert_refused(make_verifier(provider), token, reason)


async def test_a_critical_header_extension_is_refused(
    provider: OidcProvider, make_verifier: MakeVerifier
) -> None:
    header = header_for(provider, crit=["exp"], exp=int(time.time()) + 60)
    token = signed(provider, header, claims_for(provider.issuer))

    await assert_refused(make_verifier(provider), token, "crit")


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("", "no bearer token"),
        ("a.b", "not a JWT"),
        ("a.b.c.d.e", "encrypted tokens (JWE)"),
        ("!!!!.e30.c2ln", "header is not base64url"),
        (b64url(b"[1]") + ".e30.c2ln", "header is not a JSON object"),
        ("x" * 20_000, "longer than"),
    ],
)
async def test_tokens_that_are_not_compact_jws_are_refused(
    provider: OidcProvider, make_verifier: MakeVerifier, token: str, reason: str
) -> None:
    await assert_refused(make_verifier(provider), token, reason)


async def test_a_short_rsa_key_is_never_used_even_when_the_provider_signs_with_it(
    tmp_path_factory: pytest.TempPathFactory, make_verifier: MakeVerifier
) -> None:
    weak = ProviderKey(rsa.generate_private_key(public_exponent=65537, key_size=1024))
    with OidcProvider(tmp_path_factory.mktemp("weak")) as weak_provider:
        await weak_provider.rotate_key(weak)
        token = signed(weak_provider, header_for(weak_provider), claims_for(weak_provider.issuer))

        await assert_refused(make_verifier(weak_provider), token, "does not publish")


async def test_no_refusal_reaches_the_provider_more_than_once_a_minute(
    provider: OidcProvider, make_verifier: MakeVerifier, clock: MovableClock
) -> None:
    verifier = make_verifier(provider)
    before = await provider.jwks_requests()
    for n in range(30):
        kid = f"made-up-{n}"
        token = signed(provider, header_for(provider, kid=kid), claims_for(provider.issuer))
        await assert_refused(verifier, token, "does not publish")
        clock.advance(timedelta(seconds=1))

    # One initial load; 30 s of made-up kids asked nothing more.
    assert await provider.jwks_requests() == before + 1
