"""Players: lookup by id or identity, attributes, identity links and merges."""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Generic, TypeVar

from plaudit.domain.clock import Clock
from plaudit.domain.pagination import Page, decode_cursor, page_of
from plaudit.domain.players import (
    Identity,
    Player,
    PlayerRef,
    apply_merge_patch,
    merged_attributes,
)
from plaudit.errors import Conflict, FieldError, InvalidInput, NotFound
from plaudit.store.ports import Database, UnitOfWork

_MAX_MERGE_HOPS = 32
UNSET: Any = object()

K = TypeVar("K")
V = TypeVar("V")


class PlayersCache(Generic[K, V]):
    """What a process read of players (their facts, an identity's player), per tenant. It
    holds while the players' write counter (``PlayerRepository.generation``) is where it
    was: every update of a player bumps it, a merge included (the only change of an
    identity's player). Checked against the counter in each transaction that uses it; all
    forgotten when the counter moved or more than ``limit`` entries are held."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.generation = -1  # the counter the entries were read at (-1: none yet)
        self._entries: dict[tuple[str, K], V] = {}

    def check(self, generation: int) -> None:
        """Forget everything if the players were written since it was read (or it is full)."""
        if generation != self.generation or len(self._entries) > self.limit:
            self._entries.clear()
            self.generation = generation

    def split(self, tenant_id: str, keys: Iterable[K]) -> tuple[dict[K, V], list[K]]:
        """What is held of ``keys``, and the keys it does not hold."""
        held: dict[K, V] = {}
        missing: list[K] = []
        for key in keys:
            value = self._entries.get((tenant_id, key))
            if value is None:
                missing.append(key)
            else:
                held[key] = value
        return held, missing

    def put(self, tenant_id: str, values: Mapping[K, V]) -> None:
        self._entries.update(((tenant_id, key), value) for key, value in values.items())

    def forget(self) -> None:
        self._entries.clear()
        self.generation = -1


@dataclass(frozen=True, slots=True)
class PlayerView:
    player: Player
    identities: list[Identity]


@dataclass(frozen=True, slots=True)
class PlayerPatch:
    """Fields left as UNSET stay as they are; ``attributes`` is an RFC 7396 merge patch."""

    display_name: str | None = UNSET
    time_zone: str | None = UNSET
    locale: str | None = UNSET
    attributes: Mapping[str, Any] | None = None


def parse_ref(ref: str) -> PlayerRef:
    try:
        return PlayerRef.parse(ref)
    except ValueError as exc:
        raise InvalidInput(str(exc), [FieldError("player", str(exc))]) from None


def find_player(uow: UnitOfWork, tenant_id: str, ref: str, lock: bool = False) -> Player:
    """The live player a reference names, following merges; NotFound otherwise. ``lock``:
    locked until the transaction ends, for a write that changes the player from what it read
    (on PostgreSQL two writers of one player then take turns instead of losing an update)."""
    parsed = parse_ref(ref)
    player_id = parsed.player_id
    if parsed.identity is not None:
        player_id = uow.players.resolve(tenant_id, [parsed.identity]).get(parsed.identity)
    player = uow.players.get(tenant_id, player_id, lock) if player_id else None
    hops = 0
    while player is not None and player.merged_into is not None and hops < _MAX_MERGE_HOPS:
        player = uow.players.get(tenant_id, player.merged_into, lock)
        hops += 1
    if player is None:
        raise NotFound(f"no player {ref!r}")
    return player


def check_time_zone(name: str) -> None:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(
            f"unknown time zone {name!r}",
            [FieldError("time_zone", f"{name!r} is not an IANA time zone such as Europe/Paris")],
        ) from None


MergeHook = Callable[[UnitOfWork, str, str, str], None]
"""(uow, tenant, survivor id, absorbed id): what else a merge must carry over, in its
transaction (the scores: wired in bootstrap, so that players need not know scoring)."""


class PlayerService:
    def __init__(self, db: Database, clock: Clock, on_merge: MergeHook | None = None) -> None:
        self.db = db
        self.clock = clock
        self.on_merge = on_merge

    def player_id(self, tenant_id: str, ref: str) -> str:
        """The id of the live player a reference names (following merges); NotFound else."""
        with self.db.read() as uow:
            return find_player(uow, tenant_id, ref).id

    def get(self, tenant_id: str, ref: str) -> PlayerView:
        with self.db.read() as uow:
            player = find_player(uow, tenant_id, ref)
            return PlayerView(player, uow.players.identities_of(tenant_id, player.id))

    def page(
        self, tenant_id: str, cursor: str | None, limit: int, source: str | None = None
    ) -> Page[Player]:
        after = decode_cursor(cursor) if cursor else None
        with self.db.read() as uow:
            players = uow.players.page(tenant_id, after, limit + 1, source)
        return page_of(players, limit, lambda p: p.id)

    def update(self, tenant_id: str, ref: str, patch: PlayerPatch) -> PlayerView:
        if patch.time_zone not in (UNSET, None):
            check_time_zone(patch.time_zone)
        with self.db.write() as uow:
            player = find_player(uow, tenant_id, ref, lock=True)
            changes: dict[str, Any] = {
                name: getattr(patch, name)
                for name in ("display_name", "time_zone", "locale")
                if getattr(patch, name) is not UNSET
            }
            if patch.attributes is not None:
                changes["attributes"] = apply_merge_patch(player.attributes, patch.attributes)
            updated = replace(player, **changes, updated_at=self.clock())
            uow.players.update(updated)
            identities = uow.players.identities_of(tenant_id, player.id)
            uow.commit()
        return PlayerView(updated, identities)

    def link_identity(self, tenant_id: str, ref: str, identity: Identity) -> PlayerView:
        """Point another source's user id at this player (idempotent)."""
        with self.db.write() as uow:
            player = find_player(uow, tenant_id, ref)
            owner = uow.players.resolve(tenant_id, [identity]).get(identity)
            if owner is not None and owner != player.id:
                raise Conflict(
                    f"identity {identity.source}:{identity.external_id} already belongs to "
                    f"player {owner}; merge the two players instead"
                )
            if owner is None:
                uow.players.add_identities(tenant_id, [(identity, player.id)], self.clock())
            identities = uow.players.identities_of(tenant_id, player.id)
            uow.commit()
        return PlayerView(player, identities)

    def merge(self, tenant_id: str, survivor_ref: str, absorbed_ref: str) -> PlayerView:
        """Fold one player into another: identities and events move; the absorbed id redirects."""
        with self.db.write() as uow:
            survivor = find_player(uow, tenant_id, survivor_ref, lock=True)
            absorbed = find_player(uow, tenant_id, absorbed_ref, lock=True)
            if survivor.id == absorbed.id:
                raise Conflict(f"{survivor_ref!r} and {absorbed_ref!r} are the same player")
            now = self.clock()
            uow.players.repoint_identities(tenant_id, absorbed.id, survivor.id)
            uow.events.reassign_player(tenant_id, absorbed.id, survivor.id)
            updated = replace(
                survivor,
                display_name=survivor.display_name or absorbed.display_name,
                time_zone=survivor.time_zone or absorbed.time_zone,
                locale=survivor.locale or absorbed.locale,
                attributes=merged_attributes(survivor.attributes, absorbed.attributes),
                updated_at=now,
            )
            uow.players.update(updated)
            uow.players.update(replace(absorbed, merged_into=survivor.id, updated_at=now))
            uow.players.record_merge(tenant_id, absorbed.id, survivor.id, now)
            if self.on_merge is not None:
                self.on_merge(uow, tenant_id, survivor.id, absorbed.id)
            identities = uow.players.identities_of(tenant_id, survivor.id)
            uow.commit()
        return PlayerView(updated, identities)
