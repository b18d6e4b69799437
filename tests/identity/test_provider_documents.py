"""Providers that publish odd or hostile documents, served through httpx.MockTransport.

The real provider only serves one RSA key; these cover EC and Ed25519 keys, several keys,
and discovery or JWKS documents a verifier must not trust.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

from plaudit.errors import AuthenticationFailed
from plaudit.identity import IdentityProviderError, OidcConfig, OidcVerifier
from tests.identity.conftest import MakeVerifier
from tests.identity.forge import assert_refused, b64url, claims_for, forge

pytestmark = pytest.mark.anyio

ISSUER = "https://idp.example"
JWKS_URI = "https://keys.idp.example/jwks"


@dataclass
class Documents:
    """What the fake provider serves, and which URLs were asked for."""

    keys: list[dict[str, Any]]
    discovery: dict[str, Any] = field(
        default_factory=lambda: {"issuer": ISSUER, "jwks_uri": JWKS_URI}
    )
    jwks_status: int = 200
    jwks_body: bytes | None = None
    requests: list[str] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(str(request.url))
        if str(request.url) == ISSUER + "/.well-known/openid-configuration":
            return httpx.Response(200, json=self.discovery)
        if str(request.url) == JWKS_URI:
            body = self.jwks_body or json.dumps({"keys": self.keys}).encode()
            return httpx.Response(self.jwks_status, content=body)
        return httpx.Response(404)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(self.handle))


@pytest.fixture
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def ec_jwk(key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    return {**ECAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid}


def ed_jwk(key: ed25519.Ed25519PrivateKey, kid: str) -> dict[str, Any]:
    return {**OKPAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid}


async def test_es256_and_eddsa_tokens_verify_with_their_keys(
    make_verifier: MakeVerifier, ec_key: ec.EllipticCurvePrivateKey, ed_key: Any
) -> None:
    documents = Documents(keys=[ec_jwk(ec_key, "ec-1"), ed_jwk(ed_key, "ed-1")])
    async with documents.client() as http:
        verifier = make_verifier(ISSUER, http=http)
        es = forge({"alg": "ES256", "kid": "ec-1"}, claims_for(ISSUER), ec_key)
        ed = forge({"alg": "EdDSA", "kid": "ed-1"}, claims_for(ISSUER), ed_key)

        assert (await verifier.verify(es)).subject == "mallory"
        assert (await verifier.verify(ed)).subject == "mallory"


async def test_a_token_without_kid_is_refused_when_the_jwks_has_several_keys(
    make_verifier: MakeVerifier, ec_key: ec.EllipticCurvePrivateKey, ed_key: Any
) -> None:
    documents = Documents(keys=[ec_jwk(ec_key, "ec-1"), ed_jwk(ed_key, "ed-1")])
    async with documents.client() as http:
        token = forge({"alg": "ES256"}, claims_for(ISSUER), ec_key)

        await assert_refused(make_verifier(ISSUER, http=http), token, "several keys")


async def test_a_key_is_never_used_for_an_algorithm_of_another_key_type(
    make_verifier: MakeVerifier, ec_key: ec.EllipticCurvePrivateKey, ed_key: Any
) -> None:
    documents = Documents(keys=[ec_jwk(ec_key, "ec-1")])
    async with documents.client() as http:
        # An EdDSA token naming the EC key's kid: the kid matches, the key type does not.
        token = forge({"alg": "EdDSA", "kid": "ec-1"}, claims_for(ISSUER), ed_key)

        await assert_refused(make_verifier(ISSUER, http=http), token, "does not serve EdDSA")


async def test_a_symmetric_key_in_the_jwks_never_verifies_an_hmac_token(
    make_verifier: MakeVerifier,
) -> None:
    secret = b"a-shared-secret-of-32-bytes-long"
    documents = Documents(keys=[{"kty": "oct", "kid": "s", "k": b64url(secret), "alg": "HS256"}])
    async with documents.client() as http:
        token = forge({"alg": "HS256", "kid": "s"}, claims_for(ISSUER), secret)

        await assert_refused(make_verifier(ISSUER, http=http), token, "not allowed")


async def test_an_http_jwks_uri_off_loopback_is_refused(make_verifier: MakeVerifier) -> None:
    documents = Documents(keys=[])
    documents.discovery["jwks_uri"] = "http://keys.idp.example/jwks"
    async with documents.client() as http:
        with pytest.raises(IdentityProviderError, match="jwks_uri must be https"):
            await make_verifier(ISSUER, http=http).load()

    assert documents.requests == [ISSUER + "/.well-known/openid-configuration"]


async def test_discovery_naming_an_attackers_issuer_is_refused(make_verifier: MakeVerifier) -> None:
    documents = Documents(keys=[], discovery={"issuer": "https://evil.example", "jwks_uri": ""})
    async with documents.client() as http:
        with pytest.raises(IdentityProviderError, match=r"names issuer 'https://evil\.example'"):
            await make_verifier(ISSUER, http=http).load()


@pytest.mark.parametrize(
    ("discovery", "reason"),
    [
        ([ISSUER], "not a JSON object"),
        ({"issuer": ISSUER}, "has no jwks_uri"),
        ({"issuer": ISSUER, "jwks_uri": "https://keys.idp.example/jwks?x=1"}, "query"),
    ],
)
async def test_an_unusable_discovery_document_is_reported_as_a_provider_error(
    make_verifier: MakeVerifier, discovery: Any, reason: str
) -> None:
    documents = Documents(keys=[], discovery=discovery)
    async with documents.client() as http:
        with pytest.raises(IdentityProviderError, match=reason):
            await make_verifier(ISSUER, http=http).load()


async def test_the_verifier_closes_the_client_it_made_itself(ec_key: Any) -> None:
    config = OidcConfig(issuer=ISSUER, audience="plaudit")
    async with OidcVerifier(config) as verifier:
        assert verifier.config is config
        with pytest.raises(AuthenticationFailed, match="not a JWT"):
            await verifier.verify("opaque")


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (302, b"", "answered HTTP 302"),
        (500, b"", "answered HTTP 500"),
        (200, b"<html>", "not JSON"),
        (200, b'{"keys": {}}', "not a JWKS"),
        (200, b"[" * 600_000, "over 524288 bytes"),
    ],
)
async def test_an_unusable_jwks_answer_is_reported_as_a_provider_error(
    make_verifier: MakeVerifier, status: int, body: bytes, reason: str
) -> None:
    documents = Documents(keys=[], jwks_status=status, jwks_body=body or b"{}")
    async with documents.client() as http:
        with pytest.raises(IdentityProviderError, match=reason):
            await make_verifier(ISSUER, http=http).load()
