"""Players, the identities that point at them, and their attributes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

PLAYER_ID_PREFIX = "plr"
SOURCE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_SOURCE_RE = re.compile(SOURCE_PATTERN)

AttributeValue = str | int | float | bool


class Identity(NamedTuple):
    """A player as a source knows them (a named tuple: ingestion hashes one per event)."""

    source: str
    external_id: str


@dataclass(frozen=True, slots=True)
class Player:
    id: str
    tenant_id: str
    display_name: str | None
    time_zone: str | None
    locale: str | None
    attributes: Mapping[str, AttributeValue]
    created_at: datetime
    updated_at: datetime
    merged_into: str | None = None


@dataclass(frozen=True, slots=True)
class PlayerRef:
    """How a caller names a player: ``plr_…`` or ``source:external_id``."""

    player_id: str | None = None
    identity: Identity | None = None

    @staticmethod
    def parse(ref: str) -> PlayerRef:
        if ref.startswith(PLAYER_ID_PREFIX + "_") and ":" not in ref:
            return PlayerRef(player_id=ref)
        source, sep, external_id = ref.partition(":")
        if not sep or not external_id or not _SOURCE_RE.match(source):
            raise ValueError(
                f"player reference {ref!r} is neither a player id (plr_…) nor source:external_id"
            )
        return PlayerRef(identity=Identity(source, external_id))

    def __str__(self) -> str:
        if self.identity is not None:
            return f"{self.identity.source}:{self.identity.external_id}"
        return self.player_id or ""


def apply_merge_patch(
    current: Mapping[str, AttributeValue], patch: Mapping[str, Any]
) -> dict[str, AttributeValue]:
    """RFC 7396 on a flat map: a null removes an attribute, anything else sets it."""
    result = dict(current)
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = value
    return result


def merged_attributes(
    survivor: Mapping[str, AttributeValue], absorbed: Mapping[str, AttributeValue]
) -> dict[str, AttributeValue]:
    """Attributes after a merge: the survivor's values win; the absorbed fill the gaps."""
    return {**absorbed, **survivor}
