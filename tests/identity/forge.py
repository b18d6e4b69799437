"""The attacker's side: tokens assembled and signed by hand, and a canary listener."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import time
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from plaudit.errors import AuthenticationFailed
from plaudit.identity import OidcVerifier, VerifiedToken

_RSA_HASHES: dict[str, hashes.HashAlgorithm] = {
    "256": hashes.SHA256(),
    "384": hashes.SHA384(),
    "512": hashes.SHA512(),
}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def claims_for(issuer: str, **overrides: Any) -> dict[str, Any]:
    """Claims a good token would carry, valid for an hour from now; None drops a claim."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": "plaudit",
        "sub": "mallory",
        "iat": now,
        "exp": now + 3600,
        "plaudit_tenant": "acme",
        "plaudit_roles": ["admin"],
    }
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not None}


def forge(header: dict[str, Any], claims: dict[str, Any], key: object = None) -> str:
    """A compact JWS of exactly this header and these claims, signed per ``header["alg"]``."""
    return forge_raw(header, json.dumps(claims).encode(), key)


def forge_raw(header: dict[str, Any], payload: bytes, key: object = None) -> str:
    """A compact JWS of this header over any payload bytes."""
    head = b64url(json.dumps(header).encode())
    body = b64url(payload)
    signing_input = f"{head}.{body}".encode()
    return f"{head}.{body}.{b64url(_signature(header['alg'], signing_input, key))}"


def _signature(alg: str, data: bytes, key: object) -> bytes:
    if alg.lower() == "none":
        return b""
    if alg.startswith("HS"):
        assert isinstance(key, bytes)
        return hmac.new(key, data, getattr(hashlib, "sha" + alg[2:])).digest()
    if alg.startswith(("RS", "PS")):
        assert isinstance(key, rsa.RSAPrivateKey)
        digest = _RSA_HASHES[alg[2:]]
        if alg.startswith("RS"):
            return key.sign(data, padding.PKCS1v15(), digest)
        pss = padding.PSS(mgf=padding.MGF1(digest), salt_length=padding.PSS.DIGEST_LENGTH)
        return key.sign(data, pss, digest)
    if alg == "ES256":
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    if alg == "EdDSA":
        assert isinstance(key, ed25519.Ed25519PrivateKey)
        return key.sign(data)
    raise AssertionError(f"forge cannot sign {alg}")


async def assert_refused(verifier: OidcVerifier, token: str, reason: str) -> str:
    """The verifier refuses ``token`` with a one-line reason containing ``reason`` and no
    part of the token; returns the reason."""
    try:
        verified: VerifiedToken = await verifier.verify(token)
    except AuthenticationFailed as exc:
        message = str(exc)
    else:
        raise AssertionError(f"token accepted, expected a refusal ({reason}): {verified}")
    assert reason in message, message
    assert "\n" not in message
    for segment in token.split("."):
        if len(segment) >= 8:
            assert segment[:8] not in message, message
    return message


class Canary:
    """A plain TCP listener on 127.0.0.1 that answers nothing and counts connections.

    Counting drains the accept queue without blocking: a client's connect() completes the
    handshake before it returns, so a connection made during a call is always counted.
    """

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(64)
        self._socket.setblocking(False)
        self._count = 0

    @property
    def port(self) -> int:
        port: int = self._socket.getsockname()[1]
        return port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/keys.json"

    def connections(self) -> int:
        while True:
            try:
                accepted, _ = self._socket.accept()
            except BlockingIOError:
                return self._count
            accepted.close()
            self._count += 1

    def close(self) -> None:
        self._socket.close()
