"""OIDC bearer-token verification for people and for services, against one issuer.

Use one ``OidcVerifier`` per process (built in the composition root, closed with ``aclose``)
and call ``await verifier.verify(token)`` from a FastAPI dependency: it returns a
``VerifiedToken`` or raises ``AuthenticationFailed`` (``IdentityProviderError``, a subclass,
when the provider itself could not be reached or used). Reasons are one line and never
repeat the token or a value from it (a registered algorithm name, such as HS256, aside).
The verifier runs on asyncio; fetching and caching of keys are described in provider.py.

What a token must be, in the order checked:

1. A JWS in compact form (three segments, at most 16 KiB); JWE and opaque tokens fail.
2. Header: ``alg`` in the configured allowlist (a subset of RS256, ES256, EdDSA; ``none``
   and HS* can never be configured); ``typ``, when present, one of the accepted types
   (case-insensitive, ``application/`` prefix ignored; a missing ``typ`` passes unless
   ``require_typ``); no ``crit``; and **no** ``jku``, ``x5u``, ``x5c`` or ``jwk``: a token
   that offers its own key or key location is refused, and nothing it names is fetched.
   Keys come only from the JWKS named by the issuer's discovery document (see provider.py).
3. Key: ``kid``, when present, must be a short plain string (``kid_is_plain``), then is only
   a dictionary key. The key must have that kid and fit the algorithm (keys.py). An unknown
   kid refetches the JWKS, at most once per ``jwks_refetch_interval``. A token without kid
   is accepted only when the JWKS holds exactly one usable key; if its signature fails, the
   JWKS is refetched under the same limit (a provider that omits kids may have rotated).
4. PyJWT checks the signature (the key is bound to its algorithm; the allowlist is the
   only algorithm list given), ``iss`` equal to the issuer, ``aud`` containing the audience,
   and requires ``exp``, ``iss`` and ``aud``. Times are checked against the injected clock
   with the leeway: refused when ``now >= exp + leeway``, ``nbf > now + leeway`` or
   ``iat > now + leeway``.
5. Claims are mapped (``ClaimMapping``): subject, tenant (a claim, or a fixed tenant for an
   issuer that serves one; a token naming another tenant then fails), roles, player.

Person or service: the client id is the first of ``ClaimMapping.client_id_claims``
(``azp``, then ``client_id``) present. A token
is a **service** token when it names a client id and its subject equals it (the OAuth2
client-credentials shape, RFC 9068 section 2.2: no resource owner, so ``sub`` is the
client); every other token is a **person** token. Providers that give service accounts
another subject (Keycloak's service-account user id, Auth0's ``<client>@clients``) are
read as people by this rule.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType, TracebackType
from typing import Any, Literal

import httpx
import jwt

from plaudit.domain.clock import Clock, utc_now
from plaudit.domain.players import PlayerRef
from plaudit.errors import AuthenticationFailed, ConfigurationError
from plaudit.identity import claims as c
from plaudit.identity.keys import SUPPORTED_ALGORITHMS, UnknownKey, kid_is_plain
from plaudit.identity.provider import ProviderKeys, url_problem

TokenKind = Literal["person", "service"]

MAX_TOKEN_CHARS = 16 * 1024
MAX_LEEWAY = timedelta(seconds=60)
# Header parameters through which a token would choose its own key: refused, never fetched.
KEY_BEARING_HEADERS = ("jku", "x5u", "x5c", "jwk")
# Names from the JOSE algorithm registry; only these are ever repeated in an error.
_KNOWN_ALGORITHMS = frozenset(
    {
        *("none", "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384"),
        *("PS512", "ES256", "ES384", "ES512", "ES256K", "EdDSA", "Ed25519", "Ed448"),
    }
)
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")
_LATEST_DATE = 253402300799.0  # 9999-12-31T23:59:59Z, the last instant a datetime holds


def normalize_typ(typ: str) -> str:
    """RFC 7515 section 4.1.9: compared case-insensitively, ``application/`` may be omitted."""
    typ = typ.strip().lower()
    return typ.removeprefix("application/")


@dataclass(frozen=True, slots=True)
class ClaimMapping:
    """Where Plaudit's notions live in the provider's claims (names or dotted paths)."""

    tenant_claim: str | None = "plaudit_tenant"
    # For an issuer that serves one tenant: every token belongs to it.
    fixed_tenant: str | None = None
    roles_claim: str | None = "plaudit_roles"
    # A claim holding ``source:external_id`` (or ``plr_…``), e.g. ``plaudit_player``.
    player_claim: str | None = None
    subject_claim: str = "sub"
    client_id_claims: tuple[str, ...] = ("azp", "client_id")

    def __post_init__(self) -> None:
        names = (self.tenant_claim, self.roles_claim, self.player_claim, self.subject_claim)
        if any(name is not None and not name.strip() for name in names):
            raise ConfigurationError("OIDC claim names must not be empty")
        if not self.client_id_claims or not all(n.strip() for n in self.client_id_claims):
            raise ConfigurationError("OIDC client_id_claims must name at least one claim")
        if self.fixed_tenant is not None and not self.fixed_tenant.strip():
            raise ConfigurationError("OIDC fixed_tenant must not be empty")


@dataclass(frozen=True, slots=True)
class OidcConfig:
    """One trusted issuer and what its tokens must look like. Invalid values raise
    ConfigurationError at construction, so a bad setting stops start-up."""

    issuer: str
    audience: str
    algorithms: frozenset[str] = SUPPORTED_ALGORITHMS
    # Clock skew tolerated on exp/nbf/iat; capped at a minute so expiry still means something.
    leeway: timedelta = timedelta(seconds=30)
    accepted_types: frozenset[str] = frozenset({"JWT", "at+jwt"})
    require_typ: bool = False
    claims: ClaimMapping = field(default_factory=ClaimMapping)
    # A provider that does not answer in 5 s is down; requests must not hang on it.
    http_timeout: timedelta = timedelta(seconds=5)
    # How often an unknown kid may make us ask the provider: rotation is rare, and an
    # attacker's made-up kids must not turn the verifier into a load generator.
    jwks_refetch_interval: timedelta = timedelta(minutes=1)
    # Keys held longer than this are refetched on next use (revoked keys eventually go).
    jwks_max_age: timedelta = timedelta(hours=1)
    # http:// issuers on 127.0.0.1/::1/localhost, for tests against a local provider only.
    allow_http_loopback: bool = False

    def __post_init__(self) -> None:
        problem = url_problem(self.issuer, allow_http_loopback=self.allow_http_loopback)
        if problem is not None:
            raise ConfigurationError(f"OIDC issuer {self.issuer!r} {problem}")
        if not self.audience.strip():
            raise ConfigurationError("OIDC audience must not be empty")
        algorithms = frozenset(self.algorithms)
        for alg in sorted(algorithms):
            if alg.lower() == "none" or alg.upper().startswith("HS"):
                raise ConfigurationError(f"OIDC algorithm {alg!r} is never allowed")
            if alg not in SUPPORTED_ALGORITHMS:
                supported = ", ".join(sorted(SUPPORTED_ALGORITHMS))
                raise ConfigurationError(f"OIDC algorithm {alg!r} is not supported ({supported})")
        if not algorithms:
            raise ConfigurationError("OIDC algorithms must name at least one algorithm")
        object.__setattr__(self, "algorithms", algorithms)
        types = frozenset(normalize_typ(t) for t in self.accepted_types)
        if not types or "" in types:
            raise ConfigurationError("OIDC accepted_types must be non-empty type names")
        object.__setattr__(self, "accepted_types", types)
        if not timedelta(0) <= self.leeway <= MAX_LEEWAY:
            raise ConfigurationError("OIDC leeway must be between 0 and 60 seconds")
        if not timedelta(0) < self.http_timeout <= timedelta(seconds=60):
            raise ConfigurationError("OIDC http_timeout must be over 0 and at most 60 seconds")
        if self.jwks_refetch_interval <= timedelta(0):
            raise ConfigurationError("OIDC jwks_refetch_interval must be positive")
        if self.jwks_max_age < self.jwks_refetch_interval:
            raise ConfigurationError("OIDC jwks_max_age must be at least jwks_refetch_interval")


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """What a verified token says about its bearer, in Plaudit's terms.

    ``tenant_id``, ``player_ref`` and ``client_id`` are None when the token does not say;
    deciding whether that is acceptable (and which roles allow what) is the caller's job.
    """

    subject: str
    tenant_id: str | None
    roles: frozenset[str]
    player_ref: PlayerRef | None
    client_id: str | None
    kind: TokenKind
    issuer: str
    expires_at: datetime
    claims: Mapping[str, Any]


class OidcVerifier:
    """Verifies bearer tokens of one issuer (see the module docstring for the rules).

    ``http``: a client to use instead of the verifier's own (which it creates on first use
    and closes in ``aclose``); ``clock``: "now", for token times and the refetch interval.
    """

    def __init__(
        self,
        config: OidcConfig,
        *,
        http: httpx.AsyncClient | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._config = config
        self._clock = clock
        self._given_http = http
        self._own_http: httpx.AsyncClient | None = None
        self._keys = ProviderKeys(config, self._http, clock)

    @property
    def config(self) -> OidcConfig:
        return self._config

    async def load(self) -> None:
        """Discover the provider and fetch its keys now: a start-up check that raises
        IdentityProviderError when the provider is unreachable or misconfigured."""
        await self._keys.current()

    async def verify(self, token: str) -> VerifiedToken:
        """The bearer's verified identity; AuthenticationFailed with the reason otherwise."""
        header = self._checked_header(token)
        alg: str = header["alg"]
        kid: str | None = header.get("kid")
        keys = await self._keys.current()
        try:
            key = keys.find(kid, alg)
        except UnknownKey:
            keys = await self._keys.refetch()
            try:
                key = keys.find(kid, alg)
            except UnknownKey:
                raise AuthenticationFailed(
                    "token is signed with a key the issuer does not publish"
                ) from None
        try:
            claims = self._decode(token, key)
        except jwt.InvalidSignatureError:
            if kid is not None:
                raise AuthenticationFailed("token signature is invalid") from None
            # No kid and the one key fails: maybe the provider rotated. One refetch, limited.
            fresh = await self._keys.refetch()
            if fresh is keys:
                raise AuthenticationFailed("token signature is invalid") from None
            try:
                key = fresh.find(None, alg)
                claims = self._decode(token, key)
            except (UnknownKey, jwt.InvalidSignatureError):
                raise AuthenticationFailed("token signature is invalid") from None
        return self._verified(claims)

    async def aclose(self) -> None:
        if self._own_http is not None:
            await self._own_http.aclose()
            self._own_http = None

    async def __aenter__(self) -> OidcVerifier:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def _http(self) -> httpx.AsyncClient:
        if self._given_http is not None:
            return self._given_http
        if self._own_http is None:
            seconds = self._config.http_timeout.total_seconds()
            self._own_http = httpx.AsyncClient(timeout=seconds, follow_redirects=False)
        return self._own_http

    def _checked_header(self, token: str) -> dict[str, Any]:
        if not isinstance(token, str) or not token:
            raise AuthenticationFailed("no bearer token")
        if len(token) > MAX_TOKEN_CHARS:
            raise AuthenticationFailed(f"token is longer than {MAX_TOKEN_CHARS} characters")
        segments = token.count(".")
        if segments == 4:
            raise AuthenticationFailed("encrypted tokens (JWE) are not accepted")
        if segments != 2:
            raise AuthenticationFailed("token is not a JWT (expected three dot-separated parts)")
        header = _header_of(token)
        self._check_algorithm(header.get("alg"))
        for name in KEY_BEARING_HEADERS:
            if name in header:
                raise AuthenticationFailed(
                    f"token header {name!r} is refused: keys come only from the issuer's JWKS"
                )
        if "crit" in header:
            raise AuthenticationFailed("token header 'crit' names extensions we do not support")
        self._check_type(header.get("typ"))
        kid = header.get("kid")
        if kid is not None and not (isinstance(kid, str) and kid_is_plain(kid)):
            raise AuthenticationFailed("token key id (kid) is malformed")
        return header

    def _check_algorithm(self, alg: object) -> None:
        if not isinstance(alg, str) or not alg:
            raise AuthenticationFailed("token header has no algorithm (alg)")
        if alg.lower() == "none":
            raise AuthenticationFailed("unsigned tokens (alg none) are refused")
        if alg not in self._config.algorithms:
            named = repr(alg) if alg in _KNOWN_ALGORITHMS else "of the token"
            raise AuthenticationFailed(f"token algorithm {named} is not allowed")

    def _check_type(self, typ: object) -> None:
        if typ is None:
            if self._config.require_typ:
                raise AuthenticationFailed("token header has no type (typ)")
        elif not isinstance(typ, str) or normalize_typ(typ) not in self._config.accepted_types:
            raise AuthenticationFailed("token type (typ) is not an accepted type")

    def _decode(self, token: str, key: jwt.PyJWK) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=sorted(self._config.algorithms),
                audience=self._config.audience,
                issuer=self._config.issuer,
                options={
                    "require": ["exp", "iss", "aud"],
                    # Times are checked by _verified against the injected clock.
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.InvalidSignatureError:
            raise
        except jwt.MissingRequiredClaimError as exc:
            raise AuthenticationFailed(f"token lacks the required {exc.claim!r} claim") from None
        except jwt.InvalidIssuerError:
            raise AuthenticationFailed("token issuer is not the configured issuer") from None
        except jwt.InvalidAudienceError:
            raise AuthenticationFailed("token audience does not include this service") from None
        except jwt.InvalidAlgorithmError:
            raise AuthenticationFailed("token algorithm does not fit the issuer's key") from None
        except (jwt.PyJWTError, RecursionError):
            raise AuthenticationFailed("token is malformed or its claims are invalid") from None
        return claims

    def _verified(self, claims: dict[str, Any]) -> VerifiedToken:
        now = self._clock().timestamp()
        leeway = self._config.leeway.total_seconds()
        exp = c.numeric_date(claims, "exp")
        if exp is None or exp > _LATEST_DATE:
            raise AuthenticationFailed("token expiry (exp) is missing or out of range")
        if now >= exp + leeway:
            raise AuthenticationFailed("token has expired")
        nbf = c.numeric_date(claims, "nbf")
        if nbf is not None and nbf > now + leeway:
            raise AuthenticationFailed("token is not valid yet (nbf)")
        iat = c.numeric_date(claims, "iat")
        if iat is not None and iat > now + leeway:
            raise AuthenticationFailed("token is issued in the future (iat)")

        mapping = self._config.claims
        subject = c.string_claim(claims, mapping.subject_claim)
        if subject is None:
            raise AuthenticationFailed(f"token lacks the {mapping.subject_claim!r} claim")
        client_id = next(
            (
                value
                for name in mapping.client_id_claims
                if (value := c.string_claim(claims, name)) is not None
            ),
            None,
        )
        return VerifiedToken(
            subject=subject,
            tenant_id=self._tenant(claims),
            roles=c.roles_claim(claims, mapping.roles_claim)
            if mapping.roles_claim
            else frozenset(),
            player_ref=c.player_claim(claims, mapping.player_claim)
            if mapping.player_claim
            else None,
            client_id=client_id,
            kind="service" if client_id is not None and subject == client_id else "person",
            issuer=self._config.issuer,
            expires_at=datetime.fromtimestamp(exp, UTC),
            claims=MappingProxyType(claims),
        )

    def _tenant(self, claims: Mapping[str, Any]) -> str | None:
        mapping = self._config.claims
        named = c.string_claim(claims, mapping.tenant_claim) if mapping.tenant_claim else None
        if mapping.fixed_tenant is None:
            return named
        if named is not None and named != mapping.fixed_tenant:
            raise AuthenticationFailed("token names a tenant this issuer does not serve")
        return mapping.fixed_tenant


def _header_of(token: str) -> dict[str, Any]:
    """The JOSE header, decoded strictly (base64url alphabet only, a JSON object)."""
    segment = token.split(".", 1)[0]
    try:
        if _BASE64URL.fullmatch(segment) is None:
            raise ValueError
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (ValueError, RecursionError):
        raise AuthenticationFailed("token header is not base64url-encoded JSON") from None
    if not isinstance(header, dict):
        raise AuthenticationFailed("token header is not a JSON object")
    return header
