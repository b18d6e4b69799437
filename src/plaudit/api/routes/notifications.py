"""A player's live notifications (Server-Sent Events) for the host app's UI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
import anyio.to_thread
import orjson
from fastapi import APIRouter, Header, Query, Response
from fastapi.sse import EventSourceResponse

from plaudit.api.deps import ContainerDep, PlayerSelf
from plaudit.bootstrap import Container
from plaudit.errors import FieldError, InvalidInput

router = APIRouter(tags=["notifications"])

_BATCH = 100
_POLL = 0.5  # seconds between looks at the outbox: what the UI shows lags at most this
_KEEPALIVE = 15.0  # seconds: proxies close connections that stay silent longer


def _resume_point(value: str | None, field: str) -> int | None:
    if value is None or value == "":
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise InvalidInput(
            f"invalid {field} {value!r}",
            [FieldError(field, "the id of the last event received (a whole number)")],
        )
    return int(value)


@router.get(
    "/v1/players/{player}/notifications/stream",
    response_class=Response,
    responses={200: {"content": {"text/event-stream": {}}}},
    summary="A player's notifications, live (Server-Sent Events), resumable",
    description="Events `badge.awarded`, `badge.revoked` and `level.reached` carry an `id`: "
    "a client that reconnects with `Last-Event-ID` (browsers do it themselves) gets what it "
    "missed, in order. `ranks` (on connect) and `rank.changed` tell the player's standing on "
    "each leaderboard. A comment line keeps idle connections alive.",
)
async def notifications(
    player: str,
    principal: PlayerSelf,
    container: ContainerDep,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
    after: Annotated[
        str | None, Query(max_length=20, description="Resume after this event id")
    ] = None,
) -> EventSourceResponse:
    tenant = principal.tenant_id
    start = _resume_point(last_event_id, "Last-Event-ID")
    if start is None:
        start = _resume_point(after, "after")
    service = container.notifications
    # Resolve now, so that an unknown player is a 404, not a broken stream.
    player_id = await anyio.to_thread.run_sync(container.players.player_id, tenant, player)
    if start is None:
        start = await anyio.to_thread.run_sync(service.last)
    return EventSourceResponse(
        _events(container, tenant, player_id, start),
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _sse(event: str, data: Any, ident: int | None = None) -> bytes:
    head = f"event: {event}\n" + (f"id: {ident}\n" if ident is not None else "")
    return head.encode() + b"data: " + orjson.dumps(data) + b"\n\n"


async def _events(
    container: Container, tenant: str, player_id: str, after: int
) -> AsyncIterator[bytes]:
    service = container.notifications
    rank_every = container.settings.leaderboards.stream_interval.total_seconds()
    ranks: dict[str, Any] | None = None
    since_ranks = rank_every
    quiet = 0.0
    while True:
        messages = await anyio.to_thread.run_sync(service.since, tenant, player_id, after, _BATCH)
        for m in messages:
            after = m.seq
            quiet = 0.0
            yield _sse(m.type, {"id": m.id, "type": m.type, "data": m.data}, m.seq)
        if since_ranks >= rank_every:
            since_ranks = 0.0
            now = await anyio.to_thread.run_sync(_ranks, container, tenant, player_id)
            if ranks is None:
                yield _sse("ranks", list(now.values()))
            else:
                for key, standing in now.items():
                    if ranks.get(key) != standing:
                        yield _sse("rank.changed", standing)
            if ranks != now:
                quiet = 0.0
            ranks = now
        if len(messages) == _BATCH:
            continue  # catching up: no pause
        if quiet >= _KEEPALIVE:
            quiet = 0.0
            yield b": keepalive\n\n"
        await anyio.sleep(_POLL)
        quiet += _POLL
        since_ranks += _POLL


def _ranks(container: Container, tenant: str, player_id: str) -> dict[str, Any]:
    _, found = container.leaderboards.player_ranks(tenant, player_id)
    return {
        f"{view.board.board.id}/{view.key}": {
            "board": view.board.board.id,
            "window": view.key,
            "subject": subject,
            "rank": entry.rank if entry else None,
            "score": entry.score if entry else None,
        }
        for view, subject, entry, _ in found
    }
