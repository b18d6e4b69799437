"""The issuer's signing keys, parsed once per JWKS fetch, and which key may verify which token.

A key verifies a token only when its ``kid`` matches and its type fits the token's algorithm
(RS256 needs an RSA key, ES256 an EC P-256 key, EdDSA an OKP Ed25519/Ed448 key, and a key
that names its own ``alg`` serves that algorithm alone). Each usable key is bound to its
algorithms here, as PyJWT ``PyJWK`` objects, so an RSA key can never verify an HS256 token
whatever the token says. Symmetric (``oct``) keys, encryption keys and RSA keys under 2048
bits are never loaded, and only the public members of a JWK are read.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt import PyJWK, PyJWTError

from plaudit.errors import AuthenticationFailed

log = logging.getLogger("plaudit.identity")

SUPPORTED_ALGORITHMS = frozenset({"RS256", "ES256", "EdDSA"})
MAX_KEYS = 100  # a JWKS holds a handful of keys; more is a misconfiguration or an attack
MIN_RSA_BITS = 2048

# kty and curves each algorithm needs (RFC 7518 section 3, RFC 8037 section 3.1).
_FITS: Mapping[str, tuple[str, frozenset[str] | None]] = {
    "RS256": ("RSA", None),
    "ES256": ("EC", frozenset({"P-256"})),
    "EdDSA": ("OKP", frozenset({"Ed25519", "Ed448"})),
}
# The public members of each key type: private ones ("d", "p", ...) are never read.
_PUBLIC_MEMBERS: Mapping[str, tuple[str, ...]] = {
    "RSA": ("n", "e"),
    "EC": ("crv", "x", "y"),
    "OKP": ("crv", "x"),
}

# Real kids are base64url, base64 (AWS Cognito), hex or dotted names. A kid is only ever a
# dict key here, but anything else (quotes, spaces, "..", a leading "/") is refused outright.
_KID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~+/=:-]{0,127}")


def kid_is_plain(kid: str) -> bool:
    """True for a short kid made of the characters real providers use, without "..": the
    rule that refuses path-traversal and SQL-looking kids before any lookup."""
    return _KID.fullmatch(kid) is not None and ".." not in kid


class UnknownKey(Exception):
    """No key with this kid (or, for a token without kid, no key at all): a refetch may help."""


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One key of the JWKS, bound to each allowed algorithm it can verify."""

    kid: str | None
    by_algorithm: Mapping[str, PyJWK]


@dataclass(frozen=True, slots=True)
class KeySet:
    """The usable signing keys of one JWKS document, looked up by kid."""

    keys: tuple[SigningKey, ...]
    by_kid: Mapping[str | None, tuple[SigningKey, ...]]

    @staticmethod
    def of(keys: tuple[SigningKey, ...]) -> KeySet:
        by_kid: dict[str | None, tuple[SigningKey, ...]] = {}
        for key in keys:
            by_kid[key.kid] = (*by_kid.get(key.kid, ()), key)
        return KeySet(keys=keys, by_kid=MappingProxyType(by_kid))

    def find(self, kid: str | None, alg: str) -> PyJWK:
        """The key that may verify a token with this ``kid`` and ``alg``.

        Raises UnknownKey when no key has the kid (a rotation may explain it), and
        AuthenticationFailed when a key exists but cannot serve the algorithm, or when a
        token without kid meets a JWKS of several keys.
        """
        if kid is None:
            if not self.keys:
                raise UnknownKey
            if len(self.keys) > 1:
                raise AuthenticationFailed(
                    "token has no key id (kid) and the issuer publishes several keys"
                )
            candidates = self.keys
        else:
            candidates = self.by_kid.get(kid, ())
            if not candidates:
                raise UnknownKey
        for key in candidates:
            bound = key.by_algorithm.get(alg)
            if bound is not None:
                return bound
        raise AuthenticationFailed(f"the issuer's key for this token does not serve {alg}")


def parse_jwks(document: object, algorithms: frozenset[str]) -> KeySet:
    """The usable keys of a JWKS document; ValueError when it is not a JWKS at all.

    Keys this verifier cannot or must not use (encryption keys, oct keys, unknown types,
    curves or algorithms, short RSA keys, broken members) are skipped with a warning, so
    that one odd key does not take the others down.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWKS (no 'keys' list)")
    entries: list[object] = document["keys"]
    if len(entries) > MAX_KEYS:
        raise ValueError(f"JWKS has {len(entries)} keys, more than {MAX_KEYS}")
    keys: list[SigningKey] = []
    for position, entry in enumerate(entries):
        key = _signing_key(entry, algorithms)
        if key is None:
            log.info("JWKS key #%d skipped: not a usable signing key", position)
        else:
            keys.append(key)
    return KeySet.of(tuple(keys))


def _signing_key(entry: object, algorithms: frozenset[str]) -> SigningKey | None:
    if not isinstance(entry, dict) or not _is_signing_jwk(entry):
        return None
    kty: str = entry["kty"]
    kid: str | None = entry.get("kid")
    jwk_alg: str | None = entry.get("alg")
    public = {"kty": kty} | {m: entry[m] for m in _PUBLIC_MEMBERS[kty] if m in entry}
    bound: dict[str, PyJWK] = {}
    for alg in sorted(algorithms):
        needed_kty, curves = _FITS[alg]
        if kty != needed_kty or (jwk_alg is not None and jwk_alg != alg):
            continue
        if curves is not None and public.get("crv") not in curves:
            continue
        try:
            pyjwk = PyJWK(public, algorithm=alg)
        except (PyJWTError, ValueError, TypeError):
            return None
        if isinstance(pyjwk.key, RSAPublicKey) and pyjwk.key.key_size < MIN_RSA_BITS:
            return None
        bound[alg] = pyjwk
    if not bound:
        return None
    return SigningKey(kid=kid, by_algorithm=MappingProxyType(bound))


def _is_signing_jwk(entry: dict[str, object]) -> bool:
    """A public key of a supported type meant for signatures, with well-formed metadata."""
    kty, kid, use, ops, alg = (entry.get(m) for m in ("kty", "kid", "use", "key_ops", "alg"))
    return (
        isinstance(kty, str)
        and kty in _PUBLIC_MEMBERS
        and (kid is None or (isinstance(kid, str) and kid_is_plain(kid)))
        and (use is None or use == "sig")
        and (ops is None or (isinstance(ops, list) and "verify" in ops))
        and (alg is None or isinstance(alg, str))
    )
