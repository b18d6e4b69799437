"""Leaderboards: standings with cursor paging, around-me, history, ranks, privacy, live stream."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, TypeVar

import anyio
import anyio.to_thread
import orjson
from fastapi import APIRouter, Query, Request, Response
from fastapi.sse import EventSourceResponse
from pydantic import BaseModel, Field

from plaudit.api.deps import Admin, BoardReader, ContainerDep, PlayerSelf, PlayerWriter
from plaudit.api.idempotency import IdempotentRoute
from plaudit.api.schemas import Strict
from plaudit.domain.pagination import decode_position, encode_cursor
from plaudit.rules.compiler import CompiledBoard
from plaudit.services.leaderboards import Entry, LeaderboardService, WindowView

router = APIRouter(tags=["leaderboards"], route_class=IdempotentRoute)
T = TypeVar("T")

WindowParam = Annotated[
    str | None,
    Query(
        max_length=16,
        description="current (default), previous, or a window's name: all, season, "
        "2026-11-30 (a day, or the first day of a week), 2026-11, 2026-Q4",
    ),
]
AROUND_MAX = 50
_STREAM_TOP_MAX = 100
_KEEPALIVE = 15.0  # seconds: proxies close connections that stay silent longer


class WindowOut(BaseModel):
    key: str
    state: str = Field(description="open, closed (final standings) or future")
    start: datetime | None
    end: datetime | None

    @classmethod
    def of(cls, v: WindowView) -> WindowOut:
        # Built from typed values of ours: no validation needed (it cost a fifth of a read).
        return cls.model_construct(key=v.key, state=v.state, start=v.start, end=v.end)


class BoardOut(BaseModel):
    id: str
    name: str
    description: str
    metric: dict[str, Any]
    window: str = Field(description="all_time, day, week, month, quarter or season")
    time_zone: str
    week_start: str
    scope: str = Field(description="players, or the player attribute groups are ranked by")
    min_score: float | None
    current: WindowOut
    participants: int

    @classmethod
    def of(cls, board: CompiledBoard, current: WindowView, participants: int) -> BoardOut:
        b = board.board
        return cls(
            id=b.id,
            name=b.name,
            description=b.description,
            metric=b.metric.model_dump(mode="json", exclude_none=True),
            window=b.window,
            time_zone=board.zone.key,
            week_start=board.week_start,
            scope="players" if b.group_by is None else f"group:{b.group_by}",
            min_score=b.min_score,
            current=WindowOut.of(current),
            participants=participants,
        )


class EntryOut(BaseModel):
    rank: int
    subject: str | None = Field(
        description="Player id, or the group's name; null for a player who opted out"
    )
    score: float
    reached_at: datetime = Field(description="When the score was reached (ties: earlier first)")
    hidden: bool = False

    @classmethod
    def of(cls, e: Entry) -> EntryOut:
        return cls.model_construct(
            rank=e.rank, subject=e.subject, score=e.score, reached_at=e.reached_at, hidden=e.hidden
        )


class StandingsOut(BaseModel):
    board: str
    window: WindowOut
    participants: int
    items: list[EntryOut]
    next_cursor: str | None


class AroundOut(BaseModel):
    board: str
    window: WindowOut
    subject: str
    entry: EntryOut | None = Field(description="null when the subject has no standing")
    neighbours: list[EntryOut] = Field(description="Up to `around` above and below, with it")


class HistoryOut(BaseModel):
    window: WindowOut
    participants: int
    winners: list[EntryOut]


class RankOut(BaseModel):
    board: str
    name: str
    window: WindowOut
    subject: str | None = Field(description="The player, or the player's group; null: in none")
    rank: int | None
    score: float | None
    participants: int


class PrivacyIn(Strict):
    hidden: bool = Field(description="Hide the player from others on every board")


class PrivacyOut(BaseModel):
    player_id: str
    hidden: bool


class ReconcileOut(BaseModel):
    windows: int
    subjects: int
    missing: int
    extra: int
    wrong: int
    repaired: list[str]
    retired: list[str]


async def _answer(service: LeaderboardService, run: Callable[[], T]) -> T:
    """Answer on the event loop when the service can without I/O, else on a thread."""
    done, result = service.try_inline(run)
    if done:
        return result  # type: ignore[return-value]  # done: result is what run() returned
    return await anyio.to_thread.run_sync(run)


@dataclass(frozen=True, slots=True)
class Asked:
    """What a conditional read is answered against: its path and query (its ETag covers
    them) and its If-None-Match header."""

    path: str
    query: str
    if_none_match: str

    @classmethod
    def of(cls, request: Request) -> Asked:
        url = request.url
        return cls(url.path, url.query, request.headers.get("if-none-match", ""))

    def etag(self, version: str) -> str:
        digest = hashlib.sha256(f"{self.path}?{self.query}|{version}".encode())
        return f'W/"{digest.hexdigest()[:20]}"'

    def respond(self, version: str, body: Callable[[], bytes]) -> Response:
        """200 with the body (JSON), or 304 when the client holds this version already."""
        etag = self.etag(version)
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if etag in {t.strip() for t in self.if_none_match.split(",")}:
            return Response(status_code=304, headers=headers)
        return Response(body(), media_type="application/json", headers=headers)


# The two hot reads build their JSON with orjson from our own typed values: building the
# response models (model_construct, ~5 µs an entry) and serializing them cost a fifth of a
# request. The models stay the documented schema; tests/unit/test_leaderboard_json.py checks
# that both give the same document.
def _window_json(v: WindowView) -> dict[str, Any]:
    return {"key": v.key, "state": v.state, "start": v.start, "end": v.end}


def _entry_json(e: Entry) -> dict[str, Any]:
    return {
        "rank": e.rank,
        "subject": e.subject,
        "score": e.score,
        "reached_at": e.reached_at,
        "hidden": e.hidden,
    }


def _dumps(document: dict[str, Any]) -> bytes:
    return orjson.dumps(document, option=orjson.OPT_UTC_Z)


def standings_json(
    board_id: str, view: WindowView, total: int, entries: list[Entry], next_cursor: str | None
) -> bytes:
    return _dumps(
        {
            "board": board_id,
            "window": _window_json(view),
            "participants": total,
            "items": [_entry_json(e) for e in entries],
            "next_cursor": next_cursor,
        }
    )


def around_json(board_id: str, view: WindowView, who: str, entries: list[Entry]) -> bytes:
    mine = next((e for e in entries if e.subject == who), None)
    return _dumps(
        {
            "board": board_id,
            "window": _window_json(view),
            "subject": who,
            "entry": _entry_json(mine) if mine else None,
            "neighbours": [_entry_json(e) for e in entries],
        }
    )


async def answer_standings(
    service: LeaderboardService,
    tenant_id: str,
    board_id: str,
    window: str | None,
    offset: int,
    limit: int,
    asked: Asked,
) -> Response:
    """A page of standings (the route's work once its parameters are checked)."""

    def respond(view: WindowView, entries: list[Entry], total: int, version: str) -> Response:
        more = offset + len(entries) < total and len(entries) == limit
        cursor = encode_cursor(str(offset + len(entries))) if more else None
        return asked.respond(
            version, lambda: standings_json(board_id, view, total, entries, cursor)
        )

    def run() -> Response:
        view = service.window(tenant_id, board_id, window)
        return respond(view, *service.page(tenant_id, view, offset, limit))

    found = await service.page_async(tenant_id, board_id, window, offset, limit)
    if found is not None:
        return respond(*found)
    return await _answer(service, run)


async def answer_around(
    service: LeaderboardService,
    tenant_id: str,
    board_id: str,
    subject: str,
    window: str | None,
    k: int,
    asked: Asked,
) -> Response:
    """A subject's standing and neighbours (the route's work once its parameters are checked)."""

    def respond(view: WindowView, who: str, entries: list[Entry], version: str) -> Response:
        return asked.respond(version, lambda: around_json(board_id, view, who, entries))

    def run() -> Response:
        view = service.window(tenant_id, board_id, window)
        version = service.version(tenant_id, view)
        who = service.subject_of(tenant_id, view, subject)
        return respond(view, who, service.around(tenant_id, view, who, k), version)

    found = await service.around_async(tenant_id, board_id, window, subject, k)
    if found is not None:
        return respond(*found)
    return await _answer(service, run)


@router.get("/v1/leaderboards", response_model=list[BoardOut], summary="Boards of the live rules")
async def list_boards(principal: BoardReader, container: ContainerDep) -> list[BoardOut]:
    service = container.leaderboards

    def run() -> list[BoardOut]:
        out = []
        for board in service.boards(principal.tenant_id):
            view = service.window(principal.tenant_id, board.board.id, None)
            _, total = service.standings(principal.tenant_id, view, 0, 0)
            out.append(BoardOut.of(board, view, total))
        return out

    return await _answer(service, run)


@router.get("/v1/leaderboards/{board_id}", response_model=BoardOut)
async def get_board(board_id: str, principal: BoardReader, container: ContainerDep) -> BoardOut:
    service = container.leaderboards

    def run() -> BoardOut:
        view = service.window(principal.tenant_id, board_id, None)
        _, total = service.standings(principal.tenant_id, view, 0, 0)
        return BoardOut.of(view.board, view, total)

    return await _answer(service, run)


@router.get(
    "/v1/leaderboards/{board_id}/standings",
    response_model=StandingsOut,
    summary="Standings in rank order (ETag: 304 when nothing changed)",
)
async def standings(
    board_id: str,
    request: Request,
    principal: BoardReader,
    container: ContainerDep,
    window: WindowParam = None,
    limit: Annotated[int, Query(ge=1, le=1000, description="Page size")] = 50,
    cursor: str | None = None,
) -> Response:
    offset = decode_position(cursor)
    return await answer_standings(
        container.leaderboards,
        principal.tenant_id,
        board_id,
        window,
        offset,
        limit,
        Asked.of(request),
    )


@router.get(
    "/v1/leaderboards/{board_id}/standings/{subject}",
    response_model=AroundOut,
    summary="A player's (or group's) rank and neighbours: around me",
)
async def around(
    board_id: str,
    subject: str,
    request: Request,
    principal: BoardReader,
    container: ContainerDep,
    window: WindowParam = None,
    around: Annotated[int, Query(ge=0, le=AROUND_MAX, description="Neighbours each side")] = 5,
) -> Response:
    return await answer_around(
        container.leaderboards,
        principal.tenant_id,
        board_id,
        subject,
        window,
        around,
        Asked.of(request),
    )


@router.get(
    "/v1/leaderboards/{board_id}/windows",
    response_model=list[HistoryOut],
    summary="Windows with scores, newest first, with their winners (last week's winners)",
)
async def history(
    board_id: str,
    principal: BoardReader,
    container: ContainerDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    winners: Annotated[int, Query(ge=0, le=10)] = 3,
) -> list[HistoryOut]:
    service = container.leaderboards

    def run() -> list[HistoryOut]:
        out = []
        for view, participants in service.history(principal.tenant_id, board_id)[:limit]:
            top, _ = service.standings(principal.tenant_id, view, 0, winners)
            out.append(
                HistoryOut(
                    window=WindowOut.of(view),
                    participants=participants,
                    winners=[EntryOut.of(e) for e in top],
                )
            )
        return out

    return await _answer(service, run)


@router.get(
    "/v1/players/{player}/ranks",
    response_model=list[RankOut],
    summary="A player's rank on every board (current windows)",
)
async def player_ranks(
    player: str, principal: PlayerSelf, container: ContainerDep
) -> list[RankOut]:
    service = container.leaderboards
    _, found = await _answer(service, lambda: service.player_ranks(principal.tenant_id, player))
    return [
        RankOut(
            board=view.board.board.id,
            name=view.board.board.name,
            window=WindowOut.of(view),
            subject=subject,
            rank=entry.rank if entry else None,
            score=entry.score if entry else None,
            participants=participants,
        )
        for view, subject, entry, participants in found
    ]


@router.put(
    "/v1/players/{player}/leaderboard-privacy",
    response_model=PrivacyOut,
    summary="Opt a player out of (or back into) being seen on boards",
)
async def set_privacy(
    player: str, body: PrivacyIn, principal: PlayerWriter, container: ContainerDep
) -> PrivacyOut:
    player_id = await anyio.to_thread.run_sync(
        container.leaderboards.set_hidden, principal.tenant_id, player, body.hidden
    )
    return PrivacyOut(player_id=player_id, hidden=body.hidden)


@router.post(
    "/v1/leaderboards/reconcile",
    response_model=ReconcileOut,
    summary="Compare the projection with SQL now, and repair any drift",
)
async def reconcile(principal: Admin, container: ContainerDep) -> ReconcileOut:
    report = await anyio.to_thread.run_sync(container.leaderboards.reconcile)
    return ReconcileOut(
        windows=report.windows,
        subjects=report.subjects,
        missing=report.missing,
        extra=report.extra,
        wrong=report.wrong,
        repaired=report.repaired,
        retired=report.retired,
    )


@router.get(
    "/v1/leaderboards/{board_id}/stream",
    response_class=Response,
    responses={200: {"content": {"text/event-stream": {}}}},
    summary="Live standings (Server-Sent Events): top-N changes, and one player's rank",
    description="Events: `standings` (the top N, when it changes) and `rank` (the player's "
    "rank and score, when they change), at most one of each per interval; a comment line "
    "keeps idle connections alive.",
)
async def stream(
    board_id: str,
    principal: BoardReader,
    container: ContainerDep,
    window: WindowParam = None,
    top: Annotated[int, Query(ge=1, le=_STREAM_TOP_MAX)] = 10,
    player: Annotated[str | None, Query(description="Also push this player's rank")] = None,
) -> EventSourceResponse:
    service = container.leaderboards
    tenant = principal.tenant_id
    interval = container.settings.leaderboards.stream_interval.total_seconds()
    # Resolve now, so that an unknown board, window or player is a 404, not a broken stream.
    view = await anyio.to_thread.run_sync(service.window, tenant, board_id, window)
    who = None
    if player is not None:
        who = await anyio.to_thread.run_sync(service.subject_of, tenant, view, player)
    return EventSourceResponse(
        _updates(service, tenant, board_id, window, top, who, interval),
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _sse(event: str, ident: str, data: Any) -> bytes:
    return f"event: {event}\nid: {ident}\ndata: {json.dumps(data)}\n\n".encode()


async def _updates(
    service: LeaderboardService,
    tenant: str,
    board_id: str,
    window: str | None,
    top: int,
    who: str | None,
    interval: float,
) -> AsyncIterator[bytes]:
    """One event when something changed, at most one of each kind per interval."""
    last_version = last_top = last_rank = None
    quiet = 0.0
    while True:
        view, version = await _answer(service, lambda: _look(service, tenant, board_id, window))
        if version != last_version:
            last_version = version
            entries, total = await _answer(
                service, functools.partial(service.standings, tenant, view, 0, top)
            )
            payload = StandingsOut(
                board=board_id,
                window=WindowOut.of(view),
                participants=total,
                items=[EntryOut.of(e) for e in entries],
                next_cursor=None,
            ).model_dump(mode="json")
            if payload != last_top:
                last_top = payload
                quiet = 0.0
                yield _sse("standings", version, payload)
            if who is not None:
                mine = await _answer(
                    service, functools.partial(service.around, tenant, view, who, 0)
                )
                rank = {
                    "board": board_id,
                    "window": view.key,
                    "subject": who,
                    "rank": mine[0].rank if mine else None,
                    "score": mine[0].score if mine else None,
                }
                if rank != last_rank:
                    last_rank = rank
                    quiet = 0.0
                    yield _sse("rank", version, rank)
        if quiet >= _KEEPALIVE:
            quiet = 0.0
            yield b": keepalive\n\n"
        await anyio.sleep(interval)
        quiet += interval


def _look(
    service: LeaderboardService, tenant: str, board_id: str, window: str | None
) -> tuple[WindowView, str]:
    view = service.window(tenant, board_id, window)
    return view, f"{view.key}:{service.version(tenant, view)}"
