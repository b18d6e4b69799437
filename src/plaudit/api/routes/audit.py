"""The admin audit log: every change to rules, badges, keys, webhooks, awards and
adjustments, with who, when, before and after. Read and export only."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, Literal

import anyio.to_thread
import orjson
from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from plaudit.api.deps import Admin, ContainerDep
from plaudit.services.audit import AuditFilter
from plaudit.store.ports import AuditRow

router = APIRouter(tags=["audit"])

Text = Annotated[str | None, Query(max_length=200)]


class AuditEntryOut(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    resource_type: str
    resource_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None

    @classmethod
    def of(cls, ident: int, row: AuditRow) -> AuditEntryOut:
        return cls(
            id=ident,
            at=row.at,
            actor=row.actor,
            action=row.action,
            resource_type=row.resource_type,
            resource_id=row.resource_id,
            before=dict(row.before) if row.before is not None else None,
            after=dict(row.after) if row.after is not None else None,
        )


class AuditPage(BaseModel):
    items: list[AuditEntryOut]
    next_cursor: str | None


def _filter(
    resource_type: str | None,
    resource_id: str | None,
    actor: str | None,
    action: str | None,
    since: datetime | None,
    until: datetime | None,
) -> AuditFilter:
    return AuditFilter(resource_type, resource_id, actor, action, since, until)


@router.get(
    "/v1/audit",
    response_model=AuditPage,
    summary="The audit log, newest first: who changed what, when, before and after",
)
async def audit_log(
    principal: Admin,
    container: ContainerDep,
    resource_type: Text = None,
    resource_id: Text = None,
    actor: Text = None,
    action: Text = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> AuditPage:
    where = _filter(resource_type, resource_id, actor, action, since, until)
    page = await anyio.to_thread.run_sync(
        container.audit.page, principal.tenant_id, where, cursor, limit
    )
    return AuditPage(
        items=[AuditEntryOut.of(i, r) for i, r in page.items], next_cursor=page.next_cursor
    )


@router.get(
    "/v1/audit/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/x-ndjson": {}, "text/csv": {}}}},
    summary="Every matching entry, newest first, as NDJSON (default) or CSV",
)
async def export_audit(
    principal: Admin,
    container: ContainerDep,
    format: Literal["ndjson", "csv"] = "ndjson",
    resource_type: Text = None,
    resource_id: Text = None,
    actor: Text = None,
    action: Text = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> StreamingResponse:
    where = _filter(resource_type, resource_id, actor, action, since, until)
    rows = container.audit.export(principal.tenant_id, where)
    if format == "csv":
        return StreamingResponse(
            _csv(rows),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="audit.csv"'},
        )
    return StreamingResponse(
        (orjson.dumps(AuditEntryOut.of(i, r).model_dump(mode="json")) + b"\n" for i, r in rows),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": 'attachment; filename="audit.ndjson"'},
    )


_COLUMNS = ["id", "at", "actor", "action", "resource_type", "resource_id", "before", "after"]


def _csv(rows: Iterator[tuple[int, AuditRow]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(_COLUMNS)
    for ident, row in rows:
        entry = AuditEntryOut.of(ident, row).model_dump(mode="json")
        for name in ("before", "after"):
            value = entry[name]
            entry[name] = orjson.dumps(value).decode() if value is not None else ""
        writer.writerow([entry[c] for c in _COLUMNS])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()
