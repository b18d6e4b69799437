"""What scoring produced: rule errors."""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Query

from plaudit.api.deps import ContainerDep, Reader
from plaudit.api.schemas import RuleErrorOut, RuleErrorPage

router = APIRouter(tags=["rules"])


@router.get(
    "/v1/rule-errors",
    response_model=RuleErrorPage,
    summary="Rules that failed on an event (e.g. a missing property), oldest first",
)
async def rule_errors(
    principal: Reader,
    container: ContainerDep,
    event_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> RuleErrorPage:
    page = await anyio.to_thread.run_sync(
        container.progress.rule_errors, principal.tenant_id, event_id, cursor, limit
    )
    return RuleErrorPage(
        items=[
            RuleErrorOut(
                id=i,
                event_id=r.event_id,
                player_id=r.player_id,
                rule_id=r.rule_id,
                ruleset=f"{r.ruleset_id}@{r.ruleset_version}",
                message=r.message,
                at=r.at,
            )
            for i, r in page.items
        ],
        next_cursor=page.next_cursor,
    )
