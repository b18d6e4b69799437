"""Principals, scopes and API-key material. Keys are stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

KEY_PREFIX = "plk_"


class Scope(StrEnum):
    """What a route needs. Every route declares exactly one (tests enumerate them)."""

    EVENTS_WRITE = "events:write"  # send events
    PLAYERS_WRITE = "players:write"  # profiles, identities, merges, privacy
    READ = "read"  # everything of the tenant, read-only
    RULES_WRITE = "rules:write"  # rule sets, badge classes, leaderboards (in rule sets)
    ADMIN = "admin"  # everything within the tenant but its keys
    KEYS_WRITE = "keys:write"  # the tenant's credentials
    TENANTS_WRITE = "tenants:write"  # the platform: tenants (the owner's)
    PLAYER = "player"  # a signed-in player: their own profile and notifications, the boards


# What each scope also grants: an admin is an editor, a writer of events and players and a
# reader; keys and tenants are granted only by name (the owner role holds them).
_IMPLIED: dict[Scope, frozenset[Scope]] = {
    Scope.ADMIN: frozenset(
        {Scope.EVENTS_WRITE, Scope.PLAYERS_WRITE, Scope.READ, Scope.RULES_WRITE}
    ),
    Scope.RULES_WRITE: frozenset({Scope.READ}),
}


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    EDITOR = "editor"
    VIEWER = "viewer"
    INGEST = "ingest"
    PLAYER = "player"  # given by a player's sign-in (OIDC), never to an API key


ROLES: dict[Role, frozenset[Scope]] = {
    Role.OWNER: frozenset({Scope.TENANTS_WRITE, Scope.KEYS_WRITE, Scope.ADMIN}),
    Role.ADMIN: frozenset({Scope.ADMIN}),
    Role.EDITOR: frozenset({Scope.RULES_WRITE, Scope.READ}),
    Role.VIEWER: frozenset({Scope.READ}),
    Role.INGEST: frozenset({Scope.EVENTS_WRITE}),
    Role.PLAYER: frozenset({Scope.PLAYER}),
}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, for which tenant, allowed to do what.

    ``kind`` says how the caller proved it (``api_key``, ``oidc``, ``mtls``; later ``saml``
    for the admin UI): authorization looks only at tenant and scopes, so a new way of
    logging in maps its roles to scopes and changes nothing else.
    """

    tenant_id: str
    subject: str
    scopes: frozenset[Scope]
    kind: str = "api_key"
    player_id: str | None = None  # the player a player's sign-in speaks for

    def allows(self, scope: Scope) -> bool:
        if scope in self.scopes:
            return True
        return any(scope in _IMPLIED.get(held, ()) for held in self.scopes)


def scopes_of_roles(values: list[str] | tuple[str, ...]) -> frozenset[Scope]:
    """The scopes of named roles; ValueError naming the first unknown one."""
    known = {r.value: r for r in Role}
    scopes: set[Scope] = set()
    for value in values:
        if value not in known:
            raise ValueError(f"unknown role {value!r} (known: {', '.join(known)})")
        scopes |= ROLES[known[value]]
    return frozenset(scopes)


def scopes_of_known_roles(names: Iterable[str]) -> frozenset[Scope]:
    """The scopes of the roles an identity provider or a certificate names; names that are
    not Plaudit roles (a provider's own) are ignored."""
    known = {r.value: r for r in Role}
    return frozenset(s for name in names if name in known for s in ROLES[known[name]])


def parse_scopes(values: list[str] | tuple[str, ...]) -> frozenset[Scope]:
    """Turn scope names into scopes; raise ValueError naming the first unknown one."""
    known = {s.value: s for s in Scope}
    scopes: set[Scope] = set()
    for value in values:
        if value not in known:
            raise ValueError(f"unknown scope {value!r} (known: {', '.join(sorted(known))})")
        scopes.add(known[value])
    if not scopes:
        raise ValueError("at least one scope is required")
    return frozenset(scopes)


@dataclass(frozen=True, slots=True)
class NewKey:
    secret: str
    hash: str
    display_prefix: str


def generate_key() -> NewKey:
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    return NewKey(secret=secret, hash=hash_key(secret), display_prefix=secret[:12])


def hash_key(secret: str) -> str:
    # A key has 256 bits of entropy, so a fast hash is safe (no dictionary to attack).
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def looks_like_key(token: str) -> bool:
    return token.startswith(KEY_PREFIX) and 20 <= len(token) <= 200
