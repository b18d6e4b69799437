"""Webhook subscriptions: endpoints, secrets and rotation, deliveries, attempts, dead letters."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field, StringConstraints

from plaudit.api.deps import Admin, ContainerDep, Reader
from plaudit.api.idempotency import IdempotentRoute
from plaudit.api.schemas import Strict
from plaudit.services.outbox import DEFAULT_TYPES, TYPES
from plaudit.store.ports import AttemptRow, Delivery, SecretRow, Subscription

router = APIRouter(tags=["webhooks"], route_class=IdempotentRoute)

Url = Annotated[str, StringConstraints(min_length=1, max_length=2048)]
Description = Annotated[str, StringConstraints(max_length=500)]
Filter = Annotated[str, StringConstraints(min_length=1, max_length=2000)]
EventTypes = Annotated[list[Annotated[str, StringConstraints(max_length=64)]], Field(max_length=20)]
InFlight = Annotated[int, Field(ge=1, le=100)]
Limit = Annotated[int, Query(ge=1, le=1000)]


class WebhookFields(Strict):
    url: Url | None = None
    event_types: EventTypes | None = Field(
        default=None,
        description="Message types to receive; default: all but points.awarded (opt-in)",
    )
    filter: Filter | None = Field(
        default=None,
        description='A CEL condition on the message, e.g. message.data.badge_id == "quiz-master"',
    )
    description: Description | None = None
    enabled: bool | None = None
    ordered: bool | None = Field(
        default=None,
        description="Deliver one player's messages one at a time, in order (a failing message "
        "holds back that player's later ones until it is delivered or dead-lettered)",
    )
    max_in_flight: InFlight | None = Field(
        default=None, description="Attempts under way at once to this endpoint"
    )

    def changes(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.model_fields_set}
        for name in ("url", "enabled", "ordered", "max_in_flight", "description"):
            if name in out and out[name] is None:
                del out[name]  # null means "leave as it is" for fields that cannot be empty
        return out


class WebhookCreate(WebhookFields):
    url: Url


class WebhookOut(BaseModel):
    id: str
    url: str
    event_types: list[str]
    filter: str | None
    description: str
    enabled: bool
    ordered: bool
    max_in_flight: int
    created_at: datetime
    updated_at: datetime
    disabled_at: datetime | None
    disabled_reason: str | None
    failing_since: datetime | None
    last_success_at: datetime | None

    @classmethod
    def of(cls, s: Subscription) -> WebhookOut:
        return cls(
            id=s.id,
            url=s.url,
            event_types=list(s.event_types),
            filter=s.filter,
            description=s.description,
            enabled=s.enabled,
            ordered=s.ordered,
            max_in_flight=s.max_in_flight,
            created_at=s.created_at,
            updated_at=s.updated_at,
            disabled_at=s.disabled_at,
            disabled_reason=s.disabled_reason,
            failing_since=s.failing_since,
            last_success_at=s.last_success_at,
        )


class WebhookCreated(WebhookOut):
    secret: str = Field(description="whsec_…: verify our signatures with it (shown here once)")


class SecretOut(BaseModel):
    secret: str
    created_at: datetime
    expires_at: datetime | None

    @classmethod
    def of(cls, r: SecretRow) -> SecretOut:
        return cls(secret=r.secret, created_at=r.created_at, expires_at=r.expires_at)


class RotateIn(Strict):
    overlap: timedelta = Field(
        default=timedelta(hours=24),
        description="How long the old secret keeps signing beside the new one (ISO 8601 "
        "duration or seconds; at most 7 days)",
    )


class EventTypeOut(BaseModel):
    type: str
    description: str
    default: bool


class DeliveryOut(BaseModel):
    id: str
    message_seq: int
    player_id: str | None
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, d: Delivery) -> DeliveryOut:
        return cls(
            id=d.id,
            message_seq=d.message_seq,
            player_id=d.player_id,
            status=d.status,
            attempts=d.attempts,
            next_attempt_at=d.due_at if d.status == "pending" else None,
            last_error=d.last_error,
            created_at=d.created_at,
            finished_at=d.finished_at,
        )


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None


class AttemptOut(BaseModel):
    id: int
    delivery_id: str
    message_id: str
    number: int
    started_at: datetime
    status_code: int | None
    latency_ms: float
    error: str | None
    response_excerpt: str | None

    @classmethod
    def of(cls, ident: int, a: AttemptRow) -> AttemptOut:
        return cls(
            id=ident,
            delivery_id=a.delivery_id,
            message_id=a.message_id,
            number=a.number,
            started_at=a.started_at,
            status_code=a.status_code,
            latency_ms=a.latency_ms,
            error=a.error,
            response_excerpt=a.excerpt,
        )


class AttemptPage(BaseModel):
    items: list[AttemptOut]
    next_cursor: str | None


class Queued(BaseModel):
    queued: int


@router.get(
    "/v1/webhooks/event-types",
    response_model=list[EventTypeOut],
    summary="Message types a subscription can ask for",
)
async def event_types(principal: Reader) -> list[EventTypeOut]:
    return [
        EventTypeOut(type=name, description=text, default=name in DEFAULT_TYPES)
        for name, text in TYPES.items()
    ]


@router.post(
    "/v1/webhooks",
    response_model=WebhookCreated,
    status_code=201,
    summary="Subscribe an endpoint; the answer holds its signing secret",
)
async def create_webhook(
    body: WebhookCreate, principal: Admin, container: ContainerDep
) -> WebhookCreated:
    created = await anyio.to_thread.run_sync(
        container.webhooks.create, principal.tenant_id, body.changes()
    )
    out = WebhookOut.of(created.subscription).model_dump()
    return WebhookCreated(**out, secret=created.secret)


@router.get("/v1/webhooks", response_model=list[WebhookOut], summary="Subscriptions")
async def list_webhooks(principal: Admin, container: ContainerDep) -> list[WebhookOut]:
    subs = await anyio.to_thread.run_sync(container.webhooks.all_of, principal.tenant_id)
    return [WebhookOut.of(s) for s in subs]


@router.get("/v1/webhooks/{webhook_id}", response_model=WebhookOut)
async def get_webhook(webhook_id: str, principal: Admin, container: ContainerDep) -> WebhookOut:
    sub = await anyio.to_thread.run_sync(container.webhooks.get, principal.tenant_id, webhook_id)
    return WebhookOut.of(sub)


@router.patch(
    "/v1/webhooks/{webhook_id}",
    response_model=WebhookOut,
    summary="Edit a subscription; enabling it again clears its failure streak",
)
async def update_webhook(
    webhook_id: str, body: WebhookFields, principal: Admin, container: ContainerDep
) -> WebhookOut:
    sub = await anyio.to_thread.run_sync(
        container.webhooks.update, principal.tenant_id, webhook_id, body.changes()
    )
    return WebhookOut.of(sub)


@router.delete(
    "/v1/webhooks/{webhook_id}",
    status_code=204,
    summary="Delete a subscription (its undelivered messages are dropped)",
)
async def delete_webhook(webhook_id: str, principal: Admin, container: ContainerDep) -> Response:
    await anyio.to_thread.run_sync(container.webhooks.delete, principal.tenant_id, webhook_id)
    return Response(status_code=204)


@router.get(
    "/v1/webhooks/{webhook_id}/secrets",
    response_model=list[SecretOut],
    summary="The secrets that sign now (two during a rotation's overlap)",
)
async def webhook_secrets(
    webhook_id: str, principal: Admin, container: ContainerDep
) -> list[SecretOut]:
    rows = await anyio.to_thread.run_sync(
        container.webhooks.secrets, principal.tenant_id, webhook_id
    )
    return [SecretOut.of(r) for r in rows]


@router.post(
    "/v1/webhooks/{webhook_id}/secrets/rotate",
    response_model=SecretOut,
    summary="A new secret; the old one keeps signing during the overlap",
)
async def rotate_secret(
    webhook_id: str, principal: Admin, container: ContainerDep, body: RotateIn | None = None
) -> SecretOut:
    overlap = (body or RotateIn()).overlap
    row = await anyio.to_thread.run_sync(
        container.webhooks.rotate, principal.tenant_id, webhook_id, overlap
    )
    return SecretOut.of(row)


@router.get(
    "/v1/webhooks/{webhook_id}/deliveries",
    response_model=DeliveryPage,
    summary="Messages for this endpoint, oldest first; status=dead lists the dead letters",
)
async def webhook_deliveries(
    webhook_id: str,
    principal: Admin,
    container: ContainerDep,
    status: Annotated[str | None, Query(max_length=12)] = None,
    limit: Limit = 100,
    cursor: str | None = None,
) -> DeliveryPage:
    page = await anyio.to_thread.run_sync(
        container.webhooks.deliveries, principal.tenant_id, webhook_id, status, cursor, limit
    )
    return DeliveryPage(items=[DeliveryOut.of(d) for d in page.items], next_cursor=page.next_cursor)


@router.get(
    "/v1/webhooks/{webhook_id}/attempts",
    response_model=AttemptPage,
    summary="Every attempt, newest first: status, latency, the response's first 1,000 chars",
)
async def webhook_attempts(
    webhook_id: str,
    principal: Admin,
    container: ContainerDep,
    delivery_id: Annotated[str | None, Query(max_length=40)] = None,
    limit: Limit = 100,
    cursor: str | None = None,
) -> AttemptPage:
    page = await anyio.to_thread.run_sync(
        container.webhooks.attempts, principal.tenant_id, webhook_id, delivery_id, cursor, limit
    )
    return AttemptPage(
        items=[AttemptOut.of(i, a) for i, a in page.items], next_cursor=page.next_cursor
    )


@router.post(
    "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver",
    response_model=Queued,
    summary="Send a dead-lettered (or delivered) message again; the schedule starts over",
)
async def redeliver_one(
    webhook_id: str, delivery_id: str, principal: Admin, container: ContainerDep
) -> Queued:
    count = await anyio.to_thread.run_sync(
        container.webhooks.redeliver, principal.tenant_id, webhook_id, [delivery_id]
    )
    return Queued(queued=count)


@router.post(
    "/v1/webhooks/{webhook_id}/dead-letters/redeliver",
    response_model=Queued,
    summary="Send every dead letter of this endpoint again",
)
async def redeliver_dead(webhook_id: str, principal: Admin, container: ContainerDep) -> Queued:
    count = await anyio.to_thread.run_sync(
        container.webhooks.redeliver, principal.tenant_id, webhook_id, None
    )
    return Queued(queued=count)
