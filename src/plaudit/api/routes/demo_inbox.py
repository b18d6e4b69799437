"""The demo's webhook receiver, mounted by ``plaudit serve --demo`` only: it checks each
delivery's signature the way an integrator would, and shows the latest ones."""

from __future__ import annotations

import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response

from plaudit.api.deps import Reader
from plaudit.webhooks.signing import SignatureMismatch, verify

PATH = "/demo/webhook-inbox"
_KEPT = 50


class DemoInbox:
    """The latest deliveries, newest first; ``secrets`` are the subscription's."""

    def __init__(self) -> None:
        self.secrets: list[str] = []
        self.received: deque[dict[str, Any]] = deque(maxlen=_KEPT)

    def take(self, headers: dict[str, str], body: bytes) -> bool:
        now = int(time.time())
        verified = False
        for secret in self.secrets:
            try:
                verify(secret, headers, body, now)
            except SignatureMismatch:
                continue
            verified = True
            break
        message = orjson.loads(body) if body else {}
        self.received.appendleft(
            {
                "received_at": datetime.now(UTC).isoformat(),
                "webhook_id": headers.get("webhook-id"),
                "signature_verified": verified,
                "type": message.get("type"),
                "data": message.get("data"),
            }
        )
        return verified


def router_for(inbox: DemoInbox) -> APIRouter:
    router = APIRouter(tags=["demo"])

    @router.post(PATH, include_in_schema=False)
    async def receive(request: Request) -> Response:
        body = await request.body()
        ok = inbox.take(dict(request.headers), body)
        return Response(status_code=204 if ok else 400)

    @router.get(PATH, summary="Webhooks the demo subscription received (latest first)")
    async def received(principal: Reader) -> list[dict[str, Any]]:
        return list(inbox.received)

    return router
