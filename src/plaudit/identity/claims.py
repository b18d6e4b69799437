"""Reading Plaudit's meaning (tenant, roles, player, client) out of verified claims.

A claim name is looked up as a top-level name first (so namespaced names such as
``https://plaudit.example/roles`` work), then as a dotted path into nested objects (so
Keycloak's ``realm_access.roles`` works). Error messages name the configured claim, never
its value: values come from the token.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from plaudit.domain.players import PlayerRef
from plaudit.errors import AuthenticationFailed

MAX_ROLES = 256


def claim_at(claims: Mapping[str, Any], name: str) -> object | None:
    """The value of claim ``name`` (a top-level name, else a dotted path), or None."""
    if name in claims:
        value: object = claims[name]
        return value
    node: object = claims
    for part in name.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def string_claim(claims: Mapping[str, Any], name: str) -> str | None:
    """A claim that must be a non-empty string when present."""
    value = claim_at(claims, name)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise AuthenticationFailed(f"token claim {name!r} must be a non-empty string")
    return value


def roles_claim(claims: Mapping[str, Any], name: str) -> frozenset[str]:
    """Roles from a list of strings or a space-separated string; none when absent."""
    value = claim_at(claims, name)
    if value is None:
        return frozenset()
    if isinstance(value, str):
        roles = value.split()
    elif isinstance(value, list) and all(isinstance(role, str) for role in value):
        roles = [role for role in value if role]
    else:
        raise AuthenticationFailed(
            f"token claim {name!r} must be a list of strings or a space-separated string"
        )
    if len(roles) > MAX_ROLES:
        raise AuthenticationFailed(f"token claim {name!r} has more than {MAX_ROLES} roles")
    return frozenset(roles)


def player_claim(claims: Mapping[str, Any], name: str) -> PlayerRef | None:
    """A player reference (``plr_…`` or ``source:external_id``) when present."""
    value = string_claim(claims, name)
    if value is None:
        return None
    try:
        return PlayerRef.parse(value)
    except ValueError:
        raise AuthenticationFailed(
            f"token claim {name!r} is not a player reference (plr_… or source:external_id)"
        ) from None


def numeric_date(claims: Mapping[str, Any], name: str) -> float | None:
    """A NumericDate claim (RFC 7519 section 2) when present: a finite JSON number."""
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AuthenticationFailed(f"token claim {name!r} must be a number of seconds")
    return float(value)
