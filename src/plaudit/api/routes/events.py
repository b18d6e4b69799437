"""POST /v1/events (ingest) and the audit view of the log."""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
import orjson
from fastapi import APIRouter, Query, Request
from pydantic import AwareDatetime, BaseModel, StringConstraints
from starlette.responses import Response

from plaudit.api.deps import Admin, ContainerDep, EventWriter, Reader
from plaudit.api.event_body import parse_events
from plaudit.api.idempotency import IdempotentRoute
from plaudit.api.problems import problem_response
from plaudit.api.ratelimit import configured, limit_players
from plaudit.api.schemas import EventOut, EventPage, IngestReportOut, Strict, report_json
from plaudit.domain.events import Outcome
from plaudit.errors import InvalidInput
from plaudit.services.events import EventFilter

router = APIRouter(prefix="/v1/events", tags=["events"], route_class=IdempotentRoute)

_BODY_SCHEMA: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        {"$ref": "#/components/schemas/EventIn"},
                        {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/EventIn"},
                            "minItems": 1,
                            "maxItems": 1000,
                        },
                    ]
                }
            }
        },
    }
}


@router.post(
    "",
    response_model=IngestReportOut,
    openapi_extra=_BODY_SCHEMA,
    summary="Ingest one event or a batch of up to 1,000",
    responses={422: {"description": "Every event was rejected (or atomic=true and one was)"}},
)
async def ingest_events(
    request: Request,
    principal: EventWriter,
    container: ContainerDep,
    atomic: Annotated[
        bool, Query(description="Reject the whole batch if any event is invalid")
    ] = False,
) -> Response:
    """Returns once the accepted events are committed to the log (durable), before scoring."""
    body = await request.body()
    items = parse_events(body, container.settings.api.max_batch)
    per_player = configured(container.settings.rate_limits.per_player)
    if per_player is not None:
        items = await limit_players(items, principal.tenant_id, container.rate_limiter, per_player)
    report = await anyio.to_thread.run_sync(
        container.ingest.ingest, principal.tenant_id, items, atomic
    )
    content = report_json(report)
    if report.count(Outcome.REJECTED) == len(report.results):
        return problem_response(
            422,
            InvalidInput.slug,
            InvalidInput.title,
            "no event was accepted: see results for each event's errors",
            instance=request.url.path,
            **content,
        )
    return Response(orjson.dumps(content), media_type="application/json")


@router.get("", response_model=EventPage, summary="The event log, filtered, oldest first")
async def list_events(
    principal: Reader,
    container: ContainerDep,
    player: Annotated[str | None, Query(description="Player id or source:external_id")] = None,
    source: str | None = None,
    type: str | None = None,
    occurred_from: AwareDatetime | None = None,
    occurred_until: AwareDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> EventPage:
    filters = EventFilter(player, source, type, occurred_from, occurred_until)
    page = await anyio.to_thread.run_sync(
        container.event_log.page, principal.tenant_id, filters, cursor, limit
    )
    return EventPage(items=[EventOut.of(e) for e in page.items], next_cursor=page.next_cursor)


@router.get("/{event_id}", response_model=EventOut, summary="One event of the log")
async def get_event(event_id: str, principal: Reader, container: ContainerDep) -> EventOut:
    event = await anyio.to_thread.run_sync(container.event_log.get, principal.tenant_id, event_id)
    return EventOut.of(event)


class RetractIn(Strict):
    reason: Annotated[str, StringConstraints(min_length=1, max_length=1000)]


class Reversal(BaseModel):
    currency: str
    amount: float


class RetractionOut(BaseModel):
    event_id: str
    reversed: list[Reversal]
    revoked_awards: list[str]


@router.post(
    "/{event_id}/retract",
    response_model=RetractionOut,
    summary="Reverse what an event caused (its points; badges that no longer hold)",
)
async def retract_event(
    event_id: str, body: RetractIn, principal: Admin, container: ContainerDep
) -> RetractionOut:
    done = await anyio.to_thread.run_sync(
        container.scoring.retract, principal.tenant_id, event_id, body.reason, principal.subject
    )
    return RetractionOut(
        event_id=done.event_id,
        reversed=[Reversal(currency=c, amount=a) for c, a in done.reversed],
        revoked_awards=done.revoked_awards,
    )
