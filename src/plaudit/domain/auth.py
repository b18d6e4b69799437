"""Principals, scopes and API-key material. Keys are stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from enum import StrEnum

KEY_PREFIX = "plk_"


class Scope(StrEnum):
    EVENTS_WRITE = "events:write"
    PLAYERS_WRITE = "players:write"
    READ = "read"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, for which tenant, allowed to do what.

    ``kind`` says how the caller proved it (``api_key`` today); authorization looks only at
    tenant and scopes, so other ways of logging in fit without touching it.
    """

    tenant_id: str
    subject: str
    scopes: frozenset[Scope]
    kind: str = "api_key"

    def allows(self, scope: Scope) -> bool:
        return Scope.ADMIN in self.scopes or scope in self.scopes


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
