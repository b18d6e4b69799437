"""Players: lookup, attributes, identities, merges."""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Query

from plaudit.api.deps import Admin, ContainerDep, PlayerSelf, PlayerWriter, Reader
from plaudit.api.idempotency import IdempotentRoute
from plaudit.api.schemas import (
    AdjustmentIn,
    IdentityIn,
    IdentityOut,
    LedgerEntryOut,
    LedgerPage,
    MergeIn,
    PlayerOut,
    PlayerPageOut,
    PlayerUpdate,
    SourceName,
    StandingOut,
)
from plaudit.services.players import UNSET, PlayerPatch

router = APIRouter(prefix="/v1/players", tags=["players"], route_class=IdempotentRoute)


@router.get("", response_model=PlayerPageOut, summary="Players, by id, with cursor paging")
async def list_players(
    principal: Reader,
    container: ContainerDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
    source: Annotated[SourceName | None, Query(description="Only players seen from it")] = None,
) -> PlayerPageOut:
    page = await anyio.to_thread.run_sync(
        container.players.page, principal.tenant_id, cursor, limit, source
    )
    return PlayerPageOut(items=[PlayerOut.of(p) for p in page.items], next_cursor=page.next_cursor)


@router.get("/{player}", response_model=PlayerOut, summary="A player by id or source:external_id")
async def get_player(player: str, principal: PlayerSelf, container: ContainerDep) -> PlayerOut:
    view = await anyio.to_thread.run_sync(container.players.get, principal.tenant_id, player)
    standing = await anyio.to_thread.run_sync(
        container.progress.standing, principal.tenant_id, view.player.id
    )
    out = PlayerOut.of_view(view)
    out.standing = StandingOut.of(standing)
    return out


@router.patch("/{player}", response_model=PlayerOut, summary="Set attributes (merge patch)")
async def update_player(
    player: str, update: PlayerUpdate, principal: PlayerWriter, container: ContainerDep
) -> PlayerOut:
    given = update.model_fields_set
    patch = PlayerPatch(
        display_name=update.display_name if "display_name" in given else UNSET,
        time_zone=update.time_zone if "time_zone" in given else UNSET,
        locale=update.locale if "locale" in given else UNSET,
        attributes=update.attributes,
    )
    view = await anyio.to_thread.run_sync(
        container.players.update, principal.tenant_id, player, patch
    )
    return PlayerOut.of_view(view)


@router.get("/{player}/identities", response_model=list[IdentityOut])
async def list_identities(
    player: str, principal: Reader, container: ContainerDep
) -> list[IdentityOut]:
    view = await anyio.to_thread.run_sync(container.players.get, principal.tenant_id, player)
    return [IdentityOut(source=i.source, external_id=i.external_id) for i in view.identities]


@router.post(
    "/{player}/identities",
    response_model=PlayerOut,
    summary="Link another source's user id to this player",
)
async def link_identity(
    player: str, identity: IdentityIn, principal: PlayerWriter, container: ContainerDep
) -> PlayerOut:
    view = await anyio.to_thread.run_sync(
        container.players.link_identity, principal.tenant_id, player, identity.to_domain()
    )
    return PlayerOut.of_view(view)


@router.post(
    "/{player}/merge",
    response_model=PlayerOut,
    summary="Merge another player into this one (identities and events move)",
)
async def merge_players(
    player: str, merge: MergeIn, principal: PlayerWriter, container: ContainerDep
) -> PlayerOut:
    view = await anyio.to_thread.run_sync(
        container.players.merge, principal.tenant_id, player, merge.player
    )
    return PlayerOut.of_view(view)


@router.get("/{player}/ledger", response_model=LedgerPage, summary="Every change of the balances")
async def ledger(
    player: str,
    principal: PlayerSelf,
    container: ContainerDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> LedgerPage:
    page = await anyio.to_thread.run_sync(
        container.progress.ledger, principal.tenant_id, player, cursor, limit
    )
    return LedgerPage(
        items=[LedgerEntryOut.of(e) for e in page.items], next_cursor=page.next_cursor
    )


@router.post(
    "/{player}/adjustments",
    response_model=PlayerOut,
    status_code=201,
    summary="Adjust a balance by hand, with a reason",
)
async def adjust(
    player: str, body: AdjustmentIn, principal: Admin, container: ContainerDep
) -> PlayerOut:
    await anyio.to_thread.run_sync(
        container.progress.adjust,
        principal.tenant_id,
        player,
        body.currency,
        body.amount,
        body.reason,
        principal.subject,
    )
    return await get_player(player, principal, container)
