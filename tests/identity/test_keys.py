"""Which JWKS keys are loaded, and which algorithm each may verify."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from plaudit.errors import AuthenticationFailed
from plaudit.identity.keys import SUPPORTED_ALGORITHMS, UnknownKey, kid_is_plain, parse_jwks
from tests.identity.forge import b64url, forge
from tests.support.oidc_provider import ProviderKey


@pytest.fixture(scope="module")
def rsa_key() -> ProviderKey:
    return ProviderKey.generate()


def test_an_rsa_key_serves_rs256_only(rsa_key: ProviderKey) -> None:
    keys = parse_jwks({"keys": [rsa_key.public_jwk()]}, SUPPORTED_ALGORITHMS)

    assert keys.find(rsa_key.kid, "RS256").algorithm_name == "RS256"
    for alg in ("HS256", "ES256", "EdDSA", "RS384"):
        with pytest.raises(AuthenticationFailed, match="does not serve"):
            keys.find(rsa_key.kid, alg)


def test_the_bound_key_refuses_an_hs256_token_inside_pyjwt_too(rsa_key: ProviderKey) -> None:
    # Defence in depth: even handed to PyJWT with HS256 allowed, the bound key refuses it.
    bound = parse_jwks({"keys": [rsa_key.public_jwk()]}, SUPPORTED_ALGORITHMS).find(
        rsa_key.kid, "RS256"
    )
    token = forge({"alg": "HS256", "kid": rsa_key.kid}, {"sub": "x"}, rsa_key.public_pem())

    with pytest.raises(jwt.InvalidAlgorithmError):
        jwt.decode(token, bound, algorithms=["HS256", "RS256"])


def test_an_unknown_kid_is_reported_as_unknown(rsa_key: ProviderKey) -> None:
    keys = parse_jwks({"keys": [rsa_key.public_jwk()]}, SUPPORTED_ALGORITHMS)

    with pytest.raises(UnknownKey):
        keys.find("another", "RS256")


@pytest.mark.parametrize(
    "changes",
    [
        {"use": "enc"},
        {"key_ops": ["encrypt"]},
        {"alg": "RS384"},
        {"alg": "RSA-OAEP"},
        {"kid": "../../etc/passwd"},
        {"kid": 12},
        {"kty": "RSA-PSS"},
        {"n": "not base64"},
    ],
)
def test_keys_not_meant_or_not_fit_for_our_signatures_are_skipped(
    rsa_key: ProviderKey, changes: dict[str, Any]
) -> None:
    good = rsa_key.public_jwk() | {"kid": "good"}
    odd = rsa_key.public_jwk() | changes

    keys = parse_jwks({"keys": [odd, good]}, SUPPORTED_ALGORITHMS)

    assert [key.kid for key in keys.keys] == ["good"]


def test_oct_keys_and_short_rsa_keys_are_never_loaded() -> None:
    short = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    jwks = {
        "keys": [
            {"kty": "oct", "kid": "s", "k": b64url(b"secret" * 6)},
            {**RSAAlgorithm.to_jwk(short.public_key(), as_dict=True), "kid": "short"},
        ]
    }

    assert parse_jwks(jwks, SUPPORTED_ALGORITHMS).keys == ()


def test_only_public_members_are_read_from_a_jwk_that_leaks_its_private_part(
    rsa_key: ProviderKey,
) -> None:
    leaked: dict[str, Any] = RSAAlgorithm.to_jwk(rsa_key.private_key, as_dict=True)

    key = parse_jwks(
        {"keys": [leaked | {"kid": "k", "key_ops": ["verify"]}]}, SUPPORTED_ALGORITHMS
    ).find("k", "RS256")

    assert isinstance(key.key, rsa.RSAPublicKey)


def test_keys_of_algorithms_not_configured_are_not_loaded(rsa_key: ProviderKey) -> None:
    p256 = ec.generate_private_key(ec.SECP256R1())
    p384 = ec.generate_private_key(ec.SECP384R1())
    jwks = {
        "keys": [
            rsa_key.public_jwk(),
            {**ECAlgorithm.to_jwk(p256.public_key(), as_dict=True), "kid": "p256"},
            {**ECAlgorithm.to_jwk(p384.public_key(), as_dict=True), "kid": "p384"},
        ]
    }

    assert [k.kid for k in parse_jwks(jwks, frozenset({"ES256"})).keys] == ["p256"]


@pytest.mark.parametrize("document", [[], {"keys": {}}, {"keys": [{}] * 101}, "keys"])
def test_a_document_that_is_not_a_jwks_is_refused(document: object) -> None:
    with pytest.raises(ValueError, match="JWKS"):
        parse_jwks(document, SUPPORTED_ALGORITHMS)


@pytest.mark.parametrize(
    "kid",
    [
        "2BPya7jY7JZiEunXL2yqhH6t2tIqJonnSiMNihku9HM",  # a thumbprint (Keycloak, authlib)
        "abcd1234/example+key=",  # AWS Cognito style base64
        "0b2e3d4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d",  # Google style hex
        "signing-key.2026-11",
        "urn:key:1",
    ],
)
def test_real_world_kids_are_plain(kid: str) -> None:
    assert kid_is_plain(kid)


@pytest.mark.parametrize(
    "kid",
    ["", "../../../dev/null", "/dev/null", "keys/../../x", "' OR 1=1 --", "k;drop", "a b", "é"],
)
def test_path_and_sql_looking_kids_are_not_plain(kid: str) -> None:
    assert not kid_is_plain(kid)
