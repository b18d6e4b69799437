"""Sources and their sequence gaps."""

from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter

from plaudit.api.deps import ContainerDep, Reader
from plaudit.api.schemas import Gap, SequenceGapsOut, SourceOut

router = APIRouter(prefix="/v1/sources", tags=["events"])


@router.get("", response_model=list[SourceOut], summary="Sources that sent events")
async def list_sources(principal: Reader, container: ContainerDep) -> list[SourceOut]:
    sources = await anyio.to_thread.run_sync(container.event_log.sources, principal.tenant_id)
    return [SourceOut(source=s.source, events=s.events) for s in sources]


@router.get(
    "/{source}/gaps",
    response_model=SequenceGapsOut,
    summary="Sequence numbers received from a source, and the ones missing between them",
)
async def sequence_gaps(source: str, principal: Reader, container: ContainerDep) -> SequenceGapsOut:
    received, missing = await anyio.to_thread.run_sync(
        container.event_log.sequence_gaps, principal.tenant_id, source
    )
    return SequenceGapsOut(
        source=source,
        received=[Gap(first=a, last=b) for a, b in received],
        missing=[Gap(first=a, last=b) for a, b in missing],
        missing_count=sum(b - a + 1 for a, b in missing),
    )
